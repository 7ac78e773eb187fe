"""Reports of the trick experiments: the table as text and Markdown, and the JSON documents.

``functrain tricks`` prints :func:`format_table` and writes :func:`markdown_report` (``tricks.md``)
and :func:`results_json` (``tricks.json``); ``functrain train`` prints :func:`run_summary` and
writes :func:`history_json` (``history.json``). Every number shown is one of the measured ones; the
Δ columns and the verdict line under the table (:func:`noise_line`) come from
:mod:`~functrain.experiments.tricks.effects`.

Example:
    >>> from functrain.experiments.tricks import report
    >>> report.mean_std(np.array([0.9, 1.0])), report.mean_std(np.array([0.95]))
    ('0.9500 ± 0.0500', '0.9500')
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from functrain.experiments.tricks.config import RunConfig
from functrain.experiments.tricks.effects import NOISE_FACTOR, Change, format_change, row_effects, within_noise
from functrain.experiments.tricks.rows import Section
from functrain.experiments.tricks.run import RunOutput
from functrain.experiments.tricks.splits import Splits

if TYPE_CHECKING:  # table.py uses mean_std for its progress lines
    from functrain.experiments.tricks.table import TrickResult

__all__ = ["HEADER", "Setup", "format_table", "history_json", "markdown_report", "markdown_table", "mean_std",
           "noise_line", "results_json", "run_summary", "totals"]

HEADER = ("trick (cumulative)", "test accuracy (mean ± std)", "Δ accuracy", "test loss (mean ± std)", "Δ loss",
          "epochs", "train s", "compile s")
"""The columns of the trick table (the Δ columns: versus the row above, ✓ beyond twice the seed spread)."""

CUMULATIVE = {"classic": True, "canon": False}
"""Whether a section's rows add their trick to the row above (else to the section's first row)."""


def mean_std(values: np.ndarray[Any, Any]) -> str:
    """``"0.9500 ± 0.0100"`` (mean ± population std), or ``"0.9500"`` for a single value."""
    if values.size == 1:
        return f"{float(values.reshape(-1)[0]):.4f}"
    return f"{float(np.mean(values)):.4f} ± {float(np.std(values)):.4f}"


def _loss_cell(loss: np.ndarray[Any, Any] | None) -> str:
    """``mean ± std`` of the test loss; of the finite seeds only, saying how many were not, if any."""
    if loss is None:
        return "-"
    finite = np.isfinite(loss)
    if finite.all():
        return mean_std(loss)
    if not finite.any():
        return "not finite"
    return f"{mean_std(loss[finite])} ({int((~finite).sum())}/{loss.size} not finite)"


def _cells(r: TrickResult, accuracy: Change | None, loss: Change | None, first: bool) -> tuple[str, ...]:
    acc = mean_std(r.test_accuracy)
    if r.diverged:
        acc += f" ({r.diverged}/{r.test_accuracy.size} diverged)"
    if r.ensemble:
        acc += " (one ensemble)"
    epochs = f"{float(np.mean(r.epochs_run)):.1f}"
    d_acc, d_loss = ("", "") if first else (format_change(accuracy), format_change(loss))
    return (r.label, acc, d_acc, _loss_cell(r.test_loss), d_loss, epochs, f"{r.train_seconds:.1f}",
            f"{r.compile_seconds:.1f}")


def _all_cells(results: Sequence[TrickResult]) -> list[tuple[str, ...]]:
    effects = row_effects(results, CUMULATIVE)
    return [_cells(r, e.accuracy if e else None, e.loss if e else None, e is None) for r, e in zip(results, effects)]


def noise_line(results: Sequence[TrickResult]) -> str:
    """The sentence under the table: how many rows show an effect, and which are within noise."""
    effects = row_effects(results, CUMULATIVE)
    judged = [e for e in effects if e is not None]
    quiet = within_noise(results, CUMULATIVE)
    shown = len(judged) - len(quiet)
    names = "; ".join(quiet) if quiet else "none"
    return (f"{shown} of {len(judged)} rows change the test accuracy or the test loss by more than "
            f"{NOISE_FACTOR:g}x the seed spread (✓); within noise: {names}.")


NOISE_NOTE = ("Δ accuracy, Δ loss: the change of the mean versus the row above (canon rows: versus the canon "
              "baseline), marked ✓ when it is larger than twice the seed spread, the larger of the two rows' "
              "std over seeds (the ensemble, one number, takes its members' std). Every row trains the same seeds, "
              "so the spread is the scatter a row shows without any change. A row shows an effect when its "
              "accuracy or its loss change is marked; a trick can show by its loss alone (confidence on wrong "
              "answers, overfitting noisy labels) while the accuracy moves less. A change may also be a harm "
              "(a lower accuracy or a higher loss). A loss that is not finite (diverged seeds) is not judged (-).")
"""How the Δ columns are computed (a note under the Markdown table)."""

SECTION_TITLES = {"canon": "the canon (each row: the canon baseline + one trick, not cumulative)"}
"""The line that opens a section after the first in the tables (by section name)."""


def _opens(results: Sequence[TrickResult]) -> dict[int, str]:
    """Row index -> the title of the section it opens (sections after the first only)."""
    return {i: SECTION_TITLES.get(r.section, r.section) for i, r in enumerate(results)
            if i > 0 and r.section != results[i - 1].section}


def format_table(results: Sequence[TrickResult]) -> str:
    """A plain-text table for the terminal: header, rule, one line per row (a title line opens each
    section after the first)."""
    rows = [HEADER, *_all_cells(results)]
    widths = [max(len(row[j]) for row in rows) for j in range(len(HEADER))]
    opens = _opens(results)
    lines: list[str] = []
    for k, row in enumerate(rows):
        if k - 1 in opens:
            lines.append(f"-- {opens[k - 1]}")
        lines.append("  ".join(cell.ljust(w) if j == 0 else cell.rjust(w)
                               for j, (cell, w) in enumerate(zip(row, widths))).rstrip())
        if k == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join([*lines, noise_line(results)])


def markdown_table(results: Sequence[TrickResult]) -> str:
    """The table as GitHub Markdown (a bold row opens each section after the first)."""
    lines = ["| " + " | ".join(HEADER) + " |", "| --- |" + " ---: |" * (len(HEADER) - 1)]
    opens = _opens(results)
    for i, cells in enumerate(_all_cells(results)):
        if i in opens:
            lines.append(f"| **{opens[i]}** |" + " |" * (len(HEADER) - 1))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join([*lines, "", noise_line(results)])


def totals(results: Sequence[TrickResult]) -> dict[str, Any]:
    """Compile and train seconds summed over the rows, and how many sets of programs and rows there were."""
    trained = [r for r in results if not r.ensemble]
    return {"compile_seconds": float(sum(r.compile_seconds for r in results)),
            "train_seconds": float(sum(r.train_seconds for r in results)),
            "programs": len({(r.section, r.group) for r in trained}), "rows": len(trained)}


class Setup(NamedTuple):
    """What a ``functrain tricks`` run was: its data, rows, settings, timing and machine."""

    splits: Splits
    sections: Sequence[Section]
    network: str
    source: str
    seeds: int
    epochs: int
    batch_size: int
    seed: int
    prng: str
    seconds: float
    cpu_seconds: float
    machine: str
    command: str
    cache: str | None
    label_noise: float = 0.0


def _data_text(setup: Setup) -> str:
    sp = setup.splits
    what = {"digits": "scikit-learn's embedded handwritten digits (8x8 images, 10 classes)",
            "mnist": "MNIST (28x28 images, 10 classes; downloaded once into the data cache)",
            "fashion-mnist": "Fashion-MNIST (28x28 images, 10 classes; downloaded once into the data cache)"}
    split = ("split 80/20 into a training and a test part by a fixed key, then" if setup.source == "digits"
             else "its own test part kept;")
    return (f"Data: {what.get(setup.source, f'{setup.source} ({sp.name})')}, {split} 20% of the training part "
            f"held out for validation: {len(sp.x_train)} train / {len(sp.x_val)} validation / {len(sp.x_test)} "
            "test examples; min-max scaled to [0, 1] with statistics of the training examples only."
            + _noise_text(setup.label_noise))


def _noise_text(fraction: float) -> str:
    if fraction <= 0:
        return ""
    return (f" Label noise: {fraction:.0%} of the training labels and of the validation labels are replaced by "
            "another class at random (a fixed key); the test labels are clean, so the test numbers measure how well "
            "a network learned the true classes from noisy data.")


def markdown_report(results: Sequence[TrickResult], setup: Setup, *, image: str) -> str:
    """The Markdown file ``functrain tricks`` writes: setup, the table, notes, timing and the figure."""
    sums = totals(results)
    captions = [f"- {s.name}: {s.caption}" for s in setup.sections]
    ens = next((s for s in setup.sections if s.ensemble), None)
    return "\n".join([
        "# The training tricks, one at a time",
        "",
        f"Produced by `{setup.command}`, which trained and evaluated every row in {setup.seconds:.0f} s "
        f"({setup.cpu_seconds:.0f} s of CPU time) on {setup.machine}.",
        "",
        _data_text(setup),
        "",
        f"Model: {setup.network}, ReLU, softmax cross-entropy, batches of {setup.batch_size}, up to "
        f"{setup.epochs} epochs. Every row trains the same {setup.seeds} seeds (`split(key({setup.seed}), "
        f"{setup.seeds})`, PRNG {setup.prng}), all at once (`jax.vmap`), one epoch per call.",
        "",
        *captions,
        "",
        markdown_table(results),
        "",
        "- Test accuracy and test loss (cross-entropy on the clean test labels): of the model each run keeps "
        "(the last epoch's; the best validation epoch's with early stopping), mean ± population std over seeds.",
        f"- {NOISE_NOTE}",
        "- Diverged: the parameters were no longer finite at the end (the loss overflowed to NaN); "
        "such a network predicts one class for every input.",
        "- Adam replaces SGD with momentum from its row on (the optimizers are alternatives; the "
        "other tricks accumulate).",
        "- From the weight-decay row on, the training loss in the figure includes the L2 penalty "
        "(lambda/2 ||W||^2), which is why those curves sit higher.",
        *([f"- The ensemble averages the class probabilities of the {setup.seeds} models of the row above "
           "(`ensemble_predict`: p(y|x) = mean_k softmax(f_k(x))), so it is one number; its epochs "
           "are its members' and its times those of the prediction."] if ens is not None else []),
        f"- `train s` is the wall-clock time of running a row's programs (all its seeds and epochs, "
        "validation and test included). Rows that differ only in hyperparameter values (learning rate "
        "and schedule, momentum, dropout and drop-path rates, clipping threshold, weight decay, label "
        "smoothing, EMA decay, initial batch-norm scale) share compiled programs, the values passed as "
        "data; `compile s` is the time of compiling the programs a row was the first to need (a start "
        "program per initializer, the training and test programs per structure), compiled ahead on two "
        "threads while earlier rows train. In all: compiling "
        f"{sums['compile_seconds']:.1f} s ({sums['programs']} sets of programs for {sums['rows']} rows), "
        f"training {sums['train_seconds']:.1f} s; compilation cache: "
        f"{'`' + setup.cache + '`' if setup.cache else 'off'} (a second run loads the compiled programs).",
        "",
        f"![Validation accuracy and training loss per epoch, and test accuracy, of every row]({image})",
        "",
    ])


def _json_curve(a: np.ndarray[Any, Any] | None) -> list[list[float | None]] | None:
    if a is None:
        return None
    return [[float(v) if np.isfinite(v) else None for v in row] for row in a]


def results_json(results: Sequence[TrickResult], setup: Setup) -> dict[str, Any]:
    """The measured numbers of every row, JSON-ready (NaN curve entries as ``None``), with the totals."""
    first = setup.sections[0].rows[0][1]
    return {
        "settings": {"seeds": setup.seeds, "epochs": setup.epochs, "hidden": list(first.hidden),
                     "batch_size": setup.batch_size, "seed": setup.seed, "model": first.model,
                     "sections": [s.name for s in setup.sections], "data": setup.source, "prng": setup.prng,
                     "label_noise": setup.label_noise},
        "timing": {**totals(results), "wall_seconds": setup.seconds, "cpu_seconds": setup.cpu_seconds,
                   "cache": setup.cache, "machine": setup.machine},
        "within_noise": within_noise(results, CUMULATIVE),
        "rows": [{"trick": r.label, "section": r.section, "group": r.group,
                  "test_accuracy": [float(v) for v in r.test_accuracy],
                  "test_loss": None if r.test_loss is None else [_finite_or_none(float(v)) for v in r.test_loss],
                  "vs_reference": None if e is None else {"accuracy": _change_json(e.accuracy),
                                                          "loss": _change_json(e.loss), "shown": e.shown},
                  "epochs_run": [int(v) for v in r.epochs_run], "train_seconds": r.train_seconds,
                  "compile_seconds": r.compile_seconds,
                  "diverged": r.diverged, "ensemble": r.ensemble,
                  "val_accuracy": _json_curve(r.val_accuracy), "val_loss": _json_curve(r.val_loss),
                  "train_loss": _json_curve(r.train_loss)}
                 for r, e in zip(results, row_effects(results, CUMULATIVE))],
    }


def _finite_or_none(x: float) -> float | None:
    return x if math.isfinite(x) else None


def _change_json(c: Change | None) -> dict[str, Any] | None:
    return None if c is None else {"delta": c.delta, "spread": c.spread, "shown": c.shown}


def _runs(out: RunOutput, n_seeds: int, seed: int) -> list[dict[str, Any]]:
    """Per seed: its key, epochs run, whether it diverged, test numbers and per-epoch metrics."""
    names = ("train_loss", "train_accuracy", "val_loss", "val_accuracy")
    runs: list[dict[str, Any]] = []
    for s in range(n_seeds):
        active = np.asarray(out.active[s], bool)
        epochs = [{"epoch": int(e) + 1, **{name: _finite_or_none(float(getattr(out, name)[s, e])) for name in names}}
                  for e in np.flatnonzero(active)]
        runs.append({"seed": f"split(key({seed}), {n_seeds})[{s}]",
                     "epochs_run": int(out.epochs_run[s]),
                     "diverged": not bool(np.asarray(out.finite[s])[active][-1]),
                     "test_loss": _finite_or_none(float(out.test_loss[s])),
                     "test_accuracy": float(out.test_accuracy[s]), "epochs": epochs})
    return runs


def run_summary(out: RunOutput, seconds: float) -> str:
    """The line ``functrain train`` prints: test accuracy (± std over seeds), epochs run, time.

    ``out`` holds stacked seeds (a leading seed axis, also for one seed).
    """
    acc = np.asarray(out.test_accuracy, np.float64)
    n_seeds = acc.size
    finite = np.asarray(out.finite, bool)
    active = np.asarray(out.active, bool)
    diverged = sum(not finite[s][active[s]][-1] for s in range(n_seeds))
    return (f"test accuracy {acc.mean():.4f}" + (f" ± {acc.std():.4f} over {n_seeds} seeds" if n_seeds > 1 else "")
            + f", epochs run {float(np.mean(np.asarray(out.epochs_run))):.1f}"
            + (f", {diverged} diverged" if diverged else "") + f" ({seconds:.1f} s)")


def history_json(out: RunOutput, *, config: RunConfig, splits: Splits, source: str, seed: int, seconds: float,
                 checkpoint: str, interrupted_after: int | None = None) -> dict[str, Any]:
    """The document ``functrain train`` writes as ``history.json`` (``out``: stacked seeds).

    ``"config"`` is what ran (nothing is clamped: a batch size above the training examples is
    refused). ``"interrupted"`` is ``None`` for a complete run, or ``{"after_epoch": k, "of":
    epochs}`` when Ctrl-C stopped it after ``k`` epochs (``"runs"`` and the checkpoint then
    describe those ``k`` epochs).
    """
    acc = np.asarray(out.test_accuracy, np.float64)
    n_seeds = acc.size
    return {
        "config": {**config._asdict(), "hidden": list(config.hidden)},
        "data": {"source": source, "name": splits.name, "n_train": len(splits.x_train),
                 "n_val": len(splits.x_val), "n_test": len(splits.x_test),
                 "features": int(splits.x_train.shape[1]), "num_classes": splits.num_classes},
        "seeds": n_seeds, "seed": seed, "seconds": seconds,
        "interrupted": None if interrupted_after is None else {"after_epoch": interrupted_after, "of": config.epochs},
        "checkpoint": {"file": checkpoint, "stacked_seeds": n_seeds > 1,
                       "content": "the kept TrainState (best epoch with early stopping)"},
        "summary": {"test_accuracy_mean": float(acc.mean()), "test_accuracy_std": float(acc.std())},
        "runs": _runs(out, n_seeds, seed),
    }
