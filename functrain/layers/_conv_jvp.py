"""The convolution primitive behind every functrain convolution, with CPU-friendly gradients.

``conv(x, w, strides, pads, dil, spatial)`` is ``lax.conv_general_dilated`` on a batched,
channels-last input with an HWIO kernel (:data:`~functrain.layers._geometry.LAYOUTS`). Its forward
value is the stock one; what it adds is a ``jax.custom_jvp`` whose tangents transpose (in reverse
mode) into operations that XLA:CPU runs on its fast paths, also inside ``lax.scan``/``while``
bodies, where a training epoch runs.

Why: the two convolutions of the stock backward pass have non-canonical dimension numbers (the
input gradient uses the kernel as ``HWOI``, the kernel gradient swaps the batch and feature axes),
and inside a ``lax.scan``/``while`` body XLA:CPU runs them about 5x (input gradient) and 25x
(kernel gradient) slower than outside one -- the kernel gradient ~100x slower than the forward
convolution (jax-ml/jax#12868; measured with jax 0.10.2). That made a scanned training epoch ~10x
slower than a Python loop of jitted steps. The canonical form (NHWC input, HWIO kernel) and plain
GEMMs run at full speed in loops. So, on the CPU only:

* the input tangent is ``conv(dx, w)`` computed with the kernel stored as ``HWOI``
  (``swapaxes(w, -1, -2)`` and the matching dimension numbers). Same numbers; but the transpose
  that ``jax.grad`` derives from it -- the input gradient, a convolution of the output gradient
  with the flipped kernel -- then uses that kernel in the canonical ``HWIO`` layout;
* the kernel tangent is written through the im2col patches of the input,
  ``dy[n, i, o] = sum_{t, c} P[t, c, (n, i)] dw[t, c, o]`` with ``P`` (:func:`patches_t`) built
  from strided slices of the (padded) input, rows ordered ``(tap, c_in)`` like the flattened HWIO
  kernel and columns ``(n, *out)``, so its transpose -- the kernel gradient -- is the plain
  row-major GEMM ``g_w[(t, c), o] = sum_{(n, i)} P[(t, c), (n, i)] g[(n, i), o]``.

Tangents that are known to be zero (the input of the first layer, when only the parameters are
differentiated) are skipped (``symbolic_zeros``), so they cost nothing.

The platform is chosen per lowering with ``lax.platform_dependent``: on GPU/TPU both tangents are
the plain ``conv(dx, w) + conv(x, dw)``, so gradients are exactly the stock ones. Being a
``custom_jvp`` (not a ``custom_vjp``), the rule supports every transformation: ``jit``, ``grad``,
``vmap``, ``jvp``/``jacfwd`` and higher-order derivatives (``jax.hessian``). Cost: on the CPU the
patches matrix (``prod(kernel_size)`` times the input's size) is a residual of the backward pass.
"""

from __future__ import annotations

import functools
import math

import jax.numpy as jnp
from jax import lax
from jax.custom_derivatives import SymbolicZero

from functrain import _jax
from functrain.layers._geometry import LAYOUTS, PadSpec
from functrain.typing import Array

__all__ = ["conv", "patches_t", "plain_conv"]


def plain_conv(x: Array, w: Array, strides: tuple[int, ...], pads: PadSpec, dil: tuple[int, ...],
               spatial: int) -> Array:
    """The one ``lax.conv_general_dilated`` call (batched input ``(N, *spatial, c_in)``)."""
    return lax.conv_general_dilated(x, w, window_strides=strides, padding=pads, rhs_dilation=dil,
                                    dimension_numbers=LAYOUTS[spatial])


def _oi_conv(x: Array, w: Array, strides: tuple[int, ...], pads: PadSpec, dil: tuple[int, ...],
             spatial: int) -> Array:
    """:func:`plain_conv` with the kernel stored ``(*k, c_out, c_in)``: its lhs transpose is canonical."""
    lhs, rhs, out = LAYOUTS[spatial]
    return lax.conv_general_dilated(x, jnp.swapaxes(w, -1, -2), window_strides=strides, padding=pads,
                                    rhs_dilation=dil, dimension_numbers=(lhs, rhs[:-2] + "OI", out))


def explicit_pads(in_sizes: tuple[int, ...], ks: tuple[int, ...], strides: tuple[int, ...],
                  pads: PadSpec, dil: tuple[int, ...]) -> tuple[tuple[int, int], ...]:
    """``(low, high)`` padding per spatial axis (``"SAME"``/``"VALID"`` resolved as lax does)."""
    if not isinstance(pads, str):
        return tuple(pads)
    spans = tuple((k - 1) * d + 1 for k, d in zip(ks, dil, strict=True))
    return tuple(lax.padtype_to_pads(in_sizes, spans, strides, pads))


def _taps(a: Array, axis: int, k: int, stride: int, dil: int, out: int, stack_axis: int) -> Array:
    """The ``k`` strided windows of ``a`` along ``axis`` (tap ``t`` starts at ``t dil``), stacked."""
    cols = [lax.slice_in_dim(a, t * dil, t * dil + (out - 1) * stride + 1, stride, axis) for t in range(k)]
    return jnp.stack(cols, axis=stack_axis)


def patches_t(x: Array, ks: tuple[int, ...], strides: tuple[int, ...], pads: PadSpec,
              dil: tuple[int, ...]) -> tuple[Array, tuple[int, ...]]:
    """Transposed im2col patches of ``x`` ``(N, *spatial, C)``: ``(prod(k) C, N prod(out))``, and ``out``.

    Row ``t C + c`` holds input channel ``c`` at kernel tap ``t`` (taps row-major, as in the HWIO
    kernel reshaped to ``(prod(k) C, c_out)``); column ``(n, *i)`` is an output position.

    Built in two copies: the taps of the first spatial axis from the channels-first input, then
    the taps of the other axes. XLA:CPU emits each as one loop over contiguous rows (one copy
    with all the taps, or a copy per tap, would read the transposed input with strides).
    """
    sizes = tuple(x.shape[1:-1])
    lohi = explicit_pads(sizes, ks, strides, pads, dil)
    xt = jnp.moveaxis(x, -1, 0)  # (C, N, *spatial)
    if any(p != (0, 0) for p in lohi):
        xt = lax.pad(xt, jnp.zeros((), x.dtype), ((0, 0, 0), (0, 0, 0), *((lo, hi, 0) for lo, hi in lohi)))
    out = tuple((n + lo + hi - (k - 1) * d - 1) // s + 1
                for n, (lo, hi), k, d, s in zip(sizes, lohi, ks, dil, strides, strict=True))
    # (k_0, C, N, out_0, *spatial[1:]), then each further axis's taps after the previous ones.
    p = _taps(xt, 2, ks[0], strides[0], dil[0], out[0], 0)
    for a in range(1, len(ks)):
        p = _taps(p, 2 + 2 * a, ks[a], strides[a], dil[a], out[a], a)
    return p.reshape(math.prod(ks) * x.shape[-1], x.shape[0] * math.prod(out)), out


def _patches_kernel_tangent(x: Array, w_dot: Array, strides: tuple[int, ...], pads: PadSpec,
                            dil: tuple[int, ...], spatial: int) -> Array:
    """``conv(x, w_dot)`` as ``P^T w_dot``; linear in ``w_dot``, its transpose is the GEMM ``P g``."""
    ks = tuple(w_dot.shape[:spatial])
    p, out = patches_t(x, ks, strides, pads, dil)
    wm = w_dot.reshape(p.shape[0], w_dot.shape[-1])
    y = _jax.dot_general(p, wm, (((0,), (0,)), ((), ())))  # (N prod(out), c_out)
    return y.reshape(x.shape[0], *out, w_dot.shape[-1])


@_jax.custom_jvp(nondiff_argnums=(2, 3, 4, 5))
def conv(x: Array, w: Array, strides: tuple[int, ...], pads: PadSpec, dil: tuple[int, ...],
         spatial: int) -> Array:
    """``lax.conv_general_dilated`` with CPU-friendly gradients (see the module docstring)."""
    return plain_conv(x, w, strides, pads, dil, spatial)


@functools.partial(conv.defjvp, symbolic_zeros=True)
def _conv_jvp(strides: tuple[int, ...], pads: PadSpec, dil: tuple[int, ...], spatial: int,
              primals: tuple[Array, Array], tangents: tuple[Array, Array]) -> tuple[Array, Array]:
    """``d conv(x, w) = conv(dx, w) + conv(x, dw)``, each written for XLA:CPU's fast paths on the CPU."""
    x, w = primals
    x_dot, w_dot = tangents
    y = conv(x, w, strides, pads, dil, spatial)  # itself, so higher orders use these rules too
    has_x, has_w = not isinstance(x_dot, SymbolicZero), not isinstance(w_dot, SymbolicZero)

    def cpu(xx: Array, ww: Array, xd: Array, wd: Array) -> Array:
        parts = ([_oi_conv(xd, ww, strides, pads, dil, spatial)] if has_x else []) + (
            [_patches_kernel_tangent(xx, wd, strides, pads, dil, spatial)] if has_w else [])
        return functools.reduce(jnp.add, parts)

    def stock(xx: Array, ww: Array, xd: Array, wd: Array) -> Array:
        parts = ([plain_conv(xd, ww, strides, pads, dil, spatial)] if has_x else []) + (
            [plain_conv(xx, wd, strides, pads, dil, spatial)] if has_w else [])
        return functools.reduce(jnp.add, parts)

    if not (has_x or has_w):
        return y, jnp.zeros_like(y)
    xd = x_dot if has_x else jnp.zeros((), x.dtype)
    wd = w_dot if has_w else jnp.zeros((), w.dtype)
    dy = _jax.platform_dependent(x, w, xd, wd, cpu=cpu, default=stock)
    return y, dy
