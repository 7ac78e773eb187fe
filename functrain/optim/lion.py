"""Lion: the sign of an interpolated momentum (Chen et al. 2023).

:func:`scale_by_lion` keeps one moment and outputs ``sign(beta_1 m + (1 - beta_1) g)``, every
coordinate a step of size one; :func:`lion` adds decoupled weight decay and the learning rate.
Conventions follow optax exactly, so results match ``optax`` to float rounding.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax.numpy as jnp

from functrain import _validate
from functrain._tree import tree_map, tree_zeros_like
from functrain.optim._hyper import increment, like, value_at, zero_step
from functrain.optim.base import (
    GradientTransformation,
    ScaleByLearningRateState,
    chain,
    scale_by_learning_rate,
)
from functrain.optim.weight_decay import (
    AddDecayedWeightsState,
    DecayMask,
    add_decayed_weights,
    default_decay_mask,
)
from functrain.typing import Array, PyTree, ScalarOrSchedule

__all__ = ["ScaleByLionState", "lion", "scale_by_lion"]


def _check_lion(who: str, b1: ScalarOrSchedule, b2: ScalarOrSchedule) -> None:
    _validate.check_hyperparameter(b1, who, "b1", low=0.0, high=1.0)
    _validate.check_hyperparameter(b2, who, "b2", low=0.0, high=1.0, high_open=True)


class ScaleByLionState(NamedTuple):
    """State of :func:`scale_by_lion`.

    Attributes:
        step: int32 scalar, the number of updates done (the argument of beta schedules).
        mu: the momentum ``m`` (pytree like the params).

    Example:
        >>> state = ft.optim.scale_by_lion().init({"w": jnp.ones(2)})
        >>> int(state.step), state.mu["w"].tolist()
        (0, [0.0, 0.0])
    """

    step: Array
    mu: PyTree


def scale_by_lion(
    b1: ScalarOrSchedule = 0.9, b2: ScalarOrSchedule = 0.99
) -> GradientTransformation[ScaleByLionState]:
    r"""Lion's rescaling: the sign of an interpolation between the momentum and the gradient.

    .. math::

        u_t = \operatorname{sign}(\beta_1 m_{t-1} + (1-\beta_1) g_t), \qquad
        m_t = \beta_2 m_{t-1} + (1-\beta_2) g_t

    (Chen et al., "Symbolic Discovery of Optimization Algorithms", NeurIPS 2023.) Every entry of
    the output is -1, 0 or 1. Same as ``optax.scale_by_lion`` (its ``"hard"`` mode).

    Args:
        b1: ``beta_1`` in [0, 1], the interpolation weight of the momentum: a number, a scalar
            array or a schedule.
        b2: ``beta_2`` in [0, 1), the momentum's decay: a number, a scalar array or a schedule.

    Returns:
        A :class:`~functrain.optim.GradientTransformation` with :class:`ScaleByLionState`.

    Raises:
        TypeError: a hyperparameter of the wrong type.
        ValueError: a beta out of range.

    Example:
        >>> tx = ft.optim.scale_by_lion()
        >>> u, state = tx.update({"w": jnp.asarray([0.3, -5.0, 0.0])}, tx.init({"w": jnp.zeros(3)}))
        >>> u["w"].tolist(), [round(x, 4) for x in state.mu["w"].tolist()]
        ([1.0, -1.0, 0.0], [0.003, -0.05, 0.0])
    """
    fn = "scale_by_lion"
    _check_lion(fn, b1, b2)

    def init(params: PyTree) -> ScaleByLionState:
        return ScaleByLionState(zero_step(), tree_zeros_like(params))

    def update(
        updates: PyTree, state: ScaleByLionState, params: PyTree | None = None, **extra_args: Any
    ) -> tuple[PyTree, ScaleByLionState]:
        del params, extra_args
        _validate.check_same_structure(state.mu, updates, fn, "updates",
                                       "state.mu (the params given to init)")
        beta1, beta2 = value_at(b1, state.step), value_at(b2, state.step)
        new = tree_map(lambda g, m: jnp.sign(like(1 - beta1, m) * g + like(beta1, m) * m),
                       updates, state.mu)
        mu = tree_map(lambda g, m: like(1 - beta2, m) * g + like(beta2, m) * m, updates, state.mu)
        return new, ScaleByLionState(increment(state.step), mu)

    return GradientTransformation(init, update)


def lion(
    learning_rate: ScalarOrSchedule = 1e-4,
    b1: ScalarOrSchedule = 0.9,
    b2: ScalarOrSchedule = 0.99,
    weight_decay: ScalarOrSchedule = 1e-3,
    mask: DecayMask = default_decay_mask,
) -> GradientTransformation[
    tuple[ScaleByLionState, AddDecayedWeightsState, ScaleByLearningRateState]
]:
    r"""Lion: ``w <- w - eta (sign(b1 m + (1 - b1) g) + lambda w)``, ``m <- b2 m + (1 - b2) g``.

    Chen et al., NeurIPS 2023; see :func:`scale_by_lion`. Its steps are larger than Adam's (every
    coordinate moves by ``eta``), so its learning rate is typically 3-10x smaller and its weight
    decay 3-10x larger. As in optax and :func:`~functrain.optim.adamw`, the decay is multiplied by
    the learning rate. Same as ``optax.lion`` with the same ``mask``; by default only the weights
    (:func:`~functrain.optim.default_decay_mask`) are decayed, ``mask=None`` decays every leaf.

    Args:
        learning_rate: ``eta >= 0``: a number, a scalar array or a schedule.
        b1: ``beta_1`` in [0, 1]: a number, a scalar array or a schedule.
        b2: ``beta_2`` in [0, 1): a number, a scalar array or a schedule.
        weight_decay: ``lambda >= 0``: a number, a scalar array or a schedule.
        mask: which leaves to decay: a pytree of bools (a prefix of the params), a function of the
            params returning one, or ``None`` for all leaves.

    Returns:
        A :class:`~functrain.optim.GradientTransformation` with state
        ``(ScaleByLionState, AddDecayedWeightsState, ScaleByLearningRateState)``.

    Raises:
        TypeError: a hyperparameter of the wrong type.
        ValueError: a concrete hyperparameter out of range.

    Example:
        >>> tx = ft.optim.lion(0.01, weight_decay=0.0)
        >>> params = {"w": jnp.ones((2, 2))}
        >>> u, state = tx.update({"w": jnp.asarray([[3.0, -1e-3], [5e-3, 2.0]])},
        ...                      tx.init(params), params)
        >>> [[round(x, 4) for x in row] for row in u["w"].tolist()]  # -lr * sign(g), any size of g
        [[-0.01, 0.01], [-0.01, -0.01]]
    """
    _validate.check_hyperparameter(learning_rate, "lion", "learning_rate", low=0.0)
    _check_lion("lion", b1, b2)
    _validate.check_hyperparameter(weight_decay, "lion", "weight_decay", low=0.0)
    return chain(
        scale_by_lion(b1, b2),
        add_decayed_weights(weight_decay, mask),
        scale_by_learning_rate(learning_rate),
    )
