"""Input scaling fitted on the training data only: min-max scaling and standardization.

The lesson's first trick is to keep values in a small range, typically ``[0, 1]`` or ``[-1, 1]``,
where activation functions are non-linear and floating-point sums lose no precision. Each scaler
is a pair of pure functions around a ``NamedTuple`` of statistics::

    stats = fit_min_max(x_train, feature_range=(-1.0, 1.0))   # statistics of the TRAINING set
    x_train_s = min_max_scale(stats, x_train)
    x_test_s = min_max_scale(stats, x_test)                   # the same statistics, no peeking

Fitting on the training split only keeps information about the test set out of training; the
transforms are plain ``jax.numpy`` and work under ``jax.jit`` and ``jax.vmap``.

Statistics are taken over the leading ``axis`` (the sample axis by default, or for images
``axis=(0, 1, 2)`` for per-channel statistics of ``(n, h, w, c)`` arrays), so they have the shape
of the remaining trailing axes and broadcast against a batch or a single example.

Constant features (all training values equal) would divide by zero. As in scikit-learn's
``MinMaxScaler`` and ``StandardScaler``, their range or standard deviation is replaced by 1: a
constant feature is shifted but not scaled, so its training value maps to the bottom of the range
(min-max) or to 0 (standardization), and the output stays finite.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import jax.numpy as jnp
from jaxtyping import Float

from functrain.typing import Array, ArrayLike

__all__ = [
    "MinMaxStats",
    "StandardizeStats",
    "fit_min_max",
    "fit_standardize",
    "inverse_min_max_scale",
    "inverse_standardize",
    "min_max_scale",
    "standardize",
]


class MinMaxStats(NamedTuple):
    """Statistics of :func:`fit_min_max`.

    Attributes:
        data_min: per-feature minimum of the training data (shape: the non-reduced axes).
        data_max: per-feature maximum of the training data (same shape).
        lower: bottom of the target range (for example 0.0 or -1.0).
        upper: top of the target range (for example 1.0).
    """

    data_min: Array
    data_max: Array
    lower: float
    upper: float


class StandardizeStats(NamedTuple):
    """Statistics of :func:`fit_standardize`.

    Attributes:
        mean: per-feature mean of the training data (shape: the non-reduced axes).
        std: per-feature (population, ``ddof=0``) standard deviation, with 1 in place of 0 for
            constant features.
    """

    mean: Array
    std: Array


def _as_float(x: ArrayLike, who: str, name: str = "x") -> Array:
    try:
        arr = jnp.asarray(x)
    except TypeError as e:
        dtype = getattr(x, "dtype", None)
        what = type(x).__name__ + (f" of dtype {dtype}" if dtype is not None else "")
        raise TypeError(f"{who}: argument '{name}' must be a numeric array, got {what}") from e
    if not (jnp.issubdtype(arr.dtype, jnp.number) or arr.dtype == jnp.bool_):
        raise TypeError(f"{who}: argument '{name}' must be a numeric array, got dtype {arr.dtype}")
    if jnp.issubdtype(arr.dtype, jnp.complexfloating):
        raise TypeError(f"{who}: argument '{name}' must be real, got dtype {arr.dtype}")
    if not jnp.issubdtype(arr.dtype, jnp.floating):
        arr = arr.astype(jnp.float32)
    return arr


def _leading_axes(axis: int | Sequence[int], ndim: int, who: str) -> tuple[int, ...]:
    axes = (axis,) if isinstance(axis, int) else tuple(axis)
    if not all(isinstance(a, int) for a in axes):
        raise TypeError(f"{who}: argument 'axis' must be an int or a sequence of ints, got {axis!r}")
    k = len(axes)
    if k == 0 or sorted(axes) != list(range(k)):
        raise ValueError(
            f"{who}: argument 'axis' must name the leading axes (0, ..., k-1) to reduce over, "
            f"for example 0 or (0, 1, 2); got {axis!r}"
        )
    if k > ndim:
        raise ValueError(
            f"{who}: argument 'axis' {axis!r} reduces {k} axes but 'x' has only {ndim}"
        )
    return tuple(range(k))


def _fit_input(x: ArrayLike, axis: int | Sequence[int], who: str) -> tuple[Array, tuple[int, ...]]:
    arr = _as_float(x, who)
    if arr.ndim == 0:
        raise ValueError(f"{who}: argument 'x' must have at least one (sample) axis, got a scalar")
    axes = _leading_axes(axis, arr.ndim, who)
    if math.prod(arr.shape[: len(axes)]) == 0:
        raise ValueError(f"{who}: argument 'x' has no samples to fit on (shape {arr.shape})")
    return arr, axes


def _check_trailing(x: Array, stat: Array, who: str, name: str = "x") -> None:
    k = stat.ndim
    if x.ndim < k or tuple(x.shape[x.ndim - k:]) != tuple(stat.shape):
        raise ValueError(
            f"{who}: argument '{name}' of shape {tuple(x.shape)} does not match the fitted statistics: "
            f"its trailing axes must be {tuple(stat.shape)}"
        )


def _check_range(feature_range: tuple[float, float], who: str) -> tuple[float, float]:
    try:
        lower, upper = (float(v) for v in feature_range)
    except (TypeError, ValueError) as e:
        raise TypeError(
            f"{who}: argument 'feature_range' must be a pair of numbers (lower, upper), "
            f"got {feature_range!r}"
        ) from e
    if not (math.isfinite(lower) and math.isfinite(upper) and lower < upper):
        raise ValueError(
            f"{who}: argument 'feature_range' must be finite with lower < upper, got {feature_range!r}"
        )
    return lower, upper


def fit_min_max(
    x: ArrayLike,
    feature_range: tuple[float, float] = (0.0, 1.0),
    axis: int | Sequence[int] = 0,
) -> MinMaxStats:
    """Fit min-max scaling to ``feature_range`` on (training) data ``x``.

    Args:
        x: training data, ``(n, *features)``; integer data (e.g. raw pixels) is read as float32.
        feature_range: the target range ``(lower, upper)``, typically ``(0, 1)`` or ``(-1, 1)``.
        axis: the leading axes to reduce over: ``0`` (per feature) or e.g. ``(0, 1, 2)`` for
            per-channel statistics of ``(n, h, w, c)`` images.

    Returns:
        :class:`MinMaxStats` with ``data_min``/``data_max`` of shape ``x.shape[len(axis):]``.

    Raises:
        ValueError: empty ``x``, bad ``axis`` or ``feature_range`` (``lower >= upper``).
        TypeError: non-numeric ``x``.
    """
    who = "fit_min_max"
    lower, upper = _check_range(feature_range, who)
    arr, axes = _fit_input(x, axis, who)
    return MinMaxStats(jnp.min(arr, axis=axes), jnp.max(arr, axis=axes), lower, upper)


def _safe_range(stats: MinMaxStats) -> Array:
    span = stats.data_max - stats.data_min
    return jnp.where(span > 0, span, jnp.ones_like(span))


def min_max_scale(stats: MinMaxStats, x: ArrayLike) -> Float[Array, "*shape"]:
    """Scale ``x`` with fitted min-max statistics.

    ``y = lower + (x - data_min) * (upper - lower) / (data_max - data_min)``, with the range of a
    constant feature taken as 1 (its training value maps to ``lower``). Test data may fall outside
    ``[lower, upper]``: values are not clipped.

    Args:
        stats: from :func:`fit_min_max` (on the training data).
        x: data whose trailing axes have the shape of ``stats.data_min``.

    Returns:
        The scaled data, same shape as ``x`` (float).

    Raises:
        ValueError: if ``x``'s trailing axes do not match the statistics.
    """
    arr = _as_float(x, "min_max_scale")
    _check_trailing(arr, stats.data_min, "min_max_scale")
    scale = (stats.upper - stats.lower) / _safe_range(stats)
    return (stats.lower + (arr - stats.data_min) * scale).astype(arr.dtype)


def inverse_min_max_scale(stats: MinMaxStats, y: ArrayLike) -> Float[Array, "*shape"]:
    """Undo :func:`min_max_scale`: ``x = data_min + (y - lower) * (data_max - data_min) / (upper - lower)``.

    Args:
        stats: the statistics used to scale.
        y: scaled data whose trailing axes have the shape of ``stats.data_min``.

    Returns:
        Data in the original units, same shape as ``y``.

    Raises:
        ValueError: if ``y``'s trailing axes do not match the statistics.
    """
    arr = _as_float(y, "inverse_min_max_scale", "y")
    _check_trailing(arr, stats.data_min, "inverse_min_max_scale", "y")
    scale = _safe_range(stats) / (stats.upper - stats.lower)
    return (stats.data_min + (arr - stats.lower) * scale).astype(arr.dtype)


def fit_standardize(x: ArrayLike, axis: int | Sequence[int] = 0) -> StandardizeStats:
    """Fit standardization (zero mean, unit variance per feature) on (training) data ``x``.

    Args:
        x: training data, ``(n, *features)``; integer data is read as float32.
        axis: the leading axes to reduce over (see :func:`fit_min_max`).

    Returns:
        :class:`StandardizeStats` with the mean and the population standard deviation
        (``ddof=0``), the latter set to 1 for constant features (``max == min``).

    Raises:
        ValueError: empty ``x`` or bad ``axis``.
        TypeError: non-numeric ``x``.
    """
    arr, axes = _fit_input(x, axis, "fit_standardize")
    mean = jnp.mean(arr, axis=axes)
    std = jnp.std(arr, axis=axes)
    constant = jnp.max(arr, axis=axes) == jnp.min(arr, axis=axes)
    return StandardizeStats(mean, jnp.where(constant, jnp.ones_like(std), std))


def standardize(stats: StandardizeStats, x: ArrayLike) -> Float[Array, "*shape"]:
    """Standardize ``x``: ``(x - mean) / std`` with fitted statistics.

    Args:
        stats: from :func:`fit_standardize` (on the training data).
        x: data whose trailing axes have the shape of ``stats.mean``.

    Returns:
        The standardized data, same shape as ``x``.

    Raises:
        ValueError: if ``x``'s trailing axes do not match the statistics.
    """
    arr = _as_float(x, "standardize")
    _check_trailing(arr, stats.mean, "standardize")
    return ((arr - stats.mean) / stats.std).astype(arr.dtype)


def inverse_standardize(stats: StandardizeStats, y: ArrayLike) -> Float[Array, "*shape"]:
    """Undo :func:`standardize`: ``x = y * std + mean``.

    Args:
        stats: the statistics used to standardize.
        y: standardized data whose trailing axes have the shape of ``stats.mean``.

    Returns:
        Data in the original units, same shape as ``y``.

    Raises:
        ValueError: if ``y``'s trailing axes do not match the statistics.
    """
    arr = _as_float(y, "inverse_standardize", "y")
    _check_trailing(arr, stats.mean, "inverse_standardize", "y")
    return (arr * stats.std + stats.mean).astype(arr.dtype)
