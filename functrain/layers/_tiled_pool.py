"""Pooling whose window equals its stride (non-overlapping tiles), as a reshape and a reduction.

When the stride equals the window ``k`` along every spatial axis, the windows tile the (padded,
cropped) input, so pooling is a reshape ``(..., o, k, ...)`` followed by a max or a sum over the
``k`` axes. Its values are exactly those of ``lax.reduce_window`` (the same maxima and the same
sums over the same elements), but its gradient is an elementwise select (max) or a broadcast
(average) instead of XLA's ``select_and_scatter`` and window convolutions, which are slow on the CPU
and slower still inside a ``lax.scan`` body.

Geometry, per spatial axis of size ``n``: ``o`` outputs and a ``(low, high)`` adjustment so that
``low + n + high = o k``: ``"VALID"`` gives ``o = n // k`` (the trailing ``n mod k`` elements,
which no window covers, are cropped: ``high = -(n mod k)``); ``"SAME"`` gives ``o = ceil(n / k)``
and pads ``o k - n`` cells, half (rounded down) before; explicit ``(lo, hi)`` pads ``lo`` before
and keeps ``o = (n + lo + hi) // k`` windows. Padded cells are ``-inf`` (max) or ``0`` (sum), as
in ``lax.reduce_window``.

Gradient of max pooling (ties): each window passes its output gradient to exactly one element, the
*first* maximal element in row-major window order. That is the element the stock gradient of
``lax.reduce_window`` (``select_and_scatter`` with ``>=``) selects on XLA:CPU, so the gradients are
equal there even with ties (tested); XLA leaves the order unspecified, so on other backends the
stock gradient may pick another of the tied elements (this module is used on the CPU only). A
window whose maximum is NaN passes no gradient. ``jnp.max``'s own gradient would instead split
the gradient evenly among tied elements, which differs from the stock gradient whenever a window
holds equal values (e.g. zeros after a ReLU). The rule is a ``jax.custom_jvp`` whose tangent is a
masked sum (its transpose, the gradient, is one elementwise select), so it works under ``jit``,
``vmap``, ``jvp`` and higher-order derivatives.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import jax.numpy as jnp
import numpy as np
from jax import lax

from functrain import _jax
from functrain.layers._geometry import PadSpec
from functrain.typing import Array, DTypeLike

__all__ = ["tiled_pool"]


def stock_pads(sizes: tuple[int, ...], window: tuple[int, ...], pads: PadSpec) -> tuple[tuple[int, int], ...]:
    """The ``(low, high)`` padding ``lax.reduce_window`` uses with stride = window (all ``>= 0``)."""
    if pads == "VALID":
        return ((0, 0),) * len(window)
    if pads == "SAME":
        return tuple(lax.padtype_to_pads(sizes, window, window, "SAME"))
    return tuple(pads)


def tile_geometry(sizes: tuple[int, ...], window: tuple[int, ...],
                  pads: tuple[tuple[int, int], ...]) -> tuple[tuple[int, ...], tuple[tuple[int, int], ...]]:
    """Output sizes and the ``(low, high)`` pads (``high < 0``: a crop) that make the tiles exact."""
    outs = tuple((n + lo + hi) // k for n, k, (lo, hi) in zip(sizes, window, pads, strict=True))
    return outs, tuple((lo, o * k - n - lo) for n, k, (lo, _), o in zip(sizes, window, pads, outs, strict=True))


def _tiles(x: Array, window: tuple[int, ...], pads: tuple[tuple[int, int], ...],
           fill: float | int) -> tuple[Array, tuple[int, ...]]:
    """``x`` ``(*batch, *spatial, C)`` padded with ``fill`` (or cropped) to whole tiles and reshaped to
    ``(*batch, o_1, k_1, ..., C)``; and the ``k`` axes."""
    k = len(window)
    nb = x.ndim - k - 1
    outs, lohi = tile_geometry(tuple(x.shape[nb:nb + k]), window, pads)
    if any(p != (0, 0) for p in lohi):
        config = [(0, 0, 0)] * nb + [(lo, hi, 0) for lo, hi in lohi] + [(0, 0, 0)]
        x = lax.pad(x, np.array(fill, x.dtype), config)
    split = tuple(d for o, w in zip(outs, window, strict=True) for d in (o, w))
    return x.reshape(*x.shape[:nb], *split, x.shape[-1]), tuple(nb + 2 * a + 1 for a in range(k))


def _reduce_window(x: Array, init: float | int, op: Callable[[Array, Array], Array], window: tuple[int, ...],
                   pads: tuple[tuple[int, int], ...]) -> Array:
    """The stock ``lax.reduce_window`` with stride = window (the value of the tiled ops)."""
    nb = x.ndim - len(window) - 1
    dims = (1,) * nb + window + (1,)
    y: Array = _jax.reduce_window(x, np.array(init, x.dtype), op, dims, dims,
                                 ((0, 0),) * nb + pads + ((0, 0),))
    return y


def _window_position(shape: tuple[int, ...], axes: tuple[int, ...]) -> Array:
    """Each element's row-major position inside its window, int32, of shape 1 off the window axes.

    Kept small (it broadcasts where it is used): a full-size iota would be hoisted out of a
    training loop by XLA and held in memory for the whole epoch.
    """
    small = tuple(shape[a] if a in axes else 1 for a in range(len(shape)))
    pos = jnp.zeros(small, jnp.int32)
    for a in axes:
        pos = pos * shape[a] + _jax.broadcasted_iota(jnp.int32, small, a)
    return pos


def _lowest(dtype: DTypeLike) -> float | int:
    return -np.inf if jnp.issubdtype(dtype, jnp.floating) else int(np.iinfo(dtype).min)


@_jax.custom_jvp(nondiff_argnums=(1, 2))
def max_tiles(x: Array, window: tuple[int, ...], pads: tuple[tuple[int, int], ...]) -> Array:
    """Max pooling with stride = window: the stock value, the first-max tangent (module docstring)."""
    return _reduce_window(x, _lowest(x.dtype), lax.max, window, pads)


@max_tiles.defjvp
def _max_tiles_jvp(window: tuple[int, ...], pads: tuple[tuple[int, int], ...], primals: tuple[Array],
                   tangents: tuple[Array]) -> tuple[Array, Array]:
    """Tangent ``t[first argmax]``: a masked sum, whose transpose is one elementwise select.

    ``first`` is the smallest window position holding the maximum, found by a max-reduction of
    ``size - position`` over the maximal elements (float32 keys, exact for windows of < 2**24
    elements whatever the input's dtype; a reshape and a reduction that XLA:CPU runs vectorized).
    A window whose maximum is NaN matches no element and passes no gradient.
    """
    (x,), (t,) = primals, tangents
    m = max_tiles(x, window, pads)  # itself, so higher orders keep the first-max rule
    xr, axes = _tiles(x, window, pads, _lowest(x.dtype))
    pos = _window_position(xr.shape, axes)
    size = math.prod(window)
    key = jnp.where(xr == lax.expand_dims(m, axes), (size - pos).astype(jnp.float32), jnp.zeros((), jnp.float32))
    first = size - lax.reduce_max(key, axes).astype(jnp.int32)
    chosen = pos == lax.expand_dims(first, axes)
    tr, _ = _tiles(t, window, pads, 0)
    return m, jnp.sum(jnp.where(chosen, tr, jnp.zeros((), tr.dtype)), axis=axes)


@_jax.custom_jvp(nondiff_argnums=(1, 2))
def sum_tiles(x: Array, window: tuple[int, ...], pads: tuple[tuple[int, int], ...]) -> Array:
    """Sum pooling with stride = window: the stock value; tangent (and gradient) through a reshape."""
    return _reduce_window(x, 0, lax.add, window, pads)


@sum_tiles.defjvp
def _sum_tiles_jvp(window: tuple[int, ...], pads: tuple[tuple[int, int], ...], primals: tuple[Array],
                   tangents: tuple[Array]) -> tuple[Array, Array]:
    (x,), (t,) = primals, tangents
    tr, axes = _tiles(t, window, pads, 0)
    return sum_tiles(x, window, pads), jnp.sum(tr, axis=axes)


def _counts(sizes: tuple[int, ...], window: tuple[int, ...], lohi: tuple[tuple[int, int], ...],
            outs: tuple[int, ...]) -> np.ndarray:
    """Number of real (unpadded) elements in each window, shape ``(*out, 1)`` (a trace-time constant).

    Window ``i`` of an axis covers input positions ``[i k - low, (i + 1) k - low)``; padding is
    separable, so the count is the product of the per-axis counts.
    """
    total = np.ones(())
    for n, k, (lo, _), o in zip(sizes, window, lohi, outs, strict=True):
        start = np.arange(o) * k - lo
        per_axis = np.minimum(start + k, n) - np.maximum(start, 0)
        total = np.multiply.outer(total, per_axis)
    return total[..., None]


def tiled_pool(kind: str, x: Array, window: tuple[int, ...], pads: PadSpec) -> Array:
    """Max (``kind="max"``) or average pooling of ``x`` ``(*batch, *spatial, C)`` with stride = window.

    The caller has checked that every window fits. Averages divide by the number of real
    elements of each window (padding not counted).
    """
    k = len(window)
    sizes = tuple(x.shape[x.ndim - k - 1:-1])
    lohi = stock_pads(sizes, window, pads)
    if kind == "max":
        return max_tiles(x, window, lohi)
    summed = sum_tiles(x, window, lohi)
    if all(p == (0, 0) for p in lohi):
        return summed / math.prod(window)
    outs, tile_pads = tile_geometry(sizes, window, lohi)
    return summed / jnp.asarray(_counts(sizes, window, tile_pads, outs), x.dtype)
