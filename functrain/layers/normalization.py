"""Normalization of activations: batch normalization and layer normalization.

* :func:`batch_norm` (Ioffe & Szegedy, "Batch Normalization: Accelerating Deep Network Training by
  Reducing Internal Covariate Shift", ICML 2015) normalizes each feature over the batch (and, for
  images, the spatial axes), then applies a learned scale and bias; running averages of the batch
  statistics replace them in evaluation.
* :func:`layer_norm` (Ba, Kiros & Hinton, "Layer Normalization", 2016) normalizes each example over
  its features; it needs no state and behaves the same in training and evaluation.

Integer and boolean inputs (``uint8`` images, ``int32`` counts) are promoted to the parameter
dtype, as :func:`~functrain.layers.dense` and the convolutions promote them; floating inputs keep
their dtype (``bfloat16`` activations stay ``bfloat16``).

Weight normalization, which reparametrizes kernels rather than activations, is in
:mod:`functrain.layers.weight_norm`.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax
from jaxtyping import Float

from functrain import _validate
from functrain.initializers import ones, zeros
from functrain.layers._geometry import check_input_shape, check_last_axis
from functrain.layers.base import Layer
from functrain.layers.precision import check_dtype, check_init_args
from functrain.typing import Array, DType, DTypeLike, Initializer, PRNGKey, Shape

__all__ = [
    "BatchNorm",
    "BatchNormParams",
    "BatchNormState",
    "LayerNorm",
    "LayerNormParams",
    "batch_norm",
    "init_batch_norm",
    "init_layer_norm",
    "layer_norm",
]


class BatchNormParams(NamedTuple):
    """Learned parameters of batch normalization.

    Attributes:
        scale: ``gamma``, shape ``(C,)``.
        bias: ``beta``, shape ``(C,)``.

    Example:
        >>> params = ft.layers.BatchNormParams(scale=jnp.full(3, 2.0), bias=jnp.zeros(3))
        >>> _, state = ft.layers.init_batch_norm(jax.random.key(0), 3)
        >>> y, _ = ft.layers.batch_norm(params, state, jnp.ones((4, 3)), train=False)
        >>> round(float(y[0, 0]), 4)  # 2 * (1 - 0) / sqrt(1 + 1e-5)
        2.0
    """

    scale: Array
    bias: Array


class BatchNormState(NamedTuple):
    """Running statistics of batch normalization (not trained by gradient descent).

    Attributes:
        mean: running mean of each feature, shape ``(C,)``.
        var: running *unbiased* variance of each feature (``n / (n - 1)`` times the batch's biased
            variance, as in PyTorch), shape ``(C,)``.

    Example:
        >>> params, state = ft.layers.init_batch_norm(jax.random.key(0), 1)
        >>> x = jnp.array([[1.0], [3.0]])
        >>> _, state = ft.layers.batch_norm(params, state, x, train=True, momentum=0.0)
        >>> state.mean.tolist(), state.var.tolist()  # the batch's mean and unbiased variance
        ([2.0], [2.0])
    """

    mean: Array
    var: Array


class LayerNormParams(NamedTuple):
    """Learned parameters of layer normalization.

    Attributes:
        scale: ``gamma``, shape ``(C,)``.
        bias: ``beta``, shape ``(C,)``.

    Example:
        >>> params = ft.layers.LayerNormParams(scale=jnp.ones(2), bias=jnp.array([0.0, 10.0]))
        >>> [round(v, 3) for v in ft.layers.layer_norm(params, jnp.array([1.0, 3.0])).tolist()]
        [-1.0, 11.0]
    """

    scale: Array
    bias: Array


def _stats_dtype(dtype: DType) -> DType:
    # Statistics of bfloat16/float16 activations are accumulated in float32.
    return jnp.dtype(jnp.promote_types(dtype, jnp.float32))


def _out_dtype(x: Array, scale: Array) -> DType:
    """The output dtype: ``x``'s if floating, else the parameters' (integers are promoted)."""
    if jnp.issubdtype(x.dtype, jnp.inexact):
        return jnp.dtype(x.dtype)
    return jnp.dtype(jnp.result_type(x.dtype, scale.dtype))


def _check_features(scale: Array, bias: Array, x: Array, who: str) -> int:
    """chex checks (trace time only): ``scale`` is ``(C,)``, ``bias`` too, ``x`` is ``(..., C)``."""
    _validate.check_rank(scale, 1, who, "params.scale", layout="(C,)")
    c = int(scale.shape[0])
    _validate.check_shape(bias, (c,), who, "params.bias")
    check_last_axis(x, c, who)
    return c


def _init_scale_bias(key: PRNGKey, num_features: int, scale_init: Initializer, bias_init: Initializer,
                     dtype: DTypeLike, who: str) -> tuple[int, Array, Array]:
    c = _validate.check_int(num_features, who, "num_features", low=1)
    dtype = check_init_args(who, dtype, scale_init=scale_init, bias_init=bias_init)
    k_s, k_b = jax.random.split(key)
    return c, scale_init(k_s, (c,), dtype), bias_init(k_b, (c,), dtype)


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
        dtype: floating parameter dtype (default float32); running statistics in at least float32.

    Returns:
        ``(BatchNormParams(scale, bias), BatchNormState(mean=0, var=1))``.

    Raises:
        TypeError, ValueError: ``num_features`` is not a positive int, or ``dtype`` not floating.

    Example:
        >>> params, state = ft.layers.init_batch_norm(jax.random.key(0), 16)
        >>> params.scale.shape, state.mean.shape, float(state.var[0])
        ((16,), (16,), 1.0)
    """
    c, scale, bias = _init_scale_bias(key, num_features, scale_init, bias_init, dtype, "init_batch_norm")
    sdt = _stats_dtype(jnp.dtype(dtype))
    state = BatchNormState(mean=jnp.zeros((c,), sdt), var=jnp.ones((c,), sdt))
    return BatchNormParams(scale=scale, bias=bias), state


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
        ``(y, new_state)``: ``y`` with ``x``'s shape, and its dtype if floating (an integer or
        boolean ``x``, e.g. ``uint8`` pixels, is promoted to the parameter dtype, as
        :func:`~functrain.layers.dense` promotes it); ``new_state`` is ``state`` itself when
        ``train`` is false.

    Raises:
        ValueError: shapes inconsistent (the message names expected and actual), ``momentum`` outside
            ``[0, 1]``, ``eps <= 0``, or a training batch with one value per feature.

    Example:
        >>> params, state = ft.layers.init_batch_norm(jax.random.key(0), 2)
        >>> x = jnp.array([[0.0, 10.0], [2.0, 30.0]])
        >>> y, state = ft.layers.batch_norm(params, state, x, train=True)
        >>> y.round(3).tolist()
        [[-1.0, -1.0], [1.0, 1.0]]
        >>> [round(v, 3) for v in state.mean.tolist()]  # 0.9 * 0 + 0.1 * batch mean
        [0.1, 2.0]
    """
    return _apply_batch_norm(params, state, x, train=train, momentum=momentum, eps=eps,
                            axis_name=axis_name, who="batch_norm")


def _apply_batch_norm(params: BatchNormParams, state: BatchNormState, x: Array, *, train: bool,
                     momentum: float, eps: float, axis_name: Hashable | None,
                     who: str) -> tuple[Array, BatchNormState]:
    """:func:`batch_norm` with errors naming ``who`` (the :func:`BatchNorm` layer shares it)."""
    c = _check_features(params.scale, params.bias, x, who)
    _validate.check_shape(state.mean, (c,), who, "state.mean")
    _validate.check_shape(state.var, (c,), who, "state.var")
    train = _validate.check_bool(train, who, "train")
    _validate.check_fraction(momentum, who, "momentum", closed_right=True)
    _validate.check_positive(eps, who, "eps")
    sdt = _stats_dtype(x.dtype)
    xf = x.astype(sdt)
    if not train:
        inv = lax.rsqrt(state.var.astype(sdt) + eps) * params.scale.astype(sdt)
        shift = params.bias.astype(sdt) - state.mean.astype(sdt) * inv
        return (xf * inv + shift).astype(_out_dtype(x, params.scale)), state
    axes = tuple(range(x.ndim - 1))
    n = math.prod(x.shape[:-1]) * (1 if axis_name is None else lax.axis_size(axis_name))
    if n < 2:
        _validate.fail(who, "x", "an array with at least 2 values per feature in training (to "
                       "estimate a variance)", x,
                       detail="" if axis_name is None else f"counted over axis {axis_name!r}")
    mean = jnp.mean(xf, axis=axes)
    if axis_name is not None:
        mean = lax.pmean(mean, axis_name)  # type: ignore[no-untyped-call]  # jax leaves pmean unannotated
    centered = xf - mean
    var = jnp.mean(jnp.square(centered), axis=axes)
    if axis_name is not None:
        var = lax.pmean(var, axis_name)  # type: ignore[no-untyped-call]  # jax leaves pmean unannotated
    y = centered * (lax.rsqrt(var + eps) * params.scale.astype(sdt)) + params.bias.astype(sdt)
    m_old = jnp.asarray(momentum, sdt)
    new_state = BatchNormState(
        mean=(m_old * state.mean + (1 - m_old) * lax.stop_gradient(mean)).astype(state.mean.dtype),
        var=(m_old * state.var + (1 - m_old) * lax.stop_gradient(var) * (n / (n - 1))).astype(state.var.dtype),
    )
    return y.astype(_out_dtype(x, params.scale)), new_state


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
        dtype: parameter dtype, floating (default float32; float64 needs ``jax.enable_x64``).

    Returns:
        ``LayerNormParams(scale (C,), bias (C,))``.

    Raises:
        TypeError, ValueError: ``num_features`` is not a positive int, or ``dtype`` not floating.

    Example:
        >>> p = ft.layers.init_layer_norm(jax.random.key(0), 8)
        >>> p.scale.shape, float(p.scale[0]), float(p.bias[0])
        ((8,), 1.0, 0.0)
    """
    _, scale, bias = _init_scale_bias(key, num_features, scale_init, bias_init, dtype, "init_layer_norm")
    return LayerNormParams(scale=scale, bias=bias)


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
        ``x``'s shape, and its dtype if floating (an integer or boolean ``x`` is promoted to the
        parameter dtype, as in :func:`batch_norm`).

    Raises:
        ValueError: ``x.shape[-1] != C`` or ``eps <= 0``.

    Example:
        >>> p = ft.layers.init_layer_norm(jax.random.key(0), 4)
        >>> y = ft.layers.layer_norm(p, jnp.array([[1.0, 2.0, 3.0, 4.0]]))
        >>> [round(v, 2) for v in y[0].tolist()]
        [-1.34, -0.45, 0.45, 1.34]
    """
    return _apply_layer_norm(params, x, eps=eps, who="layer_norm")


def _apply_layer_norm(params: LayerNormParams, x: Array, *, eps: float, who: str) -> Array:
    """:func:`layer_norm` with errors naming ``who`` (the :func:`LayerNorm` layer shares it)."""
    _check_features(params.scale, params.bias, x, who)
    _validate.check_positive(eps, who, "eps")
    sdt = _stats_dtype(x.dtype)
    xf = x.astype(sdt)
    mean = jnp.mean(xf, axis=-1, keepdims=True)
    centered = xf - mean
    var = jnp.mean(jnp.square(centered), axis=-1, keepdims=True)
    y = centered * lax.rsqrt(var + eps) * params.scale.astype(sdt) + params.bias.astype(sdt)
    return y.astype(_out_dtype(x, params.scale))


def BatchNorm(  # noqa: N802 (layer constructor)
    momentum: float = 0.9,
    eps: float = 1e-5,
    axis_name: Hashable | None = None,
    *,
    scale_init: Initializer = ones(),
    bias_init: Initializer = zeros(),
    dtype: DTypeLike = jnp.float32,
) -> Layer[BatchNormParams, BatchNormState]:
    """:func:`batch_norm` over the last axis of ``(N, ..., C)`` batches as a composable layer.

    ``params`` is :class:`BatchNormParams`, ``state`` is :class:`BatchNormState` (running mean and
    unbiased variance); ``apply(..., train=True)`` returns the updated state. An integer input
    (``uint8`` images) is promoted to the parameter dtype; a floating one keeps its dtype.

    Args:
        momentum: weight of the old running statistics, in ``[0, 1]`` (default 0.9).
        eps: variance offset, ``> 0`` (default 1e-5).
        axis_name: a mapped axis over which to average the batch statistics (see :func:`batch_norm`).
        scale_init: initializer of ``gamma``; default ``ones()``.
        bias_init: initializer of ``beta``; default ``zeros()``.
        dtype: parameter dtype, floating (default float32; float64 needs ``jax.enable_x64``).

    Returns:
        The layer.

    Raises:
        TypeError, ValueError: ``momentum`` outside ``[0, 1]``, ``eps <= 0`` or ``dtype`` not
            floating; at ``init``/``apply``, a feature count that does not match.

    Example:
        >>> layer = ft.layers.BatchNorm(momentum=0.99)
        >>> params, state, out_shape = layer.init(jax.random.key(0), (-1, 8, 8, 3))
        >>> y, state = layer.apply(params, state, jnp.ones((2, 8, 8, 3)), train=True)
        >>> out_shape, y.shape, state.mean.shape
        ((-1, 8, 8, 3), (2, 8, 8, 3), (3,))
    """
    who = "BatchNorm"
    _validate.check_fraction(momentum, who, "momentum", closed_right=True)
    _validate.check_positive(eps, who, "eps")
    check_init_args(who, dtype, available=False, scale_init=scale_init, bias_init=bias_init)

    def init(key: PRNGKey, input_shape: Sequence[int]) -> tuple[BatchNormParams, BatchNormState, Shape]:
        shape = check_input_shape(input_shape, who, min_rank=2, axes="(N, ..., C)")
        return (*init_batch_norm(key, shape[-1], scale_init=scale_init, bias_init=bias_init,
                                 dtype=check_dtype(dtype, who)), shape)

    def apply(params: BatchNormParams, state: BatchNormState, x: Array, *,
              key: PRNGKey | None = None, train: bool) -> tuple[Array, BatchNormState]:
        del key
        return _apply_batch_norm(params, state, x, train=train, momentum=momentum, eps=eps,
                                axis_name=axis_name, who=who)

    return Layer(init, apply)


def LayerNorm(  # noqa: N802 (layer constructor)
    eps: float = 1e-5,
    *,
    scale_init: Initializer = ones(),
    bias_init: Initializer = zeros(),
    dtype: DTypeLike = jnp.float32,
) -> Layer[LayerNormParams, tuple[()]]:
    """:func:`layer_norm` over the last axis as a composable layer (``state = ()``).

    An integer input is promoted to the parameter dtype; a floating one keeps its dtype.

    Args:
        eps: variance offset, ``> 0`` (default 1e-5).
        scale_init: initializer of ``gamma``; default ``ones()``.
        bias_init: initializer of ``beta``; default ``zeros()``.
        dtype: parameter dtype, floating (default float32; float64 needs ``jax.enable_x64``).

    Returns:
        The layer; ``params`` is :class:`LayerNormParams`.

    Raises:
        TypeError, ValueError: ``eps <= 0`` or ``dtype`` not floating; at ``init``/``apply``, a
            feature count that does not match.

    Example:
        >>> layer = ft.layers.LayerNorm()
        >>> params, state, out_shape = layer.init(jax.random.key(0), (-1, 16, 32))
        >>> out_shape, params.scale.shape, state
        ((-1, 16, 32), (32,), ())
    """
    who = "LayerNorm"
    _validate.check_positive(eps, who, "eps")
    check_init_args(who, dtype, available=False, scale_init=scale_init, bias_init=bias_init)

    def init(key: PRNGKey, input_shape: Sequence[int]) -> tuple[LayerNormParams, tuple[()], Shape]:
        shape = check_input_shape(input_shape, who, min_rank=1)
        _, scale, bias = _init_scale_bias(key, shape[-1], scale_init, bias_init, dtype, who)
        return LayerNormParams(scale=scale, bias=bias), (), shape

    def apply(params: LayerNormParams, state: tuple[()], x: Array, *,
              key: PRNGKey | None = None, train: bool) -> tuple[Array, tuple[()]]:
        del key, train
        return _apply_layer_norm(params, x, eps=eps, who=who), state

    return Layer(init, apply)
