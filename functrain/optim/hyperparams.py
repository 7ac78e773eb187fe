"""Reading hyperparameters back from an optimizer state: :func:`current_learning_rate`.

Every functrain optimizer ends with :func:`~functrain.optim.scale_by_learning_rate`, whose state
(:class:`~functrain.optim.ScaleByLearningRateState`) records the learning rate its next update
will apply (a schedule's value at the current step, or the constant). Transformations that
rescale the learning rate on top of it, such as :func:`functrain.train.scale_by_plateau`, mark
their state with a ``learning_rate_scale`` attribute, so the optimizer package finds them without
knowing them (it imports nothing from :mod:`functrain.train`).
"""

from __future__ import annotations

from typing import Any, cast

import jax.numpy as jnp

from functrain import _tree
from functrain._tree import tree_leaves
from functrain.optim.base import ScaleByLearningRateState
from functrain.typing import Array, PyTree

__all__ = ["current_learning_rate"]


def _learning_rate_scale(node: Any) -> Array | None:
    """The factor a state node applies to the learning rate, or ``None`` if it applies none."""
    if _tree.is_tuple(node) and hasattr(type(node), "learning_rate_scale"):
        scale: Array = getattr(node, "learning_rate_scale")  # e.g. train.ScaleByPlateauState
        return scale
    kind = type(cast(object, node))
    if kind.__name__ == "ReduceLROnPlateauState" and kind.__module__.startswith("optax"):
        optax_scale: Array = getattr(node, "scale")  # optax.contrib.reduce_on_plateau's state
        return optax_scale
    return None


def _is_node(x: Any) -> bool:
    return isinstance(x, ScaleByLearningRateState) or _learning_rate_scale(x) is not None


def current_learning_rate(opt_state: PyTree) -> Array:
    """The learning rate the next update will apply, read from an optimizer state.

    ``lr = lr_t * s_1 * ... * s_k``: ``lr_t`` is the learning rate recorded by the one
    :class:`~functrain.optim.ScaleByLearningRateState` in ``opt_state`` (the schedule's value at
    the number of updates done, or the constant, traced values included), and ``s_i`` are the
    learning-rate scales held anywhere in the state: the reduce-on-plateau scale of
    :func:`functrain.train.scale_by_plateau` (and of ``optax.contrib.reduce_on_plateau``), and
    that of any state whose class has a ``learning_rate_scale`` attribute. Chains and wrappers
    (``skip_nonfinite``, ``accumulate_gradients``, ``masked``, ``freeze``, ``lookahead`` ...) may
    nest them anywhere. "Next": after ``init`` it is the first update's rate; after ``t`` updates,
    the rate of update ``t + 1`` (with ``accumulate_gradients``, of the next inner step).

    A pure function of the state, so it works under ``jax.jit`` and ``jax.vmap``; a batched state
    (runs vmapped over learning rates or seeds) gives one rate per run. After each epoch of a
    training loop, on the host, ``float(current_learning_rate(state.opt_state))`` (once
    :func:`functrain.train.set_plateau_scale` has written the new scale) is the rate the next
    epoch starts with; read before the epoch, the rate that epoch starts with.

    Args:
        opt_state: an optimizer state holding exactly one ``ScaleByLearningRateState`` (every
            functrain optimizer, chained or wrapped in any way). For :func:`~functrain.optim.
            partition` with several optimizers, pass one group's state,
            ``opt_state.inner_states[label]``.

    Returns:
        A floating array: a scalar, or one value per run for a batched state.

    Raises:
        ValueError: ``opt_state`` holds no ``ScaleByLearningRateState`` (e.g. an optax
            optimizer's state, which does not record its learning rate) or several.

    Example:
        >>> lr = ft.optim.schedules.exponential_decay(0.1, 0.5, transition_steps=2)
        >>> tx = ft.optim.chain(ft.optim.clip_by_global_norm(1.0),
        ...                     ft.optim.skip_nonfinite(ft.optim.adam(lr)), ft.train.scale_by_plateau())
        >>> params = {"w": jnp.zeros(2)}
        >>> state = tx.init(params)
        >>> for _ in range(2):
        ...     _, state = tx.update({"w": jnp.ones(2)}, state, params)
        >>> round(float(ft.optim.current_learning_rate(state)), 4)  # 0.1 * 0.5 ** (2 / 2)
        0.05
        >>> state = ft.train.set_plateau_scale(state, 0.1)  # reduce-on-plateau divided it by 10
        >>> round(float(ft.optim.current_learning_rate(state)), 4)
        0.005
        >>> rates = jax.vmap(lambda r: ft.optim.current_learning_rate(ft.optim.sgd(r).init(params)))
        >>> [round(r, 4) for r in rates(jnp.asarray([0.1, 0.3])).tolist()]  # one per run
        [0.1, 0.3]
    """
    nodes = tree_leaves(opt_state, is_leaf=_is_node)
    rates = [node.learning_rate for node in nodes if isinstance(node, ScaleByLearningRateState)]
    if len(rates) != 1:
        raise ValueError(
            "current_learning_rate: argument 'opt_state' must be the state of an optimizer with "
            "exactly one scale_by_learning_rate (every functrain optimizer; for a partition of "
            "several, pass one group's state, opt_state.inner_states[label]), got a state with "
            f"{len(rates)} ScaleByLearningRateState")
    rate = jnp.asarray(rates[0])
    for node in nodes:
        scale = _learning_rate_scale(node)
        if scale is not None:
            rate = rate * jnp.asarray(scale).astype(rate.dtype)
    return rate
