"""Checks on the values a data file holds: features that fit float32, labels that fit int32.

Private to :mod:`functrain.data`. Each check runs on the array as stored, before any cast, so
nothing is silently changed on the way in: a NaN, an infinity, a float64 value beyond float32's
range, a complex value's imaginary part, a label of ``2**31`` (which int32 would wrap to
``-2**31``) are all refused. Messages name the file and the array, say how many values are bad and
where the first one is (``load_npz: data.npz: 'x' must ..., got 3 ... (the first at index (0, 2):
nan)``).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from functrain import _validate

LABEL_LIMIT = _validate.INT32_MAX
"""Labels must be in ``[0, LABEL_LIMIT)``, so that ``num_classes = 1 + max label`` fits int32."""

_F32_MAX = float(np.finfo(np.float32).max)


def first_bad(bad: np.ndarray[Any, Any], values: np.ndarray[Any, Any], what: str) -> str:
    """``"N <what> (the first at index I: V)"`` for the ``True`` entries of ``bad``.

    ``bad`` is a boolean mask of the shape of ``values``, with at least one ``True``; ``{s}`` in
    ``what`` becomes a plural ``s`` when ``N > 1``.
    """
    n = int(np.count_nonzero(bad))
    what = what.replace("{s}", "" if n == 1 else "s")
    first = int(np.flatnonzero(bad.reshape(-1))[0])
    where = np.unravel_index(first, values.shape)
    index = int(where[0]) if values.ndim == 1 else tuple(int(i) for i in where)
    return f"{n} {what} (the first at index {index}: {values.reshape(-1)[first].item()!r})"


def features(x: np.ndarray[Any, Any], where: str) -> np.ndarray[Any, Any]:
    """``x`` ``(n, ...)`` as float32, after checking that the cast loses nothing but precision.

    Args:
        x: the array as stored in the file.
        where: the message prefix naming loader, file and array, e.g. ``"load_npz: a.npz: 'x'"``.

    Raises:
        ValueError: ``x`` is not numeric or is a scalar, is complex, has no examples or no
            features, holds NaN or infinite values, or values beyond float32's range.
    """
    if not (np.issubdtype(x.dtype, np.number) or x.dtype == np.bool_) or x.ndim == 0:
        raise ValueError(f"{where} must be a numeric array (n, ...), got dtype {x.dtype}, "
                         f"shape {x.shape}")
    if np.issubdtype(x.dtype, np.complexfloating):
        imaginary = x.imag != 0
        got = (first_bad(imaginary, x, "value{s} with a nonzero imaginary part") if imaginary.any()
               else "only zero imaginary parts")
        raise ValueError(f"{where} must hold real numbers, got dtype {x.dtype}: {got}; store "
                         "np.real(x) if the imaginary parts are meant to be dropped")
    if x.shape[0] == 0:
        raise ValueError(f"{where} has no examples")
    if math.prod(x.shape[1:]) == 0:
        raise ValueError(f"{where} has no features: each example has shape {x.shape[1:]}")
    if not np.issubdtype(x.dtype, np.floating):
        return np.asarray(x, np.float32)  # integers and bools: exact or rounded, never overflow
    with np.errstate(over="ignore", invalid="ignore"):
        x32 = np.asarray(x, np.float32)
    finite = np.isfinite(x32)
    if not finite.all():
        nonfinite = ~np.isfinite(x)
        if nonfinite.any():
            raise ValueError(f"{where} must hold finite numbers, got "
                             f"{first_bad(nonfinite, x, 'NaN or infinite value{s}')}")
        raise ValueError(f"{where} must hold values that fit float32 (|v| <= {_F32_MAX:.8g}), got "
                         f"{first_bad(~finite, x, 'value{s} beyond that range')}")
    return x32


def labels(y: np.ndarray[Any, Any], who: str, where: str, key: str) -> np.ndarray[Any, Any]:
    """``y`` ``(n,)`` as int32 class labels, range-checked before the cast.

    Integers (and bools) must lie in ``[0, 2**31 - 1)``. Floats are accepted when every value is
    a whole number in that range (some tools store everything as float64), and refused otherwise:
    ``1.5`` is not a class, and guessing by rounding would hide a mistake.

    Args:
        y: the array as stored in the file.
        who: the loader (for :func:`functrain._validate.check_labels`).
        where: the message prefix naming loader, file and array, e.g. ``"load_npz: a.npz: 'y'"``.
        key: the array's name, e.g. ``"y"``.

    Raises:
        ValueError: ``y`` is not 1-D, not numeric, holds non-whole floats, NaN or infinite
            values, or labels out of range; the message gives how many and the first one.
    """
    if y.ndim != 1:
        raise ValueError(f"{where} must be a 1-D array of class labels, got shape {y.shape}")
    if y.dtype == np.bool_:
        y = y.astype(np.uint8)
    if np.issubdtype(y.dtype, np.floating):
        whole = np.isfinite(y) & (np.floor(y) == y)
        if not whole.all():
            raise ValueError(f"{where} must hold whole-number class labels, got "
                             f"{first_bad(~whole, y, 'non-whole or non-finite value{s}')}")
        out = (y < 0) | (y >= LABEL_LIMIT)
        if out.any():
            raise ValueError(f"{where} must be class labels in [0, {LABEL_LIMIT}), got "
                             f"{first_bad(out, y, 'out of range')}")
        return y.astype(np.int32)
    if not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"{where} must hold integer class labels, got dtype {y.dtype}")
    try:
        _validate.check_labels(y, LABEL_LIMIT, who, key)
    except ValueError as e:  # re-worded: an array in a file, not an argument
        raise ValueError(f"{where}{str(e).removeprefix(f'{who}: argument {key!r}')}") from None
    return y.astype(np.int32)
