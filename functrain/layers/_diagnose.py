"""Diagnosis of a model's parameter and state trees after one of its layers failed.

Used by the combinators (:func:`~functrain.layers.serial`, :func:`~functrain.layers.parallel`,
:func:`~functrain.layers.Residual`): when a sub-layer raises, the trees the combinator was given
are compared with the structure its ``init`` gives (``jax.eval_shape``: abstract, nothing is
computed), and a mismatch (swapped ``params``/``state``, an entry of another layer) becomes a
``TypeError`` in the one message style naming the entry, the layer and the expected structure.
It runs on the error path only, so a correct model pays nothing, traced or not.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp

from functrain import _jax, _tree
from functrain.typing import PRNGKey, PyTree, Shape

MISMATCH = "_functrain_tree_mismatch"
"""Attribute set on a diagnosed error, so outer combinators keep it as it is."""

_MISSING = object()


def _structure(tree: PyTree) -> str:
    """A short text of a tree's structure and leaf shapes, e.g. ``DenseParams(w=f32[4,3], b=f32[3])``."""
    def text(x: object) -> str:
        if hasattr(x, "shape") and hasattr(x, "dtype"):
            shape: tuple[int, ...] = getattr(x, "shape")
            name = jnp.dtype(getattr(x, "dtype")).name
            for long, short in (("bfloat", "bf"), ("float", "f"), ("uint", "u"), ("int", "i"),
                                ("complex", "c")):
                name = name.replace(long, short)
            return f"{name}{list(shape)}".replace(" ", "")
        fields: tuple[str, ...] | None = getattr(x, "_fields", None) if issubclass(
            type(x), tuple) else None
        if fields is not None:
            return f"{type(x).__name__}(" + ", ".join(
                f"{f}={text(getattr(x, f))}" for f in fields) + ")"
        if _tree.is_node_sequence(x):
            inner = ", ".join(text(v) for v in x)
            return f"({inner},)" if isinstance(x, tuple) and len(x) == 1 else (
                f"({inner})" if isinstance(x, tuple) else f"[{inner}]")
        if _tree.is_node_dict(x):
            return "{" + ", ".join(f"{k!r}: {text(v)}" for k, v in x.items()) + "}"
        return type(x).__name__
    out = text(tree)
    return out if len(out) <= 100 else out[:97] + "..."


def _fits(got: object, expected: object) -> bool:
    """Whether ``got`` has ``expected``'s tree structure (not its shapes: the layers check those).
    Lenient on containers: a list for a tuple and a plain tuple for a NamedTuple are accepted, but
    not another NamedTuple (``BatchNormState`` where ``BatchNormParams`` belong)."""
    def named(x: object) -> bool:
        return issubclass(type(x), tuple) and hasattr(x, "_fields")

    if hasattr(expected, "shape") and hasattr(expected, "dtype"):
        return hasattr(got, "shape")  # not the shapes: init's depend on x, which may be the culprit
    if named(got) and named(expected) and type(got) is not type(expected):
        return False
    if _tree.is_node_sequence(expected) or expected is None:
        items: tuple[Any, ...] = () if expected is None else tuple(expected)
        if got is None:
            got = ()
        return (_tree.is_node_sequence(got) and len(got) == len(items)
                and all(_fits(a, b) for a, b in zip(got, items, strict=True)))
    if _tree.is_node_dict(expected):
        return (_tree.is_node_dict(got) and set(got) == set(expected)
                and all(_fits(got[k], expected[k]) for k in expected))
    return bool(_tree.tree_structure(got) == _tree.tree_structure(expected))


InitLike = Callable[[PRNGKey, Sequence[int]], tuple[PyTree, PyTree, Any]]


def diagnose(who: str, init: InitLike, shape: Shape, params: PyTree, state: PyTree,
             entries: Sequence[tuple[str, str, str]], error: Exception) -> None:
    """After a sub-layer failed: raise a clear ``TypeError`` if ``params``/``state`` do not fit
    ``init``'s structure for inputs of ``shape`` (else return, and the caller re-raises ``error``).

    ``entries`` are ``(path, parts, what)``: ``path`` selects a sub-tree of both ``params`` and
    ``state`` (``"[2]"``, ``".body"``, ``""``), ``parts`` names the arguments to compare there
    (``"params state"``, ``"params"``, ``"state"``), ``what`` says whose it is (``"layer 2 of 5"``).
    Runs ``init`` abstractly (``jax.eval_shape``), only on this error path.
    """
    if getattr(error, MISMATCH, False):
        return
    try:
        expected_params, expected_state, _ = _jax.eval_shape(lambda: init(jax.random.key(0), shape))
    except Exception:  # noqa: BLE001 (no reference structure: keep the original error)
        return
    swapped = _fits(params, expected_state) and _fits(state, expected_params)
    hint = ("; params and state look swapped: apply(params, state, x, ...) takes the parameters "
            "first" if swapped else "")
    for path, parts, what in entries:
        for part, got_tree, expected_tree in (("params", params, expected_params),
                                              ("state", state, expected_state)):
            if part not in parts:
                continue
            got, want = _select(got_tree, path), _select(expected_tree, path)
            if got is _MISSING or not _fits(got, want):
                noun = "parameters" if part == "params" else "state"
                err = TypeError(f"{who}: argument '{part}{path}' must be the {noun} of {what}, "
                                f"{_structure(want)}, got "
                                f"{'nothing' if got is _MISSING else _structure(got)}{hint}")
                setattr(err, MISMATCH, True)
                raise err from error


def shape_of(x: object) -> Shape:
    """``x.shape`` as a tuple of ints, or ``()`` for something without a shape."""
    shape = getattr(x, "shape", ())
    return tuple(int(d) for d in shape) if _tree.is_tuple(shape) else ()


def _select(tree: PyTree, path: str) -> object:
    """``tree[i]`` for ``path == "[i]"``, ``tree.body``/``tree.projection`` for ``".name"``, else
    ``tree`` (``_MISSING`` where there is no such entry)."""
    if not path:
        return tree
    try:
        if path.startswith("["):
            return tree[int(path[1:-1])]
        return tree[("body", "projection").index(path[1:])]  # a ResidualParams, or a plain pair
    except (TypeError, IndexError, KeyError, ValueError):
        return _MISSING
