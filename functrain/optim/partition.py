"""Parameter groups: a transformation on some leaves, one per group, or none (frozen leaves).

* :func:`masked` -- ``inner`` on the leaves a mask selects; the others pass through unchanged.
* :func:`partition` -- one transformation per group label (per-layer learning rates, a smaller
  learning rate for a pretrained trunk, a no-decay group ...).
* :func:`freeze` -- zero updates for the frozen leaves (``inner`` on the others).
* :func:`label_by_path` -- labels (or a mask) from a rule over each leaf's path in the tree.

Each inner transformation is initialized on, and updates, only its own leaves: the other leaves
are replaced by :class:`MaskedNode` (a pytree node without leaves), so a frozen leaf or a leaf of
another group costs no optimizer state. Works for any pytree of parameters: dicts, the
``NamedTuple`` records of :mod:`functrain.layers` (paths such as ``(0, "w")``: layer 0, field
``w``) and ``equinox`` modules (``("layers", 1, "weight")``). Same semantics as optax's
``masked``, ``partition`` and ``selective_transform``.

Example:
    >>> params = {"trunk": {"w": jnp.ones((2, 2))}, "head": {"w": jnp.ones((2, 1))}}
    >>> tx = ft.optim.partition({"trunk": ft.optim.sgd(0.01), "head": ft.optim.sgd(0.1)},
    ...                         {"trunk": "trunk", "head": "head"})
    >>> grads = jax.tree_util.tree_map(jnp.ones_like, params)
    >>> u, state = tx.update(grads, tx.init(params), params)
    >>> round(float(u["trunk"]["w"][0, 0]), 4), round(float(u["head"]["w"][0, 0]), 4)
    (-0.01, -0.1)
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping
from typing import Any, Generic, NamedTuple, TypeVar, cast, overload

import jax.numpy as jnp
import numpy as np

from functrain import _tree, _validate
from functrain._tree import tree_leaves, tree_map
from functrain.optim._extra_args import forward_extra_args
from functrain.optim.base import EmptyState, GradientTransformation, TransformationLike, identity
from functrain.optim.weight_decay import _is_mask_function  # pyright: ignore[reportPrivateUsage]  # shared inside functrain.optim
from functrain.typing import PyTree

__all__ = [
    "MaskedNode",
    "MaskedState",
    "PartitionState",
    "freeze",
    "label_by_path",
    "masked",
    "partition",
]

S = TypeVar("S")

_FIT = "a pytree with the structure of the params (or a prefix of it)"


class MaskedNode(NamedTuple):
    """Stands in for the leaves a transformation does not see (a pytree node without leaves).

    Example:
        >>> tx = ft.optim.masked(ft.optim.trace(0.9), {"w": True, "b": False})
        >>> state = tx.init({"w": jnp.ones(2), "b": jnp.ones(3)})
        >>> state.inner_state.trace["b"], jax.tree_util.tree_leaves(ft.optim.MaskedNode())
        (MaskedNode(), [])
    """


def _flag(who: str, name: str, leaf: object) -> bool:
    """A mask leaf as a Python bool: bools and concrete boolean scalars only."""
    if _tree.is_bool(leaf):
        return bool(leaf)
    if (_tree.is_array(leaf) and leaf.dtype == np.bool_ and leaf.ndim == 0
            and not _validate.is_traced(leaf)):
        return bool(leaf)
    _validate.fail(who, name, "a pytree of Python bools (static: the mask chooses which leaves "
                   "have optimizer state)", leaf, error=TypeError)


def _resolve(who: str, name: str, mask: PyTree, tree: PyTree) -> PyTree:
    """The mask for ``tree`` (calling a mask function), its leaves as Python bools."""
    mask_tree = mask(tree) if _is_mask_function(mask) else mask
    return tree_map(lambda m: _flag(who, name, m), mask_tree)


def _hide(who: str, name: str, tree: PyTree, mask_tree: PyTree) -> PyTree:
    """``tree`` with the subtrees where the mask is False replaced by :class:`MaskedNode`."""
    try:
        def hide(m: bool, x: PyTree) -> PyTree:  # m: a mask leaf; x: a subtree
            return x if m else MaskedNode()

        return tree_map(hide, mask_tree, tree)
    except ValueError as err:
        _validate.fail(who, name, _FIT, mask_tree, error=TypeError, detail=str(err))


def _merge(mask_tree: PyTree, new: PyTree, old: PyTree) -> PyTree:
    """``new`` where the mask is True, ``old`` elsewhere."""
    def pick(m: bool, a: PyTree, b: PyTree) -> PyTree:  # m: a mask leaf; a, b: subtrees
        return a if m else b

    return tree_map(pick, mask_tree, new, old)


class MaskedState(NamedTuple, Generic[S]):
    """State of :func:`masked` and :func:`freeze`.

    Attributes:
        inner_state: the inner transformation's state, built on the selected leaves only (the
            others are :class:`MaskedNode`).

    Example:
        >>> tx = ft.optim.masked(ft.optim.adam(0.1), {"w": True, "b": False})
        >>> state = tx.init({"w": jnp.ones(2), "b": jnp.ones(3)})
        >>> [leaf.shape for leaf in jax.tree_util.tree_leaves(state.inner_state[0].mu)]
        [(2,)]
    """

    inner_state: S


def _masked(who: str, name: str, inner: TransformationLike, mask: PyTree
            ) -> GradientTransformation[MaskedState[Any]]:
    if not _is_mask_function(mask):
        _resolve(who, name, mask, None)  # a mask tree is checked now, a function at init
    inner_update = forward_extra_args(inner.update)

    def init(params: PyTree) -> MaskedState[Any]:
        mask_tree = _resolve(who, name, mask, params)
        return MaskedState(inner.init(_hide(who, name, params, mask_tree)))

    def update(
        updates: PyTree, state: MaskedState[Any], params: PyTree | None = None, **extra_args: Any
    ) -> tuple[PyTree, MaskedState[Any]]:
        mask_tree = _resolve(who, name, mask, updates)
        hidden_params = None if params is None else _hide(who, name, params, mask_tree)
        new, inner_state = inner_update(_hide(who, name, updates, mask_tree), state.inner_state,
                                        hidden_params, **extra_args)
        return _merge(mask_tree, new, updates), MaskedState(inner_state)

    return GradientTransformation(init, update)


@overload
def masked(inner: GradientTransformation[S], mask: PyTree
           ) -> GradientTransformation[MaskedState[S]]: ...
@overload
def masked(inner: TransformationLike, mask: PyTree
           ) -> GradientTransformation[MaskedState[Any]]: ...
def masked(inner: TransformationLike, mask: PyTree) -> GradientTransformation[MaskedState[Any]]:
    """Apply ``inner`` to the leaves where ``mask`` is True; pass the others through unchanged.

    ``inner`` is initialized on, and sees, only the selected leaves (the others are
    :class:`MaskedNode`), so it holds no state for the rest. A mask leaf may stand for a whole
    subtree (``{"encoder": False, "decoder": True}``). Same as ``optax.masked``.

    Args:
        inner: the transformation to apply to the selected leaves (functrain's or optax's).
        mask: a pytree of Python bools with the structure of the params (or a prefix of it), or a
            function of the params (or updates) returning one, e.g.
            :func:`~functrain.optim.default_decay_mask` or :func:`label_by_path`'s result.

    Returns:
        A :class:`~functrain.optim.GradientTransformation` with :class:`MaskedState`.

    Raises:
        TypeError: ``inner`` is not a gradient transformation; a mask leaf that is not a bool (at
            construction, or at init for a mask function), or a mask that does not fit the params.

    Example:
        >>> tx = ft.optim.masked(ft.optim.sgd(0.1), {"w": True, "b": False})
        >>> params = {"w": jnp.ones(2), "b": jnp.ones(2)}
        >>> u, _ = tx.update({"w": jnp.ones(2), "b": jnp.full(2, 5.0)}, tx.init(params), params)
        >>> round(float(u["w"][0]), 4), u["b"].tolist()  # "b" passes through untransformed
        (-0.1, [5.0, 5.0])
    """
    _validate.check_transformation(inner, "masked", "inner")
    return _masked("masked", "mask", inner, mask)


@overload
def freeze(mask: PyTree) -> GradientTransformation[MaskedState[EmptyState]]: ...
@overload
def freeze(mask: PyTree, inner: GradientTransformation[S]
           ) -> GradientTransformation[MaskedState[S]]: ...
@overload
def freeze(mask: PyTree, inner: TransformationLike
           ) -> GradientTransformation[MaskedState[Any]]: ...
def freeze(mask: PyTree, inner: TransformationLike | None = None
           ) -> GradientTransformation[MaskedState[Any]]:
    """Zero updates for the frozen leaves (``mask`` True); ``inner`` trains the others.

    The frozen leaves' updates are zeros, so :func:`~functrain.optim.apply_updates` leaves them
    unchanged, and ``inner`` holds no state for them (it is initialized on the trainable leaves
    only). ``freeze(mask)`` alone passes the trainable leaves' updates through: chain it *after*
    an optimizer, or give the optimizer as ``inner`` so that frozen leaves also cost no optimizer
    state. Same as ``optax.selective_transform(inner, freeze_mask=mask)`` (``optax.freeze`` without
    ``inner``).

    Args:
        mask: which leaves to freeze: a pytree of Python bools with the structure of the params
            (or a prefix of it: ``True`` freezes a whole subtree), or a function of the params
            returning one.
        inner: the transformation for the trainable leaves (default: the identity).

    Returns:
        A :class:`~functrain.optim.GradientTransformation` with :class:`MaskedState` (the inner
        state, on the trainable leaves).

    Raises:
        TypeError: ``inner`` is not a gradient transformation; a mask leaf that is not a bool, or
            a mask that does not fit the params.

    Example:
        >>> params = {"trunk": jnp.ones(2), "head": jnp.ones(2)}
        >>> tx = ft.optim.freeze({"trunk": True, "head": False}, ft.optim.adam(0.1))
        >>> state = tx.init(params)
        >>> u, state = tx.update(jax.tree_util.tree_map(jnp.ones_like, params), state, params)
        >>> u["trunk"].tolist(), round(float(u["head"][0]), 4), state.inner_state[0].mu["trunk"]
        ([0.0, 0.0], -0.1, MaskedNode())
    """
    if inner is None:
        inner = identity()
    _validate.check_transformation(inner, "freeze", "inner")
    if not _is_mask_function(mask):
        _resolve("freeze", "mask", mask, None)

    def trainable(tree: PyTree) -> PyTree:
        return tree_map(lambda m: not m, _resolve("freeze", "mask", mask, tree))

    train = _masked("freeze", "mask", inner, trainable)

    def update(
        updates: PyTree, state: MaskedState[Any], params: PyTree | None = None, **extra_args: Any
    ) -> tuple[PyTree, MaskedState[Any]]:
        new, state = train.update(updates, state, params, **extra_args)
        frozen = _resolve("freeze", "mask", mask, updates)
        return _merge(frozen, tree_map(jnp.zeros_like, updates), new), state

    return GradientTransformation(train.init, update)


class PartitionState(NamedTuple):
    """State of :func:`partition`.

    Attributes:
        inner_states: ``{label: MaskedState}``, each group's state on its own leaves.

    Example:
        >>> tx = ft.optim.partition({"a": ft.optim.sgd(0.1), "b": ft.optim.adam(0.1)},
        ...                         {"x": "a", "y": "b"})
        >>> state = tx.init({"x": jnp.ones(2), "y": jnp.ones(2)})
        >>> sorted(state.inner_states), type(state.inner_states["b"]).__name__
        (['a', 'b'], 'MaskedState')
    """

    inner_states: dict[Hashable, MaskedState[Any]]


def partition(
    transforms: Mapping[Hashable, TransformationLike], labels: PyTree
) -> GradientTransformation[PartitionState]:
    """One transformation per parameter group: each leaf is updated by its group's transformation.

    ``labels`` gives each leaf (or subtree) a group label; the leaves labelled ``k`` are updated by
    ``transforms[k]`` exactly as if it were applied to them alone (its state is built on them
    only). Per-group learning rates, a frozen group (:func:`freeze` with mask ``True``), a
    no-decay group ... are one entry each. Same as ``optax.partition`` (``multi_transform``).

    Args:
        transforms: ``{label: transformation}`` (functrain's or optax's). Labels must be hashable
            and mutually comparable (e.g. all strings): the state is a dict keyed by them.
        labels: a pytree of labels with the structure of the params (or a prefix of it), or a
            function of the params (or updates) returning one, e.g. from :func:`label_by_path`.

    Returns:
        A :class:`~functrain.optim.GradientTransformation` with :class:`PartitionState`.

    Raises:
        TypeError: ``transforms`` is not a non-empty mapping of transformations; ``labels`` does
            not fit the params.
        ValueError: a label (at init for a label function) that is not a key of ``transforms``.

    Example:
        >>> params = (ft.layers.DenseParams(jnp.ones((2, 2)), jnp.zeros(2)),
        ...           ft.layers.DenseParams(jnp.ones((2, 1)), jnp.zeros(1)))
        >>> by_layer = ft.optim.label_by_path(lambda path, _: "head" if path[0] == 1 else "trunk")
        >>> tx = ft.optim.partition({"trunk": ft.optim.sgd(0.001), "head": ft.optim.sgd(0.1)},
        ...                         by_layer)
        >>> u, state = tx.update(jax.tree_util.tree_map(jnp.ones_like, params), tx.init(params),
        ...                      params)
        >>> round(float(u[0].w[0, 0]), 4), round(float(u[1].w[0, 0]), 4)
        (-0.001, -0.1)
    """
    fn = "partition"
    if not isinstance(cast(object, transforms), Mapping) or not transforms:
        _validate.fail(fn, "transforms", "a non-empty mapping {label: transformation}",
                       transforms, error=TypeError)
    for key, tx in transforms.items():
        _validate.check_transformation(tx, fn, f"transforms[{key!r}]")
    groups = dict(transforms)
    listed = ", ".join(sorted(map(repr, groups)))
    expectation = f"a pytree of labels among {listed} (the keys of transforms)"

    def label_tree(tree: PyTree) -> PyTree:
        tree_labels = labels(tree) if _is_mask_function(labels) else labels
        for leaf in tree_leaves(tree_labels):
            if not isinstance(leaf, Hashable) or leaf not in groups:
                _validate.fail(fn, "labels", expectation, leaf)
        return tree_labels

    if not _is_mask_function(labels):
        label_tree(None)

    def group_mask(group: Hashable) -> Callable[[PyTree], PyTree]:
        return lambda tree: tree_map(lambda label: bool(label == group), label_tree(tree))

    parts = {group: _masked(fn, "labels", tx, group_mask(group)) for group, tx in groups.items()}

    def init(params: PyTree) -> PartitionState:
        return PartitionState({group: part.init(params) for group, part in parts.items()})

    def update(
        updates: PyTree, state: PartitionState, params: PyTree | None = None, **extra_args: Any
    ) -> tuple[PyTree, PartitionState]:
        new_states: dict[Hashable, MaskedState[Any]] = {}
        for group, part in parts.items():  # each leaf is transformed by its own group only
            updates, new_states[group] = part.update(updates, state.inner_states[group], params,
                                                     **extra_args)
        return updates, PartitionState(new_states)

    return GradientTransformation(init, update)


def label_by_path(rule: Callable[[tuple[Any, ...], Any], Any]) -> Callable[[PyTree], PyTree]:
    """A label (or mask) function from a rule over each leaf's path in the parameter tree.

    The path of a leaf is a tuple of plain keys: dict keys, attribute or ``NamedTuple`` field names
    (strings) and sequence indices (ints). A functrain ``serial`` model's dense kernel of layer 2
    is at ``(2, "w")``; an ``equinox`` MLP's first weight at ``("layers", 0, "weight")``.

    Args:
        rule: ``rule(path, leaf) -> label`` (a bool for a mask).

    Returns:
        ``labels(params) -> pytree of labels``, for :func:`partition`, :func:`masked` or
        :func:`freeze` (or to call on the params to see the labels).

    Raises:
        TypeError: ``rule`` is not callable.

    Example:
        >>> params = {"encoder": {"w": jnp.ones((2, 2)), "b": jnp.zeros(2)}, "head": jnp.ones(2)}
        >>> biases = ft.optim.label_by_path(lambda path, leaf: path[-1] == "b")
        >>> biases(params)
        {'encoder': {'b': True, 'w': False}, 'head': False}
    """
    _validate.check_callable(rule, "label_by_path", "rule", "a function (path, leaf) -> label")

    def plain(key: Any) -> Any:
        for attr in ("key", "name", "idx"):  # DictKey / FlattenedIndexKey, GetAttrKey, SequenceKey
            if hasattr(key, attr):
                return getattr(key, attr)
        return str(key)

    def labels(params: PyTree) -> PyTree:
        return _tree.tree_map_with_path(
            lambda path, leaf: rule(tuple(plain(k) for k in path), leaf), params)

    return labels
