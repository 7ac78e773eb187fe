"""Adam and its variants: bias-corrected first and second moments (Adam, AMSGrad, AdamW).

Building blocks rescale the gradient by the ratio of its moving average to the root of the moving
average of its square (:func:`scale_by_adam`; :func:`scale_by_amsgrad` with a running maximum of
the second moment); the optimizers :func:`adam`, :func:`amsgrad` and :func:`adamw` (decoupled
weight decay) chain them with :func:`~functrain.optim.scale_by_learning_rate`. NAdam, RAdam and
Adamax are in :mod:`functrain.optim.adam_variants`. Conventions follow optax exactly, so
results match ``optax`` to float rounding.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple, cast

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
from functrain.optim.weight_decay import (
    AddDecayedWeightsState,
    DecayMask,
    add_decayed_weights,
    default_decay_mask,
)
from functrain.typing import Array, PyTree, ScalarOrSchedule

__all__ = [
    "ScaleByAdamState",
    "ScaleByAmsgradState",
    "adam",
    "adamw",
    "amsgrad",
    "scale_by_adam",
    "scale_by_amsgrad",
]


def _check_adam(who: str, b1: ScalarOrSchedule, b2: ScalarOrSchedule, eps: float,
                eps_root: float = 0.0) -> None:
    _validate.check_hyperparameter(b1, who, "b1", low=0.0, high=1.0, high_open=True)
    _validate.check_hyperparameter(b2, who, "b2", low=0.0, high=1.0, high_open=True)
    _validate.check_hyperparameter(eps, who, "eps", low=0.0, schedule_ok=False)
    _validate.check_hyperparameter(eps_root, who, "eps_root", low=0.0, schedule_ok=False)


def _moments(who: str, b1: ScalarOrSchedule, b2: ScalarOrSchedule, updates: PyTree,
             step: Array, mu: PyTree, nu: PyTree) -> tuple[PyTree, PyTree, Array, Array, Array]:
    """The new moments, the new step ``t`` and the bias corrections ``1 - beta_t^t``."""
    _validate.check_same_structure(mu, updates, who, "updates", "state.mu (the params given to "
                                   "init)")
    beta1 = value_at(b1, step)
    beta2 = value_at(b2, step)
    mu = tree_map(lambda g, t: like(1 - beta1, t) * g + like(beta1, t) * t, updates, mu)
    nu = tree_map(lambda g, t: like(1 - beta2, t) * abs_sq(g) + like(beta2, t) * t, updates, nu)
    t = increment(step)
    return mu, nu, t, 1 - beta1**t, 1 - beta2**t  # bias corrections: two scalars


def _direction(eps: float, eps_root: float) -> Callable[[Array, Array], Array]:
    """``(m_hat, v_hat) -> m_hat / (sqrt(v_hat + eps_root) + eps)``."""
    if isinstance(cast(object, eps_root), (int, float)) and eps_root == 0.0:  # the default adds nothing
        return lambda m, v: m / (jnp.sqrt(v) + eps)
    return lambda m, v: m / (jnp.sqrt(v + eps_root) + eps)


class ScaleByAdamState(NamedTuple):
    """State of :func:`scale_by_adam`.

    Attributes:
        step: int32 scalar, the number of updates done (``t`` of the bias correction).
        mu: first-moment estimate ``m`` (pytree like the params).
        nu: second-moment estimate ``v``.

    Example:
        >>> state = ft.optim.scale_by_adam().init({"w": jnp.ones(2)})
        >>> int(state.step), state.mu["w"].tolist(), state.nu["w"].tolist()
        (0, [0.0, 0.0], [0.0, 0.0])
    """

    step: Array
    mu: PyTree
    nu: PyTree


def scale_by_adam(
    b1: ScalarOrSchedule = 0.9,
    b2: ScalarOrSchedule = 0.999,
    eps: float = 1e-8,
    eps_root: float = 0.0,
) -> GradientTransformation[ScaleByAdamState]:
    r"""Adam's rescaling: bias-corrected first moment over the root of the second moment.

    .. math::

        m_t = \beta_1 m_{t-1} + (1-\beta_1) g_t, \qquad
        v_t = \beta_2 v_{t-1} + (1-\beta_2) |g_t|^2, \\
        \hat m_t = m_t / (1-\beta_1^t), \qquad \hat v_t = v_t / (1-\beta_2^t), \qquad
        u_t = \hat m_t / (\sqrt{\hat v_t + \epsilon_{root}} + \epsilon)

    (Kingma & Ba, "Adam: A Method for Stochastic Optimization", ICLR 2015.) ``|g_t|^2`` is the
    squared magnitude (``conj(g) g`` for complex parameters, as in optax). The bias corrections
    are two scalars per step. Scheduled betas are evaluated at the step count before the update
    (``beta_t = b(t - 1)`` for the ``t``-th update) and used in the bias correction as
    ``1 - beta_t^t``. Same as ``optax.scale_by_adam``.

    Args:
        b1: ``beta_1`` in [0, 1): a number, a scalar array or a schedule.
        b2: ``beta_2`` in [0, 1): a number, a scalar array or a schedule.
        eps: ``epsilon >= 0`` outside the square root.
        eps_root: ``epsilon_root >= 0`` inside the square root.

    Returns:
        A :class:`~functrain.optim.GradientTransformation` with :class:`ScaleByAdamState`.

    Raises:
        TypeError: a hyperparameter of the wrong type.
        ValueError: a beta outside [0, 1) or a negative ``eps`` / ``eps_root``.

    Example:
        >>> tx = ft.optim.scale_by_adam(eps=0.0)
        >>> u, state = tx.update({"w": jnp.asarray([4.0, -0.5])}, tx.init({"w": jnp.zeros(2)}))
        >>> [round(x, 4) for x in u["w"].tolist()], int(state.step)  # step 1: sign(g)
        ([1.0, -1.0], 1)
    """
    fn = "scale_by_adam"
    _check_adam(fn, b1, b2, eps, eps_root)
    direction = _direction(eps, eps_root)

    def init(params: PyTree) -> ScaleByAdamState:
        # Separate buffers for mu and nu, so a jitted step can donate the state.
        return ScaleByAdamState(zero_step(), tree_zeros_like(params), tree_zeros_like(params))

    def update(
        updates: PyTree, state: ScaleByAdamState, params: PyTree | None = None, **extra_args: Any
    ) -> tuple[PyTree, ScaleByAdamState]:
        del params, extra_args
        mu, nu, t, c1, c2 = _moments(fn, b1, b2, updates, state.step, state.mu, state.nu)
        new = tree_map(
            lambda m, v: direction(m / c1.astype(m.dtype), v / c2.astype(v.dtype)), mu, nu
        )
        return new, ScaleByAdamState(t, mu, nu)

    return GradientTransformation(init, update)


class ScaleByAmsgradState(NamedTuple):
    """State of :func:`scale_by_amsgrad`.

    Attributes:
        step: int32 scalar, the number of updates done.
        mu: first-moment estimate ``m``.
        nu: second-moment estimate ``v``.
        nu_max: running maximum of the bias-corrected ``v``.

    Example:
        >>> state = ft.optim.scale_by_amsgrad().init({"w": jnp.ones(2)})
        >>> int(state.step), state.nu_max["w"].tolist()
        (0, [0.0, 0.0])
    """

    step: Array
    mu: PyTree
    nu: PyTree
    nu_max: PyTree


def scale_by_amsgrad(
    b1: ScalarOrSchedule = 0.9,
    b2: ScalarOrSchedule = 0.999,
    eps: float = 1e-8,
    eps_root: float = 0.0,
) -> GradientTransformation[ScaleByAmsgradState]:
    r"""AMSGrad's rescaling: Adam with the running maximum of the second moment.

    As :func:`scale_by_adam`, but the denominator uses
    ``vmax_t = max(vmax_{t-1}, v_hat_t)``, so the effective step size never grows:

    .. math::

        u_t = \hat m_t / (\sqrt{\hat v^{max}_t + \epsilon_{root}} + \epsilon)

    (Reddi, Kale & Kumar, "On the Convergence of Adam and Beyond", ICLR 2018.) Same as
    ``optax.scale_by_amsgrad``.

    Args:
        b1: ``beta_1`` in [0, 1): a number, a scalar array or a schedule.
        b2: ``beta_2`` in [0, 1): a number, a scalar array or a schedule.
        eps: ``epsilon >= 0`` outside the square root.
        eps_root: ``epsilon_root >= 0`` inside the square root.

    Returns:
        A :class:`~functrain.optim.GradientTransformation` with :class:`ScaleByAmsgradState`.

    Raises:
        TypeError: a hyperparameter of the wrong type.
        ValueError: a beta outside [0, 1) or a negative ``eps`` / ``eps_root``.

    Example:
        >>> tx = ft.optim.scale_by_amsgrad(b1=0.0, b2=0.5, eps=0.0)
        >>> state = tx.init({"w": jnp.zeros(1)})
        >>> for g in (4.0, 1.0):  # v_hat: 16, then (0.5 * 8 + 0.5) / 0.75 = 6: the max stays 16
        ...     u, state = tx.update({"w": jnp.asarray([g])}, state)
        >>> round(float(u["w"][0]), 4), round(float(state.nu_max["w"][0]), 4)
        (0.25, 16.0)
    """
    fn = "scale_by_amsgrad"
    _check_adam(fn, b1, b2, eps, eps_root)
    direction = _direction(eps, eps_root)

    def init(params: PyTree) -> ScaleByAmsgradState:
        # Separate buffers (not one zeros tree three times), so the state can be donated.
        return ScaleByAmsgradState(zero_step(), tree_zeros_like(params), tree_zeros_like(params),
                                   tree_zeros_like(params))

    def update(
        updates: PyTree, state: ScaleByAmsgradState, params: PyTree | None = None, **extra_args: Any
    ) -> tuple[PyTree, ScaleByAmsgradState]:
        del params, extra_args
        mu, nu, t, c1, c2 = _moments(fn, b1, b2, updates, state.step, state.mu, state.nu)
        nu_max = tree_map(lambda vm, v: jnp.maximum(vm, v / c2.astype(v.dtype)), state.nu_max, nu)
        new = tree_map(lambda m, vm: direction(m / c1.astype(m.dtype), vm), mu, nu_max)
        return new, ScaleByAmsgradState(t, mu, nu, nu_max)

    return GradientTransformation(init, update)


def adam(
    learning_rate: ScalarOrSchedule = 1e-3,
    b1: ScalarOrSchedule = 0.9,
    b2: ScalarOrSchedule = 0.999,
    eps: float = 1e-8,
    eps_root: float = 0.0,
) -> GradientTransformation[tuple[ScaleByAdamState, ScaleByLearningRateState]]:
    r"""Adam: ``w <- w - eta m_hat / (sqrt(v_hat + eps_root) + eps)``.

    Kingma & Ba, ICLR 2015; see :func:`scale_by_adam` for the moment estimates and bias
    corrections. Same as ``optax.adam`` (same arguments, in the same order).

    ``eps_root > 0`` makes the update differentiable where the second moment is zero (a
    parameter whose gradients were all exactly 0 so far: an unused input, a dead unit, the first
    step of a zero gradient): ``sqrt`` has an infinite derivative at 0, so without it a gradient
    *through* the training run (a hypergradient, meta-learning) is NaN as soon as that happens.
    Recipe for ``d val_loss / d lr`` through a whole run (``tests/test_hypergradients.py``)::

        def val_loss(lr):  # build the optimizer inside: lr is traced
            opt = ft.optim.adam(lr, eps_root=1e-12)
            state = ft.train.init_train_state(params, (), opt)
            fit_state, _ = ft.train.fit_scan(ft.train.make_train_step(loss_fn, opt),
                                             ft.train.init_fit_state(state), train, key,
                                             ft.train.FitOptions(batch_size), epochs=3)
            return validation_loss(fit_state.train_state.params)

        hypergrad = jax.grad(val_loss)(1e-2)  # finite; compare with finite differences in x64

    Args:
        learning_rate: ``eta >= 0``: a number, a scalar array or a schedule.
        b1: ``beta_1`` in [0, 1): a number, a scalar array or a schedule.
        b2: ``beta_2`` in [0, 1): a number, a scalar array or a schedule.
        eps: ``epsilon >= 0``, outside the square root.
        eps_root: ``epsilon_root >= 0``, inside the square root (default 0, as in optax and the
            paper; e.g. ``1e-12`` to differentiate through training).

    Returns:
        A :class:`~functrain.optim.GradientTransformation` with state
        ``(ScaleByAdamState, ScaleByLearningRateState)``.

    Raises:
        TypeError: a hyperparameter of the wrong type.
        ValueError: a concrete hyperparameter out of range.

    Example:
        >>> tx = ft.optim.adam(0.01)
        >>> params = {"w": jnp.asarray([1.0, 2.0])}
        >>> u, state = tx.update({"w": jnp.asarray([0.3, -5.0])}, tx.init(params), params)
        >>> [round(x, 4) for x in u["w"].tolist()]  # the first step is -lr * sign(g)
        [-0.01, 0.01]
    """
    _validate.check_hyperparameter(learning_rate, "adam", "learning_rate", low=0.0)
    _check_adam("adam", b1, b2, eps, eps_root)
    return chain(scale_by_adam(b1, b2, eps, eps_root), scale_by_learning_rate(learning_rate))


def amsgrad(
    learning_rate: ScalarOrSchedule = 1e-3,
    b1: ScalarOrSchedule = 0.9,
    b2: ScalarOrSchedule = 0.999,
    eps: float = 1e-8,
    eps_root: float = 0.0,
) -> GradientTransformation[tuple[ScaleByAmsgradState, ScaleByLearningRateState]]:
    r"""AMSGrad: Adam whose denominator never shrinks, ``w <- w - eta m_hat / (sqrt(vmax) + eps)``.

    Reddi, Kale & Kumar, ICLR 2018; see :func:`scale_by_amsgrad`. Same as ``optax.amsgrad``.

    Args:
        learning_rate: ``eta >= 0``: a number, a scalar array or a schedule.
        b1: ``beta_1`` in [0, 1): a number, a scalar array or a schedule.
        b2: ``beta_2`` in [0, 1): a number, a scalar array or a schedule.
        eps: ``epsilon >= 0``, outside the square root.
        eps_root: ``epsilon_root >= 0``, inside the square root (> 0: differentiable at a zero
            second moment, see :func:`adam`).

    Returns:
        A :class:`~functrain.optim.GradientTransformation` with state
        ``(ScaleByAmsgradState, ScaleByLearningRateState)``.

    Raises:
        TypeError: a hyperparameter of the wrong type.
        ValueError: a concrete hyperparameter out of range.

    Example:
        >>> tx = ft.optim.amsgrad(0.01)
        >>> params = {"w": jnp.asarray([1.0, 2.0])}
        >>> u, state = tx.update({"w": jnp.asarray([0.3, -5.0])}, tx.init(params), params)
        >>> [round(x, 4) for x in u["w"].tolist()]  # the first step is -lr * sign(g)
        [-0.01, 0.01]
    """
    _validate.check_hyperparameter(learning_rate, "amsgrad", "learning_rate", low=0.0)
    _check_adam("amsgrad", b1, b2, eps, eps_root)
    return chain(scale_by_amsgrad(b1, b2, eps, eps_root), scale_by_learning_rate(learning_rate))


def adamw(
    learning_rate: ScalarOrSchedule,
    *,
    b1: ScalarOrSchedule = 0.9,
    b2: ScalarOrSchedule = 0.999,
    eps: float = 1e-8,
    eps_root: float = 0.0,
    weight_decay: ScalarOrSchedule = 1e-4,
    mask: DecayMask = default_decay_mask,
) -> GradientTransformation[
    tuple[ScaleByAdamState, AddDecayedWeightsState, ScaleByLearningRateState]
]:
    r"""AdamW: Adam with decoupled weight decay, ``w <- w - eta (adam_t + lambda w)``.

    Loshchilov & Hutter, "Decoupled Weight Decay Regularization", ICLR 2019. As in optax and
    PyTorch, the decay is multiplied by the learning rate (schedule included). Same as
    ``optax.adamw`` with the same ``mask``. By default only the weights (floating or complex leaves
    with ``ndim >= 2``: weight matrices, conv kernels) are decayed, not biases or normalization
    scales (:func:`~functrain.optim.default_decay_mask`); pass ``mask=None`` to decay every leaf.

    Args:
        learning_rate: ``eta >= 0``: a number, a scalar array or a schedule.
        b1: ``beta_1`` in [0, 1): a number, a scalar array or a schedule.
        b2: ``beta_2`` in [0, 1): a number, a scalar array or a schedule.
        eps: ``epsilon >= 0``, outside the square root.
        eps_root: ``epsilon_root >= 0``, inside the square root (> 0: differentiable at a zero
            second moment, see :func:`adam`).
        weight_decay: ``lambda >= 0``: a number, a scalar array or a schedule.
        mask: which leaves to decay: a pytree of bools (a prefix of the params), a function of the
            params returning one, or ``None`` for all leaves.

    Returns:
        A :class:`~functrain.optim.GradientTransformation` with state
        ``(ScaleByAdamState, AddDecayedWeightsState, ScaleByLearningRateState)``.

    Raises:
        TypeError: a hyperparameter of the wrong type.
        ValueError: a concrete hyperparameter out of range.

    Example:
        >>> tx = ft.optim.adamw(0.1, weight_decay=0.5)
        >>> params = {"w": jnp.ones((2, 2)), "b": jnp.ones(2)}
        >>> zero = jax.tree_util.tree_map(jnp.zeros_like, params)
        >>> u, state = tx.update(zero, tx.init(params), params)
        >>> round(float(u["w"][0, 0]), 4), bool(u["b"][0] == 0)  # -lr * lambda * w; no bias decay
        (-0.05, True)
    """
    _validate.check_hyperparameter(learning_rate, "adamw", "learning_rate", low=0.0)
    _check_adam("adamw", b1, b2, eps, eps_root)
    _validate.check_hyperparameter(weight_decay, "adamw", "weight_decay", low=0.0)
    return chain(
        scale_by_adam(b1, b2, eps, eps_root),
        add_decayed_weights(weight_decay, mask),
        scale_by_learning_rate(learning_rate),
    )
