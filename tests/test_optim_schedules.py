"""Schedules: closed-form values, float32 scalars, jit-safety, vmap over levels, bad input."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _typed import jit, vmap

from functrain.optim import schedules
from functrain.typing import Schedule


def _values(s: Schedule, steps: list[int]) -> np.ndarray:
    out = jit(vmap(s))(jnp.asarray(steps, jnp.int32))
    assert out.dtype == jnp.float32
    return np.asarray(out, np.float64)


def test_constant() -> None:
    np.testing.assert_allclose(_values(schedules.constant(0.3), [0, 5, 1000]), [0.3] * 3,
                               rtol=1e-7)


def test_exponential_decay_per_epoch_staircase() -> None:
    # "x0.98 after each epoch" with 10 steps per epoch
    s = schedules.exponential_decay(0.1, 0.98, transition_steps=10, staircase=True)
    np.testing.assert_allclose(_values(s, [0, 9, 10, 25, 100]),
                               [0.1, 0.1, 0.098, 0.1 * 0.98**2, 0.1 * 0.98**10], rtol=1e-6)
    smooth = schedules.exponential_decay(0.1, 0.5, transition_steps=4, transition_begin=2,
                                         end_value=0.02)
    np.testing.assert_allclose(_values(smooth, [0, 2, 4, 6, 100]),
                               [0.1, 0.1, 0.1 * 0.5**0.5, 0.05, 0.02], rtol=1e-6)


def test_piecewise_constant() -> None:
    s = schedules.piecewise_constant(1.0, {3: 0.5, 6: 0.1})
    np.testing.assert_allclose(_values(s, [0, 2, 3, 5, 6, 50]), [1, 1, 0.5, 0.5, 0.05, 0.05],
                               rtol=1e-6)
    np.testing.assert_allclose(_values(schedules.piecewise_constant(2.0), [0, 9]), [2.0, 2.0])


def test_polynomial_and_linear() -> None:
    s = schedules.polynomial(1.0, 0.0, 2.0, transition_steps=10, transition_begin=5)
    np.testing.assert_allclose(_values(s, [0, 5, 10, 15, 30]), [1.0, 1.0, 0.25, 0.0, 0.0],
                               atol=1e-7)
    warm = schedules.linear_warmup(0.0, 1.0, 4)
    np.testing.assert_allclose(_values(warm, [0, 1, 2, 4, 9]), [0.0, 0.25, 0.5, 1.0, 1.0])
    assert schedules.linear_warmup is schedules.linear_schedule


def test_cosine_decay() -> None:
    s = schedules.cosine_decay(2.0, 10, alpha=0.1)
    expected = [2.0 * ((1 - 0.1) * 0.5 * (1 + math.cos(math.pi * min(t, 10) / 10)) + 0.1)
                for t in (0, 5, 10, 20)]
    np.testing.assert_allclose(_values(s, [0, 5, 10, 20]), expected, rtol=1e-6)
    np.testing.assert_allclose(expected[1:3], [1.1, 0.2], rtol=1e-12)


def test_warmup_cosine_decay() -> None:
    s = schedules.warmup_cosine_decay(0.0, 1.0, warmup_steps=10, decay_steps=110, end_value=0.01)
    np.testing.assert_allclose(_values(s, [0, 5, 10, 60, 110, 500]),
                               [0.0, 0.5, 1.0, 0.505, 0.01, 0.01], rtol=1e-5, atol=1e-7)
    no_warmup = schedules.warmup_cosine_decay(0.5, 1.0, 0, 10)
    np.testing.assert_allclose(_values(no_warmup, [0, 5, 10]), [1.0, 0.5, 0.0], atol=1e-7)


def test_one_cycle() -> None:
    s = schedules.one_cycle(100, 1.0, pct_start=0.3, div_factor=25.0, final_div_factor=1e4)
    v = _values(s, [0, 15, 30, 65, 100, 200])
    np.testing.assert_allclose(v[[0, 2, 4, 5]], [1 / 25, 1.0, 1 / 25e4, 1 / 25e4], rtol=1e-5)
    np.testing.assert_allclose(v[1], (1 / 25 + 1) / 2, rtol=1e-5)  # halfway up (cosine)
    np.testing.assert_allclose(v[3], (1 + 1 / 25e4) / 2, rtol=1e-5)  # halfway down


def test_join_offsets_each_schedule_by_its_boundary() -> None:
    s = schedules.join([schedules.linear_schedule(0.0, 1.0, 10),
                        schedules.exponential_decay(1.0, 0.5, 5)], [10])
    np.testing.assert_allclose(_values(s, [0, 5, 10, 15, 20]), [0.0, 0.5, 1.0, 0.5, 0.25],
                               rtol=1e-6)


def test_schedules_are_jit_safe_with_traced_levels_and_vmap() -> None:
    traces = 0

    def lr_at(peak: jax.Array, step: jax.Array) -> jax.Array:
        nonlocal traces
        traces += 1
        return schedules.warmup_cosine_decay(0.0, peak, 10, 100, end_value=0.1 * peak)(step)

    f = jit(vmap(lr_at, in_axes=(0, None)))
    peaks = jnp.asarray([0.1, 1.0, 3.0])
    for step in (0, 10, 55, 100):
        v = f(peaks, jnp.asarray(step))
        single = [float(schedules.warmup_cosine_decay(0.0, float(p), 10, 100, 0.1 * float(p))(step))
                  for p in peaks]
        np.testing.assert_allclose(v, single, rtol=1e-6)
    assert traces == 1
    # a traced zero peak is handled (alpha = 0) without NaN
    def at_five(p: jax.Array) -> jax.Array:
        return schedules.warmup_cosine_decay(0.0, p, 2, 10)(jnp.asarray(5))

    zero = jit(at_five)
    assert float(zero(jnp.asarray(0.0))) == 0.0


def test_numpy_integer_step_counts_are_accepted() -> None:
    # typed as int; NumPy integers are accepted at run time (Any keeps mypy out of it)
    ten: Any = np.int64(10)
    two: Any = np.int32(2)
    three: Any = np.int64(3)
    s = schedules.cosine_decay(1.0, ten)
    np.testing.assert_allclose(_values(s, [0, 10]), [1.0, 0.0], atol=1e-7)
    p = schedules.piecewise_constant(1.0, {two: 0.5})
    np.testing.assert_allclose(_values(p, [1, 2]), [1.0, 0.5])
    j = schedules.join([schedules.constant(1.0), schedules.constant(2.0)], [three])
    np.testing.assert_allclose(_values(j, [2, 3]), [1.0, 2.0])


@pytest.mark.parametrize(
    ("make", "error", "pattern"),
    [
        (lambda: schedules.exponential_decay(0.1, 0.0), ValueError,
         r"exponential_decay: argument 'decay_rate' must be > 0, got 0.0"),
        (lambda: schedules.exponential_decay(0.1, 0.9, transition_steps=0), ValueError,
         r"exponential_decay: argument 'transition_steps' must be an int >= 1, got 0"),
        (lambda: schedules.exponential_decay(0.1, 0.9, transition_begin=-1), ValueError,
         r"exponential_decay: argument 'transition_begin' must be an int >= 0, got -1"),
        (lambda: schedules.exponential_decay(0.1, 0.9, staircase=1), TypeError,  # type: ignore[arg-type]  # deliberate misuse
         r"exponential_decay: argument 'staircase' must be a bool, got 1"),
        (lambda: schedules.polynomial(1.0, 0.0, 1.0, 2.5), TypeError,  # type: ignore[arg-type]  # deliberate misuse
         r"polynomial: argument 'transition_steps' must be an int >= 1, got 2.5"),
        (lambda: schedules.polynomial(1.0, 0.0, 0.0, 10), ValueError,
         r"polynomial: argument 'power' must be > 0, got 0.0"),
        (lambda: schedules.piecewise_constant(1.0, {5: -0.1}), ValueError,
         r"piecewise_constant: argument 'boundaries_and_scales\[5\]' must be >= 0, got -0.1"),
        (lambda: schedules.piecewise_constant(1.0, {5: 0.1, 5.5: 0.1}), TypeError,  # type: ignore[dict-item]  # deliberate misuse
         r"piecewise_constant: argument 'boundaries_and_scales' must be a mapping whose keys are "
         r"strictly increasing int steps >= 0, got dict \{5: 0.1, 5.5: 0.1\}"),
        (lambda: schedules.piecewise_constant(1.0, {20: 0.1, 10: 0.1}), ValueError,
         r"piecewise_constant: argument 'boundaries_and_scales' must be .*strictly increasing"),
        (lambda: schedules.piecewise_constant(1.0, [(5, 0.1)]), TypeError,  # type: ignore[arg-type]  # deliberate misuse
         r"piecewise_constant: argument 'boundaries_and_scales' must be a mapping"),
        (lambda: schedules.warmup_cosine_decay(0.0, 1.0, 10, 10), ValueError,
         r"warmup_cosine_decay: argument 'decay_steps' must be an int >= 11, got 10"),
        (lambda: schedules.one_cycle(100, 1.0, pct_start=1.0), ValueError,
         r"one_cycle: argument 'pct_start' must be in \(0, 1\), got 1.0"),
        (lambda: schedules.cosine_decay(1.0, 0), ValueError,
         r"cosine_decay: argument 'decay_steps' must be an int >= 1, got 0"),
        (lambda: schedules.join([schedules.constant(1.0)] * 2, [5, 6]), ValueError,
         r"join: argument 'boundaries' must be a sequence of 1 strictly increasing int steps >= 0 "
         r"\(one fewer than schedules\), got list \[5, 6\]"),
        (lambda: schedules.join([schedules.constant(1.0)] * 3, [5, 5]), ValueError,
         r"join: argument 'boundaries' must be .*strictly increasing.*got list \[5, 5\]"),
        (lambda: schedules.join([schedules.constant(1.0)] * 3, [10, 5]), ValueError,
         r"join: argument 'boundaries' must be .*strictly increasing.*got list \[10, 5\]"),
        (lambda: schedules.join([schedules.constant(1.0), 0.5], [5]), TypeError,  # type: ignore[list-item]  # deliberate misuse
         r"join: argument 'schedules\[1\]' must be a schedule \(step -> value\), got 0.5"),
        (lambda: schedules.join([], []), ValueError,
         r"join: argument 'schedules' must be a non-empty sequence of schedules, got list \[\]"),
        (lambda: schedules.constant("a"), TypeError,  # type: ignore[arg-type]  # deliberate misuse
         r"constant: argument 'value' must be a number or a scalar array, got 'a'"),
    ],
)
def test_bad_input(make: Callable[[], object], error: type[Exception], pattern: str) -> None:
    with pytest.raises(error, match=pattern):
        make()
