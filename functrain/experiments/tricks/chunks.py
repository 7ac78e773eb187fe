"""Many seeds of a run, compiled once and run in chunks of epochs: progress, and prompt interrupts.

A whole run as one compiled program (:func:`~functrain.experiments.tricks.run.run_many`) can
neither report nor be stopped until it ends. Here the run's pieces
(:class:`~functrain.experiments.tricks.programs.Parts`) are compiled as three vmapped programs
(start, ``chunk_epochs`` epochs, finish) that take the run's values and data as arguments, so
that runs of one structure share them (:func:`compile_programs`, then :func:`bind` per run), and
the epochs program is called again and again,
carrying the ``FitState`` of every seed from chunk to chunk. Since epoch ``e`` trains with
``fold_in(key, e)`` whatever chunk it falls in, the results do not depend on the chunk length:
bitwise equal for chunks of 1, 2 or all epochs (tested). Against the single program of
``run_many``, where XLA fuses initialization, training and test evaluation together, they agree
to float32 rounding (measured: within 2e-7 relative). Between chunks :func:`run_chunked` reports
progress, asks whether to stop (Ctrl-C), and skips the rest once every seed has stopped early.

Example:
    >>> from functrain.experiments.tricks import chunks
    >>> chunks.Progress._fields
    ('epoch', 'epochs', 'train_loss', 'val_accuracy', 'training', 'seeds', 'seconds')
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from functrain import _jax, layers
from functrain._validate import check_int
from functrain.experiments.interrupts import Interrupted
from functrain.experiments.tricks import program_cache
from functrain.experiments.tricks.config import RunConfig
from functrain.experiments.tricks.programs import (
    Data,
    Hyper,
    Layout,
    Parts,
    Structure,
    device_data,
    hyper_of,
    layout_of,
    make_programs,
    structure_of,
)
from functrain.experiments.tricks.run import CompilerOptions, RunOutput, check_run, ready
from functrain.experiments.tricks.splits import Splits
from functrain.train import EpochMetrics, FitState, TrainState
from functrain.typing import Array

__all__ = ["ChunkedResult", "ChunkedRun", "Compiled", "Progress", "bind", "compile_chunked", "compile_programs",
           "run_chunked"]


class ChunkedRun(NamedTuple):
    """The compiled programs of a chunked run (all seeds vmapped), from :func:`compile_chunked`.

    Attributes:
        start: ``keys -> (fit states, training keys)`` of every seed at epoch 0.
        train: per chunk length ``n``: ``(fit states, training keys) -> (fit states, metrics of
            n epochs)``.
        finish: ``fit states -> (kept train states, test metrics)``.
        model: the network.
        epochs: the run's epochs.
        chunk_epochs: the epochs per chunk (the last chunk may be shorter).
    """

    start: Callable[[Array], tuple[FitState[Any], Array]]
    train: dict[int, Callable[[FitState[Any], Array], tuple[FitState[Any], EpochMetrics]]]
    finish: Callable[[FitState[Any]], tuple[TrainState[Any, Any, Any], dict[str, Array]]]
    model: layers.Layer
    epochs: int
    chunk_epochs: int


class Progress(NamedTuple):
    """What :func:`run_chunked` reports after each chunk (means over the seeds still training).

    Attributes:
        epoch: epochs completed.
        epochs: the run's epochs.
        train_loss: the last epoch's training loss (NaN when no seed trained in it).
        val_accuracy: the last epoch's validation accuracy (NaN when no seed trained in it).
        training: seeds that trained in the last epoch (the others have stopped early).
        seeds: the number of seeds.
        seconds: wall-clock seconds since the first chunk started.
    """

    epoch: int
    epochs: int
    train_loss: float
    val_accuracy: float
    training: int
    seeds: int
    seconds: float


class ChunkedResult(NamedTuple):
    """What :func:`run_chunked` returns.

    Attributes:
        output: the seeds' :class:`RunOutput` (stacked) over the completed epochs, or ``None``
            when it stopped before completing one.
        epochs_done: the epochs completed (less than planned when interrupted or when every
            seed stopped early: the epochs skipped then are inactive and their metrics NaN).
        interrupted: whether ``stop`` ended the run.
    """

    output: RunOutput | None
    epochs_done: int
    interrupted: bool


class Compiled(NamedTuple):
    """Compiled programs of one structure, all seeds vmapped; the values and data are arguments.

    Attributes:
        start: ``(hyper, data, keys) -> (fit states, training keys)``, or ``None`` when only the
            body was compiled (see :func:`compile_programs`).
        train: per chunk length ``n``: ``(hyper, data, fit states, training keys) -> (fit states,
            metrics of n epochs)``; empty when only the start was compiled.
        finish: ``(hyper, data, fit states) -> (kept train states, test metrics)``, or ``None``.
        parts: the uncompiled pieces (their ``model`` builds the network).
        epochs: the runs' epochs.
        chunk_epochs: the epochs per chunk.
    """

    start: Callable[..., tuple[FitState[Any], Array]] | None
    train: dict[int, Callable[..., tuple[FitState[Any], EpochMetrics]]]
    finish: Callable[..., tuple[TrainState[Any, Any, Any], dict[str, Array]]] | None
    parts: Parts
    epochs: int
    chunk_epochs: int


def compile_programs(structure: Structure, init: str, layout: Layout, hyper: Hyper, data: Data, keys: Array, *,
                     chunk_epochs: int = 1, start: bool = True, body: bool = True,
                     compiler_options: CompilerOptions = None, stop: Callable[[], bool] | None = None) -> Compiled:
    """Compile the programs of ``structure`` for every key: the start (per initializer) and/or the body.

    ``hyper`` and ``data`` only give the shapes: any run of the structure can be bound to the
    programs (:func:`bind`). The body (train in chunks, finish) does not depend on ``init``.

    Raises:
        Interrupted: ``stop()`` turned true before a program was compiled (a compilation itself
            is never cut short).
    """
    chunk = min(check_int(chunk_epochs, "compile_programs", "chunk_epochs", low=1), structure.template.epochs)
    parts = make_programs(structure, init, layout)
    epochs = structure.template.epochs

    # What determines each program besides its arguments' shapes (program_cache.program_key).
    named = (structure.template, tuple(sorted(structure.tricks)), layout)

    def build(name: object, fn: Callable[..., Any], in_axes: tuple[int | None, ...],
              *args: Any) -> tuple[Callable[..., Any], Any]:
        """The compiled program and the shapes of its outputs (from disk when kept there)."""
        if stop is not None and stop():
            raise Interrupted("interrupted while compiling; nothing written")
        return program_cache.compiled((name, named, in_axes), jax.vmap(fn, in_axes=in_axes), args, compiler_options)

    first, shapes = build(("start", init), parts.start, (None, None, 0), hyper, data, keys) if start else (None, None)
    train: dict[int, Callable[..., Any]] = {}
    finish = None
    if body:
        if shapes is None:  # traced only
            shapes = _jax.eval_shape(jax.vmap(parts.start, in_axes=(None, None, 0)), hyper, data, keys)
        fit_states, train_keys = shapes
        for n in sorted({chunk, epochs % chunk} - {0}):
            def train_n(h: Hyper, d: Data, fs: FitState[Any], k: Array,
                        n: int = n) -> tuple[FitState[Any], EpochMetrics]:
                return parts.train(h, d, fs, k, n)

            train[n] = build(("train", n), train_n, (None, None, 0, 0), hyper, data, fit_states, train_keys)[0]
        finish = build("finish", parts.finish, (None, None, 0), hyper, data, fit_states)[0]
    return Compiled(first, train, finish, parts, epochs, chunk)


def bind(start: Compiled, body: Compiled, hyper: Hyper, data: Data) -> ChunkedRun:
    """The :class:`ChunkedRun` of one run: its values and data bound to the compiled programs."""
    program, finish = start.start, body.finish
    if program is None or finish is None:
        raise ValueError("bind: 'start' needs a compiled start program and 'body' a compiled body")
    def chunk(fn: Callable[..., tuple[FitState[Any], EpochMetrics]]) -> Callable[[FitState[Any], Array],
                                                                                tuple[FitState[Any], EpochMetrics]]:
        return lambda fs, k: fn(hyper, data, fs, k)

    def begin(keys: Array) -> tuple[FitState[Any], Array]:
        return program(hyper, data, keys)

    def end(fs: FitState[Any]) -> tuple[TrainState[Any, Any, Any], dict[str, Array]]:
        return finish(hyper, data, fs)

    train = {n: chunk(fn) for n, fn in body.train.items()}
    return ChunkedRun(begin, train, end, body.parts.model(hyper), body.epochs, body.chunk_epochs)


def compile_chunked(config: RunConfig, splits: Splits, keys: Array, *, chunk_epochs: int = 1,
                    compiler_options: CompilerOptions = None, stop: Callable[[], bool] | None = None) -> ChunkedRun:
    """Compile the run of ``config`` for every key, in chunks of ``chunk_epochs`` epochs.

    Args:
        config: the run's configuration.
        splits: its data.
        keys: ``(n_seeds,)`` keys (the programs are compiled for this many seeds).
        chunk_epochs: epochs per call (>= 1); a remainder chunk gets its own program.
        compiler_options: XLA options (see :func:`~functrain.experiments.tricks.run.run_many`).
        stop: polled before each program is compiled (a compilation itself is never cut short);
            ``None`` never stops.

    Raises:
        TypeError, ValueError: as :func:`~functrain.experiments.tricks.run.make_run`, or a bad
            ``chunk_epochs``.
        Interrupted: ``stop()`` turned true (nothing was trained).
    """
    check_int(chunk_epochs, "compile_chunked", "chunk_epochs", low=1)
    check_run(config, splits)
    structure, layout = structure_of(config), layout_of(splits)
    hyper, data = hyper_of(config, structure, layout), device_data(splits)
    programs = compile_programs(structure, config.init, layout, hyper, data, keys, chunk_epochs=chunk_epochs,
                                compiler_options=compiler_options, stop=stop)
    return bind(programs, programs, hyper, data)


def _progress(metrics: EpochMetrics, epoch: int, epochs: int, seconds: float) -> Progress:
    active = np.asarray(jax.device_get(metrics.active[:, -1]), bool)
    loss = np.asarray(jax.device_get(metrics.train["loss"][:, -1]), np.float64)
    acc = np.asarray(jax.device_get(metrics.val["accuracy"][:, -1]), np.float64)
    n = int(active.sum())
    return Progress(epoch, epochs, float(loss[active].mean()) if n else float("nan"),
                    float(acc[active].mean()) if n else float("nan"), n, active.size, seconds)


def _assemble(chunks: list[EpochMetrics], pad: int, kept: TrainState[Any, Any, Any],
              test: dict[str, Array]) -> RunOutput:
    """The chunks' metrics joined along the epoch axis, ``pad`` skipped (inactive) epochs added."""

    def joined(get: Callable[[EpochMetrics], Array], fill: Callable[[Array], Array]) -> Array:
        parts = [get(m) for m in chunks]
        if pad:
            parts.append(jnp.repeat(fill(parts[-1][:, -1:]), pad, axis=1))
        return jnp.concatenate(parts, axis=1)

    def nan(a: Array) -> Array:
        return jnp.full_like(a, jnp.nan)

    active = joined(lambda m: m.active, jnp.zeros_like)
    return RunOutput(
        train_loss=joined(lambda m: m.train["loss"], nan), train_accuracy=joined(lambda m: m.train["accuracy"], nan),
        val_loss=joined(lambda m: m.val["loss"], nan), val_accuracy=joined(lambda m: m.val["accuracy"], nan),
        # a stopped run's state is frozen: its finiteness stays that of its last computed epoch
        active=active, finite=joined(lambda m: m.finite, lambda a: a),
        epochs_run=jnp.sum(active.astype(jnp.int32), axis=1), test_loss=test["loss"],
        test_accuracy=test["accuracy"], state=kept)


def run_chunked(run: ChunkedRun, keys: Array, *, stop: Callable[[], bool] | None = None,
                progress: Callable[[Progress], None] | None = None) -> ChunkedResult:
    """Run every seed of ``run`` chunk after chunk; the same results as the unchunked run.

    Before each chunk ``stop()`` is asked (e.g. whether Ctrl-C was pressed): if true, the run ends
    there and the result holds the completed epochs (the kept state and test numbers are those
    after the last completed chunk). After each chunk ``progress`` gets a :class:`Progress`.
    Once every seed has stopped early, the remaining epochs are skipped: they would change
    nothing (a stopped run's state is frozen); they appear as inactive epochs with NaN metrics.

    Args:
        run: from :func:`compile_chunked` (compiled for keys like ``keys``).
        keys: the ``(n_seeds,)`` keys.
        stop: polled between chunks; ``None`` never stops.
        progress: called after every chunk; ``None`` for silence.

    Returns:
        A :class:`ChunkedResult` (its output computed: blocks until ready).
    """
    fit_states, train_keys = run.start(keys)
    chunks: list[EpochMetrics] = []
    done, started, interrupted = 0, time.perf_counter(), False
    while done < run.epochs:
        if stop is not None and stop():
            interrupted = True
            break
        fit_states, metrics = run.train[min(run.chunk_epochs, run.epochs - done)](fit_states, train_keys)
        chunks.append(metrics)
        done += int(metrics.active.shape[1])
        if progress is not None:
            progress(_progress(metrics, done, run.epochs, time.perf_counter() - started))
        if _all_stopped(fit_states):
            break
    if not chunks:
        return ChunkedResult(None, 0, interrupted)
    kept, test = run.finish(fit_states)
    pad = 0 if interrupted else run.epochs - done
    return ChunkedResult(ready(_assemble(chunks, pad, kept, test)), done, interrupted)


def _all_stopped(fit_states: FitState[Any]) -> bool:
    es = fit_states.early_stopping
    return es is not None and bool(np.all(jax.device_get(es.stopped)))
