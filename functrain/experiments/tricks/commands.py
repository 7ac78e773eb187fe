"""What ``functrain tricks`` and ``functrain train`` do once their arguments are parsed.

:func:`tricks` runs the trick table, prints it and writes ``tricks.png``, ``tricks.md`` and
``tricks.json``; :func:`train` trains one configuration and writes ``history.json``,
``checkpoint.ckpt`` and ``curves.png``. Everything that can be checked is checked before any
training: the options, the data (finite features, labels), the batch size against the data, and
the output files (:func:`~functrain.experiments.tricks.outputs.check_outputs`, which creates
nothing, so a failing check leaves no empty output directory behind); a problem raises
:class:`CommandError`. The outputs are then written all-or-nothing
(:func:`~functrain.experiments.tricks.outputs.write_outputs`; a failure raises
:class:`WriteError`). Both commands take ``stop``, polled between epochs (Ctrl-C, see
:mod:`functrain.experiments.interrupts`): :func:`train` then writes the completed epochs' outputs
and raises :class:`~functrain.experiments.interrupts.Interrupted`, :func:`tricks` raises it and
writes nothing.
"""

from __future__ import annotations

import importlib.util
import json
import os
import platform
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import jax

from functrain.experiments.interrupts import Interrupted
from functrain.experiments.tricks.chunks import Progress, compile_chunked, run_chunked
from functrain.experiments.tricks.config import OPTIMIZERS, RunConfig, check_config
from functrain.experiments.tricks.figures import plot_run, plot_tricks
from functrain.experiments.tricks.outputs import CommandError, WriteError, check_outputs, write_outputs
from functrain.experiments.tricks.report import (
    format_table,
    history_json,
    markdown_report,
    results_json,
    run_summary,
)
from functrain.experiments.tricks.run import CompilerOptions, max_epochs
from functrain.experiments.tricks.splits import Splits, load_data, prepare_splits
from functrain.experiments.tricks.table import run_tricks

__all__ = ["TRAIN_OUTPUTS", "TRICKS_OUTPUTS", "CommandError", "TrainArgs", "TricksArgs", "WriteError", "train",
           "train_config", "tricks", "tricks_command_line"]

PROG = "functrain"
QUICK_HIDDEN = (32, 32)
FULL_HIDDEN = (256, 256, 256)
TRICKS_OUTPUTS = ("tricks.png", "tricks.md", "tricks.json")
"""The files ``functrain tricks`` writes in its output directory."""
TRAIN_OUTPUTS = ("checkpoint.ckpt", "history.json", "curves.png")
"""The files ``functrain train`` writes in its output directory."""
PROGRESS_SECONDS = 1.0
"""``functrain train`` prints a progress line at most this often (and after the first and last epoch)."""


class TricksArgs(NamedTuple):
    """The options of ``functrain tricks`` (``None``: the default, which ``quick`` changes)."""

    seeds: int | None = None
    epochs: int | None = None
    hidden: tuple[int, ...] | None = None
    batch_size: int = 64
    seed: int = 0
    out: str = "."
    quick: bool = False


class TrainArgs(NamedTuple):
    """The options of ``functrain train`` (``None``: the default, which ``quick`` changes)."""

    data: str = "digits"
    optimizer: str = "adam"
    lr: float | None = None
    schedule: str = "constant"
    decay_rate: float = 0.98
    init: str = "he"
    batch_norm: bool = False
    dropout: float = 0.0
    clip: float | None = None
    weight_decay: float = 0.0
    early_stopping: int | None = None
    seeds: int | None = None
    seed: int = 0
    epochs: int | None = None
    batch_size: int = 64
    hidden: tuple[int, ...] | None = None
    out: str = "functrain-run"
    quick: bool = False


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _need_matplotlib() -> None:
    if importlib.util.find_spec("matplotlib") is None:
        raise ImportError("the plots need matplotlib, an optional dependency: pip install 'functrain[examples]'")


def _quick_options(quick: bool) -> CompilerOptions:
    # --quick trades run speed for compile speed (the runs are tiny): about 3x faster to compile.
    return {"xla_backend_optimization_level": 0} if quick else None


def _machine() -> str:
    return f"{platform.machine()}, {os.cpu_count()} CPU cores, JAX {jax.__version__} on {jax.default_backend()}"


def _write_json(path: Path, doc: dict[str, Any]) -> None:
    path.write_text(json.dumps(doc, indent=1, allow_nan=False) + "\n", encoding="utf-8")


def _check_fits_data(config: RunConfig, splits: Splits) -> None:
    """The flags that depend on the data: the batch size (never clamped) and the epochs (int32 steps)."""
    n, batch_size, epochs = len(splits.x_train), config.batch_size, config.epochs
    if batch_size > n:
        raise CommandError(f"argument --batch-size: must be an int in [1, {n}] (at most the {n} training "
                           f"examples of {splits.name}), got '{batch_size}'")
    most = max_epochs(config, splits)
    if epochs > most:
        raise CommandError(f"argument --epochs: must be an int in [1, {most}] (epochs x {n // batch_size} steps "
                           f"per epoch must fit the int32 step counter), got '{epochs}'")


def tricks_command_line(args: TricksArgs) -> str:
    """The command line that reproduces these results (the output directory left out)."""
    parts = [PROG, "tricks"] + (["--quick"] if args.quick else [])
    for flag, value in (("--seeds", args.seeds), ("--epochs", args.epochs), ("--seed", args.seed or None),
                        ("--batch-size", None if args.batch_size == 64 else args.batch_size),
                        ("--hidden", None if args.hidden is None else ",".join(map(str, args.hidden)))):
        if value is not None:
            parts += [flag, str(value)]
    return " ".join(parts)


def tricks(args: TricksArgs, *, stop: Callable[[], bool] | None = None) -> None:
    """``functrain tricks``: run the table, print it, write the figure, Markdown and JSON files.

    Args:
        args: the parsed options.
        stop: polled between epochs (e.g. whether Ctrl-C was pressed); ``None`` never stops.

    Raises:
        CommandError: a batch size above the training examples, or an output directory or file
            that cannot be written (checked before anything runs).
        WriteError: writing an output failed (the previous outputs are left unchanged).
        Interrupted: ``stop()`` turned true; nothing is written.
        ImportError: matplotlib is missing.
    """
    seeds = args.seeds if args.seeds is not None else (2 if args.quick else 5)
    epochs = args.epochs if args.epochs is not None else (2 if args.quick else 30)
    hidden = args.hidden if args.hidden is not None else (QUICK_HIDDEN if args.quick else FULL_HIDDEN)
    splits = prepare_splits(load_data("digits"))
    _check_fits_data(RunConfig(hidden=hidden, epochs=epochs, batch_size=args.batch_size), splits)
    out = check_outputs(args.out, TRICKS_OUTPUTS)
    _need_matplotlib()
    started, cpu_started = time.perf_counter(), time.process_time()
    net = f"MLP 64-{'-'.join(map(str, hidden))}-10"
    _say(f"functrain tricks: {net} on the digits, {seeds} seeds per row, {epochs} epochs, batch "
         f"{args.batch_size}; each row is compiled once and run one epoch per call")
    results = run_tricks(seeds=seeds, epochs=epochs, hidden=hidden, batch_size=args.batch_size, seed=args.seed,
                         splits=splits, log=sys.stderr, compiler_options=_quick_options(args.quick), stop=stop)
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    print(format_table(results), flush=True)
    png, md, js = TRICKS_OUTPUTS
    title = (f"The training tricks added one at a time: {net} on the digits ({len(splits.x_train)} train / "
             f"{len(splits.x_val)} validation / {len(splits.x_test)} test), {seeds} seeds, up to {epochs} epochs")
    report = markdown_report(results, splits=splits, seeds=seeds, epochs=epochs, hidden=hidden,
                             batch_size=args.batch_size, seconds=wall, cpu_seconds=cpu, image=png,
                             machine=_machine(), command=tricks_command_line(args))
    doc = results_json(results, seeds=seeds, epochs=epochs, hidden=hidden, batch_size=args.batch_size,
                       seed=args.seed)
    written = write_outputs(out, {png: lambda p: plot_tricks(results, p, title=title),
                                  md: lambda p: p.write_text(report, encoding="utf-8"),
                                  js: lambda p: _write_json(p, doc)})
    _say(f"functrain tricks: {wall:.0f} s in all ({cpu:.0f} s of CPU); wrote {', '.join(map(str, written[:-1]))} "
         f"and {written[-1]}")


def train_config(args: TrainArgs) -> RunConfig:
    """The :class:`RunConfig` of ``functrain train``'s options (defaults filled in, checked).

    Raises:
        CommandError: an invalid combination (see ``check_config``).
    """
    hidden = args.hidden if args.hidden is not None else (QUICK_HIDDEN if args.quick else FULL_HIDDEN)
    config = RunConfig(
        hidden=hidden, init=args.init, batch_norm=args.batch_norm, dropout=args.dropout,
        optimizer=args.optimizer,
        learning_rate=args.lr if args.lr is not None else OPTIMIZERS[args.optimizer].default_lr,
        schedule=args.schedule, decay_rate=args.decay_rate, clip=args.clip, weight_decay=args.weight_decay,
        early_stopping=args.early_stopping,
        epochs=args.epochs if args.epochs is not None else (2 if args.quick else 20), batch_size=args.batch_size)
    try:
        check_config(config)
    except (TypeError, ValueError) as e:
        raise CommandError(str(e)) from e
    return config


def _load(source: str) -> Splits:
    if source != "digits" and not Path(source).is_file():
        raise CommandError(f"--data {source}: no such file (give 'digits' or the path of an .npz file)")
    try:
        with warnings.catch_warnings():
            # e.g. numpy's "overflow encountered in cast" to float32: prepare_splits reports the
            # values that became infinite (check_data) as the one error line
            warnings.simplefilter("ignore", RuntimeWarning)
            return prepare_splits(load_data(source))
    except (ValueError, OSError) as e:
        raise CommandError(f"--data {source}: {e}") from e


def _printer(n_seeds: int) -> Callable[[Progress], None]:
    """Prints a progress line after the first and last epoch, and at most every PROGRESS_SECONDS."""
    last = [-PROGRESS_SECONDS]

    def show(p: Progress) -> None:
        if p.epoch not in (1, p.epochs) and p.seconds - last[0] < PROGRESS_SECONDS:
            return
        last[0] = p.seconds
        if p.training == 0:
            _say(f"functrain train: epoch {p.epoch}/{p.epochs}: every seed has stopped early ({p.seconds:.1f} s)")
            return
        mean = "" if n_seeds == 1 else (f" (mean of {n_seeds} seeds)" if p.training == n_seeds else
                                        f" (mean of the {p.training} of {n_seeds} seeds still training)")
        _say(f"functrain train: epoch {p.epoch}/{p.epochs}: training loss {p.train_loss:.4f}, validation "
             f"accuracy {p.val_accuracy:.4f}{mean} ({p.seconds:.1f} s)")

    return show


def train(args: TrainArgs, *, stop: Callable[[], bool] | None = None) -> None:
    """``functrain train``: train, print the summary, write the history, checkpoint and curves.

    The checkpoint holds the kept train state: seeds stacked on a leading axis when there are
    several, a single state for one seed. The seeds are compiled once and trained one epoch per
    call, with a progress line on stderr as epochs complete.

    Args:
        args: the parsed options.
        stop: polled between epochs (e.g. whether Ctrl-C was pressed); ``None`` never stops.

    Raises:
        CommandError: bad options, data file, batch size for the data, or output directory or
            file (all checked before training).
        WriteError: writing an output failed (the previous outputs are left unchanged).
        Interrupted: ``stop()`` turned true: the outputs of the completed epochs were written
            (the checkpoint and history of the last completed epoch), or nothing if none completed.
        ImportError: matplotlib is missing.
    """
    from functrain.train import save_checkpoint

    config = train_config(args)
    splits = _load(args.data)
    _check_fits_data(config, splits)
    out_dir = check_outputs(args.out, TRAIN_OUTPUTS)
    _need_matplotlib()
    n_seeds = args.seeds if args.seeds is not None else 1
    _say(f"functrain train: {config.optimizer} on {splits.name} ({len(splits.x_train)} train / "
         f"{len(splits.x_val)} validation / {len(splits.x_test)} test), {n_seeds} seed"
         f"{'s' * (n_seeds != 1)} x {config.epochs} epochs, compiling and training ...")
    started = time.perf_counter()
    keys = jax.random.split(jax.random.key(args.seed), n_seeds)
    program = compile_chunked(config, splits, keys, compiler_options=_quick_options(args.quick), stop=stop)
    run = run_chunked(program, keys, stop=stop, progress=_printer(n_seeds))
    seconds = time.perf_counter() - started
    if run.output is None:
        raise Interrupted("interrupted before the first epoch completed; nothing written")
    result = run.output
    summary = run_summary(result, seconds)
    print(summary, flush=True)
    ckpt, js, png = TRAIN_OUTPUTS
    state = result.state if n_seeds > 1 else jax.tree_util.tree_map(lambda x: x[0], result.state)
    doc = history_json(result, config=config, splits=splits, source=args.data, seed=args.seed, seconds=seconds,
                       checkpoint=ckpt, interrupted_after=run.epochs_done if run.interrupted else None)
    title = f"{config.optimizer} (lr {config.learning_rate:g}, {config.schedule}) on {splits.name}: {summary}"
    written = write_outputs(out_dir, {js: lambda p: _write_json(p, doc), ckpt: lambda p: save_checkpoint(p, state),
                                      png: lambda p: plot_run(result, p, title=title)})
    files = f"{', '.join(map(str, written[:-1]))} and {written[-1]}"
    if run.interrupted:
        raise Interrupted(f"interrupted after epoch {run.epochs_done} of {config.epochs}; wrote {files} of the "
                          "completed epochs")
    _say(f"functrain train: wrote {files}")
