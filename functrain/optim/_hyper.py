"""Hyperparameters as data: their value at a step, cast like a leaf, and the step counter; and
:func:`abs_sq`, the squared magnitude that makes the optimizers correct on complex parameters.

Every hyperparameter of a transformation may be a Python number, a (possibly traced) scalar array
or, where it makes sense, a :class:`~functrain.typing.Schedule`. These helpers evaluate them inside
``update``; the argument checks live in :mod:`functrain._validate`.
"""

from __future__ import annotations

import jax.numpy as jnp

from functrain._validate import INT32_MAX
from functrain.typing import Array, ScalarOrSchedule

__all__ = ["abs_sq", "increment", "like", "value_at", "zero_step"]


def zero_step() -> Array:
    """A fresh step counter: the int32 scalar ``0``."""
    return jnp.zeros((), jnp.int32)


def increment(step: Array) -> Array:
    """``step + 1``, saturating at the int32 maximum instead of overflowing (two scalar ops)."""
    return jnp.minimum(step, INT32_MAX - 1) + 1


def value_at(value: ScalarOrSchedule, step: Array) -> float | Array:
    """The value of a hyperparameter at ``step``: ``value(step)`` for a schedule, else ``value``.

    A constant is returned as is, so it adds no operation to the compiled update.
    """
    if callable(value):
        return value(step)
    return value


def abs_sq(x: Array) -> Array:
    """``|x|^2`` elementwise: ``x**2`` for real arrays (the same program as before), the real
    ``(conj(x) * x).real`` for complex ones, as optax's ``numerics.abs_sq``. Second moments,
    norms and RMS values of complex gradients need it: ``g**2`` is complex and wrong there."""
    if jnp.iscomplexobj(x):
        return (jnp.conj(x) * x).real
    return x**2


def like(value: float | Array, leaf: Array) -> float | Array:
    """``value`` ready to combine with ``leaf``: Python numbers stay (weakly typed), arrays are
    cast to ``leaf.dtype`` so that scalar hyperparameters never promote low-precision leaves."""
    if isinstance(value, (int, float)):
        return value
    return jnp.asarray(value).astype(leaf.dtype)
