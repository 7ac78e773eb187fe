"""Stochastic gradient descent, momentum and normalized gradient descent.

* :func:`trace` -- the velocity of the momentum method, ``v <- gamma v + g`` (Polyak 1964;
  Sutskever et al. 2013 for the Nesterov variant).
* :func:`normalize_by_global_norm` -- ``g <- g / ||g||`` over the whole pytree.
* Optimizers (chains ending in :func:`~functrain.optim.scale_by_learning_rate`): :func:`sgd`,
  :func:`momentum`, :func:`normalized_sgd`.
"""

from __future__ import annotations

from typing import Any, NamedTuple, overload

import jax.numpy as jnp

from functrain import _validate
from functrain._tree import tree_global_norm, tree_map, tree_zeros_like
from functrain.optim._hyper import increment, like, value_at, zero_step
from functrain.optim.base import (
    EmptyState,
    GradientTransformation,
    ScaleByLearningRateState,
    chain,
    identity,
    init_empty_state,
    scale_by_learning_rate,
)
from functrain.typing import Array, PyTree, ScalarOrSchedule

__all__ = [
    "TraceState",
    "momentum",
    "normalize_by_global_norm",
    "normalized_sgd",
    "sgd",
    "trace",
]


def _check_momentum(who: str, learning_rate: ScalarOrSchedule, gamma: ScalarOrSchedule | None,
                    nesterov: bool) -> None:
    _validate.check_hyperparameter(learning_rate, who, "learning_rate", low=0.0)
    if gamma is not None:
        _validate.check_hyperparameter(gamma, who, "momentum", low=0.0, high=1.0, high_open=True)
    _validate.check_bool(nesterov, who, "nesterov")


class TraceState(NamedTuple):
    """State of :func:`trace`.

    Attributes:
        step: int32 scalar, the number of updates done (the argument of a ``decay`` schedule).
        trace: the velocity ``v``, a pytree like the params.

    Example:
        >>> state = ft.optim.trace(0.9).init({"w": jnp.ones(3)})
        >>> int(state.step), state.trace["w"].tolist()
        (0, [0.0, 0.0, 0.0])
    """

    step: Array
    trace: PyTree


def trace(decay: ScalarOrSchedule, nesterov: bool = False) -> GradientTransformation[TraceState]:
    r"""Momentum: accumulate a velocity ``v`` of past updates.

    .. math::

        v_t = \gamma v_{t-1} + g_t, \qquad u_t = v_t
        \quad(\text{Nesterov: } u_t = g_t + \gamma v_t)

    (Polyak, "Some methods of speeding up the convergence of iteration methods", 1964; Sutskever
    et al., "On the importance of initialization and momentum in deep learning", ICML 2013.)
    Same convention as ``optax.trace``.

    Args:
        decay: the momentum coefficient ``gamma`` in [0, 1): a number, a scalar array or a
            schedule.
        nesterov: use Nesterov's look-ahead form.

    Returns:
        A :class:`~functrain.optim.GradientTransformation` with :class:`TraceState`.

    Raises:
        TypeError: ``decay`` is not a number, scalar array or schedule, or ``nesterov`` is not a
            bool.
        ValueError: a concrete ``decay`` is outside [0, 1).

    Example:
        >>> tx = ft.optim.trace(0.5)
        >>> state = tx.init({"w": jnp.zeros(1)})
        >>> for g in (1.0, 1.0):
        ...     u, state = tx.update({"w": jnp.asarray([g])}, state)
        >>> u["w"].tolist(), int(state.step)
        ([1.5], 2)
    """
    _validate.check_hyperparameter(decay, "trace", "decay", low=0.0, high=1.0, high_open=True)
    _validate.check_bool(nesterov, "trace", "nesterov")

    def init(params: PyTree) -> TraceState:
        return TraceState(step=zero_step(), trace=tree_zeros_like(params))

    def update(
        updates: PyTree, state: TraceState, params: PyTree | None = None, **extra_args: Any
    ) -> tuple[PyTree, TraceState]:
        del params, extra_args
        _validate.check_same_structure(state.trace, updates, "trace", "updates",
                                       "state.trace (the params given to init)")
        d = value_at(decay, state.step)
        new_trace = tree_map(lambda g, t: g + like(d, t) * t, updates, state.trace)
        if nesterov:
            updates = tree_map(lambda g, t: g + like(d, t) * t, updates, new_trace)
        else:
            updates = new_trace
        return updates, TraceState(step=increment(state.step), trace=new_trace)

    return GradientTransformation(init, update)


def normalize_by_global_norm() -> GradientTransformation[EmptyState]:
    r"""Divide the updates by their global norm: ``g <- g / ||g||`` (stateless).

    ``||g|| = sqrt(sum_leaves sum_i g_i^2)``. With :func:`~functrain.optim.scale_by_learning_rate`
    on top this is normalized gradient descent, ``w <- w - eta g / ||g||``: every step has length
    exactly ``eta`` whatever the gradient's size (Nesterov, "Introductory Lectures on Convex
    Optimization", 2004, sec. 3.2.3). A zero gradient stays zero (no division by zero).

    Returns:
        A :class:`~functrain.optim.GradientTransformation` with
        :class:`~functrain.optim.EmptyState`.

    Example:
        >>> tx = ft.optim.normalize_by_global_norm()
        >>> u, _ = tx.update({"a": jnp.asarray([3.0]), "b": jnp.asarray([4.0])}, tx.init(None))
        >>> round(float(u["a"][0]), 4), round(float(u["b"][0]), 4)
        (0.6, 0.8)
    """

    def update(
        updates: PyTree, state: EmptyState, params: PyTree | None = None, **extra_args: Any
    ) -> tuple[PyTree, EmptyState]:
        del params, extra_args
        norm = tree_global_norm(updates)
        safe = jnp.where(norm > 0, norm, jnp.ones_like(norm))  # 0 / 1 = 0 for a zero gradient
        return tree_map(lambda g: g / safe.astype(g.dtype), updates), state

    return GradientTransformation(init_empty_state, update)


@overload
def sgd(
    learning_rate: ScalarOrSchedule, momentum: None = None, nesterov: bool = False
) -> GradientTransformation[tuple[EmptyState, ScaleByLearningRateState]]: ...
@overload
def sgd(
    learning_rate: ScalarOrSchedule, momentum: ScalarOrSchedule, nesterov: bool = False
) -> GradientTransformation[tuple[TraceState, ScaleByLearningRateState]]: ...
def sgd(
    learning_rate: ScalarOrSchedule,
    momentum: ScalarOrSchedule | None = None,
    nesterov: bool = False,
) -> (
    GradientTransformation[tuple[EmptyState, ScaleByLearningRateState]]
    | GradientTransformation[tuple[TraceState, ScaleByLearningRateState]]
):
    r"""Stochastic gradient descent, optionally with (Nesterov) momentum.

    ``w <- w - eta g``; with momentum ``v <- gamma v + g, w <- w - eta v`` (see :func:`trace`).
    Same as ``optax.sgd``: ``chain(trace(momentum) or identity(), scale_by_learning_rate(lr))``.

    Args:
        learning_rate: ``eta >= 0``: a number, a scalar array or a schedule.
        momentum: ``gamma`` in [0, 1) (number, scalar array or schedule), or ``None`` for plain
            SGD.
        nesterov: Nesterov momentum (only with ``momentum``).

    Returns:
        A :class:`~functrain.optim.GradientTransformation`; its state is
        ``(EmptyState | TraceState, ScaleByLearningRateState)``.

    Raises:
        TypeError: a hyperparameter is not a number, scalar array or schedule, or ``nesterov``
            is not a bool.
        ValueError: a concrete ``learning_rate < 0`` or ``momentum`` outside [0, 1), or
            ``nesterov`` without ``momentum``.

    Example:
        >>> tx = ft.optim.sgd(0.1)
        >>> params = {"w": jnp.asarray([1.0, 2.0])}
        >>> u, state = tx.update({"w": jnp.asarray([1.0, -1.0])}, tx.init(params), params)
        >>> [round(x, 4) for x in ft.optim.apply_updates(params, u)["w"].tolist()]
        [0.9, 2.1]
    """
    _check_momentum("sgd", learning_rate, momentum, nesterov)
    if momentum is None:
        if nesterov:
            _validate.fail("sgd", "nesterov", "False when momentum is None", nesterov)
        return chain(identity(), scale_by_learning_rate(learning_rate))
    return chain(trace(momentum, nesterov), scale_by_learning_rate(learning_rate))


def momentum(
    learning_rate: ScalarOrSchedule, momentum: ScalarOrSchedule = 0.9, nesterov: bool = False
) -> GradientTransformation[tuple[TraceState, ScaleByLearningRateState]]:
    r"""Gradient descent with momentum: ``v <- gamma v + g,  w <- w - eta v``.

    The heavy-ball method (Polyak 1964), or Nesterov's accelerated gradient with
    ``nesterov=True`` (Sutskever et al. 2013). Same as ``optax.sgd(lr, momentum, nesterov)``.

    Args:
        learning_rate: ``eta >= 0``: a number, a scalar array or a schedule.
        momentum: ``gamma`` in [0, 1): a number, a scalar array or a schedule.
        nesterov: use Nesterov momentum.

    Returns:
        A :class:`~functrain.optim.GradientTransformation` with state
        ``(TraceState, ScaleByLearningRateState)``.

    Raises:
        TypeError: a hyperparameter is not a number, scalar array or schedule, or ``nesterov``
            is not a bool.
        ValueError: a concrete ``learning_rate < 0`` or ``momentum`` outside [0, 1).

    Example:
        >>> tx = ft.optim.momentum(0.1, 0.5)
        >>> state = tx.init({"w": jnp.zeros(1)})
        >>> for _ in range(2):
        ...     u, state = tx.update({"w": jnp.ones(1)}, state)
        >>> round(float(u["w"][0]), 4), round(float(state[0].trace["w"][0]), 4)
        (-0.15, 1.5)
    """
    _check_momentum("momentum", learning_rate, momentum, nesterov)
    return chain(trace(momentum, nesterov), scale_by_learning_rate(learning_rate))


def normalized_sgd(
    learning_rate: ScalarOrSchedule,
) -> GradientTransformation[tuple[EmptyState, ScaleByLearningRateState]]:
    r"""Normalized gradient descent: ``w <- w - eta g / ||g||``.

    Every step has length exactly ``eta`` (``||g||`` is the global norm over all leaves); a zero
    gradient gives a zero step. ``chain(normalize_by_global_norm(), scale_by_learning_rate(lr))``.

    Args:
        learning_rate: ``eta >= 0``: a number, a scalar array or a schedule.

    Returns:
        A :class:`~functrain.optim.GradientTransformation` with state
        ``(EmptyState, ScaleByLearningRateState)``.

    Raises:
        TypeError: ``learning_rate`` is not a number, scalar array or schedule.
        ValueError: a concrete ``learning_rate < 0``.

    Example:
        >>> tx = ft.optim.normalized_sgd(0.5)
        >>> u, _ = tx.update({"w": jnp.asarray([30.0, 40.0])}, tx.init({"w": jnp.zeros(2)}))
        >>> [round(x, 4) for x in u["w"].tolist()]
        [-0.3, -0.4]
    """
    _validate.check_hyperparameter(learning_rate, "normalized_sgd", "learning_rate", low=0.0)
    return chain(normalize_by_global_norm(), scale_by_learning_rate(learning_rate))
