"""Gradient transformations: optax's calling convention, typed.

A :class:`GradientTransformation` is a pair of pure functions::

    state = tx.init(params)
    updates, state = tx.update(grads, state, params)   # params optional for most transforms
    params = apply_updates(params, updates)

It is a ``NamedTuple`` with fields ``init`` and ``update``, exactly like optax's, so a functrain
transformation can be used inside ``optax.chain`` and an optax transformation inside
:func:`functrain.optim.chain`. It is generic in its state type ``S`` so that ``mypy`` can tell
``ScaleByAdamState`` from ``TraceState``.
"""

from __future__ import annotations

from typing import Generic, NamedTuple, Protocol, TypeVar

from functrain.typing import PyTree

__all__ = [
    "GradientTransformation",
    "InitFn",
    "UpdateFn",
]

S = TypeVar("S")
S_co = TypeVar("S_co", covariant=True)


class InitFn(Protocol[S_co]):
    """``init(params) -> state``."""

    def __call__(self, params: PyTree, /) -> S_co:
        """Build the initial optimizer state for ``params``."""
        ...


class UpdateFn(Protocol[S]):
    """``update(updates, state, params=None) -> (updates, state)``."""

    def __call__(
        self, updates: PyTree, state: S, params: PyTree | None = None, /
    ) -> tuple[PyTree, S]:
        """Transform ``updates`` (gradients), returning new updates and state."""
        ...


class GradientTransformation(NamedTuple, Generic[S]):
    """A pure optimizer building block: ``init`` and ``update`` functions over a state ``S``."""

    init: InitFn[S]
    update: UpdateFn[S]
