"""The ``functrain`` command: ``functrain tricks`` and ``functrain train``.

``functrain tricks`` trains the same MLP on the embedded digits with the classic tricks added one
at a time (see :func:`functrain.experiments.tricks.trick_rows`), every row over several seeds in
one vmapped, compiled program, prints the table and writes ``tricks.png``, ``tricks.md`` and
``tricks.json``.

``functrain train`` trains one configuration given by flags and writes ``history.json`` (per-epoch
metrics of every seed), ``checkpoint.ckpt`` (the kept train state(s), seeds stacked on a leading
axis when ``--seeds > 1``) and ``curves.png``.

This module only parses the arguments; the work is done by
:mod:`functrain.experiments.tricks.commands`. Bad flags or values print one line
``functrain: error: ...`` on stderr and exit with status 2; a bad value reads
``argument --lr: must be a finite number > 0, got '-1'`` (the one message style of
:mod:`functrain._validate`, after argparse's ``argument --flag:``).
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn, TypeVar

from functrain import _validate

__all__ = ["build_parser", "main"]

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


def _argument(text: str, parse: Callable[[str], _T], expectation: str,
              check: Callable[[_T], object]) -> _T:
    try:
        value = parse(text)
        check(value)
    except (TypeError, ValueError) as e:
        # a _validate message reads "who: argument 'name' must be <expectation>, got <value>"
        detail = str(e).partition(" must be ")[2].rpartition(", got ")[0] or expectation
        raise argparse.ArgumentTypeError(f"must be {detail}, got {text!r}") from None
    return value


def _number(low: float | None = None, high: float | None = None, *, low_open: bool = False,
            high_open: bool = False) -> Callable[[str], float]:
    """A finite float flag in the given range (``check_number``'s expectation in the message)."""

    def parse(text: str) -> float:
        return _argument(text, float, "a finite number", lambda v: _validate.check_number(
            v, PROG, "value", low=low, high=high, low_open=low_open, high_open=high_open, finite=True))

    return parse


def _integer(low: int) -> Callable[[str], int]:
    """A whole-number flag ``>= low``."""

    def parse(text: str) -> int:
        return _argument(text, int, f"an int >= {low}", lambda v: _validate.check_int(v, PROG, "value", low=low))

    return parse


def _check_widths(widths: tuple[int, ...]) -> None:
    if not widths or min(widths) < 1:
        _validate.fail(PROG, "hidden", "comma-separated positive layer widths like 256,256", widths)


def _widths(text: str) -> tuple[int, ...]:
    def parse(t: str) -> tuple[int, ...]:
        return tuple(int(p) for p in t.replace(" ", ",").split(",") if p)

    return _argument(text, parse, "comma-separated positive layer widths like 256,256", _check_widths)


_positive_int, _nonnegative_int = _integer(1), _integer(0)
_positive_float = _number(0.0, low_open=True)


def _add_tricks(sub: Any) -> None:
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


def _add_train(sub: Any) -> None:
    from functrain.experiments.tricks.config import INITIALIZERS, OPTIMIZERS, SCHEDULES

    train = sub.add_parser(
        "train", help="train one configuration given by flags",
        description="Train one MLP configuration (optionally over several vmapped seeds) and write "
                    "history.json, checkpoint.ckpt and curves.png.")
    add = train.add_argument
    add("--data", default="digits", metavar="digits|PATH.npz",
        help="the embedded digits, or an .npz file with x and y (split 80/20), or x_train, y_train, "
             "x_test, y_test (default digits)")
    add("--optimizer", choices=tuple(OPTIMIZERS), default="adam", help="(default adam)")
    add("--lr", type=_positive_float, default=None,
        help="learning rate (default 1e-3 for adam/adamw/rmsprop, 1e-2 for adagrad, 0.1 otherwise)")
    add("--schedule", choices=tuple(SCHEDULES), default="constant", help="learning-rate schedule (default constant)")
    add("--decay-rate", type=_number(0.0, 1.0, low_open=True), default=0.98,
        help="per-epoch factor of --schedule exponential (default 0.98)")
    add("--init", choices=tuple(INITIALIZERS), default="he", help="kernel initializer (default he)")
    add("--batch-norm", action="store_true", help="batch norm after every hidden Dense")
    add("--dropout", type=_number(0.0, 1.0, high_open=True), default=0.0, metavar="RATE",
        help="dropout rate after every hidden ReLU, in [0, 1) (default 0)")
    add("--clip", type=_positive_float, default=None, metavar="THETA", help="clip gradients to global norm THETA")
    add("--weight-decay", type=_number(0.0), default=0.0,
        help="decoupled decay for adamw, L2 penalty on the kernels otherwise (default 0)")
    add("--early-stopping", type=_positive_int, default=None, metavar="PATIENCE",
        help="stop after PATIENCE epochs without a lower validation loss; keep the best")
    add("--seeds", type=_positive_int, default=None, help="seeds, trained at once (default 1)")
    add("--seed", type=_nonnegative_int, default=0, help="base seed (default 0)")
    add("--epochs", type=_positive_int, default=None, help="(maximum) epochs (default 20)")
    add("--batch-size", type=_positive_int, default=64, help="examples per step (default 64)")
    add("--hidden", type=_widths, default=None, metavar="W1,W2,...", help="hidden-layer widths (default 256,256,256)")
    add("--out", default="functrain-run", metavar="DIR", help="output directory (default functrain-run)")
    add("--quick", action="store_true", help="a smoke test in seconds: tiny network, 2 epochs, fewer XLA optimizations")


def build_parser() -> argparse.ArgumentParser:
    """The command-line parser of ``functrain`` (subcommands ``tricks`` and ``train``)."""
    parser = _Parser(prog=PROG, description="The classic deep-learning training tricks, measured.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _add_tricks(sub)
    _add_train(sub)
    return parser


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
    from functrain.experiments.tricks import commands

    options = {k: v for k, v in vars(args).items() if k != "command"}
    try:
        if args.command == "tricks":
            commands.tricks(commands.TricksArgs(**options))
        else:
            commands.train(commands.TrainArgs(**options))
    except commands.CommandError as e:
        print(f"{PROG}: error: {_one_line(str(e))}", file=sys.stderr)
        return 2
    except ImportError as e:
        print(f"{PROG}: error: {_one_line(str(e))}", file=sys.stderr)
        return 1
    return 0
