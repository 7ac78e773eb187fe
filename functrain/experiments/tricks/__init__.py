"""The trick experiments: one configurable MLP run on the digits, and the table of tricks.

* :mod:`~functrain.experiments.tricks.config` -- :class:`RunConfig`, its tables of initializers,
  optimizers and schedules by command-line name, and their builders;
* :mod:`~functrain.experiments.tricks.models` -- the networks (MLP, the lesson's convnet, a small
  ResNet);
* :mod:`~functrain.experiments.tricks.rows` -- the rows of the table, as data (classic, canon);
* :mod:`~functrain.experiments.tricks.splits` -- the train / validation / test data (and label noise);
* :mod:`~functrain.experiments.tricks.programs` -- runs that differ only in hyperparameters share
  one compiled program (the values, and the data, are arguments);
* :mod:`~functrain.experiments.tricks.run` -- one run as a pure function of a key (and in three
  pieces), and many seeds of it as one compiled program;
* :mod:`~functrain.experiments.tricks.chunks` -- many seeds compiled once and run in chunks of
  epochs: progress, and stopping between epochs (Ctrl-C);
* :mod:`~functrain.experiments.tricks.table` -- every row over several seeds, and the ensemble;
* :mod:`~functrain.experiments.tricks.effects` -- each row's change versus the row above, marked
  when it exceeds twice the seed spread (the rows within noise);
* :mod:`~functrain.experiments.tricks.report` -- the table as text, Markdown and JSON;
* :mod:`~functrain.experiments.tricks.figures` -- the figures, drawn with :mod:`functrain.plotting`;
* :mod:`~functrain.experiments.tricks.outputs` -- the commands' output files: checked before any
  work, written all-or-nothing;
* :mod:`~functrain.experiments.tricks.commands` -- ``functrain tricks``, ``functrain train`` and
  ``functrain lr-find`` once their arguments are parsed (the command line is :mod:`functrain.cli`).
"""

from functrain.experiments.tricks.config import (
    INITIALIZERS,
    MODELS,
    OPTIMIZERS,
    SCHEDULES,
    OptimizerSpec,
    RunConfig,
    build_optimizer,
    build_schedule,
    check_config,
)
from functrain.experiments.tricks.models import build_model
from functrain.experiments.tricks.report import format_table, markdown_table, results_json
from functrain.experiments.tricks.rows import Section, canon_rows, trick_rows
from functrain.experiments.tricks.run import RunOutput, checkpoint_like, make_run, run_many, run_one
from functrain.experiments.tricks.splits import Splits, load_data, prepare_splits
from functrain.experiments.tricks.table import TrickResult, ensemble_accuracy, run_tricks

__all__ = [
    "INITIALIZERS",
    "MODELS",
    "OPTIMIZERS",
    "SCHEDULES",
    "OptimizerSpec",
    "RunConfig",
    "RunOutput",
    "Section",
    "Splits",
    "TrickResult",
    "build_model",
    "build_optimizer",
    "build_schedule",
    "canon_rows",
    "check_config",
    "checkpoint_like",
    "ensemble_accuracy",
    "format_table",
    "load_data",
    "make_run",
    "markdown_table",
    "prepare_splits",
    "results_json",
    "run_many",
    "run_one",
    "run_tricks",
    "trick_rows",
]
