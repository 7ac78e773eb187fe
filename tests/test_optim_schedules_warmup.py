"""with_warmup: the ramp and both clock conventions against closed forms, optax's join_schedules,
constants, traced values (jit, vmap over peaks and initial values), use in an optimizer, errors."""

from __future__ import annotations

import re

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from _typed import jit, vmap

from functrain import optim
from functrain.optim.schedules import cosine_decay, exponential_decay, with_warmup
from functrain.typing import Schedule

STYLE = re.compile(r"^[\w.]+: argument '[\w.\[\]']+' must be .+, got .+$", re.S)
STEPS = np.arange(0, 60)


def _values(schedule: Schedule) -> np.ndarray:
    return np.asarray(vmap(schedule)(jnp.asarray(STEPS)), np.float64)


def test_shifted_warmup_matches_optax_join_of_a_linear_ramp() -> None:
    w, init = 10, 0.01
    ours = with_warmup(cosine_decay(0.5, 40, alpha=0.1), w, init_value=init)
    ref = optax.join_schedules([optax.linear_schedule(init, 0.5, w), optax.cosine_decay_schedule(0.5, 40, 0.1)], [w])
    np.testing.assert_allclose(_values(ours), np.asarray(vmap(ref)(jnp.asarray(STEPS))), rtol=1e-6, atol=1e-7)


def test_closed_form_of_both_conventions() -> None:
    w, init = 8, 0.0
    base = exponential_decay(1.0, 0.9)
    decay = 0.9 ** STEPS.astype(np.float64)
    ramp_shifted = init + (1.0 - init) * STEPS / w
    shifted = np.where(STEPS < w, ramp_shifted, 0.9 ** np.maximum(STEPS - w, 0))
    np.testing.assert_allclose(_values(with_warmup(base, w)), shifted, rtol=1e-5)
    ramp_global = init + (0.9 ** w - init) * STEPS / w
    kept = np.where(STEPS < w, ramp_global, decay)
    np.testing.assert_allclose(_values(with_warmup(base, w, shift=False)), kept, rtol=1e-5)
    for sched in (with_warmup(base, w), with_warmup(base, w, shift=False)):  # continuous at w
        assert abs(float(sched(w)) - float(sched(w - 1))) < 1.5 / w


def test_constants_zero_warmup_and_float32() -> None:
    lr = with_warmup(0.2, 4, init_value=0.0)
    assert [round(float(lr(t)), 6) for t in (0, 1, 4, 100)] == [0.0, 0.05, 0.2, 0.2]
    same = with_warmup(cosine_decay(1.0, 10), 0)
    np.testing.assert_array_equal(_values(same), _values(cosine_decay(1.0, 10)))
    assert lr(jnp.asarray(2)).dtype == jnp.float32 and lr(2).shape == ()


class TestTraced(chex.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    def test_traced_peak_and_init(self) -> None:
        def value(peak: jax.Array, init: jax.Array, step: jax.Array) -> jax.Array:
            return with_warmup(cosine_decay(peak, 20), 5, init_value=init)(step)

        got = self.variant(value)(jnp.asarray(2.0), jnp.asarray(0.5), jnp.asarray(3))
        np.testing.assert_allclose(float(got), 0.5 + (2.0 - 0.5) * 3 / 5, rtol=1e-6)

    def test_vmap_over_peaks_in_an_optimizer(self) -> None:
        def first_updates(peak: jax.Array) -> jax.Array:
            tx = optim.sgd(with_warmup(peak, 2, init_value=0.0))
            state = tx.init(jnp.zeros(1))
            out: list[jax.Array] = []
            for _ in range(3):
                u, state = tx.update(jnp.ones(1), state)
                out.append(u[0])
            return jnp.stack(out)

        got = np.asarray(jit(vmap(first_updates))(jnp.array([0.1, 1.0])))
        np.testing.assert_allclose(got, -np.array([[0.0, 0.05, 0.1], [0.0, 0.5, 1.0]]), rtol=1e-6)


@pytest.mark.parametrize(("kwargs", "error", "name"), [
    ({"schedule": "cosine", "warmup_steps": 2}, TypeError, "schedule"),
    ({"schedule": 0.1, "warmup_steps": -1}, ValueError, "warmup_steps"),
    ({"schedule": 0.1, "warmup_steps": 2.5}, TypeError, "warmup_steps"),
    ({"schedule": 0.1, "warmup_steps": 2, "init_value": "x"}, TypeError, "init_value"),
    ({"schedule": 0.1, "warmup_steps": 2, "shift": "yes"}, TypeError, "shift"),
])
def test_errors(kwargs: dict[str, object], error: type[Exception], name: str) -> None:
    with pytest.raises(error) as info:
        with_warmup(**kwargs)  # type: ignore[arg-type]  # deliberately bad arguments
    assert f"argument '{name}'" in str(info.value) and STYLE.match(str(info.value)), str(info.value)
