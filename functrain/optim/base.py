"""Gradient transformations: optax's calling convention, typed.

A :class:`GradientTransformation` is a pair of pure functions::

    state = tx.init(params)
    updates, state = tx.update(grads, state, params)   # params optional for most transforms
    params = apply_updates(params, updates)

It is a ``NamedTuple`` with fields ``init`` and ``update``, exactly like optax's, so a functrain
transformation can be used inside ``optax.chain`` and an optax transformation inside
:func:`functrain.optim.chain`. It is generic in its state type ``S`` so that ``mypy`` can tell
``ScaleByAdamState`` from ``TraceState``.

Extra keyword arguments follow optax's ``GradientTransformationExtraArgs`` convention:
``update(updates, state, params=None, **extra_args)``. Every functrain ``update`` accepts and
ignores the ones it does not use, and :func:`chain` and the wrappers (``skip_nonfinite``,
``accumulate_gradients``, ``masked``, ``freeze``, ``partition``, ``lookahead``) pass them on to
the members that declare them: all of them to a member whose ``update`` takes ``**kwargs`` (every
functrain transformation, every optax ``GradientTransformationExtraArgs``), the named ones to a
member that names them, none to the rest. So ``optax.contrib.reduce_on_plateau()``, which needs
``value=``, runs inside :func:`chain`. Which members get what is decided once, when the
transformation is built; the compiled update is the same as without extra arguments.
(``optax.chain`` passes extra arguments only to instances of its own
``GradientTransformationExtraArgs``: wrap a functrain transformation as
``optax.GradientTransformationExtraArgs(tx.init, tx.update)`` to receive them there.)

This module also holds the smallest building blocks: :func:`identity`, :func:`chain`,
:func:`scale`, :func:`scale_by_learning_rate` and :func:`apply_updates`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, NamedTuple, Protocol, TypeVar, cast, overload

import jax.numpy as jnp

from functrain import _validate
from functrain._tree import tree_map
from functrain.optim._extra_args import forward_extra_args
from functrain.optim._hyper import increment, like, value_at, zero_step
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
    """``init(params) -> state``.

    Example:
        >>> init: ft.optim.InitFn[ft.optim.ScaleByLearningRateState]
        >>> init = ft.optim.sgd(0.1).init
        >>> init({"w": jnp.ones(2)})[1].step.dtype
        dtype('int32')
    """

    def __call__(self, params: PyTree, /) -> S_co:
        """Build the initial optimizer state for ``params``."""
        ...


class UpdateFn(Protocol[S]):
    """``update(updates, state, params=None, **extra_args) -> (updates, state)``.

    optax's ``GradientTransformationExtraArgs`` convention: an update function accepts extra
    keyword arguments (e.g. ``value=`` for a plateau rule) and ignores those it does not use. A
    hand-written one has optax's parameter names and declares ``**extra_args: Any``:
    ``def update(updates, state, params=None, **extra_args)`` (with ``del extra_args`` if it uses
    none), so that no extra argument can clash with the first three.

    Example:
        >>> tx = ft.optim.scale(2.0)
        >>> update: ft.optim.UpdateFn[ft.optim.EmptyState] = tx.update
        >>> u, _ = update({"w": jnp.ones(2)}, ft.optim.EmptyState(), value=0.5)  # value ignored
        >>> u["w"].tolist()
        [2.0, 2.0]
    """

    def __call__(
        self, updates: PyTree, state: S, params: PyTree | None = None, **extra_args: Any
    ) -> tuple[PyTree, S]:
        """Transform ``updates`` (gradients), returning new updates and state."""
        ...


class GradientTransformation(NamedTuple, Generic[S]):
    """A pure optimizer building block: ``init`` and ``update`` functions over a state ``S``.

    Example:
        >>> tx = ft.optim.sgd(0.1)
        >>> isinstance(tx, ft.optim.GradientTransformation)
        True
        >>> params = {"w": jnp.ones(2)}
        >>> updates, state = tx.update({"w": jnp.full(2, 0.5)}, tx.init(params), params)
        >>> round(float(ft.optim.apply_updates(params, updates)["w"][0]), 4)
        0.95
    """

    init: InitFn[S]
    update: UpdateFn[S]


class TransformationLike(Protocol):
    """Anything with optax's ``init``/``update`` pair: a functrain or an optax transformation.

    Example:
        >>> import optax
        >>> def library(tx: ft.optim.TransformationLike) -> str:
        ...     return type(tx.init({"w": jnp.ones(2)})).__module__.split(".")[0]
        >>> library(ft.optim.trace(0.9)), library(optax.trace(0.9))
        ('functrain', 'optax')
    """

    @property
    def init(self) -> Callable[..., Any]:
        """``init(params) -> state``."""
        ...

    @property
    def update(self) -> Callable[..., Any]:
        """``update(updates, state, params=None, **extra_args) -> (updates, state)``."""
        ...


class EmptyState(NamedTuple):
    """The state of a stateless transformation (no leaves, so it costs nothing).

    Example:
        >>> state = ft.optim.clip_by_global_norm(1.0).init({"w": jnp.ones(2)})
        >>> state == ft.optim.EmptyState(), jax.tree_util.tree_leaves(state)
        (True, [])
    """


def init_empty_state(params: PyTree) -> EmptyState:
    """The ``init`` of a stateless transformation: returns :class:`EmptyState` (``params`` unused).

    Args:
        params: the parameters (ignored).

    Returns:
        ``EmptyState()``.

    Example:
        >>> ft.optim.init_empty_state({"w": jnp.ones(3)})
        EmptyState()
    """
    del params
    return EmptyState()


def identity() -> GradientTransformation[EmptyState]:
    """The transformation that returns the updates unchanged (stateless).

    Returns:
        A :class:`GradientTransformation` with :class:`EmptyState`.

    Example:
        >>> tx = ft.optim.identity()
        >>> u, _ = tx.update({"w": jnp.asarray([1.0, -2.0])}, tx.init(None))
        >>> u["w"].tolist()
        [1.0, -2.0]
    """

    def update(
        updates: PyTree, state: EmptyState, params: PyTree | None = None, **extra_args: Any
    ) -> tuple[PyTree, EmptyState]:
        del params, extra_args
        return updates, state

    return GradientTransformation(init_empty_state, update)


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
    too (anything with optax's ``init``/``update`` convention). Extra keyword arguments of
    ``update`` reach every member that declares them (all of them for a member whose ``update``
    takes ``**kwargs``, the named ones otherwise), as in ``optax.chain``; e.g. ``value=`` for
    ``optax.contrib.reduce_on_plateau``.

    Args:
        *txs: the transformations, applied first to last.

    Returns:
        A :class:`GradientTransformation` whose state is ``tuple(tx.init(params) for tx in txs)``.

    Raises:
        TypeError: an argument has no ``init``/``update`` functions; at update, a state that is
            not a tuple, or updates whose tree structure differs from the params'.
        ValueError: at update, a state tuple of the wrong length.

    Example:
        >>> tx = ft.optim.chain(ft.optim.clip_by_global_norm(1.0), ft.optim.sgd(0.5))
        >>> params = {"w": jnp.zeros(2)}
        >>> u, state = tx.update({"w": jnp.asarray([3.0, 4.0])}, tx.init(params), params)
        >>> [round(x, 4) for x in u["w"].tolist()], len(state)
        ([-0.3, -0.4], 2)
        >>> import optax  # a member that needs an extra argument: value=, the loss
        >>> tx = ft.optim.chain(ft.optim.sgd(0.5), optax.contrib.reduce_on_plateau(patience=1))
        >>> u, state = tx.update({"w": jnp.ones(2)}, tx.init(params), params, value=jnp.asarray(1.0))
        >>> u["w"].tolist()
        [-0.5, -0.5]
    """
    for i, tx in enumerate(txs):
        _validate.check_transformation(tx, "chain", f"txs[{i}]")
    inits = tuple(tx.init for tx in txs)
    updates_fns = tuple(forward_extra_args(tx.update) for tx in txs)
    n = len(updates_fns)

    def init(params: PyTree) -> tuple[Any, ...]:
        return tuple(fn(params) for fn in inits)

    def update(
        updates: PyTree, state: tuple[Any, ...], params: PyTree | None = None, **extra_args: Any
    ) -> tuple[PyTree, tuple[Any, ...]]:
        if not isinstance(cast(object, state), tuple) or len(state) != n:
            _validate.fail("chain", "state", f"a tuple of {n} states (one per transformation, "
                           "as built by this chain's init)", state,
                           error=ValueError if isinstance(cast(object, state), tuple) else TypeError)
        if params is not None:
            _validate.check_same_structure(params, updates, "chain", "updates", "the params")
        new_states: list[Any] = []
        for fn, inner in zip(updates_fns, state):
            updates, inner = fn(updates, inner, params, **extra_args)
            new_states.append(inner)
        return updates, tuple(new_states)

    return GradientTransformation(init, update)


def require_params(who: str, updates: PyTree, params: PyTree | None) -> PyTree:
    """The ``params`` argument of an ``update`` that needs it, with the updates' structure.

    Raises:
        TypeError: ``params`` is ``None`` or its tree structure differs from ``updates``'.
    """
    if params is None:
        _validate.fail(who, "params", "the current params (this transformation needs them in "
                       "update)", params, error=TypeError)
    _validate.check_same_structure(params, updates, who, "updates", "the params")
    return params


def apply_updates(params: PyTree, updates: PyTree) -> PyTree:
    """Add ``updates`` to ``params`` leafwise: ``p <- p + u``, cast back to each param's dtype.

    Args:
        params: a pytree of arrays.
        updates: a pytree with the same structure and leaf shapes (the output of ``update``).

    Returns:
        The new parameters, with the structure and dtypes of ``params``.

    Raises:
        TypeError: ``updates`` and ``params`` have different tree structures.

    Example:
        >>> params = {"w": jnp.ones(2, jnp.bfloat16)}
        >>> new = ft.optim.apply_updates(params, {"w": jnp.asarray([0.5, -1.0])})
        >>> new["w"].tolist(), new["w"].dtype
        ([1.5, 0.0], dtype(bfloat16))
    """
    _validate.check_same_structure(params, updates, "apply_updates", "updates", "the params")
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

    Example:
        >>> tx = ft.optim.scale(-0.5)
        >>> u, _ = tx.update({"w": jnp.asarray([2.0, 4.0])}, tx.init(None))
        >>> u["w"].tolist()
        [-1.0, -2.0]
    """
    _validate.check_hyperparameter(factor, "scale", "factor", schedule_ok=False)

    def update(
        updates: PyTree, state: EmptyState, params: PyTree | None = None, **extra_args: Any
    ) -> tuple[PyTree, EmptyState]:
        del params, extra_args
        return tree_map(lambda g: factor * g, updates), state

    return GradientTransformation(init_empty_state, update)


class ScaleByLearningRateState(NamedTuple):
    """State of :func:`scale_by_learning_rate`.

    Attributes:
        step: int32 scalar, the number of updates done so far (a schedule's argument).
        learning_rate: floating scalar, the learning rate the *next* update will apply,
            ``lr(step)`` (a record for reading, e.g. by
            :func:`~functrain.optim.current_learning_rate`; ``update`` does not read it). Its
            dtype is the learning rate's (float32 for a Python number, float64 under x64).

    Example:
        >>> tx = ft.optim.scale_by_learning_rate(ft.optim.schedules.exponential_decay(1.0, 0.5))
        >>> state = tx.init({"w": jnp.ones(2)})
        >>> int(state.step), state.step.dtype, float(state.learning_rate)
        (0, dtype('int32'), 1.0)
        >>> _, state = tx.update({"w": jnp.ones(2)}, state)
        >>> int(state.step), float(state.learning_rate)
        (1, 0.5)
    """

    step: Array
    learning_rate: Array


def _recorded(value: float | Array) -> Array:
    """A learning rate as a strongly typed floating scalar (the same type at init and update)."""
    x = jnp.asarray(value)
    if not jnp.issubdtype(x.dtype, jnp.inexact):
        x = x.astype(jnp.result_type(float))
    return jnp.asarray(x, x.dtype)  # an explicit dtype drops the weak type of a Python number


def scale_by_learning_rate(
    learning_rate: ScalarOrSchedule,
) -> GradientTransformation[ScaleByLearningRateState]:
    """Multiply the updates by the negative learning rate: ``u <- -lr_t * u``.

    This is the last step of every optimizer (gradient *descent*). A constant learning rate (a
    number or a possibly traced scalar array) is one multiplication per leaf; a schedule ``lr_t =
    schedule(t)`` is evaluated at the number of updates done so far, ``t = 0, 1, ...``, which the
    state counts in both cases. The state also records the learning rate of the next update
    (``lr_0`` after ``init``, ``lr_{t+1}`` after the update with ``lr_t``), which
    :func:`~functrain.optim.current_learning_rate` reads.

    Args:
        learning_rate: a number >= 0, a scalar array or a :class:`~functrain.typing.Schedule`.

    Returns:
        A :class:`GradientTransformation` with :class:`ScaleByLearningRateState`.

    Raises:
        TypeError: ``learning_rate`` is not a number, scalar array or schedule.
        ValueError: a concrete ``learning_rate`` is negative, NaN or a non-scalar array.

    Example:
        >>> tx = ft.optim.scale_by_learning_rate(ft.optim.schedules.exponential_decay(1.0, 0.5))
        >>> state = tx.init({"w": jnp.ones(1)})
        >>> for _ in range(3):
        ...     u, state = tx.update({"w": jnp.ones(1)}, state)
        >>> u["w"].tolist(), int(state.step), float(state.learning_rate)
        ([-0.25], 3, 0.125)
    """
    _validate.check_hyperparameter(learning_rate, "scale_by_learning_rate", "learning_rate",
                                   low=0.0)

    def init(params: PyTree) -> ScaleByLearningRateState:
        del params
        step = zero_step()
        return ScaleByLearningRateState(step, _recorded(value_at(learning_rate, step)))

    def update(
        updates: PyTree, state: ScaleByLearningRateState, params: PyTree | None = None,
        **extra_args: Any,
    ) -> tuple[PyTree, ScaleByLearningRateState]:
        del params, extra_args
        # A Python number stays weakly typed; an array or a schedule's value is cast to each
        # leaf's dtype (the scalar, not the leaf), so low-precision updates stay low precision.
        neg = -value_at(learning_rate, state.step)
        new = tree_map(lambda g: like(neg, g) * g, updates)
        step = increment(state.step)
        # The record is the next update's rate: a constant as is, a schedule at the new step
        # (a few scalar operations); the update above never reads it.
        return new, ScaleByLearningRateState(step, _recorded(value_at(learning_rate, step)))

    return GradientTransformation(init, update)
