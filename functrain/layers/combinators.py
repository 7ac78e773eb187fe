"""Combinators: build models from layers in a few lines.

* :func:`serial` chains layers; its ``params`` and ``state`` are tuples with one entry per layer, and
  model state (batch-norm statistics) threads through: each layer gets its own state in and returns
  its new state. The key given to ``apply`` is split into one key per layer.
* :func:`parallel` feeds one input to several branches and returns the tuple of their outputs;
  :data:`Concatenate` joins such a tuple along the channel (last) axis. Inception-style blocks are
  ``serial(parallel(branch_1, branch_2, ...), Concatenate)``; inside :func:`serial` a
  ``parallel(...)`` must be followed directly by a join.
* :func:`Residual` adds a skip connection, ``y = P x + f(x)`` (He et al., "Deep Residual Learning for
  Image Recognition", CVPR 2016), where ``P`` is the identity when ``f`` keeps the shape and a learned
  projection otherwise (a dense layer for ``(N, C)`` inputs, a strided 1x1 convolution for images).
* :data:`Identity` passes its input through.

Example (the lesson's convolutional network)::

    model = serial(Conv2D(32, 3), Relu, MaxPool(2), Conv2D(64, 3), Relu, MaxPool(2),
                   Flatten, Dropout(0.5), Dense(10))
    params, state, out_shape = model.init(key, (-1, 28, 28, 1))
    logits, state = model.apply(params, state, images, key=dropout_key, train=True)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp

from functrain.initializers import glorot_uniform, zeros
from functrain.layers._util import check_input_shape, fmt
from functrain.layers.base import Branches, Join, Layer, _stateless
from functrain.layers.conv import ConvParams, _apply_conv, _init_conv
from functrain.layers.dense import DenseParams, _apply_dense, init_dense
from functrain.typing import Array, Initializer, PRNGKey, PyTree, Shape

__all__ = [
    "Concatenate",
    "Identity",
    "Residual",
    "ResidualParams",
    "parallel",
    "serial",
]


def _describe(obj: object) -> str:
    if callable(obj) and hasattr(obj, "__name__"):
        return f"the function {obj.__name__!s} (did you forget to call it, e.g. {obj.__name__!s}(...)?)"
    return f"{type(obj).__name__} {obj!r}"[:200]


def _split(key: PRNGKey | None, n: int) -> list[PRNGKey | None]:
    if key is None or n == 0:
        return [None] * n
    keys = jax.random.split(key, n)
    return [keys[i] for i in range(n)]


def _check_entries(tree: PyTree, n: int, what: str, who: str) -> None:
    if not isinstance(tree, (tuple, list)) or len(tree) != n:
        got = f"a {type(tree).__name__} of length {len(tree)}" if isinstance(tree, (tuple, list)) \
            else type(tree).__name__
        raise ValueError(f"{who}: expected {what} as a tuple with one entry per layer ({n}), got {got}")


def serial(*layers: Layer | Branches | Join) -> Layer:
    """Compose layers in sequence: ``y = f_n(... f_2(f_1(x)))``.

    ``init`` returns ``params`` and ``state`` as tuples with one entry per layer (``()`` for layers
    without parameters or state) and the final output shape; ``apply`` threads each layer's state
    through and returns the tuple of new states, so batch-norm statistics update in one call. When
    ``key`` is given it is split into one key per layer (``jax.random.split(key, n)``); with
    ``key=None`` every layer gets ``None`` (fine for ``train=False``; a dropout layer raises in
    training). A ``parallel(...)`` (a :class:`Branches`) must be followed directly by a
    :class:`Join` such as :data:`Concatenate`.

    Args:
        *layers: the layers, first applied first.

    Returns:
        The composite layer.

    Raises:
        TypeError: an argument is not a ``Layer``, ``Branches`` or ``Join`` (e.g. an uncalled
            constructor such as ``LeakyRelu``).
        ValueError: a ``parallel(...)`` not followed by a join, or a join without one before it; at
            ``init``, the first layer whose input shape is wrong (message prefixed with its position).
    """
    for i, layer in enumerate(layers):
        if not isinstance(layer, (Layer, Branches, Join)):
            raise TypeError(f"serial: argument {i} must be a Layer (e.g. Dense(10)), parallel(...) or "
                            f"Concatenate, got {_describe(layer)}")
        if isinstance(layer, Branches) and (i + 1 >= len(layers) or not isinstance(layers[i + 1], Join)):
            raise ValueError(f"serial: argument {i} is parallel(...), which returns a tuple of outputs; it must "
                             "be followed directly by a join such as Concatenate")
        if isinstance(layer, Join) and (i == 0 or not isinstance(layers[i - 1], Branches)):
            raise ValueError(f"serial: argument {i} is a join (e.g. Concatenate), which needs a tuple of "
                             "inputs; put parallel(...) directly before it")
    n = len(layers)

    def init(key: PRNGKey, input_shape: Sequence[int]) -> tuple[PyTree, PyTree, Shape]:
        shape = check_input_shape(input_shape, "serial")
        keys = jax.random.split(key, n) if n else None
        params: list[PyTree] = []
        states: list[PyTree] = []
        i = 0
        while i < n:
            layer = layers[i]
            position = i
            assert keys is not None  # n > 0 inside the loop
            try:
                if isinstance(layer, Layer):
                    p, s, shape = layer.init(keys[i], shape)
                    params.append(p)
                    states.append(s)
                    i += 1
                elif isinstance(layer, Branches):
                    join = layers[i + 1]
                    if not isinstance(join, Join):  # excluded at construction
                        raise TypeError(f"serial: argument {i + 1} must be a Join")
                    pb, sb, shapes = layer.init(keys[i], shape)
                    i += 1
                    pj, sj, shape = join.init(keys[i], shapes)
                    params += [pb, pj]
                    states += [sb, sj]
                    i += 1
                else:  # a Join is always consumed with the Branches before it
                    raise TypeError(f"serial: argument {i} is a join without parallel(...) before it")
            except ValueError as e:
                raise ValueError(f"serial: layer {position} of {n}: {e}") from e
        return tuple(params), tuple(states), shape

    def apply(
        params: PyTree, state: PyTree, x: Array, *, key: PRNGKey | None = None, train: bool
    ) -> tuple[Array, PyTree]:
        _check_entries(params, n, "params", "serial")
        _check_entries(state, n, "state", "serial")
        keys = _split(key, n)
        new_states: list[PyTree] = []
        i = 0
        while i < n:
            layer = layers[i]
            if isinstance(layer, Layer):
                x, s = layer.apply(params[i], state[i], x, key=keys[i], train=train)
                new_states.append(s)
                i += 1
            elif isinstance(layer, Branches):
                join = layers[i + 1]
                if not isinstance(join, Join):  # excluded at construction
                    raise TypeError(f"serial: argument {i + 1} must be a Join")
                xs, sb = layer.apply(params[i], state[i], x, key=keys[i], train=train)
                x, sj = join.apply(params[i + 1], state[i + 1], xs, key=keys[i + 1], train=train)
                new_states += [sb, sj]
                i += 2
            else:
                raise TypeError(f"serial: argument {i} is a join without parallel(...) before it")
        return x, tuple(new_states)

    return Layer(init, apply)


def parallel(*layers: Layer) -> Branches:
    """Fan out: apply every layer to the same input, returning the tuple of outputs.

    ``params`` and ``state`` are tuples with one entry per branch; the key is split per branch.
    Follow it with a join, e.g. ``serial(parallel(b1, b2, b3), Concatenate)`` (an Inception block).

    Args:
        *layers: the branches (at least one); each may itself be a ``serial(...)``.

    Returns:
        A :class:`Branches`.

    Raises:
        TypeError: an argument is not a :class:`Layer`.
        ValueError: no branches.
    """
    if not layers:
        raise ValueError("parallel: needs at least one branch")
    for i, layer in enumerate(layers):
        if not isinstance(layer, Layer):
            raise TypeError(f"parallel: argument {i} must be a Layer (e.g. Conv2D(16, 1) or serial(...)), "
                            f"got {_describe(layer)}")
    n = len(layers)

    def init(key: PRNGKey, input_shape: Sequence[int]) -> tuple[PyTree, PyTree, tuple[Shape, ...]]:
        shape = check_input_shape(input_shape, "parallel")
        keys = jax.random.split(key, n)
        params, states, shapes = [], [], []
        for i, layer in enumerate(layers):
            try:
                p, s, out = layer.init(keys[i], shape)
            except ValueError as e:
                raise ValueError(f"parallel: branch {i} of {n}: {e}") from e
            params.append(p)
            states.append(s)
            shapes.append(out)
        return tuple(params), tuple(states), tuple(shapes)

    def apply(
        params: PyTree, state: PyTree, x: Array, *, key: PRNGKey | None = None, train: bool
    ) -> tuple[tuple[Array, ...], PyTree]:
        _check_entries(params, n, "params", "parallel")
        _check_entries(state, n, "state", "parallel")
        keys = _split(key, n)
        ys, new_states = [], []
        for i, layer in enumerate(layers):
            y, s = layer.apply(params[i], state[i], x, key=keys[i], train=train)
            ys.append(y)
            new_states.append(s)
        return tuple(ys), tuple(new_states)

    return Branches(init, apply)


def _concat_shapes(shapes: Sequence[Sequence[int]], who: str) -> Shape:
    if len(shapes) < 1:
        raise ValueError(f"{who}: needs at least one input")
    first = tuple(shapes[0])
    for s in shapes[1:]:
        if len(s) != len(first) or tuple(s[:-1]) != first[:-1]:
            raise ValueError(f"{who}: every input must have the same shape except in the last (channel) axis, "
                             f"got shapes {[fmt(t) for t in shapes]}")
    return first[:-1] + (sum(int(s[-1]) for s in shapes),)


def _concatenate_init(key: PRNGKey, input_shapes: Sequence[Sequence[int]]) -> tuple[PyTree, PyTree, Shape]:
    del key
    return (), (), _concat_shapes([check_input_shape(s, "Concatenate") for s in input_shapes], "Concatenate")


def _concatenate_apply(
    params: PyTree, state: PyTree, xs: Sequence[Array], *, key: PRNGKey | None = None, train: bool
) -> tuple[Array, PyTree]:
    del params, key, train
    _concat_shapes([x.shape for x in xs], "Concatenate")
    return jnp.concatenate(list(xs), axis=-1), state


Concatenate: Join = Join(_concatenate_init, _concatenate_apply)
"""Join: concatenate the branches' outputs along the last (channel) axis, ``params = state = ()``.

Inputs ``(N, ..., C_i)`` must agree on every axis but the last; the output is ``(N, ..., sum C_i)``.
"""

Identity: Layer = _stateless("Identity", lambda x: x)
"""Layer returning its input unchanged (``params = state = ()``)."""


class ResidualParams(NamedTuple):
    """Parameters of a :func:`Residual` block.

    Attributes:
        body: the parameters of the wrapped layer ``f``.
        projection: ``()`` for an identity shortcut, else ``DenseParams`` (``(N, C)`` inputs) or
            ``ConvParams`` of a 1x1 convolution (images and sequences).
    """

    body: PyTree
    projection: PyTree


def _shortcut_strides(in_shape: Sequence[int], out_shape: Sequence[int], who: str) -> tuple[int, ...]:
    """Strides of the 1x1 projection (``SAME`` padding) mapping ``in`` spatial sizes onto ``out``."""
    strides = []
    for n_in, n_out in zip(in_shape[1:-1], out_shape[1:-1], strict=True):
        s = max(1, math.ceil(n_in / n_out))
        if math.ceil(n_in / s) != n_out:
            raise ValueError(
                f"{who}: cannot project the shortcut from input shape {fmt(in_shape)} to the body's output "
                f"shape {fmt(out_shape)} with a strided 1x1 convolution (spatial {n_in} -> {n_out}); "
                "use padding='SAME' in the body"
            )
        strides.append(s)
    return tuple(strides)


def _projection_kind(in_shape: Sequence[int], out_shape: Sequence[int], who: str) -> str:
    if len(in_shape) != len(out_shape) or (in_shape[0] != out_shape[0]):
        raise ValueError(f"{who}: the body must keep the rank and batch size of its input, mapped "
                         f"{fmt(in_shape)} to {fmt(out_shape)}")
    if tuple(in_shape) == tuple(out_shape):
        return "identity"
    if len(in_shape) == 2:
        return "dense"
    if len(in_shape) in (3, 4, 5):
        _shortcut_strides(in_shape, out_shape, who)
        return "conv"
    raise ValueError(f"{who}: cannot project a shortcut for inputs of rank {len(in_shape)} "
                     f"({fmt(in_shape)} -> {fmt(out_shape)}); expected (N, C), (N, W, C), (N, H, W, C) or "
                     "(N, D, H, W, C)")


def Residual(  # noqa: N802 (layer constructor)
    layer: Layer,
    *,
    projection_init: Initializer = glorot_uniform(),
) -> Layer:
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

    Returns:
        The layer.

    Raises:
        TypeError: ``layer`` is not a :class:`Layer`.
        ValueError: at ``init``, a body that changes the rank or batch size, or whose spatial output
            a strided 1x1 convolution cannot reach.
    """
    if not isinstance(layer, Layer):
        raise TypeError(f"Residual: argument 'layer' must be a Layer, got {_describe(layer)}")
    name = "Residual"

    def init(key: PRNGKey, input_shape: Sequence[int]) -> tuple[PyTree, PyTree, Shape]:
        shape = check_input_shape(input_shape, name, min_rank=2)
        k_body, k_proj = jax.random.split(key)
        body_params, body_state, out = layer.init(k_body, shape)
        kind = _projection_kind(shape, out, name)
        projection: PyTree
        if kind == "identity":
            projection = ()
        elif kind == "dense":
            projection = init_dense(k_proj, shape[-1], out[-1], w_init=projection_init, b_init=zeros())
        else:
            spatial = len(shape) - 2
            projection = _init_conv(k_proj, shape[-1], out[-1], (1,) * spatial, spatial=spatial,
                                    w_init=projection_init, b_init=zeros(), dtype=jnp.float32, who=name)
        return ResidualParams(body_params, projection), body_state, out

    def apply(
        params: PyTree, state: PyTree, x: Array, *, key: PRNGKey | None = None, train: bool
    ) -> tuple[Array, PyTree]:
        body_params, projection = params
        y, new_state = layer.apply(body_params, state, x, key=key, train=train)
        if isinstance(projection, DenseParams):
            shortcut = _apply_dense(projection, x, f"{name} projection")
        elif isinstance(projection, ConvParams):
            strides = _shortcut_strides(x.shape, y.shape, name)
            shortcut = _apply_conv(projection, x, spatial=x.ndim - 2, stride=strides, padding="SAME",
                                   dilation=1, who=f"{name} projection", batched_only=True)
        else:
            shortcut = x
        if shortcut.shape != y.shape:
            raise ValueError(f"{name}: the shortcut has shape {fmt(shortcut.shape)} but the body returned "
                             f"{fmt(y.shape)}; initialize the block for this input shape")
        return shortcut + y, new_state

    return Layer(init, apply)
