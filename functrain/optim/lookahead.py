"""Lookahead: k fast steps forward, one step back towards the slow weights (Zhang et al. 2019).

:func:`lookahead` wraps any optimizer (the fast one). The parameters a training loop holds are
the *fast* weights (the ones gradients are taken at), and the *slow* weights live in the
optimizer state (:attr:`LookaheadState.slow`); every ``k``-th step both are set to the new slow
weights. So ``make_train_step(loss_fn, lookahead(adam(1e-3), 5, 0.5))`` trains unchanged.
"""

from __future__ import annotations

from typing import Any, Generic, NamedTuple, TypeVar, overload

import jax.numpy as jnp

from functrain import _validate
from functrain._tree import tree_map, tree_where
from functrain.optim._extra_args import forward_extra_args
from functrain.optim._hyper import increment, like, value_at, zero_step
from functrain.optim.base import GradientTransformation, TransformationLike, require_params
from functrain.typing import Array, PyTree, ScalarOrSchedule

__all__ = ["LookaheadState", "lookahead"]

S = TypeVar("S")


class LookaheadState(NamedTuple, Generic[S]):
    """State of :func:`lookahead`.

    Attributes:
        step: int32 scalar, the number of updates done (the argument of an ``alpha`` schedule).
        since_sync: int32 scalar in ``[0, k)``, the fast steps taken since the last
            synchronization.
        slow: the slow weights (pytree like the params): use them for evaluation.
        inner_state: the fast optimizer's state.

    Example:
        >>> state = ft.optim.lookahead(ft.optim.sgd(0.1), 5, 0.5).init({"w": jnp.ones(2)})
        >>> int(state.step), int(state.since_sync), state.slow["w"].tolist()
        (0, 0, [1.0, 1.0])
    """

    step: Array
    since_sync: Array
    slow: PyTree
    inner_state: S


@overload
def lookahead(inner: GradientTransformation[S], sync_period: int, alpha: ScalarOrSchedule = 0.5,
              reset_state: bool = False) -> GradientTransformation[LookaheadState[S]]: ...
@overload
def lookahead(inner: TransformationLike, sync_period: int, alpha: ScalarOrSchedule = 0.5,
              reset_state: bool = False) -> GradientTransformation[LookaheadState[Any]]: ...
def lookahead(inner: TransformationLike, sync_period: int, alpha: ScalarOrSchedule = 0.5,
              reset_state: bool = False) -> GradientTransformation[LookaheadState[Any]]:
    r"""Lookahead around a fast optimizer: every ``k`` steps, the slow weights move to the fast.

    With fast weights ``w`` (the params) updated by ``inner`` and slow weights ``phi`` (in the
    state), at every ``k``-th step, after the fast step,

    .. math::

        \phi \leftarrow \phi + \alpha (w - \phi), \qquad w \leftarrow \phi

    (Zhang, Lucas, Hinton & Ba, "Lookahead Optimizer: k steps forward, 1 step back", NeurIPS
    2019; ``k = 5``, ``alpha = 0.5`` there.) The updates are those of the fast weights, so the
    params a training loop holds are the fast weights (gradients are taken there), equal to the
    slow weights right after each synchronization; evaluate with ``state.slow``. Needs ``params``
    in ``update``. The synchronization follows ``optax.lookahead`` (whose params are the pair
    ``LookaheadParams(fast, slow)``: its ``fast`` are these params, its ``slow`` this state's).

    Args:
        inner: the fast optimizer (functrain's or optax's).
        sync_period: ``k >= 1``, the number of fast steps between synchronizations.
        alpha: the slow step size in [0, 1]: a number, a scalar array or a schedule (of the step).
        reset_state: re-initialize the fast optimizer's state at each synchronization.

    Returns:
        A :class:`~functrain.optim.GradientTransformation` with :class:`LookaheadState`.

    Raises:
        TypeError: ``inner`` is not a gradient transformation, a hyperparameter of the wrong
            type; at update, ``params`` missing or of a different structure than the updates.
        ValueError: ``sync_period < 1`` or a concrete ``alpha`` outside [0, 1].

    Example:
        >>> tx = ft.optim.lookahead(ft.optim.sgd(1.0), sync_period=2, alpha=0.5)
        >>> params = {"w": jnp.zeros(1)}
        >>> state = tx.init(params)
        >>> for _ in range(2):  # fast: 1, then 2; sync: slow = 0 + 0.5 (2 - 0) = 1
        ...     u, state = tx.update({"w": -jnp.ones(1)}, state, params)
        ...     params = ft.optim.apply_updates(params, u)
        >>> params["w"].tolist(), state.slow["w"].tolist()
        ([1.0], [1.0])
    """
    fn = "lookahead"
    _validate.check_transformation(inner, fn, "inner")
    k = _validate.check_int(sync_period, fn, "sync_period", low=1)
    _validate.check_hyperparameter(alpha, fn, "alpha", low=0.0, high=1.0)
    _validate.check_bool(reset_state, fn, "reset_state")
    inner_update = forward_extra_args(inner.update)

    def init(params: PyTree) -> LookaheadState[Any]:
        slow = tree_map(lambda p: jnp.array(p, copy=True), params)  # its own buffers (donation)
        return LookaheadState(zero_step(), zero_step(), slow, inner.init(params))

    def update(
        updates: PyTree, state: LookaheadState[Any], params: PyTree | None = None,
        **extra_args: Any,
    ) -> tuple[PyTree, LookaheadState[Any]]:
        params = require_params(fn, updates, params)
        fast_updates, inner_state = inner_update(updates, state.inner_state, params, **extra_args)
        sync = state.since_sync == k - 1
        a = value_at(alpha, state.step)

        diff = tree_map(  # the last fast weights minus the slow ones, at a synchronization
            lambda w, u, phi: jnp.where(sync, w + u - phi, jnp.zeros_like(phi)),
            params, fast_updates, state.slow)
        new = tree_map(lambda u, d: u - like(1 - a, u) * d, fast_updates, diff)
        slow = tree_map(lambda phi, d: phi + like(a, phi) * d, state.slow, diff)
        if reset_state:
            inner_state = tree_where(sync, inner.init(params), inner_state)
        since = jnp.where(sync, jnp.zeros_like(state.since_sync), state.since_sync + 1)
        return new, LookaheadState(increment(state.step), since, slow, inner_state)

    return GradientTransformation(init, update)
