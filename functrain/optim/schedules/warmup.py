"""Warmup for any schedule: a linear ramp in front of it.

:func:`with_warmup` puts a linear warmup (Goyal et al., "Accurate, Large Minibatch SGD: Training
ImageNet in 1 Hour", 2017) in front of any :class:`~functrain.typing.Schedule` (functrain's or
optax's) or constant.
"""

from __future__ import annotations

import jax.numpy as jnp
from jax.typing import ArrayLike

from functrain import _validate
from functrain.optim.schedules._common import Value, f32
from functrain.typing import Array, ScalarOrSchedule, Schedule

__all__ = ["with_warmup"]


def with_warmup(schedule: ScalarOrSchedule, warmup_steps: int, init_value: Value = 0.0, *,
                shift: bool = True) -> Schedule:
    r"""Linear warmup from ``init_value`` for ``warmup_steps`` steps, then ``schedule``.

    With ``w = warmup_steps`` and ``s = schedule``, by default (``shift=True``)

    .. math::

        \eta_t = \begin{cases} \eta_0 + (s(0) - \eta_0)\, t / w & t < w \\
        s(t - w) & t \ge w \end{cases}

    the convention of ``optax.join_schedules`` (and of ``optax.warmup_cosine_decay_schedule``):
    the schedule starts its own clock when the warmup ends, so the ramp reaches exactly the
    schedule's first value and a decay keeps its full length (the run lasts ``w`` steps longer).
    With ``shift=False`` the schedule keeps the global step, ``s(t)`` for ``t >= w``, and the ramp
    climbs to ``s(w)``: the warmup replaces the schedule's first ``w`` steps (PyTorch-style, for a
    decay whose length already counts the warmup). Either way the value is continuous at ``w``.

    Args:
        schedule: a schedule ``step -> value``, or a constant (a number or a, possibly traced,
            scalar array).
        warmup_steps: ``w >= 0``; ``0`` returns the schedule unchanged (as a schedule).
        init_value: ``eta_0``, the value at step 0; may be a traced array.
        shift: whether the schedule's clock starts after the warmup (see above).

    Returns:
        A :class:`~functrain.typing.Schedule` (float32 values).

    Raises:
        TypeError: ``schedule`` is neither callable nor a number, or another argument of the
            wrong type.
        ValueError: ``warmup_steps < 0``.

    Example:
        >>> S = ft.optim.schedules
        >>> lr = S.with_warmup(S.cosine_decay(1.0, 100), warmup_steps=10)
        >>> [round(float(lr(t)), 4) for t in (0, 5, 10, 60, 110)]  # cosine over steps 10..110
        [0.0, 0.5, 1.0, 0.5, 0.0]
        >>> lr = S.with_warmup(S.cosine_decay(1.0, 100), warmup_steps=10, shift=False)
        >>> [round(float(lr(t)), 4) for t in (0, 10, 50, 100)]  # ramp to s(10), then s(t)
        [0.0, 0.9755, 0.5, 0.0]
        >>> round(float(S.with_warmup(0.1, 4, init_value=0.02)(2)), 4)  # a constant works too
        0.06
    """
    fn = "with_warmup"
    if not callable(schedule):
        _validate.check_hyperparameter(schedule, fn, "schedule", schedule_ok=True)
    warmup = _validate.check_int(warmup_steps, fn, "warmup_steps", low=0)
    _validate.check_hyperparameter(init_value, fn, "init_value", schedule_ok=False)
    shifted = _validate.check_bool(shift, fn, "shift")

    def base(step: ArrayLike) -> Array:
        return f32(schedule(step)) if callable(schedule) else f32(jnp.broadcast_to(schedule, ()))

    if warmup == 0:
        return base

    def warmed(step: ArrayLike) -> Array:
        t = jnp.asarray(step)
        target = base(0 if shifted else warmup)
        ramp = init_value + (target - init_value) * (t.astype(jnp.float32) / warmup)
        after = base(jnp.maximum(t - warmup, 0) if shifted else t)  # never a negative step
        return f32(jnp.where(t < warmup, ramp, after))

    return warmed
