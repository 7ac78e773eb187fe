"""Pooling over channels-last inputs, and ``flatten``.

``max_pool`` and ``avg_pool`` slide a window over the spatial axes of ``(N, *spatial, C)`` (or one
example ``(*spatial, C)``); the window's length gives the number of spatial axes (``(2, 2)`` pools
an image, ``(2,)`` a sequence). The stride defaults to the window (non-overlapping pooling) and the
padding to ``"VALID"``.

Each op is one ``lax.reduce_window``, except on the CPU when the stride equals the window (the
default): the windows then tile the input, and pooling is a reshape and a reduction
(:mod:`functrain.layers._tiled_pool`) with the same values and a much cheaper gradient than
XLA's ``select_and_scatter``. The max-pool gradient goes to the *first* maximal element of each
window (row-major), as the stock gradient does on the CPU, so results do not change (ties
included). ``lax.platform_dependent`` keeps the stock lowering on GPU/TPU.

As composable layers: :func:`MaxPool`, :func:`AvgPool`, and the ready-made values
:data:`GlobalAvgPool` and :data:`Flatten`:

>>> model = ft.layers.serial(ft.layers.MaxPool(2), ft.layers.GlobalAvgPool)
>>> model.init(jax.random.key(0), (-1, 8, 8, 3))[2]
(-1, 3)
>>> ft.layers.Flatten.init(jax.random.key(0), (-1, 4, 4, 3))[2]
(-1, 48)
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import jax.numpy as jnp
import numpy as np
from jax import lax
from jaxtyping import Float

from functrain import _jax, _validate
from functrain.layers._geometry import (
    PaddingLike,
    PadSpec,
    check_input_shape,
    layout,
    normalize_padding,
    spatial_output,
)
from functrain.layers._tiled_pool import tiled_pool
from functrain.layers.base import Layer, stateless
from functrain.typing import Array, PRNGKey, PyTree, Shape

__all__ = [
    "AvgPool",
    "Flatten",
    "GlobalAvgPool",
    "MaxPool",
    "avg_pool",
    "flatten",
    "global_avg_pool",
    "max_pool",
]


def _window(window: int | Sequence[int], who: str) -> tuple[int, ...]:
    """An int means a square 2-D window; a sequence gives one size per spatial axis."""
    if isinstance(window, (int, np.integer)) and not isinstance(window, (bool, np.bool_)):
        return _validate.check_ints(window, 2, who, "window")
    try:
        n = len(window)  # type: ignore[arg-type]  # non-sequences are refused below
    except TypeError:
        _validate.fail(who, "window", "an int or a sequence of ints, each >= 1", window, error=TypeError)
    if n < 1:
        _validate.fail(who, "window", "an int or a non-empty sequence of ints, each >= 1", window)
    return _validate.check_ints(window, n, who, "window")


def _pool_args(window: int | Sequence[int], stride: int | Sequence[int] | None, padding: PaddingLike,
               who: str) -> tuple[tuple[int, ...], tuple[int, ...], PadSpec]:
    """Validated window, strides (default: the window) and padding."""
    win = _window(window, who)
    strides = win if stride is None else _validate.check_ints(stride, len(win), who, "stride")
    return win, strides, normalize_padding(padding, len(win), who)


def _full(x_ndim: int, spatial: tuple[int, ...]) -> tuple[int, ...]:
    """Extend spatial window/stride values with 1 for the leading batch axes and the channel axis."""
    return (1,) * (x_ndim - len(spatial) - 1) + spatial + (1,)


def _full_pads(x_ndim: int, k: int, pads: PadSpec) -> str | tuple[tuple[int, int], ...]:
    if isinstance(pads, str):
        return pads
    return ((0, 0),) * (x_ndim - k - 1) + pads + ((0, 0),)


def _pool(kind: str, x: Array, window: int | Sequence[int], stride: int | Sequence[int] | None,
          padding: PaddingLike, who: str, *, batched_only: bool = False) -> Array:
    """Max (``kind="max"``) or average pooling, with chex checks of ``x`` at trace time."""
    win, strides, pads = _pool_args(window, stride, padding, who)
    k = len(win)
    axes = layout(k)
    _validate.check_rank(x, (k + 2,) if batched_only else (k + 1, k + 2), who, "x",
                         layout=axes if batched_only else f"{axes} or ({axes[4:]} for one example")
    spatial_output(tuple(x.shape[-k - 1:-1]), win, strides, (1,) * k, pads, who=who, name="x",
                   what="window", got=x)
    if win != strides:
        return _window_pool(kind, x, win, strides, pads)

    def tiled(xx: Array) -> Array:
        return tiled_pool(kind, xx, win, pads)

    def stock(xx: Array) -> Array:
        return _window_pool(kind, xx, win, strides, pads)

    return _jax.platform_dependent(x, cpu=tiled, default=stock)


def _window_pool(kind: str, x: Array, win: tuple[int, ...], strides: tuple[int, ...], pads: PadSpec) -> Array:
    """Pooling as one ``lax.reduce_window`` (the stock lowering; any window, stride and padding)."""
    k = len(win)
    dims, steps, full_pads = _full(x.ndim, win), _full(x.ndim, strides), _full_pads(x.ndim, k, pads)
    if kind == "max":
        init = -np.inf if jnp.issubdtype(x.dtype, jnp.floating) else np.iinfo(x.dtype).min
        y: Array = _jax.reduce_window(x, np.array(init, x.dtype), lax.max, dims, steps, full_pads)
        return y
    summed: Array = _jax.reduce_window(x, np.array(0, x.dtype), lax.add, dims, steps, full_pads)
    if pads == "VALID" or (not isinstance(pads, str) and all(p == (0, 0) for p in pads)):
        return summed / math.prod(win)
    # Count only the real (unpadded) elements in each window: a constant, folded by XLA.
    ones = jnp.ones(tuple(x.shape[-k - 1:-1]) + (1,), x.dtype)
    counts: Array = _jax.reduce_window(ones, np.array(0, x.dtype), lax.add, win + (1,), strides + (1,),
                                      _full_pads(k + 1, k, pads))
    return summed / counts


def max_pool(
    x: Float[Array, "*batch *spatial channels"],
    window: int | Sequence[int],
    *,
    stride: int | Sequence[int] | None = None,
    padding: PaddingLike = "VALID",
) -> Float[Array, "*batch *out_spatial channels"]:
    """Max pooling: ``y[n, i, j, c] = max_{u < k_h, v < k_w} x[n, i s_h + u, j s_w + v, c]``.

    Args:
        x: ``(N, *spatial, C)`` or one example ``(*spatial, C)``.
        window: an int ``k`` (a ``k x k`` 2-D window) or one size per spatial axis.
        stride: defaults to ``window`` (non-overlapping windows).
        padding: ``"VALID"`` (default), ``"SAME"`` or explicit; padded cells are ``-inf``, so they never win.
            Gradient: each window's output gradient goes to its first maximal element (row-major),
            also when several elements tie.

    Returns:
        ``(N, *out_spatial, C)`` (or without ``N``).

    Raises:
        ValueError: wrong input rank, or a window larger than the (padded) input.

    Example:
        >>> x = jnp.arange(16.0).reshape(1, 4, 4, 1)
        >>> ft.layers.max_pool(x, 2)[0, :, :, 0].tolist()
        [[5.0, 7.0], [13.0, 15.0]]
        >>> ft.layers.max_pool(jnp.ones((2, 9, 3)), (3,), stride=2, padding="SAME").shape  # 1-D
        (2, 5, 3)
    """
    return _pool("max", x, window, stride, padding, "max_pool")


def avg_pool(
    x: Float[Array, "*batch *spatial channels"],
    window: int | Sequence[int],
    *,
    stride: int | Sequence[int] | None = None,
    padding: PaddingLike = "VALID",
) -> Float[Array, "*batch *out_spatial channels"]:
    """Average pooling: the mean of each window, per channel.

    With ``"SAME"`` or explicit padding, each window's sum is divided by the number of *real*
    (unpadded) elements it covers (TensorFlow's convention; PyTorch's ``count_include_pad=False``).

    Args:
        x: ``(N, *spatial, C)`` or one example ``(*spatial, C)``.
        window: an int ``k`` (a ``k x k`` 2-D window) or one size per spatial axis.
        stride: defaults to ``window``.
        padding: ``"VALID"`` (default), ``"SAME"`` or explicit.

    Returns:
        ``(N, *out_spatial, C)`` (or without ``N``).

    Raises:
        ValueError: wrong input rank, or a window larger than the (padded) input.

    Example:
        >>> x = jnp.arange(16.0).reshape(4, 4, 1)  # one example
        >>> ft.layers.avg_pool(x, 2)[:, :, 0].tolist()
        [[2.5, 4.5], [10.5, 12.5]]
    """
    return _pool("avg", x, window, stride, padding, "avg_pool")


def _check_batch_dims(x: Array, batch_dims: int, min_rest: int, who: str, what: str) -> int:
    n = _validate.check_int(batch_dims, who, "batch_dims", low=0)
    ndim = getattr(x, "ndim", None)
    if not isinstance(ndim, int):
        _validate.fail(who, "x", "an array", x, error=TypeError)
    if ndim < n + min_rest:
        _validate.fail(who, "x", f"an array of rank >= {n + min_rest}{what} for batch_dims={n}", x)
    return n


def global_avg_pool(x: Float[Array, "*batch *spatial channels"], *,
                    batch_dims: int = 1) -> Float[Array, "*batch channels"]:
    """Global average pooling: the mean over every spatial axis, per channel (Lin et al. 2014).

    Args:
        x: ``(*batch, *spatial, C)``; the first ``batch_dims`` axes are kept, the last axis is the
            channel axis, every axis in between is averaged.
        batch_dims: number of leading batch axes (default 1, ``(N, H, W, C) -> (N, C)``; use 0 for
            one example ``(H, W, C) -> (C,)``).

    Returns:
        ``(*batch, C)``.

    Raises:
        ValueError: fewer than one spatial axis.

    Example:
        >>> ft.layers.global_avg_pool(jnp.ones((8, 7, 7, 64))).shape
        (8, 64)
        >>> ft.layers.global_avg_pool(jnp.ones((7, 7, 64)), batch_dims=0).shape
        (64,)
    """
    return _global_avg_pool(x, batch_dims, "global_avg_pool")


def _global_avg_pool(x: Array, batch_dims: int, who: str) -> Array:
    n = _check_batch_dims(x, batch_dims, 2, who, " (*batch, *spatial, C)")
    return jnp.mean(x, axis=tuple(range(n, x.ndim - 1)))


def flatten(x: Float[Array, "*batch ..."], *, batch_dims: int = 1) -> Float[Array, "*batch features"]:
    """Flatten every axis after the first ``batch_dims`` into one (row-major, a free reshape).

    Args:
        x: ``(*batch, d_1, ..., d_k)``.
        batch_dims: number of leading axes kept (default 1: ``(N, H, W, C) -> (N, H W C)``; 0
            flattens one example completely).

    Returns:
        ``(*batch, d_1 ... d_k)``.

    Raises:
        TypeError, ValueError: ``batch_dims`` not an int ``>= 0``, or larger than ``x.ndim``.

    Example:
        >>> ft.layers.flatten(jnp.ones((8, 4, 4, 3))).shape
        (8, 48)
        >>> ft.layers.flatten(jnp.ones((8, 4, 4, 3)), batch_dims=2).shape
        (8, 4, 12)
    """
    return _flatten(x, batch_dims, "flatten")


def _flatten(x: Array, batch_dims: int, who: str) -> Array:
    n = _check_batch_dims(x, batch_dims, 0, who, "")
    return x.reshape(tuple(x.shape[:n]) + (math.prod(x.shape[n:]),))


def _pool_layer(kind: str, window: int | Sequence[int], stride: int | Sequence[int] | None,
                padding: PaddingLike, who: str) -> Layer[tuple[()], tuple[()]]:
    win, strides, pads = _pool_args(window, stride, padding, who)
    k = len(win)

    def init(key: PRNGKey, input_shape: Sequence[int]) -> tuple[PyTree, PyTree, Shape]:
        del key
        shape = check_input_shape(input_shape, who, rank=k + 2, axes=layout(k))
        out = spatial_output(shape[1:-1], win, strides, (1,) * k, pads, who=who, name="input_shape",
                             what="window", got=shape)
        return (), (), (shape[0], *out, shape[-1])

    def apply(params: PyTree, state: PyTree, x: Array, *, key: PRNGKey | None = None,
              train: bool) -> tuple[Array, PyTree]:
        del params, key, train
        return _pool(kind, x, win, strides, pads, who, batched_only=True), state

    return Layer(init, apply)


def MaxPool(  # noqa: N802 (layer constructor)
    window: int | Sequence[int],
    stride: int | Sequence[int] | None = None,
    padding: PaddingLike = "VALID",
) -> Layer[tuple[()], tuple[()]]:
    """Max pooling (:func:`max_pool`) over ``(N, *spatial, C)`` batches as a composable layer.

    Args:
        window: ``k`` (a ``k x k`` window over ``(N, H, W, C)``) or one size per spatial axis.
        stride: defaults to ``window``.
        padding: ``"VALID"`` (default), ``"SAME"`` or explicit.

    Returns:
        The layer (``params = state = ()``).

    Raises:
        TypeError, ValueError: bad hyperparameters; at ``init``/``apply``, an input of the wrong
            rank or smaller than the window.

    Example:
        >>> ft.layers.MaxPool(2).init(jax.random.key(0), (-1, 28, 28, 8))[2]
        (-1, 14, 14, 8)
        >>> ft.layers.MaxPool((2,)).init(jax.random.key(0), (-1, 9, 4))[2]  # 1-D
        (-1, 4, 4)
    """
    return _pool_layer("max", window, stride, padding, "MaxPool")


def AvgPool(  # noqa: N802 (layer constructor)
    window: int | Sequence[int],
    stride: int | Sequence[int] | None = None,
    padding: PaddingLike = "VALID",
) -> Layer[tuple[()], tuple[()]]:
    """Average pooling (:func:`avg_pool`) over ``(N, *spatial, C)`` batches as a composable layer.

    Args:
        window: ``k`` (a ``k x k`` window over ``(N, H, W, C)``) or one size per spatial axis.
        stride: defaults to ``window``.
        padding: ``"VALID"`` (default), ``"SAME"`` or explicit (padding is not counted in the mean).

    Returns:
        The layer (``params = state = ()``).

    Raises:
        TypeError, ValueError: bad hyperparameters; at ``init``/``apply``, an input of the wrong
            rank or smaller than the window.

    Example:
        >>> layer = ft.layers.AvgPool(3, stride=2, padding="SAME")
        >>> layer.init(jax.random.key(0), (-1, 7, 6, 3))[2]
        (-1, 4, 3, 3)
    """
    return _pool_layer("avg", window, stride, padding, "AvgPool")


GlobalAvgPool: Layer[tuple[()], tuple[()]] = stateless(
    "GlobalAvgPool",
    lambda x: _global_avg_pool(x, 1, "GlobalAvgPool"),
    lambda shape: (shape[0], shape[-1]),
    min_rank=3,
)
"""Layer: :func:`global_avg_pool`, ``(N, *spatial, C) -> (N, C)``."""

Flatten: Layer[tuple[()], tuple[()]] = stateless(
    "Flatten",
    lambda x: _flatten(x, 1, "Flatten"),
    lambda shape: (shape[0], math.prod(shape[1:])),
    min_rank=2,
)
"""Layer: :func:`flatten` keeping the batch axis, ``(N, d_1, ..., d_k) -> (N, d_1 ... d_k)``."""
