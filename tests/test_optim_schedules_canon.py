"""The issue-16 schedules in closed form: SGDR restarts (paper formula, growing cycles, decaying
peaks, warmup, endless and finite), the linear 1cycle's phases, piecewise interpolation,
inverse square root (the Transformer's formula), cosine exponents; jit and vmap; bad input."""

from __future__ import annotations

import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _typed import jit

from functrain.optim import schedules
from functrain.typing import Schedule


def _values(s: Schedule, steps: list[int] | range) -> np.ndarray:
    out = jit(jax.vmap(s))(jnp.asarray(list(steps), jnp.int32))
    assert out.dtype == jnp.float32
    return np.asarray(out, np.float64)


def _sgdr_ref(t: int, peak: float, t0: int, mult: int, end: float, decay: float) -> float:
    i, start, length = 0, 0, t0
    while t >= start + length:  # Loshchilov & Hutter 2017, eq. 5 with T_i = T_0 m^i
        start, length, i = start + length, length * mult, i + 1
    eta_max = peak * decay**i
    return end + 0.5 * (eta_max - end) * (1 + math.cos(math.pi * (t - start) / length))


@pytest.mark.parametrize(("t0", "mult", "decay"), [(10, 1, 1.0), (7, 2, 1.0), (5, 3, 0.5),
                                                   (6, 1, 0.8)])
def test_sgdr_follows_the_paper_formula_without_end(t0: int, mult: int, decay: float) -> None:
    s = schedules.sgdr(0.1, t0, mult, end_value=0.001, peak_decay=decay)
    steps = range(0, 400, 3)
    np.testing.assert_allclose(_values(s, steps),
                               [_sgdr_ref(t, 0.1, t0, mult, 0.001, decay) for t in steps],
                               rtol=2e-5, atol=1e-7)


def test_sgdr_restarts_warmups_and_ends() -> None:
    s = schedules.sgdr(1.0, 10, 2, warmup_steps=2, init_value=0.5, n_cycles=2)
    v = _values(s, [0, 1, 2, 10, 11, 12, 29, 30, 1000])
    np.testing.assert_allclose(v[[0, 1, 2]], [0.5, 0.75, 1.0], rtol=1e-6)  # warmup, then peak
    np.testing.assert_allclose(v[[3, 4, 5]], [0.5, 0.75, 1.0], rtol=1e-6)  # restart at 10
    assert 0 < v[6] < 0.01 and v[7] == v[8] == 0.0  # two cycles (10 + 20 steps), then held
    big = _values(schedules.sgdr(1.0, 1, 2), [2**30 - 2, 2**30 - 1, 2**31 - 1])  # int32 steps
    np.testing.assert_allclose(big, [0.0, 1.0, 1.0], atol=1e-6)  # restarts at 2^k - 1


def test_linear_one_cycle_phases() -> None:
    s = schedules.linear_one_cycle(100, 2.0, pct_start=0.25, pct_final=0.75, div_factor=4.0,
                                   final_div_factor=10.0)
    np.testing.assert_allclose(_values(s, [0, 10, 25, 50, 75, 90, 100, 500]),
                               [0.5, 1.1, 2.0, 1.25, 0.5, 0.23, 0.05, 0.05], rtol=1e-5)


def test_piecewise_interpolate_cosine_and_linear() -> None:
    s = schedules.piecewise_interpolate(1.0, {10: 0.2, 30: 0.5}, "cosine")
    expected = [1.0, 0.2 + 0.8 * 0.5 * (1 + math.cos(math.pi * 0.3)), 0.2,
                0.1 + 0.1 * 0.5 * (1 + math.cos(math.pi * 0.5)), 0.1, 0.1]
    np.testing.assert_allclose(_values(s, [0, 3, 10, 20, 30, 99]), expected, rtol=1e-6)
    flat = schedules.piecewise_interpolate(0.3)
    np.testing.assert_allclose(_values(flat, [0, 50]), [0.3, 0.3], rtol=1e-6)


def test_inverse_sqrt_is_the_transformer_schedule() -> None:
    d, w = 512, 4000  # Vaswani et al. 2017, eq. 3
    s = schedules.inverse_sqrt((d * w) ** -0.5, w)
    steps = [1, 100, 3999, 4000, 4001, 20000, 10**6]
    ref = [d**-0.5 * min(t**-0.5, t * w**-1.5) for t in steps]
    np.testing.assert_allclose(_values(s, steps), ref, rtol=1e-5)
    warm = schedules.inverse_sqrt(1.0, 10, init_value=0.5)
    np.testing.assert_allclose(_values(warm, [0, 5, 10, 40]), [0.5, 0.75, 1.0, 0.5], rtol=1e-6)


def test_cosine_exponent() -> None:
    s = schedules.cosine_decay(1.0, 100, alpha=0.1, exponent=3.0)
    ref = [0.1 + 0.9 * (0.5 * (1 + math.cos(math.pi * t / 100))) ** 3 for t in (0, 25, 50, 100)]
    np.testing.assert_allclose(_values(s, [0, 25, 50, 100]), ref, rtol=1e-6)
    w = schedules.warmup_cosine_decay(0.0, 1.0, 10, 110, exponent=2.0)
    np.testing.assert_allclose(_values(w, [5, 10, 60]), [0.5, 1.0, 0.25], rtol=1e-6)


def test_traced_levels_under_vmap() -> None:
    peaks = jnp.asarray([0.1, 1.0])
    builds: list[Callable[[jax.Array], Schedule]] = [
        lambda p: schedules.inverse_sqrt(p, 10), lambda p: schedules.sgdr(p, 10, 2),
        lambda p: schedules.piecewise_interpolate(p, {5: 0.5}),
        lambda p: schedules.linear_one_cycle(50, p)]
    for build in builds:
        def values(p: jax.Array, b: Callable[[jax.Array], Schedule] = build) -> jax.Array:
            return jax.vmap(b(p))(jnp.arange(60))

        out = jit(jax.vmap(values))(peaks)
        np.testing.assert_allclose(out[1], 10 * out[0], rtol=1e-5)


S = schedules
BAD: list[tuple[Callable[[], object], type[Exception], str]] = [
    (lambda: S.sgdr(0.1, 0), ValueError,
     r"^sgdr: argument 'cycle_steps' must be an int >= 1, got 0$"),
    (lambda: S.sgdr(0.1, 10, 1.5), TypeError,  # type: ignore[arg-type]  # the error tested
     r"^sgdr: argument 'cycle_mult' must be an int"),
    (lambda: S.sgdr(0.1, 10, warmup_steps=10), ValueError,
     r"^sgdr: argument 'warmup_steps' must be an int in \[0, 9\]"),
    (lambda: S.sgdr(0.1, 10, peak_decay=0.0), ValueError,
     r"^sgdr: argument 'peak_decay' must be > 0"),
    (lambda: S.linear_one_cycle(100, 1.0, 0.5, 0.4), ValueError,
     r"^linear_one_cycle: argument 'pct_final' must be in \(0.5, 1\)"),
    (lambda: S.linear_one_cycle(1, 1.0), ValueError,
     r"^linear_one_cycle: argument 'transition_steps' must be large enough"),
    (lambda: S.piecewise_interpolate(1.0, {5: 0.5}, "cubic"), ValueError,
     r"^piecewise_interpolate: argument 'interpolation' must be one of 'linear', 'cosine', got "
     r"'cubic'$"),
    (lambda: S.piecewise_interpolate(1.0, {5: -0.5}), ValueError,
     r"^piecewise_interpolate: argument 'boundaries_and_scales\[5\]' must be >= 0"),
    (lambda: S.inverse_sqrt(1.0, 0), ValueError,
     r"^inverse_sqrt: argument 'warmup_steps' must be an int >= 1, got 0$"),
    (lambda: S.cosine_decay(1.0, 10, exponent=0.0), ValueError,
     r"^cosine_decay: argument 'exponent' must be > 0"),
]


@pytest.mark.parametrize(("make", "error", "pattern"), BAD)
def test_bad_arguments(make: Callable[[], object], error: type[Exception], pattern: str) -> None:
    with pytest.raises(error, match=pattern):
        make()
