"""The private helpers of :mod:`functrain.plotting`: the lazy matplotlib import, a panel or a new
figure, axis finishing, argument checks and the mean/std over seeds of curves with NaN gaps."""

# matplotlib's stubs leave the ``**kwargs`` of nearly every Axes/Figure method unannotated, so
# pyright reports each method as partially unknown; this one rule is off in this file only.
# pyright: reportUnknownMemberType=false

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeAlias

import numpy as np

from functrain._validate import fail
from functrain.typing import ArrayLike

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure
    from typing_extensions import TypeIs

StrPath = str | os.PathLike[str]
Values: TypeAlias = ArrayLike | Sequence[float] | Sequence[Sequence[float]]  # an array or (nested) lists


def figure_class(who: str) -> type[Figure]:
    try:
        from matplotlib.figure import Figure
    except ImportError as e:
        raise ImportError(f"functrain.plotting.{who} needs matplotlib, which is an optional "
                          "dependency: pip install 'functrain[examples]'") from e
    return Figure


def axes_or_new(ax: Axes | None, who: str) -> tuple[Figure, Axes]:
    """``ax`` and its root figure, or a new single-panel figure."""
    cls = figure_class(who)
    if ax is None:
        figure = cls(figsize=(6.4, 4.4), layout="constrained")
        return figure, figure.add_subplot()
    parent = ax.figure  # may be a SubFigure: save the whole (root) figure
    return (parent if isinstance(parent, cls) else parent.figure), ax


def finish(axes: Axes, title: str, xlabel: str, ylabel: str, log_y: bool, integer_x: bool = True) -> None:
    from matplotlib.ticker import MaxNLocator

    if log_y:
        axes.set_yscale("log")
    axes.set_title(title)
    axes.set_xlabel(xlabel)
    axes.set_ylabel(ylabel)
    axes.grid(True, alpha=0.3)
    if integer_x:
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))


def labelled(items: object, name: str, who: str) -> Mapping[str, Any]:
    if not _is_mapping(items):
        fail(who, name, "a mapping from label to data", items, error=TypeError)
    if len(items) == 0:
        fail(who, name, "a non-empty mapping from label to data", items)
    return items


def _is_mapping(items: object) -> TypeIs[Mapping[str, Any]]:
    return isinstance(items, Mapping)


def _is_sequence(value: object) -> TypeIs[Sequence[object]]:
    return isinstance(value, Sequence)


def check_pair(value: object, who: str, name: str) -> None:
    if value is not None and (not _is_sequence(value) or len(value) != 2):
        fail(who, name, "a pair (low, high) or None", value, error=TypeError)


def curve_array(values: Values, label: str, who: str) -> np.ndarray[Any, Any]:
    arr = np.asarray(values, np.float64)
    if arr.ndim == 1:
        arr = arr[None]
    if arr.ndim != 2 or 0 in arr.shape:
        fail(who, f"histories[{label!r}]",
             "an array of shape (seeds, epochs) or (epochs,) with at least one epoch", np.asarray(values))
    return arr


def nan_mean_std(arr: np.ndarray[Any, Any]) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    """Mean and population std over axis 0, leaving NaN entries out (NaN where all are)."""
    present = np.isfinite(arr)
    n = present.sum(0)
    mean = np.where(n > 0, np.where(present, arr, 0.0).sum(0) / np.maximum(n, 1), np.nan)
    var = np.where(present, (arr - mean) ** 2, 0.0).sum(0) / np.maximum(n, 1)
    return mean, np.where(n > 0, np.sqrt(var), np.nan)
