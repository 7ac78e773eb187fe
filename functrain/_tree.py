"""Typed helpers over ``jax.tree_util`` used throughout functrain.

This is the one place where the untyped (``Any``) pytree world of ``jax.tree_util`` is given
signatures; everything else calls these helpers.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeAlias, overload

import jax
import jax.numpy as jnp
import numpy as np

from functrain.typing import Array, PyTree

if TYPE_CHECKING:
    from typing_extensions import TypeIs

TreeDef: TypeAlias = Any
"""A ``jax.tree_util.PyTreeDef`` (its compiled type is opaque to mypy)."""

__all__ = [
    "TreeDef",
    "describe_difference",
    "is_array",
    "is_bool",
    "is_int",
    "is_iterable",
    "is_list",
    "is_mapping",
    "is_node_dict",
    "is_node_sequence",
    "is_real",
    "is_sequence",
    "is_tuple",
    "is_float_array",
    "is_kernel",
    "is_vector",
    "tree_global_norm",
    "tree_flatten",
    "tree_leaves",
    "tree_leaves_with_path",
    "tree_map",
    "tree_map_with_path",
    "tree_scale",
    "tree_structure",
    "tree_unflatten",
    "tree_where",
    "tree_zeros_like",
]


@overload
def tree_map(fn: Callable[[Array], Any], tree: PyTree, /, *,
             is_leaf: Callable[[Any], bool] | None = None) -> PyTree: ...
@overload
def tree_map(fn: Callable[[Array, Array], Any], tree: PyTree, rest1: PyTree, /, *,
             is_leaf: Callable[[Any], bool] | None = None) -> PyTree: ...
@overload
def tree_map(fn: Callable[[Array, Array, Array], Any], tree: PyTree, rest1: PyTree,
             rest2: PyTree, /, *, is_leaf: Callable[[Any], bool] | None = None) -> PyTree: ...
@overload
def tree_map(fn: Callable[[Array, Array, Array, Array], Any], tree: PyTree, rest1: PyTree,
             rest2: PyTree, rest3: PyTree, /, *,
             is_leaf: Callable[[Any], bool] | None = None) -> PyTree: ...
@overload
def tree_map(fn: Callable[..., Any], tree: PyTree, /, *rest: PyTree,
             is_leaf: Callable[[Any], bool] | None = None) -> PyTree: ...
def tree_map(fn: Callable[..., Any], tree: PyTree, /, *rest: PyTree,
             is_leaf: Callable[[Any], bool] | None = None) -> PyTree:
    """``jax.tree_util.tree_map`` with a typed signature.

    The overloads for one to four trees type each leaf as an :data:`Array`, so a ``lambda``
    passed here gets typed parameters; a function whose leaves are something else (masks of
    bools, ``None`` placeholders) is a ``def`` with its own annotations (the last overload).
    """
    return jax.tree_util.tree_map(fn, tree, *rest, is_leaf=is_leaf)


def tree_map_with_path(fn: Callable[[tuple[Any, ...], Any], Any], tree: PyTree) -> PyTree:
    """``jax.tree_util.tree_map_with_path``: ``fn(key_path, leaf)`` on each leaf."""
    # jax annotates ``f`` as a bare ``Callable`` (Unknown to pyright).
    return jax.tree_util.tree_map_with_path(fn, tree)  # pyright: ignore[reportUnknownMemberType]


def tree_leaves(tree: PyTree, is_leaf: Callable[[Any], bool] | None = None) -> list[Any]:
    """The leaves of ``tree`` in canonical order."""
    return jax.tree_util.tree_leaves(tree, is_leaf=is_leaf)


def tree_flatten(tree: PyTree, is_leaf: Callable[[Any], bool] | None = None,
                 ) -> tuple[list[Any], TreeDef]:
    """``(leaves, treedef)`` of ``tree``: ``jax.tree_util.tree_flatten`` with a typed signature."""
    return jax.tree_util.tree_flatten(tree, is_leaf=is_leaf)


def tree_leaves_with_path(tree: PyTree) -> list[tuple[str, Any]]:
    """``(path string, leaf)`` pairs, with paths such as ``['layers'][0].weight``."""
    # jax annotates key paths as ``tuple[KeyEntry, ...]`` with an unbound TypeVar (Unknown).
    return [(jax.tree_util.keystr(path), leaf)  # pyright: ignore[reportUnknownMemberType]
            for path, leaf in jax.tree_util.tree_leaves_with_path(  # pyright: ignore[reportUnknownMemberType, reportUnknownVariableType]
                tree)]


def tree_structure(tree: PyTree) -> TreeDef:
    """The tree definition of ``tree``."""
    return jax.tree_util.tree_structure(tree)


def tree_unflatten(treedef: TreeDef, leaves: Sequence[Any]) -> PyTree:
    """Rebuild a pytree from its definition and leaves."""
    return jax.tree_util.tree_unflatten(treedef, leaves)


def is_bool(value: object) -> TypeIs[bool | np.bool_[Any]]:
    """A Python or NumPy bool."""
    return isinstance(value, (bool, np.bool_))


def is_int(value: object) -> TypeIs[int | np.integer[Any]]:
    """A Python or NumPy integer (Python bools included: refuse them first with ``is_bool``)."""
    return isinstance(value, (int, np.integer))


def is_real(value: object) -> TypeIs[int | float | np.integer[Any] | np.floating[Any]]:
    """A Python or NumPy real number (Python bools included: refuse them first)."""
    return isinstance(value, (int, float, np.integer, np.floating))


def is_iterable(value: object) -> TypeIs[Iterable[object]]:
    """An iterable (narrows ``value`` for type checkers)."""
    return isinstance(value, Iterable)


def is_array(x: object) -> TypeIs[Array | np.ndarray[Any, Any]]:
    """Whether ``x`` is a JAX or NumPy array (narrows ``x`` for type checkers)."""
    return isinstance(x, (jax.Array, np.ndarray))


def is_node_sequence(x: object) -> TypeIs[tuple[Any, ...] | list[Any]]:
    """Whether ``x`` is a tuple (NamedTuples included) or a list."""
    return isinstance(x, (tuple, list))


def is_tuple(x: object) -> TypeIs[tuple[Any, ...]]:
    """Whether ``x`` is a tuple (NamedTuples included)."""
    return isinstance(x, tuple)


def is_sequence(x: object) -> TypeIs[Sequence[Any]]:
    """Whether ``x`` is a ``collections.abc.Sequence`` (strings included)."""
    return isinstance(x, Sequence)


def is_mapping(x: object) -> TypeIs[Mapping[Any, Any]]:
    """Whether ``x`` is a ``collections.abc.Mapping``."""
    return isinstance(x, Mapping)


def is_list(x: object) -> TypeIs[list[Any]]:
    """Whether ``x`` is a list."""
    return isinstance(x, list)


def is_node_dict(x: object) -> TypeIs[dict[Any, Any]]:
    """Whether ``x`` is a dict."""
    return isinstance(x, dict)


def is_float_array(x: Any) -> bool:
    """Whether ``x`` is a JAX/NumPy array with a floating dtype."""
    return is_array(x) and jnp.issubdtype(x.dtype, jnp.floating)


def _is_inexact_array(x: Any) -> bool:
    """A JAX/NumPy array with a floating or complex dtype (a trainable parameter)."""
    return is_array(x) and jnp.issubdtype(x.dtype, jnp.inexact)


def is_kernel(leaf: Any) -> bool:
    """The library's one "is this a weight" rule: a floating or complex array with ``ndim >= 2``.

    Dense kernels ``(in, out)`` and convolution kernels (HWIO) qualify, complex ones too (as
    optax's ``ndim``-based masks); biases, normalization scales/offsets (vectors) and scalars do
    not. Used by weight decay masks, gradient centralization, the L1/L2 penalties and
    :func:`functrain.initializers.reinitialize`.
    """
    return _is_inexact_array(leaf) and leaf.ndim >= 2


def is_vector(leaf: Any) -> bool:
    """A floating or complex array with ``ndim == 1`` (a bias, a normalization scale or offset)."""
    return _is_inexact_array(leaf) and leaf.ndim == 1


def describe_difference(expected: PyTree, got: PyTree) -> str | None:
    """Describe how two pytrees' structures differ, or ``None`` when they match."""
    s_exp, s_got = tree_structure(expected), tree_structure(got)
    if s_exp == s_got:
        return None
    p_exp = {p for p, _ in tree_leaves_with_path(expected)}
    p_got = {p for p, _ in tree_leaves_with_path(got)}
    missing, extra = sorted(p_exp - p_got), sorted(p_got - p_exp)
    parts: list[str] = []
    if missing:
        parts.append(f"missing leaves {missing[:5]}")
    if extra:
        parts.append(f"unexpected leaves {extra[:5]}")
    if not parts:
        parts.append(f"expected structure {s_exp}, got {s_got}")
    return "; ".join(parts)



def tree_zeros_like(tree: PyTree) -> PyTree:
    """A tree of zeros with the shapes and dtypes of ``tree``."""
    return tree_map(jnp.zeros_like, tree)




def tree_scale(tree: PyTree, factor: Array | float) -> PyTree:
    """Leafwise ``factor * x``, keeping each leaf's dtype."""
    return tree_map(lambda x: (factor * x).astype(x.dtype), tree)



def tree_global_norm(tree: PyTree) -> Array:
    """The L2 norm of all leaves taken together: sqrt(sum_i ||x_i||^2)."""
    leaves = tree_leaves(tree)
    if not leaves:
        return jnp.zeros((), jnp.float32)
    return jnp.sqrt(sum((jnp.sum(jnp.square(jnp.abs(x))) for x in leaves), jnp.zeros(())))


def tree_where(cond: Array | bool, on_true: PyTree, on_false: PyTree) -> PyTree:
    """Leafwise ``jnp.where(cond, on_true, on_false)`` with a scalar condition."""
    return tree_map(lambda t, f: jnp.where(cond, t, f), on_true, on_false)
