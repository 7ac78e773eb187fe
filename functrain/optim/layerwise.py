"""Layer-wise adaptive rates for large batches: the trust ratio, LARS and LAMB.

:func:`scale_by_trust_ratio` rescales each leaf's update so that its norm is a fixed fraction of
the leaf's parameter norm, ``||w|| / ||u||``; :func:`lars` applies it to (weight-decayed) SGD with
momentum, :func:`lamb` to Adam. Conventions follow optax exactly (the order of the chain, where
the momentum goes in LARS, the zero-norm rule), so results match ``optax`` to float rounding.
"""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp

from functrain import _validate
from functrain._tree import tree_map
from functrain.optim._hyper import abs_sq
from functrain.optim.adam import ScaleByAdamState, _check_adam, scale_by_adam  # pyright: ignore[reportPrivateUsage]  # shared inside functrain.optim
from functrain.optim.base import (
    EmptyState,
    GradientTransformation,
    ScaleByLearningRateState,
    chain,
    init_empty_state,
    require_params,
    scale_by_learning_rate,
)
from functrain.optim.partition import MaskedState, masked
from functrain.optim.sgd import TraceState, trace
from functrain.optim.weight_decay import (
    AddDecayedWeightsState,
    DecayMask,
    add_decayed_weights,
    default_decay_mask,
)
from functrain.typing import Array, PyTree, ScalarOrSchedule

__all__ = ["lamb", "lars", "scale_by_trust_ratio"]


def _check_trust(who: str, min_norm: float | Array, trust_coefficient: float | Array,
                 eps: float | Array) -> None:
    _validate.check_hyperparameter(min_norm, who, "min_norm", low=0.0, schedule_ok=False)
    _validate.check_hyperparameter(trust_coefficient, who, "trust_coefficient", low=0.0,
                                   schedule_ok=False)
    _validate.check_hyperparameter(eps, who, "eps", low=0.0, schedule_ok=False)


def scale_by_trust_ratio(
    min_norm: float | Array = 0.0,
    trust_coefficient: float | Array = 1.0,
    eps: float | Array = 0.0,
) -> GradientTransformation[EmptyState]:
    r"""Rescale each leaf's update by its trust ratio ``eta ||w|| / (||u|| + eps)`` (stateless).

    .. math::

        u \leftarrow u \cdot \frac{\eta \max(\|w\|, n_{min})}{\max(\|u\|, n_{min}) + \epsilon}
        \quad(u \text{ unchanged where either norm is } 0)

    per leaf (layer), ``eta`` the trust coefficient: every layer then moves by the same fraction
    of its own norm (You, Gitman & Ginsburg, "Large Batch Training of Convolutional Networks",
    2017). Needs ``params`` in ``update``. Same as ``optax.scale_by_trust_ratio``.

    Args:
        min_norm: ``n_min >= 0``, a lower bound for both norms.
        trust_coefficient: ``eta >= 0``.
        eps: ``epsilon >= 0`` added to the update norm.

    Returns:
        A :class:`~functrain.optim.GradientTransformation` with
        :class:`~functrain.optim.EmptyState`.

    Raises:
        TypeError: a hyperparameter of the wrong type; at update, ``params`` missing or of a
            different tree structure than the updates.
        ValueError: a negative concrete hyperparameter.

    Example:
        >>> tx = ft.optim.scale_by_trust_ratio()
        >>> params = {"w": jnp.asarray([3.0, 4.0]), "zero": jnp.zeros(2)}
        >>> u, _ = tx.update({"w": jnp.asarray([0.0, 10.0]), "zero": jnp.ones(2)}, tx.init(params),
        ...                  params)
        >>> u["w"].tolist(), u["zero"].tolist()  # rescaled to ||w|| = 5; a zero norm: unchanged
        ([0.0, 5.0], [1.0, 1.0])
    """
    fn = "scale_by_trust_ratio"
    _check_trust(fn, min_norm, trust_coefficient, eps)

    def scaled(u: Array, p: Array) -> Array:
        p_norm = jnp.maximum(jnp.sqrt(jnp.sum(abs_sq(p))), min_norm)
        u_norm = jnp.maximum(jnp.sqrt(jnp.sum(abs_sq(u))), min_norm)
        ratio = trust_coefficient * p_norm / (u_norm + eps)
        zero = jnp.logical_or(p_norm == 0.0, u_norm == 0.0)
        return u * jnp.where(zero, jnp.ones((), p.dtype), ratio)

    def update(
        updates: PyTree, state: EmptyState, params: PyTree | None = None, **extra_args: Any
    ) -> tuple[PyTree, EmptyState]:
        del extra_args
        return tree_map(scaled, updates, require_params(fn, updates, params)), state

    return GradientTransformation(init_empty_state, update)


def lamb(
    learning_rate: ScalarOrSchedule = 1e-3,
    b1: ScalarOrSchedule = 0.9,
    b2: ScalarOrSchedule = 0.999,
    eps: float = 1e-6,
    eps_root: float = 0.0,
    weight_decay: ScalarOrSchedule = 0.0,
    mask: DecayMask = default_decay_mask,
) -> GradientTransformation[
    tuple[ScaleByAdamState, AddDecayedWeightsState, EmptyState, ScaleByLearningRateState]
]:
    r"""LAMB: Adam's direction plus decoupled weight decay, rescaled per layer by its trust ratio.

    .. math::

        r_t = \text{adam}_t + \lambda w, \qquad
        w \leftarrow w - \eta \frac{\|w\|}{\|r_t\|} r_t \quad\text{(per leaf)}

    (You et al., "Large Batch Optimization for Deep Learning: Training BERT in 76 minutes", ICLR
    2020.) ``chain(scale_by_adam, add_decayed_weights, scale_by_trust_ratio,
    scale_by_learning_rate)``, as ``optax.lamb`` with the same ``mask``; by default only the
    weights are decayed (:func:`~functrain.optim.default_decay_mask`), ``mask=None`` decays every
    leaf.

    Args:
        learning_rate: ``eta >= 0``: a number, a scalar array or a schedule.
        b1: ``beta_1`` in [0, 1): a number, a scalar array or a schedule.
        b2: ``beta_2`` in [0, 1): a number, a scalar array or a schedule.
        eps: ``epsilon >= 0`` outside Adam's square root.
        eps_root: ``epsilon_root >= 0`` inside it.
        weight_decay: ``lambda >= 0``: a number, a scalar array or a schedule.
        mask: which leaves to decay: a pytree of bools (a prefix of the params), a function of the
            params returning one, or ``None`` for all leaves.

    Returns:
        A :class:`~functrain.optim.GradientTransformation` with state
        ``(ScaleByAdamState, AddDecayedWeightsState, EmptyState, ScaleByLearningRateState)``.

    Raises:
        TypeError: a hyperparameter of the wrong type.
        ValueError: a concrete hyperparameter out of range.

    Example:
        >>> tx = ft.optim.lamb(0.1)
        >>> params = {"w": jnp.full((2, 2), 2.0)}  # ||w|| = 4: the first step has norm 0.1 * 4
        >>> u, state = tx.update({"w": jnp.ones((2, 2))}, tx.init(params), params)
        >>> round(float(jnp.linalg.norm(u["w"])), 4)
        0.4
    """
    fn = "lamb"
    _validate.check_hyperparameter(learning_rate, fn, "learning_rate", low=0.0)
    _check_adam(fn, b1, b2, eps, eps_root)
    _validate.check_hyperparameter(weight_decay, fn, "weight_decay", low=0.0)
    return chain(
        scale_by_adam(b1, b2, eps, eps_root),
        add_decayed_weights(weight_decay, mask),
        scale_by_trust_ratio(),
        scale_by_learning_rate(learning_rate),
    )


def lars(
    learning_rate: ScalarOrSchedule,
    weight_decay: ScalarOrSchedule = 0.0,
    weight_decay_mask: DecayMask = default_decay_mask,
    trust_coefficient: float | Array = 0.001,
    eps: float | Array = 0.0,
    trust_ratio_mask: DecayMask = default_decay_mask,
    momentum: ScalarOrSchedule = 0.9,
    nesterov: bool = False,
) -> GradientTransformation[
    tuple[AddDecayedWeightsState, MaskedState[EmptyState], ScaleByLearningRateState, TraceState]
]:
    r"""LARS: SGD with momentum whose per-layer step is the trust ratio times the learning rate.

    .. math::

        r_t = \frac{\eta_{trust} \|w\|}{\|g_t + \lambda w\| + \epsilon} (g_t + \lambda w), \qquad
        v_t = \gamma v_{t-1} - \eta_t r_t, \qquad w \leftarrow w + v_t

    (You, Gitman & Ginsburg, "Large Batch Training of Convolutional Networks", 2017.)
    ``chain(add_decayed_weights, masked(scale_by_trust_ratio), scale_by_learning_rate, trace)``,
    as ``optax.lars`` with the same masks (the momentum acts on the learning-rate-scaled steps).
    By default the weight decay and the trust ratio apply to the weights only (floating or complex
    leaves with ``ndim >= 2``, :func:`~functrain.optim.default_decay_mask`), as is common practice;
    biases and normalization parameters then take plain momentum-SGD steps. Pass ``None`` for
    optax's default (every leaf).

    Args:
        learning_rate: ``eta_t >= 0``: a number, a scalar array or a schedule.
        weight_decay: ``lambda >= 0``: a number, a scalar array or a schedule.
        weight_decay_mask: which leaves to decay (pytree of bools, function or ``None`` for all).
        trust_coefficient: ``eta_trust >= 0``.
        eps: ``epsilon >= 0`` in the trust ratio's denominator.
        trust_ratio_mask: which leaves the trust ratio rescales (pytree of bools, function or
            ``None`` for all).
        momentum: ``gamma`` in [0, 1): a number, a scalar array or a schedule.
        nesterov: use Nesterov momentum.

    Returns:
        A :class:`~functrain.optim.GradientTransformation` with state
        ``(AddDecayedWeightsState, MaskedState[EmptyState], ScaleByLearningRateState,
        TraceState)``.

    Raises:
        TypeError: a hyperparameter of the wrong type; a mask leaf that is not a bool.
        ValueError: a concrete hyperparameter out of range.

    Example:
        >>> tx = ft.optim.lars(1.0, trust_coefficient=0.01)
        >>> params = {"w": jnp.full((2, 2), 2.0), "b": jnp.zeros(2)}
        >>> grads = {"w": jnp.full((2, 2), 100.0), "b": jnp.ones(2)}
        >>> u, state = tx.update(grads, tx.init(params), params)
        >>> round(float(jnp.linalg.norm(u["w"])), 4), u["b"].tolist()  # 0.01 * ||w||; -lr * g
        (0.04, [-1.0, -1.0])
    """
    fn = "lars"
    _validate.check_hyperparameter(learning_rate, fn, "learning_rate", low=0.0)
    _validate.check_hyperparameter(weight_decay, fn, "weight_decay", low=0.0)
    _check_trust(fn, 0.0, trust_coefficient, eps)
    _validate.check_hyperparameter(momentum, fn, "momentum", low=0.0, high=1.0, high_open=True)
    _validate.check_bool(nesterov, fn, "nesterov")
    ratio_mask: Any = True if trust_ratio_mask is None else trust_ratio_mask
    return chain(
        add_decayed_weights(weight_decay, weight_decay_mask),
        masked(scale_by_trust_ratio(trust_coefficient=trust_coefficient, eps=eps), ratio_mask),
        scale_by_learning_rate(learning_rate),
        trace(momentum, nesterov),
    )
