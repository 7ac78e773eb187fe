"""Figures of the trick experiments, drawn with :mod:`functrain.plotting` (matplotlib, lazily).

:func:`plot_tricks` draws ``tricks.png`` (four panels, one shared legend); :func:`plot_run` draws
``functrain train``'s ``curves.png``. The decisions that depend on the results (how far to zoom
an axis, which rows to name because they run off it) are made here, on the numbers; the drawing
is :func:`~functrain.plotting.plot_curves` and :func:`~functrain.plotting.plot_scores`.

Example:
    >>> from functrain.experiments.tricks import figures
    >>> figures.best_mean(np.array([[0.5, 0.7], [0.6, 0.8]]))  # the best epoch of the mean curve
    0.75
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from functrain import plotting
from functrain.experiments.tricks.run import RunOutput
from functrain.experiments.tricks.table import TrickResult, curve

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["best_mean", "loss_axis", "plot_run", "plot_tricks", "zoom_low"]

StrPath = str | os.PathLike[str]
Curves = np.ndarray[Any, Any]


def best_mean(a: Curves) -> float:
    """The best (largest) per-epoch mean over seeds, ignoring NaN entries (0 if all are NaN)."""
    present = np.isfinite(a)
    n = present.sum(axis=0)
    means = np.where(present, a, 0.0).sum(axis=0) / np.maximum(n, 1)
    return float(np.max(np.where(n > 0, means, 0.0), initial=0.0))


def zoom_low(values: Sequence[float]) -> float:
    """A lower axis limit showing the differences between the good rows (multiples of 0.05).

    The good rows are those at or above 0.5; the limit sits at least 0.04 below the worst of them,
    rounded down to a multiple of 0.05, and stays in ``[0, 0.9]``.
    """
    good = [v for v in values if np.isfinite(v) and v >= 0.5]
    if not good:
        return 0.0
    return float(max(0.0, min(0.9, math.floor((min(good) - 0.04) * 20) / 20)))


def _why(r: TrickResult) -> str:
    n = r.test_accuracy.size
    if not r.diverged:
        return ""
    rest = f" (later epochs: the other {n - r.diverged} alone)" if r.diverged < n else ""
    return f",\n{r.diverged}/{n} seeds diverged to NaN{rest}"


def loss_axis(rows: Sequence[tuple[TrickResult, Curves | None]]) -> tuple[tuple[float, float] | None, str | None]:
    """The range of a log-scale loss axis, and a note naming the rows that leave it.

    A diverging row's loss can reach 1e30 and would flatten every other curve, so the axis ends
    at twice the largest loss of the rows without a diverged seed (and starts at 0.7 times the
    smallest positive loss); rows above it are listed with their largest value.

    Returns:
        ``((bottom, top), note)``; ``(None, None)`` when every row has a diverged seed.
    """
    finite = [(r, a[np.isfinite(a)]) for r, a in rows if a is not None]
    tame = [v for r, v in finite if r.diverged == 0 and v.size]
    if not tame:
        return None, None
    top = 2.0 * max(float(v.max()) for v in tame)
    low = 0.7 * min(float(v[v > 0].min()) for _, v in finite if (v > 0).any())
    above = [f"{r.label}: up to {float(v.max()):.1e}{_why(r)}" for r, v in finite if v.size and float(v.max()) > top]
    return (low, top), ("above the axis:\n" + "\n".join(above) if above else None)


def _score_notes(results: Sequence[TrickResult]) -> dict[str, str]:
    notes = {r.label: f"{r.diverged}/{r.test_accuracy.size} diverged" for r in results if r.diverged}
    notes.update({r.label: "one ensemble" for r in results if r.ensemble})
    return notes


def plot_tricks(results: Sequence[TrickResult], path: StrPath | None, *, title: str) -> Figure:
    """Draw the trick figure (four panels, one shared legend); write it as a PNG to ``path``.

    Top left: validation accuracy per epoch of every trained row (mean ± std band over seeds;
    the axis is zoomed on the good rows, rows below it are named in the panel). Top right:
    validation loss per epoch (log scale; early stopping watches it). Bottom left: training loss
    per epoch (log scale). Bottom right: test accuracy per row, mean ± std over seeds (the
    ensemble is one number, drawn in black).
    """
    trained = [r for r in results if r.val_accuracy is not None]
    fig, (ax_val, ax_vloss, ax_loss, ax_test) = plotting.panels(2, 2, width=8.0, height=5.75, title=title)
    best = {r.label: best_mean(r.val_accuracy) for r in trained if r.val_accuracy is not None}
    low = zoom_low(list(best.values()) + [float(np.mean(r.test_accuracy)) for r in results])
    below = [f"{label}: {value:.2f} at best" for label, value in best.items() if value < low]
    axis_from = f" (axis from {low:.2f})" if low > 0 else ""

    def curves(ax: Any, field: str, **kw: Any) -> None:
        data = {r.label: v for r in trained if (v := getattr(r, field)) is not None}
        if data:
            plotting.plot_curves(data, ax=ax, legend=False, **kw)

    curves(ax_val, "val_accuracy", title=f"Validation accuracy per epoch{axis_from}",
           ylabel="validation accuracy", ylim=(low, 1.0), note_at="lower right",
           note="below the axis:\n" + "\n".join(below) if below else None)
    for ax, field, ylabel in ((ax_vloss, "val_loss", "validation loss (cross-entropy)"),
                              (ax_loss, "train_loss", "training loss (cross-entropy, mean over the epoch)")):
        ylim, note = loss_axis([(r, getattr(r, field)) for r in trained])
        what = "Validation" if field == "val_loss" else "Training"
        curves(ax, field, title=f"{what} loss per epoch (log scale)", ylabel=ylabel, log_y=True, ylim=ylim,
               note=note)
    plotting.plot_scores(
        {r.label: r.test_accuracy for r in results}, ax=ax_test, xlim=(low, 1.0), notes=_score_notes(results),
        colors=["black" if r.ensemble else f"C{i % 10}" for i, r in enumerate(results)],
        title=f"Test accuracy of each row{axis_from}",
        xlabel="test accuracy (dot: mean over seeds, bar: ± std)")
    seeds = max((r.test_accuracy.size for r in trained), default=1)
    kind = "rows, cumulative" if all(r.section == results[0].section for r in results) else "rows"
    plotting.shared_legend(fig, ax_val, ncol=4, title=(
        f"{kind} (curves: mean over {seeds} seeds, band: ± one std; early-stopped runs end early)"
        if seeds > 1 else kind))
    return plotting.save_figure(fig, path, dpi=100)


def plot_run(out: RunOutput, path: StrPath | None, *, title: str) -> Figure:
    """The curves of ``functrain train``: loss and accuracy per epoch, training and validation.

    ``out`` holds stacked seeds ``(seeds, epochs)``; epochs after early stopping are left out;
    several seeds are drawn as mean ± std bands.
    """
    active = np.asarray(out.active, bool)
    fig, (ax_loss, ax_acc) = plotting.panels(1, 2, width=6.5, height=5.2, title=title)
    plotting.plot_curves({"training": curve(out.train_loss, active), "validation": curve(out.val_loss, active)},
                         ax=ax_loss, title="Loss per epoch (log scale)", ylabel="cross-entropy loss", log_y=True)
    plotting.plot_curves({"training": curve(out.train_accuracy, active),
                          "validation": curve(out.val_accuracy, active)},
                         ax=ax_acc, title="Accuracy per epoch", ylabel="accuracy")
    return plotting.save_figure(fig, path, dpi=100)
