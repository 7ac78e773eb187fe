"""Figures: training curves over seeds, scores per method, signal propagation, schedules.

matplotlib is an optional dependency (``pip install 'functrain[examples]'``), imported inside each
function. Figures are ``matplotlib.figure.Figure`` objects built without ``pyplot`` (no global
figure registry, no interactive backend); PNGs are rendered with Agg. Every ``plot_*`` function
returns the figure and, given ``path``, also writes it as a PNG; given ``ax``, it draws into one
panel of a figure made by :func:`panels` (then :func:`shared_legend` and :func:`save_figure`).

Example:
    >>> fig, (left, right) = ft.plotting.panels(1, 2, title="Two panels")
    >>> _ = ft.plotting.plot_curves({"adam": np.ones((2, 3))}, ax=left, legend=False)
    >>> _ = ft.plotting.plot_scores({"adam": [0.9, 0.95]}, ax=right)
    >>> ft.plotting.shared_legend(fig, left, title="optimizers")
    >>> len(fig.axes), fig.legends[0].get_texts()[0].get_text()
    (2, 'adam')
"""

# matplotlib's stubs leave the ``**kwargs`` of nearly every Axes/Figure method unannotated, so
# pyright reports each method as partially unknown; this one rule is off in this file only.
# pyright: reportUnknownMemberType=false

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, cast

import jax
import jax.numpy as jnp
import numpy as np

from functrain._plot_helpers import StrPath as StrPath, Values as Values  # the argument types, re-exported
from functrain._plot_helpers import (axes_or_new, check_pair, curve_array, figure_class, finish, labelled,
                                     nan_mean_std)
from functrain._validate import check_bool, check_choice, check_int, check_positive, fail
from functrain.diagnostics import SignalPropagation
from functrain.typing import Schedule

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from functrain.train.lr_find import LRFindResult  # the type only: plotting imports no training

__all__ = ["panels", "plot_curves", "plot_lr_find", "plot_schedule", "plot_scores",
           "plot_signal_propagation", "save_figure", "shared_legend"]

CORNERS = ("upper right", "upper left", "lower right", "lower left")  # plot_curves' note_at


def save_figure(fig: Figure, path: StrPath | None, *, dpi: int = 120) -> Figure:
    """Write ``fig`` as a PNG (Agg canvas, no ``pyplot``) and return it; ``path=None`` writes nothing.

    Example:
        >>> fig, _ = ft.plotting.panels()
        >>> ft.plotting.save_figure(fig, None) is fig
        True
    """
    check_int(dpi, "save_figure", "dpi", low=1)
    if path is not None:
        fig.savefig(os.fspath(path), format="png", dpi=dpi)
    return fig


def panels(nrows: int = 1, ncols: int = 1, *, width: float = 6.4, height: float = 4.4,
           title: str | None = None) -> tuple[Figure, list[Axes]]:
    """A new figure of ``nrows x ncols`` panels (constrained layout), for the ``ax=`` arguments.

    Args:
        nrows: rows of panels (>= 1).
        ncols: columns of panels (>= 1).
        width: inches per panel column.
        height: inches per panel row.
        title: the figure's title (``suptitle``).

    Returns:
        The figure and its axes, row by row.

    Example:
        >>> fig, axes = ft.plotting.panels(2, 3, width=2.0, height=1.5)
        >>> len(axes), [float(v) for v in fig.get_size_inches()]
        (6, [6.0, 3.0])
    """
    who = "panels"
    rows, cols = check_int(nrows, who, "nrows", low=1), check_int(ncols, who, "ncols", low=1)
    w, h = check_positive(width, who, "width"), check_positive(height, who, "height")
    fig = figure_class(who)(figsize=(w * cols, h * rows), layout="constrained")
    grid = fig.subplots(rows, cols, squeeze=False)
    if title is not None:
        fig.suptitle(title)
    return fig, [a for row in grid for a in row]


def shared_legend(fig: Figure, ax: Axes, *, title: str | None = None, ncol: int = 4) -> None:
    """One legend below all panels of ``fig``, with the labelled lines of ``ax``.

    Draw the panels with ``plot_curves(..., legend=False)``, then call this once. The legend sits
    outside the panels (constrained layout, as :func:`panels` makes).

    Example:
        >>> fig, (ax,) = ft.plotting.panels()
        >>> _ = ft.plotting.plot_curves({"a": [1.0, 2.0], "b": [2.0, 1.0]}, ax=ax, legend=False)
        >>> ft.plotting.shared_legend(fig, ax, ncol=2)
        >>> [t.get_text() for t in fig.legends[0].get_texts()]
        ['a', 'b']
    """
    check_int(ncol, "shared_legend", "ncol", low=1)
    handles, labels = ax.get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=ncol, fontsize="medium", title=title)


def plot_curves(histories: Mapping[str, Values], *, title: str = "Training curves",
                xlabel: str = "epoch", ylabel: str = "value", log_y: bool = False,
                ylim: tuple[float, float] | None = None, legend: bool = True, note: str | None = None,
                note_at: str = "upper right", path: StrPath | None = None,
                ax: Axes | None = None) -> Figure:
    """Plot per-epoch curves, one per label, as the mean over seeds with a ± one-std band.

    Args:
        histories: label -> values of shape ``(seeds, epochs)`` (or ``(epochs,)`` for one run).
            NaN entries (e.g. epochs after a seed stopped early) are left out of the mean and std.
        title: the axes' title.
        xlabel: x-axis label.
        ylabel: y-axis label (e.g. ``"test accuracy"``).
        log_y: logarithmic y axis (for losses).
        ylim: the y-axis range ``(bottom, top)``; default: matplotlib's choice.
        legend: draw the axes' legend (labels get `` (n seeds)``); ``False`` for a
            :func:`shared_legend` (the lines keep their plain labels).
        note: a text in a box in corner ``note_at`` (e.g. which curves leave the axis).
        note_at: one of :data:`CORNERS`.
        path: write the figure to this PNG file.
        ax: draw into these axes (of your own figure) instead of a new figure.

    Returns:
        The figure (``ax.figure`` if ``ax`` was given).

    Raises:
        TypeError: ``histories`` is not a mapping.
        ValueError: empty ``histories``, or values that are not 1-D/2-D with at least one epoch.
        ImportError: if matplotlib is missing (the message says how to install it).

    Example:
        >>> runs = np.array([[1.0, 0.5, 0.25], [2.0, 1.0, np.nan]])  # seed 2 stopped early
        >>> fig = ft.plotting.plot_curves({"loss": runs}, ylabel="loss", log_y=True)
        >>> [float(v) for v in fig.axes[0].lines[0].get_ydata()]
        [1.5, 0.75, 0.25]
    """
    who = "plot_curves"
    curves = {label: curve_array(v, label, who) for label, v in labelled(histories, "histories", who).items()}
    check_bool(log_y, who, "log_y")
    check_bool(legend, who, "legend")
    check_choice(note_at, CORNERS, who, "note_at")
    check_pair(ylim, who, "ylim")
    figure, axes = axes_or_new(ax, who)
    for label, arr in curves.items():
        epochs = np.arange(1, int(arr.shape[1]) + 1)
        mean, std = nan_mean_std(arr)
        seeds = arr.shape[0]
        name = f"{label} ({seeds} seeds)" if seeds > 1 and legend else label
        (line,) = axes.plot(epochs, mean, label=name, linewidth=1.8)
        if seeds > 1:
            axes.fill_between(epochs, mean - std, mean + std, color=line.get_color(), alpha=0.2, linewidth=0)
    finish(axes, title, xlabel, ylabel, log_y)
    if ylim is not None:
        axes.set_ylim(*ylim)
    if note:
        top, right = note_at.startswith("upper"), note_at.endswith("right")
        axes.text(0.98 if right else 0.02, 0.97 if top else 0.03, note, transform=axes.transAxes,
                  ha="right" if right else "left", va="top" if top else "bottom", fontsize="small",
                  bbox={"facecolor": "white", "alpha": 0.85, "edgecolor": "0.7"})
    if legend:
        several = any(arr.shape[0] > 1 for arr in curves.values())
        axes.legend(loc="best", fontsize="small", title="mean ± std over seeds" if several else None,
                    title_fontsize="small")
    return save_figure(figure, path)


def _draw_score(axes: Axes, values: np.ndarray[Any, Any], y: int, color: str, note: str,
                xlim: tuple[float, float] | None) -> None:
    """One row of :func:`plot_scores`: dot and bar (or an arrow at the left edge), and the value."""
    m, sd = float(np.mean(values)), float(np.std(values))
    low, high = xlim if xlim is not None else (-np.inf, np.inf)
    if m < low:
        axes.plot(low, y, marker="<", color=color, markersize=9, clip_on=False)
        text = f"{m:.4f} (off the axis{'; ' + note if note else ''})"
        where: dict[str, Any] = {"xytext": (12, 0), "ha": "left", "va": "center"}
    else:
        axes.errorbar(m, y, xerr=sd if values.size > 1 else None, fmt="o", color=color, capsize=4,
                      markersize=7)
        text = f"{m:.4f}" + (f" ± {sd:.4f}" if values.size > 1 else "") + (f" ({note})" if note else "")
        right = xlim is not None and m > low + 0.8 * (high - low)
        where = {"xytext": (0, 8), "ha": "right" if right else "center", "va": "bottom"}
    axes.annotate(text, (max(m, low), y), textcoords="offset points", fontsize="small", color="0.2",
                  **where)


def plot_scores(scores: Mapping[str, Values], *, title: str = "Scores",
                xlabel: str = "score (dot: mean over seeds, bar: ± std)",
                xlim: tuple[float, float] | None = None, notes: Mapping[str, str] | None = None,
                colors: Sequence[str] | None = None, path: StrPath | None = None,
                ax: Axes | None = None) -> Figure:
    """One row per label, top to bottom: the mean over seeds as a dot, a ± one-std bar, the value.

    Args:
        scores: label -> one score per seed, shape ``(seeds,)`` (one value: no bar).
        title: the axes' title.
        xlabel: x-axis label.
        xlim: the x range ``(low, high)``; a mean below ``low`` is drawn as an arrow at the
            left edge and its value written beside it ("off the axis"). Default: matplotlib's.
        notes: label -> a remark written after the value (e.g. ``"2/5 diverged"``).
        colors: one matplotlib color per label (default: the color cycle ``C0``, ``C1`` ...).
        path: write the figure to this PNG file.
        ax: draw into these axes instead of a new figure.

    Returns:
        The figure.

    Raises:
        TypeError: ``scores`` is not a mapping.
        ValueError: empty ``scores``, a label without values, or ``colors`` of the wrong length.
        ImportError: if matplotlib is missing (the message says how to install it).

    Example:
        >>> fig = ft.plotting.plot_scores({"sgd": [0.90, 0.92], "adam": [0.95, 0.97], "bad": [0.1]},
        ...                               xlim=(0.8, 1.0), notes={"bad": "diverged"})
        >>> [t.get_text() for t in fig.axes[0].texts]
        ['0.9100 ± 0.0100', '0.9600 ± 0.0100', '0.1000 (off the axis; diverged)']
    """
    who = "plot_scores"
    rows = {k: np.asarray(v, np.float64).reshape(-1) for k, v in labelled(scores, "scores", who).items()}
    for label, values in rows.items():
        if values.size == 0:
            fail(who, f"scores[{label!r}]", "at least one value", np.asarray(scores[label]))
    check_pair(xlim, who, "xlim")
    if colors is not None and len(colors) != len(rows):
        fail(who, "colors", f"one color per label ({len(rows)})", list(colors))
    figure, axes = axes_or_new(ax, who)
    if xlim is not None:
        axes.set_xlim(xlim[0], xlim[1] + (xlim[1] - xlim[0]) * 0.02)
    for i, (label, values) in enumerate(rows.items()):
        _draw_score(axes, values, len(rows) - 1 - i, colors[i] if colors is not None else f"C{i % 10}",
                    (notes or {}).get(label, ""), xlim)
    axes.set_yticks(np.arange(len(rows))[::-1], list(rows))
    axes.set_ylim(-0.7, len(rows) - 0.3)
    axes.set_xlabel(xlabel)
    axes.set_title(title)
    axes.grid(True, axis="x", alpha=0.3)
    return save_figure(figure, path)


def plot_signal_propagation(results: Mapping[str, SignalPropagation], *,
                            title: str = "Signal propagation through depth",
                            path: StrPath | None = None) -> Figure:
    """Forward-activation and backward-gradient standard deviations per layer, one line per label.

    Two log-scale panels, from :func:`functrain.diagnostics.signal_propagation`: the std of the
    pre-activations (left) and of the gradients with respect to them (right). A dashed line marks
    std = 1. Non-finite values (float32 overflow) are not drawn.

    Args:
        results: label (e.g. ``"standard_normal + relu"``) -> :class:`SignalPropagation`.
        title: the figure's title.
        path: write the figure to this PNG file.

    Returns:
        The figure (two axes).

    Raises:
        TypeError: an entry that is not a :class:`SignalPropagation`.
        ValueError: empty ``results``.
        ImportError: if matplotlib is missing.

    Example:
        >>> sp = ft.diagnostics.SignalPropagation(jnp.array([1.0, 2.0]), jnp.array([1.0, 0.5]))
        >>> fig = ft.plotting.plot_signal_propagation({"he": sp})
        >>> len(fig.axes), fig.axes[0].get_yscale()
        (2, 'log')
    """
    who = "plot_signal_propagation"
    for label, res in labelled(results, "results", who).items():
        if not isinstance(res, SignalPropagation):
            fail(who, f"results[{label!r}]", "a SignalPropagation", res, error=TypeError)
    fig, (forward, backward) = panels(1, 2, width=5.2, title=title)
    backward.sharey(forward)
    for axes, subtitle, ylabel, field in (
            (forward, "forward: pre-activations", "std of pre-activations", "forward_std"),
            (backward, "backward: gradients", "std of gradient w.r.t. pre-activations", "backward_std")):
        for label, res in results.items():
            values = np.asarray(getattr(res, field), np.float64)
            values = np.where(np.isfinite(values) & (values > 0), values, np.nan)
            axes.plot(np.arange(1, int(values.shape[0]) + 1), values, marker="o", markersize=3, label=label)
        axes.axhline(1.0, color="grey", linestyle="--", linewidth=1)
        finish(axes, subtitle, "layer", ylabel, log_y=True)
        axes.legend(loc="best", fontsize="small")
    return save_figure(fig, path)


def plot_schedule(schedule: Schedule | Mapping[str, Schedule], steps: int, *,
                  title: str = "Learning-rate schedule", ylabel: str = "learning rate",
                  label: str = "schedule", log_y: bool = False, path: StrPath | None = None) -> Figure:
    """Plot one schedule, or several by label, over steps ``0 .. steps - 1``.

    Schedules (pure functions of the step, optax's too) are evaluated with ``jax.vmap``.

    Args:
        schedule: a schedule, or a mapping from label to schedule.
        steps: the number of steps to show (>= 1).
        title: the axes' title.
        ylabel: y-axis label.
        label: legend label of a single schedule.
        log_y: logarithmic y axis.
        path: write the figure to this PNG file.

    Returns:
        The figure.

    Raises:
        TypeError: a schedule that is not callable.
        ValueError: ``steps < 1`` or an empty mapping.
        ImportError: if matplotlib is missing.

    Example:
        >>> fig = ft.plotting.plot_schedule(ft.optim.schedules.cosine_decay(0.1, 100), 100)
        >>> line = fig.axes[0].lines[0]
        >>> round(float(line.get_ydata()[0]), 4), len(line.get_xdata())
        (0.1, 100)
    """
    who = "plot_schedule"
    n = check_int(steps, who, "steps", low=1)
    check_bool(log_y, who, "log_y")
    named: Mapping[str, Schedule] = schedule if isinstance(schedule, Mapping) else {label: schedule}
    for name, fn in labelled(named, "schedule", who).items():
        if not callable(fn):
            fail(who, f"schedule[{name!r}]" if isinstance(schedule, Mapping) else "schedule",
                 "a schedule (a callable step -> value)", fn, error=TypeError)
    fig, axes = axes_or_new(None, who)
    xs = jnp.arange(n)
    for name, fn in named.items():
        values = np.broadcast_to(np.asarray(jax.vmap(fn)(xs), np.float64), (n,))
        axes.plot(np.asarray(xs), values, label=name, linewidth=1.8)
    finish(axes, title, "step", ylabel, log_y, integer_x=False)
    axes.legend(loc="best", fontsize="small")
    return save_figure(fig, path)


def plot_lr_find(result: LRFindResult, *, title: str = "Learning-rate range test",
                 path: StrPath | None = None, ax: Axes | None = None) -> Figure:
    """The smoothed loss against the learning rate (log axis) of :func:`functrain.train.lr_find`.

    One test is one line, a vmapped batch of tests their mean ± one std (NaN after a test stopped
    left out); dashed and dotted lines mark the two suggestions (medians over the tests).

    Args:
        result: an :class:`~functrain.train.LRFindResult`, fields ``(steps,)`` or ``(tests, steps)``.
        title: the axes' title.
        path: write the figure to this PNG file.
        ax: draw into these axes instead of a new figure.

    Returns:
        The figure.

    Raises:
        TypeError: ``result`` is not an ``LRFindResult``; ImportError: matplotlib is missing.

    Example:
        >>> lrs = jnp.logspace(-3, 0, 5)
        >>> r = ft.train.LRFindResult(lrs, jnp.array([1.0, 0.9, 0.5, 0.4, jnp.nan]), lrs, lrs[1],
        ...                           lrs[3] / 10, jnp.array(4))
        >>> fig = ft.plotting.plot_lr_find(r)
        >>> fig.axes[0].get_xscale(), len(fig.axes[0].lines)  # the curve and two suggestions
        ('log', 3)
    """
    from functrain.train.lr_find import LRFindResult as _Result  # imported here: plotting sits on top
    if not isinstance(cast(object, result), _Result):  # the static type is not enforced
        fail("plot_lr_find", "result", "an LRFindResult (from ft.train.lr_find)", result, error=TypeError)
    lrs = np.asarray(result.lrs, np.float64).reshape(-1, np.shape(result.lrs)[-1])[0]
    mean, std = nan_mean_std(np.asarray(result.losses, np.float64).reshape(-1, lrs.shape[0]))
    figure, axes = axes_or_new(ax, "plot_lr_find")
    (line,) = axes.plot(lrs, mean, linewidth=1.8, label="smoothed loss")
    axes.fill_between(lrs, mean - std, mean + std, color=line.get_color(), alpha=0.2, linewidth=0)
    for value, style, label in ((result.suggestion, "--", "steepest descent"),
                                (result.min_loss_suggestion, ":", "minimum / 10")):
        v = np.asarray(value, np.float64).reshape(-1)
        if np.isfinite(v).any():
            lr = float(np.median(v[np.isfinite(v)]))
            axes.axvline(lr, color="0.3", linestyle=style, label=f"{label}: {lr:.2g}")
    axes.set_xscale("log")
    finish(axes, title, "learning rate", "loss (smoothed)", log_y=False, integer_x=False)
    axes.legend(loc="best", fontsize="small")
    return save_figure(figure, path)
