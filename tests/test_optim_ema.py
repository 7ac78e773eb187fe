"""The moving average of the updates: closed form with and without debiasing (with and without
jit, under vmap), scheduled decay, bad arguments."""

from __future__ import annotations

from typing import Any

import chex
import jax.numpy as jnp
import numpy as np
import pytest
from _typed import jit, vmap

import functrain.optim as fo
from functrain.typing import Array, ScalarOrSchedule

GRADS = np.random.default_rng(4).normal(size=(8, 3))


class TestEma(chex.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    def test_matches_the_closed_form(self) -> None:
        for debias in (True, False):
            tx = fo.ema(0.7, debias=debias)
            update = self.variant(tx.update)
            state = tx.init({"w": jnp.zeros(3)})
            for t, g in enumerate(GRADS, start=1):
                u, state = update({"w": jnp.asarray(g, jnp.float32)}, state)
                # m_t = (1 - b) sum_s b^(t-s) g_s
                m = sum(0.3 * 0.7 ** (t - s) * GRADS[s - 1] for s in range(1, t + 1))
                np.testing.assert_allclose(state.ema["w"], m, rtol=1e-5)
                np.testing.assert_allclose(u["w"], m / (1 - 0.7**t) if debias else m, rtol=1e-5)

    def test_a_constant_gradient_is_its_own_debiased_average(self) -> None:
        tx = fo.ema(0.99)
        state = tx.init({"w": jnp.zeros(2)})
        for _ in range(3):
            u, state = tx.update({"w": jnp.asarray([2.0, -1.0])}, state)
            np.testing.assert_allclose(u["w"], [2.0, -1.0], rtol=1e-5)

    def test_vmap_over_decays_and_a_schedule(self) -> None:
        def last(decay: ScalarOrSchedule) -> Array:
            tx = fo.ema(decay)
            state = tx.init({"w": jnp.zeros(3)})
            u: Any = None  # set by the loop (GRADS is not empty)
            for g in GRADS:
                u, state = tx.update({"w": jnp.asarray(g, jnp.float32)}, state)
            out: Array = u["w"]
            return out

        decays = jnp.asarray([0.5, 0.9])
        swept = jit(vmap(last))(decays)
        for i, d in enumerate([0.5, 0.9]):
            np.testing.assert_allclose(swept[i], last(jnp.asarray(d)), rtol=1e-6)
        np.testing.assert_allclose(last(fo.schedules.constant(0.9)), swept[1], rtol=1e-6)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match=r"^ema: argument 'decay' must be in \[0, 1\), got 1.0$"):
        fo.ema(1.0)
    with pytest.raises(TypeError, match=r"^ema: argument 'debias' must be a bool"):
        fo.ema(0.9, debias="yes")  # type: ignore[arg-type]  # the error tested
