"""Schedules in phases: joined schedules, warmup then decay, and the 1cycle policy.

:func:`join` runs schedules one after the other; :func:`warmup_cosine_decay`,
:func:`inverse_sqrt` and :func:`one_cycle` are the common warmup-then-decay shapes.

Each factory returns a :class:`~functrain.typing.Schedule` (``step -> float32 scalar``) whose
values match the corresponding ``optax`` schedule.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax.numpy as jnp
from jax.typing import ArrayLike

from functrain import _validate
from functrain.optim.schedules._common import Value, check_boundaries, f32
from functrain.optim.schedules.decay import cosine_decay, linear_schedule
from functrain.typing import Array, Schedule

__all__ = ["inverse_sqrt", "join", "one_cycle", "warmup_cosine_decay"]


def warmup_cosine_decay(
    init_value: Value,
    peak_value: Value,
    warmup_steps: int,
    decay_steps: int,
    end_value: Value = 0.0,
    exponent: float | Array = 1.0,
) -> Schedule:
    """Linear warmup from ``init_value`` to ``peak_value``, then cosine decay to ``end_value``.

    Warmup over ``warmup_steps`` (Goyal et al., "Accurate, Large Minibatch SGD", 2017), then a
    cosine decay (Loshchilov & Hutter 2017) reaching ``end_value`` at step ``decay_steps``
    (counted from 0, warmup included) and held. Same as ``optax.warmup_cosine_decay_schedule``.

    Args:
        init_value: value at step 0.
        peak_value: value at the end of the warmup.
        warmup_steps: ``>= 0``.
        decay_steps: total length, ``> warmup_steps``.
        end_value: final value.
        exponent: ``p > 0``, the power of the cosine factor (see
            :func:`~functrain.optim.schedules.cosine_decay`).

    Returns:
        A :class:`~functrain.typing.Schedule`.

    Raises:
        TypeError: an argument of the wrong type.
        ValueError: ``warmup_steps < 0``, ``decay_steps <= warmup_steps`` or ``exponent <= 0``.

    Example:
        >>> lr = ft.optim.schedules.warmup_cosine_decay(0.0, 1.0, warmup_steps=10, decay_steps=110)
        >>> [round(float(lr(t)), 4) for t in (0, 5, 10, 60, 110)]
        [0.0, 0.5, 1.0, 0.5, 0.0]
    """
    fn = "warmup_cosine_decay"
    for arg, v in (("init_value", init_value), ("peak_value", peak_value),
                   ("end_value", end_value)):
        _validate.check_hyperparameter(v, fn, arg, schedule_ok=False)
    warmup = _validate.check_int(warmup_steps, fn, "warmup_steps", low=0)
    total = _validate.check_int(decay_steps, fn, "decay_steps", low=warmup + 1)
    alpha: Value
    if isinstance(peak_value, (int, float)) and isinstance(end_value, (int, float)):
        alpha = 0.0 if peak_value == 0.0 else end_value / peak_value
    else:
        peak = jnp.asarray(peak_value)
        alpha = jnp.where(peak == 0.0, 0.0, end_value / jnp.where(peak == 0.0, 1.0, peak))
    decay = cosine_decay(peak_value, total - warmup, alpha, exponent)
    if warmup == 0:
        return decay
    return join([linear_schedule(init_value, peak_value, warmup), decay], [warmup])


def inverse_sqrt(peak_value: Value, warmup_steps: int, init_value: Value = 0.0) -> Schedule:
    r"""Linear warmup to ``peak_value``, then decay as the inverse square root of the step.

    .. math::

        \eta_t = \begin{cases} \eta_0 + (\eta_{peak} - \eta_0)\, t / w & t < w \\
        \eta_{peak} \sqrt{w / t} & t \ge w \end{cases}

    The Transformer's schedule (Vaswani et al., "Attention Is All You Need", NeurIPS 2017, eq. 3:
    ``d^-0.5 min(t^-0.5, t w^-1.5)``, which is this one with ``init_value = 0`` and
    ``peak_value = (d w)^-0.5``).

    Args:
        peak_value: ``eta_peak``, the value at step ``w``.
        warmup_steps: ``w >= 1``.
        init_value: ``eta_0``, the value at step 0.

    Returns:
        A :class:`~functrain.typing.Schedule`.

    Raises:
        TypeError: an argument of the wrong type.
        ValueError: ``warmup_steps < 1``.

    Example:
        >>> lr = ft.optim.schedules.inverse_sqrt(1.0, warmup_steps=100)
        >>> [round(float(lr(t)), 4) for t in (0, 50, 100, 400, 10_000)]
        [0.0, 0.5, 1.0, 0.5, 0.1]
    """
    fn = "inverse_sqrt"
    _validate.check_hyperparameter(peak_value, fn, "peak_value", schedule_ok=False)
    warmup = _validate.check_int(warmup_steps, fn, "warmup_steps", low=1)
    _validate.check_hyperparameter(init_value, fn, "init_value", schedule_ok=False)

    def schedule(step: ArrayLike) -> Array:
        t = jnp.asarray(step, jnp.float32)
        rising = init_value + (peak_value - init_value) * t / warmup
        falling = peak_value * jnp.sqrt(warmup / jnp.maximum(t, warmup))
        return f32(jnp.where(t < warmup, rising, falling))

    return schedule


def one_cycle(
    transition_steps: int,
    peak_value: Value,
    pct_start: float = 0.3,
    div_factor: float = 25.0,
    final_div_factor: float = 1e4,
) -> Schedule:
    r"""The 1cycle policy with cosine annealing (Smith & Topin, "Super-Convergence", 2017).

    Rises from ``peak / div_factor`` to ``peak`` over the first ``pct_start`` of the
    ``transition_steps``, then anneals to ``peak / (div_factor * final_div_factor)`` at
    ``transition_steps`` (held afterwards); both phases follow a half cosine,
    ``end + (start - end) (1 + cos(pi x)) / 2``. Same as ``optax.cosine_onecycle_schedule`` and
    PyTorch's ``OneCycleLR(anneal_strategy="cos")``.

    Args:
        transition_steps: total number of steps ``>= 1``.
        peak_value: the maximal value.
        pct_start: fraction of the steps spent rising, in (0, 1).
        div_factor: ``> 0``; the initial value is ``peak / div_factor``.
        final_div_factor: ``> 0``; the final value is ``peak / (div_factor * final_div_factor)``.

    Returns:
        A :class:`~functrain.typing.Schedule`.

    Raises:
        TypeError: an argument of the wrong type.
        ValueError: an argument out of range.

    Example:
        >>> lr = ft.optim.schedules.one_cycle(100, peak_value=1.0)
        >>> [round(float(lr(t)), 4) for t in (0, 30, 100)]
        [0.04, 1.0, 0.0]
    """
    fn = "one_cycle"
    total = _validate.check_int(transition_steps, fn, "transition_steps", low=1)
    _validate.check_hyperparameter(peak_value, fn, "peak_value", schedule_ok=False)
    _validate.check_hyperparameter(pct_start, fn, "pct_start", low=0.0, high=1.0, low_open=True,
                                   high_open=True, schedule_ok=False)
    for name, factor in (("div_factor", div_factor), ("final_div_factor", final_div_factor)):
        _validate.check_hyperparameter(factor, fn, name, low=0.0, low_open=True,
                                       schedule_ok=False)
    mid = int(pct_start * total)
    bounds = (0, mid, total)
    factors = (peak_value / div_factor, div_factor, 1.0 / (div_factor * final_div_factor))

    def schedule(step: ArrayLike) -> Array:
        count = jnp.asarray(step)
        b = jnp.asarray(bounds)
        values = jnp.cumprod(jnp.stack([f32(f) for f in factors]))
        sizes = jnp.maximum(b[1:] - b[:-1], 1)
        inside = jnp.logical_and(b[:-1] <= count, count < b[1:])
        pct = (count - b[:-1]) / sizes
        start, end = values[:-1], values[1:]
        interp = end + (start - end) / 2.0 * (jnp.cos(jnp.pi * pct) + 1)
        return jnp.sum(jnp.where(inside, interp, 0.0)) + (b[-1] <= count) * values[-1]

    return schedule


def join(schedules: Sequence[Schedule], boundaries: Sequence[int]) -> Schedule:
    """Run ``schedules`` one after the other, switching at ``boundaries``.

    Before ``boundaries[0]`` the value is ``schedules[0](t)``; from ``boundaries[i-1]`` on it is
    ``schedules[i](t - boundaries[i-1])`` (each schedule sees the steps since its start). Same as
    ``optax.join_schedules``.

    Args:
        schedules: ``n >= 1`` schedules.
        boundaries: ``n - 1`` strictly increasing step counts ``>= 0``.

    Returns:
        A :class:`~functrain.typing.Schedule`.

    Raises:
        TypeError: a schedule is not callable or a boundary is not an int.
        ValueError: wrong number of boundaries, or boundaries negative or not strictly increasing.

    Example:
        >>> S = ft.optim.schedules
        >>> lr = S.join([S.linear_schedule(0.0, 1.0, 10), S.exponential_decay(1.0, 0.5, 5)], [10])
        >>> [round(float(lr(t)), 4) for t in (0, 5, 10, 15)]
        [0.0, 0.5, 1.0, 0.5]
    """
    fn = "join"
    scheds = list(schedules)
    if not scheds:
        _validate.fail(fn, "schedules", "a non-empty sequence of schedules", scheds)
    for i, s in enumerate(scheds):
        _validate.check_callable(s, fn, f"schedules[{i}]", "a schedule (step -> value)")
    expectation = (f"a sequence of {len(scheds) - 1} strictly increasing int steps >= 0 (one "
                   "fewer than schedules)")
    bounds = check_boundaries(fn, "boundaries", list(boundaries), list(boundaries), expectation)
    if len(bounds) != len(scheds) - 1:
        _validate.fail(fn, "boundaries", expectation, list(boundaries))

    def schedule(step: ArrayLike) -> Array:
        count = jnp.asarray(step)
        value = scheds[0](count)
        for boundary, sched in zip(bounds, scheds[1:]):
            value = jnp.where(count < boundary, value, sched(count - boundary))
        return f32(value)

    return schedule
