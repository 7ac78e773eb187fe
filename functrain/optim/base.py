"""Gradient transformations: optax's calling convention, typed.

A :class:`GradientTransformation` is a pair of pure functions::

    state = tx.init(params)
    updates, state = tx.update(grads, state, params)   # params optional for most transforms
    params = apply_updates(params, updates)

It is a ``NamedTuple`` with fields ``init`` and ``update``, exactly like optax's, so a functrain
transformation can be used inside ``optax.chain`` and an optax transformation inside
:func:`functrain.optim.chain`. It is generic in its state type ``S`` so that ``mypy`` can tell
``ScaleByAdamState`` from ``TraceState``.

This module also holds the smallest building blocks: :func:`identity`, :func:`chain`,
:func:`scale`, :func:`scale_by_learning_rate` and :func:`apply_updates`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, NamedTuple, Protocol, TypeVar, overload

import jax.numpy as jnp

from functrain._tree import check_same_structure, tree_map
from functrain.optim._hyper import check_scalar, increment, require_step
from functrain.typing import Array, PyTree, ScalarOrSchedule

__all__ = [
    "EmptyState",
    "GradientTransformation",
    "InitFn",
    "ScaleByLearningRateState",
    "TransformationLike",
    "UpdateFn",
    "apply_updates",
    "chain",
    "identity",
    "init_empty_state",
    "scale",
    "scale_by_learning_rate",
]

S = TypeVar("S")
S_co = TypeVar("S_co", covariant=True)
S1 = TypeVar("S1")
S2 = TypeVar("S2")
S3 = TypeVar("S3")
S4 = TypeVar("S4")


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


class TransformationLike(Protocol):
    """Anything with optax's ``init``/``update`` pair: a functrain or an optax transformation."""

    @property
    def init(self) -> Callable[..., Any]:
        """``init(params) -> state``."""
        ...

    @property
    def update(self) -> Callable[..., Any]:
        """``update(updates, state, params=None) -> (updates, state)``."""
        ...


class EmptyState(NamedTuple):
    """The state of a stateless transformation (no leaves, so it costs nothing)."""


class ScaleByLearningRateState(NamedTuple):
    """State of :func:`scale_by_learning_rate`.

    Attributes:
      step: int32 scalar, the number of updates done so far, kept only when the learning rate is
        a schedule (it is the schedule's argument); ``None`` for a constant learning rate, so a
        constant costs no extra operation.
    """

    step: Array | None


def init_empty_state(params: PyTree) -> EmptyState:
    """The ``init`` of a stateless transformation: returns :class:`EmptyState` (``params`` unused).
    """
    del params
    return EmptyState()


def identity() -> GradientTransformation[EmptyState]:
    """The transformation that returns the updates unchanged (stateless).

    Returns:
      A :class:`GradientTransformation` with :class:`EmptyState`.
    """

    def update(
        updates: PyTree, state: EmptyState, params: PyTree | None = None
    ) -> tuple[PyTree, EmptyState]:
        del params
        return updates, state

    return GradientTransformation(init_empty_state, update)


def _check_transformation(fn: str, position: int, tx: object) -> None:
    if not (callable(getattr(tx, "init", None)) and callable(getattr(tx, "update", None))):
        raise TypeError(
            f"{fn}: argument {position} expected a gradient transformation (an object with init "
            f"and update functions), got {type(tx).__name__}"
        )


@overload
def chain(t1: GradientTransformation[S1], /) -> GradientTransformation[tuple[S1]]: ...
@overload
def chain(
    t1: GradientTransformation[S1], t2: GradientTransformation[S2], /
) -> GradientTransformation[tuple[S1, S2]]: ...
@overload
def chain(
    t1: GradientTransformation[S1],
    t2: GradientTransformation[S2],
    t3: GradientTransformation[S3],
    /,
) -> GradientTransformation[tuple[S1, S2, S3]]: ...
@overload
def chain(
    t1: GradientTransformation[S1],
    t2: GradientTransformation[S2],
    t3: GradientTransformation[S3],
    t4: GradientTransformation[S4],
    /,
) -> GradientTransformation[tuple[S1, S2, S3, S4]]: ...
@overload
def chain(*txs: TransformationLike) -> GradientTransformation[tuple[Any, ...]]: ...
def chain(*txs: TransformationLike) -> GradientTransformation[tuple[Any, ...]]:
    """Compose transformations: the updates flow through ``txs`` from left to right.

    The state is the tuple of the inner states, in order. optax transformations are accepted
    too (anything with optax's ``init``/``update`` convention).

    Args:
      *txs: the transformations, applied first to last.

    Returns:
      A :class:`GradientTransformation` whose state is ``tuple(tx.init(params) for tx in txs)``.

    Raises:
      TypeError: an argument has no ``init``/``update`` functions.
    """
    for i, tx in enumerate(txs):
        _check_transformation("chain", i + 1, tx)
    inits = tuple(tx.init for tx in txs)
    updates_fns = tuple(tx.update for tx in txs)

    def init(params: PyTree) -> tuple[Any, ...]:
        return tuple(fn(params) for fn in inits)

    def update(
        updates: PyTree, state: tuple[Any, ...], params: PyTree | None = None
    ) -> tuple[PyTree, tuple[Any, ...]]:
        if not isinstance(state, tuple) or len(state) != len(updates_fns):
            got = f"a tuple of {len(state)}" if isinstance(state, tuple) else type(state).__name__
            raise ValueError(
                f"chain: state expected a tuple of {len(updates_fns)} states (one per "
                f"transformation, as built by this chain's init), got {got}"
            )
        if params is not None:
            check_same_structure(params, updates, name="chain: updates", expected_name="params")
        new_states = []
        for fn, inner in zip(updates_fns, state):
            updates, inner = fn(updates, inner, params)
            new_states.append(inner)
        return updates, tuple(new_states)

    return GradientTransformation(init, update)


def apply_updates(params: PyTree, updates: PyTree) -> PyTree:
    """Add ``updates`` to ``params`` leafwise: ``p <- p + u``, cast back to each param's dtype.

    Args:
      params: a pytree of arrays.
      updates: a pytree with the same structure and leaf shapes (the output of ``update``).

    Returns:
      The new parameters, with the structure and dtypes of ``params``.

    Raises:
      TypeError: ``updates`` and ``params`` have different tree structures.
    """
    check_same_structure(params, updates, name="apply_updates: updates", expected_name="params")
    return tree_map(lambda p, u: jnp.asarray(p + u).astype(jnp.asarray(p).dtype), params, updates)


def scale(factor: float | Array) -> GradientTransformation[EmptyState]:
    """Multiply the updates by a constant: ``u <- factor * u`` (stateless).

    Args:
      factor: a number or a (possibly traced) scalar array.

    Returns:
      A :class:`GradientTransformation` with :class:`EmptyState`.

    Raises:
      TypeError: ``factor`` is not a number or a scalar array.
      ValueError: ``factor`` is a non-scalar array or NaN.
    """
    check_scalar("scale", "factor", factor, schedule_ok=False)

    def update(
        updates: PyTree, state: EmptyState, params: PyTree | None = None
    ) -> tuple[PyTree, EmptyState]:
        del params
        return tree_map(lambda g: factor * g, updates), state

    return GradientTransformation(init_empty_state, update)


def scale_by_learning_rate(
    learning_rate: ScalarOrSchedule,
) -> GradientTransformation[ScaleByLearningRateState]:
    """Multiply the updates by the negative learning rate: ``u <- -lr_t * u``.

    This is the last step of every optimizer (gradient *descent*). A constant learning rate (a
    number or a possibly traced scalar array) is one multiplication; a schedule ``lr_t =
    schedule(t)`` is evaluated at the number of updates done so far, ``t = 0, 1, ...``, kept in
    the state.

    Args:
      learning_rate: a number >= 0, a scalar array or a :class:`~functrain.typing.Schedule`.

    Returns:
      A :class:`GradientTransformation` with :class:`ScaleByLearningRateState`.

    Raises:
      TypeError: ``learning_rate`` is not a number, scalar array or schedule.
      ValueError: a concrete ``learning_rate`` is negative, NaN or a non-scalar array.
    """
    check_scalar("scale_by_learning_rate", "learning_rate", learning_rate, low=0.0)

    if callable(learning_rate):
        schedule = learning_rate

        def init_scheduled(params: PyTree) -> ScaleByLearningRateState:
            del params
            return ScaleByLearningRateState(step=jnp.zeros((), jnp.int32))

        def update_scheduled(
            updates: PyTree, state: ScaleByLearningRateState, params: PyTree | None = None
        ) -> tuple[PyTree, ScaleByLearningRateState]:
            del params
            step = require_step("scale_by_learning_rate", state.step)
            neg_lr = -schedule(step)
            new = tree_map(lambda g: jnp.asarray(neg_lr, dtype=g.dtype) * g, updates)
            return new, ScaleByLearningRateState(step=increment(step))

        return GradientTransformation(init_scheduled, update_scheduled)

    def init(params: PyTree) -> ScaleByLearningRateState:
        del params
        return ScaleByLearningRateState(step=None)

    if isinstance(learning_rate, (int, float)):
        neg = -learning_rate  # a Python number stays weakly typed: no dtype promotion

        def update_number(
            updates: PyTree, state: ScaleByLearningRateState, params: PyTree | None = None
        ) -> tuple[PyTree, ScaleByLearningRateState]:
            del params
            return tree_map(lambda g: neg * g, updates), state

        return GradientTransformation(init, update_number)

    neg_array = -jnp.asarray(learning_rate)

    def update_array(
        updates: PyTree, state: ScaleByLearningRateState, params: PyTree | None = None
    ) -> tuple[PyTree, ScaleByLearningRateState]:
        del params
        # Cast the scalar (not the leaves) so low-precision updates stay low precision.
        return tree_map(lambda g: neg_array.astype(g.dtype) * g, updates), state

    return GradientTransformation(init, update_array)
