"""Normalization: batch normalization, layer normalization and weight normalization.

* :func:`batch_norm` (Ioffe & Szegedy, "Batch Normalization: Accelerating Deep Network Training by
  Reducing Internal Covariate Shift", ICML 2015) normalizes each feature over the batch (and, for
  images, the spatial axes), then applies a learned scale and bias; running averages of the batch
  statistics replace them in evaluation.
* :func:`layer_norm` (Ba, Kiros & Hinton, "Layer Normalization", 2016) normalizes each example over
  its features; it needs no state and behaves the same in training and evaluation.
* :func:`weight_norm` (Salimans & Kingma, "Weight Normalization", NeurIPS 2016) reparametrizes a
  kernel as ``w = g * v / ||v||``, decoupling each output unit's weight length ``g`` from its direction.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax
from jaxtyping import Float

from functrain.initializers import glorot_uniform, ones, zeros
from functrain.layers._util import (
    PaddingLike,
    check_array_rank,
    check_count,
    check_fraction,
    check_input_shape,
    check_positive,
    fmt,
    int_tuple,
    normalize_padding,
)
from functrain.layers.base import Layer
from functrain.layers.conv import ConvParams, _apply_conv, _conv_geometry
from functrain.layers.dense import DenseParams, _apply_dense
from functrain.typing import Array, DType, DTypeLike, Initializer, PRNGKey, PyTree, Shape

__all__ = [
    "BatchNorm",
    "BatchNormParams",
    "LayerNorm",
    "WeightNormConv2D",
    "WeightNormDense",
    "BatchNormState",
    "LayerNormParams",
    "WeightNormParams",
    "batch_norm",
    "init_batch_norm",
    "init_layer_norm",
    "init_weight_norm",
    "layer_norm",
    "weight_norm",
    "weight_norm_conv1d",
    "weight_norm_conv2d",
    "weight_norm_dense",
]


class BatchNormParams(NamedTuple):
    """Learned parameters of batch normalization.

    Attributes:
        scale: ``gamma``, shape ``(C,)``.
        bias: ``beta``, shape ``(C,)``.
    """

    scale: Array
    bias: Array


class BatchNormState(NamedTuple):
    """Running statistics of batch normalization (not trained by gradient descent).

    Attributes:
        mean: running mean of each feature, shape ``(C,)``.
        var: running *unbiased* variance of each feature (``n / (n - 1)`` times the batch's biased
            variance, as in PyTorch), shape ``(C,)``.
    """

    mean: Array
    var: Array


class LayerNormParams(NamedTuple):
    """Learned parameters of layer normalization.

    Attributes:
        scale: ``gamma``, shape ``(C,)``.
        bias: ``beta``, shape ``(C,)``.
    """

    scale: Array
    bias: Array


class WeightNormParams(NamedTuple):
    """Weight-normalized dense or convolution parameters: the kernel is ``g * v / ||v||``.

    Attributes:
        v: direction, a dense kernel ``(n_in, n_out)`` or an HWIO conv kernel ``(*k, c_in, c_out)``.
        g: length of each output unit's weight vector, shape ``(n_out,)``.
        b: bias, shape ``(n_out,)``.
    """

    v: Array
    g: Array
    b: Array


def _stats_dtype(dtype: DType) -> DType:
    # Statistics of bfloat16/float16 activations are accumulated in float32.
    return jnp.dtype(jnp.promote_types(dtype, jnp.float32))


def _check_feature_params(scale: Array, bias: Array, x_shape: Sequence[int], who: str,
                          names: tuple[str, str] = ("scale", "bias")) -> int:
    if scale.ndim != 1:
        raise ValueError(f"{who}: parameter '{names[0]}' must have shape (C,), got {fmt(scale.shape)}")
    c = scale.shape[0]
    if bias.shape != (c,):
        raise ValueError(f"{who}: parameter '{names[1]}' must have shape {fmt((c,))} like '{names[0]}', "
                         f"got {fmt(bias.shape)}")
    if len(x_shape) < 1 or x_shape[-1] != c:
        raise ValueError(f"{who}: expected an input with {c} features in its last axis, shape (..., {c}), "
                         f"got shape {fmt(x_shape)}")
    return c


def init_batch_norm(
    key: PRNGKey,
    num_features: int,
    *,
    scale_init: Initializer = ones(),
    bias_init: Initializer = zeros(),
    dtype: DTypeLike = jnp.float32,
) -> tuple[BatchNormParams, BatchNormState]:
    """Initialize batch normalization: parameters and running statistics.

    Args:
        key: PRNG key (split between the initializers; the defaults ignore it).
        num_features: number of features/channels ``C`` (the input's last axis).
        scale_init: initializer of ``gamma``, shape ``(C,)``; default ``ones()``.
        bias_init: initializer of ``beta``, shape ``(C,)``; default ``zeros()``.
        dtype: parameter dtype (default float32). The running statistics are kept in at least float32.

    Returns:
        ``(BatchNormParams(scale, bias), BatchNormState(mean=0, var=1))``.

    Raises:
        ValueError: if ``num_features`` is not a positive int.
    """
    check_count(num_features, "num_features", "init_batch_norm")
    k_s, k_b = jax.random.split(key)
    sdt = _stats_dtype(jnp.dtype(dtype))
    params = BatchNormParams(scale=scale_init(k_s, (num_features,), dtype),
                             bias=bias_init(k_b, (num_features,), dtype))
    state = BatchNormState(mean=jnp.zeros((num_features,), sdt), var=jnp.ones((num_features,), sdt))
    return params, state


def batch_norm(
    params: BatchNormParams,
    state: BatchNormState,
    x: Float[Array, "*batch features"],
    *,
    train: bool,
    momentum: float = 0.9,
    eps: float = 1e-5,
    axis_name: Hashable | None = None,
) -> tuple[Float[Array, "*batch features"], BatchNormState]:
    """Batch normalization over every axis but the last (feature) axis.

    Serves ``(N, C)`` and ``(N, H, W, C)`` alike. With ``mu``, ``sigma^2`` the per-feature mean and
    (biased) variance of the batch in training, or the running statistics in evaluation::

        y = gamma * (x - mu) / sqrt(sigma^2 + eps) + beta

    In training the running statistics are updated as exponential moving averages::

        mean' = momentum * mean + (1 - momentum) * mu
        var'  = momentum * var  + (1 - momentum) * sigma^2 * n / (n - 1)

    i.e. the stored variance is the *unbiased* estimate (``n`` = values per feature in the whole
    batch), like PyTorch. Note ``momentum`` here is the weight of the *old* value (Keras/flax
    convention; PyTorch's ``momentum=0.1`` corresponds to ``momentum=0.9``). The statistics are
    computed in two passes (mean, then mean of squared deviations) for accuracy, and accumulated in
    float32 for lower-precision inputs. Gradients flow through the batch statistics in training; the
    new running statistics are ``stop_gradient``-ed.

    With ``axis_name`` (a ``jax.vmap`` / ``shard_map`` axis), the mean and then the mean squared
    deviation are ``pmean``-ed across that axis, so each shard normalizes with the statistics of the
    whole batch (equal shard sizes assumed). Under ``vmap`` over single examples (``x`` of shape
    ``(C,)``) this gives the usual batch statistics.

    Args:
        params: ``BatchNormParams(scale (C,), bias (C,))``.
        state: ``BatchNormState(mean (C,), var (C,))``.
        x: ``(..., C)``; at least two values per feature in the (global) batch when training.
        train: use and update batch statistics (``True``) or use the running ones (``False``).
            Must be a Python bool.
        momentum: weight of the old running statistics, in ``[0, 1]``.
        eps: added to the variance for numerical stability, ``> 0``.
        axis_name: name of a mapped axis to average the statistics over, or ``None``.

    Returns:
        ``(y, new_state)``: ``y`` with ``x``'s shape and dtype; ``new_state`` is ``state`` itself
        when ``train`` is false.

    Raises:
        ValueError: shapes inconsistent (the message names expected and actual), ``momentum`` outside
            ``[0, 1]``, ``eps <= 0``, or a training batch with one value per feature.
    """
    return _apply_batch_norm(params, state, x, train=train, momentum=momentum, eps=eps,
                             axis_name=axis_name, who="batch_norm")


def _apply_batch_norm(
    params: BatchNormParams,
    state: BatchNormState,
    x: Array,
    *,
    train: bool,
    momentum: float,
    eps: float,
    axis_name: Hashable | None,
    who: str,
) -> tuple[Array, BatchNormState]:
    c = _check_feature_params(params.scale, params.bias, x.shape, who)
    if state.mean.shape != (c,) or state.var.shape != (c,):
        raise ValueError(f"{who}: state mean and var must have shape {fmt((c,))}, got "
                         f"{fmt(state.mean.shape)} and {fmt(state.var.shape)}")
    if not isinstance(train, bool):
        raise TypeError(f"{who}: argument 'train' must be a Python bool, got {type(train).__name__}")
    check_fraction(momentum, "momentum", who, closed_right=True)
    check_positive(eps, "eps", who)
    sdt = _stats_dtype(x.dtype)
    xf = x.astype(sdt)
    if train:
        axes = tuple(range(x.ndim - 1))
        n = math.prod(x.shape[:-1]) * (1 if axis_name is None else lax.axis_size(axis_name))
        if n < 2:
            raise ValueError(f"{who}: training needs at least 2 values per feature to estimate a variance, "
                             f"got an input of shape {fmt(x.shape)}"
                             + ("" if axis_name is None else f" over axis {axis_name!r}"))
        mean = jnp.mean(xf, axis=axes)
        if axis_name is not None:
            mean = lax.pmean(mean, axis_name)  # type: ignore[no-untyped-call]  # jax leaves pmean unannotated
        centered = xf - mean
        var = jnp.mean(jnp.square(centered), axis=axes)
        if axis_name is not None:
            var = lax.pmean(var, axis_name)  # type: ignore[no-untyped-call]  # jax leaves pmean unannotated
        inv = lax.rsqrt(var + eps) * params.scale.astype(sdt)
        y = centered * inv + params.bias.astype(sdt)
        m_old = jnp.asarray(momentum, sdt)
        new_state = BatchNormState(
            mean=(m_old * state.mean + (1 - m_old) * lax.stop_gradient(mean)).astype(state.mean.dtype),
            var=(m_old * state.var + (1 - m_old) * lax.stop_gradient(var) * (n / (n - 1))).astype(state.var.dtype),
        )
        return y.astype(x.dtype), new_state
    inv = lax.rsqrt(state.var.astype(sdt) + eps) * params.scale.astype(sdt)
    shift = params.bias.astype(sdt) - state.mean.astype(sdt) * inv
    return (xf * inv + shift).astype(x.dtype), state


def init_layer_norm(
    key: PRNGKey,
    num_features: int,
    *,
    scale_init: Initializer = ones(),
    bias_init: Initializer = zeros(),
    dtype: DTypeLike = jnp.float32,
) -> LayerNormParams:
    """Initialize layer normalization's scale and bias.

    Args:
        key: PRNG key (split between the initializers; the defaults ignore it).
        num_features: size ``C`` of the normalized (last) axis.
        scale_init: initializer of ``gamma``; default ``ones()``.
        bias_init: initializer of ``beta``; default ``zeros()``.
        dtype: parameter dtype (default float32).

    Returns:
        ``LayerNormParams(scale (C,), bias (C,))``.

    Raises:
        ValueError: if ``num_features`` is not a positive int.
    """
    check_count(num_features, "num_features", "init_layer_norm")
    k_s, k_b = jax.random.split(key)
    return LayerNormParams(scale=scale_init(k_s, (num_features,), dtype),
                           bias=bias_init(k_b, (num_features,), dtype))


def layer_norm(
    params: LayerNormParams,
    x: Float[Array, "*batch features"],
    *,
    eps: float = 1e-5,
) -> Float[Array, "*batch features"]:
    """Layer normalization over the last axis: ``y = gamma * (x - mu) / sqrt(sigma^2 + eps) + beta``.

    ``mu`` and ``sigma^2`` (biased) are the mean and variance of each example's ``C`` features, so
    the result does not depend on the rest of the batch, and training equals evaluation.

    Args:
        params: ``LayerNormParams(scale (C,), bias (C,))``.
        x: ``(..., C)``.
        eps: added to the variance, ``> 0``.

    Returns:
        Same shape and dtype as ``x``.

    Raises:
        ValueError: ``x.shape[-1] != C`` or ``eps <= 0``.
    """
    return _apply_layer_norm(params, x, eps, "layer_norm")


def _apply_layer_norm(params: LayerNormParams, x: Array, eps: float, who: str) -> Array:
    _check_feature_params(params.scale, params.bias, x.shape, who)
    check_positive(eps, "eps", who)
    sdt = _stats_dtype(x.dtype)
    xf = x.astype(sdt)
    mean = jnp.mean(xf, axis=-1, keepdims=True)
    centered = xf - mean
    var = jnp.mean(jnp.square(centered), axis=-1, keepdims=True)
    y = centered * lax.rsqrt(var + eps) * params.scale.astype(sdt) + params.bias.astype(sdt)
    return y.astype(x.dtype)


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
        dtype: parameter dtype (default float32).

    Returns:
        ``WeightNormParams(v, g (n_out,), b (n_out,))``.

    Raises:
        ValueError: if ``kernel_shape`` has rank < 2 or a non-positive dimension.
    """
    shape = tuple(int(d) for d in kernel_shape)
    if len(shape) < 2 or any(d < 1 for d in shape):
        raise ValueError(f"init_weight_norm: argument 'kernel_shape' must have rank >= 2 and positive sizes, "
                         f"(n_in, n_out) or (*kernel_size, c_in, c_out), got {fmt(shape)}")
    k_v, k_b = jax.random.split(key)
    v = v_init(k_v, shape, dtype)
    g = jnp.sqrt(jnp.sum(jnp.square(v), axis=tuple(range(v.ndim - 1))))
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
    """
    return _weight_norm(v, g, "weight_norm")


def _weight_norm(v: Array, g: Array, who: str) -> Array:
    if v.ndim < 2:
        raise ValueError(f"{who}: direction v must have rank >= 2 (n_in, n_out) or HWIO, got {fmt(v.shape)}")
    if g.shape != (v.shape[-1],):
        raise ValueError(f"{who}: length g must have shape {fmt((v.shape[-1],))} (one per output unit of v "
                         f"{fmt(v.shape)}), got {fmt(g.shape)}")
    sq = jnp.sum(jnp.square(v), axis=tuple(range(v.ndim - 1)))
    return v * (g * lax.rsqrt(sq))


def weight_norm_dense(params: WeightNormParams, x: Float[Array, "*batch in_features"]) -> Float[Array, "*batch out_features"]:
    """Weight-normalized dense layer: :func:`~functrain.layers.dense` with ``w = g v / ||v||``.

    Args:
        params: ``WeightNormParams(v (n_in, n_out), g (n_out,), b (n_out,))``.
        x: ``(..., n_in)``.

    Returns:
        ``(..., n_out)``.

    Raises:
        ValueError: inconsistent parameter shapes or ``x.shape[-1] != n_in``.
    """
    return _apply_dense(DenseParams(_weight_norm(params.v, params.g, "weight_norm_dense"), params.b), x,
                        "weight_norm_dense")


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
    """
    who = "weight_norm_conv1d"
    w = _weight_norm(params.v, params.g, who)
    return _apply_conv(ConvParams(w, params.b), x, spatial=1, stride=stride, padding=padding,
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
    """
    who = "weight_norm_conv2d"
    w = _weight_norm(params.v, params.g, who)
    return _apply_conv(ConvParams(w, params.b), x, spatial=2, stride=stride, padding=padding,
                       dilation=dilation, who=who)


def BatchNorm(  # noqa: N802 (layer constructor)
    momentum: float = 0.9,
    eps: float = 1e-5,
    axis_name: Hashable | None = None,
    *,
    scale_init: Initializer = ones(),
    bias_init: Initializer = zeros(),
) -> Layer:
    """:func:`batch_norm` over the last axis of ``(N, ..., C)`` batches as a composable layer.

    ``params`` is :class:`BatchNormParams`, ``state`` is :class:`BatchNormState` (running mean and
    unbiased variance); ``apply(..., train=True)`` returns the updated state.

    Args:
        momentum: weight of the old running statistics, in ``[0, 1]`` (default 0.9).
        eps: variance offset, ``> 0`` (default 1e-5).
        axis_name: a mapped axis over which to average the batch statistics (see :func:`batch_norm`).
        scale_init: initializer of ``gamma``; default ``ones()``.
        bias_init: initializer of ``beta``; default ``zeros()``.

    Returns:
        The layer.

    Raises:
        ValueError: ``momentum`` outside ``[0, 1]`` or ``eps <= 0``; at ``init``/``apply``, a
            feature count that does not match.
    """
    check_fraction(momentum, "momentum", "BatchNorm", closed_right=True)
    check_positive(eps, "eps", "BatchNorm")
    name = f"BatchNorm(momentum={momentum})"

    def init(key: PRNGKey, input_shape: Sequence[int]) -> tuple[PyTree, PyTree, Shape]:
        shape = check_input_shape(input_shape, name, min_rank=2, layout="(N, ..., C)")
        params, state = init_batch_norm(key, shape[-1], scale_init=scale_init, bias_init=bias_init)
        return params, state, shape

    def apply(
        params: PyTree, state: PyTree, x: Array, *, key: PRNGKey | None = None, train: bool
    ) -> tuple[Array, PyTree]:
        del key
        return _apply_batch_norm(params, state, x, train=train, momentum=momentum, eps=eps,
                                 axis_name=axis_name, who=name)

    return Layer(init, apply)


def LayerNorm(  # noqa: N802 (layer constructor)
    eps: float = 1e-5,
    *,
    scale_init: Initializer = ones(),
    bias_init: Initializer = zeros(),
) -> Layer:
    """:func:`layer_norm` over the last axis as a composable layer (``state = ()``).

    Args:
        eps: variance offset, ``> 0`` (default 1e-5).
        scale_init: initializer of ``gamma``; default ``ones()``.
        bias_init: initializer of ``beta``; default ``zeros()``.

    Returns:
        The layer; ``params`` is :class:`LayerNormParams`.

    Raises:
        ValueError: ``eps <= 0``; at ``init``/``apply``, a feature count that does not match.
    """
    check_positive(eps, "eps", "LayerNorm")
    name = "LayerNorm"

    def init(key: PRNGKey, input_shape: Sequence[int]) -> tuple[PyTree, PyTree, Shape]:
        shape = check_input_shape(input_shape, name, min_rank=1)
        return init_layer_norm(key, shape[-1], scale_init=scale_init, bias_init=bias_init), (), shape

    def apply(
        params: PyTree, state: PyTree, x: Array, *, key: PRNGKey | None = None, train: bool
    ) -> tuple[Array, PyTree]:
        del key, train
        return _apply_layer_norm(params, x, eps, name), state

    return Layer(init, apply)


def WeightNormDense(  # noqa: N802 (layer constructor)
    out_features: int,
    *,
    v_init: Initializer = glorot_uniform(),
    b_init: Initializer = zeros(),
) -> Layer:
    """:func:`weight_norm_dense` as a composable layer; ``params`` is :class:`WeightNormParams`.

    Args:
        out_features: number of output features.
        v_init: direction initializer (``g`` starts at ``||v||``); default ``glorot_uniform()``.
        b_init: bias initializer; default ``zeros()``.

    Returns:
        The layer.

    Raises:
        ValueError: ``out_features`` not a positive int; at ``init``/``apply``, a feature count that
            does not match.
    """
    check_count(out_features, "out_features", "WeightNormDense")
    name = f"WeightNormDense({out_features})"

    def init(key: PRNGKey, input_shape: Sequence[int]) -> tuple[PyTree, PyTree, Shape]:
        shape = check_input_shape(input_shape, name, min_rank=2, layout="(N, ..., features)")
        params = init_weight_norm(key, (shape[-1], out_features), v_init=v_init, b_init=b_init)
        return params, (), shape[:-1] + (out_features,)

    def apply(
        params: PyTree, state: PyTree, x: Array, *, key: PRNGKey | None = None, train: bool
    ) -> tuple[Array, PyTree]:
        del key, train
        v, g, b = params
        return _apply_dense(DenseParams(_weight_norm(v, g, name), b), x, name), state

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
) -> Layer:
    """:func:`weight_norm_conv2d` over ``(N, H, W, C)`` batches as a composable layer.

    Args:
        out_channels: output channels.
        kernel_size: ``k`` or ``(k_h, k_w)``.
        stride: as in :func:`~functrain.layers.conv2d`.
        padding: as in :func:`~functrain.layers.conv2d`.
        dilation: as in :func:`~functrain.layers.conv2d`.
        v_init: direction initializer (``g`` starts at ``||v||``); default ``glorot_uniform()``.
        b_init: bias initializer; default ``zeros()``.

    Returns:
        The layer; ``params`` is :class:`WeightNormParams`.

    Raises:
        ValueError: bad hyperparameters; at ``init``/``apply``, an input of the wrong rank or channel
            count or smaller than the kernel.
    """
    ctor = "WeightNormConv2D"
    check_count(out_channels, "out_channels", ctor)
    ks = int_tuple(kernel_size, 2, "kernel_size", ctor)
    int_tuple(stride, 2, "stride", ctor)
    int_tuple(dilation, 2, "dilation", ctor)
    normalize_padding(padding, 2, ctor)
    name = f"{ctor}({out_channels}, {ks})"

    def init(key: PRNGKey, input_shape: Sequence[int]) -> tuple[PyTree, PyTree, Shape]:
        shape = check_input_shape(input_shape, name, rank=4, layout="(N, H, W, C)")
        kernel = (*ks, shape[-1], out_channels)
        _, _, _, out = _conv_geometry(kernel, shape, spatial=2, stride=stride, padding=padding,
                                      dilation=dilation, who=name, batched_only=True)
        params = init_weight_norm(key, kernel, v_init=v_init, b_init=b_init)
        return params, (), (shape[0], *out, out_channels)

    def apply(
        params: PyTree, state: PyTree, x: Array, *, key: PRNGKey | None = None, train: bool
    ) -> tuple[Array, PyTree]:
        del key, train
        check_array_rank(x, name, rank=4, layout="(N, H, W, C)")
        v, g, b = params
        y = _apply_conv(ConvParams(_weight_norm(v, g, name), b), x, spatial=2, stride=stride,
                        padding=padding, dilation=dilation, who=name, batched_only=True)
        return y, state

    return Layer(init, apply)
