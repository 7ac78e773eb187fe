"""Early stopping as a pure state machine that works in Python loops, under jit and under vmap.

Rule (as in Keras' ``EarlyStopping``; Prechelt, "Early Stopping -- But When?", 1998): after each
epoch, a monitored value ``v`` *improves* on the best value so far when

    ``v < best - min_delta``   (``mode="min"``, e.g. a validation loss), or
    ``v > best + min_delta``   (``mode="max"``, e.g. a validation accuracy).

An improving epoch becomes the best epoch (and, with ``restore_best``, its parameters are kept);
every other epoch increments ``bad_epochs``, and the run stops at the first epoch where
``bad_epochs`` reaches ``patience``: the stopping epoch is ``best_epoch + patience`` (0-based)
when the best epoch is never beaten. A NaN value never improves.

Everything is arrays and ``jnp.where``: inside ``jax.jit`` with epochs in ``lax.scan`` a stopped
run simply stops changing, and under ``jax.vmap`` over seeds each run stops on its own. Use
:func:`masked_update` to freeze the training state of a stopped run::

    new_state, metrics = train_epoch(step, state, data, key, batch_size=...)
    es_state = es.update(es_state, val_loss, new_state.params)
    state = masked_update(stopped_before, new_state, state)   # stopped runs keep their state
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, NamedTuple, TypeVar

import jax.numpy as jnp

from functrain import _tree, _validate
from functrain.typing import Array, ArrayLike, PyTree

__all__ = [
    "EarlyStopping",
    "EarlyStoppingState",
    "early_stopping",
    "masked_update",
]

T = TypeVar("T")

_MODES: tuple[Literal["min", "max"], ...] = ("min", "max")


class EarlyStoppingState(NamedTuple):
    """State of :func:`early_stopping` (a pytree of arrays; vmap adds a leading axis to each).

    Attributes:
        best_value: float32 scalar, the best monitored value so far (``+inf`` / ``-inf`` before
            the first update for ``mode="min"`` / ``"max"``).
        best_params: the parameters passed with the best value (``None`` when ``restore_best``
            is off, so no copy is kept).
        best_epoch: int32, the 0-based epoch of the best value (``-1`` before any improvement).
        bad_epochs: int32, consecutive epochs without improvement.
        stopped: bool scalar, whether the run has stopped.
        epoch: int32, the number of epochs observed while running (it stops counting once
            ``stopped``, so a run stopped at epoch ``k`` has ``epoch == k + 1``).

    Example:
        >>> es = ft.train.early_stopping(patience=2)
        >>> state = es.init(jnp.zeros(()))
        >>> for epoch, loss in enumerate([3.0, 2.0, 2.5, 2.4, 1.0]):
        ...     state = es.update(state, loss, jnp.asarray(float(epoch)))
        >>> bool(state.stopped), int(state.best_epoch), int(state.epoch), float(state.best_params)
        (True, 1, 4, 1.0)
    """

    best_value: Array
    best_params: PyTree
    best_epoch: Array
    bad_epochs: Array
    stopped: Array
    epoch: Array


def masked_update(stopped: ArrayLike, new: T, old: T) -> T:
    """Keep ``old`` where ``stopped``, take ``new`` otherwise: ``jnp.where(stopped, old, new)`` leafwise.

    The freeze of a stopped run inside jit/vmap: its parameters, optimizer state, step counter
    and anything else passed stay bitwise unchanged, while runs that did not stop advance.

    Args:
        stopped: a boolean scalar (traced, or batched under vmap).
        new: the updated pytree (e.g. a ``TrainState`` after an epoch).
        old: the previous pytree, same structure.

    Returns:
        ``old`` if ``stopped`` else ``new``, leafwise.

    Raises:
        TypeError: if ``new`` and ``old`` have different tree structures.

    Example:
        >>> old, new = {"w": jnp.zeros(2)}, {"w": jnp.ones(2)}
        >>> ft.train.masked_update(jnp.asarray(True), new, old)["w"].tolist()
        [0.0, 0.0]
        >>> stopped = jnp.array([True, False])  # two vmapped runs, the first one stopped
        >>> jax.vmap(ft.train.masked_update, in_axes=(0, None, None))(stopped, new, old)["w"].tolist()
        [[0.0, 0.0], [1.0, 1.0]]
    """
    _validate.check_same_structure(old, new, "masked_update", "new", "old")
    out: T = _tree.tree_where(jnp.asarray(stopped), old, new)
    return out


@dataclass(frozen=True)
class EarlyStopping:
    """Configuration plus the pure ``init``/``update`` functions of early stopping.

    Build it with :func:`early_stopping`. Hashable, so it can be a static argument of ``jax.jit``
    (and a field of :class:`~functrain.train.FitOptions`).

    Example:
        >>> es = ft.train.early_stopping(patience=1, mode="max", restore_best=False)
        >>> state = es.update(es.init(), 0.9)
        >>> state = es.update(state, 0.8)
        >>> bool(state.stopped), bool(es.improved(0.95, state.best_value)), hash(es) == hash(es)
        (True, True, True)
    """

    patience: int
    min_delta: float
    mode: Literal["min", "max"]
    restore_best: bool

    def init(self, params: PyTree = None) -> EarlyStoppingState:
        """The initial state; ``params`` (kept as the best so far) is needed when ``restore_best``.

        Args:
            params: the initial parameters (any pytree; ``fit`` passes ``(params, model_state)``).

        Returns:
            A fresh :class:`EarlyStoppingState`.

        Raises:
            ValueError: if ``restore_best`` is set and ``params`` is ``None``.
        """
        if self.restore_best and params is None:
            _validate.fail("EarlyStopping.init", "params", "the initial parameters (restore_best=True "
                           "keeps a copy of the best ones)", params)
        inf = jnp.inf if self.mode == "min" else -jnp.inf
        best = _tree.tree_map(jnp.asarray, params) if self.restore_best else None
        return EarlyStoppingState(
            best_value=jnp.asarray(inf, jnp.float32),
            best_params=best,
            best_epoch=jnp.asarray(-1, jnp.int32),
            bad_epochs=jnp.zeros((), jnp.int32),
            stopped=jnp.zeros((), jnp.bool_),
            epoch=jnp.zeros((), jnp.int32),
        )

    def improved(self, value: ArrayLike, best_value: ArrayLike) -> Array:
        """Whether ``value`` improves on ``best_value`` by more than ``min_delta`` (NaN: never)."""
        v = jnp.asarray(value, jnp.float32)
        if self.mode == "min":
            return v < jnp.asarray(best_value) - self.min_delta
        return v > jnp.asarray(best_value) + self.min_delta

    def update(self, state: EarlyStoppingState, value: ArrayLike, params: PyTree = None) -> EarlyStoppingState:
        """Observe one epoch's monitored ``value`` (and the parameters that produced it).

        Once ``state.stopped`` is true the state no longer changes.

        Args:
            state: the current state.
            value: the monitored scalar for this epoch (may be traced).
            params: the parameters after this epoch (kept if best and ``restore_best``).

        Returns:
            The new state.

        Raises:
            ValueError: if ``value`` is not a scalar.
            TypeError: if ``restore_best`` is set and ``params`` does not have the structure of
                ``state.best_params``.
        """
        who = "EarlyStopping.update"
        v = jnp.asarray(value)
        if v.shape != ():
            _validate.fail(who, "value", "a scalar", v)
        running = jnp.logical_not(state.stopped)
        better = jnp.logical_and(self.improved(v, state.best_value), running)
        bad = jnp.where(better, 0, jnp.where(running, state.bad_epochs + 1, state.bad_epochs))
        stop_now = running & jnp.logical_not(better) & (bad >= self.patience)
        if self.restore_best:
            _validate.check_same_structure(state.best_params, params, who, "params",
                                           "the params given to init")
            best_params = _tree.tree_where(better, params, state.best_params)
        else:
            best_params = None
        return EarlyStoppingState(
            best_value=jnp.where(better, v.astype(jnp.float32), state.best_value),
            best_params=best_params,
            best_epoch=jnp.where(better, state.epoch, state.best_epoch).astype(jnp.int32),
            bad_epochs=bad.astype(jnp.int32),
            stopped=state.stopped | stop_now,
            epoch=jnp.where(running, state.epoch + 1, state.epoch).astype(jnp.int32),
        )

    def restore(self, state: EarlyStoppingState, params: T) -> T:
        """The parameters to keep at the end: the best ones with ``restore_best``, else ``params``.

        If no epoch ever improved (e.g. all values NaN), the parameters given to ``init`` are
        returned; :func:`~functrain.train.final_train_state` and :func:`~functrain.train.fit`
        then warn (``RuntimeWarning``) naming the monitored metric.

        Args:
            state: the final state.
            params: the parameters at the end of training.

        Returns:
            ``state.best_params`` if ``restore_best`` else ``params``.
        """
        if not self.restore_best:
            return params
        best: T = state.best_params
        return best


def early_stopping(
    patience: int,
    min_delta: float = 0.0,
    mode: Literal["min", "max"] = "min",
    restore_best: bool = True,
) -> EarlyStopping:
    """Early stopping: stop after ``patience`` epochs without improvement of a monitored value.

    See the module docstring for the exact rule. ``es = early_stopping(5)``, then
    ``s = es.init(params)`` and after every epoch ``s = es.update(s, val_loss, params)``;
    ``s.stopped`` tells whether to stop and ``es.restore(s, params)`` gives the best parameters.

    Args:
        patience: number of consecutive non-improving epochs that stops the run, in
            ``[1, 2**31 - 1]`` (the state counts epochs in int32).
        min_delta: the minimum change that counts as an improvement (>= 0, absolute).
        mode: ``"min"`` when lower is better (losses), ``"max"`` when higher is (accuracy).
        restore_best: keep a copy of the best parameters (returned by ``restore`` and by ``fit``).

    Returns:
        An :class:`EarlyStopping` with ``init``, ``update`` and ``restore``.

    Raises:
        TypeError: if ``patience`` is not an int, ``min_delta`` not a number or ``restore_best``
            not a bool.
        ValueError: if ``patience`` is outside ``[1, 2**31 - 1]``, ``min_delta < 0`` or ``mode``
            is not "min"/"max".

    Example:
        >>> es = ft.train.early_stopping(patience=3, min_delta=0.01)
        >>> es.patience, es.mode, es.restore_best
        (3, 'min', True)
    """
    who = "early_stopping"
    n = _validate.check_int(patience, who, "patience", low=1, high=_validate.INT32_MAX)
    delta = _validate.check_number(min_delta, who, "min_delta", low=0.0, finite=True)
    if delta is None:
        _validate.fail(who, "min_delta", "a concrete (not traced) number >= 0", min_delta, error=TypeError)
    chosen = _validate.check_choice(mode, _MODES, who, "mode")
    keep = _validate.check_bool(restore_best, who, "restore_best")
    return EarlyStopping(patience=n, min_delta=delta, mode=chosen, restore_best=keep)
