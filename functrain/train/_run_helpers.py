"""Private helpers of :mod:`functrain.train.run`: option checks, metric lookup, guard tracking.

Kept apart so that ``run.py`` holds the run's types and pure functions only. Nothing here is
public; the behaviour is documented where it is used (:func:`~functrain.train.fit_epoch`,
:func:`~functrain.train.fit_scan`, :func:`~functrain.train.fit`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

import jax
import jax.numpy as jnp

from functrain import _tree, _validate
from functrain.optim.guards import SkipNonfiniteState, has_diverged
from functrain.train.early_stopping import EarlyStopping, EarlyStoppingState, masked_update
from functrain.train.plateau import ReduceOnPlateau, ReduceOnPlateauState, set_plateau_scale
from functrain.train.state import TS
from functrain.train.step import TrainStep
from functrain.typing import Array, Metrics, PRNGKey, PyTree

if TYPE_CHECKING:  # (run.py imports this module: the run's types for annotations only)
    from functrain.train.run import FitOptions, FitState


def check_fields(who: str, batch_size: object, eval_step: object, eval_batch_size: object,
                 early_stopping: object, plateau: object, monitor: object) -> tuple[int, int | None]:
    """Check the options of a run; return ``(batch_size, eval_batch_size)`` as Python ints."""
    bs = _validate.check_int(batch_size, who, "batch_size", low=1)
    if eval_step is not None:
        _validate.check_callable(eval_step, who, "eval_step", "an eval step function or None")
    ebs = None if eval_batch_size is None else _validate.check_int(eval_batch_size, who,
                                                                    "eval_batch_size", low=1)
    if early_stopping is not None and not isinstance(early_stopping, EarlyStopping):
        _validate.fail(who, "early_stopping", "an EarlyStopping rule (functrain.train.early_stopping"
                       "(...)) or None", early_stopping, error=TypeError)
    if plateau is not None and not isinstance(plateau, ReduceOnPlateau):
        _validate.fail(who, "plateau", "a ReduceOnPlateau rule (functrain.train.reduce_on_plateau"
                       "(...)) or None", plateau, error=TypeError)
    if not isinstance(monitor, str):
        _validate.fail(who, "monitor", "a metric name (a str)", monitor, error=TypeError)
    return bs, ebs


def all_finite(tree: PyTree) -> Array:
    """Whether every floating leaf of ``tree`` is finite (a boolean scalar; ``True`` without any)."""
    checks = [jnp.all(jnp.isfinite(x)) for x in _tree.tree_leaves(tree)
              if isinstance(x, jax.Array) and jnp.issubdtype(x.dtype, jnp.inexact)]
    if not checks:
        return jnp.asarray(True)
    return jnp.all(jnp.stack(checks))


def monitored(monitor: str, train: Mapping[str, Array], val: Mapping[str, Array], who: str) -> Array:
    """The value of the monitored metric (``val_``/``train_`` prefixes, else validation first)."""
    if monitor.startswith("val_") and monitor[4:] in val:
        return val[monitor[4:]]
    if monitor.startswith("train_") and monitor[6:] in train:
        return train[monitor[6:]]
    source = val if val else train
    if monitor in source:
        return source[monitor]
    allowed = sorted(source) + [f"train_{k}" for k in sorted(train)] + [f"val_{k}" for k in sorted(val)]
    _validate.fail(who, "options.monitor", f"the name of a {'validation' if val else 'training'} "
                   f"metric, or 'train_<name>' / 'val_<name>': one of {allowed}", monitor)


DIVERGED = "__functrain_diverged__"  # the per-step divergence flag, taken out of the metrics


def _is_guard(x: Any) -> bool:
    """A skip_nonfinite state, or optax's apply_if_finite state (recognized by its fields)."""
    return isinstance(x, SkipNonfiniteState) or all(
        hasattr(x, f) for f in ("notfinite_count", "last_finite", "total_notfinite", "inner_state"))


def guarded(opt_state: PyTree) -> bool:
    """Whether the optimizer state holds a non-finite guard (decided at trace time)."""
    return any(_is_guard(x) for x in _tree.tree_leaves(opt_state, is_leaf=_is_guard))


def tracking(step: TrainStep[TS]) -> TrainStep[TS]:
    """``step`` that also reports, per step, whether the run has diverged after it."""
    def tracked(state: TS, batch: PyTree, key: PRNGKey) -> tuple[TS, Metrics]:
        new, metrics = step(state, batch, key)
        return new, {**metrics, DIVERGED: has_diverged(new.opt_state)}

    return tracked


def check_epoch_count(epochs: object, n_batches: int, start_step: int | None, who: str,
                      done: int = 0) -> int:
    """``epochs`` as an int in ``[1, 2**31 - 1]`` whose steps fit the int32 step counter.

    ``epochs - done`` epochs of ``n_batches`` steps run from step ``start_step`` (0 if unknown);
    the last step must stay ``<= 2**31 - 1``.
    """
    n = _validate.check_int(epochs, who, "epochs", low=1, high=_validate.INT32_MAX)
    first = 0 if start_step is None else start_step
    if n_batches >= 1 and first + (n - done) * n_batches > _validate.INT32_MAX:
        most = done + max((_validate.INT32_MAX - first) // n_batches, 0)
        _validate.fail(who, "epochs", f"an int <= {most}", n, detail=(
            f"{n - done} epochs of {n_batches} steps from step {first} would overflow the int32 "
            f"step counter (at most {_validate.INT32_MAX} steps)"))
    return n


def observe(options: FitOptions, fit_state: FitState[TS], ts: TS, train: Mapping[str, Array],
             val: Mapping[str, Array], who: str, frozen: Array,
             guarded: bool) -> tuple[TS, EarlyStoppingState | None, ReduceOnPlateauState | None]:
    """Reduce-on-plateau and early stopping observe the monitored metric (a frozen run: unchanged)."""
    ps, es = fit_state.plateau, fit_state.early_stopping
    if options.plateau is None and options.early_stopping is None:
        return ts, es, ps
    value = monitored(options.monitor, train, val, who)
    if options.plateau is not None and ps is not None:
        ps = masked_update(frozen, options.plateau.update(ps, value), ps)
        ts = ts._replace(opt_state=set_plateau_scale(ts.opt_state, ps.scale))
    if options.early_stopping is not None and es is not None:
        new_es = options.early_stopping.update(es, value, (ts.params, ts.model_state))
        es = masked_update(frozen, new_es, es) if guarded else new_es  # (a stopped rule: no-op)
    return ts, es, ps


def restore_best(fit_state: FitState[TS], options: FitOptions | None) -> tuple[TS, list[tuple[int, ...]]]:
    """:func:`final_train_state` without its warning: ``(state, runs that never improved)``.

    The second element lists the indices of the runs (``[()]`` for an unbatched state) for which
    ``restore_best`` returns the initial parameters; empty when nothing was restored that way or
    the state is traced.
    """
    ts = fit_state.train_state
    rule = None if options is None else options.early_stopping
    es = fit_state.early_stopping
    if rule is None or es is None:
        return ts, []
    params, model_state = rule.restore(es, (ts.params, ts.model_state))
    never: list[tuple[int, ...]] = []
    if rule.restore_best and not _validate.is_traced(es.best_epoch):
        never = [tuple(int(i) for i in where) for where in np.argwhere(np.asarray(es.best_epoch) < 0)]
    return ts._replace(params=params, model_state=model_state), never
