"""The convolution primitive behind every functrain convolution, with CPU-friendly forms.

``conv(x, w, strides, pads, dil, spatial)`` is ``lax.conv_general_dilated`` on a batched,
channels-last input with an HWIO kernel (:data:`~functrain.layers._geometry.LAYOUTS`). On GPU/TPU
it is exactly that call with its stock gradients. On the CPU, where XLA runs some forms of the
same convolution several times slower than others, each of the three convolutions of a training
step is written in the form XLA:CPU runs fastest, also inside ``lax.scan``/``while`` bodies, where
a training epoch runs (measured with jax 0.10.2 on a 2-core x86 CPU: the lesson convnet's 32->64
3x3 layer on 13x13 inputs, batch 64, inside ``lax.scan``; ``python -m benchmarks`` runs the
per-op breakdown):

* **forward**: one GEMM over the transposed im2col patches of the input,
  ``y[(n, i), o] = sum_{(t, c)} P[(t, c), (n, i)] W[(t, c), o]`` (:func:`gemm_conv`,
  :func:`patches_t`). Its patches are the ones the kernel gradient needs, so a training step
  builds them once. Measured in the lesson convnet's training epoch (16 steps of Adam, back to
  back, all other rules equal): 146 ms with this forward against 181 ms with the stock forward
  convolution (which XLA:CPU hands to YNNPACK). With at least 64 patch rows (``prod(k) c_in``)
  the GEMM is computed transposed, ``Y^T = W^T P`` (``gemm_conv(..., transposed=True)``): ``P^T W``
  contracts the patches' first axis, which XLA:CPU gives to Eigen (the 32->64 layer: 2.4 ms alone,
  ~120 GFLOP/s), while ``W^T P`` is a row-major GEMM with long rows on YNNPACK (1.7-1.8 ms,
  transpose included). Alone, over 13 patch shapes (9-1152 rows, 1,600-43,264 positions, 32-128
  outputs), the transposed form took 0.45-0.93x the time, and 1.04x once; in the lesson convnet's
  epoch it took the step from 8.95 to 8.67 ms (-3%) for the 32->64 layer (288 rows), but made it
  0.5 ms slower for the input layer (9 rows, a 5.5 MB output whose consumers then read it more
  slowly), hence the threshold;
* **input gradient**: the stock backward convolutions have non-canonical dimension numbers, and
  inside a loop body XLA:CPU runs them about 5x (input gradient) and 25x (kernel gradient) slower
  than outside one (jax-ml/jax#12868). The input tangent ``conv(dx, w)`` is therefore written as
  ``P(dx) W`` with the row-major patches of ``dx`` (:func:`im2col_conv`); its transpose -- the
  input gradient -- is the GEMM ``g W^T`` followed by col2im (pads and adds over contiguous
  channel rows, which XLA fuses into the next layer's backward loop). Measured in a whole
  training epoch it beat the canonical transposed convolution (the previous rule) by ~5% and
  the col2im of the transposed patches (strided reads) by ~30%;
* **kernel gradient**: the kernel tangent ``conv(x, dw)`` is written through the patches,
  ``dy[n, i, o] = sum_{t, c} P[t, c, (n, i)] dw[t, c, o]``, so its transpose -- the kernel
  gradient -- is the plain row-major GEMM ``g_w[(t, c), o] = sum_{(n, i)} P[(t, c), (n, i)] g[(n, i), o]``.

Tangents that are known to be zero (the input of the first layer, when only the parameters are
differentiated) are skipped (``symbolic_zeros``), so they cost nothing.

The platform is chosen per lowering with ``lax.platform_dependent``: on GPU/TPU the forward is the
stock convolution and both tangents the plain ``conv(dx, w) + conv(x, dw)``, so values and
gradients are exactly the stock ones. Being a ``custom_jvp`` (not a ``custom_vjp``), the rule
supports every transformation: ``jit``, ``grad``, ``vmap``, ``jvp``/``jacfwd`` and higher-order
derivatives (``jax.hessian``). Cost on the CPU: the patches matrix (``prod(kernel_size)`` times
the input's size) is materialised by the forward pass and, when training, kept for the backward.
"""

from __future__ import annotations

import functools
import itertools
import math

import jax.numpy as jnp
from jax import lax
from jax.custom_derivatives import SymbolicZero

from functrain import _jax
from functrain.layers._geometry import LAYOUTS, PadSpec
from functrain.typing import Array

__all__ = ["conv", "gemm_conv", "im2col_conv", "patches_t", "plain_conv"]


def plain_conv(x: Array, w: Array, strides: tuple[int, ...], pads: PadSpec, dil: tuple[int, ...],
               spatial: int) -> Array:
    """The one ``lax.conv_general_dilated`` call (batched input ``(N, *spatial, c_in)``)."""
    return lax.conv_general_dilated(x, w, window_strides=strides, padding=pads, rhs_dilation=dil,
                                    dimension_numbers=LAYOUTS[spatial])


def explicit_pads(in_sizes: tuple[int, ...], ks: tuple[int, ...], strides: tuple[int, ...],
                  pads: PadSpec, dil: tuple[int, ...]) -> tuple[tuple[int, int], ...]:
    """``(low, high)`` padding per spatial axis (``"SAME"``/``"VALID"`` resolved as lax does)."""
    if not isinstance(pads, str):
        return tuple(pads)
    spans = tuple((k - 1) * d + 1 for k, d in zip(ks, dil, strict=True))
    return tuple(lax.padtype_to_pads(in_sizes, spans, strides, pads))


def _padding_and_output(sizes: tuple[int, ...], ks: tuple[int, ...], strides: tuple[int, ...], pads: PadSpec,
                        dil: tuple[int, ...]) -> tuple[tuple[tuple[int, int], ...], tuple[int, ...]]:
    """The ``(low, high)`` padding and the output size of each spatial axis."""
    lohi = explicit_pads(sizes, ks, strides, pads, dil)
    out = tuple((n + lo + hi - (k - 1) * d - 1) // s + 1
                for n, (lo, hi), k, d, s in zip(sizes, lohi, ks, dil, strides, strict=True))
    return lohi, out


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
    lohi, out = _padding_and_output(tuple(x.shape[1:-1]), ks, strides, pads, dil)
    xt = jnp.moveaxis(x, -1, 0)  # (C, N, *spatial)
    if any(p != (0, 0) for p in lohi):
        xt = lax.pad(xt, jnp.zeros((), x.dtype), ((0, 0, 0), (0, 0, 0), *((lo, hi, 0) for lo, hi in lohi)))
    # (k_0, C, N, out_0, *spatial[1:]), then each further axis's taps after the previous ones.
    p = _taps(xt, 2, ks[0], strides[0], dil[0], out[0], 0)
    for a in range(1, len(ks)):
        p = _taps(p, 2 + 2 * a, ks[a], strides[a], dil[a], out[a], a)
    return p.reshape(math.prod(ks) * x.shape[-1], x.shape[0] * math.prod(out)), out


def im2col_conv(x: Array, w: Array, strides: tuple[int, ...], pads: PadSpec, dil: tuple[int, ...],
                spatial: int) -> Array:
    """:func:`plain_conv` as ``P w``, with the row-major patches ``P`` ``(N prod(out), prod(k) C)``.

    Written for its transpose in ``x``: the GEMM ``g w^T`` (one row of patch gradients per output
    position) followed by col2im, which reads each tap's ``C`` channels contiguously.

    Example:
        >>> import jax.numpy as jnp
        >>> x, w = jnp.ones((1, 4, 4, 2)), jnp.ones((3, 3, 2, 5))
        >>> im2col_conv(x, w, (1, 1), "VALID", (1, 1), 2)[0, :, :, 0]
        Array([[18., 18.],
               [18., 18.]], dtype=float32)
    """
    del spatial  # the kernel's shape says it
    ks = tuple(w.shape[:-2])
    lohi, out = _padding_and_output(tuple(x.shape[1:-1]), ks, strides, pads, dil)
    if any(p != (0, 0) for p in lohi):
        x = lax.pad(x, jnp.zeros((), x.dtype), ((0, 0, 0), *((lo, hi, 0) for lo, hi in lohi), (0, 0, 0)))
    cols: list[Array] = []
    for taps in itertools.product(*(range(k) for k in ks)):
        start = (0, *(t * d for t, d in zip(taps, dil, strict=True)), 0)
        limit = (x.shape[0], *(t * d + (o - 1) * s + 1 for t, d, o, s in zip(taps, dil, out, strides, strict=True)),
                 x.shape[-1])
        cols.append(lax.slice(x, start, limit, (1, *strides, 1)))
    p = jnp.concatenate(cols, axis=-1).reshape(x.shape[0] * math.prod(out), -1)
    y = _jax.dot_general(p, w.reshape(p.shape[1], w.shape[-1]), (((1,), (0,)), ((), ())))
    return y.reshape(x.shape[0], *out, w.shape[-1])


def gemm_conv(x: Array, w: Array, strides: tuple[int, ...], pads: PadSpec, dil: tuple[int, ...],
              spatial: int, *, transposed: bool = False) -> Array:
    """:func:`plain_conv` as ``P^T w``: one GEMM over the transposed patches of ``x``.

    Linear in ``w``, with the plain GEMM ``P g`` as its transpose (the kernel gradient).

    With ``transposed`` the product is computed as ``Y^T = W^T P``, then ``Y`` (the CPU forward pass
    of :func:`conv` for large kernels; values equal up to float rounding): ``W^T P`` is a
    row-major GEMM with long rows (``c_out x N prod(out)``) that XLA:CPU runs on YNNPACK over every
    thread, while ``P^T W`` contracts the patches' first axis and goes to Eigen. The optimization
    barrier keeps XLA from folding the final transpose back into the dot.

    Example:
        >>> import jax.numpy as jnp
        >>> x, w = jnp.ones((1, 4, 4, 2)), jnp.ones((3, 3, 2, 5))
        >>> gemm_conv(x, w, (1, 1), "VALID", (1, 1), 2)[0, :, :, 0]
        Array([[18., 18.],
               [18., 18.]], dtype=float32)
        >>> gemm_conv(x, w, (1, 1), "VALID", (1, 1), 2, transposed=True)[0, :, :, 0]
        Array([[18., 18.],
               [18., 18.]], dtype=float32)
    """
    ks = tuple(w.shape[:spatial])
    p, out = patches_t(x, ks, strides, pads, dil)
    wm = w.reshape(p.shape[0], w.shape[-1])
    if transposed:
        yt = _jax.optimization_barrier(_jax.dot_general(wm, p, (((0,), (0,)), ((), ()))))  # (c_out, N prod(out))
        y = jnp.transpose(yt)
    else:
        y = _jax.dot_general(p, wm, (((0,), (0,)), ((), ())))  # (N prod(out), c_out)
    return y.reshape(x.shape[0], *out, w.shape[-1])


TRANSPOSED_FORWARD_MIN_ROWS = 64
"""Fewest patch rows (``prod(kernel_size) c_in``) for which the CPU forward is ``W^T P`` (module docstring)."""


def _forward(x: Array, w: Array, strides: tuple[int, ...], pads: PadSpec, dil: tuple[int, ...],
             spatial: int) -> Array:
    """The CPU forward: :func:`gemm_conv`, transposed for at least ``TRANSPOSED_FORWARD_MIN_ROWS`` patch rows."""
    rows = math.prod(w.shape[:spatial]) * w.shape[spatial]
    return gemm_conv(x, w, strides, pads, dil, spatial, transposed=rows >= TRANSPOSED_FORWARD_MIN_ROWS)


@_jax.custom_jvp(nondiff_argnums=(2, 3, 4, 5))
def conv(x: Array, w: Array, strides: tuple[int, ...], pads: PadSpec, dil: tuple[int, ...],
         spatial: int) -> Array:
    """``lax.conv_general_dilated``, in CPU-friendly forms on the CPU (see the module docstring)."""
    def cpu(xx: Array, ww: Array) -> Array:
        return _forward(xx, ww, strides, pads, dil, spatial)

    def stock(xx: Array, ww: Array) -> Array:
        return plain_conv(xx, ww, strides, pads, dil, spatial)

    return _jax.platform_dependent(x, w, cpu=cpu, default=stock)


@functools.partial(conv.defjvp, symbolic_zeros=True)
def _conv_jvp(strides: tuple[int, ...], pads: PadSpec, dil: tuple[int, ...], spatial: int,
              primals: tuple[Array, Array], tangents: tuple[Array, Array]) -> tuple[Array, Array]:
    """``d conv(x, w) = conv(dx, w) + conv(x, dw)``, each written for XLA:CPU's fast paths on the CPU."""
    x, w = primals
    x_dot, w_dot = tangents
    y = conv(x, w, strides, pads, dil, spatial)  # itself, so higher orders use these rules too
    has_x, has_w = not isinstance(x_dot, SymbolicZero), not isinstance(w_dot, SymbolicZero)

    def cpu(xx: Array, ww: Array, xd: Array, wd: Array) -> Array:
        parts = ([im2col_conv(xd, ww, strides, pads, dil, spatial)] if has_x else []) + (
            [gemm_conv(xx, wd, strides, pads, dil, spatial)] if has_w else [])
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
