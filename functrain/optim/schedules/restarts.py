"""Cosine annealing with warm restarts (SGDR, Loshchilov & Hutter 2017).

:func:`sgdr` repeats a cosine decay (each cycle optionally with a linear warmup), restarting at
the peak value at the start of every cycle; cycles may grow geometrically and peaks decay. Its
values match ``optax.sgdr_schedule`` built from the same cycles.
"""

from __future__ import annotations

import jax.numpy as jnp
from jax.typing import ArrayLike

from functrain import _validate
from functrain.optim.schedules._common import Value
from functrain.optim.schedules.composite import join, warmup_cosine_decay
from functrain.typing import Array, Schedule

__all__ = ["sgdr"]

_MAX_JOINED = 64
"""Equal cycles with decaying peaks are joined one by one up to this many cycles (else computed
by division, with the peak as an array)."""


def _growing_cycles(first: int, mult: int, n_cycles: int | None) -> tuple[list[int], list[int]]:
    """Start steps and lengths of the cycles (``mult >= 2``, or ``n_cycles`` given).

    Without ``n_cycles``, cycles are listed until one would start beyond the int32 step counter
    (at most 32 for ``mult >= 2``).
    """
    starts, lengths = [0], [first]
    while n_cycles is None or len(starts) < n_cycles:
        nxt = starts[-1] + lengths[-1]
        if nxt > _validate.INT32_MAX:
            break
        starts.append(nxt)
        lengths.append(min(lengths[-1] * mult, _validate.INT32_MAX))
    return starts, lengths


def sgdr(
    peak_value: Value,
    cycle_steps: int,
    cycle_mult: int = 1,
    end_value: Value = 0.0,
    warmup_steps: int = 0,
    init_value: Value = 0.0,
    peak_decay: float | Array = 1.0,
    n_cycles: int | None = None,
    exponent: float | Array = 1.0,
) -> Schedule:
    r"""SGDR: cosine decays from the peak to ``end_value``, restarted at the peak every cycle.

    Cycle ``i = 0, 1, ...`` lasts ``T_i = T_0 m^i`` steps and peaks at ``eta_i = peak
    decay^i``; at step ``s`` of its cycle (after a linear warmup of ``w`` steps from
    ``init_value``, if any)

    .. math::

        \eta = \eta_{end} + (\eta_i - \eta_{end}) \left[\tfrac12 \left(1 + \cos \frac{\pi (s - w)}
        {T_i - w}\right)\right]^p

    (Loshchilov & Hutter, "SGDR: Stochastic Gradient Descent with Warm Restarts", ICLR 2017:
    ``T_0``, ``T_mult = m``, ``eta_max``, ``eta_min``.) Without ``n_cycles`` the restarts go on for
    ever; with it the value stays at ``end_value`` after the last cycle. Each cycle is a
    :func:`~functrain.optim.schedules.warmup_cosine_decay`, joined as ``optax.sgdr_schedule``
    joins one ``warmup_cosine_decay_schedule`` per cycle (``decay_steps = T_i``, ``warmup_steps =
    w``, ``peak_value = eta_i``, ``init_value``, ``end_value``, ``exponent``): the same values.

    Args:
        peak_value: ``eta_0``, the first cycle's peak (a number or a scalar array).
        cycle_steps: ``T_0 >= 1``, the length of the first cycle.
        cycle_mult: ``m >= 1``, the factor by which each cycle is longer than the previous one.
        end_value: ``eta_end``, the value at the end of every cycle.
        warmup_steps: ``w`` in ``[0, T_0)``, a linear warmup at the start of every cycle.
        init_value: where each warmup starts.
        peak_decay: ``> 0``, the factor by which each cycle's peak is smaller than the previous.
        n_cycles: the number of cycles (``None``: without end).
        exponent: ``p > 0``, the power of the cosine factor.

    Returns:
        A :class:`~functrain.typing.Schedule`.

    Raises:
        TypeError: an argument of the wrong type.
        ValueError: an argument out of range.

    Example:
        >>> lr = ft.optim.schedules.sgdr(1.0, cycle_steps=10, cycle_mult=2)
        >>> [round(float(lr(t)), 4) for t in (0, 5, 9, 10, 20, 30, 70)]  # cycles 10, 20, 40 ...
        [1.0, 0.5, 0.0245, 1.0, 0.5, 1.0, 1.0]
    """
    fn = "sgdr"
    for name, value in (("peak_value", peak_value), ("end_value", end_value),
                        ("init_value", init_value)):
        _validate.check_hyperparameter(value, fn, name, schedule_ok=False)
    first = _validate.check_int(cycle_steps, fn, "cycle_steps", low=1)
    mult = _validate.check_int(cycle_mult, fn, "cycle_mult", low=1)
    warmup = _validate.check_int(warmup_steps, fn, "warmup_steps", low=0, high=first - 1)
    _validate.check_hyperparameter(peak_decay, fn, "peak_decay", low=0.0, low_open=True,
                                   schedule_ok=False)
    n = None if n_cycles is None else _validate.check_int(n_cycles, fn, "n_cycles", low=1)
    _validate.check_hyperparameter(exponent, fn, "exponent", low=0.0, low_open=True,
                                   schedule_ok=False)
    unit_decay = isinstance(peak_decay, (int, float)) and peak_decay == 1.0

    def cycle(peak: Value, length: int) -> Schedule:  # one cycle: optax's form, per cycle
        return warmup_cosine_decay(init_value, peak, warmup, length, end_value, exponent)

    if mult == 1 and (n is None or n > _MAX_JOINED or unit_decay):
        # equal cycles: the cycle index by division
        same = cycle(peak_value, first) if unit_decay else None

        def schedule(step: ArrayLike) -> Array:
            t = jnp.asarray(step)
            i = t // first if n is None else jnp.minimum(t // first, n - 1)
            s = t - i * first
            return same(s) if same is not None else cycle(peak_value * peak_decay**i, first)(s)

        return schedule
    starts, lengths = _growing_cycles(first, mult, n)
    peaks: list[Value] = [peak_value * peak_decay**i for i in range(len(starts))]
    return join([cycle(p, length) for p, length in zip(peaks, lengths)], starts[1:])
