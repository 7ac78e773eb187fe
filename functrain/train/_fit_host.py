"""Host-side parts of :func:`~functrain.train.fit`: records, progress, diagnoses, deferred Ctrl-C.

Nothing here runs inside a compiled program: these are the checks and bookkeeping ``fit`` does
on the host between epochs (documented in ``fit``'s docstring).
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Mapping
from types import FrameType
from typing import Any, cast

import jax
import jax.numpy as jnp
import numpy as np

from functrain import _tree, _validate
from functrain.optim.hyperparams import current_learning_rate
from functrain.train.epoch import batch_indices
from functrain.typing import PRNGKey, PyTree, ScalarOrSchedule

# ----------------------------------------------------------------------------------------------
# Progress display


class Progress:
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


def summary(train: Mapping[str, float], val: Mapping[str, float], lr: float | None, scale: float) -> str:
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


def lr_at(learning_rate: ScalarOrSchedule | None, step: int, scale: float) -> float | None:
    """The rate a (deprecated) ``fit(learning_rate=...)`` describes at ``step``, times ``scale``."""
    if learning_rate is None:
        return None
    base = learning_rate(jnp.asarray(step, jnp.int32)) if callable(learning_rate) else learning_rate
    return float(np.asarray(base)) * scale


def state_lr(opt_state: PyTree) -> float | None:
    """The learning rate of the next update, read from the optimizer state; None if it has none.

    :func:`functrain.optim.current_learning_rate` (schedules, traced values and the
    reduce-on-plateau scale included); ``None`` for an optimizer state without exactly one
    functrain learning rate (an optax optimizer, or parameter groups with several rates).
    """
    try:
        return float(np.asarray(current_learning_rate(opt_state)))
    except ValueError:
        return None


# ----------------------------------------------------------------------------------------------
# Per-epoch records: host scalars in growing NumPy arrays (nothing refers to device buffers)


class Column:
    """A growing host array (capacity doubles): appending copies one scalar in, keeps no reference."""

    def __init__(self) -> None:
        self._data: np.ndarray[Any, Any] | None = None
        self._n = 0

    def append(self, value: Any) -> None:
        v = np.asarray(value)
        if self._data is None:
            self._data = np.empty(16, v.dtype)
        elif self._n == self._data.shape[0]:
            grown = np.empty(2 * self._n, self._data.dtype)
            grown[: self._n] = self._data
            self._data = grown
        self._data[self._n] = v
        self._n += 1

    def array(self, dtype: Any = None) -> np.ndarray[Any, Any]:
        """A copy of the values appended so far (``dtype``: for a column that may be empty)."""
        if self._data is None:
            return np.zeros(0, dtype if dtype is not None else np.float32)
        out = self._data[: self._n].copy()
        return out if dtype is None else out.astype(dtype)


class Records:
    """The host-side records of a :func:`fit` call, turned into a ``History`` at the end."""

    def __init__(self, learning_rate: ScalarOrSchedule | None, step_count: int,
                 from_state: bool) -> None:
        self.learning_rate = learning_rate  # the deprecated fit(learning_rate=...), a fallback
        self.from_state = from_state  # the optimizer state holds the learning rate
        self.step_count = step_count  # the train state's step before the next epoch
        self.epochs, self.seconds, self.skipped = Column(), Column(), Column()
        self.lr_scale, self.lrs = Column(), Column()
        self.train: dict[str, Column] = {}
        self.val: dict[str, Column] = {}
        self.stopped_epoch: int | None = None

    def add(self, epoch: int, m: Any, seconds: float, opt_state: PyTree) -> str:
        """Record one epoch's host metrics ``m`` (an ``EpochMetrics`` of NumPy values) and the
        learning rate ``opt_state`` holds for the next update; return the progress text."""
        self.step_count = int(m.step)
        self.epochs.append(epoch)
        self.seconds.append(seconds)
        self.skipped.append(int(m.skipped))
        scale = float(m.lr_scale)
        self.lr_scale.append(np.float32(scale))
        for columns, values in ((self.train, m.train), (self.val, m.val)):
            for name, value in values.items():
                columns.setdefault(name, Column()).append(np.asarray(value)[()])
        lr = state_lr(opt_state) if self.from_state else lr_at(self.learning_rate, self.step_count, scale)
        if lr is not None:
            self.lrs.append(lr)
        return summary({k: float(v) for k, v in m.train.items()},
                       {k: float(v) for k, v in m.val.items()}, lr, scale)

    def fields(self) -> dict[str, Any]:
        """The per-epoch fields of a ``History``."""
        return {
            "epoch": self.epochs.array(np.int64),
            "train": {name: c.array() for name, c in self.train.items()},
            "val": {name: c.array() for name, c in self.val.items()},
            "lr_scale": self.lr_scale.array(np.float32),
            "learning_rate": (self.lrs.array(np.float64)
                              if self.from_state or self.learning_rate is not None else None),
            "skipped_updates": self.skipped.array(np.int64),
            "seconds": self.seconds.array(np.float64),
        }


# ----------------------------------------------------------------------------------------------
# Diagnoses (failure paths only)


def nonfinite_parts(train_state: Any) -> str:
    """Which of params / model state / optimizer state hold NaN or inf, with the first leaf path."""
    parts: list[str] = []
    for label, name in (("parameters", "params"), ("model state", "model_state"),
                        ("optimizer state", "opt_state")):
        for path, leaf in _tree.tree_leaves_with_path(getattr(train_state, name, None)):
            arr = np.asarray(leaf) if _tree.is_array(leaf) else None
            if arr is not None and np.issubdtype(arr.dtype, np.inexact) and not np.all(np.isfinite(arr)):
                parts.append(f"the {label} (first at {name}{path})")
                break
    return " and ".join(parts) if parts else "the training state"


def bad_inputs(train_data: PyTree, key: PRNGKey, epoch: int, batch_size: int,
               steps: list[int]) -> str:
    """A sentence naming non-finite inputs in the batches of ``steps`` of ``epoch``, or ``""``.

    Uses the epoch's batch schedule (:func:`functrain.train.epoch.batch_indices` with key
    ``fold_in(key, epoch)``), so it names the very examples the failing steps trained on.
    """
    n = _validate.check_leading_length(train_data, "fit", "train_data")
    if not steps:
        return ""
    indices = np.asarray(batch_indices(jax.random.fold_in(key, epoch), n, batch_size))
    for path, leaf in _tree.tree_leaves_with_path(train_data):
        arr = np.asarray(leaf)
        if not np.issubdtype(arr.dtype, np.inexact):
            continue
        bad_rows: np.ndarray[Any, Any] = np.logical_not(np.all(np.isfinite(arr.reshape(n, -1)), axis=1))
        in_steps = [(s, i) for s in steps for i in indices[s] if bad_rows[i]]
        if in_steps:
            s, i = in_steps[0]
            return (f"the inputs are not finite: train_data{path} holds NaN or inf at example "
                    f"{int(i)}, used by step {s} ({int(bad_rows.sum())} of the {n} examples of "
                    f"train_data{path} are not finite); clean or filter the data (np.isfinite) "
                    "before training")
    return ""


# ----------------------------------------------------------------------------------------------
# Ctrl-C: recorded while an epoch runs, acted on at the next epoch boundary


class DeferredInterrupt:
    """A context in which SIGINT (Ctrl-C) is recorded instead of raising ``KeyboardInterrupt``.

    Installed only in the main thread and only over Python's default handler (a program that
    installed its own SIGINT handler keeps it). The first Ctrl-C sets :attr:`received`; the
    training loop stops at the next epoch boundary. A second Ctrl-C raises ``KeyboardInterrupt``
    at once. Deferring matters beyond tidiness: a ``KeyboardInterrupt`` raised while XLA compiles
    (in a Python callback invoked from C++) can crash the process (segmentation fault); a
    recorded signal never raises there.
    """

    def __init__(self) -> None:
        self.received = False
        self._previous: Any = None
        self._installed = False

    def __enter__(self) -> DeferredInterrupt:
        if (threading.current_thread() is threading.main_thread()
                and signal.getsignal(signal.SIGINT) is signal.default_int_handler):
            self._previous = signal.signal(signal.SIGINT, self._handle)
            self._installed = True
        return self

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.received:  # a second Ctrl-C: give up waiting for the epoch boundary
            self._restore()
            raise KeyboardInterrupt
        self.received = True

    def _restore(self) -> None:
        if self._installed:
            signal.signal(signal.SIGINT, self._previous)
            self._installed = False

    def __exit__(self, *exc: object) -> None:
        self._restore()


# ----------------------------------------------------------------------------------------------
# Argument checks only fit has


def check_checkpoint_path(path: object, who: str) -> str | None:
    """``path`` as a str in an existing, writable directory (checked before training), or None."""
    if path is None:
        return None
    given: object = path
    if not isinstance(path, (str, os.PathLike)):
        _validate.fail(who, "checkpoint_path", "a file path (str or os.PathLike) or None", given,
                       error=TypeError)
    name = os.fspath(cast("str | os.PathLike[str] | os.PathLike[bytes]", path))
    if not isinstance(name, str):
        _validate.fail(who, "checkpoint_path", "a str file path", given, error=TypeError)
    directory = os.path.dirname(os.path.abspath(name))
    head = (f"{who}: argument 'checkpoint_path' must be a file path in an existing, writable "
            f"directory, got {name!r}")  # (the whole path: describe() would shorten it)
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"{head}; the directory {directory!r} does not exist")
    if os.path.isdir(name):
        raise IsADirectoryError(f"{head}; it is a directory")
    if not os.access(directory, os.W_OK | os.X_OK):
        raise PermissionError(f"{head}; the directory {directory!r} is not writable")
    return name
