"""Extra keyword arguments of ``update`` (optax's ``GradientTransformationExtraArgs``
convention): which ones a member declares, read once from its signature, and an update function
that passes it exactly those. Used by :func:`~functrain.optim.chain` and the wrappers."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from functrain.typing import PyTree

if TYPE_CHECKING:
    from functrain.optim.base import UpdateFn

__all__ = ["forward_extra_args"]

S = TypeVar("S")


def _declared_extra_args(update: Callable[..., Any]) -> frozenset[str] | None:
    """The extra keyword arguments ``update`` takes: ``None`` for all (``**kwargs``), else the
    names of its keyword parameters after ``(updates, state, params)`` (none if unknown)."""
    try:
        parameters = list(inspect.signature(update).parameters.values())
    except (TypeError, ValueError):  # no signature to read (a builtin): pass it nothing extra
        return frozenset()
    if any(p.kind is p.VAR_KEYWORD for p in parameters):
        return None
    positional = [p for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    taken = {p.name for p in positional[:3]}
    return frozenset(p.name for p in parameters if p.name not in taken
                     and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY))


def forward_extra_args(update: Callable[..., tuple[PyTree, S]]) -> UpdateFn[S]:
    """``update`` as an :class:`UpdateFn`: it receives the extra keyword arguments it declares.

    For :func:`~functrain.optim.chain` and the wrappers. The signature is read once, here: an
    ``update`` that takes ``**kwargs`` (every functrain one, optax's
    ``GradientTransformationExtraArgs``) is returned as is and receives every extra argument;
    another receives only the keyword arguments it names (none for a plain optax
    ``GradientTransformation``), so passing extra arguments never breaks a member that does not
    know them.
    """
    names = _declared_extra_args(update)
    if names is None:
        return update

    def forwarding(updates: PyTree, state: S, params: PyTree | None = None,
                   **extra_args: Any) -> tuple[PyTree, S]:
        kept = {k: v for k, v in extra_args.items() if k in names}
        return update(updates, state, params, **kept)

    return forwarding
