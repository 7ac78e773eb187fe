"""Stochastic gradient descent, momentum and normalized gradient descent.

* :func:`trace` -- the velocity of the momentum method, ``v <- gamma v + g`` (Polyak 1964;
  Sutskever et al. 2013 for the Nesterov variant).
* :func:`normalize_by_global_norm` -- ``g <- g / ||g||`` over the whole pytree.
* Optimizers (chains ending in :func:`~functrain.optim.scale_by_learning_rate`): :func:`sgd`,
  :func:`momentum`, :func:`normalized_sgd`.
"""

from __future__ import annotations

from typing import NamedTuple, overload

import jax.numpy as jnp

from functrain._tree import tree_global_norm, tree_map, tree_zeros_like
from functrain.optim._hyper import (
    check_scalar,
    check_updates,
    increment,
    is_schedule,
    like,
    value_at,
)
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


class TraceState(NamedTuple):
    """State of :func:`trace`.

    Attributes:
      step: int32 scalar update counter, kept only when ``decay`` is a schedule (else ``None``).
      trace: the velocity ``v``, a pytree like the params.
    """

    step: Array | None
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
      decay: the momentum coefficient ``gamma`` in [0, 1): a number, a scalar array or a schedule.
      nesterov: use Nesterov's look-ahead form.

    Returns:
      A :class:`~functrain.optim.GradientTransformation` with :class:`TraceState`.

    Raises:
      TypeError: ``decay`` is not a number, scalar array or schedule.
      ValueError: a concrete ``decay`` is outside [0, 1).
    """
    check_scalar("trace", "decay", decay, low=0.0, high=1.0, high_open=True)
    scheduled = is_schedule(decay)

    def init(params: PyTree) -> TraceState:
        step = jnp.zeros((), jnp.int32) if scheduled else None
        return TraceState(step=step, trace=tree_zeros_like(params))

    def update(
        updates: PyTree, state: TraceState, params: PyTree | None = None
    ) -> tuple[PyTree, TraceState]:
        del params
        check_updates("trace", updates, state.trace, "trace")
        d = value_at("trace", decay, state.step)
        new_trace = tree_map(lambda g, t: g + like(d, t) * t, updates, state.trace)
        if nesterov:
            updates = tree_map(lambda g, t: g + like(d, t) * t, updates, new_trace)
        else:
            updates = new_trace
        step = increment(state.step) if state.step is not None else None
        return updates, TraceState(step=step, trace=new_trace)

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
    """

    def update(
        updates: PyTree, state: EmptyState, params: PyTree | None = None
    ) -> tuple[PyTree, EmptyState]:
        del params
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
      momentum: ``gamma`` in [0, 1) (number, scalar array or schedule), or ``None`` for plain SGD.
      nesterov: Nesterov momentum (only with ``momentum``).

    Returns:
      A :class:`~functrain.optim.GradientTransformation`; its state is
      ``(EmptyState | TraceState, ScaleByLearningRateState)``.

    Raises:
      TypeError: a hyperparameter is not a number, scalar array or schedule.
      ValueError: a concrete ``learning_rate < 0`` or ``momentum`` outside [0, 1), or
        ``nesterov`` without ``momentum``.
    """
    check_scalar("sgd", "learning_rate", learning_rate, low=0.0)
    if momentum is None:
        if nesterov:
            raise ValueError("sgd: nesterov=True expected a momentum coefficient, got momentum=None")
        return chain(identity(), scale_by_learning_rate(learning_rate))
    check_scalar("sgd", "momentum", momentum, low=0.0, high=1.0, high_open=True)
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
      TypeError: a hyperparameter is not a number, scalar array or schedule.
      ValueError: a concrete ``learning_rate < 0`` or ``momentum`` outside [0, 1).
    """
    check_scalar("momentum", "learning_rate", learning_rate, low=0.0)
    check_scalar("momentum", "momentum", momentum, low=0.0, high=1.0, high_open=True)
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
    """
    check_scalar("normalized_sgd", "learning_rate", learning_rate, low=0.0)
    return chain(normalize_by_global_norm(), scale_by_learning_rate(learning_rate))
