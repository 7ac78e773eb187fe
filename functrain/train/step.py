"""Pure training and evaluation steps built from a loss function and an optimizer.

A loss function has the signature (see :class:`functrain.typing.LossFn`)::

    loss_fn(params, model_state, batch, key) -> (loss, (new_model_state, metrics))

:func:`make_train_step` differentiates it with respect to ``params`` and applies the optimizer;
the resulting ``step(state, batch, key) -> (state, metrics)`` is a pure function that can be
``jax.jit``-ed, ``jax.vmap``-ed over seeds or hyperparameters, and scanned over batches (see
:func:`functrain.train.train_epoch`).

Any model works, not only functrain layers. For an equinox model, train its arrays and close over
the rest::

    params, static = eqx.partition(model, eqx.is_inexact_array)

    def loss_fn(params, model_state, batch, key):
        model = eqx.combine(params, static)
        x, y = batch
        logits = jax.vmap(model)(x)
        return softmax_cross_entropy(logits, y), (model_state, {"accuracy": accuracy(logits, y)})

    state = init_train_state(params, (), functrain.optim.adam(1e-3))
    step = make_train_step(loss_fn, functrain.optim.adam(1e-3))

``params`` then holds ``None`` where ``static`` holds the non-array fields; ``None`` is an empty
pytree node, so gradients, optimizers, norms, checkpoints and averages skip it.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal, NoReturn, Protocol, overload

import jax
import jax.numpy as jnp
from typing_extensions import TypeVar

from functrain import _jax, _tree, _validate
from functrain.optim.base import GradientTransformation, TransformationLike, apply_updates
from functrain.optim.guards import SkipNonfiniteState
from functrain.train.classifier import ClassifierLoss as ClassifierLoss  # their old home
from functrain.train.classifier import classifier_loss as classifier_loss
from functrain.train.state import TrainState
from functrain.typing import Array, LossFn, Metrics, PRNGKey, PyTree

__all__ = [
    "EvalStep",
    "TrainStep",
    "make_eval_step",
    "make_train_step",
]


AnyTrainState = TrainState[Any, Any, Any]
S = TypeVar("S", bound=AnyTrainState, default=AnyTrainState)
S_contra = TypeVar("S_contra", bound=AnyTrainState, default=AnyTrainState, contravariant=True)
O = TypeVar("O")


class TrainStep(Protocol[S]):
    """``step(state, batch, key) -> (new_state, metrics)``: one optimizer update, pure.

    Generic in the train state ``S`` it takes and returns (a ``TrainState[P, M, O]``; a bare
    ``TrainStep`` is ``TrainStep[TrainState[Any, Any, Any]]``). :func:`make_train_step` builds a
    ``TrainStep[TrainState[Any, Any, O]]`` for a ``GradientTransformation[O]``, so a step given
    a state whose optimizer state is of another type (built with another optimizer) is a type
    error, and an eval step given as a train step is one too. A hand-written function with this
    signature works as well.

    Example:
        >>> def step(state, batch, key):  # a hand-written step: plain gradient descent
        ...     grads = jax.grad(lambda p: jnp.mean((batch[0] @ p - batch[1]) ** 2))(state.params)
        ...     loss = jnp.mean((batch[0] @ state.params - batch[1]) ** 2)
        ...     return state._replace(step=state.step + 1, params=state.params - 0.1 * grads), {"loss": loss}
        >>> state = ft.train.init_train_state(jnp.zeros(2), (), ft.optim.sgd(0.1))
        >>> data = (jnp.ones((4, 2)), jnp.ones(4))
        >>> state, metrics = ft.train.train_epoch(step, state, data, jax.random.key(0), batch_size=2)
        >>> int(state.step)
        2
    """

    def __call__(self, state: S, batch: PyTree, key: PRNGKey, /) -> tuple[S, Metrics]:
        """Apply one update on ``batch``; ``metrics`` has ``"loss"`` (and, from
        :func:`make_train_step` with ``grad_norm=True``, ``"grad_norm"``)."""
        ...


class EvalStep(Protocol[S_contra]):
    """``eval_step(state, batch) -> metrics``: the loss and metrics of ``state`` on a batch.

    Generic in the train state ``S`` it reads (a bare ``EvalStep`` takes any ``TrainState``).
    :func:`make_eval_step` builds one; a hand-written function with this signature works too.

    Example:
        >>> def eval_step(state, batch):
        ...     return {"loss": jnp.mean((batch[0] @ state.params - batch[1]) ** 2)}
        >>> state = ft.train.init_train_state(jnp.ones(2), (), ft.optim.sgd(0.1))
        >>> metrics = ft.train.evaluate(eval_step, state, (jnp.ones((5, 2)), jnp.ones(5)), batch_size=2)
        >>> round(float(metrics["loss"]), 4)
        1.0
    """

    def __call__(self, state: S_contra, batch: PyTree, /) -> Metrics:
        """Evaluate ``state`` on ``batch``; ``metrics`` has ``"loss"``."""
        ...


def loss_value_and_grad(loss_fn: LossFn, who: str) -> Any:
    """``(params, model_state, batch, key) -> ((loss, (model_state, metrics)), grads)``, the loss's
    output checked (shared by :func:`make_train_step` and the SAM step)."""

    def wrapped(params: PyTree, model_state: PyTree, batch: PyTree,
                key: PRNGKey) -> tuple[Array, tuple[PyTree, Mapping[str, Array]]]:
        loss, model_state, metrics = _check_loss_output(loss_fn(params, model_state, batch, key), who)
        return loss, (model_state, metrics)

    return _jax.value_and_grad(wrapped, has_aux=True)


def _check_loss_output(out: object, who: str) -> tuple[Array, PyTree, Mapping[str, Array]]:
    """The ``(loss, model_state, metrics)`` a loss function returned, checked at trace time."""
    if not (_tree.is_tuple(out) and len(out) == 2 and _tree.is_tuple(out[1]) and len(out[1]) == 2):
        raise TypeError(f"{who}: argument 'loss_fn' must be a function returning (loss, (new_model_state, metrics)), "
                        f"got a return value of {_validate.describe(out)}")
    loss: Array
    model_state: PyTree
    metrics: object
    loss, (model_state, metrics) = out
    if jnp.shape(loss) != ():
        raise ValueError(f"{who}: argument 'loss_fn' must be a function returning a scalar loss, got a loss of "
                         f"shape {jnp.shape(loss)}")
    if not _tree.is_mapping(metrics):
        raise TypeError(f"{who}: argument 'loss_fn' must be a function returning metrics as a mapping of names to "
                        f"scalars, got metrics of {_validate.describe(metrics)}")
    return loss, model_state, metrics


def _check_opt_state(optimizer: TransformationLike, state: TrainState[Any, Any, Any]) -> None:
    """At trace time: ``state.opt_state`` must have the structure ``optimizer.init(state.params)`` has.

    An optimizer state built for other parameters (another model, a parameter added after
    ``init_train_state``) otherwise fails deep inside the optimizer with a cryptic message. The
    check runs ``optimizer.init`` abstractly (``jax.eval_shape``): nothing is computed and nothing
    enters the compiled step. An ``init`` that cannot run abstractly is not checked.
    """
    try:
        expected = _jax.eval_shape(optimizer.init, state.params)
    except TypeError:  # an init that needs concrete values: no abstract reference to compare with
        return
    _validate.check_same_structure(expected, state.opt_state, "train_step", "state.opt_state",
                                   "optimizer.init(state.params)")


def _guard_types() -> tuple[type, ...]:
    """The optimizer-state records of step-skipping guards: functrain's
    :class:`~functrain.optim.SkipNonfiniteState`, and ``optax.ApplyIfFiniteState`` if optax is
    imported (a state can only hold it then; functrain does not import optax)."""
    optax = sys.modules.get("optax")
    extra = getattr(optax, "ApplyIfFiniteState", None) if optax is not None else None
    return (SkipNonfiniteState,) if extra is None else (SkipNonfiniteState, extra)


def _guards(opt_state: PyTree) -> list[Any]:
    """The guard records in ``opt_state``, in tree order (found at trace time, in Python)."""
    types = _guard_types()
    return [x for x in _tree.tree_leaves(opt_state, is_leaf=lambda x: isinstance(x, types))
            if isinstance(x, types)]


def _skipped(old: list[Any], new: list[Any]) -> Array:
    """Whether any guard skipped this step: its skip counter advanced."""
    skipped = jnp.asarray(False)
    for o, n in zip(old, new, strict=True):
        advanced = (n.skipped_steps != o.skipped_steps) if isinstance(n, SkipNonfiniteState) else (
            n.total_notfinite != o.total_notfinite)
        skipped = jnp.logical_or(skipped, advanced)
    return skipped


def guarded_model_state(old_opt_state: PyTree, new_opt_state: PyTree, old_model_state: PyTree,
                        new_model_state: PyTree) -> PyTree:
    """The model state after a step: ``old_model_state`` where a guard of the optimizer skipped
    the step (its skip counter advanced), else ``new_model_state``.

    The guards are found in ``old_opt_state`` at trace time; without one, ``new_model_state`` is
    returned as is and nothing enters the program. Shared by :func:`make_train_step` and
    :func:`~functrain.train.make_sam_train_step`.
    """
    guards = _guards(old_opt_state)
    if not guards:  # trace time: only a guarded optimizer pays for the select
        return new_model_state
    skipped = _skipped(guards, _guards(new_opt_state))
    return _tree.tree_where(skipped, old_model_state, new_model_state)


@overload
def make_train_step(loss_fn: LossFn, optimizer: GradientTransformation[O], *,
                    grad_norm: bool = False) -> TrainStep[TrainState[Any, Any, O]]: ...
@overload
def make_train_step(loss_fn: LossFn, optimizer: TransformationLike, *,
                    grad_norm: bool = False) -> TrainStep: ...
def make_train_step(loss_fn: LossFn, optimizer: GradientTransformation[Any] | TransformationLike, *,
                    grad_norm: bool = False) -> TrainStep:
    """Build the pure training step ``step(state, batch, key) -> (state, metrics)``.

    One step computes ``(loss, (model_state, metrics)), g = value_and_grad(loss_fn)(params, ...)``,
    ``updates, opt_state = optimizer.update(g, opt_state, params)`` and
    ``params = params + updates``, and increments ``state.step``. The metrics are the loss
    function's metrics plus ``"loss"``: by default the step does exactly the work of a
    hand-written step, nothing more. Extra diagnostics are opt-in: ``grad_norm=True`` adds
    ``"grad_norm"``, the global L2 norm of the gradient ``sqrt(sum_i ||g_i||^2)`` before any
    clipping the optimizer applies.

    The step works for any pytree of parameters: functrain layers, or an equinox model split by
    ``eqx.partition`` (see the module docstring). When it is traced, it checks that
    ``state.opt_state`` has the tree structure of ``optimizer.init(state.params)`` (an optimizer
    state built for other parameters is a ``TypeError`` naming the differing leaves); the check
    runs at trace time only and adds nothing to the compiled step.

    A step that a guard in the optimizer skips (:func:`~functrain.optim.skip_nonfinite`, or
    ``optax.apply_if_finite``: its skip counter advances) leaves the whole state unchanged but
    the counters: the params (zero updates), the optimizer state (kept by the guard) AND the model
    state, whose new batch-norm statistics are dropped (``jnp.where`` on the guard's counter, so
    a NaN batch cannot poison the running statistics; under ``vmap`` each run on its own).
    ``state.step`` and the guard's counters still advance. The guard is found in
    ``state.opt_state`` at trace time, so a step without one does no extra work at all.

    The returned function carries two read-only attributes for drivers: ``step.loss_fn`` (the
    ``loss_fn`` given, e.g. a :class:`ClassifierLoss` whose ``apply`` is the model) and
    ``step.optimizer``.

    Args:
        loss_fn: ``loss_fn(params, model_state, batch, key) -> (loss, (new_model_state, metrics))``
            with a scalar ``loss`` and ``metrics`` mapping names to scalars.
        optimizer: a gradient transformation (functrain or optax).
        grad_norm: also report ``"grad_norm"`` (opt-in; default ``False``). It costs one more
            pass over the gradients per step (a square-and-sum per leaf: on CPU about 15% of a
            small MLP's step, negligible for conv nets or on accelerators). With an optimizer
            that clips by the global norm (``clip_by_global_norm``) XLA usually computes the
            norm once for both.

    Returns:
        The step function, a ``TrainStep[TrainState[Any, Any, O]]`` for a
        ``GradientTransformation[O]`` (a bare ``TrainStep`` for an optax transformation). It is
        pure: jit, vmap and scan it freely.

    Raises:
        TypeError: if ``loss_fn`` is not callable or ``optimizer`` is not a gradient
            transformation; at the first (traced) call, if ``loss_fn`` returns the wrong
            structure or ``state.opt_state`` does not fit ``state.params``.
        ValueError: at the first call, if the loss is not a scalar.

    Example:
        >>> def loss_fn(params, model_state, batch, key):
        ...     x, y = batch
        ...     return jnp.mean((x @ params["w"] - y) ** 2), (model_state, {})
        >>> opt = ft.optim.sgd(0.1)
        >>> state = ft.train.init_train_state({"w": jnp.zeros(2)}, (), opt)
        >>> step = jax.jit(ft.train.make_train_step(loss_fn, opt))
        >>> new, metrics = step(state, (jnp.ones((4, 2)), jnp.ones(4)), jax.random.key(0))
        >>> int(new.step), sorted(metrics), round(float(metrics["loss"]), 4)
        (1, ['loss'], 1.0)
        >>> step = jax.jit(ft.train.make_train_step(loss_fn, opt, grad_norm=True))  # opt-in metric
        >>> _, metrics = step(state, (jnp.ones((4, 2)), jnp.ones(4)), jax.random.key(0))
        >>> round(float(metrics["grad_norm"]), 4)
        2.8284
    """
    who = "make_train_step"
    _validate.check_callable(loss_fn, who, "loss_fn")
    _validate.check_transformation(optimizer, who, "optimizer")
    _validate.check_bool(grad_norm, who, "grad_norm")

    grad_fn = loss_value_and_grad(loss_fn, who)

    def step(state: TrainState[Any, Any, Any], batch: PyTree,
             key: PRNGKey) -> tuple[TrainState[Any, Any, Any], Metrics]:
        _check_opt_state(optimizer, state)
        (loss, (model_state, metrics)), grads = grad_fn(state.params, state.model_state, batch, key)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        params = apply_updates(state.params, updates)
        model_state = guarded_model_state(state.opt_state, opt_state, state.model_state, model_state)
        out = {**metrics, "loss": loss}
        if grad_norm:
            out["grad_norm"] = _tree.tree_global_norm(grads)
        return TrainState(state.step + 1, params, model_state, opt_state), out

    setattr(step, "loss_fn", loss_fn)  # noqa: B010 (an attribute on a function, for drivers)
    setattr(step, "optimizer", optimizer)  # noqa: B010
    return step


def _training_mode(loss_fn: object) -> bool:
    """Whether ``loss_fn`` declares training mode: ``train is True`` on it (a
    :class:`ClassifierLoss`), or in the keywords of a ``functools.partial``."""
    if getattr(loss_fn, "train", None) is True:
        return True
    return isinstance(loss_fn, functools.partial) and loss_fn.keywords.get("train") is True


if TYPE_CHECKING:
    from typing_extensions import deprecated
else:  # the marker is for type checkers only: no run-time dependency, no wrapper
    def deprecated(message: str) -> Any:
        return lambda fn: fn


@overload
@deprecated("make_eval_step refuses a training-mode loss (it would evaluate with dropout on and "
            "batch statistics): build it with classifier_loss(apply, train=False)")
def make_eval_step(loss_fn: ClassifierLoss[Literal[True]], *,
                   key: PRNGKey | None = None) -> NoReturn: ...
@overload
def make_eval_step(loss_fn: LossFn, *, key: PRNGKey | None = None) -> EvalStep: ...
def make_eval_step(loss_fn: LossFn, *, key: PRNGKey | None = None) -> EvalStep:
    """Build the pure evaluation step ``eval_step(state, batch) -> metrics``.

    Evaluation has *inference* semantics, and those belong to the loss function: pass one that
    runs the model with ``train=False`` (dropout off, batch-norm running statistics), for example
    ``classifier_loss(apply, train=False)`` or ``functools.partial(my_loss, train=False)``.
    The new model state the loss function returns is discarded (evaluation never updates
    batch-norm statistics), and no gradient is computed. A loss function that declares training
    mode is refused, since it would evaluate with dropout on and batch statistics: an object with
    ``train`` set to ``True`` (a :class:`ClassifierLoss` from ``classifier_loss(apply,
    train=True)``) or a ``functools.partial`` with the keyword ``train=True``. Type checkers
    refuse the first statically too: ``classifier_loss(apply, train=True)`` is a
    ``ClassifierLoss[Literal[True]]``, which selects a deprecated overload returning ``NoReturn``
    (mypy with the ``deprecated`` error code, pyright's ``reportDeprecated``).

    Args:
        loss_fn: an evaluation loss function with the :class:`~functrain.typing.LossFn` signature.
        key: the key passed to ``loss_fn`` (default ``jax.random.key(0)``). An evaluation loss
            should be deterministic and ignore it; give one if yours is stochastic on purpose
            (e.g. Monte-Carlo dropout).

    Returns:
        ``eval_step(state, batch) -> metrics`` with ``"loss"`` and the loss function's metrics.

    Raises:
        TypeError: if ``loss_fn`` is not callable; at the first call, if it returns the wrong
            structure.
        ValueError: if ``loss_fn`` declares training mode (``train=True``, see above); at the
            first call, if the loss is not a scalar.

    Example:
        >>> model = ft.serial(ft.layers.Dense(3))
        >>> params, model_state, _ = model.init(jax.random.key(0), (-1, 4))
        >>> state = ft.train.init_train_state(params, model_state, ft.optim.sgd(0.1))
        >>> eval_step = ft.train.make_eval_step(ft.train.classifier_loss(model.apply, train=False))
        >>> metrics = eval_step(state, (jnp.ones((8, 4)), jnp.zeros(8, jnp.int32)))
        >>> sorted(metrics), metrics["loss"].shape
        (['accuracy', 'loss'], ())
    """
    who = "make_eval_step"
    _validate.check_callable(loss_fn, who, "loss_fn")
    if _training_mode(loss_fn):
        _validate.fail(who, "loss_fn", "an evaluation loss function (train=False, e.g. "
                       "classifier_loss(apply, train=False))", loss_fn,
                       detail="a training-mode loss would evaluate with dropout on and batch "
                       "statistics")

    def eval_step(state: TrainState[Any, Any, Any], batch: PyTree) -> Metrics:
        k = jax.random.key(0) if key is None else key
        loss, _, metrics = _check_loss_output(loss_fn(state.params, state.model_state, batch, k), who)
        return {**metrics, "loss": loss}

    return eval_step
