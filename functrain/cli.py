"""The ``functrain`` command: ``functrain tricks``, ``functrain train`` and ``functrain lr-find``.

``functrain tricks`` trains the same network (the MLP, or the lesson's convnet with ``--model cnn``) on
the embedded digits (or MNIST / Fashion-MNIST with ``--data``, downloaded once) with the classic tricks
added one at a time (see :func:`functrain.experiments.tricks.trick_rows`), every row over several seeds
(vmapped, run one epoch per call; rows that differ only in hyperparameter values share one compiled
program), prints the table and writes ``tricks.png``, ``tricks.md`` and ``tricks.json``. Its default
setting gives the tricks something to fix: a six-layer MLP, plain SGD at lr 0.01, and 30% of the training
and validation labels replaced at random (``--label-noise``; the test labels stay clean). Each row's
change of test accuracy and test loss versus the row above is marked when it exceeds twice the seed
spread, and the rows within noise are named under the table (:mod:`functrain.experiments.tricks.effects`).
``--canon`` adds the modern canon (label smoothing, mixup, warmup, zero-init residual BN, drop-path, SAM,
an EMA of the weights), each against a small-ResNet baseline.

``functrain train`` prints the model summary, trains one configuration given by flags and writes
``history.json`` (per-epoch metrics of every seed), ``checkpoint.ckpt`` (the kept train state(s),
seeds stacked on a leading axis when ``--seeds > 1``) and ``curves.png``, printing progress as
epochs complete. ``functrain lr-find`` takes the same flags and runs the learning-rate range test
of every seed in one program (prints the suggestions and their median; writes ``lr_find.png`` and
``lr_find.json``).

Compile once, across processes: the command turns on JAX's persistent compilation cache
(:func:`functrain.compilation_cache.enable`) before it compiles anything, so a second run loads its
compiled programs instead of compiling them (``functrain tricks`` prints the compile seconds of
every row and their total). The cache lives in ``$FUNCTRAIN_CACHE`` if set, else
``$XDG_CACHE_HOME/functrain/jax`` (``~/.cache/functrain/jax``); ``FUNCTRAIN_CACHE=off`` or
``--no-cache`` runs without it (a cache the surrounding process already configured is left as it
is). Deleting the directory is always safe.

The PRNG: threefry (JAX's default) hashes counters with an unrolled cipher at every random draw
(shuffling, dropout masks, key splits), which XLA compiles again at each place it is used. ``--prng
unsafe_rbg`` draws with XLA's RngBitGenerator instead. Measured on 2 busy CPU cores for the earlier
default table (MLP 256-256-256, no label noise): about 30% less compile time (127 s -> 89 s summed over
the rows; the "+ dropout" row's training program 7.0 s -> 4.6 s), but its vmapped draws make each training
epoch about 1.5x slower (5 epochs of 5 seeds: 0.83 s -> 1.28 s), so it pays off only where compiling
dominates (``--quick``, short runs). Its random numbers -- and so the results -- differ, and are not
guaranteed to be the same across JAX versions or devices; the default, threefry, reproduces the published
tables. ``--prng rbg`` (RngBitGenerator bits, threefry splits) is also available.

Example:
    >>> from functrain.cli import build_parser
    >>> args = build_parser().parse_args(["train", "--seeds", "3", "--quick"])
    >>> args.command, args.seeds, args.quick
    ('train', 3, True)
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn, TypeVar

from functrain import _validate
from functrain.experiments.tricks.config import MAX_EPOCHS, MAX_SEED, MAX_SEEDS, MAX_WIDTH, MODELS

__all__ = ["build_parser", "enable_cache", "main"]

PROG = "functrain"
_T = TypeVar("_T")


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
# Argument types: parse the text, check the value with functrain._validate, and raise
# ArgumentTypeError("must be <expectation>, got '<text>'"), which argparse prefixes with
# "argument --flag: ".


def _shown(text: str) -> str:
    """``text`` quoted for a message, shortened to 40 characters."""
    return repr(text if len(text) <= 40 else text[:37] + "...")


def _argument(text: str, parse: Callable[[str], _T], expectation: str,
              check: Callable[[_T], object]) -> _T:
    try:
        value = parse(text)
        check(value)
    except (TypeError, ValueError) as e:
        # a _validate message reads "who: argument 'name' must be <expectation>, got <value>"
        detail = str(e).partition(" must be ")[2].rpartition(", got ")[0] or expectation
        raise argparse.ArgumentTypeError(f"must be {detail}, got {_shown(text)}") from None
    return value


def _number(low: float | None = None, high: float | None = None, *, low_open: bool = False,
            high_open: bool = False) -> Callable[[str], float]:
    """A finite float flag in the given range (``check_number``'s expectation in the message)."""

    def parse(text: str) -> float:
        return _argument(text, float, "a finite number", lambda v: _validate.check_number(
            v, PROG, "value", low=low, high=high, low_open=low_open, high_open=high_open, finite=True))

    return parse


def _integer(low: int, high: int) -> Callable[[str], int]:
    """A whole-number flag in ``[low, high]``."""

    def parse(text: str) -> int:
        return _argument(text, int, f"an int in [{low}, {high}]",
                         lambda v: _validate.check_int(v, PROG, "value", low=low, high=high))

    return parse


_WIDTHS = f"comma-separated layer widths in [1, {MAX_WIDTH}] like 256,256"


def _check_widths(widths: tuple[int, ...]) -> None:
    if not widths or min(widths) < 1 or max(widths) > MAX_WIDTH:
        _validate.fail(PROG, "hidden", _WIDTHS, widths)


def _widths(text: str) -> tuple[int, ...]:
    def parse(t: str) -> tuple[int, ...]:
        return tuple(int(p) for p in t.replace(" ", ",").split(",") if p)

    return _argument(text, parse, _WIDTHS, _check_widths)


# The ranges of the integer flags (also in --help): counts fit int32 and the memory of a run.
_seeds = _integer(1, MAX_SEEDS)
_seed = _integer(0, MAX_SEED)
_epochs = _integer(1, MAX_EPOCHS)
_batch_size = _integer(1, _validate.INT32_MAX)
_positive_float = _number(0.0, low_open=True)
_BATCH_HELP = ("examples per step, at most the training examples (a larger one is refused, not clamped; "
               "default 64)")


_DATA_HELP = ("digits (embedded), mnist or fashion-mnist (downloaded once into $FUNCTRAIN_DATA, else "
              "~/.cache/functrain/datasets), or an .npz file with x and y (split 80/20), or x_train, y_train, "
              "x_test, y_test (default digits)")
_PRNG_HELP = ("PRNG of the run keys: threefry (default; reproducible), or unsafe_rbg / rbg (XLA's "
              "RngBitGenerator: unsafe_rbg compiles ~30%% faster on a CPU but trains vmapped seeds ~1.5x slower, "
              "so it helps short runs such as --quick; other random numbers, not stable across JAX versions "
              "and devices)")


def _common() -> argparse.ArgumentParser:
    """The flags every command has: the compilation cache and the PRNG."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--no-cache", action="store_true",
                        help="do not use the persistent compilation cache ($FUNCTRAIN_CACHE, else "
                             "~/.cache/functrain/jax; FUNCTRAIN_CACHE=off does the same)")
    common.add_argument("--prng", choices=("threefry", "unsafe_rbg", "rbg"), default="threefry", help=_PRNG_HELP)
    return common


def _add_tricks(sub: Any, common: argparse.ArgumentParser) -> None:
    tricks = sub.add_parser(
        "tricks", parents=[common], help="train one network with the tricks added one at a time",
        description="Train the same network (the MLP, or the lesson's convnet with --model cnn) on the digits "
                    "(or MNIST) with the classic tricks added one at a time (cumulatively), each row over several "
                    "seeds at once (vmapped; rows that differ only in hyperparameter values share one compiled "
                    "program, and a second run loads the programs from the compilation cache); print the table "
                    "and write tricks.png, tricks.md and tricks.json. --canon adds the modern canon, each trick "
                    "against a small-ResNet baseline. Ctrl-C stops after the current epoch and writes nothing "
                    "(exit status 130).")
    tricks.add_argument("--model", choices=("mlp", "cnn"), default="mlp",
                        help="the network of the classic rows: mlp, or cnn (the lesson's convnet; --hidden are "
                             "its channels, default 32,64; 8,16 with --quick) (default mlp)")
    tricks.add_argument("--canon", action="store_true",
                        help="add the canon rows: label smoothing, mixup, warmup, zero-init residual BN, "
                             "drop-path, SAM and an EMA of the weights, each added alone to a small-ResNet baseline")
    tricks.add_argument("--data", default="digits", metavar="digits|mnist|fashion-mnist|PATH.npz", help=_DATA_HELP)
    tricks.add_argument("--label-noise", type=_number(0.0, 1.0, high_open=True), default=0.3, metavar="FRACTION",
                        help="replace this fraction of the training and validation labels by another class at "
                             "random (a fixed key; the test labels stay clean), in [0, 1) (default 0.3)")
    tricks.add_argument("--seeds", type=_seeds, default=None,
                        help=f"seeds per row, trained at once, in [1, {MAX_SEEDS}] (default 5; 2 with --quick)")
    tricks.add_argument("--epochs", type=_epochs, default=None,
                        help=f"(maximum) epochs per run, in [1, {MAX_EPOCHS}] (default 30; 2 with --quick)")
    tricks.add_argument("--hidden", type=_widths, default=None, metavar="W1,W2,...",
                        help=f"hidden-layer widths (the convnet's channels) of the classic rows, each in [1, "
                             f"{MAX_WIDTH}] (default 64 six times, the convnet 32,64; with --quick 32,32 and 8,16; "
                             "the canon's ResNet has 16,16, 8,8 with --quick)")
    tricks.add_argument("--batch-size", type=_batch_size, default=64, help=_BATCH_HELP)
    tricks.add_argument("--seed", type=_seed, default=0,
                        help=f"base seed of the runs, in [0, {MAX_SEED}] (the key's 32 bits; default 0)")
    tricks.add_argument("--out", default=".", metavar="DIR", help="output directory (default: current)")
    tricks.add_argument("--quick", action="store_true",
                        help="a smoke test in seconds: tiny network, 2 seeds, 2 epochs, SGD at lr 0.1 (not 0.01), "
                             "and programs compiled with fewer XLA optimizations")


def _add_run_flags(parser: argparse.ArgumentParser, *, out: str, seeds: int) -> None:
    """The flags of one configuration (``functrain train`` and ``functrain lr-find``)."""
    from functrain.experiments.tricks.config import INITIALIZERS, OPTIMIZERS, SCHEDULES

    add = parser.add_argument
    add("--data", default="digits", metavar="digits|mnist|fashion-mnist|PATH.npz", help=_DATA_HELP)
    add("--model", choices=MODELS, default="mlp",
        help="mlp, cnn (the lesson's convnet: --hidden are its channels, default 32,64) or resnet (a small "
             "ResNet: --hidden are its blocks' channels, default 16,16) (default mlp)")
    add("--optimizer", choices=tuple(OPTIMIZERS), default="adam", help="(default adam)")
    add("--lr", type=_positive_float, default=None,
        help="learning rate (default 1e-3 for adam/adamw/rmsprop, 1e-2 for adagrad, 0.1 otherwise)")
    add("--schedule", choices=tuple(SCHEDULES), default="constant", help="learning-rate schedule (default constant)")
    add("--decay-rate", type=_number(0.0, 1.0, low_open=True), default=0.98,
        help="per-epoch factor of --schedule exponential (default 0.98)")
    add("--warmup", type=_number(0.0, 1.0, high_open=True), default=0.0, metavar="FRACTION",
        help="linear warmup from 0 over this fraction of the steps, in [0, 1) (default 0)")
    add("--init", choices=tuple(INITIALIZERS), default="he", help="kernel initializer (default he)")
    add("--batch-norm", action="store_true", help="batch norm after every hidden Dense (every convolution)")
    add("--dropout", type=_number(0.0, 1.0, high_open=True), default=0.0, metavar="RATE",
        help="dropout rate after every hidden ReLU (the convnets: before the classifier), in [0, 1) (default 0)")
    add("--clip", type=_positive_float, default=None, metavar="THETA", help="clip gradients to global norm THETA")
    add("--weight-decay", type=_number(0.0), default=0.0,
        help="decoupled decay for adamw, L2 penalty on the kernels otherwise (default 0)")
    add("--label-smoothing", type=_number(0.0, 1.0, high_open=True), default=0.0, metavar="EPS",
        help="targets (1 - EPS) one_hot + EPS / classes, EPS in [0, 1) (default 0)")
    add("--mixup", type=_number(0.0), default=0.0, metavar="ALPHA",
        help="mix each batch with a shuffled copy by a Beta(ALPHA, ALPHA) weight (default 0: off)")
    add("--drop-path", type=_number(0.0, 1.0, high_open=True), default=0.0, metavar="RATE",
        help="drop-path rate of the residual branches (--model resnet), in [0, 1) (default 0)")
    add("--zero-init-bn", action="store_true",
        help="start the last batch-norm scale of each residual branch at 0 (--model resnet --batch-norm)")
    add("--sam", type=_number(0.0), default=0.0, metavar="RHO",
        help="sharpness-aware minimization with radius RHO: two passes per step (default 0: off)")
    add("--ema", type=_number(0.0, 1.0, high_open=True), default=0.0, metavar="DECAY",
        help="evaluate an exponential moving average of the weights with this per-step decay (default 0: off)")
    add("--early-stopping", type=_epochs, default=None, metavar="PATIENCE",
        help=f"stop after PATIENCE epochs without a lower validation loss, PATIENCE in [1, {MAX_EPOCHS}]; "
             "keep the best")
    add("--seeds", type=_seeds, default=None, help=f"seeds, trained at once, in [1, {MAX_SEEDS}] (default {seeds})")
    add("--seed", type=_seed, default=0, help=f"base seed, in [0, {MAX_SEED}] (the key's 32 bits; default 0)")
    add("--epochs", type=_epochs, default=None,
        help=f"(maximum) epochs, in [1, {MAX_EPOCHS}], and epochs x steps per epoch at most 2**31 - 1 "
             "(default 20)")
    add("--batch-size", type=_batch_size, default=64, help=_BATCH_HELP)
    add("--hidden", type=_widths, default=None, metavar="W1,W2,...",
        help=f"hidden-layer widths (channels of the convnets), each in [1, {MAX_WIDTH}] (default 256,256,256 "
             "for the MLP)")
    add("--out", default=out, metavar="DIR",
        help=f"output directory (default {out}); created only when the outputs are written")
    add("--quick", action="store_true", help="a smoke test in seconds: tiny network, 2 epochs, fewer XLA optimizations")


def _add_train(sub: Any, common: argparse.ArgumentParser) -> None:
    train = sub.add_parser(
        "train", parents=[common], help="train one configuration given by flags",
        description="Print the model summary, train one configuration (optionally over several vmapped seeds) "
                    "and write history.json, checkpoint.ckpt and curves.png, printing progress as epochs "
                    "complete. Ctrl-C stops after the current epoch and writes the outputs of the completed "
                    "epochs (exit status 130); a second Ctrl-C quits at once.")
    _add_run_flags(train, out="functrain-run", seeds=1)


_STEPS = _integer(20, 1_000_000)


def _add_lr_find(sub: Any, common: argparse.ArgumentParser) -> None:
    lr_find = sub.add_parser(
        "lr-find", parents=[common], help="the learning-rate range test of one configuration",
        description="Run the learning-rate range test (Smith 2015; fastai's lr finder) of the configuration the "
                    "flags of 'functrain train' give, for every seed (its own initial weights and batches) in "
                    "one compiled program: the learning rate grows exponentially from --min-lr to --max-lr over "
                    "--steps steps. Print each seed's suggestion (the steepest descent of the smoothed loss) and "
                    "their median; write lr_find.png and lr_find.json. The schedule, --lr, SAM, the EMA and "
                    "early stopping are not used.")
    _add_run_flags(lr_find, out="functrain-lr-find", seeds=4)
    lr_find.add_argument("--min-lr", type=_positive_float, default=1e-7, help="the first learning rate (default 1e-7)")
    lr_find.add_argument("--max-lr", type=_positive_float, default=10.0, help="the last learning rate (default 10)")
    lr_find.add_argument("--steps", type=_STEPS, default=100, help="steps of the test, in [20, 1000000] (default 100)")


def build_parser() -> argparse.ArgumentParser:
    """The command-line parser of ``functrain`` (subcommands ``tricks``, ``train`` and ``lr-find``)."""
    parser = _Parser(prog=PROG, description="The classic deep-learning training tricks, measured. Compiled "
                                            "programs are kept in a persistent cache ($FUNCTRAIN_CACHE, else "
                                            "~/.cache/functrain/jax; --no-cache or FUNCTRAIN_CACHE=off: none).")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    common = _common()
    _add_tricks(sub, common)
    _add_train(sub, common)
    _add_lr_find(sub, common)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``functrain`` command.

    Args:
        argv: the arguments after the program name (default ``sys.argv[1:]``).

    Returns:
        The exit status: 0 on success, 2 for bad flags or values (one line on stderr, nothing
        trained or written), 1 when an output cannot be written or a needed optional dependency
        is missing, 130 when interrupted (Ctrl-C; one line saying what was kept).
    """
    parser = build_parser()
    try:
        args = parser.parse_args(None if argv is None else list(argv))
    except SystemExit as e:  # --help (0) or a usage error already printed as one line (2)
        return e.code if isinstance(e.code, int) else 2
    from functrain.experiments.interrupts import EXIT_STATUS, deferred_interrupts

    with deferred_interrupts() as interrupt:
        try:
            return _run(args, interrupt.requested)
        except KeyboardInterrupt as e:  # Interrupted (what was kept), or a plain one (no handler)
            print(f"{PROG}: {_one_line(str(e)) or 'interrupted'}", file=sys.stderr)
            return EXIT_STATUS


def enable_cache(no_cache: bool) -> str | None:
    """Turn on the persistent compilation cache unless ``no_cache``; return its directory.

    ``$FUNCTRAIN_CACHE`` relocates (a directory) or disables (``off``) it. A cache the process
    already has (e.g. set by a program that calls :func:`main`) is kept as it is.
    """
    import jax

    from functrain import compilation_cache

    existing = getattr(jax.config, "jax_compilation_cache_dir", None)
    if existing:
        return str(existing)
    if no_cache:
        return None
    path = compilation_cache.enable()
    return None if path is None else str(path)


def _run(args: argparse.Namespace, stop: Callable[[], bool]) -> int:
    from functrain.experiments.interrupts import Interrupted
    from functrain.experiments.tricks import commands, lr_range

    options = {k: v for k, v in vars(args).items() if k not in ("command", "no_cache")}
    enable_cache(args.no_cache)
    try:
        if args.command == "tricks":
            commands.tricks(commands.TricksArgs(**options), stop=stop)
        elif args.command == "train":
            commands.train(commands.TrainArgs(**options), stop=stop)
        else:
            lr_range.lr_find(lr_range.LrFindArgs(**options), stop=stop)
    except commands.CommandError as e:
        print(f"{PROG}: error: {_one_line(str(e))}", file=sys.stderr)
        return 2
    except (commands.WriteError, ImportError) as e:
        print(f"{PROG}: error: {_one_line(str(e))}", file=sys.stderr)
        return 1
    if stop():  # Ctrl-C while the outputs were written: they are complete
        raise Interrupted("interrupted as the run finished; its outputs are complete")
    return 0
