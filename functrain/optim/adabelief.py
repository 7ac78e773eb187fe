"""AdaBelief: Adam whose step adapts to the belief in the gradient, ``(g - m)^2`` for ``g^2``.

:func:`scale_by_belief` rescales the gradient by the bias-corrected first moment over the root of
the moving average of the squared prediction error ``(g_t - m_t)^2``; :func:`adabelief` chains it
with :func:`~functrain.optim.scale_by_learning_rate`. Conventions follow optax exactly (``eps_root``
added to the state at every step), so results match ``optax`` to float rounding.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax.numpy as jnp

from functrain import _validate
from functrain._tree import tree_map, tree_zeros_like
from functrain.optim._hyper import abs_sq, increment, like, value_at, zero_step
from functrain.optim.adam import _check_adam  # pyright: ignore[reportPrivateUsage]  # shared inside functrain.optim
from functrain.optim.base import (
    GradientTransformation,
    ScaleByLearningRateState,
    chain,
    scale_by_learning_rate,
)
from functrain.typing import Array, PyTree, ScalarOrSchedule

__all__ = ["ScaleByBeliefState", "adabelief", "scale_by_belief"]


class ScaleByBeliefState(NamedTuple):
    """State of :func:`scale_by_belief`.

    Attributes:
        step: int32 scalar, the number of updates done (``t`` of the bias correction).
        mu: first-moment estimate ``m`` (pytree like the params).
        nu: moving average ``s`` of the squared prediction error ``(g - m)^2`` (plus
            ``eps_root`` per step).

    Example:
        >>> state = ft.optim.scale_by_belief().init({"w": jnp.ones(2)})
        >>> int(state.step), state.nu["w"].tolist()
        (0, [0.0, 0.0])
    """

    step: Array
    mu: PyTree
    nu: PyTree


def scale_by_belief(
    b1: ScalarOrSchedule = 0.9,
    b2: ScalarOrSchedule = 0.999,
    eps: float = 1e-16,
    eps_root: float = 1e-16,
) -> GradientTransformation[ScaleByBeliefState]:
    r"""AdaBelief's rescaling: the first moment over the root of the prediction error's variance.

    .. math::

        m_t = \beta_1 m_{t-1} + (1-\beta_1) g_t, \qquad
        s_t = \beta_2 s_{t-1} + (1-\beta_2) |g_t - m_t|^2 + \epsilon_{root}, \\
        u_t = \frac{m_t / (1-\beta_1^t)}{\sqrt{s_t / (1-\beta_2^t)} + \epsilon}

    A gradient close to its prediction ``m_t`` (high "belief") gets a large step, a surprising one
    a small step (Zhuang et al., "AdaBelief Optimizer: Adapting Stepsizes by the Belief in
    Observed Gradients", NeurIPS 2020). Same as ``optax.scale_by_belief``, whose defaults
    (``eps = eps_root = 1e-16``) are the paper's code's; the paper's text has ``eps = 1e-8``.

    Args:
        b1: ``beta_1`` in [0, 1): a number, a scalar array or a schedule.
        b2: ``beta_2`` in [0, 1): a number, a scalar array or a schedule.
        eps: ``epsilon >= 0`` outside the square root.
        eps_root: ``epsilon_root >= 0`` added to ``s`` at every step.

    Returns:
        A :class:`~functrain.optim.GradientTransformation` with :class:`ScaleByBeliefState`.

    Raises:
        TypeError: a hyperparameter of the wrong type.
        ValueError: a beta outside [0, 1) or a negative ``eps`` / ``eps_root``.

    Example:
        >>> tx = ft.optim.scale_by_belief(b1=0.5, b2=0.5, eps=0.0, eps_root=0.0)
        >>> u, state = tx.update({"w": jnp.asarray([2.0])}, tx.init({"w": jnp.zeros(1)}))
        >>> round(float(u["w"][0]), 4)  # m = 1, s = 0.5 * (2 - 1)^2: 2 / sqrt(0.5 / 0.5)
        2.0
    """
    fn = "scale_by_belief"
    _check_adam(fn, b1, b2, eps, eps_root)

    def init(params: PyTree) -> ScaleByBeliefState:
        return ScaleByBeliefState(zero_step(), tree_zeros_like(params), tree_zeros_like(params))

    def update(
        updates: PyTree, state: ScaleByBeliefState, params: PyTree | None = None, **extra_args: Any
    ) -> tuple[PyTree, ScaleByBeliefState]:
        del params, extra_args
        _validate.check_same_structure(state.mu, updates, fn, "updates",
                                       "state.mu (the params given to init)")
        beta1, beta2 = value_at(b1, state.step), value_at(b2, state.step)
        mu = tree_map(lambda g, m: like(1 - beta1, m) * g + like(beta1, m) * m, updates, state.mu)
        nu = tree_map(
            lambda g, m, s: like(1 - beta2, s) * abs_sq(g - m) + like(beta2, s) * s + eps_root,
            updates, mu, state.nu,
        )
        t = increment(state.step)
        c1, c2 = 1 - beta1**t, 1 - beta2**t

        def step(m: Array, s: Array) -> Array:
            return (m / c1.astype(m.dtype)) / (jnp.sqrt(s / c2.astype(s.dtype)) + eps)

        return tree_map(step, mu, nu), ScaleByBeliefState(t, mu, nu)

    return GradientTransformation(init, update)


def adabelief(
    learning_rate: ScalarOrSchedule = 1e-3,
    b1: ScalarOrSchedule = 0.9,
    b2: ScalarOrSchedule = 0.999,
    eps: float = 1e-16,
    eps_root: float = 1e-16,
) -> GradientTransformation[tuple[ScaleByBeliefState, ScaleByLearningRateState]]:
    r"""AdaBelief: ``w <- w - eta m_hat / (sqrt(s_hat) + eps)``, ``s`` the variance of ``g - m``.

    Zhuang et al., NeurIPS 2020; see :func:`scale_by_belief`. Same as ``optax.adabelief``.

    Args:
        learning_rate: ``eta >= 0``: a number, a scalar array or a schedule.
        b1: ``beta_1`` in [0, 1): a number, a scalar array or a schedule.
        b2: ``beta_2`` in [0, 1): a number, a scalar array or a schedule.
        eps: ``epsilon >= 0`` outside the square root.
        eps_root: ``epsilon_root >= 0`` added to ``s`` at every step.

    Returns:
        A :class:`~functrain.optim.GradientTransformation` with state
        ``(ScaleByBeliefState, ScaleByLearningRateState)``.

    Raises:
        TypeError: a hyperparameter of the wrong type.
        ValueError: a concrete hyperparameter out of range.

    Example:
        >>> tx = ft.optim.adabelief(0.01)
        >>> params = {"w": jnp.zeros(2)}
        >>> state = tx.init(params)
        >>> for _ in range(3):  # a constant gradient: full belief, large steps
        ...     u, state = tx.update({"w": jnp.asarray([1.0, -1.0])}, state, params)
        >>> [x > 0.01 for x in jnp.abs(u["w"]).tolist()], int(state[0].step)
        ([True, True], 3)
    """
    _validate.check_hyperparameter(learning_rate, "adabelief", "learning_rate", low=0.0)
    _check_adam("adabelief", b1, b2, eps, eps_root)
    return chain(scale_by_belief(b1, b2, eps, eps_root), scale_by_learning_rate(learning_rate))
