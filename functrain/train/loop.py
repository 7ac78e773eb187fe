"""Epochs inside ``lax.scan``, batched evaluation, and the ``fit`` driver.

Three levels, all built on one pure epoch function so that they give identical results:

* :func:`train_epoch` -- one shuffled epoch of a step function inside ``lax.scan``; pure, with a
  static ``batch_size``, so it can be jitted and vmapped (e.g. over seeds).
* :func:`fit_epoch` / :func:`fit_scan` -- an epoch (or ``epochs`` epochs in ``lax.scan``) plus
  validation, reduce-on-plateau and early stopping over a :class:`FitState`; a whole training
  run as one pure function, so ``jax.vmap(fit_scan)`` trains many seeds at once, each stopping
  on its own (a stopped run's state is frozen with :func:`~functrain.train.masked_update`).
* :func:`fit` -- the host-side driver: jits :func:`fit_epoch` once, runs it epoch by epoch, shows
  progress, raises on non-finite losses, checkpoints, and returns ``(state, History)``.

Data is a pytree (usually a tuple ``(x, y)``) of arrays with a common leading length ``n``,
resident on the device. The batch given to the step has the same structure.

Shuffling rule: epoch ``e`` of :func:`fit` uses ``key_e = fold_in(key, e)``; :func:`train_epoch`
with key ``k`` splits ``perm_key, step_key = split(k)``, draws ``perm = permutation(perm_key, n)``
and gives step ``i`` the batch ``perm[i * batch_size:(i + 1) * batch_size]`` and the key
``split(step_key, n_batches)[i]``. The last partial batch (``n % batch_size`` examples) is
dropped, so every step sees a full batch (one compiled shape); since the permutation changes
every epoch, every example is used across epochs.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Generic, NamedTuple, TypeVar

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from functrain import _tree
from functrain.train._checks import check_batch_size, check_data, int_arg
from functrain.train.checkpoint import load_checkpoint, save_checkpoint
from functrain.train.early_stopping import EarlyStopping, EarlyStoppingState, masked_update
from functrain.train.plateau import ReduceOnPlateau, ReduceOnPlateauState, get_plateau_scale, set_plateau_scale
from functrain.train.state import TrainState
from functrain.train.step import EvalStep, TrainStep
from functrain.typing import Array, Metrics, PRNGKey, PyTree, ScalarOrSchedule

__all__ = [
    "EpochMetrics",
    "FitState",
    "History",
    "evaluate",
    "final_train_state",
    "fit",
    "fit_epoch",
    "fit_scan",
    "init_fit_state",
    "train_epoch",
]

TS = TypeVar("TS", bound=TrainState[Any, Any, Any])
"""A train state type (``TS``): functions return the type they are given."""


# ----------------------------------------------------------------------------------------------
# One epoch


def _shuffled_batches(data: PyTree, key: PRNGKey, n: int, batch_size: int) -> tuple[PyTree, Array]:
    """``(batches, step_keys)``: data gathered once by a fresh permutation, shaped ``(n_batches, batch, ...)``."""
    n_batches = n // batch_size
    perm_key, step_key = jax.random.split(key)
    perm = jax.random.permutation(perm_key, n)[: n_batches * batch_size]

    def gather(x: Array) -> Array:
        x = jnp.asarray(x)
        return x.at[perm].get(mode="promise_in_bounds").reshape((n_batches, batch_size) + x.shape[1:])

    return _tree.tree_map(gather, data), jax.random.split(step_key, n_batches)


def _scan_steps(step: TrainStep, state: TS, data: PyTree, key: PRNGKey,
                batch_size: int, who: str) -> tuple[TS, dict[str, Array]]:
    """Run one epoch; return the new state and the per-step metrics, each of shape ``(n_batches,)``."""
    if not callable(step):
        raise TypeError(f"{who}: argument 'step' must be a train step function, got {type(step).__name__}")
    n = check_data(data, who)
    bs = check_batch_size(batch_size, n, who)
    batches, keys = _shuffled_batches(data, key, n, bs)

    # The carry is typed Any: lax.scan itself enforces that the step returns a state of the
    # same structure, shapes and dtypes, i.e. the caller's TS.
    def body(s: Any, xs: tuple[PyTree, Array]) -> tuple[Any, Metrics]:
        batch, k = xs
        return step(s, batch, k)

    new_state, per_step = lax.scan(body, state, (batches, keys))
    return new_state, dict(per_step)


def _mean(per_step: Mapping[str, Array]) -> dict[str, Array]:
    return {name: jnp.mean(v, axis=0) for name, v in per_step.items()}


def train_epoch(
    step: TrainStep,
    state: TS,
    data: PyTree,
    key: PRNGKey,
    *,
    batch_size: int,
) -> tuple[TS, dict[str, Array]]:
    """One epoch of minibatch training, with all steps inside a single ``lax.scan``.

    The data is shuffled by a permutation drawn from ``key`` and gathered once into
    ``(n_batches, batch_size, ...)`` (so each scan iteration only slices its batch); the last
    partial batch is dropped (see the module docstring for the exact key schedule). Pure:
    jit it with ``batch_size`` (and ``step``) static, vmap it over keys and states.

    Args:
        step: ``step(state, batch, key) -> (state, metrics)``, e.g. from ``make_train_step``.
        state: the training state.
        data: a pytree (usually a tuple) of arrays with a common leading length ``n``.
        key: the PRNG key of this epoch (shuffling and per-step keys).
        batch_size: examples per step, ``1 <= batch_size <= n`` (a static Python int).

    Returns:
        ``(new_state, metrics)`` with each metric averaged over the epoch's steps.

    Raises:
        ValueError: if the arrays have different leading lengths, ``data`` is empty, or
            ``batch_size`` is not in ``[1, n]``.
        TypeError: if ``batch_size`` is not an int or ``data`` holds non-arrays.
    """
    new_state, per_step = _scan_steps(step, state, data, key, batch_size, "train_epoch")
    return new_state, _mean(per_step)


def evaluate(
    eval_step: EvalStep,
    state: TS,
    data: PyTree,
    *,
    batch_size: int,
) -> dict[str, Array]:
    """Evaluate on all of ``data`` in batches, including the last partial batch.

    The ``n // batch_size`` full batches run in one ``lax.map``; the remaining ``r`` examples run
    as one smaller batch (one extra compiled shape). Each metric, a per-batch mean, is combined
    as the example-weighted average ``(batch_size * sum_full + r * tail) / n``, which is the mean
    over all ``n`` examples. ``batch_size`` larger than ``n`` means one batch of ``n``. Pure
    (jit it with ``batch_size`` static).

    Args:
        eval_step: ``eval_step(state, batch) -> metrics``, e.g. from ``make_eval_step``.
        state: the training state to evaluate.
        data: a pytree of arrays with a common leading length ``n``.
        batch_size: examples per evaluation batch (>= 1).

    Returns:
        The metrics averaged over all ``n`` examples.

    Raises:
        ValueError: if the arrays have different leading lengths, ``data`` is empty, or
            ``batch_size < 1``.
    """
    who = "evaluate"
    if not callable(eval_step):
        raise TypeError(f"{who}: argument 'eval_step' must be an eval step function, got "
                        f"{type(eval_step).__name__}")
    n = check_data(data, who)
    bs = min(int_arg(batch_size, "batch_size", who, low=1), n)
    n_batches, rest = divmod(n, bs)

    def full(x: Array) -> Array:
        x = jnp.asarray(x)
        return x[: n_batches * bs].reshape((n_batches, bs) + x.shape[1:])

    per_batch = lax.map(lambda b: dict(eval_step(state, b)), _tree.tree_map(full, data))
    totals = {name: jnp.sum(v, axis=0) * bs for name, v in per_batch.items()}
    if rest:
        tail = eval_step(state, _tree.tree_map(lambda x: jnp.asarray(x)[n_batches * bs:], data))
        if set(tail) != set(totals):
            raise ValueError(f"{who}: eval_step returned different metrics for the last batch: "
                             f"{sorted(tail)} vs {sorted(totals)}")
        totals = {name: totals[name] + tail[name] * rest for name in totals}
    return {name: v / n for name, v in totals.items()}


# ----------------------------------------------------------------------------------------------
# A whole run as a pure function


class FitState(NamedTuple, Generic[TS]):
    """Everything a training run carries from epoch to epoch (checkpoint this to resume).

    Attributes:
        epoch: int32, the number of epochs run so far (the next epoch's index).
        train_state: the :class:`~functrain.train.TrainState`.
        early_stopping: the early-stopping state, or ``None`` without early stopping.
        plateau: the reduce-on-plateau state, or ``None`` without it.
    """

    epoch: Array
    train_state: TS
    early_stopping: EarlyStoppingState | None
    plateau: ReduceOnPlateauState | None


class EpochMetrics(NamedTuple):
    """What one epoch reports (stacked along a leading epoch axis by :func:`fit_scan`).

    Attributes:
        train: training metrics averaged over the epoch's steps (``"loss"``, ``"grad_norm"`` ...).
        val: validation metrics over all validation examples (empty without validation data).
        step_loss: ``(n_batches,)`` the loss of every step (to locate a non-finite one).
        finite: whether all floating leaves of the parameters and optimizer state are finite.
        lr_scale: the reduce-on-plateau scale in effect after the epoch (1 without plateau).
        active: whether the epoch trained (``False`` once early stopping had stopped the run:
            the state was left unchanged and the metrics describe a discarded epoch).
        step: the train state's step counter after the epoch.
    """

    train: dict[str, Array]
    val: dict[str, Array]
    step_loss: Array
    finite: Array
    lr_scale: Array
    active: Array
    step: Array


def init_fit_state(
    train_state: TS,
    *,
    early_stopping: EarlyStopping | None = None,
    plateau: ReduceOnPlateau | None = None,
) -> FitState[TS]:
    """The state of a run at epoch 0.

    Early stopping tracks the pair ``(params, model_state)``, so that restoring the best epoch
    also restores its batch-norm statistics.

    Args:
        train_state: the initial training state.
        early_stopping: an :func:`~functrain.train.early_stopping` rule, or ``None``.
        plateau: a :func:`~functrain.train.reduce_on_plateau` rule, or ``None``; the optimizer
            must then contain :func:`~functrain.train.scale_by_plateau`.

    Returns:
        ``FitState(epoch=0, train_state, early_stopping_state, plateau_state)``.

    Raises:
        ValueError: if ``plateau`` is given but the optimizer state has no plateau scale.
    """
    if plateau is not None:
        get_plateau_scale(train_state.opt_state)  # raises a clear ValueError if missing
    es_state = None
    if early_stopping is not None:
        es_state = early_stopping.init((train_state.params, train_state.model_state))
    return FitState(jnp.zeros((), jnp.int32), train_state, es_state,
                    None if plateau is None else plateau.init())


def _all_finite(tree: PyTree) -> Array:
    checks = [jnp.all(jnp.isfinite(x)) for x in _tree.tree_leaves(tree)
              if isinstance(x, jax.Array) and jnp.issubdtype(x.dtype, jnp.inexact)]
    if not checks:
        return jnp.asarray(True)
    return jnp.all(jnp.stack(checks))


def _monitored(monitor: str, train: Mapping[str, Array], val: Mapping[str, Array], who: str) -> Array:
    if monitor.startswith("val_") and monitor[4:] in val:
        return val[monitor[4:]]
    if monitor.startswith("train_") and monitor[6:] in train:
        return train[monitor[6:]]
    source = val if val else train
    if monitor in source:
        return source[monitor]
    raise ValueError(
        f"{who}: monitor={monitor!r} is not a metric; use a {'validation' if val else 'training'} "
        f"metric name {sorted(source)} (or 'train_<name>' {sorted(train)}"
        + (f", 'val_<name>' {sorted(val)})" if val else ")"))


def _check_run_args(fit_state: FitState[Any], eval_step: object, val_data: PyTree,
                    early_stopping: object, plateau: object, who: str) -> None:
    if not isinstance(fit_state, FitState):
        raise TypeError(f"{who}: argument 'fit_state' must be a FitState (see init_fit_state), "
                        f"got {type(fit_state).__name__}")
    if (eval_step is None) != (val_data is None):
        raise ValueError(f"{who}: 'eval_step' and 'val_data' must be given together")
    if (early_stopping is None) != (fit_state.early_stopping is None):
        raise ValueError(f"{who}: 'early_stopping' must be given exactly when the FitState was "
                         "initialized with it (init_fit_state(..., early_stopping=...))")
    if (plateau is None) != (fit_state.plateau is None):
        raise ValueError(f"{who}: 'plateau' must be given exactly when the FitState was "
                         "initialized with it (init_fit_state(..., plateau=...))")


def fit_epoch(
    step: TrainStep,
    fit_state: FitState[TS],
    train_data: PyTree,
    key: PRNGKey,
    *,
    batch_size: int,
    eval_step: EvalStep | None = None,
    val_data: PyTree = None,
    eval_batch_size: int | None = None,
    early_stopping: EarlyStopping | None = None,
    plateau: ReduceOnPlateau | None = None,
    monitor: str = "loss",
) -> tuple[FitState[TS], EpochMetrics]:
    """One epoch of a run: train, validate, update reduce-on-plateau and early stopping. Pure.

    In order: :func:`train_epoch` with key ``fold_in(key, fit_state.epoch)``; :func:`evaluate` on
    ``val_data``; the plateau rule observes the monitored metric and its scale is written into
    the optimizer state (:func:`~functrain.train.set_plateau_scale`); early stopping observes the
    monitored metric and ``(params, model_state)``. If the run had already stopped, the train,
    plateau and early-stopping states are returned unchanged (``jnp.where``), so under ``vmap``
    each run stops on its own; ``epoch`` always advances.

    Args:
        step: the train step.
        fit_state: the run's state (from :func:`init_fit_state`).
        train_data: training arrays (pytree, common leading length).
        key: the run's base key (the same for every epoch; the epoch index is folded in).
        batch_size: training batch size, ``1 <= batch_size <= n_train`` (static).
        eval_step: the evaluation step, with ``val_data``; or ``None``.
        val_data: validation arrays, or ``None``.
        eval_batch_size: evaluation batch size (default ``batch_size``).
        early_stopping: the rule ``fit_state`` was initialized with, or ``None``.
        plateau: the rule ``fit_state`` was initialized with, or ``None``.
        monitor: the metric watched by early stopping and the plateau rule: a name of a
            validation metric (or, without validation data, of a training metric), or an explicit
            ``"val_<name>"`` / ``"train_<name>"``.

    Returns:
        ``(new_fit_state, EpochMetrics)``.

    Raises:
        ValueError: for bad data or batch sizes, mismatched options, or an unknown ``monitor``.
    """
    who = "fit_epoch"
    _check_run_args(fit_state, eval_step, val_data, early_stopping, plateau, who)
    old = fit_state.train_state
    epoch_key = jax.random.fold_in(key, fit_state.epoch)
    ts, per_step = _scan_steps(step, old, train_data, epoch_key, batch_size, who)
    if "loss" not in per_step:
        raise ValueError(f"{who}: the step's metrics must include 'loss', got {sorted(per_step)}")
    train_metrics = _mean(per_step)
    val_metrics: dict[str, Array] = {}
    if eval_step is not None:
        ebs = batch_size if eval_batch_size is None else eval_batch_size
        val_metrics = evaluate(eval_step, ts, val_data, batch_size=ebs)

    ps = fit_state.plateau
    es = fit_state.early_stopping
    stopped = jnp.asarray(False) if es is None else es.stopped
    if plateau is not None or early_stopping is not None:
        value = _monitored(monitor, train_metrics, val_metrics, who)
        if plateau is not None and ps is not None:
            ps = masked_update(stopped, plateau.update(ps, value), ps)
            ts = ts._replace(opt_state=set_plateau_scale(ts.opt_state, ps.scale))
        if early_stopping is not None and es is not None:
            es = early_stopping.update(es, value, (ts.params, ts.model_state))
    ts = masked_update(stopped, ts, old)
    new_fit_state = FitState(fit_state.epoch + 1, ts, es, ps)
    metrics = EpochMetrics(
        train=train_metrics,
        val=val_metrics,
        step_loss=per_step["loss"],
        finite=_all_finite((ts.params, ts.opt_state)),
        lr_scale=jnp.ones((), jnp.float32) if ps is None else ps.scale,
        active=jnp.logical_not(stopped),
        step=ts.step,
    )
    return new_fit_state, metrics


def fit_scan(
    step: TrainStep,
    fit_state: FitState[TS],
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
) -> tuple[FitState[TS], EpochMetrics]:
    """``epochs`` calls of :func:`fit_epoch` inside one ``lax.scan``: a whole run, pure.

    Gives the same result as :func:`fit` with the same key (both fold the epoch index into
    ``key``). ``jax.jit`` it with ``epochs``/``batch_size`` static and ``jax.vmap`` it over
    keys and initial states to train many seeds at once; with early stopping every run
    freezes at its own stopping epoch. Finish with :func:`final_train_state`.

    Args:
        step: the train step.
        fit_state: the run's state (from :func:`init_fit_state`; its ``epoch`` may be > 0 to
            continue a run).
        train_data: training arrays.
        key: the run's base key.
        epochs: number of epochs to run (>= 1, static).
        batch_size: as in :func:`fit_epoch`.
        eval_step: as in :func:`fit_epoch`.
        val_data: as in :func:`fit_epoch`.
        eval_batch_size: as in :func:`fit_epoch`.
        early_stopping: as in :func:`fit_epoch`.
        plateau: as in :func:`fit_epoch`.
        monitor: as in :func:`fit_epoch`.

    Returns:
        ``(final_fit_state, metrics)`` with every field of :class:`EpochMetrics` stacked along
        a leading ``(epochs,)`` axis.

    Raises:
        ValueError: as :func:`fit_epoch`, or ``epochs < 1``.
    """
    n_epochs = int_arg(epochs, "epochs", "fit_scan", low=1)

    def body(fs: FitState[TS], _: None) -> tuple[FitState[TS], EpochMetrics]:
        return fit_epoch(step, fs, train_data, key, batch_size=batch_size, eval_step=eval_step,
                         val_data=val_data, eval_batch_size=eval_batch_size,
                         early_stopping=early_stopping, plateau=plateau, monitor=monitor)

    return lax.scan(body, fit_state, None, length=n_epochs)


# Compiled once per (step, options, shapes) and reused by every ``fit`` call (JAX's jit cache);
# the run state is donated, so its buffers are reused for the next epoch's state.
_fit_epoch_jit = jax.jit(
    fit_epoch,
    static_argnums=(0,),
    static_argnames=("batch_size", "eval_step", "eval_batch_size", "early_stopping", "plateau", "monitor"),
    donate_argnums=(1,),
)


def final_train_state(fit_state: FitState[TS], early_stopping: EarlyStopping | None = None) -> TS:
    """The train state to keep at the end of a run.

    With an early-stopping rule that has ``restore_best``, the parameters and model state are
    those of the best epoch (the step counter and optimizer state stay those of the last
    epoch); otherwise the final train state as is.

    Args:
        fit_state: the final run state.
        early_stopping: the rule the run used, or ``None``.

    Returns:
        A :class:`~functrain.train.TrainState`.
    """
    ts = fit_state.train_state
    if early_stopping is None or fit_state.early_stopping is None:
        return ts
    params, model_state = early_stopping.restore(fit_state.early_stopping, (ts.params, ts.model_state))
    return ts._replace(params=params, model_state=model_state)


# ----------------------------------------------------------------------------------------------
# The host-side driver


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


class _Progress:
    """tqdm progress bar if importable, else one line per epoch on stderr; or nothing."""

    def __init__(self, enabled: bool, total: int, initial: int) -> None:
        self.enabled = enabled
        self.bar: Any = None
        if enabled:
            try:
                from tqdm.auto import tqdm
            except ImportError:  # tqdm is optional: fall back to plain lines
                self.bar = None
            else:
                self.bar = tqdm(total=total, initial=initial, unit="epoch", file=sys.stderr,
                                dynamic_ncols=True)
        self.total = total

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


def _copy_tree(tree: PyTree) -> PyTree:
    """Fresh device buffers for every array leaf (so ``fit`` can donate them without touching the caller's)."""
    return _tree.tree_map(lambda x: jnp.array(x, copy=True) if isinstance(x, jax.Array) else x, tree)


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
    """Train for up to ``epochs`` epochs: the host-side loop around the jitted :func:`fit_epoch`.

    Each epoch runs as one compiled call (compiled once; the run state is donated to it, after a
    one-time copy of ``state``), then the host records the metrics, updates the progress display
    (epoch, loss, accuracy, validation loss/accuracy, learning rate), checks for non-finite
    values, optionally writes a checkpoint, and stops early when the early-stopping rule says so.
    Epoch ``e`` uses ``fold_in(key, e)``, so :func:`fit_scan` with the same key computes the same
    run, and a resumed run continues exactly as an uninterrupted one.

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
        monitor: the metric watched by early stopping and plateau (see :func:`fit_epoch`).
        learning_rate: the optimizer's base learning rate or schedule, used only to display
            and record the effective learning rate; ``None`` shows the plateau scale instead.
        progress: show progress (a tqdm bar when installed, else one line per epoch on stderr).
        checkpoint_path: if given, the :class:`FitState` is saved there (atomically) after
            every epoch.
        resume: with ``checkpoint_path``, continue from the checkpoint if the file exists.

    Returns:
        ``(state, history)``.

    Raises:
        FloatingPointError: on a non-finite loss that corrupted the state (epoch and step named).
        ValueError: for bad data, batch sizes, epochs or options (see :func:`fit_epoch`).
        TypeError: for arguments of the wrong type.
    """
    who = "fit"
    n_epochs = int_arg(epochs, "epochs", who, low=1)
    n = check_data(train_data, who, "train_data")
    bs = check_batch_size(batch_size, n, who)
    if val_data is not None:
        check_data(val_data, who, "val_data")
    if eval_batch_size is not None:
        int_arg(eval_batch_size, "eval_batch_size", who, low=1)
    if (eval_step is None) != (val_data is None):
        raise ValueError(f"{who}: 'eval_step' and 'val_data' must be given together")
    if not isinstance(progress, bool):
        raise TypeError(f"{who}: argument 'progress' must be a bool, got {progress!r}")
    if resume and checkpoint_path is None:
        raise ValueError(f"{who}: resume=True needs a 'checkpoint_path'")
    if not isinstance(state, TrainState):
        raise TypeError(f"{who}: argument 'state' must be a TrainState, got {type(state).__name__}")

    fit_state = init_fit_state(state, early_stopping=early_stopping, plateau=plateau)
    if resume and checkpoint_path is not None and os.path.exists(checkpoint_path):
        fit_state = load_checkpoint(checkpoint_path, like=fit_state)
    else:
        fit_state = _copy_tree(fit_state)
    n_batches = n // bs

    def run(fs: FitState[TS]) -> tuple[FitState[TS], EpochMetrics]:
        out: tuple[FitState[TS], EpochMetrics] = _fit_epoch_jit(
            step, fs, train_data, key, batch_size=bs, eval_step=eval_step, val_data=val_data,
            eval_batch_size=eval_batch_size, early_stopping=early_stopping, plateau=plateau,
            monitor=monitor)
        return out

    start = int(fit_state.epoch)
    step_count = int(fit_state.train_state.step)
    records: list[EpochMetrics] = []
    epochs_run: list[int] = []
    seconds: list[float] = []
    skipped: list[int] = []
    lrs: list[float] = []
    stopped_epoch: int | None = None
    bar = _Progress(progress, n_epochs, start)
    try:
        if fit_state.early_stopping is not None and bool(fit_state.early_stopping.stopped):
            stopped_epoch = int(fit_state.early_stopping.epoch) - 1
        for epoch in range(start, n_epochs):
            if stopped_epoch is not None:
                break
            t0 = time.perf_counter()
            fit_state, m = run(fit_state)
            m = jax.device_get(m)
            seconds.append(time.perf_counter() - t0)
            losses = np.asarray(m.step_loss)
            bad = np.flatnonzero(~np.isfinite(losses))
            if not bool(m.finite):
                if bad.size:
                    i = int(bad[0])
                    raise FloatingPointError(
                        f"{who}: non-finite loss {float(losses[i])} at epoch {epoch}, step {i} of "
                        f"{n_batches} (global step {step_count + i}); the parameters or optimizer "
                        "state are no longer finite. Wrap the optimizer in "
                        "functrain.optim.skip_nonfinite to skip such updates, or lower the "
                        "learning rate / clip the gradients")
                raise FloatingPointError(
                    f"{who}: the parameters or optimizer state became non-finite during epoch "
                    f"{epoch} (global steps {step_count}..{step_count + n_batches - 1}) although "
                    "every loss was finite; lower the learning rate or clip the gradients")
            step_count = int(m.step)
            records.append(m)
            epochs_run.append(epoch)
            skipped.append(int(bad.size))
            scale = float(m.lr_scale)
            lr = _lr_at(learning_rate, step_count, scale)
            if lr is not None:
                lrs.append(lr)
            train_f = {k: float(v) for k, v in m.train.items()}
            val_f = {k: float(v) for k, v in m.val.items()}
            bar.update(epoch, _summary(train_f, val_f, lr, scale))
            if checkpoint_path is not None:
                save_checkpoint(checkpoint_path, fit_state)
            if fit_state.early_stopping is not None and bool(fit_state.early_stopping.stopped):
                stopped_epoch = epoch
    finally:
        bar.close()

    best_epoch: int | None = None
    if fit_state.early_stopping is not None and int(fit_state.early_stopping.best_epoch) >= 0:
        best_epoch = int(fit_state.early_stopping.best_epoch)
    history = History(
        epoch=np.asarray(epochs_run, np.int64),
        train=_stack([r.train for r in records]),
        val=_stack([r.val for r in records]),
        lr_scale=np.asarray([float(r.lr_scale) for r in records], np.float32),
        learning_rate=np.asarray(lrs, np.float64) if learning_rate is not None else None,
        nonfinite_steps=np.asarray(skipped, np.int64),
        seconds=np.asarray(seconds, np.float64),
        best_epoch=best_epoch,
        stopped_epoch=stopped_epoch,
    )
    return final_train_state(fit_state, early_stopping), history


def _stack(rows: list[dict[str, Array]]) -> dict[str, np.ndarray[Any, Any]]:
    if not rows:
        return {}
    return {name: np.asarray([np.asarray(r[name]) for r in rows]) for name in rows[0]}
