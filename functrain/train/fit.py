"""The host-side driver :func:`fit`, its :class:`History` and :class:`FitInterrupted`.

:func:`fit` jits :func:`~functrain.train.fit_epoch` once (the :class:`~functrain.train.FitOptions`
built from its keywords are one static argument), runs it epoch by epoch, shows progress, checks
every epoch on the host (non-finite state, divergence, skipped updates), checkpoints, honors
Ctrl-C at epoch boundaries, and returns ``(state, History)``. Epoch ``e`` uses
``fold_in(key, e)``, so :func:`~functrain.train.fit_scan` with the same key and options computes
the same run.
"""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Generic, Literal

import jax
import jax.numpy as jnp
import numpy as np

from functrain import _jax, _tree, _validate
from functrain.train import _fit_host as host
from functrain.train._labels import check_entry_labels
from functrain.train._run_helpers import check_epoch_count, restore_best
from functrain.train.checkpoint import load_checkpoint, save_checkpoint
from functrain.train.early_stopping import EarlyStopping
from functrain.train.plateau import ReduceOnPlateau
from functrain.train.run import FitOptions, FitState, fit_epoch, init_fit_state, options_for
from functrain.train.state import TS, TrainState
from functrain.train.step import EvalStep, TrainStep
from functrain.typing import PRNGKey, PyTree, ScalarOrSchedule

__all__ = ["FitInterrupted", "History", "fit"]


@dataclass(frozen=True)
class History:
    """Per-epoch records of a :func:`fit` call (host NumPy arrays, one entry per epoch run).

    Attributes:
        epoch: ``(E,)`` the 0-based indices of the epochs run.
        train: training metrics, each ``(E,)`` (``"loss"``, ``"grad_norm"``, ...).
        val: validation metrics, each ``(E,)`` (empty without validation data).
        lr_scale: ``(E,)`` the reduce-on-plateau scale after each epoch (1 without plateau).
        learning_rate: ``(E,)`` the learning rate in effect at the end of each epoch (the rate
            of the next update), read from the optimizer state with
            :func:`functrain.optim.current_learning_rate`: schedules and the reduce-on-plateau
            scale included. ``None`` when the optimizer state holds no single functrain learning
            rate (an optax optimizer, or parameter groups with different rates).
        skipped_updates: ``(E,)`` the updates of each epoch that a non-finite guard
            (``functrain.optim.skip_nonfinite`` or ``optax.apply_if_finite``) skipped, read from
            the guard's own counters (:func:`functrain.optim.skipped_updates`); zeros without a
            guard. (Also readable as ``nonfinite_steps``, its former name.)
        seconds: ``(E,)`` wall-clock time of each epoch (the first includes compilation).
        best_epoch: the best epoch under early stopping (``None`` without it or before any
            improvement).
        stopped_epoch: the epoch at which early stopping stopped the run, or ``None``.

    The arrays are host copies (NumPy), filled as the run goes: memory stays flat however many
    epochs run (a few bytes per epoch and metric; nothing refers to device buffers).

    Example:
        >>> model = ft.serial(ft.layers.Dense(2))
        >>> params, model_state, _ = model.init(jax.random.key(0), (-1, 3))
        >>> opt = ft.optim.sgd(0.5)
        >>> step = ft.train.make_train_step(ft.train.classifier_loss(model.apply, train=True), opt)
        >>> state = ft.train.init_train_state(params, model_state, opt)
        >>> data = (jnp.ones((8, 3)), jnp.zeros(8, jnp.int32))
        >>> _, history = ft.train.fit(step, state, data, jax.random.key(1), epochs=2, batch_size=4,
        ...                           progress=False)
        >>> history.epoch.tolist(), history.train["loss"].shape, history.learning_rate.tolist()
        ([0, 1], (2,), [0.5, 0.5])
        >>> history.val, history.best_epoch, history.stopped_epoch, history.skipped_updates.tolist()
        ({}, None, None, [0, 0])
    """

    epoch: np.ndarray[Any, Any]
    train: Mapping[str, np.ndarray[Any, Any]]
    val: Mapping[str, np.ndarray[Any, Any]]
    lr_scale: np.ndarray[Any, Any]
    learning_rate: np.ndarray[Any, Any] | None
    skipped_updates: np.ndarray[Any, Any]
    seconds: np.ndarray[Any, Any]
    best_epoch: int | None = None
    stopped_epoch: int | None = None

    @property
    def nonfinite_steps(self) -> np.ndarray[Any, Any]:
        """The former name of :attr:`skipped_updates` (the same array)."""
        return self.skipped_updates


class FitInterrupted(KeyboardInterrupt):
    """Ctrl-C (SIGINT) stopped :func:`fit` at an epoch boundary; the completed epochs are kept.

    A ``KeyboardInterrupt``, so an unhandled one ends a program as Ctrl-C always does. It
    carries what the run had completed: :attr:`fit_state` (the run state after the last
    completed epoch, the one saved to ``checkpoint_path`` if given, so ``fit(...,
    resume=True)`` continues from it), :attr:`state` (its ``TrainState``) and :attr:`history`.

    Example:
        >>> error = ft.train.FitInterrupted("fit: interrupted", None, None, None)
        >>> isinstance(error, KeyboardInterrupt), str(error)
        (True, 'fit: interrupted')
    """

    def __init__(self, message: str, fit_state: FitState[Any] | None, state: Any,
                 history: History | None) -> None:
        super().__init__(message)
        self.fit_state = fit_state
        self.state = state
        self.history = history


# Compiled once per (step, options, shapes) and reused by every ``fit`` call (JAX's jit cache);
# the run state is donated, so its buffers are reused for the next epoch's state.
_fit_epoch_jit = _jax.jit_training(fit_epoch, static_argnums=(0, 4), donate_argnums=(1,))


def _copy_tree(tree: PyTree) -> PyTree:
    """Fresh device buffers for every array leaf (so ``fit`` can donate them without touching the caller's)."""
    def copy(x: Any) -> Any:  # array leaves are copied, any other leaf is kept
        return jnp.array(x, copy=True) if isinstance(x, jax.Array) else x

    return _tree.tree_map(copy, tree)


@dataclass(frozen=True)
class _Run(Generic[TS]):
    """What stays fixed during one :func:`fit` call."""

    step: TrainStep[TS]
    train_data: PyTree
    key: PRNGKey
    options: FitOptions
    val_data: PyTree
    n_epochs: int
    n_batches: int
    checkpoint_path: str | None
    on_no_update: str


def _start(run: _Run[TS], state: TS, resume: bool, who: str) -> FitState[TS]:
    """The run state to start from: the checkpoint when resuming from one, else a fresh copy."""
    fit_state = init_fit_state(state, run.options)
    path = run.checkpoint_path
    if resume and path is not None and os.path.exists(path):
        loaded: FitState[TS] = load_checkpoint(path, like=fit_state)
        done = int(loaded.epoch)
        if done > run.n_epochs:
            _validate.fail(who, "epochs", f"an int >= {done}, the epochs already run in the "
                           f"checkpoint being resumed ({path!r})", run.n_epochs)
        fit_state = loaded
    else:
        fit_state = _copy_tree(fit_state)
    check_epoch_count(run.n_epochs, run.n_batches, int(fit_state.train_state.step), who,
                      done=int(fit_state.epoch))
    return fit_state


def _warn(text: str) -> None:
    warnings.warn(text, RuntimeWarning, stacklevel=5)  # _warn <- _check_epoch <- _host_loop <- fit <- caller


def _check_epoch(run: _Run[Any], m: Any, epoch: int, first_step: int, fit_state: FitState[Any]) -> None:
    """The host-side checks after an epoch (see :func:`fit`): raise, warn, or nothing."""
    nb = run.n_batches
    where = f"at epoch {epoch}, step {{}} of {nb} (global step {{}})"
    if not bool(m.finite):
        parts = host.nonfinite_parts(fit_state.train_state)
        losses = np.asarray(m.step_loss)
        bad = np.flatnonzero(~np.isfinite(losses))
        if bad.size:
            i = int(bad[0])
            hint = host.bad_inputs(run.train_data, run.key, epoch, run.options.batch_size, [i]) or (
                "wrap the optimizer in functrain.optim.skip_nonfinite to skip such updates, or "
                "lower the learning rate / clip the gradients")
            raise FloatingPointError(f"fit: non-finite loss {float(losses[i])} "
                                     f"{where.format(i, first_step + i)}; {parts} no longer finite: {hint}")
        hint = host.bad_inputs(run.train_data, run.key, epoch, run.options.batch_size,
                               list(range(nb))) or "lower the learning rate or clip the gradients"
        raise FloatingPointError(
            f"fit: {parts} became non-finite during epoch {epoch} (global steps {first_step}.."
            f"{first_step + nb - 1}) although every loss was finite: {hint}")
    if bool(m.diverged):
        i = int(m.diverged_step)
        if i < 0:
            raise FloatingPointError(f"fit: the run had already diverged before epoch {epoch} (a "
                                     "skip_nonfinite guard in the optimizer state is frozen)")
        hint = host.bad_inputs(run.train_data, run.key, epoch, run.options.batch_size, [i]) or (
            "lower the learning rate or clip the gradients")
        raise FloatingPointError(
            f"fit: the run diverged {where.format(i, first_step + i)}: the optimizer's "
            "skip_nonfinite guard reached its max_consecutive limit of consecutive non-finite "
            f"updates and froze the parameters at their last finite values; {hint}")
    skipped = int(m.skipped)
    if not skipped:
        return
    nan_steps = [int(i) for i in np.flatnonzero(~np.isfinite(np.asarray(m.step_loss)))]
    hint = host.bad_inputs(run.train_data, run.key, epoch, run.options.batch_size, nan_steps)
    if skipped >= nb:
        text = (f"fit: epoch {epoch} made no update: all {nb} of its updates were skipped as "
                f"non-finite by the optimizer's guard; {hint or 'lower the learning rate'}")
        if run.on_no_update == "raise":
            raise FloatingPointError(text + " (on_no_update='warn' continues instead)")
        _warn(text)
        return
    _warn(f"fit: epoch {epoch}: {skipped} of {nb} updates were skipped as non-finite by the "
          f"optimizer's guard{'; ' + hint if hint else ''}")


def _host_loop(run: _Run[TS], fit_state: FitState[TS], records: host.Records, bar: host.Progress,
               interrupt: host.DeferredInterrupt) -> tuple[FitState[TS], bool]:
    """Run the jitted epochs until ``n_epochs``, early stopping or Ctrl-C; ``(state, interrupted)``."""
    es = fit_state.early_stopping
    if es is not None and bool(es.stopped):  # resumed from a run that had already stopped
        records.stopped_epoch = int(es.epoch) - 1
        return fit_state, False
    for epoch in range(int(fit_state.epoch), run.n_epochs):
        if interrupt.received:  # Ctrl-C before this epoch started (e.g. during the entry checks)
            return fit_state, True
        t0 = time.perf_counter()
        fit_state, m = _fit_epoch_jit(run.step, fit_state, run.train_data, run.key, run.options,
                                      val_data=run.val_data)
        m = jax.device_get(m)
        seconds = time.perf_counter() - t0
        _check_epoch(run, m, epoch, records.step_count, fit_state)
        bar.update(epoch, records.add(epoch, m, seconds, fit_state.train_state.opt_state))
        if run.checkpoint_path is not None:
            save_checkpoint(run.checkpoint_path, fit_state)
        if fit_state.early_stopping is not None and bool(fit_state.early_stopping.stopped):
            records.stopped_epoch = epoch
            break
    return fit_state, interrupt.received


def _check_host_args(who: str, state: object, train_data: PyTree, val_data: PyTree,
                     options: FitOptions, learning_rate: object, progress: object,
                     checkpoint_path: object, resume: object, on_no_update: object) -> int:
    """The arguments only :func:`fit` has (or checks itself, to name itself); returns ``n_batches``."""
    if not isinstance(state, TrainState):
        _validate.fail(who, "state", "a TrainState (see init_train_state)", state, error=TypeError)
    n = _validate.check_leading_length(train_data, who, "train_data")
    bs = _validate.check_batch_size(options.batch_size, n, who)
    if val_data is not None:
        _validate.check_leading_length(val_data, who, "val_data")
    if (options.eval_step is None) != (val_data is None):
        _validate.fail(who, "val_data", "given exactly when eval_step is given", val_data)
    if learning_rate is not None:
        _validate.check_hyperparameter(learning_rate, who, "learning_rate", low=0.0)
    _validate.check_bool(progress, who, "progress")
    _validate.check_choice(on_no_update, ("raise", "warn"), who, "on_no_update")
    if _validate.check_bool(resume, who, "resume") and checkpoint_path is None:
        _validate.fail(who, "checkpoint_path", "a path when resume=True", checkpoint_path)
    return n // bs


def _history(records: host.Records, fit_state: FitState[Any]) -> History:
    es = fit_state.early_stopping
    best = int(es.best_epoch) if es is not None and int(es.best_epoch) >= 0 else None
    return History(**records.fields(), best_epoch=best, stopped_epoch=records.stopped_epoch)


def _never_improved(history: History, monitor: str) -> str:
    """The warning of a ``restore_best`` that found no improving epoch."""
    if monitor.startswith(("val_", "train_")):
        source, name = (history.val, monitor[4:]) if monitor.startswith("val_") else (history.train, monitor[6:])
    else:
        source, name = (history.val, monitor) if history.val else (history.train, monitor)
    label = f"{'val' if source is history.val else 'train'}_{name}"
    values = np.asarray(source.get(name, np.zeros(0)))
    return (f"fit: restore_best found no epoch that improved on the initial value: the monitored "
            f"metric {label!r} was NaN in {int(np.isnan(values).sum())} and infinite in "
            f"{int(np.isinf(values).sum())} of {values.size} epochs, so the returned parameters "
            "and model state are the initial ones (History has the per-epoch values)")


def fit(
    step: TrainStep[TS],
    state: TS,
    train_data: PyTree,
    key: PRNGKey,
    *,
    epochs: int,
    batch_size: int,
    eval_step: EvalStep | None = None,
    val_data: PyTree = None,
    eval_batch_size: int | None = None,
    early_stopping: EarlyStopping | None = None,
    plateau: ReduceOnPlateau | None = None,
    monitor: str = "loss",
    learning_rate: ScalarOrSchedule | None = None,
    progress: bool = True,
    checkpoint_path: str | os.PathLike[str] | None = None,
    resume: bool = False,
    num_classes: int | None = None,
    check_labels: bool = True,
    on_no_update: Literal["raise", "warn"] = "raise",
) -> tuple[TS, History]:
    """Train for up to ``epochs`` epochs: the host-side loop around the jitted :func:`~functrain.train.fit_epoch`.

    The keywords ``batch_size`` ... ``monitor`` become one :class:`~functrain.train.FitOptions`
    (the static argument of the jitted epoch). Each epoch runs as one compiled call (compiled
    once; the run state is donated to it, after a one-time copy of ``state``), then the host
    checks the epoch (below), records the metrics, updates the progress display (epoch, loss,
    accuracy, validation loss/accuracy, learning rate), optionally writes a checkpoint, and stops
    early when the early-stopping rule says so. Epoch ``e`` uses ``fold_in(key, e)``, so
    :func:`~functrain.train.fit_scan` with the same key and options computes the same run, and a
    resumed run continues exactly as an uninterrupted one. The checks run on the host between
    epochs, on values the epoch returns anyway: the compiled epoch is not slowed down.

    Before training (nothing is compiled yet): the arguments; the labels of ``(x, y)`` data
    with integer ``y`` (train and validation): each must be ``>= 0`` and ``< num_classes`` (given,
    or the size of the model's output when ``step`` was built from ``classifier_loss``), else a
    ``ValueError`` gives how many are out of range and the first one's index; the checkpoint
    path's directory; the epoch count (and, when resuming, that ``epochs`` is at least the
    checkpoint's epoch).

    After each epoch, in this order:

    * the parameters, model state (e.g. batch-norm running statistics) and optimizer state must
      be finite, else ``FloatingPointError`` naming the epoch, the first step with a non-finite
      loss and the part of the state that broke; when that step's inputs are not finite, the
      message names the example and points at the data;
    * a run whose ``skip_nonfinite(..., max_consecutive=N)`` guard saw ``N`` consecutive
      non-finite updates has diverged (:func:`~functrain.optim.has_diverged`):
      ``FloatingPointError`` naming the epoch and step (the guard froze the parameters at their
      last finite values; inside :func:`~functrain.train.fit_scan` such a run freezes instead);
    * updates skipped by a non-finite guard (``skip_nonfinite``, ``optax.apply_if_finite``)
      are counted in ``History.skipped_updates``; an epoch with skipped updates gives one
      ``RuntimeWarning`` with the count; an epoch in which *every* update was skipped made no
      progress: ``FloatingPointError`` (``on_no_update="raise"``, the default) or a warning
      (``"warn"``).

    With ``restore_best`` early stopping and no epoch that improved on the initial value (every
    monitored value NaN), the initial parameters are returned and a ``RuntimeWarning`` says so,
    naming the metric (as :func:`~functrain.train.final_train_state` does).

    Ctrl-C (SIGINT) during ``fit`` is recorded, not raised at once: the running epoch completes
    (and is checkpointed when ``checkpoint_path`` is set), then :class:`FitInterrupted` (a
    ``KeyboardInterrupt``) is raised, carrying the state and history of the completed epochs. A
    second Ctrl-C interrupts at once. Deferring the signal also keeps it from landing inside XLA
    compilation, where a ``KeyboardInterrupt`` can crash the process. (Only in the main thread and
    when Python's default SIGINT handler is installed; a program's own handler is left alone.)

    Args:
        step: the train step (``make_train_step``); any model, including equinox ones.
        state: the initial training state.
        train_data: training arrays, a pytree with a common leading length ``n``.
        key: the run's key.
        epochs: maximum number of epochs, counting epochs of a resumed run, in ``[1, 2**31 - 1]``
            and such that the steps fit the int32 step counter.
        batch_size: training batch size, ``1 <= batch_size <= n``.
        eval_step: evaluation step (``make_eval_step``), given with ``val_data``.
        val_data: validation arrays, or ``None``.
        eval_batch_size: evaluation batch size (default ``batch_size``).
        early_stopping: an :func:`~functrain.train.early_stopping` rule; with ``restore_best``
            the returned state has the parameters and model state of the best epoch.
        plateau: a :func:`~functrain.train.reduce_on_plateau` rule (the optimizer must end with
            :func:`~functrain.train.scale_by_plateau`).
        monitor: the metric watched by early stopping and plateau (see
            :class:`~functrain.train.FitOptions`).
        learning_rate: deprecated (a ``DeprecationWarning``): the learning rate displayed and
            recorded in ``History.learning_rate`` is read from the optimizer state
            (:func:`functrain.optim.current_learning_rate`). Only for an optimizer state that
            holds none (e.g. an optax optimizer) is this value (or schedule) still used.
        progress: show progress (a tqdm bar when installed, else one line per epoch on stderr).
        checkpoint_path: if given, the :class:`~functrain.train.FitState` is saved there
            (atomically) after every epoch; its directory must exist and be writable.
        resume: with ``checkpoint_path``, continue from the checkpoint if the file exists.
        num_classes: the number of classes of the integer labels (see above); ``None``: from the
            model when possible, else only ``>= 0`` is checked.
        check_labels: ``False`` skips the label check (integer targets that are not class labels).
        on_no_update: ``"raise"`` or ``"warn"`` when an epoch made no update (see above).

    Returns:
        ``(state, history)``.

    Raises:
        FloatingPointError: a non-finite state, a diverged run, or an epoch without any update
            (epoch and step named).
        FitInterrupted: Ctrl-C, after the running epoch completed (and was checkpointed).
        ValueError: for bad data, labels, batch sizes, epochs or options.
        TypeError: for arguments of the wrong type.
        FileNotFoundError: ``checkpoint_path`` is in a directory that does not exist.

    Warns:
        RuntimeWarning: skipped updates (once per epoch, with the count); ``restore_best``
            without an improving epoch.

    Example:
        >>> model = ft.serial(ft.layers.Dense(2))
        >>> params, model_state, _ = model.init(jax.random.key(0), (-1, 3))
        >>> opt = ft.optim.sgd(0.5)
        >>> step = ft.train.make_train_step(ft.train.classifier_loss(model.apply, train=True), opt)
        >>> eval_step = ft.train.make_eval_step(ft.train.classifier_loss(model.apply, train=False))
        >>> state = ft.train.init_train_state(params, model_state, opt)
        >>> data = (jnp.ones((8, 3)), jnp.zeros(8, jnp.int32))
        >>> state, history = ft.train.fit(step, state, data, jax.random.key(1), epochs=2, batch_size=4,
        ...                               eval_step=eval_step, val_data=data, progress=False)
        >>> int(state.step), history.val["accuracy"].tolist()
        (4, [1.0, 1.0])
        >>> bad = (jnp.ones((8, 3)), jnp.full(8, 2, jnp.int32))  # the model has 2 classes
        >>> try:
        ...     ft.train.fit(step, state, bad, jax.random.key(1), epochs=1, batch_size=4, num_classes=2)
        ... except ValueError as error:
        ...     print(error)
        fit: argument 'train_data[1]' must be class labels in [0, 2), got 8 out of range
        (the first at index 0: 2)
    """
    who = "fit"
    n_epochs = check_epoch_count(epochs, 0, None, who)
    options = options_for(who, batch_size=batch_size, eval_step=eval_step,
                          eval_batch_size=eval_batch_size, early_stopping=early_stopping,
                          plateau=plateau, monitor=monitor)
    n_batches = _check_host_args(who, state, train_data, val_data, options, learning_rate, progress,
                                 checkpoint_path, resume, on_no_update)
    path = host.check_checkpoint_path(checkpoint_path, who)
    named = [(train_data, "train_data")] + ([] if val_data is None else [(val_data, "val_data")])
    with host.DeferredInterrupt() as interrupt:  # from here on, Ctrl-C never lands inside XLA
        check_entry_labels(who, step, state, named, num_classes, check_labels)
        run = _Run(step, train_data, key, options, val_data, n_epochs, n_batches, path, on_no_update)
        fit_state = _start(run, state, resume, who)
        start = int(fit_state.epoch)
        from_state = host.state_lr(fit_state.train_state.opt_state) is not None
        if learning_rate is not None:
            warnings.warn("fit: argument 'learning_rate' is deprecated: the learning rate shown and "
                          "recorded is read from the optimizer state"
                          + ("" if from_state else " (this optimizer state holds none, so the "
                             "given value is used)"), DeprecationWarning, stacklevel=2)
        records = host.Records(learning_rate, int(fit_state.train_state.step), from_state)
        bar = host.Progress(progress, n_epochs, start)
        try:
            fit_state, interrupted = _host_loop(run, fit_state, records, bar, interrupt)
        finally:
            bar.close()
    history = _history(records, fit_state)
    if interrupted:
        done = int(fit_state.epoch)
        when = f"after epoch {done - 1}" if done > start else "before its first epoch"
        saved = f"; checkpoint saved to {path!r}" if path is not None and done > start else ""
        raise FitInterrupted(f"fit: interrupted (Ctrl-C) {when}{saved}", fit_state,
                             fit_state.train_state, history)
    final, never = restore_best(fit_state, options)
    if never:
        warnings.warn(_never_improved(history, monitor), RuntimeWarning, stacklevel=2)
    return final, history
