"""The convolution primitive behind every functrain convolution, with a CPU-friendly kernel gradient.

``conv(x, w, strides, pads, dil, spatial)`` is ``lax.conv_general_dilated`` on a batched,
channels-last input with an HWIO kernel (:data:`~functrain.layers._geometry.LAYOUTS`). Its forward
value is unchanged; what it adds is a ``jax.custom_jvp``.

Why: XLA:CPU runs the kernel-gradient convolution (the transpose of ``conv_general_dilated`` with
respect to the kernel) about 100x slower inside a ``lax.scan`` / ``while`` body than outside one
(jax-ml/jax#12868), which made a scanned training epoch ~10x slower than a Python loop of jitted
steps. So the kernel tangent is, on the CPU only, written through the im2col patches of the input,
``dy[n, i, o] = sum_{t, c} P[n, i, c, t] dw[t, c, o]`` with ``P = lax.conv_general_dilated_patches(x)``
(the same window geometry), and its transpose -- the kernel gradient -- becomes the contraction
``g_w[t, c, o] = sum_{n, i} P[n, i, c, t] g[n, i, o]`` instead of a backward-filter convolution.
The input tangent stays ``conv(dx, w)`` (its transpose is the usual transposed convolution).

The platform is chosen per lowering with ``lax.platform_dependent``: on GPU/TPU the kernel tangent
is the plain ``conv(x, dw)``, so gradients are exactly the stock ones. Being a ``custom_jvp`` (not
a ``custom_vjp``), the rule supports every transformation: ``jit``, ``grad``, ``vmap``,
``jvp``/``jacfwd`` and higher-order derivatives (``jax.hessian``). Cost: on the CPU the patches
tensor (``prod(kernel_size)`` times the input's size) is a residual of the backward pass.
"""

from __future__ import annotations

import functools
import string

import jax
import jax.numpy as jnp
from jax import lax

from functrain.layers._geometry import LAYOUTS, PadSpec
from functrain.typing import Array

__all__ = ["conv", "plain_conv"]


def plain_conv(x: Array, w: Array, strides: tuple[int, ...], pads: PadSpec, dil: tuple[int, ...],
               spatial: int) -> Array:
    """The one ``lax.conv_general_dilated`` call (batched input ``(N, *spatial, c_in)``)."""
    return lax.conv_general_dilated(x, w, window_strides=strides, padding=pads, rhs_dilation=dil,
                                    dimension_numbers=LAYOUTS[spatial])


def _patches_kernel_tangent(x: Array, w_dot: Array, strides: tuple[int, ...], pads: PadSpec,
                            dil: tuple[int, ...], spatial: int) -> Array:
    """``conv(x, w_dot)`` written as im2col patches of ``x`` contracted with ``w_dot``.

    ``lax.conv_general_dilated_patches`` returns ``(N, *out, c_in * prod(k))`` with the feature axis
    ordered ``(c_in, *k)``; ``out[n, i, o] = sum_{c, t} P[n, i, c, t] w_dot[t, c, o]``. Linear in
    ``w_dot``, so its transpose (the kernel gradient) is one contraction over ``(n, i)``.
    """
    ks = tuple(w_dot.shape[:spatial])
    c_in = w_dot.shape[-2]
    p = lax.conv_general_dilated_patches(x, ks, strides, pads, rhs_dilation=dil,
                                         dimension_numbers=LAYOUTS[spatial])
    p = p.reshape(*p.shape[:-1], c_in, *ks)
    pos = string.ascii_lowercase[:spatial]  # output positions
    taps = string.ascii_lowercase[spatial:2 * spatial]  # kernel taps
    return jnp.einsum(f"N{pos}C{taps},{taps}CO->N{pos}O", p, w_dot)


@functools.partial(jax.custom_jvp, nondiff_argnums=(2, 3, 4, 5))
def conv(x: Array, w: Array, strides: tuple[int, ...], pads: PadSpec, dil: tuple[int, ...],
         spatial: int) -> Array:
    """``lax.conv_general_dilated`` with a CPU-friendly kernel gradient (see the module docstring)."""
    return plain_conv(x, w, strides, pads, dil, spatial)


@conv.defjvp
def _conv_jvp(strides: tuple[int, ...], pads: PadSpec, dil: tuple[int, ...], spatial: int,
              primals: tuple[Array, Array], tangents: tuple[Array, Array]) -> tuple[Array, Array]:
    """``d conv(x, w) = conv(dx, w) + conv(x, dw)``; on the CPU ``conv(x, dw)`` goes through patches."""
    x, w = primals
    x_dot, w_dot = tangents
    y = plain_conv(x, w, strides, pads, dil, spatial)

    def patches(xx: Array, wd: Array) -> Array:
        return _patches_kernel_tangent(xx, wd, strides, pads, dil, spatial)

    def plain(xx: Array, wd: Array) -> Array:
        return plain_conv(xx, wd, strides, pads, dil, spatial)

    dy_w: Array = lax.platform_dependent(x, w_dot, cpu=patches, default=plain)
    return y, plain_conv(x_dot, w, strides, pads, dil, spatial) + dy_w
