"""Figures for the lesson: training curves over seeds, signal propagation, learning-rate schedules.

matplotlib is an optional dependency (``pip install 'functrain[examples]'``), imported inside each
function. Figures are built as ``matplotlib.figure.Figure`` objects directly, without ``pyplot``,
so no global figure registry or interactive backend is involved; PNGs are rendered with Agg.
Every function returns the ``Figure`` and, given ``path``, also writes it there as a PNG.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import jax
import jax.numpy as jnp
import numpy as np

from functrain.diagnostics import SignalPropagation
from functrain.typing import ArrayLike, Schedule

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["plot_curves", "plot_schedule", "plot_signal_propagation"]

StrPath = str | os.PathLike[str]


def _figure_class(who: str) -> type[Figure]:
    try:
        from matplotlib.figure import Figure
    except ImportError as e:
        raise ImportError(
            f"functrain.plotting.{who} needs matplotlib, which is an optional dependency: "
            "pip install 'functrain[examples]'"
        ) from e
    return Figure


def _new_figure(who: str, ncols: int = 1, width: float = 6.4) -> Figure:
    return _figure_class(who)(figsize=(width * ncols if ncols > 1 else width, 4.4), layout="constrained")


def _integer_x(axes: Axes) -> None:
    from matplotlib.ticker import MaxNLocator

    axes.xaxis.set_major_locator(MaxNLocator(integer=True))


def _save(fig: Figure, path: StrPath | None) -> Figure:
    if path is not None:
        # Figure.savefig renders PNGs with the Agg canvas; no pyplot, no global backend state.
        fig.savefig(os.fspath(path), format="png", dpi=120)
    return fig


def _check_labels(items: Mapping[str, Any], name: str, who: str) -> None:
    if not isinstance(items, Mapping):
        raise TypeError(f"{who}: argument '{name}' must be a mapping from label to data, "
                        f"got {type(items).__name__}")
    if len(items) == 0:
        raise ValueError(f"{who}: argument '{name}' is empty; give at least one labelled entry")


def plot_curves(
    histories: Mapping[str, ArrayLike],
    *,
    title: str = "Training curves",
    xlabel: str = "epoch",
    ylabel: str = "value",
    log_y: bool = False,
    path: StrPath | None = None,
    ax: Axes | None = None,
) -> Figure:
    """Plot per-epoch curves, one per label, as the mean over seeds with a ± one-std band.

    Args:
        histories: label -> values of shape ``(seeds, epochs)`` (or ``(epochs,)`` for one run).
            NaN entries (e.g. epochs after a seed stopped early) are left out of the mean and std.
        title: the axes' title.
        xlabel: x-axis label.
        ylabel: y-axis label (e.g. ``"test accuracy"``).
        log_y: logarithmic y axis (for losses).
        path: write the figure to this PNG file.
        ax: draw into these axes (of your own figure) instead of a new figure.

    Returns:
        The figure (``ax.figure`` if ``ax`` was given).

    Raises:
        ValueError: empty ``histories``, or values that are not 1-D/2-D with at least one epoch.
        ImportError: if matplotlib is missing, saying how to install it.
    """
    who = "plot_curves"
    _check_labels(histories, "histories", who)
    curves = {}
    for label, values in histories.items():
        arr = np.asarray(values, np.float64)
        if arr.ndim == 1:
            arr = arr[None]
        if arr.ndim != 2 or arr.shape[1] == 0 or arr.shape[0] == 0:
            raise ValueError(
                f"{who}: histories[{label!r}] must have shape (seeds, epochs) or (epochs,) with at "
                f"least one epoch, got shape {np.shape(values)}"
            )
        curves[label] = arr
    if ax is None:
        figure = _new_figure(who)
        axes = figure.add_subplot()
    else:
        axes = ax
        parent = ax.figure
        # the axes may live in a SubFigure; save the whole (root) figure
        figure = parent if isinstance(parent, _figure_class(who)) else parent.figure
    for label, arr in curves.items():
        epochs = np.arange(1, arr.shape[1] + 1)
        present = np.isfinite(arr)
        n = present.sum(0)
        filled = np.where(present, arr, 0.0)
        mean = np.where(n > 0, filled.sum(0) / np.maximum(n, 1), np.nan)
        var = np.where(present, (arr - mean) ** 2, 0.0).sum(0) / np.maximum(n, 1)
        std = np.where(n > 0, np.sqrt(var), np.nan)
        seeds = arr.shape[0]
        (line,) = axes.plot(epochs, mean, label=f"{label} ({seeds} seeds)" if seeds > 1 else label,
                            linewidth=1.8)
        if seeds > 1:
            axes.fill_between(epochs, mean - std, mean + std, color=line.get_color(), alpha=0.2,
                              linewidth=0)
    if log_y:
        axes.set_yscale("log")
    axes.set_title(title)
    axes.set_xlabel(xlabel)
    axes.set_ylabel(ylabel)
    axes.grid(True, alpha=0.3)
    _integer_x(axes)
    several = any(arr.shape[0] > 1 for arr in curves.values())
    axes.legend(loc="best", fontsize="small", title="mean ± std over seeds" if several else None,
                title_fontsize="small")
    return _save(figure, path)


def plot_signal_propagation(
    results: Mapping[str, SignalPropagation],
    *,
    title: str = "Signal propagation through depth",
    path: StrPath | None = None,
) -> Figure:
    """Forward-activation and backward-gradient standard deviations per layer, one line per label.

    Two panels with logarithmic y axes: the std of the pre-activations (left) and of the gradients
    with respect to them (right), from :func:`functrain.diagnostics.signal_propagation`. A dashed
    line marks std = 1; exploding initializations climb away from it, vanishing ones fall.
    Non-finite values (float32 overflow) are not drawn.

    Args:
        results: label (e.g. ``"standard_normal + relu"``) -> :class:`SignalPropagation`.
        title: the figure's title.
        path: write the figure to this PNG file.

    Returns:
        The figure (two axes).

    Raises:
        ValueError: empty ``results``.
        TypeError: an entry that is not a :class:`SignalPropagation`.
        ImportError: if matplotlib is missing, saying how to install it.
    """
    who = "plot_signal_propagation"
    _check_labels(results, "results", who)
    for label, res in results.items():
        if not isinstance(res, SignalPropagation):
            raise TypeError(f"{who}: results[{label!r}] must be a SignalPropagation, "
                            f"got {type(res).__name__}")
    fig = _new_figure(who, ncols=2, width=5.2)
    forward, backward = fig.subplots(1, 2, sharey=True)
    panels = ((forward, "forward: pre-activations", "std of pre-activations", "forward_std"),
              (backward, "backward: gradients", "std of gradient w.r.t. pre-activations",
               "backward_std"))
    for axes, subtitle, ylabel, field in panels:
        for label, res in results.items():
            values = np.asarray(getattr(res, field), np.float64)
            values = np.where(np.isfinite(values) & (values > 0), values, np.nan)
            axes.plot(np.arange(1, values.shape[0] + 1), values, marker="o", markersize=3,
                      label=label)
        axes.axhline(1.0, color="grey", linestyle="--", linewidth=1)
        axes.set_yscale("log")
        axes.set_title(subtitle)
        axes.set_xlabel("layer")
        axes.set_ylabel(ylabel)
        axes.grid(True, which="major", alpha=0.3)
        _integer_x(axes)
        axes.legend(loc="best", fontsize="small")
    fig.suptitle(title)
    return _save(fig, path)


def plot_schedule(
    schedule: Schedule | Mapping[str, Schedule],
    steps: int,
    *,
    title: str = "Learning-rate schedule",
    ylabel: str = "learning rate",
    label: str = "schedule",
    log_y: bool = False,
    path: StrPath | None = None,
) -> Figure:
    """Plot one schedule, or several by label, over steps ``0 .. steps - 1``.

    Schedules are evaluated with ``jax.vmap`` over the step numbers (they are pure functions of the
    step, see :class:`functrain.typing.Schedule`; optax schedules work too).

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
        ValueError: ``steps < 1`` or an empty mapping.
        TypeError: a schedule that is not callable.
        ImportError: if matplotlib is missing, saying how to install it.
    """
    who = "plot_schedule"
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"{who}: argument 'steps' must be an int >= 1, got {steps!r}")
    named: Mapping[str, Schedule] = schedule if isinstance(schedule, Mapping) else {label: schedule}
    _check_labels(named, "schedule", who)
    for name, fn in named.items():
        if not callable(fn):
            raise TypeError(f"{who}: schedule {name!r} must be callable (step -> value), got {fn!r}")
    fig = _new_figure(who)
    axes = fig.add_subplot()
    xs = jnp.arange(steps)
    for name, fn in named.items():
        values = np.broadcast_to(np.asarray(jax.vmap(fn)(xs), np.float64), (steps,))
        axes.plot(np.asarray(xs), values, label=name, linewidth=1.8)
    if log_y:
        axes.set_yscale("log")
    axes.set_title(title)
    axes.set_xlabel("step")
    axes.set_ylabel(ylabel)
    axes.grid(True, alpha=0.3)
    axes.legend(loc="best", fontsize="small")
    return _save(fig, path)
