"""Weight normalization (Salimans & Kingma, "Weight Normalization: A Simple Reparameterization to
Accelerate Training of Deep Neural Networks", NeurIPS 2016).

A kernel is reparametrized as ``w = g * v / ||v||`` per output unit, decoupling each unit's weight
length ``g`` from its direction ``v``; gradient descent on ``(v, g)`` then behaves like a
preconditioned descent on ``w``. The ops here compute ``w`` with :func:`weight_norm` and run the
ordinary dense layer or convolution with it (:func:`~functrain.layers.dense.apply_dense`,
:func:`~functrain.layers.conv.apply_conv`), so they share those ops' shape checks and kernels.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax
from jaxtyping import Float

from functrain import _validate
from functrain.initializers import glorot_uniform, zeros
from functrain.layers._geometry import PaddingLike, check_input_shape, conv_geometry, normalize_padding
from functrain.layers.base import Layer
from functrain.layers.precision import check_dtype, check_init_args
from functrain.layers.conv import ConvParams, apply_conv
from functrain.layers.dense import DenseParams, apply_dense
from functrain.typing import Array, DTypeLike, Initializer, PRNGKey, Shape

__all__ = [
    "WeightNormConv2D",
    "WeightNormDense",
    "WeightNormParams",
    "init_weight_norm",
    "weight_norm",
    "weight_norm_conv1d",
    "weight_norm_conv2d",
    "weight_norm_dense",
]

_KERNEL = "(n_in, n_out) or (*kernel_size, c_in, c_out)"


class WeightNormParams(NamedTuple):
    """Weight-normalized dense or convolution parameters: the kernel is ``g * v / ||v||``.

    Attributes:
        v: direction, a dense kernel ``(n_in, n_out)`` or an HWIO conv kernel ``(*k, c_in, c_out)``.
        g: length of each output unit's weight vector, shape ``(n_out,)``.
        b: bias, shape ``(n_out,)``.

    Example:
        >>> p = ft.layers.WeightNormParams(v=jnp.ones((4, 2)), g=jnp.array([1.0, 3.0]), b=jnp.zeros(2))
        >>> [round(v, 4) for v in ft.layers.weight_norm_dense(p, jnp.ones(4)).tolist()]  # w = g v / 2
        [2.0, 6.0]
    """

    v: Array
    g: Array
    b: Array


def init_weight_norm(
    key: PRNGKey,
    kernel_shape: Sequence[int],
    *,
    v_init: Initializer = glorot_uniform(),
    b_init: Initializer = zeros(),
    dtype: DTypeLike = jnp.float32,
) -> WeightNormParams:
    """Initialize weight-normalized parameters with ``g = ||v||``, so the initial kernel equals ``v``.

    The effective kernel then starts with ``v_init``'s distribution (Salimans & Kingma also describe a
    data-dependent initialization of ``g`` and ``b``; apply it yourself by rescaling if wanted).

    Args:
        key: PRNG key.
        kernel_shape: ``(n_in, n_out)`` for a dense layer, ``(*kernel_size, c_in, c_out)`` (HWIO) for
            a convolution.
        v_init: direction initializer; default ``glorot_uniform()``.
        b_init: bias initializer, shape ``(n_out,)``; default ``zeros()``.
        dtype: parameter dtype, floating (default float32; float64 needs ``jax.enable_x64``).

    Returns:
        ``WeightNormParams(v, g (n_out,), b (n_out,))``.

    Raises:
        TypeError: ``kernel_shape`` is not a sequence of ints, or ``dtype`` not a dtype.
        ValueError: ``kernel_shape`` has rank < 2 or a non-positive size; ``dtype`` not floating.

    Example:
        >>> p = ft.layers.init_weight_norm(jax.random.key(0), (3, 3, 1, 8))
        >>> p.v.shape, p.g.shape, p.b.shape
        ((3, 3, 1, 8), (8,), (8,))
        >>> bool(jnp.allclose(ft.layers.weight_norm(p.v, p.g), p.v))
        True
    """
    who = "init_weight_norm"
    expectation = f"a kernel shape of rank >= 2 with sizes >= 1, {_KERNEL}"
    try:
        shape = tuple(operator.index(d) for d in kernel_shape)
    except TypeError:
        _validate.fail(who, "kernel_shape", expectation, kernel_shape, error=TypeError)
    if len(shape) < 2 or any(d < 1 for d in shape):
        _validate.fail(who, "kernel_shape", expectation, shape)
    dtype = check_init_args(who, dtype, v_init=v_init, b_init=b_init)
    k_v, k_b = jax.random.split(key)
    v = v_init(k_v, shape, dtype)
    vf = v.astype(jnp.promote_types(dtype, jnp.float32))  # the norm of low-precision v in float32
    g = jnp.sqrt(jnp.sum(jnp.square(vf), axis=tuple(range(v.ndim - 1)))).astype(dtype)
    return WeightNormParams(v=v, g=g, b=b_init(k_b, (shape[-1],), dtype))


def weight_norm(v: Float[Array, "*fan_in out"], g: Float[Array, " out"]) -> Float[Array, "*fan_in out"]:
    """The weight-normalized kernel ``w[..., o] = g[o] * v[..., o] / ||v[..., o]||``.

    The norm is taken per output unit, over every axis but the last (for a dense kernel ``(n_in, n_out)``
    over ``n_in``; for an HWIO conv kernel over ``k_h, k_w, c_in``), so ``||w[..., o]|| = |g[o]|``.

    Args:
        v: direction, ``(n_in, n_out)`` or ``(*kernel_size, c_in, c_out)``.
        g: lengths, ``(n_out,)``.

    Returns:
        ``w`` with ``v``'s shape.

    Raises:
        ValueError: ``v`` of rank < 2, or ``g`` not of shape ``(n_out,)``.

    Example:
        >>> w = ft.layers.weight_norm(jnp.array([[3.0], [4.0]]), jnp.array([10.0]))
        >>> [round(v, 4) for v in w.ravel().tolist()]
        [6.0, 8.0]
    """
    return _weight_norm(v, g, "weight_norm", ("v", "g"))


def _weight_norm(v: Array, g: Array, who: str, names: tuple[str, str]) -> Array:
    ndim = getattr(v, "ndim", None)
    if not isinstance(ndim, int):
        _validate.fail(who, names[0], "an array", v, error=TypeError)
    if ndim < 2:
        _validate.fail(who, names[0], f"a kernel of rank >= 2, {_KERNEL}", v)
    _validate.check_shape(g, (v.shape[-1],), who, names[1])
    sq = jnp.sum(jnp.square(v), axis=tuple(range(v.ndim - 1)))
    return v * (g * lax.rsqrt(sq))


def _dense_kernel(params: WeightNormParams, who: str) -> DenseParams:
    _validate.check_rank(params.v, 2, who, "params.v", layout="(n_in, n_out)")
    return DenseParams(_weight_norm(params.v, params.g, who, ("params.v", "params.g")), params.b)


def _conv_kernel(params: WeightNormParams, spatial: int, who: str) -> ConvParams:
    _validate.check_rank(params.v, spatial + 2, who, "params.v",
                         layout="(k, c_in, c_out)" if spatial == 1 else "(k_h, k_w, c_in, c_out)")
    return ConvParams(_weight_norm(params.v, params.g, who, ("params.v", "params.g")), params.b)


def weight_norm_dense(params: WeightNormParams,
                      x: Float[Array, "*batch in_features"]) -> Float[Array, "*batch out_features"]:
    """Weight-normalized dense layer: :func:`~functrain.layers.dense` with ``w = g v / ||v||``.

    Args:
        params: ``WeightNormParams(v (n_in, n_out), g (n_out,), b (n_out,))``.
        x: ``(..., n_in)``.

    Returns:
        ``(..., n_out)``.

    Raises:
        ValueError: inconsistent parameter shapes or ``x.shape[-1] != n_in``.

    Example:
        >>> p = ft.layers.init_weight_norm(jax.random.key(0), (5, 3))
        >>> ft.layers.weight_norm_dense(p, jnp.ones((4, 5))).shape
        (4, 3)
    """
    who = "weight_norm_dense"
    return apply_dense(_dense_kernel(params, who), x, who=who)


def weight_norm_conv1d(
    params: WeightNormParams,
    x: Float[Array, "*batch width in_channels"],
    *,
    stride: int | Sequence[int] = 1,
    padding: PaddingLike = "SAME",
    dilation: int | Sequence[int] = 1,
) -> Float[Array, "*batch out_width out_channels"]:
    """Weight-normalized :func:`~functrain.layers.conv1d` (``w = g v / ||v||`` per output channel).

    Args:
        params: ``WeightNormParams(v (k, c_in, c_out), g (c_out,), b (c_out,))``.
        x: ``(N, W, c_in)`` or ``(W, c_in)``.
        stride: as in :func:`~functrain.layers.conv1d`.
        padding: as in :func:`~functrain.layers.conv1d`.
        dilation: as in :func:`~functrain.layers.conv1d`.

    Returns:
        ``(N, W_out, c_out)`` (or without ``N``).

    Raises:
        ValueError: as :func:`~functrain.layers.conv1d`, or inconsistent ``g``.

    Example:
        >>> p = ft.layers.init_weight_norm(jax.random.key(0), (3, 2, 4))
        >>> ft.layers.weight_norm_conv1d(p, jnp.ones((8, 2)), padding="VALID").shape
        (6, 4)
    """
    who = "weight_norm_conv1d"
    return apply_conv(_conv_kernel(params, 1, who), x, spatial=1, stride=stride, padding=padding,
                      dilation=dilation, who=who)


def weight_norm_conv2d(
    params: WeightNormParams,
    x: Float[Array, "*batch height width in_channels"],
    *,
    stride: int | Sequence[int] = 1,
    padding: PaddingLike = "SAME",
    dilation: int | Sequence[int] = 1,
) -> Float[Array, "*batch out_height out_width out_channels"]:
    """Weight-normalized :func:`~functrain.layers.conv2d` (``w = g v / ||v||`` per output channel).

    Args:
        params: ``WeightNormParams(v (k_h, k_w, c_in, c_out), g (c_out,), b (c_out,))``.
        x: ``(N, H, W, c_in)`` or ``(H, W, c_in)``.
        stride: as in :func:`~functrain.layers.conv2d`.
        padding: as in :func:`~functrain.layers.conv2d`.
        dilation: as in :func:`~functrain.layers.conv2d`.

    Returns:
        ``(N, H_out, W_out, c_out)`` (or without ``N``).

    Raises:
        ValueError: as :func:`~functrain.layers.conv2d`, or inconsistent ``g``.

    Example:
        >>> p = ft.layers.init_weight_norm(jax.random.key(0), (3, 3, 1, 4))
        >>> ft.layers.weight_norm_conv2d(p, jnp.ones((2, 6, 6, 1)), stride=2).shape
        (2, 3, 3, 4)
    """
    who = "weight_norm_conv2d"
    return apply_conv(_conv_kernel(params, 2, who), x, spatial=2, stride=stride, padding=padding,
                      dilation=dilation, who=who)


def WeightNormDense(  # noqa: N802 (layer constructor)
    out_features: int,
    *,
    v_init: Initializer = glorot_uniform(),
    b_init: Initializer = zeros(),
    dtype: DTypeLike = jnp.float32,
) -> Layer[WeightNormParams, tuple[()]]:
    """:func:`weight_norm_dense` as a composable layer; ``params`` is :class:`WeightNormParams`.

    Args:
        out_features: number of output features.
        v_init: direction initializer (``g`` starts at ``||v||``); default ``glorot_uniform()``.
        b_init: bias initializer; default ``zeros()``.
        dtype: parameter dtype, floating (default float32; float64 needs ``jax.enable_x64``).

    Returns:
        The layer.

    Raises:
        TypeError, ValueError: ``out_features`` not a positive int; at ``init``/``apply``, a
            feature count that does not match.

    Example:
        >>> layer = ft.layers.WeightNormDense(4)
        >>> params, state, out_shape = layer.init(jax.random.key(0), (-1, 6))
        >>> out_shape, params.g.shape
        ((-1, 4), (4,))
    """
    who = "WeightNormDense"
    n_out = _validate.check_int(out_features, who, "out_features", low=1)
    check_init_args(who, dtype, available=False, v_init=v_init, b_init=b_init)

    def init(key: PRNGKey, input_shape: Sequence[int]) -> tuple[WeightNormParams, tuple[()], Shape]:
        shape = check_input_shape(input_shape, who, min_rank=2, axes="(N, ..., features)")
        params = init_weight_norm(key, (shape[-1], n_out), v_init=v_init, b_init=b_init,
                                  dtype=check_dtype(dtype, who))
        return params, (), shape[:-1] + (n_out,)

    def apply(params: WeightNormParams, state: tuple[()], x: Array, *, key: PRNGKey | None = None,
              train: bool) -> tuple[Array, tuple[()]]:
        del key, train
        return apply_dense(_dense_kernel(params, who), x, who=who), state

    return Layer(init, apply)


def WeightNormConv2D(  # noqa: N802 (layer constructor)
    out_channels: int,
    kernel_size: int | Sequence[int],
    *,
    stride: int | Sequence[int] = 1,
    padding: PaddingLike = "SAME",
    dilation: int | Sequence[int] = 1,
    v_init: Initializer = glorot_uniform(),
    b_init: Initializer = zeros(),
    dtype: DTypeLike = jnp.float32,
) -> Layer[WeightNormParams, tuple[()]]:
    """:func:`weight_norm_conv2d` over ``(N, H, W, C)`` batches as a composable layer.

    Args:
        out_channels: output channels.
        kernel_size: ``k`` or ``(k_h, k_w)``.
        stride: as in :func:`~functrain.layers.conv2d`.
        padding: as in :func:`~functrain.layers.conv2d`.
        dilation: as in :func:`~functrain.layers.conv2d`.
        v_init: direction initializer (``g`` starts at ``||v||``); default ``glorot_uniform()``.
        b_init: bias initializer; default ``zeros()``.
        dtype: parameter dtype, floating (default float32; float64 needs ``jax.enable_x64``).

    Returns:
        The layer; ``params`` is :class:`WeightNormParams`.

    Raises:
        TypeError, ValueError: bad hyperparameters; at ``init``/``apply``, an input of the wrong
            rank or channel count or smaller than the kernel.

    Example:
        >>> layer = ft.layers.WeightNormConv2D(5, 3, padding="VALID")
        >>> params, state, out_shape = layer.init(jax.random.key(0), (-1, 6, 6, 2))
        >>> out_shape, params.v.shape
        ((-1, 4, 4, 5), (3, 3, 2, 5))
    """
    who = "WeightNormConv2D"
    c_out = _validate.check_int(out_channels, who, "out_channels", low=1)
    ks = _validate.check_ints(kernel_size, 2, who, "kernel_size")
    _validate.check_ints(stride, 2, who, "stride")
    _validate.check_ints(dilation, 2, who, "dilation")
    normalize_padding(padding, 2, who)
    check_init_args(who, dtype, available=False, v_init=v_init, b_init=b_init)

    def init(key: PRNGKey, input_shape: Sequence[int]) -> tuple[WeightNormParams, tuple[()], Shape]:
        shape = check_input_shape(input_shape, who, rank=4, axes="(N, H, W, C)")
        kernel = (*ks, shape[-1], c_out)
        _, _, _, out = conv_geometry(kernel, shape, stride=stride, padding=padding, dilation=dilation,
                                     who=who, name="input_shape", got=shape)
        params = init_weight_norm(key, kernel, v_init=v_init, b_init=b_init, dtype=check_dtype(dtype, who))
        return params, (), (shape[0], *out, c_out)

    def apply(params: WeightNormParams, state: tuple[()], x: Array, *, key: PRNGKey | None = None,
              train: bool) -> tuple[Array, tuple[()]]:
        del key, train
        y = apply_conv(_conv_kernel(params, 2, who), x, spatial=2, stride=stride, padding=padding,
                       dilation=dilation, who=who, batched_only=True)
        return y, state

    return Layer(init, apply)
