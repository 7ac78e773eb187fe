"""Figure helpers the lesson examples need beyond :mod:`functrain.plotting` (candidates to promote there).

* :func:`caption` -- a figure caption under the panels that says what to look at;
* :func:`plot_gap` -- training loss (evaluation mode) against validation loss per configuration,
  one color each, the epoch of lowest validation loss marked: the generalization gap;
* :func:`plot_heatmap` -- a grid of mean results over seeds, each cell annotated ``mean ± std``;
* :func:`plot_steps` -- a per-step series of every seed (e.g. gradient norms) with horizontal
  reference lines (e.g. clipping thresholds).

All draw into axes from :func:`functrain.plotting.panels`; save with
:func:`functrain.plotting.save_figure`. matplotlib is imported by ``functrain.plotting``'s panels.
"""

# matplotlib's stubs leave the ``**kwargs`` of nearly every Axes/Figure method unannotated, so
# pyright reports each method as partially unknown; this one rule is off in this file only.
# pyright: reportUnknownMemberType=false

from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

Values = np.ndarray[Any, Any]


def caption(fig: Figure, text: str, *, width: int = 150) -> None:
    """Write ``text`` (wrapped at ``width`` characters) under all panels of ``fig``."""
    fig.supxlabel(textwrap.fill(text, width), fontsize="small", x=0.01, ha="left", linespacing=1.3)


def _mean(values: Values) -> Values:
    arr = np.asarray(values, np.float64)
    return arr.mean(axis=0) if arr.ndim == 2 else arr


def plot_gap(ax: Axes, train_loss: Mapping[str, Values], val_loss: Mapping[str, Values], *,
             title: str, mark_best: bool = True, log_y: bool = True) -> dict[str, int]:
    """Solid: training loss in evaluation mode; dashed: validation loss; one color per label.

    Args:
        ax: the axes to draw in.
        train_loss: label -> ``(seeds, epochs)`` training loss measured with ``train=False``.
        val_loss: label -> ``(seeds, epochs)`` validation loss (same labels).
        title: the axes' title.
        mark_best: mark each label's epoch of lowest mean validation loss with a dot and a
            dotted vertical line (where early stopping would restore the weights).
        log_y: logarithmic y axis.

    Returns:
        label -> the 1-based epoch of lowest mean validation loss.
    """
    best: dict[str, int] = {}
    for i, label in enumerate(train_loss):
        color = f"C{i % 10}"
        tr, va = _mean(train_loss[label]), _mean(val_loss[label])
        epochs = np.arange(1, int(tr.shape[0]) + 1)
        ax.plot(epochs, tr, color=color, linewidth=1.6, label=f"{label}: train (eval mode)")
        ax.plot(epochs, va, color=color, linewidth=1.6, linestyle="--", label=f"{label}: validation")
        e = int(np.nanargmin(va))
        best[label] = e + 1
        if mark_best:
            ax.plot(e + 1, va[e], "o", color=color, markersize=6)
            ax.axvline(e + 1, color=color, linestyle=":", linewidth=1)
    if log_y:
        ax.set_yscale("log")
    ax.set_title(title)
    ax.set_xlabel("epoch")
    ax.set_ylabel("cross-entropy loss (mean over seeds)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="x-small", ncol=2, loc="best")
    return best


def plot_heatmap(ax: Axes, values: Values, *, rows: Sequence[str], cols: Sequence[str], title: str,
                 xlabel: str, ylabel: str, std: Values | None = None, digits: int = 3,
                 cmap: str = "viridis", vmin: float | None = None, vmax: float | None = None) -> None:
    """A ``(len(rows), len(cols))`` grid of values (e.g. mean test accuracy), each cell annotated.

    ``std`` (same shape) adds ``± std`` under each value. Cells with NaN stay blank.
    """
    grid = np.asarray(values, np.float64)
    image = ax.imshow(grid, cmap=cmap, vmin=vmin, vmax=vmax, aspect="auto")
    ax.figure.colorbar(image, ax=ax, shrink=0.85)
    low, high = np.nanmin(grid), np.nanmax(grid)
    for r in range(grid.shape[0]):
        for c in range(grid.shape[1]):
            if not np.isfinite(grid[r, c]):
                continue
            text = f"{grid[r, c]:.{digits}f}" + (f"\n± {float(std[r, c]):.{digits}f}" if std is not None else "")
            dark = (grid[r, c] - low) < 0.5 * (high - low) if cmap == "viridis" else False
            ax.text(c, r, text, ha="center", va="center", fontsize="small", color="white" if dark else "black")
    ax.set_xticks(np.arange(len(cols)), list(cols))
    ax.set_yticks(np.arange(len(rows)), list(rows))
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)


def plot_steps(ax: Axes, series: Values, *, title: str, ylabel: str, lines: Mapping[str, float] | None = None,
               log_y: bool = True, steps_per_epoch: int | None = None) -> None:
    """Every seed's per-step values (``(seeds, steps)``) as thin lines, with labelled horizontal lines.

    Non-finite values (a run that overflowed) are left out. ``steps_per_epoch`` puts the epoch on
    a secondary x axis label.
    """
    arr = np.asarray(series, np.float64)
    arr = np.where(np.isfinite(arr), arr, np.nan)
    steps = np.arange(1, int(arr.shape[-1]) + 1)
    for s, row in enumerate(arr.reshape(-1, arr.shape[-1])):
        ax.plot(steps, row, linewidth=0.6, alpha=0.8, color=f"C{s % 10}", label=f"seed {s}")
    for i, (label, value) in enumerate((lines or {}).items()):
        ax.axhline(value, color="black", linestyle=("--", ":", "-.")[i % 3], linewidth=1.2, label=label)
    if log_y:
        ax.set_yscale("log")
    ax.set_title(title)
    xlabel = "step" if steps_per_epoch is None else f"step ({steps_per_epoch} per epoch)"
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="x-small", loc="upper right")
