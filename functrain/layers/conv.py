"""Convolutions over channels-last inputs: ``conv1d`` (NWC) and ``conv2d`` (NHWC) with HWIO kernels.

``y[n, i, j, o] = b[o] + sum_{di, dj, c} x[n, i*s_h + di*d_h - p_h, j*s_w + dj*d_w - p_w, c] w[di, dj, c, o]``
(cross-correlation, as in every deep-learning library), with strides ``s``, dilations ``d`` and
padding offsets ``p``. Each op is a single ``lax.conv_general_dilated`` call plus a bias add.

Kernel gradient on the CPU: XLA:CPU runs the kernel-gradient convolution (the transpose of
``conv_general_dilated`` with respect to the kernel) about 100x slower inside a ``lax.scan`` /
``while`` body than outside one (jax-ml/jax#12868), which made a scanned training epoch ~10x slower
than a Python loop of jitted steps. The convolution therefore carries a ``jax.custom_jvp`` whose
kernel tangent is, on the CPU only, written through the im2col patches of the input,
``dy[n, i, o] = sum_{t, c} P[n, i, c, t] dw[t, c, o]`` with ``P = lax.conv_general_dilated_patches(x)``
(the same window geometry), so that its transpose -- the kernel gradient -- is the contraction
``g_w[t, c, o] = sum_{n, i} P[n, i, c, t] g[n, i, o]`` instead of a backward-filter convolution.
The input tangent stays ``conv(dx, w)`` (its transpose is the usual transposed convolution) and
the forward value is the unchanged ``lax.conv_general_dilated``. The platform is chosen per
lowering with ``lax.platform_dependent``: on GPU/TPU the kernel tangent is the plain ``conv(x, dw)``,
so gradients are exactly the stock ones. Being a ``custom_jvp`` (not a ``custom_vjp``), the rule
supports every transformation: ``jit``, ``grad``, ``vmap``, ``jvp``/``jacfwd`` and higher-order
derivatives (``jax.hessian``). Cost: the patches tensor (``prod(kernel_size)`` times the input's
size) is a residual of the backward pass on the CPU.

Default initialization: kernels ``glorot_uniform`` with fans ``n_in = k_h k_w c_in`` and
``n_out = k_h k_w c_out`` (the HWIO convention of :func:`functrain.initializers.compute_fans`), biases
``zeros``. For deep ReLU networks pass ``w_init=initializers.he_normal()``.
"""

from __future__ import annotations

import functools
import string
from collections.abc import Sequence
from typing import Literal, NamedTuple

import jax
import jax.numpy as jnp
from jax import lax
from jaxtyping import Float

from functrain.initializers import glorot_uniform, zeros
from functrain.layers._util import (
    PaddingLike,
    Pads,
    check_count,
    fmt,
    int_tuple,
    normalize_padding,
    check_array_rank,
    check_input_shape,
    spatial_output,
)
from functrain.layers.base import Layer
from functrain.typing import Array, DTypeLike, Initializer, PRNGKey, PyTree, Shape

__all__ = [
    "Conv1D",
    "Conv2D",
    "ConvParams",
    "PaddingLike",
    "conv1d",
    "conv2d",
    "init_conv1d",
    "init_conv2d",
]

_LAYOUTS: dict[int, tuple[str, str, str]] = {
    1: ("NWC", "WIO", "NWC"),
    2: ("NHWC", "HWIO", "NHWC"),
    3: ("NDHWC", "DHWIO", "NDHWC"),
}


class ConvParams(NamedTuple):
    """Parameters of a convolution.

    Attributes:
        w: kernel in HWIO layout, shape ``(*kernel_size, in_channels, out_channels)``
            (``(k_w, c_in, c_out)`` for 1-D, ``(k_h, k_w, c_in, c_out)`` for 2-D).
        b: bias, shape ``(out_channels,)``.
    """

    w: Array
    b: Array


def _init_conv(
    key: PRNGKey,
    in_channels: int,
    out_channels: int,
    kernel_size: int | Sequence[int],
    *,
    spatial: int,
    w_init: Initializer,
    b_init: Initializer,
    dtype: DTypeLike,
    who: str,
) -> ConvParams:
    check_count(in_channels, "in_channels", who)
    check_count(out_channels, "out_channels", who)
    ks = int_tuple(kernel_size, spatial, "kernel_size", who)
    k_w, k_b = jax.random.split(key)
    return ConvParams(
        w=w_init(k_w, (*ks, in_channels, out_channels), dtype),
        b=b_init(k_b, (out_channels,), dtype),
    )


def init_conv1d(
    key: PRNGKey,
    in_channels: int,
    out_channels: int,
    kernel_size: int | Sequence[int],
    *,
    w_init: Initializer = glorot_uniform(),
    b_init: Initializer = zeros(),
    dtype: DTypeLike = jnp.float32,
) -> ConvParams:
    """Initialize a 1-D convolution's parameters.

    Args:
        key: PRNG key (split internally between kernel and bias).
        in_channels: input channels ``c_in``.
        out_channels: output channels ``c_out``.
        kernel_size: ``k`` or ``(k,)``.
        w_init: kernel initializer, shape ``(k, c_in, c_out)``; default ``glorot_uniform()``.
        b_init: bias initializer, shape ``(c_out,)``; default ``zeros()``.
        dtype: parameter dtype (default float32).

    Returns:
        ``ConvParams(w (k, c_in, c_out), b (c_out,))``.

    Raises:
        ValueError: non-positive channel counts or kernel size.
    """
    return _init_conv(key, in_channels, out_channels, kernel_size, spatial=1, w_init=w_init,
                      b_init=b_init, dtype=dtype, who="init_conv1d")


def init_conv2d(
    key: PRNGKey,
    in_channels: int,
    out_channels: int,
    kernel_size: int | Sequence[int],
    *,
    w_init: Initializer = glorot_uniform(),
    b_init: Initializer = zeros(),
    dtype: DTypeLike = jnp.float32,
) -> ConvParams:
    """Initialize a 2-D convolution's parameters.

    Args:
        key: PRNG key (split internally between kernel and bias).
        in_channels: input channels ``c_in``.
        out_channels: output channels ``c_out``.
        kernel_size: ``k`` (square) or ``(k_h, k_w)``.
        w_init: kernel initializer, shape ``(k_h, k_w, c_in, c_out)`` (HWIO); default ``glorot_uniform()``.
        b_init: bias initializer, shape ``(c_out,)``; default ``zeros()``.
        dtype: parameter dtype (default float32).

    Returns:
        ``ConvParams(w (k_h, k_w, c_in, c_out), b (c_out,))``.

    Raises:
        ValueError: non-positive channel counts or kernel size.
    """
    return _init_conv(key, in_channels, out_channels, kernel_size, spatial=2, w_init=w_init,
                      b_init=b_init, dtype=dtype, who="init_conv2d")


def _conv_geometry(
    w_shape: Sequence[int],
    x_shape: Sequence[int],
    *,
    spatial: int,
    stride: int | Sequence[int],
    padding: PaddingLike,
    dilation: int | Sequence[int],
    who: str,
    batched_only: bool = False,
) -> tuple[tuple[int, ...], Literal["SAME", "VALID"] | Pads, tuple[int, ...], Shape]:
    """Check a convolution's kernel and input shapes; return strides, padding, dilation, out spatial."""
    layout_x, layout_w, _ = _LAYOUTS[spatial]
    if len(w_shape) != spatial + 2:
        raise ValueError(f"{who}: kernel w must have rank {spatial + 2} ({layout_w}), got shape {fmt(w_shape)}")
    ranks = (spatial + 2,) if batched_only else (spatial + 2, spatial + 1)
    if len(x_shape) not in ranks:
        one = "" if batched_only else f" or rank {spatial + 1} ({layout_x[1:]}, one example)"
        raise ValueError(
            f"{who}: expected an input of rank {spatial + 2} ({layout_x}){one}, got shape {fmt(x_shape)}"
        )
    c_in = w_shape[-2]
    if x_shape[-1] != c_in:
        raise ValueError(
            f"{who}: expected an input with {c_in} channels in its last axis ({layout_x}, kernel "
            f"{fmt(w_shape)}), got shape {fmt(x_shape)}"
        )
    strides = int_tuple(stride, spatial, "stride", who)
    dil = int_tuple(dilation, spatial, "dilation", who)
    pads = normalize_padding(padding, spatial, who)
    out = spatial_output(
        tuple(x_shape[-spatial - 1:-1]), tuple(w_shape[:spatial]), strides, dil, pads,
        who=who, what="kernel", input_shape=x_shape,
    )
    return strides, pads, dil, out


def _plain_conv(
    x: Array, w: Array, strides: tuple[int, ...], pads: Literal["SAME", "VALID"] | Pads,
    dil: tuple[int, ...], spatial: int,
) -> Array:
    """The one ``lax.conv_general_dilated`` call behind every convolution (batched input)."""
    return lax.conv_general_dilated(
        x, w,
        window_strides=strides,
        padding=pads,
        rhs_dilation=dil,
        dimension_numbers=_LAYOUTS[spatial],
    )


def _patches_kernel_tangent(
    x: Array, w_dot: Array, strides: tuple[int, ...], pads: Literal["SAME", "VALID"] | Pads,
    dil: tuple[int, ...], spatial: int,
) -> Array:
    """``conv(x, w_dot)`` written as im2col patches of ``x`` contracted with ``w_dot``.

    ``lax.conv_general_dilated_patches`` returns ``(N, *out, c_in * prod(k))`` with the feature axis
    ordered ``(c_in, *k)``; ``out[n, i, o] = sum_{c, t} P[n, i, c, t] w_dot[t, c, o]``. Linear in
    ``w_dot``, so its transpose (the kernel gradient) is one contraction over ``(n, i)``.
    """
    ks = tuple(w_dot.shape[:spatial])
    c_in = w_dot.shape[-2]
    p = lax.conv_general_dilated_patches(
        x, ks, strides, pads, rhs_dilation=dil, dimension_numbers=_LAYOUTS[spatial],
    )
    p = p.reshape(*p.shape[:-1], c_in, *ks)
    pos = string.ascii_lowercase[:spatial]  # output positions
    taps = string.ascii_lowercase[spatial:2 * spatial]  # kernel taps
    spec = f"N{pos}C{taps},{taps}CO->N{pos}O"
    return jnp.einsum(spec, p, w_dot)


@functools.partial(jax.custom_jvp, nondiff_argnums=(2, 3, 4, 5))
def _conv(
    x: Array, w: Array, strides: tuple[int, ...], pads: Literal["SAME", "VALID"] | Pads,
    dil: tuple[int, ...], spatial: int,
) -> Array:
    """``lax.conv_general_dilated`` with a CPU-friendly kernel gradient (see the module docstring)."""
    return _plain_conv(x, w, strides, pads, dil, spatial)


@_conv.defjvp
def _conv_jvp(
    strides: tuple[int, ...], pads: Literal["SAME", "VALID"] | Pads, dil: tuple[int, ...], spatial: int,
    primals: tuple[Array, Array], tangents: tuple[Array, Array],
) -> tuple[Array, Array]:
    """``d conv(x, w) = conv(dx, w) + conv(x, dw)``; on the CPU ``conv(x, dw)`` goes through patches."""
    x, w = primals
    x_dot, w_dot = tangents
    y = _plain_conv(x, w, strides, pads, dil, spatial)

    def patches(xx: Array, wd: Array) -> Array:
        return _patches_kernel_tangent(xx, wd, strides, pads, dil, spatial)

    def plain(xx: Array, wd: Array) -> Array:
        return _plain_conv(xx, wd, strides, pads, dil, spatial)

    dy_w: Array = lax.platform_dependent(x, w_dot, cpu=patches, default=plain)
    return y, _plain_conv(x_dot, w, strides, pads, dil, spatial) + dy_w


def _apply_conv(
    params: ConvParams,
    x: Array,
    *,
    spatial: int,
    stride: int | Sequence[int],
    padding: PaddingLike,
    dilation: int | Sequence[int],
    who: str,
    batched_only: bool = False,
) -> Array:
    """Convolution with ``spatial`` spatial dims; errors name ``who``."""
    w, b = params
    if b.shape != (w.shape[-1],):
        raise ValueError(
            f"{who}: bias b must have shape {fmt((w.shape[-1],))} to match kernel {fmt(w.shape)}, got {fmt(b.shape)}"
        )
    strides, pads, dil, _ = _conv_geometry(
        w.shape, x.shape, spatial=spatial, stride=stride, padding=padding, dilation=dilation,
        who=who, batched_only=batched_only,
    )
    dtype = jnp.result_type(x, w)
    batched = x.ndim == spatial + 2
    xb = x if batched else x[None]
    y = _conv(xb.astype(dtype), w.astype(dtype), strides, pads, dil, spatial)
    y = y + b.astype(dtype)
    return y if batched else y[0]


def conv1d(
    params: ConvParams,
    x: Float[Array, "*batch width in_channels"],
    *,
    stride: int | Sequence[int] = 1,
    padding: PaddingLike = "SAME",
    dilation: int | Sequence[int] = 1,
) -> Float[Array, "*batch out_width out_channels"]:
    """1-D convolution (cross-correlation) of an NWC input with a ``(k, c_in, c_out)`` kernel.

    ``y[n, i, o] = b[o] + sum_{t, c} x[n, i s + t d - p, c] w[t, c, o]``.

    Args:
        params: ``ConvParams(w (k, c_in, c_out), b (c_out,))``.
        x: input ``(N, W, c_in)``, or ``(W, c_in)`` for one example.
        stride: step ``s`` between windows (int or 1-tuple).
        padding: ``"SAME"`` (output ``ceil(W / s)``), ``"VALID"``, an int, or one ``(low, high)`` pair.
        dilation: kernel dilation ``d`` (atrous convolution; int or 1-tuple).

    Returns:
        ``(N, W_out, c_out)`` (or ``(W_out, c_out)``).

    Raises:
        ValueError: wrong input rank or channel count, or a kernel larger than the (padded) input,
            raised at trace time with the expected and actual shapes.
    """
    return _apply_conv(params, x, spatial=1, stride=stride, padding=padding, dilation=dilation, who="conv1d")


def conv2d(
    params: ConvParams,
    x: Float[Array, "*batch height width in_channels"],
    *,
    stride: int | Sequence[int] = 1,
    padding: PaddingLike = "SAME",
    dilation: int | Sequence[int] = 1,
) -> Float[Array, "*batch out_height out_width out_channels"]:
    """2-D convolution (cross-correlation) of an NHWC input with an HWIO kernel.

    ``y[n, i, j, o] = b[o] + sum_{u, v, c} x[n, i s_h + u d_h - p_h, j s_w + v d_w - p_w, c] w[u, v, c, o]``.

    Args:
        params: ``ConvParams(w (k_h, k_w, c_in, c_out), b (c_out,))``.
        x: input ``(N, H, W, c_in)``, or ``(H, W, c_in)`` for one example.
        stride: ``s`` or ``(s_h, s_w)``.
        padding: ``"SAME"`` (output ``ceil(H / s_h) x ceil(W / s_w)``), ``"VALID"``, an int ``p``
            (``p`` zeros on every side) or two ``(low, high)`` pairs.
        dilation: kernel dilation ``d`` or ``(d_h, d_w)``.

    Returns:
        ``(N, H_out, W_out, c_out)`` (or without ``N``).

    Raises:
        ValueError: wrong input rank or channel count, or a kernel larger than the (padded) input,
            raised at trace time with the expected and actual shapes.
    """
    return _apply_conv(params, x, spatial=2, stride=stride, padding=padding, dilation=dilation, who="conv2d")


def _conv_layer(
    out_channels: int,
    kernel_size: int | Sequence[int],
    *,
    spatial: int,
    stride: int | Sequence[int],
    padding: PaddingLike,
    dilation: int | Sequence[int],
    w_init: Initializer,
    b_init: Initializer,
    ctor: str,
) -> Layer:
    check_count(out_channels, "out_channels", ctor)
    ks = int_tuple(kernel_size, spatial, "kernel_size", ctor)
    int_tuple(stride, spatial, "stride", ctor)
    int_tuple(dilation, spatial, "dilation", ctor)
    normalize_padding(padding, spatial, ctor)
    name = f"{ctor}({out_channels}, {ks})"
    layout = _LAYOUTS[spatial][0]

    def init(key: PRNGKey, input_shape: Sequence[int]) -> tuple[PyTree, PyTree, Shape]:
        shape = check_input_shape(input_shape, name, rank=spatial + 2, layout=f"({', '.join(layout)})")
        c_in = shape[-1]
        _, _, _, out = _conv_geometry((*ks, c_in, out_channels), shape, spatial=spatial, stride=stride,
                                      padding=padding, dilation=dilation, who=name, batched_only=True)
        params = _init_conv(key, c_in, out_channels, ks, spatial=spatial, w_init=w_init, b_init=b_init,
                            dtype=jnp.float32, who=name)
        return params, (), (shape[0], *out, out_channels)

    def apply(
        params: PyTree, state: PyTree, x: Array, *, key: PRNGKey | None = None, train: bool
    ) -> tuple[Array, PyTree]:
        del key, train
        check_array_rank(x, name, rank=spatial + 2, layout=f"({', '.join(layout)})")
        y = _apply_conv(params, x, spatial=spatial, stride=stride, padding=padding, dilation=dilation,
                        who=name, batched_only=True)
        return y, state

    return Layer(init, apply)


def Conv1D(  # noqa: N802 (layer constructor)
    out_channels: int,
    kernel_size: int | Sequence[int],
    *,
    stride: int | Sequence[int] = 1,
    padding: PaddingLike = "SAME",
    dilation: int | Sequence[int] = 1,
    w_init: Initializer = glorot_uniform(),
    b_init: Initializer = zeros(),
) -> Layer:
    """A 1-D convolution (:func:`conv1d`) over ``(N, W, C)`` batches as a composable layer.

    Args:
        out_channels: output channels.
        kernel_size: ``k`` or ``(k,)``.
        stride: as in :func:`conv1d` (default 1).
        padding: as in :func:`conv1d` (default ``"SAME"``).
        dilation: as in :func:`conv1d` (default 1).
        w_init: kernel initializer, HWIO shape ``(k, c_in, c_out)``; default ``glorot_uniform()``.
        b_init: bias initializer; default ``zeros()``.

    Returns:
        The layer; ``init`` returns ``(ConvParams, (), (N, W_out, out_channels))``.

    Raises:
        ValueError: bad hyperparameters; at ``init``/``apply``, an input of the wrong rank or channel
            count or smaller than the kernel (message names the layer and both shapes).
    """
    return _conv_layer(out_channels, kernel_size, spatial=1, stride=stride, padding=padding,
                       dilation=dilation, w_init=w_init, b_init=b_init, ctor="Conv1D")


def Conv2D(  # noqa: N802 (layer constructor)
    out_channels: int,
    kernel_size: int | Sequence[int],
    *,
    stride: int | Sequence[int] = 1,
    padding: PaddingLike = "SAME",
    dilation: int | Sequence[int] = 1,
    w_init: Initializer = glorot_uniform(),
    b_init: Initializer = zeros(),
) -> Layer:
    """A 2-D convolution (:func:`conv2d`) over ``(N, H, W, C)`` batches as a composable layer.

    Args:
        out_channels: output channels.
        kernel_size: ``k`` (square) or ``(k_h, k_w)``.
        stride: as in :func:`conv2d` (default 1).
        padding: as in :func:`conv2d` (default ``"SAME"``).
        dilation: as in :func:`conv2d` (default 1).
        w_init: kernel initializer, HWIO shape ``(k_h, k_w, c_in, c_out)``; default ``glorot_uniform()``.
        b_init: bias initializer; default ``zeros()``.

    Returns:
        The layer; ``init`` returns ``(ConvParams, (), (N, H_out, W_out, out_channels))``.

    Raises:
        ValueError: bad hyperparameters; at ``init``/``apply``, an input of the wrong rank or channel
            count or smaller than the kernel (message names the layer and both shapes).
    """
    return _conv_layer(out_channels, kernel_size, spatial=2, stride=stride, padding=padding,
                       dilation=dilation, w_init=w_init, b_init=b_init, ctor="Conv2D")
