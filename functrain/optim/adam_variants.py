"""Adam variants: Nesterov momentum (NAdam), a rectified variance (RAdam), infinity norm (Adamax).

Each is a building block ``scale_by_*`` (a rescaling of the gradient, like
:func:`~functrain.optim.scale_by_adam`) and an optimizer that chains it with
:func:`~functrain.optim.scale_by_learning_rate`. NAdam and RAdam keep Adam's moments, so their
state is :class:`~functrain.optim.ScaleByAdamState`; Adamax keeps a running maximum instead of the
second moment (:class:`ScaleByAdamaxState`). Conventions follow optax exactly (where ``eps`` goes,
the bias corrections, RAdam's threshold), so results match ``optax`` to float rounding.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax.numpy as jnp

from functrain import _validate
from functrain._tree import tree_map, tree_zeros_like
from functrain.optim._hyper import increment, like, value_at, zero_step
from functrain.optim.adam import ScaleByAdamState, _check_adam, _direction, _moments  # pyright: ignore[reportPrivateUsage]  # shared inside functrain.optim
from functrain.optim.base import (
    GradientTransformation,
    ScaleByLearningRateState,
    chain,
    scale_by_learning_rate,
)
from functrain.typing import Array, PyTree, ScalarOrSchedule

__all__ = [
    "ScaleByAdamaxState",
    "adamax",
    "nadam",
    "radam",
    "scale_by_adamax",
    "scale_by_nadam",
    "scale_by_radam",
]


def _nesterov_mean(beta1: float | Array, t: Array, mu: PyTree, updates: PyTree) -> PyTree:
    """NAdam's look-ahead first moment ``b1 m_t / (1 - b1^(t+1)) + (1 - b1) g_t / (1 - b1^t)``."""
    c_next = 1 - beta1 ** increment(t)
    c_now = 1 - beta1**t
    return tree_map(
        lambda m, g: like(beta1, m) * (m / c_next.astype(m.dtype))
        + like(1 - beta1, m) * (g / c_now.astype(g.dtype)),
        mu, updates,
    )


def scale_by_nadam(
    b1: ScalarOrSchedule = 0.9,
    b2: ScalarOrSchedule = 0.999,
    eps: float = 1e-8,
    eps_root: float = 0.0,
) -> GradientTransformation[ScaleByAdamState]:
    r"""NAdam's rescaling: Adam whose first moment looks one step ahead (Nesterov momentum).

    .. math::

        m_t = \beta_1 m_{t-1} + (1-\beta_1) g_t, \qquad v_t = \beta_2 v_{t-1} + (1-\beta_2) |g_t|^2,
        \\ \hat m_t = \frac{\beta_1 m_t}{1-\beta_1^{t+1}} + \frac{(1-\beta_1) g_t}{1-\beta_1^t},
        \qquad u_t = \hat m_t / (\sqrt{v_t / (1-\beta_2^t) + \epsilon_{root}} + \epsilon)

    (Dozat, "Incorporating Nesterov Momentum into Adam", ICLR workshop 2016.) Same as
    ``optax.scale_by_adam(nesterov=True)``; the state is Adam's.

    Args:
        b1: ``beta_1`` in [0, 1): a number, a scalar array or a schedule.
        b2: ``beta_2`` in [0, 1): a number, a scalar array or a schedule.
        eps: ``epsilon >= 0`` outside the square root.
        eps_root: ``epsilon_root >= 0`` inside the square root.

    Returns:
        A :class:`~functrain.optim.GradientTransformation` with
        :class:`~functrain.optim.ScaleByAdamState`.

    Raises:
        TypeError: a hyperparameter of the wrong type.
        ValueError: a beta outside [0, 1) or a negative ``eps`` / ``eps_root``.

    Example:
        >>> tx = ft.optim.scale_by_nadam(b1=0.5, b2=0.5, eps=0.0)
        >>> u, state = tx.update({"w": jnp.asarray([2.0])}, tx.init({"w": jnp.zeros(1)}))
        >>> round(float(u["w"][0]), 4)  # (0.5 * 1 / 0.75 + 0.5 * 2 / 0.5) / 2
        1.3333
    """
    fn = "scale_by_nadam"
    _check_adam(fn, b1, b2, eps, eps_root)
    direction = _direction(eps, eps_root)

    def init(params: PyTree) -> ScaleByAdamState:
        return ScaleByAdamState(zero_step(), tree_zeros_like(params), tree_zeros_like(params))

    def update(
        updates: PyTree, state: ScaleByAdamState, params: PyTree | None = None, **extra_args: Any
    ) -> tuple[PyTree, ScaleByAdamState]:
        del params, extra_args
        mu, nu, t, _, c2 = _moments(fn, b1, b2, updates, state.step, state.mu, state.nu)
        m_hat = _nesterov_mean(value_at(b1, state.step), t, mu, updates)
        new = tree_map(lambda m, v: direction(m, v / c2.astype(v.dtype)), m_hat, nu)
        return new, ScaleByAdamState(t, mu, nu)

    return GradientTransformation(init, update)


def nadam(
    learning_rate: ScalarOrSchedule = 1e-3,
    b1: ScalarOrSchedule = 0.9,
    b2: ScalarOrSchedule = 0.999,
    eps: float = 1e-8,
    eps_root: float = 0.0,
) -> GradientTransformation[tuple[ScaleByAdamState, ScaleByLearningRateState]]:
    r"""NAdam: Adam with Nesterov momentum, ``w <- w - eta m_hat_nesterov / (sqrt(v_hat) + eps)``.

    Dozat 2016; see :func:`scale_by_nadam`. Same as ``optax.nadam``.

    Args:
        learning_rate: ``eta >= 0``: a number, a scalar array or a schedule.
        b1: ``beta_1`` in [0, 1): a number, a scalar array or a schedule.
        b2: ``beta_2`` in [0, 1): a number, a scalar array or a schedule.
        eps: ``epsilon >= 0``, outside the square root.
        eps_root: ``epsilon_root >= 0``, inside the square root (> 0: differentiable at a zero
            second moment, see :func:`~functrain.optim.adam`).

    Returns:
        A :class:`~functrain.optim.GradientTransformation` with state
        ``(ScaleByAdamState, ScaleByLearningRateState)``.

    Raises:
        TypeError: a hyperparameter of the wrong type.
        ValueError: a concrete hyperparameter out of range.

    Example:
        >>> tx = ft.optim.nadam(0.1)
        >>> params = {"w": jnp.asarray([1.0, 2.0])}
        >>> u, state = tx.update({"w": jnp.asarray([0.3, -5.0])}, tx.init(params), params)
        >>> [round(x, 4) for x in u["w"].tolist()]  # -lr * sign(g) * (0.9 * 0.1 / 0.19 + 1)
        [-0.1474, 0.1474]
    """
    _validate.check_hyperparameter(learning_rate, "nadam", "learning_rate", low=0.0)
    _check_adam("nadam", b1, b2, eps, eps_root)
    return chain(scale_by_nadam(b1, b2, eps, eps_root), scale_by_learning_rate(learning_rate))


def scale_by_radam(
    b1: ScalarOrSchedule = 0.9,
    b2: ScalarOrSchedule = 0.999,
    eps: float = 1e-8,
    eps_root: float = 0.0,
    threshold: float = 5.0,
) -> GradientTransformation[ScaleByAdamState]:
    r"""RAdam's rescaling: Adam with its adaptive step rectified while the variance is untractable.

    With :math:`\rho_\infty = 2 / (1-\beta_2) - 1` and
    :math:`\rho_t = \rho_\infty - 2 t \beta_2^t / (1-\beta_2^t)` (the length of the approximated
    simple moving average),

    .. math::

        u_t = \begin{cases} r_t \, \hat m_t / (\sqrt{\hat v_t + \epsilon_{root}} + \epsilon)
        & \rho_t \ge \text{threshold} \\ \hat m_t & \text{otherwise (SGD with momentum)}
        \end{cases}, \qquad
        r_t = \sqrt{\frac{(\rho_t - 4)(\rho_t - 2)\rho_\infty}{(\rho_\infty - 4)(\rho_\infty - 2)
        \rho_t}}

    (Liu et al., "On the Variance of the Adaptive Learning Rate and Beyond", ICLR 2020.) Same as
    ``optax.scale_by_radam`` (threshold 5 as there; the paper uses 4). The state is Adam's.

    Args:
        b1: ``beta_1`` in [0, 1): a number, a scalar array or a schedule.
        b2: ``beta_2`` in [0, 1): a number, a scalar array or a schedule.
        eps: ``epsilon >= 0`` outside the square root.
        eps_root: ``epsilon_root >= 0`` inside the square root.
        threshold: the smallest ``rho_t`` at which the adaptive step is used, ``>= 4``.

    Returns:
        A :class:`~functrain.optim.GradientTransformation` with
        :class:`~functrain.optim.ScaleByAdamState`.

    Raises:
        TypeError: a hyperparameter of the wrong type.
        ValueError: a beta outside [0, 1), a negative ``eps`` / ``eps_root`` or
            ``threshold < 4``.

    Example:
        >>> tx = ft.optim.scale_by_radam()
        >>> u, state = tx.update({"w": jnp.asarray([2.0])}, tx.init({"w": jnp.zeros(1)}))
        >>> round(float(u["w"][0]), 4)  # rho_1 = 1 < 5: the bias-corrected momentum itself
        2.0
    """
    fn = "scale_by_radam"
    _check_adam(fn, b1, b2, eps, eps_root)
    _validate.check_hyperparameter(threshold, fn, "threshold", low=4.0, schedule_ok=False)
    direction = _direction(eps, eps_root)

    def init(params: PyTree) -> ScaleByAdamState:
        return ScaleByAdamState(zero_step(), tree_zeros_like(params), tree_zeros_like(params))

    def update(
        updates: PyTree, state: ScaleByAdamState, params: PyTree | None = None, **extra_args: Any
    ) -> tuple[PyTree, ScaleByAdamState]:
        del params, extra_args
        mu, nu, t, c1, c2 = _moments(fn, b1, b2, updates, state.step, state.mu, state.nu)
        beta2 = value_at(b2, state.step)
        rho_inf = 2.0 / (1.0 - beta2) - 1.0
        b2t = beta2**t
        rho = rho_inf - 2 * t * b2t / (1 - b2t)
        ratio = (rho - 4.0) * (rho - 2.0) * rho_inf / ((rho_inf - 4.0) * (rho_inf - 2.0) * rho)
        r = jnp.sqrt(jnp.maximum(ratio, 0.0))  # only used where rho >= threshold >= 4
        rectified = rho >= threshold

        def step(m: Array, v: Array) -> Array:
            m_hat = m / c1.astype(m.dtype)
            adaptive = direction(r.astype(m.dtype) * m_hat, v / c2.astype(v.dtype))
            return jnp.where(rectified, adaptive, m_hat)

        return tree_map(step, mu, nu), ScaleByAdamState(t, mu, nu)

    return GradientTransformation(init, update)


def radam(
    learning_rate: ScalarOrSchedule = 1e-3,
    b1: ScalarOrSchedule = 0.9,
    b2: ScalarOrSchedule = 0.999,
    eps: float = 1e-8,
    eps_root: float = 0.0,
    threshold: float = 5.0,
) -> GradientTransformation[tuple[ScaleByAdamState, ScaleByLearningRateState]]:
    r"""RAdam (rectified Adam): momentum SGD for the first steps, then Adam with a rectifier.

    Liu et al., ICLR 2020; see :func:`scale_by_radam`. A built-in warmup: no learning-rate warmup
    is needed for Adam's early, high-variance steps. Same as ``optax.radam``.

    Args:
        learning_rate: ``eta >= 0``: a number, a scalar array or a schedule.
        b1: ``beta_1`` in [0, 1): a number, a scalar array or a schedule.
        b2: ``beta_2`` in [0, 1): a number, a scalar array or a schedule.
        eps: ``epsilon >= 0``, outside the square root.
        eps_root: ``epsilon_root >= 0``, inside the square root (> 0: differentiable at a zero
            second moment, see :func:`~functrain.optim.adam`).
        threshold: the smallest ``rho_t`` at which the adaptive step is used, ``>= 4``.

    Returns:
        A :class:`~functrain.optim.GradientTransformation` with state
        ``(ScaleByAdamState, ScaleByLearningRateState)``.

    Raises:
        TypeError: a hyperparameter of the wrong type.
        ValueError: a concrete hyperparameter out of range.

    Example:
        >>> tx = ft.optim.radam(0.1)
        >>> params = {"w": jnp.asarray([1.0])}
        >>> u, state = tx.update({"w": jnp.asarray([0.5])}, tx.init(params), params)
        >>> round(float(u["w"][0]), 4)  # the first steps are momentum SGD: -lr * m_hat
        -0.05
    """
    _validate.check_hyperparameter(learning_rate, "radam", "learning_rate", low=0.0)
    _check_adam("radam", b1, b2, eps, eps_root)
    _validate.check_hyperparameter(threshold, "radam", "threshold", low=4.0, schedule_ok=False)
    return chain(scale_by_radam(b1, b2, eps, eps_root, threshold),
                 scale_by_learning_rate(learning_rate))


class ScaleByAdamaxState(NamedTuple):
    """State of :func:`scale_by_adamax`.

    Attributes:
        step: int32 scalar, the number of updates done (``t`` of the bias correction).
        mu: first-moment estimate ``m`` (pytree like the params).
        nu: exponentially weighted infinity norm ``u`` of the gradients.

    Example:
        >>> state = ft.optim.scale_by_adamax().init({"w": jnp.ones(2)})
        >>> int(state.step), state.nu["w"].tolist()
        (0, [0.0, 0.0])
    """

    step: Array
    mu: PyTree
    nu: PyTree


def scale_by_adamax(
    b1: ScalarOrSchedule = 0.9,
    b2: ScalarOrSchedule = 0.999,
    eps: float = 1e-8,
) -> GradientTransformation[ScaleByAdamaxState]:
    r"""Adamax's rescaling: Adam with the infinity norm in place of the second moment.

    .. math::

        m_t = \beta_1 m_{t-1} + (1-\beta_1) g_t, \qquad
        u_t = \max(\beta_2 u_{t-1}, |g_t| + \epsilon), \qquad
        \text{update}_t = \frac{m_t}{(1-\beta_1^t)\, u_t}

    (Kingma & Ba, ICLR 2015, section 7.1; the running maximum needs no bias correction.) Same as
    ``optax.scale_by_adamax`` (``eps`` added inside the maximum).

    Args:
        b1: ``beta_1`` in [0, 1): a number, a scalar array or a schedule.
        b2: ``beta_2`` in [0, 1): a number, a scalar array or a schedule.
        eps: ``epsilon >= 0``.

    Returns:
        A :class:`~functrain.optim.GradientTransformation` with :class:`ScaleByAdamaxState`.

    Raises:
        TypeError: a hyperparameter of the wrong type.
        ValueError: a beta outside [0, 1) or a negative ``eps``.

    Example:
        >>> tx = ft.optim.scale_by_adamax(b1=0.5, b2=0.5, eps=0.0)
        >>> state = tx.init({"w": jnp.zeros(1)})
        >>> for g in (4.0, 1.0):  # u: 4, then max(0.5 * 4, 1) = 2; m_hat = (0.5 + 1) / 0.75 = 2
        ...     u, state = tx.update({"w": jnp.asarray([g])}, state)
        >>> round(float(u["w"][0]), 4), round(float(state.nu["w"][0]), 4)
        (1.0, 2.0)
    """
    fn = "scale_by_adamax"
    _check_adam(fn, b1, b2, eps)

    def init(params: PyTree) -> ScaleByAdamaxState:
        return ScaleByAdamaxState(zero_step(), tree_zeros_like(params), tree_zeros_like(params))

    def update(
        updates: PyTree, state: ScaleByAdamaxState, params: PyTree | None = None, **extra_args: Any
    ) -> tuple[PyTree, ScaleByAdamaxState]:
        del params, extra_args
        _validate.check_same_structure(state.mu, updates, fn, "updates",
                                       "state.mu (the params given to init)")
        beta1, beta2 = value_at(b1, state.step), value_at(b2, state.step)
        t = increment(state.step)
        mu = tree_map(lambda g, m: like(1 - beta1, m) * g + like(beta1, m) * m, updates, state.mu)
        nu = tree_map(lambda g, u: jnp.maximum(jnp.abs(g) + eps, like(beta2, u) * u), updates,
                      state.nu)
        c1 = 1 - beta1**t
        new = tree_map(lambda m, u: (m / c1.astype(m.dtype)) / u, mu, nu)
        return new, ScaleByAdamaxState(t, mu, nu)

    return GradientTransformation(init, update)


def adamax(
    learning_rate: ScalarOrSchedule = 2e-3,
    b1: ScalarOrSchedule = 0.9,
    b2: ScalarOrSchedule = 0.999,
    eps: float = 1e-8,
) -> GradientTransformation[tuple[ScaleByAdamaxState, ScaleByLearningRateState]]:
    r"""Adamax: ``u <- max(b2 u, |g| + eps),  w <- w - eta m_hat / u``.

    Kingma & Ba, ICLR 2015 (section 7.1; the paper's default ``eta`` is 0.002); see
    :func:`scale_by_adamax`. Same as ``optax.adamax``.

    Args:
        learning_rate: ``eta >= 0``: a number, a scalar array or a schedule.
        b1: ``beta_1`` in [0, 1): a number, a scalar array or a schedule.
        b2: ``beta_2`` in [0, 1): a number, a scalar array or a schedule.
        eps: ``epsilon >= 0``.

    Returns:
        A :class:`~functrain.optim.GradientTransformation` with state
        ``(ScaleByAdamaxState, ScaleByLearningRateState)``.

    Raises:
        TypeError: a hyperparameter of the wrong type.
        ValueError: a concrete hyperparameter out of range.

    Example:
        >>> tx = ft.optim.adamax(0.1, eps=0.0)
        >>> params = {"w": jnp.asarray([1.0, 2.0])}
        >>> u, state = tx.update({"w": jnp.asarray([0.3, -5.0])}, tx.init(params), params)
        >>> [round(x, 4) for x in u["w"].tolist()]  # the first step is -lr * sign(g)
        [-0.1, 0.1]
    """
    _validate.check_hyperparameter(learning_rate, "adamax", "learning_rate", low=0.0)
    _check_adam("adamax", b1, b2, eps)
    return chain(scale_by_adamax(b1, b2, eps), scale_by_learning_rate(learning_rate))
