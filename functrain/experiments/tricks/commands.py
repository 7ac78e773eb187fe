"""What ``functrain tricks`` and ``functrain train`` do once their arguments are parsed.

:func:`tricks` runs the trick table, prints it and writes ``tricks.png``, ``tricks.md`` and
``tricks.json``; :func:`train` prints the model summary, trains one configuration and writes
``history.json``, ``checkpoint.ckpt`` and ``curves.png`` (``functrain lr-find`` is in
:mod:`~functrain.experiments.tricks.lr_range`). Everything that can be checked is checked before any
training: the options, the data (finite features, labels), the batch size against the data, and
the output files (:func:`~functrain.experiments.tricks.outputs.check_outputs`, which creates
nothing, so a failing check leaves no empty output directory behind); a problem raises
:class:`CommandError`. The outputs are then written all-or-nothing
(:func:`~functrain.experiments.tricks.outputs.write_outputs`; a failure raises
:class:`WriteError`). Both commands take ``stop``, polled between epochs (Ctrl-C, see
:mod:`functrain.experiments.interrupts`): :func:`train` then writes the completed epochs' outputs
and raises :class:`~functrain.experiments.interrupts.Interrupted`, :func:`tricks` raises it and
writes nothing.

Example:
    >>> from functrain.experiments.tricks import commands
    >>> commands.tricks_command_line(commands.TricksArgs(quick=True))
    'functrain tricks --quick'
    >>> commands.TrainArgs().optimizer, commands.TrainArgs(seeds=3).seeds
    ('adam', 3)
"""

from __future__ import annotations

import dataclasses

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

from functrain import _tree, layers
from functrain.experiments.interrupts import Interrupted
from functrain.experiments.tricks.chunks import Progress, compile_chunked, run_chunked
from functrain.experiments.tricks.config import OPTIMIZERS, RunConfig, check_config
from functrain.experiments.tricks.figures import plot_run, plot_tricks
from functrain.experiments.tricks.models import build_model, check_model
from functrain.experiments.tricks.outputs import CommandError, WriteError, check_outputs, write_outputs
from functrain.experiments.tricks.report import (
    Setup,
    format_table,
    history_json,
    markdown_report,
    results_json,
    run_summary,
    totals,
)
from functrain.experiments.tricks.rows import CANON_CAPTION, CLASSIC_CAPTION, DEFAULT_HIDDEN, DEFAULT_SGD_LR, Section, \
    canon_rows, trick_rows
from functrain.experiments.tricks.run import CompilerOptions, max_epochs
from functrain.experiments.tricks.splits import DATA_SOURCES, DEFAULT_LABEL_NOISE, Splits, load_data, prepare_splits
from functrain.experiments.tricks.table import run_tricks

__all__ = ["DEFAULT_LABEL_NOISE", "PRNGS", "TRAIN_OUTPUTS", "TRICKS_OUTPUTS", "CommandError", "TrainArgs", "TricksArgs",
           "WriteError",
           "check_fits_data", "load_splits", "need_matplotlib", "train", "train_config", "tricks", "tricks_command_line",
           "write_json"]

PROG = "functrain"
QUICK_HIDDEN = {"mlp": (32, 32), "cnn": (8, 16), "resnet": (8, 8)}
FULL_HIDDEN = {"mlp": (256, 256, 256), "cnn": (32, 64), "resnet": (16, 16)}
QUICK_SGD_LR = 0.1
"""The SGD rows' learning rate with ``--quick`` (2 epochs: the default 0.01 would barely move the tiny network)."""
TRICKS_HIDDEN = {**FULL_HIDDEN, "mlp": DEFAULT_HIDDEN}
"""``functrain tricks``'s default widths: its MLP is deeper than ``functrain train``'s (six layers of 64)."""
PRNGS = {"threefry": "threefry2x32", "rbg": "rbg", "unsafe_rbg": "unsafe_rbg"}
"""``--prng`` names -> JAX PRNG implementations of the run keys (the data splits always use threefry)."""
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
    model: str = "mlp"
    canon: bool = False
    data: str = "digits"
    prng: str = "threefry"
    label_noise: float = DEFAULT_LABEL_NOISE


@dataclasses.dataclass(frozen=True)
class TrainArgs:
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
    model: str = "mlp"
    label_smoothing: float = 0.0
    mixup: float = 0.0
    warmup: float = 0.0
    drop_path: float = 0.0
    sam: float = 0.0
    ema: float = 0.0
    zero_init_bn: bool = False
    prng: str = "threefry"


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def need_matplotlib() -> None:
    """Raise ``ImportError`` (exit status 1) before any work when matplotlib is missing."""
    if importlib.util.find_spec("matplotlib") is None:
        raise ImportError("the plots need matplotlib, an optional dependency: pip install 'functrain[examples]'")


def _quick_options(quick: bool) -> CompilerOptions:
    # --quick trades run speed for compile speed (the runs are tiny): about 3x faster to compile.
    return {"xla_backend_optimization_level": 0} if quick else None


def _machine() -> str:
    return f"{platform.machine()}, {os.cpu_count()} CPU cores, JAX {jax.__version__} on {jax.default_backend()}"


def write_json(path: Path, doc: dict[str, Any]) -> None:
    """Write ``doc`` as indented JSON (no NaN: missing values are ``null``)."""
    path.write_text(json.dumps(doc, indent=1, allow_nan=False) + "\n", encoding="utf-8")


def check_fits_data(config: RunConfig, splits: Splits) -> None:
    """The flags that depend on the data: the batch size (never clamped), the epochs (int32 steps), the model.

    Raises:
        CommandError: naming the flag.
    """
    n, batch_size, epochs = len(splits.x_train), config.batch_size, config.epochs
    if batch_size > n:
        raise CommandError(f"argument --batch-size: must be an int in [1, {n}] (at most the {n} training "
                           f"examples of {splits.name}), got '{batch_size}'")
    most = max_epochs(config, splits)
    if epochs > most:
        raise CommandError(f"argument --epochs: must be an int in [1, {most}] (epochs x {n // batch_size} steps "
                           f"per epoch must fit the int32 step counter), got '{epochs}'")
    if config.model != "mlp" and splits.image_shape is None:
        raise CommandError(f"--model {config.model}: needs images, and {splits.name} holds flat features (give "
                           "digits, mnist, fashion-mnist or an .npz file whose x has shape (n, H, W) or (n, H, W, C))")
    try:
        check_model(config, splits.num_classes, int(splits.x_train.shape[1]), splits.image_shape)
    except ValueError as e:
        raise CommandError(f"--model {config.model} --hidden {','.join(map(str, config.hidden))}: does not fit "
                           f"{splits.name}'s {'x'.join(map(str, splits.image_shape or ()))} images: {e}") from e


def tricks_command_line(args: TricksArgs) -> str:
    """The command line that reproduces these results (the output directory left out)."""
    parts = [PROG, "tricks"] + (["--quick"] if args.quick else []) + (["--canon"] if args.canon else [])
    for flag, value in (("--model", None if args.model == "mlp" else args.model),
                        ("--data", None if args.data == "digits" else args.data),
                        ("--seeds", args.seeds), ("--epochs", args.epochs), ("--seed", args.seed or None),
                        ("--batch-size", None if args.batch_size == 64 else args.batch_size),
                        ("--hidden", None if args.hidden is None else ",".join(map(str, args.hidden))),
                        ("--prng", None if args.prng == "threefry" else args.prng),
                        ("--label-noise",
                         None if args.label_noise == DEFAULT_LABEL_NOISE else f"{args.label_noise:g}")):
        if value is not None:
            parts += [flag, str(value)]
    return " ".join(parts)


def _sections(args: TricksArgs, seeds: int, epochs: int, hidden: tuple[int, ...]) -> list[Section]:
    lr = QUICK_SGD_LR if args.quick else DEFAULT_SGD_LR
    sections = [Section("classic", CLASSIC_CAPTION, trick_rows(epochs=epochs, hidden=hidden, batch_size=args.batch_size,
                                                               model=args.model, learning_rate=lr), ensemble=True)]
    if args.canon:
        canon_hidden = QUICK_HIDDEN["resnet"] if args.quick else FULL_HIDDEN["resnet"]
        sections.append(Section("canon", CANON_CAPTION, canon_rows(epochs=epochs, hidden=canon_hidden,
                                                                   batch_size=args.batch_size)))
    return sections


def _network(config: RunConfig, splits: Splits) -> str:
    """``"MLP 64-256-10"``, ``"convnet 32-64 on 8x8x1"``, ``"ResNet 16-16 on 8x8x1"``."""
    widths = "-".join(map(str, config.hidden))
    if config.model == "mlp":
        return f"MLP {splits.x_train.shape[1]}-{widths}-{splits.num_classes}"
    kind = "the lesson's convnet" if config.model == "cnn" else "small ResNet"
    return f"{kind} (channels {widths}) on {'x'.join(map(str, splits.image_shape or ()))} images"


def tricks(args: TricksArgs, *, stop: Callable[[], bool] | None = None) -> None:
    """``functrain tricks``: run the table, print it, write the figure, Markdown and JSON files.

    Args:
        args: the parsed options.
        stop: polled between epochs (e.g. whether Ctrl-C was pressed); ``None`` never stops.

    Raises:
        CommandError: a batch size above the training examples, a network that does not fit the
            data, data that cannot be loaded, or an output directory or file that cannot be
            written (checked before anything runs).
        WriteError: writing an output failed (the previous outputs are left unchanged).
        Interrupted: ``stop()`` turned true; nothing is written.
        ImportError: matplotlib is missing.
    """
    seeds = args.seeds if args.seeds is not None else (2 if args.quick else 5)
    epochs = args.epochs if args.epochs is not None else (2 if args.quick else 30)
    hidden = args.hidden if args.hidden is not None else (QUICK_HIDDEN if args.quick else TRICKS_HIDDEN)[args.model]
    splits = load_splits(args.data, images=args.model != "mlp" or args.canon, per_feature=args.model == "mlp",
                         label_noise=args.label_noise)
    sections = _sections(args, seeds, epochs, hidden)
    for section in sections:
        for _, config in section.rows:
            check_fits_data(config, splits)
    out = check_outputs(args.out, TRICKS_OUTPUTS)
    need_matplotlib()
    started, cpu_started = time.perf_counter(), time.process_time()
    net = "; ".join(dict.fromkeys(_network(section.rows[0][1], splits) for section in sections))  # canon: + ResNet
    _say(f"functrain tricks: {net} on {splits.name}, {seeds} seeds per row, {epochs} epochs, batch "
         f"{args.batch_size}; rows that differ only in hyperparameter values share compiled programs, run one "
         "epoch per call")
    results = run_tricks(seeds=seeds, epochs=epochs, batch_size=args.batch_size, seed=args.seed, splits=splits,
                         log=sys.stderr, compiler_options=_quick_options(args.quick), stop=stop, sections=sections,
                         key_impl=PRNGS[args.prng])
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    print(format_table(results), flush=True)
    png, md, js = TRICKS_OUTPUTS
    title = (f"The training tricks: {net} on {splits.name} ({len(splits.x_train)} train / "
             f"{len(splits.x_val)} validation / {len(splits.x_test)} test), {seeds} seeds, up to {epochs} epochs")
    setup = Setup(splits=splits, sections=sections, network=net, source=args.data, seeds=seeds, epochs=epochs,
                  batch_size=args.batch_size, seed=args.seed, prng=args.prng, seconds=wall, cpu_seconds=cpu,
                  machine=_machine(), command=tricks_command_line(args), cache=_cache_directory(),
                  label_noise=args.label_noise)
    report = markdown_report(results, setup, image=png)
    doc = results_json(results, setup)
    written = write_outputs(out, {png: lambda p: plot_tricks(results, p, title=title),
                                  md: lambda p: p.write_text(report, encoding="utf-8"),
                                  js: lambda p: write_json(p, doc)})
    sums = totals(results)
    _say(f"functrain tricks: {wall:.0f} s in all ({cpu:.0f} s of CPU); compiling {sums['compile_seconds']:.1f} s "
         f"({sums['programs']} sets of programs for {sums['rows']} rows; compilation cache: "
         f"{_cache_directory() or 'off'}), training {sums['train_seconds']:.1f} s; wrote "
         f"{', '.join(map(str, written[:-1]))} and {written[-1]}")


def _cache_directory() -> str | None:
    """Where JAX keeps compiled programs in this process (``None``: no persistent cache)."""
    directory = getattr(jax.config, "jax_compilation_cache_dir", None)
    enabled = getattr(jax.config, "jax_enable_compilation_cache", True)
    return str(directory) if directory and enabled else None


def train_config(args: TrainArgs) -> RunConfig:
    """The :class:`RunConfig` of ``functrain train``'s options (defaults filled in, checked).

    Raises:
        CommandError: an invalid combination (see ``check_config``).
    """
    hidden = args.hidden if args.hidden is not None else (QUICK_HIDDEN if args.quick else FULL_HIDDEN)[args.model]
    config = RunConfig(
        hidden=hidden, init=args.init, batch_norm=args.batch_norm, dropout=args.dropout,
        optimizer=args.optimizer,
        learning_rate=args.lr if args.lr is not None else OPTIMIZERS[args.optimizer].default_lr,
        schedule=args.schedule, decay_rate=args.decay_rate, clip=args.clip, weight_decay=args.weight_decay,
        early_stopping=args.early_stopping,
        epochs=args.epochs if args.epochs is not None else (2 if args.quick else 20), batch_size=args.batch_size,
        model=args.model, label_smoothing=args.label_smoothing, mixup=args.mixup, warmup=args.warmup,
        drop_path=args.drop_path, sam=args.sam, ema=args.ema, zero_init_bn=args.zero_init_bn)
    try:
        check_config(config)
    except (TypeError, ValueError) as e:
        raise CommandError(str(e)) from e
    return config


def load_splits(source: str, *, images: bool = False, per_feature: bool = True, label_noise: float = 0.0) -> Splits:
    """The data of ``--data source`` (a name of ``DATA_SOURCES`` or an ``.npz`` path), split and scaled.

    Args:
        source: the ``--data`` value.
        images: load the named data sets as images (the convolutional models need them).
        per_feature: min-max scale each feature on its own (else one range for all).
        label_noise: the fraction of training and validation labels replaced by other classes
            (``prepare_splits``; the test labels stay clean).

    Raises:
        CommandError: a missing or malformed file, bad data, or a failed download (one line).
    """
    if source not in DATA_SOURCES and not Path(source).is_file():
        raise CommandError(f"--data {source}: no such file (give {', '.join(DATA_SOURCES)} or the path of an "
                           ".npz file)")
    try:
        with warnings.catch_warnings():
            # e.g. numpy's "overflow encountered in cast" to float32: prepare_splits reports the
            # values that became infinite (check_data) as the one error line
            warnings.simplefilter("ignore", RuntimeWarning)
            return prepare_splits(load_data(source, as_images=images), per_feature=per_feature,
                                  label_noise=label_noise)
    except (ValueError, OSError) as e:  # DownloadError is an OSError naming the URLs tried
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
    """``functrain train``: print the model, train, print the result, write the history, checkpoint and curves.

    The model summary (``layers.summary``: each layer's output shape and parameter count) is
    printed first, the result line last. The checkpoint holds the kept train state: seeds stacked
    on a leading axis when there are several, a single state for one seed. The seeds are compiled once and trained one epoch per
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
    splits = load_splits(args.data, images=config.model != "mlp", per_feature=config.model == "mlp")
    check_fits_data(config, splits)
    out_dir = check_outputs(args.out, TRAIN_OUTPUTS)
    need_matplotlib()
    n_seeds = args.seeds if args.seeds is not None else 1
    print(layers.summary(build_model(config, splits.num_classes, splits.image_shape),
                         (-1, int(splits.x_train.shape[1]))), flush=True)
    _say(f"functrain train: {config.optimizer} on {splits.name} ({len(splits.x_train)} train / "
         f"{len(splits.x_val)} validation / {len(splits.x_test)} test), {n_seeds} seed"
         f"{'s' * (n_seeds != 1)} x {config.epochs} epochs, compiling and training ...")
    started = time.perf_counter()
    keys = jax.random.split(jax.random.key(args.seed, impl=PRNGS[args.prng]), n_seeds)
    program = compile_chunked(config, splits, keys, compiler_options=_quick_options(args.quick), stop=stop)
    run = run_chunked(program, keys, stop=stop, progress=_printer(n_seeds))
    seconds = time.perf_counter() - started
    if run.output is None:
        raise Interrupted("interrupted before the first epoch completed; nothing written")
    result = run.output
    summary = run_summary(result, seconds)
    print(summary, flush=True)
    ckpt, js, png = TRAIN_OUTPUTS
    state = result.state if n_seeds > 1 else _tree.tree_map(lambda x: x[0], result.state)
    doc = history_json(result, config=config, splits=splits, source=args.data, seed=args.seed, seconds=seconds,
                       checkpoint=ckpt, interrupted_after=run.epochs_done if run.interrupted else None)
    title = f"{config.optimizer} (lr {config.learning_rate:g}, {config.schedule}) on {splits.name}: {summary}"
    written = write_outputs(out_dir, {js: lambda p: write_json(p, doc), ckpt: lambda p: save_checkpoint(p, state),
                                      png: lambda p: plot_run(result, p, title=title)})
    files = f"{', '.join(map(str, written[:-1]))} and {written[-1]}"
    if run.interrupted:
        raise Interrupted(f"interrupted after epoch {run.epochs_done} of {config.epochs}; wrote {files} of the "
                          "completed epochs")
    _say(f"functrain train: wrote {files}")
