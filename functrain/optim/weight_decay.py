"""Decoupled weight decay with masks.

:func:`add_decayed_weights` adds ``lambda * w`` to the updates, so that after
:func:`~functrain.optim.scale_by_learning_rate` the step is ``w <- w - eta (u + lambda w)``
(Loshchilov & Hutter, "Decoupled Weight Decay Regularization", ICLR 2019; Krogh & Hertz, "A
Simple Weight Decay Can Improve Generalization", NIPS 1991). Masks (:data:`DecayMask`) choose
which leaves decay; :func:`default_decay_mask` decays weight matrices and kernels but not biases
or normalization scales. The loss-side penalties (L2 / L1 added to the loss) live in
:mod:`functrain.losses`.

Example:
    >>> from functrain.optim.weight_decay import DecayMask
    >>> params = {"w": jnp.ones((2, 2)), "b": jnp.ones(2)}
    >>> only_w: DecayMask = {"w": True, "b": False}
    >>> tx = ft.optim.add_decayed_weights(0.1, only_w)
    >>> u, _ = tx.update({"w": jnp.zeros((2, 2)), "b": jnp.zeros(2)}, tx.init(params), params)
    >>> round(float(u["w"][0, 0]), 4), round(float(u["b"][0]), 4)
    (0.1, 0.0)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple, TypeAlias

import jax.numpy as jnp

from functrain import _tree, _validate
from functrain._tree import is_kernel, tree_leaves, tree_map
from functrain.optim._hyper import increment, like, value_at, zero_step
from functrain.optim.base import GradientTransformation, require_params
from functrain.typing import Array, PyTree, ScalarOrSchedule

__all__ = [
    "AddDecayedWeightsState",
    "DecayMask",
    "add_decayed_weights",
    "default_decay_mask",
]

DecayMask: TypeAlias = PyTree | Callable[[PyTree], PyTree] | None
"""Which leaves to decay: a pytree of bools with the params' structure (or a prefix of it; a bool
may also be a boolean array broadcastable to its leaf), a function ``params -> such a pytree``, or
``None`` for every leaf."""


def default_decay_mask(params: PyTree) -> PyTree:
    """The default weight-decay mask: ``True`` for the weights (inexact arrays with ``ndim >= 2``).

    Decays dense weight matrices ``(in, out)`` and conv kernels (HWIO), not biases or
    normalization scales/offsets (vectors), scalars or integer arrays, following common practice
    (e.g. Goyal et al. 2017, "Accurate, Large Minibatch SGD", sec. 5.1; BERT/AdamW recipes). The
    rule is the library's one "is this a weight" rule, :func:`functrain._tree.is_kernel`.

    Args:
        params: a pytree of arrays.

    Returns:
        A pytree of Python bools with the structure of ``params``.

    Example:
        >>> ft.optim.default_decay_mask({"w": jnp.ones((3, 2)), "b": jnp.ones(2)})
        {'b': False, 'w': True}
    """
    return tree_map(lambda p: bool(is_kernel(p)), params)


def _is_mask_function(mask: DecayMask) -> bool:
    """Whether ``mask`` is a function of the params rather than a pytree of bools.

    A callable pytree of bools (an ``equinox.Module`` with a ``__call__``) is a mask tree, not a
    function: the test is that every leaf is callable (optax's rule).
    """
    leaves = tree_leaves(mask)
    return callable(mask) and len(leaves) > 0 and all(callable(leaf) for leaf in leaves)


def _masked_leaf(flag: Any, g: Any, p: Any, decay: Callable[[Any, Any], Any]) -> Any:
    """Apply ``decay`` to the subtree ``(g, p)`` where the mask leaf ``flag`` says so."""
    if _tree.is_bool(flag):
        return tree_map(decay, g, p) if flag else g
    if _tree.is_array(flag) and flag.dtype == jnp.bool_:
        return tree_map(lambda gi, pi: jnp.where(flag, decay(gi, pi), gi), g, p)
    _validate.fail("add_decayed_weights", "mask", "a pytree of bools or boolean arrays", flag,
                   error=TypeError)


class AddDecayedWeightsState(NamedTuple):
    """State of :func:`add_decayed_weights`.

    Attributes:
        step: int32 scalar, the number of updates done (the argument of a ``weight_decay``
            schedule).

    Example:
        >>> state = ft.optim.add_decayed_weights(1e-4).init({"w": jnp.ones((2, 2))})
        >>> int(state.step), state.step.dtype
        (0, dtype('int32'))
    """

    step: Array


def _init_step(params: PyTree) -> AddDecayedWeightsState:
    del params
    return AddDecayedWeightsState(step=zero_step())


def add_decayed_weights(
    weight_decay: ScalarOrSchedule, mask: DecayMask = None
) -> GradientTransformation[AddDecayedWeightsState]:
    r"""Decoupled weight decay: ``u <- u + lambda w`` on the masked leaves.

    Put it before :func:`~functrain.optim.scale_by_learning_rate` so that the step becomes
    ``w <- w - eta (u + lambda w)`` (AdamW, Loshchilov & Hutter 2019). Needs ``params`` in
    ``update``. ``mask=None`` decays every leaf (as ``optax.add_decayed_weights``); pass
    :func:`default_decay_mask` to spare biases and normalization parameters.

    Args:
        weight_decay: ``lambda >= 0``: a number, a scalar array or a schedule (evaluated at the
            number of updates done).
        mask: a pytree of bools (or boolean arrays) with the params' structure or a prefix of it,
            a function of the params returning one, or ``None`` for every leaf.

    Returns:
        A :class:`~functrain.optim.GradientTransformation` with :class:`AddDecayedWeightsState`.

    Raises:
        TypeError: ``weight_decay`` of the wrong type; at update, ``params`` missing or with a
            different tree structure than the updates, or a mask that does not fit the params.
        ValueError: a concrete ``weight_decay < 0``.

    Example:
        >>> tx = ft.optim.add_decayed_weights(0.5, ft.optim.default_decay_mask)
        >>> params = {"w": jnp.full((2, 2), 2.0), "b": jnp.full(2, 2.0)}
        >>> grads = {"w": jnp.zeros((2, 2)), "b": jnp.zeros(2)}
        >>> u, state = tx.update(grads, tx.init(params), params)
        >>> float(u["w"][0, 0]), float(u["b"][0]), int(state.step)
        (1.0, 0.0, 1)
    """
    fn = "add_decayed_weights"
    _validate.check_hyperparameter(weight_decay, fn, "weight_decay", low=0.0)
    is_zero = isinstance(weight_decay, (int, float)) and weight_decay == 0.0

    def update(
        updates: PyTree, state: AddDecayedWeightsState, params: PyTree | None = None,
        **extra_args: Any,
    ) -> tuple[PyTree, AddDecayedWeightsState]:
        del extra_args
        params = require_params(fn, updates, params)
        new_state = AddDecayedWeightsState(step=increment(state.step))
        if is_zero:
            return updates, new_state
        wd = value_at(weight_decay, state.step)

        def decay(g: Array, p: Array) -> Array:
            return g + like(wd, g) * p

        if mask is None:
            return tree_map(decay, updates, params), new_state
        mask_tree = mask(params) if _is_mask_function(mask) else mask
        try:
            def masked(m: Any, g: Any, p: Any) -> Any:  # m: a mask leaf; g, p: subtrees
                return _masked_leaf(m, g, p, decay)

            new = tree_map(masked, mask_tree, updates, params)
        except ValueError as err:
            _validate.fail(fn, "mask", "a pytree with the structure of the params (or a prefix "
                           "of it)", mask_tree, error=TypeError, detail=str(err))
        return new, new_state

    return GradientTransformation(_init_step, update)
