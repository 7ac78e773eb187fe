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
from typing import NamedTuple, cast

import jax.numpy as jnp

from jaxtyping import Float

from functrain import _tree, _validate
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

    Example:
        >>> stats = ft.data.MinMaxStats(data_min=jnp.zeros(2), data_max=jnp.full(2, 4.0),
        ...                             lower=0.0, upper=1.0)  # usually from fit_min_max
        >>> ft.data.min_max_scale(stats, np.array([1.0, 2.0])).tolist()
        [0.25, 0.5]
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

    Example:
        >>> stats = ft.data.StandardizeStats(mean=jnp.ones(2), std=jnp.full(2, 2.0))
        >>> ft.data.standardize(stats, np.array([3.0, -1.0])).tolist()
        [1.0, -1.0]
    """

    mean: Array
    std: Array


def _as_float(x: ArrayLike, who: str, name: str = "x") -> Array:
    """``x`` as a real floating array (integers and bools read as float32)."""
    try:
        arr = jnp.asarray(x)
    except TypeError:
        _validate.fail(who, name, "a real numeric array", x, error=TypeError)
    numeric = jnp.issubdtype(arr.dtype, jnp.number) or arr.dtype == jnp.bool_
    if not numeric or jnp.issubdtype(arr.dtype, jnp.complexfloating):
        _validate.fail(who, name, "a real numeric array", arr, error=TypeError)
    if not jnp.issubdtype(arr.dtype, jnp.floating):
        arr = arr.astype(jnp.float32)
    return arr


def _leading_axes(axis: int | Sequence[int], ndim: int, who: str) -> tuple[int, ...]:
    """The ``k`` leading axes ``(0, ..., k-1)`` that ``axis`` names, checked against ``ndim``."""
    expectation = ("an int or a sequence of ints naming the leading axes (0, ..., k-1), "
                   "e.g. 0 or (0, 1, 2)")
    raw = cast(object, axis)  # the static type is not enforced
    if _tree.is_bool(raw) or not (_tree.is_int(raw) or _tree.is_sequence(raw)):
        _validate.fail(who, "axis", expectation, axis, error=TypeError)
    items: list[object] = [raw] if _tree.is_int(raw) else list(raw)
    if any(_tree.is_bool(a) or not _tree.is_int(a) for a in items):
        _validate.fail(who, "axis", expectation, axis, error=TypeError)
    k = len(items)
    if k == 0 or sorted(int(a) for a in items if _tree.is_int(a)) != list(range(k)):
        _validate.fail(who, "axis", expectation, axis)
    if k > ndim:
        _validate.fail(who, "axis", f"at most the {ndim} axes of 'x' (of rank {ndim})", axis)
    return tuple(range(k))


def _fit_input(x: ArrayLike, axis: int | Sequence[int], who: str) -> tuple[Array, tuple[int, ...]]:
    arr = _as_float(x, who)
    if arr.ndim == 0:
        _validate.fail(who, "x", "an array with at least one (sample) axis", arr)
    axes = _leading_axes(axis, arr.ndim, who)
    if math.prod(arr.shape[: len(axes)]) == 0:
        _validate.fail(who, "x", "an array with at least one sample to fit on", arr)
    return arr, axes


def _check_stats(stats: object, kind: type[MinMaxStats] | type[StandardizeStats], who: str) -> None:
    if not isinstance(stats, kind):
        maker = "fit_min_max" if kind is MinMaxStats else "fit_standardize"
        _validate.fail(who, "stats", f"a {kind.__name__} (from {maker})", stats, error=TypeError)


def _check_trailing(x: Array, stat: Array, who: str, name: str = "x") -> None:
    """``x``'s trailing axes must be the statistics' shape (a chex shape assertion)."""
    k = stat.ndim
    if x.ndim < k:
        _validate.fail(who, name, f"an array whose trailing axes have the shape of the fitted "
                       f"statistics {tuple(stat.shape)}", x)
    _validate.check_shape(x, (None,) * (x.ndim - k) + tuple(stat.shape), who, name)


def _check_range(feature_range: object, who: str) -> tuple[float, float]:
    expectation = "a pair of finite numbers (lower, upper) with lower < upper"
    if not _tree.is_sequence(feature_range) or isinstance(feature_range, str) \
            or len(feature_range) != 2:
        _validate.fail(who, "feature_range", expectation, feature_range, error=TypeError)
    values = [_validate.concrete_float(v, who, "feature_range") for v in feature_range]
    lower, upper = values
    if lower is None or upper is None:
        _validate.fail(who, "feature_range", "a pair of concrete (not traced) numbers",
                       feature_range, error=TypeError)
    if not (math.isfinite(lower) and math.isfinite(upper) and lower < upper):
        _validate.fail(who, "feature_range", expectation, feature_range)
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
        TypeError: non-numeric ``x``, or ``feature_range``/``axis`` of the wrong kind.
        ValueError: empty ``x``, bad ``axis`` or ``feature_range`` (``lower >= upper``).

    Example:
        >>> stats = ft.data.fit_min_max(np.array([[0.0, 10.0], [4.0, 30.0]]), (-1.0, 1.0))
        >>> stats.data_min.tolist(), stats.data_max.tolist(), stats.lower, stats.upper
        ([0.0, 10.0], [4.0, 30.0], -1.0, 1.0)
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
        TypeError: ``stats`` is not a :class:`MinMaxStats`, or ``x`` is not numeric.
        ValueError: ``x``'s trailing axes do not match the statistics.

    Example:
        >>> x_train = np.array([[0.0, 10.0], [4.0, 30.0]])
        >>> stats = ft.data.fit_min_max(x_train)
        >>> ft.data.min_max_scale(stats, np.array([[2.0, 20.0], [8.0, 10.0]])).tolist()
        [[0.5, 0.5], [2.0, 0.0]]
    """
    who = "min_max_scale"
    _check_stats(stats, MinMaxStats, who)
    arr = _as_float(x, who)
    _check_trailing(arr, stats.data_min, who)
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
        TypeError: ``stats`` is not a :class:`MinMaxStats`, or ``y`` is not numeric.
        ValueError: ``y``'s trailing axes do not match the statistics.

    Example:
        >>> stats = ft.data.fit_min_max(np.array([[0.0], [4.0]]), (-1.0, 1.0))
        >>> ft.data.inverse_min_max_scale(stats, np.array([[-1.0], [0.0], [1.0]])).tolist()
        [[0.0], [2.0], [4.0]]
    """
    who = "inverse_min_max_scale"
    _check_stats(stats, MinMaxStats, who)
    arr = _as_float(y, who, "y")
    _check_trailing(arr, stats.data_min, who, "y")
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
        TypeError: non-numeric ``x``, or ``axis`` not an int or a sequence of ints.
        ValueError: empty ``x`` or bad ``axis``.

    Example:
        >>> images = np.arange(24.0).reshape(2, 2, 2, 3)           # (n, h, w, channels)
        >>> stats = ft.data.fit_standardize(images, axis=(0, 1, 2))  # per channel
        >>> stats.mean.tolist(), stats.std.shape
        ([10.5, 11.5, 12.5], (3,))
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
        TypeError: ``stats`` is not a :class:`StandardizeStats`, or ``x`` is not numeric.
        ValueError: ``x``'s trailing axes do not match the statistics.

    Example:
        >>> stats = ft.data.fit_standardize(np.array([[1.0, 5.0], [3.0, 5.0]]))
        >>> ft.data.standardize(stats, np.array([[1.0, 5.0], [5.0, 7.0]])).tolist()
        [[-1.0, 0.0], [3.0, 2.0]]
    """
    who = "standardize"
    _check_stats(stats, StandardizeStats, who)
    arr = _as_float(x, who)
    _check_trailing(arr, stats.mean, who)
    return ((arr - stats.mean) / stats.std).astype(arr.dtype)


def inverse_standardize(stats: StandardizeStats, y: ArrayLike) -> Float[Array, "*shape"]:
    """Undo :func:`standardize`: ``x = y * std + mean``.

    Args:
        stats: the statistics used to standardize.
        y: standardized data whose trailing axes have the shape of ``stats.mean``.

    Returns:
        Data in the original units, same shape as ``y``.

    Raises:
        TypeError: ``stats`` is not a :class:`StandardizeStats`, or ``y`` is not numeric.
        ValueError: ``y``'s trailing axes do not match the statistics.

    Example:
        >>> stats = ft.data.fit_standardize(np.array([[1.0], [3.0]]))
        >>> ft.data.inverse_standardize(stats, np.array([[-1.0], [0.0], [2.0]])).tolist()
        [[1.0], [2.0], [4.0]]
    """
    who = "inverse_standardize"
    _check_stats(stats, StandardizeStats, who)
    arr = _as_float(y, who, "y")
    _check_trailing(arr, stats.mean, who, "y")
    return (arr * stats.std + stats.mean).astype(arr.dtype)
