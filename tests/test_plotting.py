"""Plots: files are written as valid PNGs with titles, axis labels and the right legends."""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from matplotlib.axes import Axes
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure
from matplotlib.image import imread
from matplotlib.lines import Line2D

from functrain import initializers as I
from functrain.diagnostics import SignalPropagation, signal_propagation
from functrain.plotting import (
    Values,
    panels,
    plot_curves,
    plot_schedule,
    plot_scores,
    plot_signal_propagation,
    save_figure,
    shared_legend,
)
from functrain.typing import Array, ArrayLike

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _check_png(path: Path) -> None:
    assert path.is_file()
    assert path.read_bytes()[:8] == PNG_MAGIC
    image = imread(path)  # decodes the whole file
    assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100
    assert float(np.std(image[..., :3])) > 0.0  # something was drawn


def _ydata(ax: Axes, position: int) -> np.ndarray:
    return np.asarray(ax.lines[position].get_ydata(), np.float64)


def _xy(line: Line2D) -> tuple[float, float]:
    """The first point of a line."""
    return float(np.asarray(line.get_xdata())[0]), float(np.asarray(line.get_ydata())[0])


def _legend_texts(ax: Axes) -> list[str]:
    legend = ax.get_legend()
    assert legend is not None
    return [t.get_text() for t in legend.get_texts()]


def test_plot_curves_draws_mean_and_std_band(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    histories: dict[str, ArrayLike] = {
        "baseline": rng.uniform(0.1, 0.5, size=(3, 8)),
        "adam": jnp.asarray(rng.uniform(0.6, 0.9, size=(3, 8))),
        "one run": np.linspace(0.2, 0.7, 8),
    }
    out = tmp_path / "curves.png"
    fig = plot_curves(histories, title="Test accuracy", ylabel="accuracy", path=out)
    assert isinstance(fig, Figure)
    _check_png(out)
    (ax,) = fig.axes
    assert ax.get_title() == "Test accuracy"
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("epoch", "accuracy")
    assert _legend_texts(ax) == ["baseline (3 seeds)", "adam (3 seeds)", "one run"]
    legend = ax.get_legend()
    assert legend is not None and legend.get_title().get_text() == "mean ± std over seeds"
    baseline = np.asarray(histories["baseline"])
    np.testing.assert_array_equal(np.asarray(ax.lines[0].get_xdata(), np.float64), np.arange(1, 9))
    np.testing.assert_allclose(_ydata(ax, 0), baseline.mean(0))
    assert len(ax.collections) == 2  # one band per multi-seed curve, none for a single run
    band = np.asarray(ax.collections[0].get_paths()[0].vertices, np.float64)
    np.testing.assert_allclose(band[:, 1].max(), (baseline.mean(0) + baseline.std(0)).max(), rtol=1e-6)
    np.testing.assert_allclose(band[:, 1].min(), (baseline.mean(0) - baseline.std(0)).min(), rtol=1e-6)


def test_plot_curves_ignores_nan_epochs_and_draws_into_given_axes(tmp_path: Path) -> None:
    runs = np.array([[1.0, 0.5, 0.25], [2.0, 1.0, np.nan]])  # second seed stopped early
    fig = Figure()
    ax = fig.add_subplot()
    got = plot_curves({"loss": runs}, ylabel="loss", log_y=True, ax=ax, path=tmp_path / "a.png")
    assert got is fig
    _check_png(tmp_path / "a.png")
    np.testing.assert_allclose(_ydata(ax, 0), [1.5, 0.75, 0.25])
    assert ax.get_yscale() == "log"


def test_plot_signal_propagation(tmp_path: Path) -> None:
    key = jax.random.key(0)
    results = {
        "standard_normal + relu": signal_propagation(I.standard_normal(), jax.nn.relu, 12, 64, key),
        "glorot_normal + tanh": signal_propagation(I.glorot_normal(), jnp.tanh, 12, 64, key),
        "he_normal + relu": signal_propagation(I.he_normal(), jax.nn.relu, 12, 64, key),
    }
    out = tmp_path / "signal.png"
    fig = plot_signal_propagation(results, path=out)
    _check_png(out)
    sup = fig.get_suptitle()
    assert sup == "Signal propagation through depth"
    assert len(fig.axes) == 2
    for ax, field in zip(fig.axes, ("forward_std", "backward_std"), strict=True):
        assert ax.get_title() and ax.get_xlabel() == "layer" and "std" in ax.get_ylabel()
        assert ax.get_yscale() == "log"
        assert _legend_texts(ax) == list(results)
        np.testing.assert_allclose(_ydata(ax, 0),
                                   getattr(results["standard_normal + relu"], field), rtol=1e-6)
    inf_res = SignalPropagation(jnp.array([1.0, jnp.inf]), jnp.array([1.0, 2.0]))
    fig2 = plot_signal_propagation({"overflow": inf_res})
    assert np.isnan(_ydata(fig2.axes[0], 0)[1])  # overflowed values are not drawn


def test_plot_schedule_single_and_several(tmp_path: Path) -> None:
    def decay(step: ArrayLike) -> Array:
        return 0.1 * 0.98 ** jnp.asarray(step, jnp.float32)

    def constant(step: ArrayLike) -> Array:
        return jnp.full((), 0.05)

    out = tmp_path / "lr.png"
    fig = plot_schedule({"exponential": decay, "constant": constant}, 50, path=out)
    _check_png(out)
    (ax,) = fig.axes
    assert ax.get_title() == "Learning-rate schedule"
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("step", "learning rate")
    assert _legend_texts(ax) == ["exponential", "constant"]
    np.testing.assert_allclose(_ydata(ax, 0), 0.1 * 0.98 ** np.arange(50), rtol=1e-5)
    np.testing.assert_allclose(_ydata(ax, 1), np.full(50, 0.05))
    single = plot_schedule(decay, 10, label="decay", title="LR", log_y=True)
    assert _legend_texts(single.axes[0]) == ["decay"] and single.axes[0].get_title() == "LR"


STYLE = re.compile(r"^[\w.]+: argument '[\w.\[\]']+' must be .+, got .+$", re.S)


def _styled(exc: type[Exception], fn: Callable[..., object], *args: object, **kwargs: object) -> str:
    with pytest.raises(exc) as info:
        fn(*args, **kwargs)
    text = str(info.value)
    assert STYLE.match(text), text
    return text


def test_bad_arguments_are_reported_in_the_one_style() -> None:
    assert "argument 'histories' must be a non-empty mapping" in _styled(ValueError, plot_curves, {})
    text = _styled(ValueError, plot_curves, {"x": np.zeros((2, 3, 4))})
    assert "argument 'histories['x']' must be an array of shape (seeds, epochs) or (epochs,)" in text
    assert text.endswith("got an array of shape (2, 3, 4) and dtype float64")
    _styled(ValueError, plot_curves, {"x": np.zeros((2, 0))})
    assert "argument 'histories' must be a mapping" in _styled(TypeError, plot_curves, [np.zeros(3)])
    _styled(TypeError, plot_curves, {"x": np.zeros(3)}, log_y="yes")
    _styled(ValueError, plot_curves, {"x": np.zeros(3)}, note_at="middle")
    _styled(TypeError, plot_curves, {"x": np.zeros(3)}, ylim=(0.0, 1.0, 2.0))
    assert "argument 'results['a']' must be a SignalPropagation" in _styled(
        TypeError, plot_signal_propagation, {"a": (1, 2)})
    assert _styled(ValueError, plot_schedule, jnp.asarray, 0).endswith(
        "argument 'steps' must be an int >= 1, got 0")
    assert "argument 'schedule['x']' must be a schedule" in _styled(TypeError, plot_schedule, {"x": 0.1}, 5)
    assert "argument 'scores' must be a non-empty mapping" in _styled(ValueError, plot_scores, {})
    assert "argument 'scores['a']' must be at least one value" in _styled(ValueError, plot_scores, {"a": []})
    _styled(ValueError, plot_scores, {"a": [1.0]}, colors=["red", "blue"])
    _styled(TypeError, plot_scores, {"a": [1.0]}, xlim=0.5)
    _styled(TypeError, panels, "nonsense")
    _styled(ValueError, panels, 1, 0)
    _styled(ValueError, panels, width=-1.0)
    fig, (ax,) = panels()
    _styled(ValueError, shared_legend, fig, ax, ncol=0)
    _styled(ValueError, save_figure, fig, None, dpi=0)


def test_panels_shared_legend_and_save_figure(tmp_path: Path) -> None:
    fig, axes = panels(2, 3, width=2.0, height=1.5, title="grid")
    assert len(axes) == 6 and fig.get_suptitle() == "grid"
    np.testing.assert_allclose(fig.get_size_inches(), [6.0, 3.0])
    # row by row: the first row's axes sit above the second row's, left to right within a row
    boxes = [a.get_position() for a in axes]
    assert boxes[0].y0 > boxes[3].y0 and boxes[0].x0 < boxes[1].x0 < boxes[2].x0
    plot_curves({"a": np.ones((2, 4)), "b": np.zeros(4)}, ax=axes[0], legend=False)
    assert axes[0].get_legend() is None
    assert [line.get_label() for line in axes[0].lines] == ["a", "b"]  # no "(2 seeds)" suffix
    shared_legend(fig, axes[0], title="rows", ncol=2)
    (legend,) = fig.legends
    assert [t.get_text() for t in legend.get_texts()] == ["a", "b"]
    assert legend.get_title().get_text() == "rows"
    out = tmp_path / "grid.png"
    assert save_figure(fig, out, dpi=50) is fig
    _check_png(out)
    assert imread(out).shape[:2] == (150, 300)  # 3 x 6 inches at 50 dpi
    assert save_figure(fig, None) is fig


def test_plot_curves_ylim_and_note() -> None:
    fig = plot_curves({"loss": [1.0, 0.1, 1e9]}, log_y=True, ylim=(0.05, 2.0),
                      note="above the axis:\nloss: up to 1e9", note_at="lower left")
    (ax,) = fig.axes
    np.testing.assert_allclose(ax.get_ylim(), (0.05, 2.0))
    (text,) = ax.texts
    assert text.get_text() == "above the axis:\nloss: up to 1e9"
    assert (text.get_horizontalalignment(), text.get_verticalalignment()) == ("left", "bottom")
    assert text.get_bbox_patch() is not None


def test_plot_scores_rows_values_and_off_axis(tmp_path: Path) -> None:
    scores: dict[str, Values] = {"sgd": [0.90, 0.94], "adam": np.array([0.95, 0.97, 0.96]),
                                    "ensemble": [0.985], "diverged": [0.1, 0.1]}
    out = tmp_path / "scores.png"
    fig = plot_scores(scores, title="Test accuracy", xlabel="accuracy", xlim=(0.8, 1.0),
                      notes={"ensemble": "one ensemble", "diverged": "2/2 diverged"},
                      colors=["C0", "C1", "black", "C3"], path=out)
    _check_png(out)
    (ax,) = fig.axes
    assert (ax.get_title(), ax.get_xlabel()) == ("Test accuracy", "accuracy")
    np.testing.assert_allclose(ax.get_xlim(), (0.8, 1.004))
    # the first label on top: tick labels bottom-up are the labels reversed
    ticks = {t.get_text(): y for t, y in zip(ax.get_yticklabels(), ax.get_yticks())}
    assert ticks == {"sgd": 3, "adam": 2, "ensemble": 1, "diverged": 0}
    adam = np.array([0.95, 0.97, 0.96])
    assert [t.get_text() for t in ax.texts] == [
        "0.9200 ± 0.0200", f"{adam.mean():.4f} ± {adam.std():.4f}", "0.9850 (one ensemble)",
        "0.1000 (off the axis; 2/2 diverged)"]
    # dots at the means (errorbar data lines), the off-axis row as an arrow at the left edge
    dots = [line for line in ax.lines if line.get_marker() == "o"]
    np.testing.assert_allclose([_xy(d) for d in dots], [(0.92, 3), (adam.mean(), 2), (0.985, 1)])
    (arrow,) = [line for line in ax.lines if line.get_marker() == "<"]
    assert _xy(arrow) == (0.8, 0.0)
    assert arrow.get_color() == "C3"
    # a ± std bar for multi-seed rows (sgd: 0.92 ± 0.02), none for a single value
    bars = [c for c in ax.collections if isinstance(c, LineCollection) and len(c.get_segments()) == 1]
    sgd_bar = np.asarray(bars[0].get_segments()[0])
    np.testing.assert_allclose(sgd_bar[:, 0], [0.90, 0.94])
    assert len(bars) == 2


def test_missing_matplotlib_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(ImportError, match=r"plot_curves needs matplotlib.*pip install 'functrain\[examples\]'"):
        plot_curves({"a": np.zeros(3)})
