"""Sharpness-aware minimization (SAM) as a training step.

SAM (Foret et al., "Sharpness-Aware Minimization for Efficiently Improving Generalization", ICLR
2021) minimizes the loss in a neighbourhood, ``min_w max_{||e|| <= rho} L(w + e)``. Its first-order
step: take the gradient ``g = grad L(w)``, ascend to the worst point of the ball
``w + e(w)``, ``e(w) = rho g / ||g||``, take the gradient there, and give *that* gradient to the
optimizer, which applies it at ``w``. Adaptive SAM (ASAM, Kwon et al., "ASAM: Adaptive
Sharpness-Aware Minimization for Scale-Invariant Learning of Deep Neural Networks", ICML 2021)
scales the ball elementwise by ``T_w = |w|``: ``e(w) = rho T_w^2 g / ||T_w g||``.

Each step runs two forward-backward passes, so it costs about twice a plain step
(:func:`~functrain.train.make_train_step`).
"""

from __future__ import annotations

from typing import Any, TypeVar, overload

import jax.numpy as jnp

from functrain import _tree, _validate
from functrain.optim.base import GradientTransformation, TransformationLike, apply_updates
from functrain.train.state import TrainState
from functrain.train.step import (TrainStep, _check_opt_state,  # pyright: ignore[reportPrivateUsage]  # shared inside functrain.train
                                  guarded_model_state, loss_value_and_grad)
from functrain.typing import Array, LossFn, Metrics, PRNGKey, PyTree

__all__ = ["make_sam_train_step", "sam_perturbation"]

O = TypeVar("O")


def sam_perturbation(grads: PyTree, params: PyTree, rho: float | Array, *,
                     adaptive: bool = False) -> PyTree:
    """The SAM ascent ``e = rho g / ||g||`` (or ASAM's ``rho T^2 g / ||T g||``, ``T = |w|``).

    ``||.||`` is the global L2 norm over all leaves. A zero gradient gives a zero perturbation.

    Args:
        grads: the gradient ``g`` at ``params`` (a pytree of floating arrays).
        params: the parameters ``w``, same structure (used by ``adaptive`` only).
        rho: ``>= 0``, the radius of the neighbourhood; may be traced.
        adaptive: ASAM's elementwise scaling ``T_w = |w|``.

    Returns:
        ``e``, the structure of ``grads``; the perturbed point is ``w + e``.

    Raises:
        TypeError: ``adaptive`` is not a bool, or ``grads`` and ``params`` differ in structure.
        ValueError: a negative concrete ``rho``.

    Example:
        >>> e = ft.train.sam_perturbation({"w": jnp.array([3.0, 4.0])}, {"w": jnp.zeros(2)}, 0.5)
        >>> e["w"].tolist()  # 0.5 * (3, 4) / 5
        [0.30000001192092896, 0.4000000059604645]
    """
    who = "sam_perturbation"
    _validate.check_number(rho, who, "rho", low=0.0)
    adaptive = _validate.check_bool(adaptive, who, "adaptive")
    _validate.check_same_structure(grads, params, who, "params", "the gradients")
    return _perturbation(grads, params, rho, adaptive)


def _perturbation(grads: PyTree, params: PyTree, rho: float | Array, adaptive: bool) -> PyTree:
    if adaptive:
        scaled = _tree.tree_map(lambda g, w: jnp.abs(w) * g, grads, params)
    else:
        scaled = grads
    norm = _tree.tree_global_norm(scaled)
    factor = jnp.where(norm > 0, rho / jnp.where(norm > 0, norm, 1.0), 0.0)

    def one(g: Array, w: Array) -> Array:
        direction = jnp.square(w) * g if adaptive else g
        return (factor * direction).astype(g.dtype)

    return _tree.tree_map(one, grads, params)


@overload
def make_sam_train_step(loss_fn: LossFn, optimizer: GradientTransformation[O], *,
                        rho: float | Array = 0.05, adaptive: bool = False,
                        grad_norm: bool = False) -> TrainStep[TrainState[Any, Any, O]]: ...
@overload
def make_sam_train_step(loss_fn: LossFn, optimizer: TransformationLike, *,
                        rho: float | Array = 0.05, adaptive: bool = False,
                        grad_norm: bool = False) -> TrainStep: ...
def make_sam_train_step(loss_fn: LossFn, optimizer: GradientTransformation[Any] | TransformationLike,
                        *, rho: float | Array = 0.05, adaptive: bool = False,
                        grad_norm: bool = False) -> TrainStep:
    """Build a SAM training step ``step(state, batch, key) -> (state, metrics)`` (two passes).

    One step computes ``(loss, (model_state, metrics)), g = value_and_grad(loss_fn)(w, ...)``,
    the ascent ``e = sam_perturbation(g, w, rho, adaptive=adaptive)``, the gradient
    ``g_sam = grad loss_fn(w + e, ...)`` on the same batch with the same key (the same dropout
    masks) and the same input model state, then ``updates, opt_state = optimizer.update(g_sam,
    opt_state, w)``, ``w = w + updates``. The new model state (batch-norm statistics) is the
    one of the first pass, at ``w``: the second pass only measures a gradient. A step that a
    guard in the optimizer skips (:func:`~functrain.optim.skip_nonfinite`,
    ``optax.apply_if_finite``) keeps the model state too, exactly as
    :func:`~functrain.train.make_train_step` does (a NaN batch cannot poison the running
    statistics); without a guard nothing is added to the step.

    The metrics are the loss function's (first pass), ``"loss"`` (at ``w``, as
    :func:`~functrain.train.make_train_step` reports it), ``"perturbed_loss"`` (at ``w + e``) and,
    with ``grad_norm=True`` (opt-in), ``"grad_norm"``, the global norm of ``g_sam`` (the gradient
    the optimizer receives). It costs two forward-backward passes per step. Like
    :func:`~functrain.train.make_train_step`'s, the returned function carries the attributes
    ``step.loss_fn`` and ``step.optimizer`` (for drivers).

    Args:
        loss_fn: ``loss_fn(params, model_state, batch, key) -> (loss, (new_model_state, metrics))``.
        optimizer: a gradient transformation (functrain or optax), e.g. ``optim.sgd(0.1, 0.9)``.
        rho: ``>= 0``, the neighbourhood radius (0.05 in the paper; ASAM uses larger values, e.g.
            0.5-2); may be a traced array (a sweep). ``rho = 0`` is a plain step, at twice the cost.
        adaptive: ASAM (``e = rho |w|^2 g / || |w| g ||``).
        grad_norm: also report ``"grad_norm"`` (opt-in, as in
            :func:`~functrain.train.make_train_step`).

    Returns:
        The step function (a ``TrainStep[TrainState[Any, Any, O]]`` for a
        ``GradientTransformation[O]``, as :func:`~functrain.train.make_train_step`'s), pure:
        jit, vmap and scan it (e.g. with :func:`~functrain.train.train_epoch`).

    Raises:
        TypeError: ``loss_fn`` not callable, ``optimizer`` not a gradient transformation, a flag
            not a bool; at the first call, a loss function returning the wrong structure.
        ValueError: a negative concrete ``rho``; at the first call, a non-scalar loss.

    Example:
        >>> def loss_fn(params, model_state, batch, key):  # 0.5 ||w||^2: the gradient is w
        ...     return 0.5 * jnp.sum(params ** 2), (model_state, {})
        >>> opt = ft.optim.sgd(0.1)
        >>> state = ft.train.init_train_state(jnp.array([3.0, 4.0]), (), opt)
        >>> step = jax.jit(ft.train.make_sam_train_step(loss_fn, opt, rho=0.5))
        >>> state, metrics = step(state, None, jax.random.key(0))
        >>> state.params.tolist()  # w - 0.1 * (w + 0.5 w / ||w||) = (3, 4) - 0.1 * (3.3, 4.4)
        [2.6700000762939453, 3.559999942779541]
        >>> round(float(metrics["loss"]), 4), round(float(metrics["perturbed_loss"]), 4)
        (12.5, 15.125)
    """
    who = "make_sam_train_step"
    _validate.check_callable(loss_fn, who, "loss_fn")
    _validate.check_transformation(optimizer, who, "optimizer")
    _validate.check_number(rho, who, "rho", low=0.0)
    adaptive = _validate.check_bool(adaptive, who, "adaptive")
    report_norm = _validate.check_bool(grad_norm, who, "grad_norm")

    grad_fn = loss_value_and_grad(loss_fn, who)

    def step(state: TrainState[Any, Any, Any], batch: PyTree,
             key: PRNGKey) -> tuple[TrainState[Any, Any, Any], Metrics]:
        _check_opt_state(optimizer, state)
        (loss, (model_state, metrics)), grads = grad_fn(state.params, state.model_state, batch, key)
        e = _perturbation(grads, state.params, rho, adaptive)
        perturbed = apply_updates(state.params, e)
        (perturbed_loss, _), sam_grads = grad_fn(perturbed, state.model_state, batch, key)
        updates, opt_state = optimizer.update(sam_grads, state.opt_state, state.params)
        params = apply_updates(state.params, updates)
        model_state = guarded_model_state(state.opt_state, opt_state, state.model_state, model_state)
        out = {**metrics, "loss": loss, "perturbed_loss": perturbed_loss}
        if report_norm:
            out["grad_norm"] = _tree.tree_global_norm(sam_grads)
        return TrainState(state.step + 1, params, model_state, opt_state), out

    setattr(step, "loss_fn", loss_fn)  # noqa: B010 (read-only attributes for drivers, as make_train_step's)
    setattr(step, "optimizer", optimizer)  # noqa: B010
    return step
