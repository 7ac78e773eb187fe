"""Adaptive per-coordinate step sizes from squared gradients: Adagrad and RMSProp.

Building blocks rescale the gradient coordinate-wise by statistics of past squared gradients
(:func:`scale_by_adagrad`: their sum; :func:`scale_by_rms`: their moving average); the optimizers
:func:`adagrad` and :func:`rmsprop` chain them with
:func:`~functrain.optim.scale_by_learning_rate`. Adam and AdamW (which add a first moment) are in
:mod:`functrain.optim.adam`. Conventions follow optax exactly, so results match ``optax`` to
float rounding.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from functrain import _validate
from functrain._tree import tree_map, tree_zeros_like
from functrain.optim._hyper import abs_sq, increment, like, value_at, zero_step
from functrain.optim.base import (
    GradientTransformation,
    ScaleByLearningRateState,
    chain,
    scale_by_learning_rate,
)
from functrain.typing import Array, PyTree, ScalarOrSchedule

__all__ = [
    "ScaleByAdagradState",
    "ScaleByRmsState",
    "adagrad",
    "rmsprop",
    "scale_by_adagrad",
    "scale_by_rms",
]


def _check_adagrad(who: str, initial_accumulator_value: float, eps: float) -> None:
    _validate.check_hyperparameter(initial_accumulator_value, who, "initial_accumulator_value",
                                   low=0.0, schedule_ok=False)
    _validate.check_hyperparameter(eps, who, "eps", low=0.0, schedule_ok=False)


def _check_rms(who: str, decay: ScalarOrSchedule, eps: float, initial_scale: float,
               centered: bool) -> None:
    _validate.check_hyperparameter(decay, who, "decay", low=0.0, high=1.0, high_open=True)
    _validate.check_hyperparameter(eps, who, "eps", low=0.0, schedule_ok=False)
    _validate.check_hyperparameter(initial_scale, who, "initial_scale", low=0.0,
                                   schedule_ok=False)
    _validate.check_bool(centered, who, "centered")


class ScaleByAdagradState(NamedTuple):
    """State of :func:`scale_by_adagrad`.

    Attributes:
        sum_of_squares: ``G_t``, the running sum of squared gradients (pytree like the params).

    Example:
        >>> state = ft.optim.scale_by_adagrad(0.1).init({"w": jnp.ones(2)})
        >>> [round(x, 4) for x in state.sum_of_squares["w"].tolist()]
        [0.1, 0.1]
    """

    sum_of_squares: PyTree


def scale_by_adagrad(
    initial_accumulator_value: float = 0.1, eps: float = 1e-7
) -> GradientTransformation[ScaleByAdagradState]:
    r"""Adagrad's rescaling: divide by the root of the sum of all squared gradients so far.

    .. math::

        G_t = G_{t-1} + |g_t|^2, \qquad u_t = g_t / \sqrt{G_t + \epsilon}
        \quad (u_t = 0 \text{ where } G_t = 0)

    with ``G_0 = initial_accumulator_value`` (Duchi, Hazan & Singer, "Adaptive Subgradient
    Methods for Online Learning and Stochastic Optimization", JMLR 2011). Same as
    ``optax.scale_by_rss``.

    Args:
        initial_accumulator_value: ``G_0 >= 0``.
        eps: ``epsilon >= 0`` inside the square root.

    Returns:
        A :class:`~functrain.optim.GradientTransformation` with :class:`ScaleByAdagradState`.

    Raises:
        TypeError: a hyperparameter of the wrong type.
        ValueError: a negative ``initial_accumulator_value`` or ``eps``.

    Example:
        >>> tx = ft.optim.scale_by_adagrad(initial_accumulator_value=0.0, eps=0.0)
        >>> u, state = tx.update({"w": jnp.asarray([2.0, 0.0])}, tx.init({"w": jnp.zeros(2)}))
        >>> u["w"].tolist(), state.sum_of_squares["w"].tolist()
        ([1.0, 0.0], [4.0, 0.0])
    """
    fn = "scale_by_adagrad"
    _check_adagrad(fn, initial_accumulator_value, eps)

    def init(params: PyTree) -> ScaleByAdagradState:
        return ScaleByAdagradState(
            tree_map(lambda p: jnp.full_like(p, initial_accumulator_value), params)
        )

    def update(
        updates: PyTree, state: ScaleByAdagradState, params: PyTree | None = None, **extra_args: Any
    ) -> tuple[PyTree, ScaleByAdagradState]:
        del params, extra_args
        _validate.check_same_structure(state.sum_of_squares, updates, fn, "updates",
                                       "state.sum_of_squares (the params given to init)")
        ss = tree_map(lambda g, t: abs_sq(g) + t, updates, state.sum_of_squares)
        inv = tree_map(lambda t: jnp.where(t > 0, jax.lax.rsqrt(t + eps), 0.0), ss)
        return tree_map(lambda s, g: s * g, inv, updates), ScaleByAdagradState(ss)

    return GradientTransformation(init, update)


class ScaleByRmsState(NamedTuple):
    """State of :func:`scale_by_rms`.

    Attributes:
        step: int32 scalar, the number of updates done (the argument of a ``decay`` schedule).
        mu: moving average of the gradients (``centered=True`` only, else ``None``).
        nu: moving average of the squared gradients.

    Example:
        >>> state = ft.optim.scale_by_rms(initial_scale=1.0).init({"w": jnp.zeros(2)})
        >>> int(state.step), state.mu, state.nu["w"].tolist()
        (0, None, [1.0, 1.0])
    """

    step: Array
    mu: PyTree | None
    nu: PyTree


def scale_by_rms(
    decay: ScalarOrSchedule = 0.9,
    eps: float = 1e-8,
    initial_scale: float = 0.0,
    centered: bool = False,
) -> GradientTransformation[ScaleByRmsState]:
    r"""RMSProp's rescaling by the root of a moving average of squared gradients.

    .. math::

        \nu_t = \rho \nu_{t-1} + (1-\rho) |g_t|^2, \qquad u_t = g_t / \sqrt{\nu_t + \epsilon}

    Centered (Graves 2013): also track ``mu_t = rho mu_{t-1} + (1-rho) g_t`` and divide by
    ``sqrt(nu_t - |mu_t|^2 + eps)``, the standard deviation. (Tieleman & Hinton, Coursera lecture
    6.5, 2012.) Same as ``optax.scale_by_rms`` / ``optax.scale_by_stddev`` (eps inside the root).

    Args:
        decay: ``rho`` in [0, 1): a number, a scalar array or a schedule.
        eps: ``epsilon >= 0``.
        initial_scale: ``nu_0 >= 0``.
        centered: divide by the standard deviation instead of the root mean square.

    Returns:
        A :class:`~functrain.optim.GradientTransformation` with :class:`ScaleByRmsState`.

    Raises:
        TypeError: a hyperparameter of the wrong type.
        ValueError: ``decay`` outside [0, 1) or negative ``eps`` / ``initial_scale``.

    Example:
        >>> tx = ft.optim.scale_by_rms(decay=0.75, eps=0.0)
        >>> u, state = tx.update({"w": jnp.asarray([2.0])}, tx.init({"w": jnp.zeros(1)}))
        >>> u["w"].tolist(), state.nu["w"].tolist(), int(state.step)  # 2 / sqrt(0.25 * 4)
        ([2.0], [1.0], 1)
    """
    fn = "scale_by_rms"
    _check_rms(fn, decay, eps, initial_scale, centered)

    def init(params: PyTree) -> ScaleByRmsState:
        return ScaleByRmsState(
            step=zero_step(),
            mu=tree_zeros_like(params) if centered else None,
            nu=tree_map(lambda p: jnp.full_like(p, initial_scale), params),
        )

    def update(
        updates: PyTree, state: ScaleByRmsState, params: PyTree | None = None, **extra_args: Any
    ) -> tuple[PyTree, ScaleByRmsState]:
        del params, extra_args
        _validate.check_same_structure(state.nu, updates, fn, "updates",
                                       "state.nu (the params given to init)")
        d = value_at(decay, state.step)
        nu = tree_map(lambda g, t: like(1 - d, t) * abs_sq(g) + like(d, t) * t, updates, state.nu)
        mu = None
        if centered:
            mu = tree_map(lambda g, t: like(1 - d, t) * g + like(d, t) * t, updates, state.mu)
            scaling = tree_map(lambda m, n: jax.lax.rsqrt(n - abs_sq(m) + eps), mu, nu)
        else:
            scaling = tree_map(lambda n: jax.lax.rsqrt(n + eps), nu)
        updates = tree_map(lambda s, g: s * g, scaling, updates)
        return updates, ScaleByRmsState(step=increment(state.step), mu=mu, nu=nu)

    return GradientTransformation(init, update)


def adagrad(
    learning_rate: ScalarOrSchedule, initial_accumulator_value: float = 0.1, eps: float = 1e-7
) -> GradientTransformation[tuple[ScaleByAdagradState, ScaleByLearningRateState]]:
    r"""Adagrad: ``G <- G + g^2,  w <- w - eta g / sqrt(G + eps)``.

    Duchi, Hazan & Singer, JMLR 2011; see :func:`scale_by_adagrad`. Same as ``optax.adagrad``.

    Args:
        learning_rate: ``eta >= 0``: a number, a scalar array or a schedule.
        initial_accumulator_value: ``G_0 >= 0``.
        eps: ``epsilon >= 0``.

    Returns:
        A :class:`~functrain.optim.GradientTransformation` with state
        ``(ScaleByAdagradState, ScaleByLearningRateState)``.

    Raises:
        TypeError: a hyperparameter of the wrong type.
        ValueError: a negative concrete hyperparameter.

    Example:
        >>> tx = ft.optim.adagrad(0.5, initial_accumulator_value=0.0, eps=0.0)
        >>> params = {"w": jnp.zeros(2)}
        >>> u, state = tx.update({"w": jnp.asarray([3.0, -4.0])}, tx.init(params), params)
        >>> u["w"].tolist()  # the first step is -lr * sign(g)
        [-0.5, 0.5]
    """
    _validate.check_hyperparameter(learning_rate, "adagrad", "learning_rate", low=0.0)
    _check_adagrad("adagrad", initial_accumulator_value, eps)
    return chain(
        scale_by_adagrad(initial_accumulator_value, eps), scale_by_learning_rate(learning_rate)
    )


def rmsprop(
    learning_rate: ScalarOrSchedule,
    decay: ScalarOrSchedule = 0.9,
    eps: float = 1e-8,
    initial_scale: float = 0.0,
    centered: bool = False,
) -> GradientTransformation[tuple[ScaleByRmsState, ScaleByLearningRateState]]:
    r"""RMSProp: ``nu <- rho nu + (1-rho) g^2,  w <- w - eta g / sqrt(nu + eps)``.

    Tieleman & Hinton 2012 (centered: Graves 2013); see :func:`scale_by_rms`. Same as
    ``optax.rmsprop`` without momentum.

    Args:
        learning_rate: ``eta >= 0``: a number, a scalar array or a schedule.
        decay: ``rho`` in [0, 1): a number, a scalar array or a schedule.
        eps: ``epsilon >= 0``.
        initial_scale: ``nu_0 >= 0``.
        centered: divide by the standard deviation of the gradients instead of their RMS.

    Returns:
        A :class:`~functrain.optim.GradientTransformation` with state
        ``(ScaleByRmsState, ScaleByLearningRateState)``.

    Raises:
        TypeError: a hyperparameter of the wrong type.
        ValueError: a concrete hyperparameter out of range.

    Example:
        >>> tx = ft.optim.rmsprop(0.1, decay=0.75, eps=0.0)
        >>> params = {"w": jnp.zeros(1)}
        >>> u, state = tx.update({"w": jnp.asarray([2.0])}, tx.init(params), params)
        >>> round(float(u["w"][0]), 4), int(state[1].step)
        (-0.2, 1)
    """
    _validate.check_hyperparameter(learning_rate, "rmsprop", "learning_rate", low=0.0)
    _check_rms("rmsprop", decay, eps, initial_scale, centered)
    return chain(
        scale_by_rms(decay, eps, initial_scale, centered), scale_by_learning_rate(learning_rate)
    )
