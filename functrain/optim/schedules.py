"""Hyperparameter schedules: ``step -> float32 scalar``, pure and jit-safe.

Each factory returns a :class:`~functrain.typing.Schedule`, usable as the learning rate (or any
other schedulable hyperparameter) of every functrain optimizer, and of optax's. Values match the
corresponding ``optax`` schedules. Initial/peak/end values may be (traced) arrays, so ``jax.vmap``
over a vector of peak learning rates works; step counts must be concrete Python ints.

``exponential_decay(0.1, 0.98, transition_steps=steps_per_epoch, staircase=True)`` is the classic
"multiply the learning rate by 0.98 after each epoch".
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import jax.numpy as jnp
from jax.typing import ArrayLike

from functrain.optim._hyper import check_int, check_scalar
from functrain.typing import Array, Schedule

__all__ = [
    "constant",
    "cosine_decay",
    "exponential_decay",
    "join",
    "linear_schedule",
    "linear_warmup",
    "one_cycle",
    "piecewise_constant",
    "polynomial",
    "warmup_cosine_decay",
]

Value = float | Array
"""A schedule's level: a Python number or a (possibly traced) scalar array."""


def _f32(x: ArrayLike) -> Array:
    return jnp.asarray(x, dtype=jnp.float32)


def _check_value(fn: str, arg: str, value: object) -> None:
    check_scalar(fn, arg, value, schedule_ok=False)


def constant(value: Value) -> Schedule:
    """The constant schedule ``eta_t = value``.

    Args:
      value: a number or a (possibly traced) scalar array.

    Returns:
      A :class:`~functrain.typing.Schedule`.

    Raises:
      TypeError: ``value`` is not a number or scalar array.
    """
    _check_value("constant", "value", value)

    def schedule(step: ArrayLike) -> Array:
        del step
        return _f32(value)

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
    """
    fn = "exponential_decay"
    _check_value(fn, "init_value", init_value)
    check_scalar(fn, "decay_rate", decay_rate, low=0.0, low_open=True, schedule_ok=False)
    steps = check_int(fn, "transition_steps", transition_steps, low=1)
    begin = check_int(fn, "transition_begin", transition_begin, low=0)
    if end_value is not None:
        _check_value(fn, "end_value", end_value)

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
        return _f32(value)

    return schedule


def _check_boundaries(fn: str, arg: str, boundaries: Sequence[object]) -> list[int]:
    """Non-negative, strictly increasing int boundaries."""
    out = [check_int(fn, f"{arg}[{i}]", b, low=0) for i, b in enumerate(boundaries)]
    for i in range(1, len(out)):
        if out[i] <= out[i - 1]:
            raise ValueError(
                f"{fn}: {arg} expected strictly increasing step boundaries, got {out} "
                f"({out[i]} after {out[i - 1]})"
            )
    return out


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
    """
    fn = "piecewise_constant"
    _check_value(fn, "init_value", init_value)
    items = list((boundaries_and_scales or {}).items())
    bounds = _check_boundaries(fn, "boundaries_and_scales (keys)", [b for b, _ in items])
    scales = [s for _, s in items]
    for b, s in zip(bounds, scales):
        check_scalar(fn, f"boundaries_and_scales[{b}]", s, low=0.0, schedule_ok=False)

    def schedule(step: ArrayLike) -> Array:
        count = jnp.asarray(step)
        value: ArrayLike = init_value
        for threshold, scale in zip(bounds, scales):
            indicator = jnp.maximum(0.0, jnp.sign(threshold - count))
            value = value * indicator + (1 - indicator) * scale * value
        return _f32(value)

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
    """
    return _polynomial("polynomial", init_value, end_value, power, transition_steps,
                       transition_begin)


def _polynomial(fn: str, init_value: Value, end_value: Value, power: float | int,
                transition_steps: int, transition_begin: int) -> Schedule:
    _check_value(fn, "init_value", init_value)
    _check_value(fn, "end_value", end_value)
    check_scalar(fn, "power", power, low=0.0, low_open=True, schedule_ok=False)
    steps = check_int(fn, "transition_steps", transition_steps, low=1)
    begin = check_int(fn, "transition_begin", transition_begin, low=0)

    def schedule(step: ArrayLike) -> Array:
        count = jnp.clip(jnp.asarray(step) - begin, 0, steps)
        frac = 1 - count / steps
        return _f32((init_value - end_value) * (frac**power) + end_value)

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
    """
    return _polynomial("linear_schedule", init_value, end_value, 1, transition_steps,
                       transition_begin)


linear_warmup = linear_schedule
"""Alias of :func:`linear_schedule`: ``linear_warmup(0.0, peak, warmup_steps)`` ramps up linearly
and then holds ``peak``."""


def cosine_decay(init_value: Value, decay_steps: int, alpha: Value = 0.0) -> Schedule:
    r"""Cosine decay (SGDR without restarts).

    .. math::

        \eta_t = \eta_0 \left((1-\alpha) \tfrac12 \left(1 + \cos\frac{\pi \min(t, T)}{T}\right)
        + \alpha\right)

    from ``eta_0`` down to ``alpha eta_0`` at step ``T``, then held (Loshchilov & Hutter, "SGDR:
    Stochastic Gradient Descent with Warm Restarts", ICLR 2017). Same as
    ``optax.cosine_decay_schedule``.

    Args:
      init_value: ``eta_0``.
      decay_steps: ``T >= 1``.
      alpha: final value as a fraction of ``init_value``.

    Returns:
      A :class:`~functrain.typing.Schedule`.

    Raises:
      TypeError: an argument of the wrong type.
      ValueError: ``decay_steps < 1``.
    """
    fn = "cosine_decay"
    _check_value(fn, "init_value", init_value)
    _check_value(fn, "alpha", alpha)
    steps = float(check_int(fn, "decay_steps", decay_steps, low=1))

    def schedule(step: ArrayLike) -> Array:
        count = jnp.minimum(jnp.asarray(step), steps)
        cosine = 0.5 * (1 + jnp.cos(jnp.pi * count / steps))
        return _f32(init_value * ((1 - alpha) * cosine + alpha))

    return schedule


def warmup_cosine_decay(
    init_value: Value,
    peak_value: Value,
    warmup_steps: int,
    decay_steps: int,
    end_value: Value = 0.0,
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

    Returns:
      A :class:`~functrain.typing.Schedule`.

    Raises:
      TypeError: an argument of the wrong type.
      ValueError: ``warmup_steps < 0`` or ``decay_steps <= warmup_steps``.
    """
    fn = "warmup_cosine_decay"
    for arg, v in (("init_value", init_value), ("peak_value", peak_value),
                   ("end_value", end_value)):
        _check_value(fn, arg, v)
    warmup = check_int(fn, "warmup_steps", warmup_steps, low=0)
    total = check_int(fn, "decay_steps", decay_steps, low=warmup + 1)
    alpha: Value
    if isinstance(peak_value, (int, float)) and isinstance(end_value, (int, float)):
        alpha = 0.0 if peak_value == 0.0 else end_value / peak_value
    else:
        peak = jnp.asarray(peak_value)
        alpha = jnp.where(peak == 0.0, 0.0, end_value / jnp.where(peak == 0.0, 1.0, peak))
    decay = cosine_decay(peak_value, total - warmup, alpha)
    if warmup == 0:
        return decay
    return join([linear_schedule(init_value, peak_value, warmup), decay], [warmup])


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
    """
    fn = "one_cycle"
    total = check_int(fn, "transition_steps", transition_steps, low=1)
    _check_value(fn, "peak_value", peak_value)
    check_scalar(fn, "pct_start", pct_start, low=0.0, high=1.0, low_open=True, high_open=True,
                 schedule_ok=False)
    check_scalar(fn, "div_factor", div_factor, low=0.0, low_open=True, schedule_ok=False)
    check_scalar(fn, "final_div_factor", final_div_factor, low=0.0, low_open=True,
                 schedule_ok=False)
    mid = int(pct_start * total)
    bounds = (0, mid, total)
    factors = (peak_value / div_factor, div_factor, 1.0 / (div_factor * final_div_factor))

    def schedule(step: ArrayLike) -> Array:
        count = jnp.asarray(step)
        b = jnp.asarray(bounds)
        values = jnp.cumprod(jnp.stack([_f32(f) for f in factors]))
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
    """
    fn = "join"
    scheds = list(schedules)
    if not scheds:
        raise ValueError(f"{fn}: schedules expected at least one schedule, got none")
    for i, s in enumerate(scheds):
        if not callable(s):
            raise TypeError(f"{fn}: schedules[{i}] expected a schedule (step -> value), got "
                            f"{type(s).__name__}")
    bounds = _check_boundaries(fn, "boundaries", list(boundaries))
    if len(bounds) != len(scheds) - 1:
        raise ValueError(f"{fn}: boundaries expected {len(scheds) - 1} step counts (one fewer "
                         f"than schedules), got {len(bounds)}")

    def schedule(step: ArrayLike) -> Array:
        count = jnp.asarray(step)
        value = scheds[0](count)
        for boundary, sched in zip(bounds, scheds[1:]):
            value = jnp.where(count < boundary, value, sched(count - boundary))
        return _f32(value)

    return schedule
