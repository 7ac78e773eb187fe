"""Hyperparameters as data: validation of concrete values and evaluation of schedules.

Every hyperparameter of a transformation may be a Python number, a (possibly traced) scalar array
or, where it makes sense, a :class:`~functrain.typing.Schedule`. Concrete values are validated
when the transformation is built; traced values (inside ``jax.jit`` or ``jax.vmap``) cannot be
inspected and are passed through unchecked, so that ``jax.vmap`` over a vector of learning rates
works.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from functrain._tree import check_same_structure
from functrain.typing import Array, PyTree, ScalarOrSchedule

__all__ = [
    "check_int",
    "check_params",
    "check_updates",
    "check_scalar",
    "increment",
    "is_schedule",
    "like",
    "require_step",
    "value_at",
]

_INT32_MAX = int(np.iinfo(np.int32).max)


def is_schedule(value: object) -> bool:
    """Whether a hyperparameter is a schedule (a callable ``step -> value``)."""
    return callable(value)


def _concrete_float(fn: str, arg: str, value: object) -> float | None:
    """``float(value)`` for a concrete scalar, ``None`` when traced; TypeError for non-numbers."""
    if isinstance(value, bool) or isinstance(value, np.bool_):
        raise TypeError(f"{fn}: {arg} expected a number, an array or a schedule, got bool {value!r}")
    if isinstance(value, (int, float, np.integer, np.floating)):
        return float(value)
    if isinstance(value, (jax.Array, np.ndarray)):
        if value.ndim != 0:
            raise ValueError(f"{fn}: {arg} expected a scalar, got an array of shape {value.shape}")
        if not (jnp.issubdtype(value.dtype, jnp.floating) or jnp.issubdtype(value.dtype, jnp.integer)):
            raise TypeError(f"{fn}: {arg} expected a real number, got an array of dtype {value.dtype}")
        try:
            return float(np.asarray(value))
        except (jax.errors.TracerArrayConversionError, jax.errors.ConcretizationTypeError):
            return None  # traced (under jit/vmap): cannot be checked
    raise TypeError(
        f"{fn}: {arg} expected a number, a scalar array or a schedule, got {type(value).__name__}"
    )


def check_scalar(
    fn: str,
    arg: str,
    value: object,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
    schedule_ok: bool = True,
) -> None:
    """Validate a scalar hyperparameter when it is concrete.

    Args:
      fn: name of the public function, used in the message.
      arg: name of the argument, used in the message.
      value: the hyperparameter: a number, a scalar array, or (if ``schedule_ok``) a schedule.
      low: smallest allowed value (``None``: unbounded).
      high: largest allowed value (``None``: unbounded).
      low_open: whether ``low`` itself is excluded.
      high_open: whether ``high`` itself is excluded.
      schedule_ok: whether a schedule is accepted (its values are not checked).

    Raises:
      TypeError: ``value`` is not a number, a scalar array or an allowed schedule.
      ValueError: ``value`` is a non-scalar array, NaN, or outside the allowed range.
    """
    if callable(value):
        if schedule_ok:
            return
        raise TypeError(f"{fn}: {arg} expected a number or a scalar array, got a callable {value!r}")
    v = _concrete_float(fn, arg, value)
    if v is None:
        return
    lo_ok = low is None or (v > low if low_open else v >= low)
    hi_ok = high is None or (v < high if high_open else v <= high)
    if math.isnan(v) or not (lo_ok and hi_ok):
        raise ValueError(f"{fn}: {arg} expected {_describe(low, high, low_open, high_open)}, got {v!r}")


def _describe(low: float | None, high: float | None, low_open: bool, high_open: bool) -> str:
    if low is not None and high is not None:
        return f"a value in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
    if low is not None:
        return f"a value {'>' if low_open else '>='} {low:g}"
    if high is not None:
        return f"a value {'<' if high_open else '<='} {high:g}"
    return "a real number"


def check_int(fn: str, arg: str, value: object, *, low: int) -> int:
    """Validate a concrete integer argument (a step count, ``every_k`` ...) and return it.

    Raises:
      TypeError: ``value`` is not a Python/NumPy integer (bools are rejected).
      ValueError: ``value < low``.
    """
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{fn}: {arg} expected an int, got {type(value).__name__} {value!r}")
    if value < low:
        raise ValueError(f"{fn}: {arg} expected an int >= {low}, got {int(value)}")
    return int(value)


def require_step(fn: str, step: Array | None) -> Array:
    """The step counter of a scheduled transformation's state.

    Raises:
      TypeError: the state carries no step counter (it was not built by this transformation's
        ``init``).
    """
    if step is None:
        raise TypeError(
            f"{fn}: a scheduled hyperparameter needs the step counter in the state, but "
            "state.step is None (was the state built by this transformation's init?)"
        )
    return step


def value_at(fn: str, value: ScalarOrSchedule, step: Array | None) -> float | Array:
    """The value of a hyperparameter at ``step``: ``value(step)`` for a schedule, else ``value``.

    Raises:
      TypeError: ``value`` is a schedule but the state carries no step counter.
    """
    if callable(value):
        return value(require_step(fn, step))
    return value


def like(value: float | Array, leaf: Array) -> float | Array:
    """``value`` ready to combine with ``leaf``: Python numbers stay (weakly typed), arrays are
    cast to ``leaf.dtype`` so that scalar hyperparameters never promote low-precision leaves."""
    if isinstance(value, (int, float)):
        return value
    return jnp.asarray(value).astype(leaf.dtype)


def increment(step: Array) -> Array:
    """``step + 1``, saturating at the int32 maximum instead of overflowing."""
    return jnp.where(step < _INT32_MAX, step + 1, step)


def check_updates(fn: str, updates: PyTree, moments: PyTree, field: str) -> None:
    """TypeError unless ``updates`` has the structure of a state tree built by ``init(params)``."""
    check_same_structure(moments, updates, name=f"{fn}: updates",
                         expected_name=f"state.{field} (the params given to init)")


def check_params(fn: str, updates: PyTree, params: PyTree | None) -> PyTree:
    """The ``params`` argument of a transformation that needs it, with the updates' structure.

    Raises:
      TypeError: ``params`` is ``None`` or its tree structure differs from ``updates``'.
    """
    if params is None:
        raise TypeError(f"{fn}: update expected the current params as third argument, got None")
    check_same_structure(params, updates, name=f"{fn}: updates", expected_name="params")
    return params
