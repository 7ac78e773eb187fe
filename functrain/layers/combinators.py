"""Combinators: build models from layers in a few lines.

* :func:`serial` chains layers; its ``params`` and ``state`` are tuples with one entry per layer, and
  model state (batch-norm statistics) threads through: each layer gets its own state in and returns
  its new state. The key given to ``apply`` is split into one key per layer.
* :func:`parallel` feeds one input to several branches and returns the tuple of their outputs;
  :data:`Concatenate` joins such a tuple along the channel (last) axis. Inception-style blocks are
  ``serial(parallel(branch_1, branch_2, ...), Concatenate)``; inside :func:`serial` a
  ``parallel(...)`` must be followed directly by a join.
* (:func:`~functrain.layers.Residual`, the skip connection, is in :mod:`functrain.layers.residual`.)
* :data:`Identity` passes its input through.

A layer's error ends with its position (``...; at serial layer 2 of 5``); when ``params``/``state``
lack the structure ``init`` gives (e.g. swapped), a ``TypeError`` names the entry and the expected
structure instead (diagnosed only after a failure: correct models pay nothing).

Example (a small convolutional network, and an Inception-style block with a pass-through branch):

>>> model = ft.layers.serial(ft.layers.Conv2D(4, 3), ft.layers.Relu, ft.layers.MaxPool(2),
...                          ft.layers.Flatten, ft.layers.Dropout(0.5), ft.layers.Dense(10))
>>> params, state, out_shape = model.init(jax.random.key(0), (-1, 8, 8, 1))
>>> logits, state = model.apply(params, state, jnp.ones((2, 8, 8, 1)), key=jax.random.key(1),
...                             train=True)
>>> out_shape, logits.shape
((-1, 10), (2, 10))
>>> block = ft.layers.serial(ft.layers.parallel(ft.layers.Conv2D(4, 1), ft.layers.Identity),
...                          ft.layers.Concatenate)
>>> block.init(jax.random.key(0), (-1, 8, 8, 3))[2]
(-1, 8, 8, 7)
"""

from __future__ import annotations

import contextlib
from collections.abc import Generator, Sequence
from typing import Any, cast

import jax
import jax.numpy as jnp

from functrain import _tree, _validate
from functrain.layers._geometry import check_input_shape
from functrain.layers._diagnose import MISMATCH, diagnose, shape_of
from functrain.layers.base import Branches, Join, Layer, stateless
from functrain.typing import Array, PRNGKey, PyTree, Shape

__all__ = [
    "Concatenate",
    "Identity",
    "parallel",
    "serial",
]


def _not_a_layer(who: str, name: str, expectation: str, obj: object) -> None:
    """``TypeError`` in the one style, with a hint when ``obj`` is an uncalled constructor."""
    hint = ""
    if callable(obj) and hasattr(obj, "__name__") and not isinstance(obj, type):
        hint = f"did you forget to call it, e.g. {obj.__name__}(...)?"
    _validate.fail(who, name, expectation, obj, error=TypeError, detail=hint)


@contextlib.contextmanager
def _at(where: str) -> Generator[None, None, None]:
    """Append ``; at <where>`` (a position in a model) to a ``ValueError``/``TypeError`` raised inside."""
    try:
        yield
    except (ValueError, TypeError) as e:
        if type(e) not in (ValueError, TypeError):  # keep jax's own subclasses as they are
            raise
        err = type(e)(f"{e}; at {where}")
        if getattr(e, MISMATCH, False):
            setattr(err, MISMATCH, True)
        raise err from e


def _split(key: PRNGKey | None, n: int) -> list[PRNGKey | None]:
    if key is None or n == 0:
        return [None] * n
    keys = jax.random.split(key, n)
    return [keys[i] for i in range(n)]


def _check_entries(tree: PyTree, n: int, name: str, who: str) -> None:
    expectation = f"a tuple with one entry per layer ({n})"
    if not _tree.is_node_sequence(tree):
        _validate.fail(who, name, expectation, tree, error=TypeError)
    if len(tree) != n:
        _validate.fail(who, name, expectation, tree, detail=f"it has {len(tree)} entries")


def _stages(layers: Sequence[object]) -> list[tuple[int, Layer | Branches, Join | None]]:
    """Check ``serial``'s arguments; ``(position, layer, None)`` per layer and
    ``(position, branches, join)`` per fan-out/fan-in pair."""
    stages: list[tuple[int, Layer | Branches, Join | None]] = []
    for i, layer in enumerate(layers):
        nxt = layers[i + 1] if i + 1 < len(layers) else None
        if isinstance(layer, Layer):  # pyright narrows to Layer[Unknown, Unknown], mypy to Layer[Any, Any]
            stages.append((i, cast(Layer, layer), None))  # type: ignore[redundant-cast]  # for pyright
        elif isinstance(layer, Branches):
            if not isinstance(nxt, Join):
                _validate.fail("serial", f"layers[{i}]", "followed directly by a join such as Concatenate, "
                               "since parallel(...) returns a tuple of outputs", layer)
            stages.append((i, layer, nxt))
        elif not isinstance(layer, Join):
            _not_a_layer("serial", f"layers[{i}]", "a Layer (e.g. Dense(10)), parallel(...) or a join "
                         "such as Concatenate", layer)
        elif i == 0 or not isinstance(layers[i - 1], Branches):
            _validate.fail("serial", f"layers[{i}]", "directly after parallel(...), since a join "
                           "combines a tuple of inputs", layer)
    return stages


def serial(*layers: Layer | Branches | Join) -> Layer[tuple[Any, ...], tuple[Any, ...]]:
    """Compose layers in sequence: ``y = f_n(... f_2(f_1(x)))``.

    ``init`` returns ``params`` and ``state`` as tuples with one entry per layer (``()`` for layers
    without parameters or state) and the final output shape; ``apply`` threads each layer's state
    through and returns the tuple of new states, so batch-norm statistics update in one call. When
    ``key`` is given it is split into one key per layer (``jax.random.split(key, n)``); with
    ``key=None`` every layer gets ``None`` (fine for ``train=False``; a dropout layer raises in
    training). A ``parallel(...)`` (a :class:`Branches`) must be followed directly by a
    :class:`Join` such as :data:`Concatenate`. An error raised by a layer ends with its position,
    e.g. ``...; at serial layer 2 of 5``; when the cause is a ``params``/``state`` entry without
    the structure ``init`` gives (e.g. the two swapped), a ``TypeError`` names that entry instead:
    ``serial: argument 'params[0]' must be the parameters of layer 0 of 4, DenseParams(w=f32[4,16],
    b=f32[16]), got (); params and state look swapped ...``.

    Args:
        *layers: the layers, first applied first.

    Returns:
        The composite layer, a ``Layer[tuple[Any, ...], tuple[Any, ...]]``: its params and
        state are tuples with one entry per argument (the entries' types are not tracked).

    Raises:
        TypeError: an argument is not a ``Layer``, ``Branches`` or ``Join`` (e.g. an uncalled
            constructor such as ``LeakyRelu``); at ``apply``, when a layer fails on a
            ``params``/``state`` entry without the structure ``init`` gives.
        ValueError: a ``parallel(...)`` not followed by a join, or a join without one before it.

    Example:
        >>> mlp = ft.layers.serial(ft.layers.Dense(16), ft.layers.BatchNorm(), ft.layers.Relu,
        ...                        ft.layers.Dense(3))
        >>> params, state, out_shape = mlp.init(jax.random.key(0), (-1, 4))
        >>> out_shape, len(params), params[2]
        ((-1, 3), 4, ())
        >>> y, state = mlp.apply(params, state, jnp.ones((8, 4)), train=True)  # new BN statistics
        >>> y.shape, state[1].mean.shape
        ((8, 3), (16,))
    """
    stages = _stages(layers)
    n = len(layers)

    def init(key: PRNGKey, input_shape: Sequence[int]) -> tuple[PyTree, PyTree, Shape]:
        shape = check_input_shape(input_shape, "serial")
        keys = list(jax.random.split(key, n)) if n else []
        params: list[PyTree] = []
        states: list[PyTree] = []
        for i, layer, join in stages:
            with _at(f"serial layer {i} of {n}"):
                if isinstance(layer, Layer):
                    p, s, shape = layer.init(keys[i], shape)
                    params, states = params + [p], states + [s]
                    continue
                assert join is not None  # a parallel(...) is always followed by its join
                pb, sb, shapes = layer.init(keys[i], shape)
                pj, sj, shape = join.init(keys[i + 1], shapes)
                params, states = params + [pb, pj], states + [sb, sj]
        return tuple(params), tuple(states), shape

    def apply(params: PyTree, state: PyTree, x: Array, *, key: PRNGKey | None = None,
              train: bool) -> tuple[Array, PyTree]:
        _check_entries(params, n, "params", "serial")
        _check_entries(state, n, "state", "serial")
        keys = _split(key, n)
        shape = shape_of(x)
        try:
            return _serial_apply(stages, n, params, state, x, keys, train)
        except Exception as e:
            diagnose("serial", init, shape, params, state,
                      [(f"[{i}]", "params state", f"layer {i} of {n}") for i in range(n)], e)
            raise


    return Layer(init, apply)


def _serial_apply(stages: list[tuple[int, Layer | Branches, Join | None]], n: int, params: PyTree,
                  state: PyTree, x: Array, keys: list[PRNGKey | None],
                  train: bool) -> tuple[Array, PyTree]:
    """The loop of :func:`serial`'s ``apply`` (its checks and error diagnosis are around it)."""
    new_states: list[PyTree] = []
    for i, layer, join in stages:
        with _at(f"serial layer {i} of {n}"):
            if isinstance(layer, Layer):
                x, s = layer.apply(params[i], state[i], x, key=keys[i], train=train)
                new_states.append(s)
                continue
            assert join is not None  # a parallel(...) is always followed by its join
            xs, sb = layer.apply(params[i], state[i], x, key=keys[i], train=train)
            x, sj = join.apply(params[i + 1], state[i + 1], xs, key=keys[i + 1], train=train)
            new_states += [sb, sj]
    return x, tuple(new_states)


def parallel(*layers: Layer) -> Branches:
    """Fan out: apply every layer to the same input, returning the tuple of outputs.

    ``params`` and ``state`` are tuples with one entry per branch; the key is split per branch.
    Follow it with a join, e.g. ``serial(parallel(b1, b2, b3), Concatenate)`` (an Inception block).

    Args:
        *layers: the branches (at least one); each may itself be a ``serial(...)``.

    Returns:
        A :class:`Branches`.

    Raises:
        TypeError: an argument is not a :class:`Layer`; at ``apply``, when a branch fails on a
            ``params``/``state`` entry without the structure ``init`` gives.
        ValueError: no branches.

    Example:
        >>> block = ft.layers.serial(
        ...     ft.layers.parallel(ft.layers.Conv2D(2, 1),
        ...                        ft.layers.serial(ft.layers.Conv2D(2, 1), ft.layers.Conv2D(4, 3)),
        ...                        ft.layers.MaxPool(3, stride=1, padding="SAME")),
        ...     ft.layers.Concatenate)
        >>> block.init(jax.random.key(0), (-1, 6, 6, 5))[2]  # 2 + 4 + 5 channels
        (-1, 6, 6, 11)
    """
    if not layers:
        _validate.fail("parallel", "layers", "at least one branch (a Layer)", layers)
    for i, layer in enumerate(layers):
        if not isinstance(cast(object, layer), Layer):  # the static type is not enforced
            _not_a_layer("parallel", f"layers[{i}]", "a Layer (e.g. Conv2D(16, 1) or serial(...))", layer)
    n = len(layers)

    def init(key: PRNGKey, input_shape: Sequence[int]) -> tuple[PyTree, PyTree, tuple[Shape, ...]]:
        shape = check_input_shape(input_shape, "parallel")
        keys = jax.random.split(key, n)
        params: list[PyTree] = []
        states: list[PyTree] = []
        shapes: list[Shape] = []
        for i, layer in enumerate(layers):
            with _at(f"parallel branch {i} of {n}"):
                p, s, out = layer.init(keys[i], shape)
            params.append(p)
            states.append(s)
            shapes.append(out)
        return tuple(params), tuple(states), tuple(shapes)

    def apply(params: PyTree, state: PyTree, x: Array, *, key: PRNGKey | None = None,
              train: bool) -> tuple[tuple[Array, ...], PyTree]:
        _check_entries(params, n, "params", "parallel")
        _check_entries(state, n, "state", "parallel")
        keys = _split(key, n)
        ys: list[Array] = []
        new_states: list[PyTree] = []
        shape = shape_of(x)
        try:
            for i, layer in enumerate(layers):
                with _at(f"parallel branch {i} of {n}"):
                    y, s = layer.apply(params[i], state[i], x, key=keys[i], train=train)
                ys.append(y)
                new_states.append(s)
        except Exception as e:
            diagnose("parallel", init, shape, params, state,
                      [(f"[{i}]", "params state", f"branch {i} of {n}") for i in range(n)], e)
            raise
        return tuple(ys), tuple(new_states)

    return Branches(init, apply)


def _concat_shapes(shapes: Sequence[Sequence[int]], name: str) -> Shape:
    who = "Concatenate"
    if len(shapes) < 1:
        _validate.fail(who, name, "at least one input", shapes)
    first = tuple(shapes[0])
    for s in shapes[1:]:
        if len(s) != len(first) or tuple(s[:-1]) != first[:-1]:
            _validate.fail(who, name, "shapes that agree on every axis but the last (channel) axis",
                           [tuple(int(d) for d in t) for t in shapes])
    return first[:-1] + (sum(int(s[-1]) for s in shapes),)


def _concatenate_init(key: PRNGKey, input_shapes: Sequence[Sequence[int]]) -> tuple[PyTree, PyTree, Shape]:
    del key
    shapes = [check_input_shape(s, "Concatenate") for s in input_shapes]
    return (), (), _concat_shapes(shapes, "input_shapes")


def _concatenate_apply(
    params: PyTree, state: PyTree, xs: Sequence[Array], *, key: PRNGKey | None = None, train: bool
) -> tuple[Array, PyTree]:
    del params, key, train
    if not all(hasattr(x, "shape") for x in xs):
        _validate.fail("Concatenate", "xs", "a sequence of arrays", xs, error=TypeError)
    _concat_shapes([x.shape for x in xs], "xs")
    return jnp.concatenate(list(xs), axis=-1), state


Concatenate: Join = Join(_concatenate_init, _concatenate_apply)
"""Join: concatenate the branches' outputs along the last (channel) axis, ``params = state = ()``.

Inputs ``(N, ..., C_i)`` must agree on every axis but the last; the output is ``(N, ..., sum C_i)``.
"""

Identity: Layer[tuple[()], tuple[()]] = stateless("Identity", lambda x: x)
"""Layer returning its input unchanged (``params = state = ()``)."""
