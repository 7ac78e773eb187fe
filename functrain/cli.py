"""The ``functrain`` command: ``functrain tricks`` and ``functrain train``.

``functrain tricks`` trains the same MLP on the embedded digits with the classic tricks added one
at a time (see :func:`functrain._tricks.trick_rows`), every row over several seeds in one vmapped,
compiled program, prints the table and writes ``tricks.png``, ``tricks.md`` and ``tricks.json``.

``functrain train`` trains one configuration given by flags and writes ``history.json`` (per-epoch
metrics of every seed), ``checkpoint.ckpt`` (the kept train state(s), seeds stacked on a leading
axis when ``--seeds > 1``) and ``curves.png``.

Bad flags or values print one line ``functrain: error: ...`` on stderr and exit with status 2.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import platform
import re
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

import jax
import numpy as np

from functrain import _tricks
from functrain._tricks import INITIALIZERS, OPTIMIZERS, SCHEDULES, RunConfig

__all__ = ["build_parser", "main"]

PROG = "functrain"


class UsageError(Exception):
    """A bad command-line value found after parsing (reported as one line, exit status 2)."""


class _Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose usage errors are a single line on stderr (exit status 2).

    It also reads ``-1e-4`` as a (negative) value rather than an option, as Python >= 3.13 does,
    so that ``--weight-decay -1e-4`` reports the negative value instead of a missing argument.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._negative_number_matcher = re.compile(r"^-\d+$|^-\d*\.\d+$|^-(\d+\.?\d*|\.\d+)[eE][-+]?\d+$")

    def error(self, message: str) -> NoReturn:
        """Print ``functrain: error: <message>`` and exit with status 2 (no usage block)."""
        self.exit(2, f"{PROG}: error: {_one_line(message)} (see '{self.prog} --help')\n")


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


# ----------------------------------------------------------------------------------------------
# Argument types (each raises ArgumentTypeError, which argparse reports as one line)


def _number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def _positive_float(text: str) -> float:
    value = _number(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def _nonnegative_float(text: str) -> float:
    value = _number(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def _rate(text: str) -> float:
    value = _number(text)
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"must be in [0, 1), got {text}")
    return value


def _decay_rate(text: str) -> float:
    value = _number(text)
    if not 0.0 < value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be in (0, 1], got {text}")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {text}")
    return value


def _nonnegative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def _widths(text: str) -> tuple[int, ...]:
    parts = [p for p in text.replace(" ", ",").split(",") if p]
    try:
        widths = tuple(int(p) for p in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated layer widths like 256,256, got {text!r}") from None
    if not widths or any(w < 1 for w in widths):
        raise argparse.ArgumentTypeError(f"expected one or more positive layer widths, got {text!r}")
    return widths


def build_parser() -> argparse.ArgumentParser:
    """The command-line parser of ``functrain`` (subcommands ``tricks`` and ``train``)."""
    parser = _Parser(prog=PROG, description="The classic deep-learning training tricks, measured.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    tricks = sub.add_parser(
        "tricks", help="train one MLP on the digits with the tricks added one at a time",
        description="Train the same MLP on the embedded handwritten digits with the classic tricks "
                    "added one at a time (cumulatively), each row over several seeds in one vmapped "
                    "program; print the table and write tricks.png, tricks.md and tricks.json.")
    tricks.add_argument("--seeds", type=_positive_int, default=None,
                        help="seeds per row, trained at once (default 5; 2 with --quick)")
    tricks.add_argument("--epochs", type=_positive_int, default=None,
                        help="(maximum) epochs per run (default 30; 2 with --quick)")
    tricks.add_argument("--hidden", type=_widths, default=None, metavar="W1,W2,...",
                        help="hidden-layer widths (default 256,256,256; 32,32 with --quick)")
    tricks.add_argument("--batch-size", type=_positive_int, default=64, help="examples per step (default 64)")
    tricks.add_argument("--seed", type=_nonnegative_int, default=0, help="base seed of the runs (default 0)")
    tricks.add_argument("--out", default=".", metavar="DIR", help="output directory (default: current)")
    tricks.add_argument("--quick", action="store_true",
                        help="a smoke test in seconds: tiny network, 2 seeds, 2 epochs, and programs "
                             "compiled with fewer XLA optimizations")

    train = sub.add_parser(
        "train", help="train one configuration given by flags",
        description="Train one MLP configuration (optionally over several vmapped seeds) and write "
                    "history.json, checkpoint.ckpt and curves.png.")
    train.add_argument("--data", default="digits", metavar="digits|PATH.npz",
                       help="the embedded digits, or an .npz file with x and y (split 80/20), or "
                            "x_train, y_train, x_test, y_test (default digits)")
    train.add_argument("--optimizer", choices=OPTIMIZERS, default="adam", help="(default adam)")
    train.add_argument("--lr", type=_positive_float, default=None,
                       help="learning rate (default 1e-3 for adam/adamw/rmsprop, 1e-2 for adagrad, "
                            "0.1 otherwise)")
    train.add_argument("--schedule", choices=SCHEDULES, default="constant",
                       help="learning-rate schedule (default constant)")
    train.add_argument("--decay-rate", type=_decay_rate, default=0.98,
                       help="per-epoch factor of --schedule exponential (default 0.98)")
    train.add_argument("--init", choices=tuple(INITIALIZERS), default="he",
                       help="kernel initializer (default he)")
    train.add_argument("--batch-norm", action="store_true", help="batch norm after every hidden Dense")
    train.add_argument("--dropout", type=_rate, default=0.0, metavar="RATE",
                       help="dropout rate after every hidden ReLU, in [0, 1) (default 0)")
    train.add_argument("--clip", type=_positive_float, default=None, metavar="THETA",
                       help="clip gradients to global norm THETA")
    train.add_argument("--weight-decay", type=_nonnegative_float, default=0.0,
                       help="decoupled decay for adamw, L2 penalty on the kernels otherwise (default 0)")
    train.add_argument("--early-stopping", type=_positive_int, default=None, metavar="PATIENCE",
                       help="stop after PATIENCE epochs without a lower validation loss; keep the best")
    train.add_argument("--seeds", type=_positive_int, default=None, help="seeds, trained at once (default 1)")
    train.add_argument("--seed", type=_nonnegative_int, default=0, help="base seed (default 0)")
    train.add_argument("--epochs", type=_positive_int, default=None, help="(maximum) epochs (default 20)")
    train.add_argument("--batch-size", type=_positive_int, default=64, help="examples per step (default 64)")
    train.add_argument("--hidden", type=_widths, default=None, metavar="W1,W2,...",
                       help="hidden-layer widths (default 256,256,256)")
    train.add_argument("--out", default="functrain-run", metavar="DIR",
                       help="output directory (default functrain-run)")
    train.add_argument("--quick", action="store_true",
                       help="a smoke test in seconds: tiny network, 2 epochs, fewer XLA optimizations")
    return parser


# ----------------------------------------------------------------------------------------------
# Helpers


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _out_dir(path: str) -> Path:
    out = Path(path)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UsageError(f"--out {path}: cannot create the output directory ({e.strerror or e})") from e
    if not os.access(out, os.W_OK):
        raise UsageError(f"--out {path}: the output directory is not writable")
    return out


def _need_matplotlib() -> None:
    if importlib.util.find_spec("matplotlib") is None:
        raise ImportError("the plots need matplotlib, an optional dependency: pip install 'functrain[examples]'")


def _quick_options(quick: bool) -> dict[str, Any] | None:
    # --quick trades run speed for compile speed (the runs are tiny): about 3x faster to compile.
    return {"xla_backend_optimization_level": 0} if quick else None


def _finite_or_none(x: float) -> float | None:
    return x if math.isfinite(x) else None


# ----------------------------------------------------------------------------------------------
# functrain tricks


def _tricks_command(args: argparse.Namespace) -> int:
    quick: bool = args.quick
    seeds: int = args.seeds if args.seeds is not None else (2 if quick else 5)
    epochs: int = args.epochs if args.epochs is not None else (2 if quick else 30)
    hidden: tuple[int, ...] = args.hidden if args.hidden is not None else ((32, 32) if quick else (256, 256, 256))
    out = _out_dir(args.out)
    _need_matplotlib()
    started = time.perf_counter()
    cpu_started = time.process_time()
    _say(f"functrain tricks: MLP 64-{'-'.join(map(str, hidden))}-10 on the digits, {seeds} seeds per "
         f"row, {epochs} epochs, batch {args.batch_size}; each row is one compiled program")
    splits = _tricks.prepare_splits(_tricks.load_data("digits"))
    results = _tricks.run_tricks(seeds=seeds, epochs=epochs, hidden=hidden, batch_size=args.batch_size,
                                 seed=args.seed, splits=splits, log=sys.stderr,
                                 compiler_options=_quick_options(quick))
    wall = time.perf_counter() - started
    cpu = time.process_time() - cpu_started
    table = _tricks.format_table(results)
    print(table, flush=True)
    title = (f"The training tricks added one at a time: MLP 64-{'-'.join(map(str, hidden))}-10 on the "
             f"digits ({len(splits.x_train)} train / {len(splits.x_val)} validation / "
             f"{len(splits.x_test)} test), {seeds} seeds, up to {epochs} epochs")
    png = out / "tricks.png"
    _tricks.plot_tricks(results, png, title=title)
    md = out / "tricks.md"
    md.write_text(_tricks.markdown_report(results, splits=splits, seeds=seeds, epochs=epochs, hidden=hidden,
                                          batch_size=args.batch_size, seconds=wall, cpu_seconds=cpu,
                                          image=png.name, machine=_machine(), command=_command(args)),
                  encoding="utf-8")
    js = out / "tricks.json"
    js.write_text(json.dumps(_tricks.results_json(results, seeds=seeds, epochs=epochs, hidden=hidden,
                                                  batch_size=args.batch_size, seed=args.seed),
                             indent=1, allow_nan=False) + "\n", encoding="utf-8")
    _say(f"functrain tricks: {wall:.0f} s in all ({cpu:.0f} s of CPU); wrote {png}, {md} and {js}")
    return 0


def _command(args: argparse.Namespace) -> str:
    """The command line that reproduces these results (the output directory left out)."""
    parts = [PROG, "tricks"]
    if args.quick:
        parts.append("--quick")
    for flag, value in (("--seeds", args.seeds), ("--epochs", args.epochs), ("--seed", args.seed or None),
                        ("--batch-size", None if args.batch_size == 64 else args.batch_size),
                        ("--hidden", None if args.hidden is None else ",".join(map(str, args.hidden)))):
        if value is not None:
            parts += [flag, str(value)]
    return " ".join(parts)


def _machine() -> str:
    return f"{platform.machine()}, {os.cpu_count()} CPU cores, JAX {jax.__version__} on {jax.default_backend()}"


# ----------------------------------------------------------------------------------------------
# functrain train


def _default_lr(optimizer: str) -> float:
    if optimizer in ("adam", "adamw", "rmsprop"):
        return 1e-3
    if optimizer == "adagrad":
        return 1e-2
    return 0.1


def _config(args: argparse.Namespace) -> RunConfig:
    quick: bool = args.quick
    hidden: tuple[int, ...] = args.hidden if args.hidden is not None else ((32, 32) if quick else (256, 256, 256))
    config = RunConfig(
        hidden=hidden, init=args.init, batch_norm=args.batch_norm, dropout=args.dropout,
        optimizer=args.optimizer, learning_rate=args.lr if args.lr is not None else _default_lr(args.optimizer),
        schedule=args.schedule, decay_rate=args.decay_rate, clip=args.clip, weight_decay=args.weight_decay,
        early_stopping=args.early_stopping,
        epochs=args.epochs if args.epochs is not None else (2 if quick else 20), batch_size=args.batch_size)
    try:
        _tricks.check_config(config)
    except ValueError as e:
        raise UsageError(str(e)) from e
    return config


def _load(source: str) -> _tricks.Splits:
    if source != "digits" and not Path(source).is_file():
        raise UsageError(f"--data {source}: no such file (give 'digits' or the path of an .npz file)")
    try:
        return _tricks.prepare_splits(_tricks.load_data(source))
    except (ValueError, OSError) as e:
        raise UsageError(f"--data {source}: {e}") from e


def _history(out: _tricks.RunOutput, n_seeds: int, seed: int) -> list[dict[str, Any]]:
    runs = []
    for s in range(n_seeds):
        active = np.asarray(out.active[s], bool)
        epochs = []
        for e in np.flatnonzero(active):
            epochs.append({"epoch": int(e) + 1, **{name: _finite_or_none(float(getattr(out, name)[s, e]))
                                                   for name in ("train_loss", "train_accuracy", "val_loss",
                                                                "val_accuracy")}})
        runs.append({"seed": f"split(key({seed}), {n_seeds})[{s}]",
                     "epochs_run": int(out.epochs_run[s]),
                     "diverged": not bool(np.asarray(out.finite[s])[active][-1]),
                     "test_loss": _finite_or_none(float(out.test_loss[s])),
                     "test_accuracy": float(out.test_accuracy[s]), "epochs": epochs})
    return runs


def _train_command(args: argparse.Namespace) -> int:
    config = _config(args)
    out_dir = _out_dir(args.out)
    _need_matplotlib()
    splits = _load(args.data)
    n_seeds: int = args.seeds if args.seeds is not None else 1
    quick: bool = args.quick
    _say(f"functrain train: {config.optimizer} on {splits.name} ({len(splits.x_train)} train / "
         f"{len(splits.x_val)} validation / {len(splits.x_test)} test), {n_seeds} seed"
         f"{'s' * (n_seeds != 1)} x {config.epochs} epochs, compiling and training ...")
    started = time.perf_counter()
    run, _ = _tricks.make_run(config, splits)
    keys = jax.random.split(jax.random.key(args.seed), n_seeds)
    options = _quick_options(quick)
    if n_seeds > 1:
        result = _tricks.run_many(run, keys, compiler_options=options)
        state = result.state
    else:
        single = _tricks.run_one(run, keys[0], compiler_options=options)
        state = single.state
        result = jax.tree_util.tree_map(lambda x: np.asarray(x)[None], single)
    seconds = time.perf_counter() - started
    history = _history(result, n_seeds, args.seed)
    acc = np.asarray(result.test_accuracy, np.float64)
    diverged = sum(r["diverged"] for r in history)
    summary = (f"test accuracy {acc.mean():.4f}" + (f" ± {acc.std():.4f} over {n_seeds} seeds" if n_seeds > 1 else "")
               + f", epochs run {np.mean([r['epochs_run'] for r in history]):.1f}"
               + (f", {diverged} diverged" if diverged else "") + f" ({seconds:.1f} s)")
    print(summary, flush=True)

    from functrain.train import save_checkpoint

    ckpt = out_dir / "checkpoint.ckpt"
    save_checkpoint(ckpt, state)
    js = out_dir / "history.json"
    doc = {
        "config": {**config._asdict(), "hidden": list(config.hidden)},
        "data": {"source": args.data, "name": splits.name, "n_train": len(splits.x_train),
                 "n_val": len(splits.x_val), "n_test": len(splits.x_test),
                 "features": int(splits.x_train.shape[1]), "num_classes": splits.num_classes},
        "seeds": n_seeds, "seed": args.seed, "seconds": seconds,
        "checkpoint": {"file": ckpt.name, "stacked_seeds": n_seeds > 1,
                       "content": "the kept TrainState (best epoch with early stopping)"},
        "summary": {"test_accuracy_mean": float(acc.mean()), "test_accuracy_std": float(acc.std())},
        "runs": history,
    }
    js.write_text(json.dumps(doc, indent=1, allow_nan=False) + "\n", encoding="utf-8")
    png = out_dir / "curves.png"
    _tricks.plot_run(result, png, title=f"{config.optimizer} (lr {config.learning_rate:g}, {config.schedule}) "
                                       f"on {splits.name}: {summary}")
    _say(f"functrain train: wrote {js}, {ckpt} and {png}")
    return 0


# ----------------------------------------------------------------------------------------------
# Entry point


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``functrain`` command.

    Args:
        argv: the arguments after the program name (default ``sys.argv[1:]``).

    Returns:
        The exit status: 0 on success, 2 for bad flags or values (one line on stderr), 1 when a
        needed optional dependency is missing.
    """
    parser = build_parser()
    try:
        args = parser.parse_args(None if argv is None else list(argv))
    except SystemExit as e:  # --help (0) or a usage error already printed as one line (2)
        return e.code if isinstance(e.code, int) else 2
    command: Callable[[argparse.Namespace], int] = _tricks_command if args.command == "tricks" else _train_command
    try:
        return command(args)
    except UsageError as e:
        print(f"{PROG}: error: {_one_line(str(e))}", file=sys.stderr)
        return 2
    except ImportError as e:
        print(f"{PROG}: error: {_one_line(str(e))}", file=sys.stderr)
        return 1

