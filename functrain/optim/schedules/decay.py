"""Decaying schedules: constant, exponential, piecewise constant, polynomial / linear, cosine.

Each factory returns a :class:`~functrain.typing.Schedule` (``step -> float32 scalar``) whose
values match the corresponding ``optax`` schedule.
"""

from __future__ import annotations

from collections.abc import Mapping

import jax.numpy as jnp
from jax.typing import ArrayLike

from functrain import _validate
from functrain.optim.schedules._common import Value, check_boundaries_and_scales, f32
from functrain.typing import Array, Schedule

__all__ = [
    "constant",
    "cosine_decay",
    "exponential_decay",
    "linear_schedule",
    "linear_warmup",
    "piecewise_constant",
    "polynomial",
]


def constant(value: Value) -> Schedule:
    """The constant schedule ``eta_t = value``.

    Args:
        value: a number or a (possibly traced) scalar array.

    Returns:
        A :class:`~functrain.typing.Schedule`.

    Raises:
        TypeError: ``value`` is not a number or scalar array.

    Example:
        >>> lr = ft.optim.schedules.constant(0.1)
        >>> round(float(lr(0)), 4), round(float(lr(1000)), 4)
        (0.1, 0.1)
    """
    _validate.check_hyperparameter(value, "constant", "value", schedule_ok=False)

    def schedule(step: ArrayLike) -> Array:
        del step
        return f32(value)

    return schedule


def exponential_decay(
    init_value: Value,
    decay_rate: Value,
    transition_steps: int = 1,
    staircase: bool = False,
    transition_begin: int = 0,
    end_value: Value | None = None,
) -> Schedule:
    r"""Exponential decay: ``eta_t = eta_0 * r^((t - t_0) / T)`` (``eta_0`` before ``t_0``).

    With ``staircase=True`` the exponent is floored: the value is multiplied by ``r`` once every
    ``T`` steps (``exponential_decay(0.1, 0.98, steps_per_epoch, staircase=True)`` is "x0.98
    after each epoch"). ``end_value`` bounds the value (from below when ``r < 1``, from above
    when ``r > 1``). Same as ``optax.exponential_decay`` (note the argument order: the rate
    comes second here).

    Args:
        init_value: ``eta_0``.
        decay_rate: ``r > 0``.
        transition_steps: ``T >= 1``.
        staircase: floor the exponent.
        transition_begin: ``t_0 >= 0``, the number of steps to hold ``eta_0`` first.
        end_value: optional bound.

    Returns:
        A :class:`~functrain.typing.Schedule`.

    Raises:
        TypeError: an argument of the wrong type.
        ValueError: a concrete ``decay_rate <= 0``, ``transition_steps < 1`` or
            ``transition_begin < 0``.

    Example:
        >>> lr = ft.optim.schedules.exponential_decay(0.1, 0.5, transition_steps=10, staircase=True)
        >>> [round(float(lr(t)), 4) for t in (0, 9, 10, 25)]
        [0.1, 0.1, 0.05, 0.025]
    """
    fn = "exponential_decay"
    _validate.check_hyperparameter(init_value, fn, "init_value", schedule_ok=False)
    _validate.check_hyperparameter(decay_rate, fn, "decay_rate", low=0.0, low_open=True,
                                   schedule_ok=False)
    steps = _validate.check_int(transition_steps, fn, "transition_steps", low=1)
    _validate.check_bool(staircase, fn, "staircase")
    begin = _validate.check_int(transition_begin, fn, "transition_begin", low=0)
    if end_value is not None:
        _validate.check_hyperparameter(end_value, fn, "end_value", schedule_ok=False)

    def schedule(step: ArrayLike) -> Array:
        decreased = jnp.asarray(step) - begin
        p = decreased / steps
        if staircase:
            p = jnp.floor(p)
        value = jnp.where(decreased <= 0, init_value, init_value * jnp.power(decay_rate, p))
        if end_value is not None:
            if isinstance(decay_rate, (int, float)):
                value = (jnp.maximum if decay_rate < 1.0 else jnp.minimum)(value, end_value)
            else:
                value = jnp.where(decay_rate < 1.0, jnp.maximum(value, end_value),
                                  jnp.minimum(value, end_value))
        return f32(value)

    return schedule


def piecewise_constant(
    init_value: Value, boundaries_and_scales: Mapping[int, float] | None = None
) -> Schedule:
    """Piecewise constant: multiply the value by ``scale`` from each boundary step on.

    ``eta_t = eta_0 * prod_{b <= t} scale_b``; e.g. ``piecewise_constant(0.1, {30_000: 0.1,
    60_000: 0.1})`` is the classic step decay. Same as ``optax.piecewise_constant_schedule``,
    except that boundaries must be listed in increasing order.

    Args:
        init_value: ``eta_0``.
        boundaries_and_scales: ``{boundary_step: scale}`` with increasing steps and scales >= 0.

    Returns:
        A :class:`~functrain.typing.Schedule`.

    Raises:
        TypeError: an argument of the wrong type.
        ValueError: boundaries not strictly increasing or negative, or a negative scale.

    Example:
        >>> lr = ft.optim.schedules.piecewise_constant(1.0, {3: 0.5, 6: 0.1})
        >>> [round(float(lr(t)), 4) for t in (0, 3, 6)]
        [1.0, 0.5, 0.05]
    """
    fn = "piecewise_constant"
    _validate.check_hyperparameter(init_value, fn, "init_value", schedule_ok=False)
    bounds, scales = check_boundaries_and_scales(fn, boundaries_and_scales)

    def schedule(step: ArrayLike) -> Array:
        count = jnp.asarray(step)
        value: ArrayLike = init_value
        for threshold, scale in zip(bounds, scales):
            indicator = jnp.maximum(0.0, jnp.sign(threshold - count))
            value = value * indicator + (1 - indicator) * scale * value
        return f32(value)

    return schedule


def polynomial(
    init_value: Value,
    end_value: Value,
    power: float,
    transition_steps: int,
    transition_begin: int = 0,
) -> Schedule:
    r"""Polynomial decay from ``init_value`` to ``end_value`` over ``T`` steps.

    .. math::

        \eta_t = (\eta_0 - \eta_{end}) \left(1 - \frac{\min(\max(t - t_0, 0), T)}{T}\right)^p
        + \eta_{end}

    Same as ``optax.polynomial_schedule``.

    Args:
        init_value: ``eta_0``.
        end_value: ``eta_end``, reached at step ``t_0 + T`` and held afterwards.
        power: ``p > 0`` (1 is linear).
        transition_steps: ``T >= 1``.
        transition_begin: ``t_0 >= 0``.

    Returns:
        A :class:`~functrain.typing.Schedule`.

    Raises:
        TypeError: an argument of the wrong type.
        ValueError: ``power <= 0``, ``transition_steps < 1`` or ``transition_begin < 0``.

    Example:
        >>> lr = ft.optim.schedules.polynomial(1.0, 0.0, power=2.0, transition_steps=10)
        >>> [round(float(lr(t)), 4) for t in (0, 5, 10, 20)]
        [1.0, 0.25, 0.0, 0.0]
    """
    return _polynomial("polynomial", init_value, end_value, power, transition_steps,
                       transition_begin)


def _polynomial(fn: str, init_value: Value, end_value: Value, power: float | int,
                transition_steps: int, transition_begin: int) -> Schedule:
    _validate.check_hyperparameter(init_value, fn, "init_value", schedule_ok=False)
    _validate.check_hyperparameter(end_value, fn, "end_value", schedule_ok=False)
    _validate.check_hyperparameter(power, fn, "power", low=0.0, low_open=True, schedule_ok=False)
    steps = _validate.check_int(transition_steps, fn, "transition_steps", low=1)
    begin = _validate.check_int(transition_begin, fn, "transition_begin", low=0)

    def schedule(step: ArrayLike) -> Array:
        count = jnp.clip(jnp.asarray(step) - begin, 0, steps)
        frac = 1 - count / steps
        return f32((init_value - end_value) * (frac**power) + end_value)

    return schedule


def linear_schedule(
    init_value: Value, end_value: Value, transition_steps: int, transition_begin: int = 0
) -> Schedule:
    """Linear interpolation from ``init_value`` to ``end_value`` over ``transition_steps``.

    ``eta_t = eta_0 + (eta_end - eta_0) min(max(t - t_0, 0), T) / T``, then held at ``eta_end``:
    a linear warmup when ``end_value > init_value``. Same as ``optax.linear_schedule``.

    Args:
        init_value: ``eta_0``.
        end_value: ``eta_end``.
        transition_steps: ``T >= 1``.
        transition_begin: ``t_0 >= 0``.

    Returns:
        A :class:`~functrain.typing.Schedule`.

    Raises:
        TypeError: an argument of the wrong type.
        ValueError: ``transition_steps < 1`` or ``transition_begin < 0``.

    Example:
        >>> warmup = ft.optim.schedules.linear_schedule(0.0, 1.0, transition_steps=4)
        >>> [round(float(warmup(t)), 4) for t in (0, 1, 4, 9)]
        [0.0, 0.25, 1.0, 1.0]
        >>> ft.optim.schedules.linear_warmup is ft.optim.schedules.linear_schedule
        True
    """
    return _polynomial("linear_schedule", init_value, end_value, 1, transition_steps,
                       transition_begin)


linear_warmup = linear_schedule
"""Alias of :func:`linear_schedule`: ``linear_warmup(0.0, peak, warmup_steps)`` ramps up linearly
and then holds ``peak``."""


def cosine_decay(
    init_value: Value, decay_steps: int, alpha: Value = 0.0, exponent: float | Array = 1.0
) -> Schedule:
    r"""Cosine decay (SGDR without restarts), optionally raised to a power.

    .. math::

        \eta_t = \eta_0 \left((1-\alpha) \left[\tfrac12 \left(1 + \cos\frac{\pi \min(t, T)}{T}
        \right)\right]^p + \alpha\right)

    from ``eta_0`` down to ``alpha eta_0`` at step ``T``, then held (Loshchilov & Hutter, "SGDR:
    Stochastic Gradient Descent with Warm Restarts", ICLR 2017). An exponent ``p > 1`` decays
    faster early, ``p < 1`` stays high longer. Same as ``optax.cosine_decay_schedule``.

    Args:
        init_value: ``eta_0``.
        decay_steps: ``T >= 1``.
        alpha: final value as a fraction of ``init_value``.
        exponent: ``p > 0`` (1: the plain cosine).

    Returns:
        A :class:`~functrain.typing.Schedule`.

    Raises:
        TypeError: an argument of the wrong type.
        ValueError: ``decay_steps < 1`` or a concrete ``exponent <= 0``.

    Example:
        >>> lr = ft.optim.schedules.cosine_decay(2.0, decay_steps=10, alpha=0.1)
        >>> [round(float(lr(t)), 4) for t in (0, 5, 10, 20)]
        [2.0, 1.1, 0.2, 0.2]
        >>> squared = ft.optim.schedules.cosine_decay(1.0, decay_steps=10, exponent=2.0)
        >>> round(float(squared(5)), 4)
        0.25
    """
    fn = "cosine_decay"
    _validate.check_hyperparameter(init_value, fn, "init_value", schedule_ok=False)
    _validate.check_hyperparameter(alpha, fn, "alpha", schedule_ok=False)
    steps = float(_validate.check_int(decay_steps, fn, "decay_steps", low=1))
    _validate.check_hyperparameter(exponent, fn, "exponent", low=0.0, low_open=True,
                                   schedule_ok=False)
    plain = isinstance(exponent, (int, float)) and exponent == 1.0

    def schedule(step: ArrayLike) -> Array:
        count = jnp.minimum(jnp.asarray(step), steps)
        cosine = 0.5 * (1 + jnp.cos(jnp.pi * count / steps))
        if not plain:
            cosine = cosine**exponent
        return f32(init_value * ((1 - alpha) * cosine + alpha))

    return schedule
