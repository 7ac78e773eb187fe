"""The host-side driver :func:`fit`, its :class:`History` and its progress display.

:func:`fit` jits :func:`~functrain.train.fit_epoch` once (the :class:`~functrain.train.FitOptions`
built from its keywords are one static argument), runs it epoch by epoch, shows progress, raises
on non-finite values, checkpoints, and returns ``(state, History)``. Epoch ``e`` uses
``fold_in(key, e)``, so :func:`~functrain.train.fit_scan` with the same key and options computes
the same run.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from functrain import _tree, _validate
from functrain.train.checkpoint import load_checkpoint, save_checkpoint
from functrain.train.early_stopping import EarlyStopping
from functrain.train.plateau import ReduceOnPlateau
from functrain.train.run import EpochMetrics, FitOptions, FitState, final_train_state, fit_epoch, init_fit_state, options_for
from functrain.train.state import TS, TrainState
from functrain.train.step import EvalStep, TrainStep
from functrain.typing import Array, PRNGKey, PyTree, ScalarOrSchedule

__all__ = ["History", "fit"]


@dataclass(frozen=True)
class History:
    """Per-epoch records of a :func:`fit` call (host NumPy arrays, one entry per epoch run).

    Attributes:
        epoch: ``(E,)`` the 0-based indices of the epochs run.
        train: training metrics, each ``(E,)`` (``"loss"``, ``"grad_norm"``, ...).
        val: validation metrics, each ``(E,)`` (empty without validation data).
        lr_scale: ``(E,)`` the reduce-on-plateau scale after each epoch (1 without plateau).
        learning_rate: ``(E,)`` the learning rate at the end of each epoch
            (``learning_rate(step) * lr_scale``) when ``fit`` was given ``learning_rate``,
            else ``None``.
        nonfinite_steps: ``(E,)`` steps with a non-finite loss whose update the optimizer
            skipped (e.g. under ``skip_nonfinite``).
        seconds: ``(E,)`` wall-clock time of each epoch (the first includes compilation).
        best_epoch: the best epoch under early stopping (``None`` without it or before any
            improvement).
        stopped_epoch: the epoch at which early stopping stopped the run, or ``None``.

    Example:
        >>> model = ft.serial(ft.layers.Dense(2))
        >>> params, model_state, _ = model.init(jax.random.key(0), (-1, 3))
        >>> opt = ft.optim.sgd(0.5)
        >>> step = ft.train.make_train_step(ft.train.classifier_loss(model.apply, train=True), opt)
        >>> state = ft.train.init_train_state(params, model_state, opt)
        >>> data = (jnp.ones((8, 3)), jnp.zeros(8, jnp.int32))
        >>> _, history = ft.train.fit(step, state, data, jax.random.key(1), epochs=2, batch_size=4,
        ...                           learning_rate=0.5, progress=False)
        >>> history.epoch.tolist(), history.train["loss"].shape, history.learning_rate.tolist()
        ([0, 1], (2,), [0.5, 0.5])
        >>> history.val, history.best_epoch, history.stopped_epoch
        ({}, None, None)
    """

    epoch: np.ndarray[Any, Any]
    train: Mapping[str, np.ndarray[Any, Any]]
    val: Mapping[str, np.ndarray[Any, Any]]
    lr_scale: np.ndarray[Any, Any]
    learning_rate: np.ndarray[Any, Any] | None
    nonfinite_steps: np.ndarray[Any, Any]
    seconds: np.ndarray[Any, Any]
    best_epoch: int | None = None
    stopped_epoch: int | None = None


# ----------------------------------------------------------------------------------------------
# Progress display


class _Progress:
    """tqdm progress bar if importable, else one line per epoch on stderr; or nothing."""

    def __init__(self, enabled: bool, total: int, initial: int) -> None:
        self.enabled = enabled
        self.total = total
        self.bar: Any = None
        if enabled:
            try:
                from tqdm.auto import tqdm
            except ImportError:  # tqdm is optional: fall back to plain lines
                self.bar = None
            else:
                self.bar = tqdm(total=total, initial=initial, unit="epoch", file=sys.stderr,
                                dynamic_ncols=True)

    def update(self, epoch: int, text: str) -> None:
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.set_postfix_str(text, refresh=False)
            self.bar.update(1)
        else:
            print(f"epoch {epoch + 1}/{self.total}: {text}", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _summary(train: Mapping[str, float], val: Mapping[str, float], lr: float | None, scale: float) -> str:
    """The progress text of one epoch: losses, accuracies, learning rate (or plateau scale)."""
    parts = [f"loss={train['loss']:.4f}"]
    if "accuracy" in train:
        parts.append(f"accuracy={train['accuracy']:.4f}")
    if "loss" in val:
        parts.append(f"val_loss={val['loss']:.4f}")
    if "accuracy" in val:
        parts.append(f"val_accuracy={val['accuracy']:.4f}")
    if lr is not None:
        parts.append(f"lr={lr:.3g}")
    elif scale != 1.0:
        parts.append(f"lr_scale={scale:.3g}")
    return " ".join(parts)


def _lr_at(learning_rate: ScalarOrSchedule | None, step: int, scale: float) -> float | None:
    if learning_rate is None:
        return None
    base = learning_rate(jnp.asarray(step, jnp.int32)) if callable(learning_rate) else learning_rate
    return float(np.asarray(base)) * scale


# ----------------------------------------------------------------------------------------------
# Per-epoch records


def _stack(rows: list[dict[str, Array]]) -> dict[str, np.ndarray[Any, Any]]:
    if not rows:
        return {}
    return {name: np.asarray([np.asarray(r[name]) for r in rows]) for name in rows[0]}


class _Records:
    """The host-side records of a :func:`fit` call, turned into a :class:`History` at the end."""

    def __init__(self, learning_rate: ScalarOrSchedule | None, step_count: int) -> None:
        self.learning_rate = learning_rate
        self.step_count = step_count  # the train state's step before the next epoch
        self.metrics: list[EpochMetrics] = []
        self.epochs: list[int] = []
        self.seconds: list[float] = []
        self.skipped: list[int] = []
        self.lrs: list[float] = []
        self.stopped_epoch: int | None = None

    def add(self, epoch: int, m: EpochMetrics, seconds: float) -> str:
        """Record one (finite) epoch; return its progress text."""
        self.step_count = int(m.step)
        self.metrics.append(m)
        self.epochs.append(epoch)
        self.seconds.append(seconds)
        self.skipped.append(int(np.sum(~np.isfinite(np.asarray(m.step_loss)))))
        scale = float(m.lr_scale)
        lr = _lr_at(self.learning_rate, self.step_count, scale)
        if lr is not None:
            self.lrs.append(lr)
        return _summary({k: float(v) for k, v in m.train.items()},
                        {k: float(v) for k, v in m.val.items()}, lr, scale)

    def history(self, fit_state: FitState[Any]) -> History:
        es = fit_state.early_stopping
        best = int(es.best_epoch) if es is not None and int(es.best_epoch) >= 0 else None
        return History(
            epoch=np.asarray(self.epochs, np.int64),
            train=_stack([r.train for r in self.metrics]),
            val=_stack([r.val for r in self.metrics]),
            lr_scale=np.asarray([float(r.lr_scale) for r in self.metrics], np.float32),
            learning_rate=np.asarray(self.lrs, np.float64) if self.learning_rate is not None else None,
            nonfinite_steps=np.asarray(self.skipped, np.int64),
            seconds=np.asarray(self.seconds, np.float64),
            best_epoch=best,
            stopped_epoch=self.stopped_epoch,
        )


def _raise_if_nonfinite(m: EpochMetrics, epoch: int, step_count: int, n_batches: int) -> None:
    """``FloatingPointError`` when the state became non-finite, naming the first bad step."""
    if bool(m.finite):
        return
    losses = np.asarray(m.step_loss)
    bad = np.flatnonzero(~np.isfinite(losses))
    if bad.size:
        i = int(bad[0])
        raise FloatingPointError(
            f"fit: non-finite loss {float(losses[i])} at epoch {epoch}, step {i} of {n_batches} "
            f"(global step {step_count + i}); the parameters or optimizer state are no longer "
            "finite. Wrap the optimizer in functrain.optim.skip_nonfinite to skip such updates, "
            "or lower the learning rate / clip the gradients")
    raise FloatingPointError(
        f"fit: the parameters or optimizer state became non-finite during epoch {epoch} (global "
        f"steps {step_count}..{step_count + n_batches - 1}) although every loss was finite; "
        "lower the learning rate or clip the gradients")


# ----------------------------------------------------------------------------------------------
# The driver


# Compiled once per (step, options, shapes) and reused by every ``fit`` call (JAX's jit cache);
# the run state is donated, so its buffers are reused for the next epoch's state.
_fit_epoch_jit = jax.jit(fit_epoch, static_argnums=(0, 4), donate_argnums=(1,))


def _copy_tree(tree: PyTree) -> PyTree:
    """Fresh device buffers for every array leaf (so ``fit`` can donate them without touching the caller's)."""
    return _tree.tree_map(lambda x: jnp.array(x, copy=True) if isinstance(x, jax.Array) else x, tree)


def _stopped(fit_state: FitState[Any]) -> bool:
    return fit_state.early_stopping is not None and bool(fit_state.early_stopping.stopped)


def _start(state: TS, options: FitOptions, checkpoint_path: str | os.PathLike[str] | None,
           resume: bool) -> FitState[TS]:
    """The run state to start from: the checkpoint when resuming from one, else a fresh copy."""
    fit_state = init_fit_state(state, options)
    if resume and checkpoint_path is not None and os.path.exists(checkpoint_path):
        return load_checkpoint(checkpoint_path, like=fit_state)
    out: FitState[TS] = _copy_tree(fit_state)
    return out


def _host_loop(step: TrainStep, fit_state: FitState[TS], train_data: PyTree, key: PRNGKey,
               options: FitOptions, val_data: PyTree, n_epochs: int, n_batches: int,
               records: _Records, bar: _Progress,
               checkpoint_path: str | os.PathLike[str] | None) -> FitState[TS]:
    """Run the jitted epochs from ``fit_state.epoch`` until ``n_epochs`` or early stopping."""
    es = fit_state.early_stopping
    if es is not None and bool(es.stopped):  # resumed from a run that had already stopped
        records.stopped_epoch = int(es.epoch) - 1
        return fit_state
    for epoch in range(int(fit_state.epoch), n_epochs):
        t0 = time.perf_counter()
        fit_state, m = _fit_epoch_jit(step, fit_state, train_data, key, options, val_data=val_data)
        m = jax.device_get(m)
        seconds = time.perf_counter() - t0
        _raise_if_nonfinite(m, epoch, records.step_count, n_batches)
        bar.update(epoch, records.add(epoch, m, seconds))
        if checkpoint_path is not None:
            save_checkpoint(checkpoint_path, fit_state)
        if _stopped(fit_state):
            records.stopped_epoch = epoch
            break
    return fit_state


def _check_host_args(who: str, state: object, train_data: PyTree, val_data: PyTree,
                     options: FitOptions, learning_rate: object, progress: object,
                     checkpoint_path: object, resume: object) -> int:
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
    if _validate.check_bool(resume, who, "resume") and checkpoint_path is None:
        _validate.fail(who, "checkpoint_path", "a path when resume=True", checkpoint_path)
    return n // bs


def fit(
    step: TrainStep,
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
) -> tuple[TS, History]:
    """Train for up to ``epochs`` epochs: the host-side loop around the jitted :func:`~functrain.train.fit_epoch`.

    The keywords ``batch_size`` ... ``monitor`` become one :class:`~functrain.train.FitOptions`
    (the static argument of the jitted epoch). Each epoch runs as one compiled call (compiled
    once; the run state is donated to it, after a one-time copy of ``state``), then the host
    records the metrics, updates the progress display (epoch, loss, accuracy, validation
    loss/accuracy, learning rate), checks for non-finite values, optionally writes a checkpoint,
    and stops early when the early-stopping rule says so. Epoch ``e`` uses ``fold_in(key, e)``,
    so :func:`~functrain.train.fit_scan` with the same key and options computes the same run,
    and a resumed run continues exactly as an uninterrupted one.

    Non-finite losses: if a step's loss is not finite and the parameters or optimizer state are no
    longer finite after the epoch, ``fit`` raises ``FloatingPointError`` naming the epoch and the
    step. If the optimizer skipped those updates (``functrain.optim.skip_nonfinite``,
    ``optax.apply_if_finite``), the state stays finite and the steps are only counted in
    ``History.nonfinite_steps``.

    Args:
        step: the train step (``make_train_step``); any model, including equinox ones.
        state: the initial training state.
        train_data: training arrays, a pytree with a common leading length ``n``.
        key: the run's key.
        epochs: maximum number of epochs (>= 1), counting epochs of a resumed run.
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
        learning_rate: the optimizer's base learning rate or schedule, used only to display
            and record the effective learning rate; ``None`` shows the plateau scale instead.
        progress: show progress (a tqdm bar when installed, else one line per epoch on stderr).
        checkpoint_path: if given, the :class:`~functrain.train.FitState` is saved there
            (atomically) after every epoch.
        resume: with ``checkpoint_path``, continue from the checkpoint if the file exists.

    Returns:
        ``(state, history)``.

    Raises:
        FloatingPointError: on a non-finite loss that corrupted the state (epoch and step named).
        ValueError: for bad data, batch sizes, epochs or options.
        TypeError: for arguments of the wrong type.

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
    """
    who = "fit"
    n_epochs = _validate.check_int(epochs, who, "epochs", low=1)
    options = options_for(who, batch_size=batch_size, eval_step=eval_step,
                          eval_batch_size=eval_batch_size, early_stopping=early_stopping,
                          plateau=plateau, monitor=monitor)
    n_batches = _check_host_args(who, state, train_data, val_data, options, learning_rate, progress,
                                 checkpoint_path, resume)
    fit_state = _start(state, options, checkpoint_path, resume)
    records = _Records(learning_rate, int(fit_state.train_state.step))
    bar = _Progress(progress, n_epochs, int(fit_state.epoch))
    try:
        fit_state = _host_loop(step, fit_state, train_data, key, options, val_data, n_epochs,
                               n_batches, records, bar, checkpoint_path)
    finally:
        bar.close()
    return final_train_state(fit_state, options), records.history(fit_state)
