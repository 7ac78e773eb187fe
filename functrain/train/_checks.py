"""Private argument validation shared by the training modules.

All checks look only at static information (Python values, shapes, dtypes), so under ``jax.jit``
they run once at trace time and cost nothing in the compiled program. Traced values are never
inspected.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import numpy as np

from functrain import _tree
from functrain.typing import PyTree

__all__ = ["check_batch_size", "check_data", "concrete_float", "int_arg", "number_arg"]


def int_arg(value: object, name: str, who: str, *, low: int) -> int:
    """A Python/NumPy int ``>= low`` (bools rejected), returned as ``int``."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{who}: argument '{name}' must be an int, got {type(value).__name__} {value!r}")
    if value < low:
        raise ValueError(f"{who}: argument '{name}' must be an int >= {low}, got {int(value)}")
    return int(value)


def concrete_float(value: object, name: str, who: str) -> float | None:
    """``float(value)`` for a concrete real scalar, ``None`` for a traced one."""
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{who}: argument '{name}' must be a number, got bool {value!r}")
    if isinstance(value, (int, float, np.integer, np.floating)):
        return float(value)
    if isinstance(value, (jax.Array, np.ndarray)):
        if value.ndim != 0:
            raise ValueError(f"{who}: argument '{name}' must be a scalar, got shape {value.shape}")
        try:
            return float(np.asarray(value))
        except (jax.errors.TracerArrayConversionError, jax.errors.ConcretizationTypeError):
            return None
    raise TypeError(f"{who}: argument '{name}' must be a number, got {type(value).__name__}")


def number_arg(value: object, name: str, who: str, *, low: float | None = None,
               high: float | None = None, low_open: bool = False, high_open: bool = False) -> None:
    """``ValueError`` unless a concrete ``value`` is a non-NaN number in the given range."""
    v = concrete_float(value, name, who)
    if v is None:
        return
    ok = not math.isnan(v)
    if low is not None:
        ok = ok and (v > low if low_open else v >= low)
    if high is not None:
        ok = ok and (v < high if high_open else v <= high)
    if not ok:
        lo = "" if low is None else f"{'>' if low_open else '>='} {low:g}"
        hi = "" if high is None else f"{'<' if high_open else '<='} {high:g}"
        rng = " and ".join(s for s in (lo, hi) if s) or "a real number"
        raise ValueError(f"{who}: argument '{name}' must be {rng}, got {v!r}")


def check_data(data: PyTree, who: str, name: str = "data") -> int:
    """Check that ``data`` is a non-empty pytree of arrays with one common leading length ``n``.

    Returns:
        ``n``, the number of examples.
    """
    leaves = _tree.tree_leaves_with_path(data)
    if not leaves:
        raise ValueError(f"{who}: argument '{name}' must contain at least one array, got {data!r}")
    lengths: dict[str, int] = {}
    for path, leaf in leaves:
        shape: Any = getattr(leaf, "shape", None)
        if shape is None:
            raise TypeError(f"{who}: every leaf of '{name}' must be an array, got "
                            f"{type(leaf).__name__} at {name}{path}")
        if len(shape) == 0:
            raise ValueError(f"{who}: every array in '{name}' needs a leading example axis, got a "
                             f"scalar at {name}{path}")
        lengths[f"{name}{path}"] = int(shape[0])
    if len(set(lengths.values())) != 1:
        raise ValueError(f"{who}: the arrays in '{name}' must have the same leading length "
                         f"(number of examples), got {lengths}")
    n = next(iter(lengths.values()))
    if n == 0:
        raise ValueError(f"{who}: argument '{name}' has no examples (leading length 0)")
    return n


def check_batch_size(batch_size: object, n: int, who: str, name: str = "batch_size") -> int:
    """``batch_size`` as an int in ``[1, n]``."""
    bs = int_arg(batch_size, name, who, low=1)
    if bs > n:
        raise ValueError(f"{who}: argument '{name}' must be <= the number of examples {n}, got {bs}")
    return bs
