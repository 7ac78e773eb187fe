"""The matrix product behind every functrain dense layer, in CPU-friendly forms for two shapes.

``matmul(x, w)`` is ``jnp.matmul(x, w)`` for an input ``(..., n_in)`` and a kernel
``(n_in, n_out)``, with the same values (to float rounding) and the same gradients everywhere.
What changes, on the CPU only, is *how* two products are computed: the kernel gradient of a
narrow layer, and the forward product of a small-kernel, wide-output layer.

The stock kernel gradient ``g_w = x^T g`` contracts the batch axis, the first axis of both
operands. XLA:CPU hands that form to Eigen, which runs it far below the machine's speed when the
output is narrow (``n_out`` up to a few SIMD lanes: a classifier head, a bottleneck, a regression
output): in the benchmark MLP's training step (64-512-512-10, batch 64, jax 0.10.2, 2-core x86)
the 512x10 kernel gradient of the last layer took 82 us, 8% of the whole step, for 0.65 MFLOP.
The same numbers computed as ``(g^T x)^T`` -- the batch axis transposed out of the way first, so
that XLA:CPU's YNNPACK GEMM produces ``g_w^T`` (``n_out x n_in``) with its long axis last --
take 10 us. Measured alone inside ``lax.scan`` (``stock / this`` time, 2 cores): batch 64:
``n_in=512, n_out=10``: 8.2x; ``n_in=1024, n_out=32``: 2.2x; batch 256: 1.3-4x; batch 8 and
1024: 1.2-9x, over ``n_in`` 32-2048 and ``n_out`` 1-32. For wide outputs (``n_out`` of 64 and
more, or not below ``n_in``) the stock form is as fast or faster, and its gradient feeds the
optimizer without a transpose, so it is kept there (:func:`narrow`).

The rule is a ``custom_jvp`` whose kernel tangent ``x dw`` is written as
``((dw^T)' x^T)^T``, with an optimization barrier (``'``) after each of the first two steps;
JAX transposes it into exactly the form above (the barriers keep XLA's algebraic simplifier from
folding the transposes back into the dot). The input tangent ``dx w`` is stock. Being a
``custom_jvp`` with linear tangents, every transformation works: ``jit``, ``grad``, ``vmap``,
``jvp``/``jacfwd`` and higher derivatives. The platform is chosen per lowering with
``lax.platform_dependent``: on GPU/TPU the tangent is the plain ``x dw``, and so is the gradient.
Layers whose shapes the rule does not cover are the plain ``jnp.matmul``, untouched.

A second CPU rule concerns the *forward* product of a layer with a small kernel and a wide output
(an MLP's input layer: 64 digit pixels to 512 units). XLA:CPU's YNNPACK GEMM runs such a product on
the calling thread only (profiled, jax 0.10.2: no worker activity during a 64x64 by 64x512 GEMM, 41
us at one core's ~100 GFLOP/s, while the 64x256 by 256x512 one uses both cores at 195 GFLOP/s), so
one of the two cores idles, and the next big GEMM starts with a cold worker. The same product as
``dot(x^T, w)`` contracting the first axes (``x^T`` materialised behind an optimization barrier)
goes to Eigen, which splits it over both threads. Measured (:func:`small_panel` shapes), in a
two-layer chain ``relu(relu(x w1) w2)`` in ``lax.scan`` (``this / stock`` time, two runs): rows 64,
64 -> 512: 0.77, 0.77; 32 -> 1024: 0.84, 0.78; rows 128, 32 -> 512: 0.67, 0.67; 64 -> 512: 0.88,
0.67; rows 32, 128 -> 512: 0.77, 0.82; rows 256: 0.97-1.01; no shape of the rule slower than 1.02.
In the benchmark MLP's training step (64-512-512-10, batch 64, Adam) the step went from 0.92 to
0.86 ms (the first layer 43 -> 28 us, the next layer's forward GEMM 218 -> 170 us). Outside that
region (a kernel panel over 256 KB, which YNNPACK splits; fewer rows or a narrower output, where
neither form uses a second thread) the stock product is as fast or faster. Only the primal takes
this form (the same sums, added in another order: equal to the stock product to float rounding);
its ``custom_jvp`` tangents are the stock products, so the backward pass (the kernel gradient
``x^T g`` included) is the stock program's.
"""

from __future__ import annotations

import functools
import math

import jax.numpy as jnp
from jax.custom_derivatives import SymbolicZero

from functrain import _jax
from functrain.typing import Array

__all__ = ["NARROW_MAX", "PANEL_MAX", "matmul", "narrow", "small_panel"]

NARROW_MAX = 32
"""Widest ``n_out`` whose kernel gradient takes the transposed-GEMM form on the CPU."""


def narrow(x_shape: tuple[int, ...], w_shape: tuple[int, ...]) -> bool:
    """Whether the kernel gradient of ``x @ w`` takes the CPU form: a batch of inputs, and
    ``n_out <= NARROW_MAX`` and ``n_out < n_in``."""
    n_in, n_out = w_shape
    return len(x_shape) >= 2 and n_out <= NARROW_MAX and n_out < n_in


PANEL_MAX = 65536
"""Most kernel entries (``n_in n_out``) whose forward product takes the first-axis form on the CPU."""


def small_panel(x_shape: tuple[int, ...], w_shape: tuple[int, ...]) -> bool:
    """Whether the forward product ``x @ w`` takes the CPU's two-thread form: at least 32 rows of
    input (the batch and any leading axes), an output of at least 512 units, a kernel of at most
    ``PANEL_MAX`` = 65,536 entries (256 KB in float32) and at least 2**21 multiply-adds."""
    if len(x_shape) < 2:
        return False
    rows = math.prod(x_shape[:-1])
    n_in, n_out = w_shape
    return rows >= 32 and n_out >= 512 and n_in * n_out <= PANEL_MAX and rows * n_in * n_out >= 2**21


def matmul(x: Array, w: Array) -> Array:
    """``jnp.matmul(x, w)`` (``x (..., n_in)``, ``w (n_in, n_out)``); on the CPU, the kernel
    gradient of a narrow layer (:func:`narrow`) and the forward product of a small-kernel,
    wide-output layer (:func:`small_panel`) take the forms of the module docstring.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> x, w = jnp.ones((4, 3)), jnp.ones((3, 2))
        >>> matmul(x, w).tolist()
        [[3.0, 3.0], [3.0, 3.0], [3.0, 3.0], [3.0, 3.0]]
        >>> jax.grad(lambda w: matmul(x, w).sum())(w).tolist()
        [[4.0, 4.0], [4.0, 4.0], [4.0, 4.0]]
    """
    if narrow(tuple(x.shape), tuple(w.shape)):
        return _narrow_matmul(x, w)
    if small_panel(tuple(x.shape), tuple(w.shape)):
        return _panel_matmul(x, w)
    return jnp.matmul(x, w)


def _kernel_tangent_cpu(x2: Array, w_dot: Array) -> Array:
    """``x2 @ w_dot`` (``x2 (B, n_in)``), written so that its transpose in ``w_dot`` is
    ``(g^T x2)^T``: ``g^T`` materialised, one GEMM with output ``(n_out, n_in)``, then a transpose."""
    a = _jax.optimization_barrier(jnp.transpose(w_dot))  # (n_out, n_in)
    c = _jax.optimization_barrier(_jax.dot_general(a, x2, (((1,), (1,)), ((), ()))))  # (n_out, B)
    return jnp.transpose(c)


@_jax.custom_jvp(nondiff_argnums=())
def _narrow_matmul(x: Array, w: Array) -> Array:
    return jnp.matmul(x, w)


@functools.partial(_narrow_matmul.defjvp, symbolic_zeros=True)
def _narrow_matmul_jvp(primals: tuple[Array, Array], tangents: tuple[Array, Array]) -> tuple[Array, Array]:
    """``d(x w) = dx w + x dw``; on the CPU the second term in the transposed-GEMM form."""
    x, w = primals
    x_dot, w_dot = tangents
    y = _narrow_matmul(x, w)  # itself, so higher orders use this rule too
    parts: list[Array] = []
    if not isinstance(x_dot, SymbolicZero):
        parts.append(jnp.matmul(x_dot, w))
    if not isinstance(w_dot, SymbolicZero):
        x2 = x.reshape(-1, x.shape[-1])

        def stock(xx: Array, wd: Array) -> Array:
            return jnp.matmul(xx, wd)

        dy = _jax.platform_dependent(x2, w_dot, cpu=_kernel_tangent_cpu, default=stock)
        parts.append(dy.reshape(y.shape))
    if not parts:
        return y, jnp.zeros_like(y)
    return y, functools.reduce(jnp.add, parts)


def _forward_cpu(x2: Array, w: Array) -> Array:
    """``x2 @ w`` (``x2 (B, n_in)``) as ``dot(x2^T, w)`` contracting the first axes, ``x2^T``
    materialised: the Eigen GEMM that uses every thread (module docstring)."""
    xt = _jax.optimization_barrier(jnp.transpose(x2))  # (n_in, B)
    return _jax.dot_general(xt, w, (((0,), (0,)), ((), ())))


@_jax.custom_jvp(nondiff_argnums=())
def _panel_matmul(x: Array, w: Array) -> Array:
    x2 = x.reshape(-1, x.shape[-1])
    y = _jax.platform_dependent(x2, w, cpu=_forward_cpu, default=jnp.matmul)
    return y.reshape(*x.shape[:-1], w.shape[-1])


@functools.partial(_panel_matmul.defjvp, symbolic_zeros=True)
def _panel_matmul_jvp(primals: tuple[Array, Array], tangents: tuple[Array, Array]) -> tuple[Array, Array]:
    """``d(x w) = dx w + x dw``, both terms the stock products."""
    x, w = primals
    x_dot, w_dot = tangents
    y = _panel_matmul(x, w)
    parts: list[Array] = []
    if not isinstance(x_dot, SymbolicZero):
        parts.append(jnp.matmul(x_dot, w))
    if not isinstance(w_dot, SymbolicZero):
        parts.append(jnp.matmul(x, w_dot))
    if not parts:
        return y, jnp.zeros_like(y)
    return y, functools.reduce(jnp.add, parts)
