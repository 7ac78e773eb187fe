"""Pooling over channels-last inputs, and ``flatten``.

``max_pool`` and ``avg_pool`` slide a window over the spatial axes of ``(N, *spatial, C)`` (or one
example ``(*spatial, C)``), one ``lax.reduce_window`` each; the window's length gives the number of
spatial axes (``(2, 2)`` pools an image, ``(2,)`` a sequence). The stride defaults to the window
(non-overlapping pooling) and the padding to ``"VALID"``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import jax.numpy as jnp
import numpy as np
from jax import lax
from jaxtyping import Float

from functrain.layers._util import (
    PaddingLike,
    Pads,
    check_array_rank,
    check_input_shape,
    fmt,
    int_tuple,
    normalize_padding,
    spatial_output,
)
from functrain.layers.base import Layer, _stateless
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
    if isinstance(window, int):
        return int_tuple(window, 2, "window", who)  # rejects bools
    try:
        n = len(window)
    except TypeError as e:
        raise TypeError(f"{who}: argument 'window' must be an int or a sequence of ints, got {window!r}") from e
    if n < 1:
        raise ValueError(f"{who}: argument 'window' must have at least one spatial size, got {window!r}")
    return int_tuple(window, n, "window", who)


def _pool_geometry(
    x_shape: Sequence[int],
    window: int | Sequence[int],
    stride: int | Sequence[int] | None,
    padding: PaddingLike,
    who: str,
    *,
    batched_only: bool = False,
) -> tuple[tuple[int, ...], tuple[int, ...], Literal["SAME", "VALID"] | Pads, Shape]:
    """Validate a pooling call; return window, strides, padding and the output spatial shape."""
    win = _window(window, who)
    k = len(win)
    strides = win if stride is None else int_tuple(stride, k, "stride", who)
    pads = normalize_padding(padding, k, who)
    ranks = (k + 2,) if batched_only else (k + 2, k + 1)
    if len(x_shape) not in ranks:
        layout = "(N, " + ", ".join(f"S{i}" for i in range(k)) + ", C)"
        one = "" if batched_only else f" or rank {k + 1} (one example)"
        raise ValueError(
            f"{who}: a window of {k} spatial dims {win} expects an input of rank {k + 2} {layout}{one}, "
            f"got shape {fmt(x_shape)}"
        )
    out = spatial_output(tuple(x_shape[-k - 1:-1]), win, strides, (1,) * k, pads,
                         who=who, what="window", input_shape=x_shape)
    return win, strides, pads, out


def _full(x_ndim: int, spatial: tuple[int, ...]) -> tuple[int, ...]:
    """Extend spatial window/stride values with 1 for the leading batch axes and the channel axis."""
    return (1,) * (x_ndim - len(spatial) - 1) + spatial + (1,)


def _full_pads(x_ndim: int, k: int, pads: Literal["SAME", "VALID"] | Pads) -> str | Pads:
    if isinstance(pads, str):
        return pads
    return ((0, 0),) * (x_ndim - k - 1) + pads + ((0, 0),)


def _apply_max_pool(x: Array, window: int | Sequence[int], stride: int | Sequence[int] | None,
                    padding: PaddingLike, who: str, *, batched_only: bool = False) -> Array:
    win, strides, pads, _ = _pool_geometry(x.shape, window, stride, padding, who, batched_only=batched_only)
    init = -np.inf if jnp.issubdtype(x.dtype, jnp.floating) else np.iinfo(x.dtype).min
    y: Array = lax.reduce_window(
        x, np.array(init, x.dtype), lax.max, _full(x.ndim, win), _full(x.ndim, strides),
        _full_pads(x.ndim, len(win), pads),
    )
    return y


def _apply_avg_pool(x: Array, window: int | Sequence[int], stride: int | Sequence[int] | None,
                    padding: PaddingLike, who: str, *, batched_only: bool = False) -> Array:
    win, strides, pads, _ = _pool_geometry(x.shape, window, stride, padding, who, batched_only=batched_only)
    dims, steps = _full(x.ndim, win), _full(x.ndim, strides)
    full_pads = _full_pads(x.ndim, len(win), pads)
    summed: Array = lax.reduce_window(x, np.array(0, x.dtype), lax.add, dims, steps, full_pads)
    if pads == "VALID" or (not isinstance(pads, str) and all(p == (0, 0) for p in pads)):
        return summed / math.prod(win)
    # Count only the real (unpadded) elements in each window: a constant, folded by XLA.
    k = len(win)
    ones = jnp.ones(tuple(x.shape[-k - 1:-1]) + (1,), x.dtype)
    counts: Array = lax.reduce_window(ones, np.array(0, x.dtype), lax.add, win + (1,), strides + (1,),
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

    Returns:
        ``(N, *out_spatial, C)`` (or without ``N``).

    Raises:
        ValueError: wrong input rank, or a window larger than the (padded) input.
    """
    return _apply_max_pool(x, window, stride, padding, "max_pool")


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
    """
    return _apply_avg_pool(x, window, stride, padding, "avg_pool")


def _check_batch_dims(x_shape: Sequence[int], batch_dims: int, min_rest: int, who: str, what: str) -> None:
    if isinstance(batch_dims, bool) or not isinstance(batch_dims, int) or batch_dims < 0:
        raise ValueError(f"{who}: argument 'batch_dims' must be an int >= 0, got {batch_dims!r}")
    if len(x_shape) < batch_dims + min_rest:
        raise ValueError(
            f"{who}: with batch_dims={batch_dims} expected an input of rank >= {batch_dims + min_rest} "
            f"{what}, got shape {fmt(x_shape)}"
        )


def global_avg_pool(x: Float[Array, "*batch *spatial channels"], *, batch_dims: int = 1) -> Float[Array, "*batch channels"]:
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
    """
    return _apply_global_avg_pool(x, batch_dims, "global_avg_pool")


def _apply_global_avg_pool(x: Array, batch_dims: int, who: str) -> Array:
    _check_batch_dims(x.shape, batch_dims, 2, who, "(*batch, *spatial, C) with at least one spatial axis")
    return jnp.mean(x, axis=tuple(range(batch_dims, x.ndim - 1)))


def flatten(x: Float[Array, "*batch ..."], *, batch_dims: int = 1) -> Float[Array, "*batch features"]:
    """Flatten every axis after the first ``batch_dims`` into one (row-major, a free reshape).

    Args:
        x: ``(*batch, d_1, ..., d_k)``.
        batch_dims: number of leading axes kept (default 1: ``(N, H, W, C) -> (N, H W C)``; 0
            flattens one example completely).

    Returns:
        ``(*batch, d_1 ... d_k)``.

    Raises:
        ValueError: ``batch_dims`` negative or larger than ``x.ndim``.
    """
    return _apply_flatten(x, batch_dims, "flatten")


def _apply_flatten(x: Array, batch_dims: int, who: str) -> Array:
    _check_batch_dims(x.shape, batch_dims, 0, who, "")
    lead = tuple(x.shape[:batch_dims])
    return jnp.reshape(x, lead + (math.prod(x.shape[batch_dims:]),))


def _pool_layer(window: int | Sequence[int], stride: int | Sequence[int] | None, padding: PaddingLike,
                ctor: str) -> Layer:
    win = _window(window, ctor)
    k = len(win)
    if stride is not None:
        int_tuple(stride, k, "stride", ctor)
    normalize_padding(padding, k, ctor)
    name = f"{ctor}({win})"
    layout = "(N, " + ", ".join(f"S{i}" for i in range(k)) + ", C)"
    pool = _apply_max_pool if ctor == "MaxPool" else _apply_avg_pool

    def init(key: PRNGKey, input_shape: Sequence[int]) -> tuple[PyTree, PyTree, Shape]:
        del key
        shape = check_input_shape(input_shape, name, rank=k + 2, layout=layout)
        _, _, _, out = _pool_geometry(shape, win, stride, padding, name, batched_only=True)
        return (), (), (shape[0], *out, shape[-1])

    def apply(
        params: PyTree, state: PyTree, x: Array, *, key: PRNGKey | None = None, train: bool
    ) -> tuple[Array, PyTree]:
        del params, key, train
        check_array_rank(x, name, rank=k + 2, layout=layout)
        return pool(x, win, stride, padding, name, batched_only=True), state

    return Layer(init, apply)


def MaxPool(  # noqa: N802 (layer constructor)
    window: int | Sequence[int],
    stride: int | Sequence[int] | None = None,
    padding: PaddingLike = "VALID",
) -> Layer:
    """Max pooling (:func:`max_pool`) over ``(N, *spatial, C)`` batches as a composable layer.

    Args:
        window: ``k`` (a ``k x k`` window over ``(N, H, W, C)``) or one size per spatial axis.
        stride: defaults to ``window``.
        padding: ``"VALID"`` (default), ``"SAME"`` or explicit.

    Returns:
        The layer (``params = state = ()``).

    Raises:
        ValueError: bad hyperparameters; at ``init``/``apply``, an input of the wrong rank or smaller
            than the window.
    """
    return _pool_layer(window, stride, padding, "MaxPool")


def AvgPool(  # noqa: N802 (layer constructor)
    window: int | Sequence[int],
    stride: int | Sequence[int] | None = None,
    padding: PaddingLike = "VALID",
) -> Layer:
    """Average pooling (:func:`avg_pool`) over ``(N, *spatial, C)`` batches as a composable layer.

    Args:
        window: ``k`` (a ``k x k`` window over ``(N, H, W, C)``) or one size per spatial axis.
        stride: defaults to ``window``.
        padding: ``"VALID"`` (default), ``"SAME"`` or explicit (padding is not counted in the mean).

    Returns:
        The layer (``params = state = ()``).

    Raises:
        ValueError: bad hyperparameters; at ``init``/``apply``, an input of the wrong rank or smaller
            than the window.
    """
    return _pool_layer(window, stride, padding, "AvgPool")


GlobalAvgPool: Layer = _stateless(
    "GlobalAvgPool",
    lambda x: _apply_global_avg_pool(x, 1, "GlobalAvgPool"),
    lambda shape: (shape[0], shape[-1]),
    min_rank=3,
)
"""Layer: :func:`global_avg_pool`, ``(N, *spatial, C) -> (N, C)``."""

Flatten: Layer = _stateless(
    "Flatten",
    lambda x: _apply_flatten(x, 1, "Flatten"),
    lambda shape: (shape[0], math.prod(shape[1:])),
    min_rank=2,
)
"""Layer: :func:`flatten` keeping the batch axis, ``(N, d_1, ..., d_k) -> (N, d_1 ... d_k)``."""
