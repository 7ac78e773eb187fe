"""Residual connections: ``y = P x + f(x)`` around a branch ``f`` (He et al. 2016).

:func:`Residual` adds the skip connection (He et al., "Deep Residual Learning for Image
Recognition", CVPR 2016): ``P`` is the identity when ``f`` keeps the shape, and a learned projection
otherwise (a dense layer for ``(N, C)`` inputs, a strided 1x1 convolution for images). With
``zero_init_last_bn=True`` the last batch-norm scale of the branch starts at zero, so every block
starts as the identity (Goyal et al., "Accurate, Large Minibatch SGD", 2017, sec. 5.1; He et al.,
"Bag of Tricks for Image Classification", CVPR 2019).

Example:
    >>> block = ft.layers.Residual(ft.layers.serial(ft.layers.Dense(4), ft.layers.BatchNorm()),
    ...                            zero_init_last_bn=True)
    >>> params, state, _ = block.init(jax.random.key(0), (-1, 4))
    >>> x = jnp.arange(8.0).reshape(2, 4)
    >>> bool(jnp.all(block.apply(params, state, x, train=False)[0] == x))  # starts as the identity
    True
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, NamedTuple, TypeVar, cast

import jax
import jax.numpy as jnp

from functrain import _tree, _validate
from functrain.initializers import glorot_uniform, zeros
from functrain.layers._diagnose import diagnose, shape_of
from functrain.layers._geometry import check_input_shape, fmt
from functrain.layers.base import Layer
from functrain.layers.combinators import _not_a_layer  # pyright: ignore[reportPrivateUsage]  # shared inside functrain.layers
from functrain.layers.conv import ConvParams, apply_conv, init_conv
from functrain.layers.dense import DenseParams, apply_dense, init_dense
from functrain.layers.normalization import BatchNormParams
from functrain.layers.precision import check_dtype
from functrain.typing import Array, DType, DTypeLike, Initializer, PRNGKey, PyTree, Shape

M = TypeVar("M")

__all__ = ["Residual", "ResidualParams", "zero_last_batch_norm_scale"]


class ResidualParams(NamedTuple):
    """Parameters of a :func:`Residual` block.

    Attributes:
        body: the parameters of the wrapped layer ``f``.
        projection: ``()`` for an identity shortcut, else ``DenseParams`` (``(N, C)`` inputs) or
            ``ConvParams`` of a 1x1 convolution (images and sequences).

    Example:
        >>> block = ft.layers.Residual(ft.layers.Dense(6))  # 4 -> 6 features: a dense projection
        >>> params, state, _ = block.init(jax.random.key(0), (-1, 4))
        >>> isinstance(params, ft.layers.ResidualParams), params.projection.w.shape
        (True, (4, 6))
    """

    body: PyTree
    projection: PyTree


def _shortcut_strides(in_shape: Sequence[int], out_shape: Sequence[int], who: str, name: str,
                      got: object) -> tuple[int, ...]:
    """Strides of the 1x1 projection (``SAME`` padding) mapping ``in`` spatial sizes onto ``out``."""
    strides: list[int] = []
    for n_in, n_out in zip(in_shape[1:-1], out_shape[1:-1], strict=True):
        s = max(1, math.ceil(n_in / n_out))
        if math.ceil(n_in / s) != n_out:
            _validate.fail(who, name, "an input whose spatial sizes a strided 1x1 convolution maps onto "
                           f"the body's output {fmt(out_shape)} (use padding='SAME' in the body)", got,
                           detail=f"spatial {n_in} -> {n_out}")
        strides.append(s)
    return tuple(strides)


def _projection_kind(in_shape: Shape, out_shape: Shape, who: str) -> str:
    if len(in_shape) != len(out_shape) or (in_shape[0] != out_shape[0]):
        _validate.fail(who, "input_shape", "a shape that the body maps to the same rank and batch size",
                       in_shape, detail=f"the body returns {fmt(out_shape)}")
    if in_shape == out_shape:
        return "identity"
    if len(in_shape) == 2:
        return "dense"
    if len(in_shape) not in (3, 4, 5):
        _validate.fail(who, "input_shape", "(N, C), (N, W, C), (N, H, W, C) or (N, D, H, W, C) when the "
                       "body changes the shape (a projection shortcut is needed)", in_shape,
                       detail=f"the body returns {fmt(out_shape)}")
    _shortcut_strides(in_shape, out_shape, who, "input_shape", in_shape)
    return "conv"


def _body_dtype(params: PyTree) -> DType:
    """The dtype of the floating leaves of ``params`` (promoted together), float32 if none."""
    dtypes = [leaf.dtype for leaf in _tree.tree_leaves(params) if _tree.is_float_array(leaf)]
    return jnp.dtype(jnp.result_type(*dtypes)) if dtypes else jnp.dtype(jnp.float32)


def Residual(  # noqa: N802 (layer constructor)
    layer: Layer[Any, M],
    *,
    projection_init: Initializer = glorot_uniform(),
    zero_init_last_bn: bool = False,
    dtype: DTypeLike | None = None,
) -> Layer[ResidualParams, M]:
    """A residual block ``y = P x + f(x)`` around ``layer = f`` (He et al. 2016).

    ``P`` is the identity when ``f`` keeps the input's shape. Otherwise ``P`` is learned and chosen at
    ``init`` from the shapes: a dense layer ``C_in -> C_out`` for ``(N, C)`` inputs, else a 1x1
    convolution ``C_in -> C_out`` with stride ``ceil(S_in / S_out)`` per spatial axis and ``SAME``
    padding (He et al.'s "option B" projection shortcut).

    ``params`` is :class:`ResidualParams` ``(body, projection)``; ``state`` is the body's state; the
    key is passed to the body unchanged.

    Args:
        layer: the residual branch ``f`` (typically a ``serial(...)``).
        projection_init: kernel initializer of the projection, if one is needed; default
            ``glorot_uniform()`` (biases zero).
        zero_init_last_bn: start the branch's last batch-norm scale at zero
            (:func:`zero_last_batch_norm_scale`), so the block starts as its shortcut: the
            "zero-gamma" trick of Goyal et al. (2017) and He et al.'s bag of tricks (2019).
        dtype: the projection's parameter dtype (floating); default ``None``: the dtype of the
            body's floating parameters (float32 if it has none).

    Returns:
        The layer.

    Raises:
        TypeError: ``layer`` is not a :class:`Layer`, ``zero_init_last_bn`` not a bool or
            ``dtype`` not a dtype (``ValueError``: not floating); at
            ``apply``, when the body fails on
            ``params``/``state`` without the structure ``init`` gives (e.g. the two swapped).
        ValueError: at ``init``, a body that changes the rank or batch size, or whose spatial output
            a strided 1x1 convolution cannot reach.

    Example:
        >>> body = ft.layers.serial(ft.layers.Conv2D(8, 3, stride=2), ft.layers.Relu,
        ...                         ft.layers.Conv2D(8, 3))
        >>> block = ft.layers.Residual(body)  # the shortcut is a 1x1 convolution with stride 2
        >>> params, state, out_shape = block.init(jax.random.key(0), (-1, 8, 8, 3))
        >>> out_shape, params.projection.w.shape
        ((-1, 4, 4, 8), (1, 1, 3, 8))
    """
    who = "Residual"
    if not isinstance(cast(object, layer), Layer):  # the static type is not enforced
        _not_a_layer(who, "layer", "a Layer (e.g. serial(Dense(10), Relu))", layer)
    _validate.check_callable(projection_init, who, "projection_init",
                             "an initializer (e.g. initializers.he_normal())")
    zero_gamma = _validate.check_bool(zero_init_last_bn, who, "zero_init_last_bn")
    if dtype is not None:
        check_dtype(dtype, who, available=False)

    def init(key: PRNGKey, input_shape: Sequence[int]) -> tuple[ResidualParams, M, Shape]:
        shape = check_input_shape(input_shape, who, min_rank=2)
        k_body, k_proj = jax.random.split(key)
        body_params, body_state, out = layer.init(k_body, shape)
        if zero_gamma:
            body_params = zero_last_batch_norm_scale(body_params, who=who)
        out = tuple(out)
        kind = _projection_kind(shape, out, who)
        projection: PyTree = ()
        p_dtype = _body_dtype(body_params) if dtype is None else check_dtype(dtype, who)
        if kind == "dense":
            projection = init_dense(k_proj, shape[-1], out[-1], w_init=projection_init, b_init=zeros(),
                                    dtype=p_dtype)
        elif kind == "conv":
            spatial = len(shape) - 2
            projection = init_conv(k_proj, shape[-1], out[-1], (1,) * spatial, spatial=spatial,
                                   w_init=projection_init, b_init=zeros(), dtype=p_dtype, who=who)
        return ResidualParams(body_params, projection), body_state, out

    def apply(params: ResidualParams, state: M, x: Array, *, key: PRNGKey | None = None,
              train: bool) -> tuple[Array, M]:
        try:
            body_params, projection = params
            y, new_state = layer.apply(body_params, state, x, key=key, train=train)
        except Exception as e:
            diagnose(who, init, shape_of(x), params, state,
                      [(".body", "params", "the body"), (".projection", "params", "the shortcut"),
                       ("", "state", "the body")], e)
            raise
        if isinstance(projection, DenseParams):
            shortcut = apply_dense(projection, x, who=who)
        elif isinstance(projection, ConvParams):
            strides = _shortcut_strides(x.shape, y.shape, who, "x", x)
            shortcut = apply_conv(projection, x, spatial=x.ndim - 2, stride=strides, padding="SAME",
                                  who=who, batched_only=True)
        else:
            shortcut = x
        if shortcut.shape != y.shape:
            _validate.fail(who, "x", "an input of the shape the block was initialized for", x,
                           detail=f"the shortcut gives {fmt(shortcut.shape)}, the body {fmt(y.shape)}")
        return shortcut + y, new_state

    return Layer(init, apply)


def zero_last_batch_norm_scale(params: PyTree, *, who: str = "zero_last_batch_norm_scale") -> PyTree:
    """``params`` with the scale of its last :class:`~functrain.layers.BatchNormParams` set to zero.

    "Last" is in the tree's order, which for a ``serial`` body is the order of its layers. With that
    scale at zero, a residual branch ending in batch norm outputs zeros at the start of training, so
    the block is its shortcut and a deep network starts shallow (the zero-gamma trick: Goyal et al.,
    "Accurate, Large Minibatch SGD", 2017, sec. 5.1).

    Args:
        params: a parameter tree holding at least one ``BatchNormParams``.
        who: the function named in the error message.

    Returns:
        The same tree, with that one scale replaced by zeros (same shape and dtype).

    Raises:
        ValueError: ``params`` holds no ``BatchNormParams``.

    Example:
        >>> body = ft.layers.serial(ft.layers.Dense(3), ft.layers.BatchNorm(), ft.layers.Relu,
        ...                         ft.layers.Dense(3), ft.layers.BatchNorm())
        >>> params = body.init(jax.random.key(0), (-1, 3))[0]
        >>> zeroed = ft.layers.zero_last_batch_norm_scale(params)
        >>> zeroed[1].scale.tolist(), zeroed[4].scale.tolist()
        ([1.0, 1.0, 1.0], [0.0, 0.0, 0.0])
    """
    def is_bn(node: object) -> bool:
        return isinstance(node, BatchNormParams)

    leaves, treedef = jax.tree_util.tree_flatten(params, is_leaf=is_bn)
    found = [i for i, leaf in enumerate(leaves) if is_bn(leaf)]
    if not found:
        _validate.fail(who, "zero_init_last_bn", "True only for a branch with a BatchNorm layer",
                       True, detail="the branch's parameters hold no BatchNormParams")
    last: BatchNormParams = leaves[found[-1]]
    leaves[found[-1]] = last._replace(scale=jnp.zeros_like(last.scale))
    return jax.tree_util.tree_unflatten(treedef, leaves)
