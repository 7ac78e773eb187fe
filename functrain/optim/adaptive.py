"""Adaptive per-coordinate step sizes: Adagrad, RMSProp, Adam (with AMSGrad) and AdamW.

Building blocks rescale the gradient coordinate-wise by statistics of past gradients
(:func:`scale_by_adagrad`, :func:`scale_by_rms`, :func:`scale_by_adam`); optimizers chain them
with :func:`~functrain.optim.scale_by_learning_rate` (and decoupled weight decay for
:func:`adamw`). Conventions follow optax exactly, so results match ``optax`` to float rounding.
"""

from __future__ import annotations

from typing import Literal, NamedTuple, overload

import jax
import jax.numpy as jnp

from functrain._tree import tree_map, tree_zeros_like
from functrain.optim._hyper import (
    check_scalar,
    check_updates,
    increment,
    is_schedule,
    like,
    value_at,
)
from functrain.optim.base import GradientTransformation, ScaleByLearningRateState, chain
from functrain.optim.base import scale_by_learning_rate
from functrain.optim.weight_decay import (
    AddDecayedWeightsState,
    DecayMask,
    add_decayed_weights,
    default_decay_mask,
)
from functrain.typing import Array, PyTree, ScalarOrSchedule

__all__ = [
    "ScaleByAdagradState",
    "ScaleByAdamState",
    "ScaleByAmsgradState",
    "ScaleByRmsState",
    "adagrad",
    "adam",
    "adamw",
    "rmsprop",
    "scale_by_adagrad",
    "scale_by_adam",
    "scale_by_rms",
]


class ScaleByAdagradState(NamedTuple):
    """State of :func:`scale_by_adagrad`.

    Attributes:
      sum_of_squares: ``G_t``, the running sum of squared gradients (pytree like the params).
    """

    sum_of_squares: PyTree


class ScaleByRmsState(NamedTuple):
    """State of :func:`scale_by_rms`.

    Attributes:
      step: int32 scalar update counter, kept only when ``decay`` is a schedule (else ``None``).
      mu: moving average of the gradients (``centered=True`` only, else ``None``).
      nu: moving average of the squared gradients.
    """

    step: Array | None
    mu: PyTree | None
    nu: PyTree


class ScaleByAdamState(NamedTuple):
    """State of :func:`scale_by_adam`.

    Attributes:
      step: int32 scalar, the number of updates done (``t`` of the bias correction).
      mu: first-moment estimate ``m`` (pytree like the params).
      nu: second-moment estimate ``v``.
    """

    step: Array
    mu: PyTree
    nu: PyTree


class ScaleByAmsgradState(NamedTuple):
    """State of :func:`scale_by_adam` with ``amsgrad=True``.

    Attributes:
      step: int32 scalar, the number of updates done.
      mu: first-moment estimate ``m``.
      nu: second-moment estimate ``v``.
      nu_max: running maximum of the bias-corrected ``v``.
    """

    step: Array
    mu: PyTree
    nu: PyTree
    nu_max: PyTree


def scale_by_adagrad(
    initial_accumulator_value: float = 0.1, eps: float = 1e-7
) -> GradientTransformation[ScaleByAdagradState]:
    r"""Adagrad's rescaling: divide by the root of the sum of all squared gradients so far.

    .. math::

        G_t = G_{t-1} + g_t^2, \qquad u_t = g_t / \sqrt{G_t + \epsilon}
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
      ValueError: a negative ``initial_accumulator_value`` or ``eps``.
    """
    fn = "scale_by_adagrad"
    check_scalar(fn, "initial_accumulator_value", initial_accumulator_value, low=0.0,
                 schedule_ok=False)
    check_scalar(fn, "eps", eps, low=0.0, schedule_ok=False)

    def init(params: PyTree) -> ScaleByAdagradState:
        return ScaleByAdagradState(
            tree_map(lambda p: jnp.full_like(p, initial_accumulator_value), params)
        )

    def update(
        updates: PyTree, state: ScaleByAdagradState, params: PyTree | None = None
    ) -> tuple[PyTree, ScaleByAdagradState]:
        del params
        check_updates(fn, updates, state.sum_of_squares, "sum_of_squares")
        ss = tree_map(lambda g, t: g**2 + t, updates, state.sum_of_squares)
        inv = tree_map(lambda t: jnp.where(t > 0, jax.lax.rsqrt(t + eps), 0.0), ss)
        return tree_map(lambda s, g: s * g, inv, updates), ScaleByAdagradState(ss)

    return GradientTransformation(init, update)


def scale_by_rms(
    decay: ScalarOrSchedule = 0.9,
    eps: float = 1e-8,
    initial_scale: float = 0.0,
    centered: bool = False,
) -> GradientTransformation[ScaleByRmsState]:
    r"""RMSProp's rescaling by the root of a moving average of squared gradients.

    .. math::

        \nu_t = \rho \nu_{t-1} + (1-\rho) g_t^2, \qquad u_t = g_t / \sqrt{\nu_t + \epsilon}

    Centered (Graves 2013): also track ``mu_t = rho mu_{t-1} + (1-rho) g_t`` and divide by
    ``sqrt(nu_t - mu_t^2 + eps)``, the standard deviation. (Tieleman & Hinton, Coursera lecture
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
    """
    fn = "scale_by_rms"
    check_scalar(fn, "decay", decay, low=0.0, high=1.0, high_open=True)
    check_scalar(fn, "eps", eps, low=0.0, schedule_ok=False)
    check_scalar(fn, "initial_scale", initial_scale, low=0.0, schedule_ok=False)
    scheduled = is_schedule(decay)

    def init(params: PyTree) -> ScaleByRmsState:
        return ScaleByRmsState(
            step=jnp.zeros((), jnp.int32) if scheduled else None,
            mu=tree_zeros_like(params) if centered else None,
            nu=tree_map(lambda p: jnp.full_like(p, initial_scale), params),
        )

    def update(
        updates: PyTree, state: ScaleByRmsState, params: PyTree | None = None
    ) -> tuple[PyTree, ScaleByRmsState]:
        del params
        check_updates(fn, updates, state.nu, "nu")
        d = value_at(fn, decay, state.step)
        nu = tree_map(lambda g, t: like(1 - d, t) * (g**2) + like(d, t) * t, updates, state.nu)
        mu = None
        if centered:
            mu = tree_map(lambda g, t: like(1 - d, t) * g + like(d, t) * t, updates, state.mu)
            scaling = tree_map(lambda m, n: jax.lax.rsqrt(n - m**2 + eps), mu, nu)
        else:
            scaling = tree_map(lambda n: jax.lax.rsqrt(n + eps), nu)
        updates = tree_map(lambda s, g: s * g, scaling, updates)
        step = increment(state.step) if state.step is not None else None
        return updates, ScaleByRmsState(step=step, mu=mu, nu=nu)

    return GradientTransformation(init, update)


def _check_adam(fn: str, b1: ScalarOrSchedule, b2: ScalarOrSchedule, eps: float,
                eps_root: float = 0.0) -> None:
    check_scalar(fn, "b1", b1, low=0.0, high=1.0, high_open=True)
    check_scalar(fn, "b2", b2, low=0.0, high=1.0, high_open=True)
    check_scalar(fn, "eps", eps, low=0.0, schedule_ok=False)
    check_scalar(fn, "eps_root", eps_root, low=0.0, schedule_ok=False)


@overload
def scale_by_adam(
    b1: ScalarOrSchedule = ...,
    b2: ScalarOrSchedule = ...,
    eps: float = ...,
    eps_root: float = ...,
    amsgrad: Literal[False] = ...,
) -> GradientTransformation[ScaleByAdamState]: ...
@overload
def scale_by_adam(
    b1: ScalarOrSchedule = ...,
    b2: ScalarOrSchedule = ...,
    eps: float = ...,
    eps_root: float = ...,
    *,
    amsgrad: Literal[True],
) -> GradientTransformation[ScaleByAmsgradState]: ...
@overload
def scale_by_adam(
    b1: ScalarOrSchedule = ...,
    b2: ScalarOrSchedule = ...,
    eps: float = ...,
    eps_root: float = ...,
    amsgrad: bool = ...,
) -> GradientTransformation[ScaleByAdamState] | GradientTransformation[ScaleByAmsgradState]: ...
def scale_by_adam(
    b1: ScalarOrSchedule = 0.9,
    b2: ScalarOrSchedule = 0.999,
    eps: float = 1e-8,
    eps_root: float = 0.0,
    amsgrad: bool = False,
) -> GradientTransformation[ScaleByAdamState] | GradientTransformation[ScaleByAmsgradState]:
    r"""Adam's rescaling: bias-corrected first moment over the root of the second moment.

    .. math::

        m_t = \beta_1 m_{t-1} + (1-\beta_1) g_t, \qquad
        v_t = \beta_2 v_{t-1} + (1-\beta_2) g_t^2, \\
        \hat m_t = m_t / (1-\beta_1^t), \qquad \hat v_t = v_t / (1-\beta_2^t), \qquad
        u_t = \hat m_t / (\sqrt{\hat v_t + \epsilon_{root}} + \epsilon)

    (Kingma & Ba, "Adam: A Method for Stochastic Optimization", ICLR 2015.) With
    ``amsgrad=True`` the denominator uses ``max_{s<=t} v_hat_s`` (Reddi, Kale & Kumar, "On the
    Convergence of Adam and Beyond", ICLR 2018). The bias corrections are two scalars per step.
    Scheduled betas are evaluated at the step count before the update and used in the bias
    correction as ``1 - beta_t^t``. Same as ``optax.scale_by_adam`` / ``optax.scale_by_amsgrad``.

    Args:
      b1: ``beta_1`` in [0, 1): a number, a scalar array or a schedule.
      b2: ``beta_2`` in [0, 1): a number, a scalar array or a schedule.
      eps: ``epsilon >= 0`` outside the square root.
      eps_root: ``epsilon_root >= 0`` inside the square root.
      amsgrad: use the AMSGrad running maximum of the second moment.

    Returns:
      A :class:`~functrain.optim.GradientTransformation` with :class:`ScaleByAdamState`
      (:class:`ScaleByAmsgradState` with ``amsgrad=True``).

    Raises:
      TypeError: a hyperparameter of the wrong type.
      ValueError: a beta outside [0, 1) or a negative ``eps`` / ``eps_root``.
    """
    fn = "scale_by_adam"
    _check_adam(fn, b1, b2, eps, eps_root)

    def moments(updates: PyTree, step: Array, mu: PyTree, nu: PyTree
                ) -> tuple[PyTree, PyTree, Array, Array, Array]:
        check_updates(fn, updates, mu, "mu")
        beta1 = value_at(fn, b1, step)
        beta2 = value_at(fn, b2, step)
        mu = tree_map(lambda g, t: like(1 - beta1, t) * g + like(beta1, t) * t, updates, mu)
        nu = tree_map(lambda g, t: like(1 - beta2, t) * (g**2) + like(beta2, t) * t, updates, nu)
        t = increment(step)
        return mu, nu, t, 1 - beta1**t, 1 - beta2**t  # bias corrections: two scalars

    # eps_root = 0 (the default) adds nothing: skip the addition.
    add_root = not (isinstance(eps_root, (int, float)) and eps_root == 0.0)

    def direction(m: Array, v: Array) -> Array:
        return m / (jnp.sqrt(v + eps_root if add_root else v) + eps)

    if amsgrad:

        def init_ams(params: PyTree) -> ScaleByAmsgradState:
            # Separate buffers (not one zeros tree three times), so the state can be donated.
            return ScaleByAmsgradState(jnp.zeros((), jnp.int32), tree_zeros_like(params),
                                       tree_zeros_like(params), tree_zeros_like(params))

        def update_ams(
            updates: PyTree, state: ScaleByAmsgradState, params: PyTree | None = None
        ) -> tuple[PyTree, ScaleByAmsgradState]:
            del params
            mu, nu, t, c1, c2 = moments(updates, state.step, state.mu, state.nu)
            nu_max = tree_map(lambda vm, v: jnp.maximum(vm, v / c2.astype(v.dtype)),
                              state.nu_max, nu)
            new = tree_map(lambda m, vm: direction(m / c1.astype(m.dtype), vm), mu, nu_max)
            return new, ScaleByAmsgradState(t, mu, nu, nu_max)

        return GradientTransformation(init_ams, update_ams)

    def init(params: PyTree) -> ScaleByAdamState:
        # Separate buffers for mu and nu, so a jitted step can donate the state.
        return ScaleByAdamState(jnp.zeros((), jnp.int32), tree_zeros_like(params), tree_zeros_like(params))

    def update(
        updates: PyTree, state: ScaleByAdamState, params: PyTree | None = None
    ) -> tuple[PyTree, ScaleByAdamState]:
        del params
        mu, nu, t, c1, c2 = moments(updates, state.step, state.mu, state.nu)
        new = tree_map(
            lambda m, v: direction(m / c1.astype(m.dtype), v / c2.astype(v.dtype)), mu, nu
        )
        return new, ScaleByAdamState(t, mu, nu)

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
    """
    check_scalar("adagrad", "learning_rate", learning_rate, low=0.0)
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
    """
    check_scalar("rmsprop", "learning_rate", learning_rate, low=0.0)
    check_scalar("rmsprop", "decay", decay, low=0.0, high=1.0, high_open=True)
    return chain(
        scale_by_rms(decay, eps, initial_scale, centered), scale_by_learning_rate(learning_rate)
    )


def adam(
    learning_rate: ScalarOrSchedule = 1e-3,
    b1: ScalarOrSchedule = 0.9,
    b2: ScalarOrSchedule = 0.999,
    eps: float = 1e-8,
) -> GradientTransformation[tuple[ScaleByAdamState, ScaleByLearningRateState]]:
    r"""Adam: ``w <- w - eta m_hat / (sqrt(v_hat) + eps)``.

    Kingma & Ba, ICLR 2015; see :func:`scale_by_adam` for the moment estimates and bias
    corrections. Same as ``optax.adam``.

    Args:
      learning_rate: ``eta >= 0``: a number, a scalar array or a schedule.
      b1: ``beta_1`` in [0, 1): a number, a scalar array or a schedule.
      b2: ``beta_2`` in [0, 1): a number, a scalar array or a schedule.
      eps: ``epsilon >= 0``.

    Returns:
      A :class:`~functrain.optim.GradientTransformation` with state
      ``(ScaleByAdamState, ScaleByLearningRateState)``.

    Raises:
      TypeError: a hyperparameter of the wrong type.
      ValueError: a concrete hyperparameter out of range.
    """
    check_scalar("adam", "learning_rate", learning_rate, low=0.0)
    _check_adam("adam", b1, b2, eps)
    return chain(scale_by_adam(b1, b2, eps), scale_by_learning_rate(learning_rate))


def adamw(
    learning_rate: ScalarOrSchedule,
    *,
    b1: ScalarOrSchedule = 0.9,
    b2: ScalarOrSchedule = 0.999,
    eps: float = 1e-8,
    weight_decay: ScalarOrSchedule = 1e-4,
    mask: DecayMask = default_decay_mask,
) -> GradientTransformation[
    tuple[ScaleByAdamState, AddDecayedWeightsState, ScaleByLearningRateState]
]:
    r"""AdamW: Adam with decoupled weight decay, ``w <- w - eta (adam_t + lambda w)``.

    Loshchilov & Hutter, "Decoupled Weight Decay Regularization", ICLR 2019. As in optax and
    PyTorch, the decay is multiplied by the learning rate (schedule included). Same as
    ``optax.adamw`` with the same ``mask``. By default only leaves with ``ndim >= 2`` (weight
    matrices, conv kernels) are decayed, not biases or normalization scales
    (:func:`~functrain.optim.default_decay_mask`); pass ``mask=None`` to decay every leaf.

    Args:
      learning_rate: ``eta >= 0``: a number, a scalar array or a schedule.
      b1: ``beta_1`` in [0, 1): a number, a scalar array or a schedule.
      b2: ``beta_2`` in [0, 1): a number, a scalar array or a schedule.
      eps: ``epsilon >= 0``.
      weight_decay: ``lambda >= 0``: a number, a scalar array or a schedule.
      mask: which leaves to decay: a pytree of bools (a prefix of the params), a function of the
        params returning one, or ``None`` for all leaves.

    Returns:
      A :class:`~functrain.optim.GradientTransformation` with state
      ``(ScaleByAdamState, AddDecayedWeightsState, ScaleByLearningRateState)``.

    Raises:
      TypeError: a hyperparameter of the wrong type.
      ValueError: a concrete hyperparameter out of range.
    """
    check_scalar("adamw", "learning_rate", learning_rate, low=0.0)
    _check_adam("adamw", b1, b2, eps)
    check_scalar("adamw", "weight_decay", weight_decay, low=0.0)
    return chain(
        scale_by_adam(b1, b2, eps),
        add_decayed_weights(weight_decay, mask),
        scale_by_learning_rate(learning_rate),
    )
