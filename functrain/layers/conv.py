"""Convolutions over channels-last inputs: ``conv1d`` (NWC) and ``conv2d`` (NHWC) with HWIO kernels.

``y[n, i, j, o] = b[o] + sum_{di, dj, c} x[n, i*s_h + di*d_h - p_h, j*s_w + dj*d_w - p_w, c] w[di, dj, c, o]``
(cross-correlation, as in every deep-learning library), with strides ``s``, dilations ``d`` and
padding offsets ``p``. Each op is one ``lax.conv_general_dilated`` call plus a bias add on GPU/TPU.
On the CPU the same convolution and its gradients are written in the forms XLA:CPU runs fastest,
also inside ``lax.scan`` (jax-ml/jax#12868): the forward pass and the kernel gradient as GEMMs over
im2col patches, the input gradient as a canonical transposed convolution (see
:mod:`functrain.layers._conv_gemm`).

Padding is a :data:`PaddingLike`: ``"SAME"``, ``"VALID"``, an int, or one ``(low, high)`` pair
per spatial axis:

>>> params = ft.layers.init_conv2d(jax.random.key(0), 1, 2, 3)
>>> padding: ft.layers.PaddingLike = ((1, 0), (0, 1))
>>> ft.layers.conv2d(params, jnp.ones((1, 5, 5, 1)), padding=padding).shape
(1, 4, 4, 2)

Default initialization: kernels ``glorot_uniform`` with fans ``n_in = k_h k_w c_in`` and
``n_out = k_h k_w c_out`` (the HWIO convention of :func:`functrain.initializers.compute_fans`), biases
``zeros``. For deep ReLU networks pass ``w_init=initializers.he_normal()``.

Shared within :mod:`functrain.layers` (not exported): :func:`init_conv` and :func:`apply_conv`, the
N-d forms behind the public functions, used by weight normalization and ``Residual``'s projection.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jaxtyping import Float

from functrain import _validate
from functrain.initializers import glorot_uniform, zeros
from functrain.layers import _conv_gemm
from functrain.layers._geometry import (
    PaddingLike,
    check_input_shape,
    check_last_axis,
    conv_geometry,
    layout,
    normalize_padding,
)
from functrain.layers.base import Layer
from functrain.layers.precision import check_init_args
from functrain.typing import Array, DTypeLike, Initializer, PRNGKey, Shape

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

_KERNEL_AXES = {1: "(k, c_in, c_out)", 2: "(k_h, k_w, c_in, c_out)", 3: "(k_d, k_h, k_w, c_in, c_out)"}


class ConvParams(NamedTuple):
    """Parameters of a convolution.

    Attributes:
        w: kernel in HWIO layout, shape ``(*kernel_size, in_channels, out_channels)``
            (``(k_w, c_in, c_out)`` for 1-D, ``(k_h, k_w, c_in, c_out)`` for 2-D).
        b: bias, shape ``(out_channels,)``.

    Example:
        >>> p = ft.layers.ConvParams(w=jnp.ones((3, 3, 1, 4)), b=jnp.zeros(4))
        >>> ft.layers.conv2d(p, jnp.ones((2, 8, 8, 1))).shape
        (2, 8, 8, 4)
    """

    w: Array
    b: Array


def init_conv(key: PRNGKey, in_channels: int, out_channels: int, kernel_size: int | Sequence[int], *,
              spatial: int, w_init: Initializer, b_init: Initializer, dtype: DTypeLike,
              who: str) -> ConvParams:
    """Initialize an N-d convolution (``spatial`` = 1, 2 or 3); errors name ``who``.

    Shared within :mod:`functrain.layers`: :func:`init_conv1d`, :func:`init_conv2d`, the ``Conv``
    layers and ``Residual``'s 1x1 projection. Arguments as in :func:`init_conv2d`.
    """
    c_in = _validate.check_int(in_channels, who, "in_channels", low=1)
    c_out = _validate.check_int(out_channels, who, "out_channels", low=1)
    ks = _validate.check_ints(kernel_size, spatial, who, "kernel_size")
    dtype = check_init_args(who, dtype, w_init=w_init, b_init=b_init)
    k_w, k_b = jax.random.split(key)
    return ConvParams(w=w_init(k_w, (*ks, c_in, c_out), dtype), b=b_init(k_b, (c_out,), dtype))


def init_conv1d(key: PRNGKey, in_channels: int, out_channels: int, kernel_size: int | Sequence[int], *,
                w_init: Initializer = glorot_uniform(), b_init: Initializer = zeros(),
                dtype: DTypeLike = jnp.float32) -> ConvParams:
    """Initialize a 1-D convolution's parameters.

    Args:
        key: PRNG key (split internally between kernel and bias).
        in_channels: input channels ``c_in``.
        out_channels: output channels ``c_out``.
        kernel_size: ``k`` or ``(k,)``.
        w_init: kernel initializer, shape ``(k, c_in, c_out)``; default ``glorot_uniform()``.
        b_init: bias initializer, shape ``(c_out,)``; default ``zeros()``.
        dtype: parameter dtype, floating (default float32; float64 needs ``jax.enable_x64``).

    Returns:
        ``ConvParams(w (k, c_in, c_out), b (c_out,))``.

    Raises:
        TypeError, ValueError: non-positive or non-integer channel counts or kernel size; a
            ``dtype`` that is not a floating dtype JAX can hold.

    Example:
        >>> p = ft.layers.init_conv1d(jax.random.key(0), 2, 8, 5)
        >>> p.w.shape, p.b.shape
        ((5, 2, 8), (8,))
        >>> ft.layers.init_conv1d(jax.random.key(0), 2, 8, 5, dtype=jnp.float16).w.dtype
        dtype('float16')
    """
    return init_conv(key, in_channels, out_channels, kernel_size, spatial=1, w_init=w_init,
                     b_init=b_init, dtype=dtype, who="init_conv1d")


def init_conv2d(key: PRNGKey, in_channels: int, out_channels: int, kernel_size: int | Sequence[int], *,
                w_init: Initializer = glorot_uniform(), b_init: Initializer = zeros(),
                dtype: DTypeLike = jnp.float32) -> ConvParams:
    """Initialize a 2-D convolution's parameters.

    Args:
        key: PRNG key (split internally between kernel and bias).
        in_channels: input channels ``c_in``.
        out_channels: output channels ``c_out``.
        kernel_size: ``k`` (square) or ``(k_h, k_w)``.
        w_init: kernel initializer, shape ``(k_h, k_w, c_in, c_out)`` (HWIO); default ``glorot_uniform()``.
        b_init: bias initializer, shape ``(c_out,)``; default ``zeros()``.
        dtype: parameter dtype, floating (default float32; float64 needs ``jax.enable_x64``).

    Returns:
        ``ConvParams(w (k_h, k_w, c_in, c_out), b (c_out,))``.

    Raises:
        TypeError, ValueError: non-positive or non-integer channel counts or kernel size; a
            ``dtype`` that is not a floating dtype JAX can hold.

    Example:
        >>> p = ft.layers.init_conv2d(jax.random.key(0), 3, 16, (3, 5),
        ...                           w_init=ft.initializers.he_normal())
        >>> p.w.shape, p.b.shape
        ((3, 5, 3, 16), (16,))
    """
    return init_conv(key, in_channels, out_channels, kernel_size, spatial=2, w_init=w_init,
                     b_init=b_init, dtype=dtype, who="init_conv2d")


def apply_conv(params: ConvParams, x: Array, *, spatial: int, stride: int | Sequence[int] = 1,
               padding: PaddingLike = "SAME", dilation: int | Sequence[int] = 1, who: str,
               batched_only: bool = False) -> Array:
    """An N-d convolution (``spatial`` = 1, 2 or 3) of ``x`` with ``params``; errors name ``who``.

    Shared within :mod:`functrain.layers`: the body of :func:`conv1d`, :func:`conv2d`, the
    ``Conv`` layers, weight-normalized convolutions and ``Residual``'s projection. The shapes are
    checked with chex assertions at trace time (nothing is added to the compiled program): the
    kernel's rank, the bias against the kernel, the input's rank (``batched_only`` refuses the
    one-example form) and channel count, and that the kernel fits the (padded) input.
    """
    w, b = params
    _validate.check_rank(w, spatial + 2, who, "params.w", layout=_KERNEL_AXES[spatial])
    _validate.check_shape(b, (w.shape[-1],), who, "params.b")
    axes = layout(spatial)
    ranks = (spatial + 2,) if batched_only else (spatial + 1, spatial + 2)
    _validate.check_rank(x, ranks, who, "x",
                         layout=axes if batched_only else f"{axes} or ({axes[4:]} for one example")
    check_last_axis(x, w.shape[-2], who)
    strides, pads, dil, _ = conv_geometry(w.shape, x.shape, stride=stride, padding=padding,
                                          dilation=dilation, who=who, name="x", got=x)
    dtype = jnp.result_type(x, w)
    batched = x.ndim == spatial + 2
    xb = x if batched else x[None]
    y = _conv_gemm.conv(xb.astype(dtype), w.astype(dtype), strides, pads, dil, spatial) + b.astype(dtype)
    return y if batched else y[0]


def conv1d(params: ConvParams, x: Float[Array, "*batch width in_channels"], *,
           stride: int | Sequence[int] = 1, padding: PaddingLike = "SAME",
           dilation: int | Sequence[int] = 1) -> Float[Array, "*batch out_width out_channels"]:
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

    Example:
        >>> p = ft.layers.init_conv1d(jax.random.key(0), 2, 4, 3)
        >>> ft.layers.conv1d(p, jnp.ones((8, 10, 2)), stride=2, padding="VALID").shape
        (8, 4, 4)
    """
    return apply_conv(params, x, spatial=1, stride=stride, padding=padding, dilation=dilation,
                      who="conv1d")


def conv2d(params: ConvParams, x: Float[Array, "*batch height width in_channels"], *,
           stride: int | Sequence[int] = 1, padding: PaddingLike = "SAME",
           dilation: int | Sequence[int] = 1) -> Float[Array, "*batch out_height out_width out_channels"]:
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

    Example:
        >>> p = ft.layers.init_conv2d(jax.random.key(0), 3, 8, 3)
        >>> ft.layers.conv2d(p, jnp.ones((2, 9, 9, 3)), stride=2).shape
        (2, 5, 5, 8)
        >>> ft.layers.conv2d(p, jnp.ones((9, 9, 3)), padding="VALID", dilation=2).shape
        (5, 5, 8)
    """
    return apply_conv(params, x, spatial=2, stride=stride, padding=padding, dilation=dilation,
                      who="conv2d")


def _conv_layer(out_channels: int, kernel_size: int | Sequence[int], *, spatial: int,
                stride: int | Sequence[int], padding: PaddingLike, dilation: int | Sequence[int],
                w_init: Initializer, b_init: Initializer, dtype: DTypeLike,
                who: str) -> Layer[ConvParams, tuple[()]]:
    c_out = _validate.check_int(out_channels, who, "out_channels", low=1)
    ks = _validate.check_ints(kernel_size, spatial, who, "kernel_size")
    check_init_args(who, dtype, available=False, w_init=w_init, b_init=b_init)
    # Validate stride, dilation and padding now (with a 1x1 input the geometry may not fit).
    _validate.check_ints(stride, spatial, who, "stride")
    _validate.check_ints(dilation, spatial, who, "dilation")
    normalize_padding(padding, spatial, who)
    axes = layout(spatial)

    def init(key: PRNGKey, input_shape: Sequence[int]) -> tuple[ConvParams, tuple[()], Shape]:
        shape = check_input_shape(input_shape, who, rank=spatial + 2, axes=axes)
        _, _, _, out = conv_geometry((*ks, shape[-1], c_out), shape, stride=stride, padding=padding,
                                     dilation=dilation, who=who, name="input_shape", got=shape)
        params = init_conv(key, shape[-1], c_out, ks, spatial=spatial, w_init=w_init, b_init=b_init,
                           dtype=dtype, who=who)
        return params, (), (shape[0], *out, c_out)

    def apply(params: ConvParams, state: tuple[()], x: Array, *, key: PRNGKey | None = None,
              train: bool) -> tuple[Array, tuple[()]]:
        del key, train
        y = apply_conv(params, x, spatial=spatial, stride=stride, padding=padding, dilation=dilation,
                       who=who, batched_only=True)
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
    dtype: DTypeLike = jnp.float32,
) -> Layer[ConvParams, tuple[()]]:
    """A 1-D convolution (:func:`conv1d`) over ``(N, W, C)`` batches as a composable layer.

    Args:
        out_channels: output channels.
        kernel_size: ``k`` or ``(k,)``.
        stride: as in :func:`conv1d` (default 1).
        padding: as in :func:`conv1d` (default ``"SAME"``).
        dilation: as in :func:`conv1d` (default 1).
        w_init: kernel initializer, HWIO shape ``(k, c_in, c_out)``; default ``glorot_uniform()``.
        b_init: bias initializer; default ``zeros()``.
        dtype: parameter dtype, floating (default float32; float64 needs ``jax.enable_x64``).

    Returns:
        The layer; ``init`` returns ``(ConvParams, (), (N, W_out, out_channels))``.

    Raises:
        TypeError, ValueError: bad hyperparameters; at ``init``/``apply``, an input of the wrong
            rank or channel count or smaller than the kernel (the message names the layer and
            both shapes).

    Example:
        >>> layer = ft.layers.Conv1D(6, 4, padding="VALID")
        >>> params, state, out_shape = layer.init(jax.random.key(0), (-1, 10, 3))
        >>> out_shape
        (-1, 7, 6)
    """
    return _conv_layer(out_channels, kernel_size, spatial=1, stride=stride, padding=padding,
                       dilation=dilation, w_init=w_init, b_init=b_init, dtype=dtype, who="Conv1D")


def Conv2D(  # noqa: N802 (layer constructor)
    out_channels: int,
    kernel_size: int | Sequence[int],
    *,
    stride: int | Sequence[int] = 1,
    padding: PaddingLike = "SAME",
    dilation: int | Sequence[int] = 1,
    w_init: Initializer = glorot_uniform(),
    b_init: Initializer = zeros(),
    dtype: DTypeLike = jnp.float32,
) -> Layer[ConvParams, tuple[()]]:
    """A 2-D convolution (:func:`conv2d`) over ``(N, H, W, C)`` batches as a composable layer.

    Args:
        out_channels: output channels.
        kernel_size: ``k`` (square) or ``(k_h, k_w)``.
        stride: as in :func:`conv2d` (default 1).
        padding: as in :func:`conv2d` (default ``"SAME"``).
        dilation: as in :func:`conv2d` (default 1).
        w_init: kernel initializer, HWIO shape ``(k_h, k_w, c_in, c_out)``; default ``glorot_uniform()``.
        b_init: bias initializer; default ``zeros()``.
        dtype: parameter dtype, floating (default float32; float64 needs ``jax.enable_x64``).

    Returns:
        The layer; ``init`` returns ``(ConvParams, (), (N, H_out, W_out, out_channels))``.

    Raises:
        TypeError, ValueError: bad hyperparameters; at ``init``/``apply``, an input of the wrong
            rank or channel count or smaller than the kernel (the message names the layer and
            both shapes).

    Example:
        >>> layer = ft.layers.Conv2D(8, 3, stride=2, w_init=ft.initializers.he_normal())
        >>> params, state, out_shape = layer.init(jax.random.key(0), (-1, 28, 28, 1))
        >>> out_shape, params.w.shape
        ((-1, 14, 14, 8), (3, 3, 1, 8))
        >>> y, state = layer.apply(params, state, jnp.ones((4, 28, 28, 1)), train=False)
        >>> y.shape
        (4, 14, 14, 8)
    """
    return _conv_layer(out_channels, kernel_size, spatial=2, stride=stride, padding=padding,
                       dilation=dilation, w_init=w_init, b_init=b_init, dtype=dtype,
                       who="Conv2D")
