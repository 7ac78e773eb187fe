"""What ``functrain tricks`` and ``functrain train`` do once their arguments are parsed.

:func:`tricks` runs the trick table, prints it and writes ``tricks.png``, ``tricks.md`` and
``tricks.json``; :func:`train` trains one configuration and writes ``history.json``,
``checkpoint.ckpt`` and ``curves.png``. A bad output directory or data file raises
:class:`CommandError`, which the command line reports as one line.
"""

from __future__ import annotations

import importlib.util
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any, NamedTuple

import jax
import numpy as np

from functrain.experiments.tricks.config import OPTIMIZERS, RunConfig, check_config
from functrain.experiments.tricks.figures import plot_run, plot_tricks
from functrain.experiments.tricks.report import (
    format_table,
    history_json,
    markdown_report,
    results_json,
    run_summary,
)
from functrain.experiments.tricks.run import CompilerOptions, RunOutput, make_run, run_many, run_one
from functrain.experiments.tricks.splits import Splits, load_data, prepare_splits
from functrain.experiments.tricks.table import run_tricks

__all__ = ["CommandError", "TrainArgs", "TricksArgs", "train", "train_config", "tricks", "tricks_command_line"]

PROG = "functrain"
QUICK_HIDDEN = (32, 32)
FULL_HIDDEN = (256, 256, 256)


class CommandError(Exception):
    """A bad value found after parsing (an output directory, a data file): one line, exit status 2."""


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


def _out_dir(path: str) -> Path:
    out = Path(path)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise CommandError(f"--out {path}: cannot create the output directory ({e.strerror or e})") from e
    if not os.access(out, os.W_OK):
        raise CommandError(f"--out {path}: the output directory is not writable")
    return out


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


def tricks_command_line(args: TricksArgs) -> str:
    """The command line that reproduces these results (the output directory left out)."""
    parts = [PROG, "tricks"] + (["--quick"] if args.quick else [])
    for flag, value in (("--seeds", args.seeds), ("--epochs", args.epochs), ("--seed", args.seed or None),
                        ("--batch-size", None if args.batch_size == 64 else args.batch_size),
                        ("--hidden", None if args.hidden is None else ",".join(map(str, args.hidden)))):
        if value is not None:
            parts += [flag, str(value)]
    return " ".join(parts)


def tricks(args: TricksArgs) -> None:
    """``functrain tricks``: run the table, print it, write the figure, Markdown and JSON files.

    Raises:
        CommandError: the output directory cannot be created or written.
        ImportError: matplotlib is missing.
    """
    seeds = args.seeds if args.seeds is not None else (2 if args.quick else 5)
    epochs = args.epochs if args.epochs is not None else (2 if args.quick else 30)
    hidden = args.hidden if args.hidden is not None else (QUICK_HIDDEN if args.quick else FULL_HIDDEN)
    out = _out_dir(args.out)
    _need_matplotlib()
    started, cpu_started = time.perf_counter(), time.process_time()
    net = f"MLP 64-{'-'.join(map(str, hidden))}-10"
    _say(f"functrain tricks: {net} on the digits, {seeds} seeds per row, {epochs} epochs, batch "
         f"{args.batch_size}; each row is one compiled program")
    splits = prepare_splits(load_data("digits"))
    results = run_tricks(seeds=seeds, epochs=epochs, hidden=hidden, batch_size=args.batch_size, seed=args.seed,
                         splits=splits, log=sys.stderr, compiler_options=_quick_options(args.quick))
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    print(format_table(results), flush=True)
    png, md, js = out / "tricks.png", out / "tricks.md", out / "tricks.json"
    plot_tricks(results, png, title=(
        f"The training tricks added one at a time: {net} on the digits ({len(splits.x_train)} train / "
        f"{len(splits.x_val)} validation / {len(splits.x_test)} test), {seeds} seeds, up to {epochs} epochs"))
    md.write_text(markdown_report(results, splits=splits, seeds=seeds, epochs=epochs, hidden=hidden,
                                  batch_size=args.batch_size, seconds=wall, cpu_seconds=cpu, image=png.name,
                                  machine=_machine(), command=tricks_command_line(args)), encoding="utf-8")
    _write_json(js, results_json(results, seeds=seeds, epochs=epochs, hidden=hidden,
                                 batch_size=args.batch_size, seed=args.seed))
    _say(f"functrain tricks: {wall:.0f} s in all ({cpu:.0f} s of CPU); wrote {png}, {md} and {js}")


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
        return prepare_splits(load_data(source))
    except (ValueError, OSError) as e:
        raise CommandError(f"--data {source}: {e}") from e


def _train_seeds(config: RunConfig, splits: Splits, n_seeds: int, seed: int, quick: bool) -> RunOutput:
    """Every seed's run, stacked on a leading seed axis (also for one seed)."""
    run, _ = make_run(config, splits)
    keys = jax.random.split(jax.random.key(seed), n_seeds)
    if n_seeds > 1:
        return run_many(run, keys, compiler_options=_quick_options(quick))
    single = run_one(run, keys[0], compiler_options=_quick_options(quick))
    stacked: RunOutput = jax.tree_util.tree_map(lambda x: np.asarray(x)[None], single)
    return stacked


def train(args: TrainArgs) -> None:
    """``functrain train``: train, print the summary, write the history, checkpoint and curves.

    The checkpoint holds the kept train state: seeds stacked on a leading axis when there are
    several, a single state for one seed.

    Raises:
        CommandError: bad options, output directory or data file.
        ImportError: matplotlib is missing.
    """
    from functrain.train import save_checkpoint

    config = train_config(args)
    out_dir = _out_dir(args.out)
    _need_matplotlib()
    splits = _load(args.data)
    n_seeds = args.seeds if args.seeds is not None else 1
    _say(f"functrain train: {config.optimizer} on {splits.name} ({len(splits.x_train)} train / "
         f"{len(splits.x_val)} validation / {len(splits.x_test)} test), {n_seeds} seed"
         f"{'s' * (n_seeds != 1)} x {config.epochs} epochs, compiling and training ...")
    started = time.perf_counter()
    result = _train_seeds(config, splits, n_seeds, args.seed, args.quick)
    seconds = time.perf_counter() - started
    summary = run_summary(result, seconds)
    print(summary, flush=True)
    ckpt, js, png = out_dir / "checkpoint.ckpt", out_dir / "history.json", out_dir / "curves.png"
    state = result.state if n_seeds > 1 else jax.tree_util.tree_map(lambda x: x[0], result.state)
    save_checkpoint(ckpt, state)
    _write_json(js, history_json(result, config=config, splits=splits, source=args.data, seed=args.seed,
                                 seconds=seconds, checkpoint=ckpt.name))
    plot_run(result, png, title=f"{config.optimizer} (lr {config.learning_rate:g}, {config.schedule}) "
                                f"on {splits.name}: {summary}")
    _say(f"functrain train: wrote {js}, {ckpt} and {png}")
