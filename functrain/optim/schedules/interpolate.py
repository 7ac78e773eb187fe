"""Piecewise interpolated schedules: linear or cosine ramps between levels, and the linear 1cycle.

:func:`piecewise_interpolate` moves smoothly from level to level (each boundary multiplies the
level by its scale); :func:`linear_one_cycle` is the three-phase 1cycle policy built on it.
Each factory returns a :class:`~functrain.typing.Schedule` whose values match the corresponding
``optax`` schedule.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import jax.numpy as jnp
from jax.typing import ArrayLike

from functrain import _validate
from functrain.optim.schedules._common import Value, check_boundaries_and_scales, f32
from functrain.typing import Array, Schedule

__all__ = ["linear_one_cycle", "piecewise_interpolate"]


def _linear(start: Array, end: Array, pct: Array) -> Array:
    return (end - start) * pct + start


def _cosine(start: Array, end: Array, pct: Array) -> Array:
    return end + (start - end) / 2.0 * (jnp.cos(jnp.pi * pct) + 1)


_INTERPOLATIONS: dict[str, Callable[[Array, Array, Array], Array]] = {
    "linear": _linear, "cosine": _cosine,
}


def piecewise_interpolate(
    init_value: Value,
    boundaries_and_scales: Mapping[int, float] | None = None,
    interpolation: str = "linear",
) -> Schedule:
    r"""Levels ``v_0 = init_value``, ``v_i = v_{i-1} s_i``, reached at the boundaries ``b_i``.

    Between two boundaries the value moves from one level to the next, linearly or along a half
    cosine (``v_{i+1} + (v_i - v_{i+1}) (1 + cos(pi x)) / 2``, ``x`` the fraction of the
    interval done); from ``b_0 = 0`` to ``b_1`` it goes from ``v_0`` to ``v_1``, and after the last
    boundary it stays at the last level. Note that the scales multiply: the levels are their
    cumulative products. Same as ``optax.piecewise_interpolate_schedule``, except that boundaries
    must be listed in increasing order.

    Args:
        init_value: ``v_0``, the value at step 0 (a number or a scalar array).
        boundaries_and_scales: ``{b_i: s_i}`` with increasing steps ``b_i >= 0`` and scales
            ``s_i >= 0``; ``None`` or empty for a constant.
        interpolation: ``"linear"`` or ``"cosine"``.

    Returns:
        A :class:`~functrain.typing.Schedule`.

    Raises:
        TypeError: an argument of the wrong type.
        ValueError: boundaries not strictly increasing or negative, a negative scale, or an
            unknown interpolation.

    Example:
        >>> lr = ft.optim.schedules.piecewise_interpolate(1.0, {10: 0.5, 20: 0.1})
        >>> [round(float(lr(t)), 4) for t in (0, 5, 10, 15, 20, 30)]  # levels 1, 0.5, 0.05
        [1.0, 0.75, 0.5, 0.275, 0.05, 0.05]
    """
    fn = "piecewise_interpolate"
    _validate.check_hyperparameter(init_value, fn, "init_value", schedule_ok=False)
    interpolate = _INTERPOLATIONS[_validate.check_choice(interpolation, _INTERPOLATIONS, fn,
                                                         "interpolation")]
    bounds, scales = check_boundaries_and_scales(fn, boundaries_and_scales)

    def schedule(step: ArrayLike) -> Array:
        count = jnp.asarray(step)
        b = jnp.stack([0, *bounds])  # (not asarray: XLA then folds the divisions differently)
        levels = jnp.cumprod(jnp.stack([f32(init_value), *(f32(s) for s in scales)]))
        sizes = jnp.maximum(b[1:] - b[:-1], 1)
        inside = jnp.logical_and(b[:-1] <= count, count < b[1:])
        pct = (count - b[:-1]) / sizes
        ramps = interpolate(levels[:-1], levels[1:], pct)
        return f32(inside.dot(ramps) + (b[-1] <= count) * levels[-1])

    return schedule


def linear_one_cycle(
    transition_steps: int,
    peak_value: Value,
    pct_start: float = 0.3,
    pct_final: float = 0.85,
    div_factor: float = 25.0,
    final_div_factor: float = 1e4,
) -> Schedule:
    r"""The three-phase linear 1cycle policy (Smith & Topin, "Super-Convergence", 2017).

    With ``T`` the ``transition_steps`` and ``eta_0 = peak / div_factor``: up linearly from
    ``eta_0`` to ``peak`` over the first ``pct_start`` of the steps, down to ``eta_0`` at
    ``pct_final T``, then down to ``eta_0 / final_div_factor`` at ``T`` (held afterwards). Same as
    ``optax.linear_onecycle_schedule``; :func:`~functrain.optim.schedules.one_cycle` is the
    two-phase cosine variant.

    Args:
        transition_steps: ``T >= 1``.
        peak_value: the maximal value.
        pct_start: fraction of the steps spent rising, in (0, 1).
        pct_final: fraction of the steps at which the value is back at ``eta_0``, in
            (``pct_start``, 1).
        div_factor: ``> 0``; ``eta_0 = peak / div_factor``.
        final_div_factor: ``> 0``; the final value is ``eta_0 / final_div_factor``.

    Returns:
        A :class:`~functrain.typing.Schedule`.

    Raises:
        TypeError: an argument of the wrong type.
        ValueError: an argument out of range, or ``T`` too small for three distinct phases.

    Example:
        >>> lr = ft.optim.schedules.linear_one_cycle(100, peak_value=1.0, final_div_factor=10.0)
        >>> [round(float(lr(t)), 4) for t in (0, 15, 30, 85, 100)]
        [0.04, 0.52, 1.0, 0.04, 0.004]
    """
    fn = "linear_one_cycle"
    total = _validate.check_int(transition_steps, fn, "transition_steps", low=1)
    _validate.check_hyperparameter(peak_value, fn, "peak_value", schedule_ok=False)
    start = _validate.check_positive(pct_start, fn, "pct_start")
    _validate.check_number(start, fn, "pct_start", high=1.0, high_open=True)
    final = _validate.check_positive(pct_final, fn, "pct_final")
    _validate.check_number(final, fn, "pct_final", low=start, high=1.0, low_open=True,
                           high_open=True)
    for name, factor in (("div_factor", div_factor), ("final_div_factor", final_div_factor)):
        _validate.check_positive(factor, fn, name)
    rise, fall = int(start * total), int(final * total)
    if not rise < fall < total:
        _validate.fail(fn, "transition_steps", "large enough for three phases of at least one "
                       f"step each (int(pct_start T) < int(pct_final T) < T)", total)
    return piecewise_interpolate(peak_value / div_factor, {
        rise: div_factor, fall: 1.0 / div_factor, total: 1.0 / final_div_factor})
