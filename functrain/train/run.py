"""A whole training run as a pure function: :class:`FitOptions`, :class:`FitState`, :func:`fit_epoch`, :func:`fit_scan`.

The options of a run travel as one frozen, hashable :class:`FitOptions` (a static pytree, so it
passes through ``jit``/``vmap`` as is); :func:`fit_epoch` adds validation, reduce-on-plateau and
early stopping to an epoch; :func:`fit_scan` runs ``epochs`` of them in one ``lax.scan``, so
``jax.vmap(fit_scan)`` trains many seeds at once, each stopping on its own. Epoch ``e`` uses
``fold_in(key, e)``, so :func:`~functrain.train.fit` (the host loop around the jitted
:func:`fit_epoch`), :func:`fit_scan` and a resumed run compute the same run.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, Generic, NamedTuple, cast

import jax
import jax.numpy as jnp
from jax import lax

from functrain import _validate
from functrain.optim.guards import has_diverged, skipped_updates
from functrain.train._run_helpers import (
    DIVERGED,
    all_finite,
    check_epoch_count,
    check_fields,
    guarded,
    observe,
    restore_best,
    tracking,
)
from functrain.train.early_stopping import EarlyStopping, EarlyStoppingState, masked_update
from functrain.train.epoch import evaluate, mean_metrics, scan_steps
from functrain.train.plateau import ReduceOnPlateau, ReduceOnPlateauState, check_plateau_state
from functrain.train.state import TS, TrainState
from functrain.train.step import EvalStep, TrainStep
from functrain.typing import Array, PRNGKey, PyTree

__all__ = [
    "EpochMetrics",
    "FitOptions",
    "FitState",
    "final_train_state",
    "fit_epoch",
    "fit_scan",
    "init_fit_state",
]


@jax.tree_util.register_static
@dataclass(frozen=True)
class FitOptions:
    """The options of a training run, shared by :func:`fit_epoch`, :func:`fit_scan` and ``fit``.

    A frozen, hashable value: a static argument of ``jax.jit`` (and a static pytree, so it passes
    through ``jit`` and ``vmap`` unchanged). Validated when built.

    Attributes:
        batch_size: training batch size, ``1 <= batch_size <= n_train``.
        eval_step: the evaluation step (``make_eval_step``), used on the ``val_data`` given to
            :func:`fit_epoch`/:func:`fit_scan`; ``None`` for no validation.
        eval_batch_size: evaluation batch size (``None``: ``batch_size``).
        early_stopping: an :func:`~functrain.train.early_stopping` rule, or ``None``.
        plateau: a :func:`~functrain.train.reduce_on_plateau` rule, or ``None`` (the optimizer
            must then end with :func:`~functrain.train.scale_by_plateau`).
        monitor: the metric watched by early stopping and the plateau rule: a name of a
            validation metric (or, without validation, of a training metric), or an explicit
            ``"val_<name>"`` / ``"train_<name>"``.

    Raises:
        TypeError: a field of the wrong kind (a float batch size, a function as early stopping).
        ValueError: a batch size below 1.

    Example:
        >>> options = ft.train.FitOptions(batch_size=32, early_stopping=ft.train.early_stopping(5))
        >>> options.eval_step is None, options.monitor
        (True, 'loss')
        >>> same = ft.train.FitOptions(np.int64(32), early_stopping=ft.train.early_stopping(5))
        >>> same == options, hash(same) == hash(options), same.batch_size  # equal values: one compile
        (True, True, 32)
    """

    batch_size: int
    eval_step: EvalStep | None = None
    eval_batch_size: int | None = None
    early_stopping: EarlyStopping | None = None
    plateau: ReduceOnPlateau | None = None
    monitor: str = "loss"

    def __post_init__(self) -> None:
        """Validate the fields; store the batch sizes as Python ints."""
        bs, ebs = check_fields("FitOptions", self.batch_size, self.eval_step, self.eval_batch_size,
                                self.early_stopping, self.plateau, self.monitor)
        object.__setattr__(self, "batch_size", bs)
        object.__setattr__(self, "eval_batch_size", ebs)


def options_for(who: str, *, batch_size: int, eval_step: EvalStep | None, eval_batch_size: int | None,
                early_stopping: EarlyStopping | None, plateau: ReduceOnPlateau | None,
                monitor: str) -> FitOptions:
    """:class:`FitOptions` from separate keywords, with errors naming ``who`` (e.g. ``fit``)."""
    check_fields(who, batch_size, eval_step, eval_batch_size, early_stopping, plateau, monitor)
    return FitOptions(batch_size, eval_step, eval_batch_size, early_stopping, plateau, monitor)


class FitState(NamedTuple, Generic[TS]):
    """Everything a training run carries from epoch to epoch (checkpoint this to resume).

    Attributes:
        epoch: int32, the number of epochs run so far (the next epoch's index).
        train_state: the :class:`~functrain.train.TrainState`.
        early_stopping: the early-stopping state, or ``None`` without early stopping.
        plateau: the reduce-on-plateau state, or ``None`` without it.

    Example:
        >>> state = ft.train.init_train_state({"w": jnp.zeros(2)}, (), ft.optim.sgd(0.1))
        >>> fit_state = ft.train.init_fit_state(state)
        >>> int(fit_state.epoch), fit_state.early_stopping, fit_state.plateau
        (0, None, None)
    """

    epoch: Array
    train_state: TS
    early_stopping: EarlyStoppingState | None
    plateau: ReduceOnPlateauState | None


class EpochMetrics(NamedTuple):
    """What one epoch reports (stacked along a leading epoch axis by :func:`fit_scan`).

    Attributes:
        train: training metrics averaged over the epoch's steps (``"loss"``, the loss
            function's metrics, ``"grad_norm"`` from ``make_train_step(..., grad_norm=True)``).
        val: validation metrics over all validation examples (empty without validation data).
        step_loss: ``(n_batches,)`` the loss of every step (to locate a non-finite one).
        finite: whether all floating leaves of the parameters, the model state (e.g. batch-norm
            running statistics) and the optimizer state are finite after the epoch.
        lr_scale: the reduce-on-plateau scale in effect after the epoch (1 without plateau).
        active: whether the epoch trained (``False`` once early stopping had stopped the run,
            or once the run had diverged: the state was left unchanged and the metrics
            describe a discarded epoch).
        step: the train state's step counter after the epoch.
        skipped: int32, the updates of this epoch that a :func:`~functrain.optim.skip_nonfinite`
            guard skipped (read from the guard's counters; 0 without a guard).
        diverged: whether the run has diverged: a ``skip_nonfinite(..., max_consecutive=N)``
            guard saw ``N`` consecutive non-finite updates (:func:`~functrain.optim.has_diverged`).
            From the next epoch on the run is frozen, as an early-stopped one.
        diverged_step: int32, the 0-based step of this epoch whose update made the run diverge,
            or ``-1`` when it did not diverge during this epoch.

    Example:
        >>> def loss_fn(params, model_state, batch, key):
        ...     return jnp.mean((batch[0] @ params - batch[1]) ** 2), (model_state, {})
        >>> opt = ft.optim.sgd(0.1)
        >>> fit_state = ft.train.init_fit_state(ft.train.init_train_state(jnp.zeros(3), (), opt))
        >>> step, data = ft.train.make_train_step(loss_fn, opt), (jnp.ones((8, 3)), jnp.ones(8))
        >>> _, m = ft.train.fit_epoch(step, fit_state, data, jax.random.key(1), ft.train.FitOptions(4))
        >>> sorted(m.train), m.step_loss.shape, bool(m.finite), bool(m.active), int(m.step)
        (['loss'], (2,), True, True, 2)
        >>> int(m.skipped), bool(m.diverged), int(m.diverged_step)  # no skip_nonfinite guard
        (0, False, -1)
    """

    train: dict[str, Array]
    val: dict[str, Array]
    step_loss: Array
    finite: Array
    lr_scale: Array
    active: Array
    step: Array
    skipped: Array
    diverged: Array
    diverged_step: Array


def init_fit_state(train_state: TS, options: FitOptions | None = None) -> FitState[TS]:
    """The state of a run at epoch 0.

    Early stopping tracks the pair ``(params, model_state)``, so that restoring the best epoch
    also restores its batch-norm statistics.

    Args:
        train_state: the initial training state.
        options: the run's options; their ``early_stopping`` and ``plateau`` rules get a state.
            ``None`` (or options without those rules): a run without early stopping and plateau.

    Returns:
        ``FitState(epoch=0, train_state, early_stopping_state, plateau_state)``.

    Raises:
        TypeError: if ``train_state`` is not a ``TrainState`` or ``options`` not a ``FitOptions``.
        ValueError: if ``options.plateau`` is set but the optimizer state has no plateau scale.

    Example:
        >>> opt = ft.optim.chain(ft.optim.sgd(0.1), ft.train.scale_by_plateau())
        >>> state = ft.train.init_train_state({"w": jnp.zeros(2)}, (), opt)
        >>> options = ft.train.FitOptions(batch_size=4, early_stopping=ft.train.early_stopping(3),
        ...                               plateau=ft.train.reduce_on_plateau())
        >>> fit_state = ft.train.init_fit_state(state, options)
        >>> int(fit_state.early_stopping.best_epoch), float(fit_state.plateau.scale)
        (-1, 1.0)
    """
    who = "init_fit_state"
    if not isinstance(cast(object, train_state), TrainState):  # the static type is not enforced
        _validate.fail(who, "train_state", "a TrainState (see init_train_state)", train_state,
                       error=TypeError)
    es = ps = None
    if options is not None:
        if not isinstance(cast(object, options), FitOptions):
            _validate.fail(who, "options", "a FitOptions or None", options, error=TypeError)
        if options.plateau is not None:
            check_plateau_state(train_state.opt_state, who, "train_state.opt_state")
            ps = options.plateau.init()
        if options.early_stopping is not None:
            es = options.early_stopping.init((train_state.params, train_state.model_state))
    return FitState(jnp.zeros((), jnp.int32), train_state, es, ps)


def _check_fit_state(fit_state: object, who: str) -> None:
    if not isinstance(fit_state, FitState):
        _validate.fail(who, "fit_state", "a FitState (see init_fit_state)", fit_state, error=TypeError)


def _check_run(fit_state: FitState[Any], options: object, val_data: PyTree, who: str) -> None:
    """The arguments of :func:`fit_epoch`/:func:`fit_scan` that the epoch itself does not check."""
    _check_fit_state(fit_state, who)
    if not isinstance(options, FitOptions):
        _validate.fail(who, "options", "a FitOptions", options, error=TypeError)
    if options.eval_step is None and val_data is not None:
        _validate.fail(who, "val_data", "None when options.eval_step is None (give both or neither)",
                       val_data)
    if options.eval_step is not None:
        if val_data is None:
            _validate.fail(who, "val_data", "validation data since options.eval_step is set", val_data)
        _validate.check_leading_length(val_data, who, "val_data")
    for name, what, rule, rule_state in (
            ("early_stopping", "an early-stopping", options.early_stopping, fit_state.early_stopping),
            ("plateau", "a reduce-on-plateau", options.plateau, fit_state.plateau)):
        if (rule is None) != (rule_state is None):
            _validate.fail(who, f"options.{name}", f"set exactly when fit_state holds {what} state "
                           "(build both from the same options: init_fit_state(train_state, options))",
                           rule)


def fit_epoch(
    step: TrainStep[TS],
    fit_state: FitState[TS],
    train_data: PyTree,
    key: PRNGKey,
    options: FitOptions,
    *,
    val_data: PyTree = None,
) -> tuple[FitState[TS], EpochMetrics]:
    """One epoch of a run: train, validate, update reduce-on-plateau and early stopping. Pure.

    In order: :func:`~functrain.train.train_epoch` with key ``fold_in(key, fit_state.epoch)``;
    :func:`~functrain.train.evaluate` on ``val_data``; the plateau rule observes the monitored
    metric and its scale is written into the optimizer state
    (:func:`~functrain.train.set_plateau_scale`); early stopping observes the monitored metric and
    ``(params, model_state)``. If the run had already stopped, or had diverged (a
    ``skip_nonfinite(..., max_consecutive=N)`` guard in the optimizer saw ``N`` consecutive
    non-finite updates, :func:`~functrain.optim.has_diverged`), the train, plateau and
    early-stopping states are returned unchanged (``jnp.where``), so under ``vmap`` each run stops
    on its own (``active`` is ``False``; ``diverged`` reports a divergence, ``diverged_step`` the
    step it happened); ``epoch`` always advances. Jit it with ``step`` static (``options`` is a
    static pytree). The divergence flags and skip counts come from the guard's state: without a
    guard nothing is added to the compiled epoch.

    Args:
        step: the train step.
        fit_state: the run's state (from :func:`init_fit_state` with the same ``options``).
        train_data: training arrays (pytree, common leading length).
        key: the run's base key (the same for every epoch; the epoch index is folded in).
        options: the run's :class:`FitOptions`.
        val_data: validation arrays, given exactly when ``options.eval_step`` is set.

    Returns:
        ``(new_fit_state, EpochMetrics)``.

    Raises:
        ValueError: for bad data or batch sizes, options that do not match ``fit_state``, or an
            unknown ``options.monitor``.
        TypeError: for arguments of the wrong kind.

    Example:
        >>> def loss_fn(params, model_state, batch, key):
        ...     return jnp.mean((batch[0] @ params - batch[1]) ** 2), (model_state, {})
        >>> opt = ft.optim.sgd(0.1)
        >>> step, data = ft.train.make_train_step(loss_fn, opt), (jnp.ones((8, 3)), jnp.ones(8))
        >>> options = ft.train.FitOptions(batch_size=4, eval_step=ft.train.make_eval_step(loss_fn))
        >>> fit_state = ft.train.init_fit_state(ft.train.init_train_state(jnp.zeros(3), (), opt))
        >>> epoch = jax.jit(ft.train.fit_epoch, static_argnums=0)
        >>> fit_state, m = epoch(step, fit_state, data, jax.random.key(1), options, val_data=data)
        >>> int(fit_state.epoch), int(fit_state.train_state.step), sorted(m.val)
        (1, 2, ['loss'])
    """
    who = "fit_epoch"
    _check_run(fit_state, options, val_data, who)
    old = fit_state.train_state
    has_guard = guarded(old.opt_state)
    frozen = jnp.asarray(False) if fit_state.early_stopping is None else fit_state.early_stopping.stopped
    if has_guard:
        frozen = jnp.logical_or(frozen, has_diverged(old.opt_state))
    epoch_key = jax.random.fold_in(key, fit_state.epoch)
    ts, per_step = scan_steps(tracking(step) if has_guard else step, old, train_data, epoch_key,
                              options.batch_size, who, "train_data", "options.batch_size")
    flags = per_step.pop(DIVERGED, None)
    if "loss" not in per_step:
        _validate.fail(who, "step", "a train step whose metrics include 'loss'", sorted(per_step))
    train_metrics = mean_metrics(per_step)
    val_metrics: dict[str, Array] = {}
    if options.eval_step is not None:
        ebs = options.batch_size if options.eval_batch_size is None else options.eval_batch_size
        val_metrics = evaluate(options.eval_step, ts, val_data, batch_size=ebs)
    ts, es, ps = observe(options, fit_state, ts, train_metrics, val_metrics, who, frozen, has_guard)
    ts = masked_update(frozen, ts, old)
    active = jnp.logical_not(frozen)
    no_step = jnp.asarray(-1, jnp.int32)
    metrics = EpochMetrics(
        train=train_metrics,
        val=val_metrics,
        step_loss=per_step["loss"],
        finite=all_finite((ts.params, ts.model_state, ts.opt_state)),
        lr_scale=jnp.ones((), jnp.float32) if ps is None else ps.scale,
        active=active,
        step=ts.step,
        skipped=(skipped_updates(ts.opt_state) - skipped_updates(old.opt_state)) if has_guard
        else jnp.zeros((), jnp.int32),
        diverged=has_diverged(ts.opt_state) if has_guard else jnp.asarray(False),
        diverged_step=no_step if flags is None else jnp.where(
            jnp.logical_and(active, jnp.any(flags)), jnp.argmax(flags).astype(jnp.int32), no_step),
    )
    return FitState(fit_state.epoch + 1, ts, es, ps), metrics


def fit_scan(
    step: TrainStep[TS],
    fit_state: FitState[TS],
    train_data: PyTree,
    key: PRNGKey,
    options: FitOptions,
    *,
    epochs: int,
    val_data: PyTree = None,
) -> tuple[FitState[TS], EpochMetrics]:
    """``epochs`` calls of :func:`fit_epoch` inside one ``lax.scan``: a whole run, pure.

    Gives the same result as ``fit`` with the same key and options (both fold the epoch index
    into ``key``). ``jax.jit`` it with ``step`` and ``epochs`` static and ``jax.vmap`` it over
    keys and initial states to train many seeds at once; with early stopping every run freezes
    at its own stopping epoch. Finish with :func:`final_train_state`.

    Args:
        step: the train step.
        fit_state: the run's state (from :func:`init_fit_state` with the same ``options``; its
            ``epoch`` may be > 0 to continue a run).
        train_data: training arrays.
        key: the run's base key.
        options: the run's :class:`FitOptions`.
        epochs: number of epochs to run, static, in ``[1, 2**31 - 1]`` and such that
            ``epochs * n_batches`` steps (plus the state's step count, when concrete) fit the
            int32 step counter.
        val_data: as in :func:`fit_epoch`.

    Returns:
        ``(final_fit_state, metrics)`` with every field of :class:`EpochMetrics` stacked along
        a leading ``(epochs,)`` axis.

    Raises:
        ValueError: as :func:`fit_epoch`, or ``epochs`` out of range.

    Example:
        >>> def loss_fn(params, model_state, batch, key):
        ...     return jnp.mean((batch[0] @ params - batch[1]) ** 2), (model_state, {})
        >>> opt, options = ft.optim.sgd(0.1), ft.train.FitOptions(batch_size=4)
        >>> step, data = ft.train.make_train_step(loss_fn, opt), (jnp.ones((8, 3)), jnp.ones(8))
        >>> def run(key):  # a whole run, a pure function of its key
        ...     fit_state = ft.train.init_fit_state(ft.train.init_train_state(jax.random.normal(key, (3,)), (), opt))
        ...     return ft.train.fit_scan(step, fit_state, data, key, options, epochs=2)[1].train["loss"]
        >>> losses = jax.jit(jax.vmap(run))(jax.random.split(jax.random.key(0), 3))
        >>> losses.shape, bool(jnp.all(losses[:, 1] < losses[:, 0]))  # (seeds, epochs)
        ((3, 2), True)
    """
    who = "fit_scan"
    _check_fit_state(fit_state, who)
    n = _validate.check_leading_length(train_data, who, "train_data")
    bs = options.batch_size if isinstance(cast(object, options), FitOptions) else 0
    start = getattr(fit_state.train_state, "step", None)
    first = None if start is None or _validate.is_traced(start) else int(start)
    n_epochs = check_epoch_count(epochs, n // bs if 1 <= bs <= n else 0, first, who)

    def body(fs: FitState[TS], _: None) -> tuple[FitState[TS], EpochMetrics]:
        return fit_epoch(step, fs, train_data, key, options, val_data=val_data)

    return lax.scan(body, fit_state, None, length=n_epochs)


def final_train_state(fit_state: FitState[TS], options: FitOptions | None = None) -> TS:
    """The train state to keep at the end of a run.

    With an early-stopping rule that has ``restore_best`` (``options.early_stopping``), the
    parameters and model state are those of the best epoch (the step counter and optimizer state
    stay those of the last epoch); otherwise the final train state as is.

    If no epoch improved on the rule's initial value (``+inf`` for ``mode="min"``: every
    monitored value was NaN or ``+inf``), ``restore_best`` returns the *initial* parameters; then
    a ``RuntimeWarning`` says so and names the monitored metric (for a batched state, which
    runs). A warning, not an error: the returned state is what the rule defines, and the
    per-epoch values (in the metrics, or ``fit``'s ``History``) show what went wrong. Traced
    states (inside ``jit``) cannot be inspected and give no warning.

    Args:
        fit_state: the final run state.
        options: the options the run used (``None``: no early stopping to restore from).

    Returns:
        A :class:`~functrain.train.TrainState`.

    Raises:
        TypeError: if ``fit_state`` is not a ``FitState`` or ``options`` not a ``FitOptions``.

    Warns:
        RuntimeWarning: ``restore_best`` found no improving epoch (see above).

    Example:
        >>> es = ft.train.early_stopping(patience=1)
        >>> options = ft.train.FitOptions(batch_size=2, early_stopping=es)
        >>> state = ft.train.init_train_state({"w": jnp.zeros(2)}, (), ft.optim.sgd(0.1))
        >>> fit_state = ft.train.init_fit_state(state, options)
        >>> best = fit_state.early_stopping._replace(best_params=({"w": jnp.ones(2)}, ()),
        ...                                          best_epoch=jnp.asarray(0, jnp.int32))
        >>> final = ft.train.final_train_state(fit_state._replace(early_stopping=best), options)
        >>> final.params["w"].tolist()  # the best epoch's parameters
        [1.0, 1.0]
    """
    who = "final_train_state"
    _check_fit_state(fit_state, who)
    if options is not None and not isinstance(cast(object, options), FitOptions):
        _validate.fail(who, "options", "a FitOptions or None", options, error=TypeError)
    ts, never = restore_best(fit_state, options)
    if never:
        runs = "" if never == [()] else f" (runs {[i[0] if len(i) == 1 else i for i in never]})"
        warnings.warn(f"{who}: restore_best found no epoch whose monitored metric "
                      f"{options.monitor if options else ''!r} improved on its initial value{runs}: "
                      "every value was NaN or infinite, so the returned parameters and model state "
                      "are the initial ones", RuntimeWarning, stacklevel=2)
    return ts
