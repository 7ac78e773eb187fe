"""The trick table: every row of its sections over several seeds, and the ensemble of a section's last row.

:func:`run_tricks` compiles the programs (all seeds vmapped, run in chunks of epochs; one set per
structure, shared by the rows that differ only in hyperparameter values:
:mod:`~functrain.experiments.tricks.programs`) ahead on worker threads while earlier rows train,
and measures each row as a :class:`TrickResult`.

Example:
    >>> from functrain.experiments.tricks import table
    >>> table.curve(np.array([[1.0, 2.0], [3.0, 4.0]]), np.array([True, False]))  # epochs not run: NaN
    array([[ 1., nan],
           [ 3., nan]])
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any, NamedTuple, TextIO, TypeVar

import jax
import jax.numpy as jnp
import numpy as np

from functrain import _jax, layers
from functrain.data import load_digits
from functrain.experiments.interrupts import Interrupted
from functrain.experiments.tricks.chunks import Compiled, bind, compile_programs, run_chunked
from functrain.experiments.tricks.config import RunConfig
from functrain.experiments.tricks.programs import Data, Group, Hyper, Layout, Structure, device_data, group_rows, \
    hyper_of, layout_of
from functrain.experiments.tricks.report import mean_std
from functrain.experiments.tricks.rows import CLASSIC_CAPTION, DEFAULT_HIDDEN, Section, trick_rows
from functrain.experiments.tricks.run import CompilerOptions, RunOutput
from functrain.experiments.tricks.splits import DEFAULT_LABEL_NOISE, Splits, prepare_splits
from functrain.train import TrainState, ensemble_predict
from functrain.typing import Array, PyTree

__all__ = ["TrickResult", "curve", "ensemble_accuracy", "run_tricks"]


class TrickResult(NamedTuple):
    """One row of the trick table, as measured (host values).

    Attributes:
        label: the row's name.
        test_accuracy: ``(seeds,)`` test accuracy per seed (``(1,)`` for the ensemble row).
        epochs_run: ``(seeds,)`` epochs trained per seed.
        train_seconds: wall-clock seconds of running the row's compiled program (for the
            ensemble: of the prediction).
        compile_seconds: wall-clock seconds of building and compiling the programs this row was
            the first to need (0 when it shares them with an earlier row; compiles overlap with
            other rows' training).
        diverged: how many seeds ended with non-finite parameters.
        val_accuracy: ``(seeds, epochs)`` validation accuracy, NaN after early stopping
            (``None`` for the ensemble row).
        val_loss: ``(seeds, epochs)`` validation loss, NaN after early stopping or where not
            finite (``None`` for the ensemble row).
        train_loss: ``(seeds, epochs)`` training loss, NaN after early stopping or where not
            finite (``None`` for the ensemble row).
        ensemble: whether the row is the ensemble of the previous row's models.
        section: the name of the row's :class:`~functrain.experiments.tricks.rows.Section`.
        group: the index of the compiled programs the row ran (rows with the same index shared
            them; ``-1`` for an ensemble).
        test_loss: ``(seeds,)`` test cross-entropy per seed, NaN where not finite (``(1,)`` for the
            ensemble row: ``-mean log p(y|x)`` of its averaged probabilities); ``None`` if not measured.
    """

    label: str
    test_accuracy: np.ndarray[Any, Any]
    epochs_run: np.ndarray[Any, Any]
    train_seconds: float
    compile_seconds: float
    diverged: int
    val_accuracy: np.ndarray[Any, Any] | None
    val_loss: np.ndarray[Any, Any] | None
    train_loss: np.ndarray[Any, Any] | None
    ensemble: bool = False
    section: str = "classic"
    group: int = -1
    test_loss: np.ndarray[Any, Any] | None = None


def curve(values: Array, keep: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """``values`` as float64, NaN where ``keep`` is false or the value is not finite."""
    arr = np.asarray(values, np.float64)
    return np.where(keep & np.isfinite(arr), arr, np.nan)


def _ensemble_program(model: layers.Layer, state: TrainState[Any, Any, Any],
                      x: np.ndarray[Any, Any]) -> Callable[[np.ndarray[Any, Any]], np.ndarray[Any, Any]]:
    """``x -> averaged class probabilities`` of the stacked models in ``state``, compiled."""
    def predict(p: PyTree, s: PyTree, inputs: Array) -> Array:
        return ensemble_predict(model.apply, p, s, inputs)

    program = _jax.compile_ahead(predict, state.params, state.model_state, jnp.asarray(x))[0]

    def probabilities(inputs: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        return np.asarray(program(state.params, state.model_state, jnp.asarray(inputs)))

    return probabilities


def _accuracy(probs: np.ndarray[Any, Any], y: np.ndarray[Any, Any]) -> float:
    hits: np.ndarray[Any, Any] = np.argmax(probs, axis=-1) == y
    return float(np.mean(hits))


def _cross_entropy(probs: np.ndarray[Any, Any], y: np.ndarray[Any, Any]) -> float:
    """``-mean_i log p(y_i | x_i)`` of class probabilities (float64; a zero probability gives inf)."""
    p = np.asarray(probs, np.float64)[np.arange(len(y)), np.asarray(y)]
    with np.errstate(divide="ignore"):
        return float(-np.mean(np.log(p)))


def ensemble_accuracy(model: layers.Layer, state: TrainState[Any, Any, Any], x: np.ndarray[Any, Any],
                      y: np.ndarray[Any, Any]) -> float:
    """Accuracy of the ensemble of the stacked models in ``state`` (seeds on a leading axis).

    The ensemble predicts ``argmax_c (1/K) sum_k softmax(f_k(x))_c``
    (:func:`~functrain.train.ensemble_predict`, inference mode).

    Args:
        model: the members' architecture.
        state: their train states stacked along a leading ``(K,)`` axis (e.g. ``RunOutput.state``
            from :func:`run_many`).
        x: ``(n, features)`` inputs.
        y: ``(n,)`` labels.

    Returns:
        The fraction of ``x`` the ensemble classifies correctly.
    """
    return _accuracy(_ensemble_program(model, state, x)(x), y)


class _Job(NamedTuple):
    program: Compiled
    seconds: float


def _compile_job(structure: Structure, init: str, layout: Layout, hyper: Hyper, data: Data, keys: Array, *,
                 start: bool, compiler_options: CompilerOptions, abandon: threading.Event) -> _Job:
    """Compile the start (``start=True``) or the body of one structure; once ``abandon`` is set
    (the table was interrupted), it stops before its next program."""
    t0 = time.perf_counter()
    program = compile_programs(structure, init, layout, hyper, data, keys, start=start, body=not start,
                               compiler_options=compiler_options, stop=abandon.is_set)
    return _Job(program, time.perf_counter() - t0)


_R = TypeVar("_R")


def _wait(future: Future[_R], stop: Callable[[], bool] | None, where: str) -> _R:
    """``future.result()``, polling ``stop`` meanwhile (a compilation cannot be cut short)."""
    while True:
        try:
            return future.result(timeout=0.2)
        except FutureTimeout:
            if stop is not None and stop():
                raise Interrupted(f"interrupted {where}; nothing written") from None


def _measure(label: str, out: RunOutput, seconds: float, compile_seconds: float, section: str,
             group: int) -> TrickResult:
    active = np.asarray(out.active, bool)
    return TrickResult(
        label=label, test_accuracy=np.asarray(out.test_accuracy, np.float64),
        epochs_run=np.asarray(out.epochs_run, np.int64), train_seconds=seconds,
        compile_seconds=compile_seconds, diverged=int(np.sum(~np.asarray(out.finite, bool)[:, -1])),
        val_accuracy=curve(out.val_accuracy, active), val_loss=curve(out.val_loss, active),
        train_loss=curve(out.train_loss, active), section=section, group=group,
        test_loss=curve(out.test_loss, np.ones(np.shape(out.test_loss), bool)))


def _ensemble_row(label: str, model: layers.Layer, out: RunOutput, data: Splits,
                  epochs_run: np.ndarray[Any, Any], section: str) -> TrickResult:
    t0 = time.perf_counter()
    program = _ensemble_program(model, out.state, data.x_test)
    t1 = time.perf_counter()
    probs = program(data.x_test)
    acc, loss = _accuracy(probs, data.y_test), _cross_entropy(probs, data.y_test)
    return TrickResult(label=label, test_accuracy=np.asarray([acc]), epochs_run=epochs_run,
                       train_seconds=time.perf_counter() - t1, compile_seconds=t1 - t0, diverged=0,
                       val_accuracy=None, val_loss=None, train_loss=None, ensemble=True, section=section,
                       test_loss=np.asarray([loss if np.isfinite(loss) else np.nan]))


class _Plan(NamedTuple):
    """Which compilations each row waits for, and which it is the first to need."""

    needs: list[list[Future[_Job]]]
    first: list[list[Future[_Job]]]
    group: list[int]
    shares: list[int | None]


def _submit(pool: ThreadPoolExecutor, configs: Sequence[RunConfig], groups: Sequence[Group], layout: Layout,
            hypers: Sequence[Hyper], data: Data, keys: Array, compiler_options: CompilerOptions,
            abandon: threading.Event) -> _Plan:
    """Submit every compilation once, in the order the rows need them (a start per initializer)."""
    group_of = {i: g for g, group in enumerate(groups) for i in group.members}
    bodies: dict[int, tuple[Future[_Job], int]] = {}
    starts: dict[tuple[int, str], Future[_Job]] = {}
    plan = _Plan([], [], [], [])
    for i, config in enumerate(configs):
        g = group_of[i]
        structure = groups[g].structure
        first: list[Future[_Job]] = []
        if (g, config.init) not in starts:
            starts[g, config.init] = pool.submit(_compile_job, structure, config.init, layout, hypers[i], data, keys,
                                                 start=True, compiler_options=compiler_options, abandon=abandon)
            first.append(starts[g, config.init])
        shares = bodies[g][1] if g in bodies else None
        if g not in bodies:
            bodies[g] = (pool.submit(_compile_job, structure, config.init, layout, hypers[i], data, keys,
                                     start=False, compiler_options=compiler_options, abandon=abandon), i)
            first.append(bodies[g][0])
        plan.needs.append([starts[g, config.init], bodies[g][0]])
        plan.first.append(first)
        plan.group.append(g)
        plan.shares.append(shares)
    return plan


def run_tricks(*, seeds: int, epochs: int, hidden: tuple[int, ...] = DEFAULT_HIDDEN, batch_size: int = 64,
               seed: int = 0, splits: Splits | None = None, log: TextIO | None = sys.stderr,
               compiler_options: CompilerOptions = None, compile_workers: int | None = None,
               stop: Callable[[], bool] | None = None, sections: Sequence[Section] | None = None,
               key_impl: str | None = None) -> list[TrickResult]:
    """Run every row of the sections over ``seeds`` seeds (vmapped), each section's ensemble after it.

    All rows use the same seed keys (``split(key(seed), seeds)``: the same initial draws and
    batch orders where the configurations allow), the same data splits and the same epochs.
    Rows whose structures agree share their compiled programs, the values of their
    hyperparameters passed as data (:func:`~functrain.experiments.tricks.programs.group_rows`);
    each row runs one epoch per call (:func:`~functrain.experiments.tricks.chunks.run_chunked`:
    the same results as one program for the whole row, and ``stop`` is asked between epochs).
    Compiling takes longer than training these small networks and uses one core, so the
    programs are compiled ahead by ``compile_workers`` threads while earlier rows train; rows
    still train one after the other, in order. Progress goes to ``log``: a line when a row starts
    and one when it ends, with its compile and training times.

    Args:
        seeds: number of seeds per row (>= 1; the ensemble averages that many models).
        epochs: (maximum) epochs per run (of the default rows).
        hidden: hidden-layer widths (of the default rows).
        batch_size: examples per step (of the default rows).
        seed: the base seed of the runs.
        splits: the data (default: the digits with ``functrain tricks``'s label noise,
            ``prepare_splits(load_digits(), label_noise=DEFAULT_LABEL_NOISE)``).
        log: where progress lines go (``None`` for silence).
        compiler_options: XLA options for every program (see :func:`run_many`).
        compile_workers: threads compiling ahead (default: 2, or 1 on a single core).
        stop: polled between epochs and while waiting for a compilation (e.g. whether Ctrl-C was
            pressed); ``None`` never stops.
        sections: the rows (default: the classic :func:`trick_rows` on the MLP, with the ensemble).
        key_impl: the PRNG implementation of the run keys (``None``: JAX's default, threefry;
            ``"unsafe_rbg"`` compiles faster, see ``functrain tricks --help``).

    Returns:
        One :class:`TrickResult` per row, each section's ensemble after its rows.

    Raises:
        Interrupted: ``stop()`` turned true (a ``KeyboardInterrupt``); the program each worker
            thread is compiling is finished in the background (abandoning an XLA compilation
            crashed the interpreter at exit), the rest are not compiled.
    """
    data = prepare_splits(load_digits(), label_noise=DEFAULT_LABEL_NOISE) if splits is None else splits
    keys = jax.random.split(jax.random.key(seed, impl=key_impl), seeds)
    if sections is None:
        sections = [Section("classic", CLASSIC_CAPTION, trick_rows(epochs=epochs, hidden=hidden,
                                                                   batch_size=batch_size), ensemble=True)]
    rows = [(s, label, config) for s in sections for label, config in s.rows]
    configs = [config for _, _, config in rows]
    total, start = len(rows) + sum(s.ensemble for s in sections), time.perf_counter()
    layout, arrays = layout_of(data), device_data(data)
    groups = group_rows(configs)
    structure_of_row = {i: g.structure for g in groups for i in g.members}
    hypers = [hyper_of(c, structure_of_row[i], layout) for i, c in enumerate(configs)]
    results: list[TrickResult] = []
    workers = compile_workers if compile_workers is not None else min(2, os.cpu_count() or 1)

    def say(text: str) -> None:
        if log is not None:
            print(text, file=log, flush=True)

    pool = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="functrain-compile")
    abandon = threading.Event()
    try:
        plan = _submit(pool, configs, groups, layout, hypers, arrays, keys, compiler_options, abandon)
        for i, (section, label, config) in enumerate(rows):
            n = len(results) + 1
            say(f"[{n}/{total}] {label}: {seeds} seed{'s' * (seeds != 1)} x {config.epochs} epochs ...")
            where = f"in row {n}/{total} ({label})"
            first, body = (_wait(f, stop, where) for f in plan.needs[i])
            t0 = time.perf_counter()
            bound = bind(first.program, body.program, hypers[i], arrays)
            run = run_chunked(bound, keys, stop=stop)
            if run.interrupted or run.output is None:
                raise Interrupted(f"interrupted {where} after epoch {run.epochs_done} of {config.epochs}; "
                                  "nothing written")
            compiled = sum(f.result().seconds for f in plan.first[i])
            r = _measure(label, run.output, time.perf_counter() - t0, compiled, section.name, plan.group[i])
            results.append(r)
            owner = plan.shares[i]
            shared = "" if owner is None else f", sharing the programs of {rows[owner][1]!r}"
            say(f"[{n}/{total}] {label}: test accuracy {mean_std(r.test_accuracy)}"
                f"{f', {r.diverged} diverged' if r.diverged else ''} (train {r.train_seconds:.1f} s, "
                f"compile {r.compile_seconds:.1f} s{shared}; {time.perf_counter() - start:.0f} s so far)")
            if section.ensemble and (label, config) == section.rows[-1]:
                results.append(_ensemble(section, run.output, bound.model, data, r, len(results) + 1, total, say,
                                         start))
    finally:  # (on normal completion every compilation is done already)
        abandon.set()
        pool.shutdown(wait=False, cancel_futures=True)
    return results


def _ensemble(section: Section, out: RunOutput, model: layers.Layer, data: Splits, last: TrickResult, n: int,
              total: int, say: Callable[[str], None], start: float) -> TrickResult:
    seeds = last.test_accuracy.size
    label = f"+ ensemble of the {seeds} models above"
    say(f"[{n}/{total}] {label} ...")
    ens = _ensemble_row(label, model, out, data, last.epochs_run, section.name)
    say(f"[{n}/{total}] {label}: test accuracy {float(ens.test_accuracy[0]):.4f} "
        f"({ens.train_seconds + ens.compile_seconds:.1f} s; {time.perf_counter() - start:.0f} s so far)")
    return ens
