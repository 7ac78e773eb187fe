"""Plots: files are written as valid PNGs with titles, axis labels and the right legends."""

from __future__ import annotations

import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.image import imread

from functrain import initializers as I
from functrain.diagnostics import SignalPropagation, signal_propagation
from functrain.plotting import plot_curves, plot_schedule, plot_signal_propagation
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


def test_bad_arguments_are_reported() -> None:
    with pytest.raises(ValueError, match=r"plot_curves: argument 'histories' is empty"):
        plot_curves({})
    with pytest.raises(ValueError, match=r"plot_curves: histories\['x'\] must have shape \(seeds, epochs\)"
                                         r".*got shape \(2, 3, 4\)"):
        plot_curves({"x": np.zeros((2, 3, 4))})
    with pytest.raises(TypeError, match=r"plot_curves: argument 'histories' must be a mapping"):
        plot_curves([np.zeros(3)])  # type: ignore[arg-type]  # a list, not a mapping
    with pytest.raises(TypeError, match=r"plot_signal_propagation: results\['a'\] must be a SignalPropagation"):
        plot_signal_propagation({"a": (1, 2)})  # type: ignore[dict-item]  # a plain tuple
    with pytest.raises(ValueError, match=r"plot_schedule: argument 'steps' must be an int >= 1, got 0"):
        plot_schedule(lambda s: jnp.asarray(s), 0)
    with pytest.raises(TypeError, match=r"plot_schedule: schedule 'x' must be callable"):
        plot_schedule({"x": 0.1}, 5)  # type: ignore[dict-item]  # a float, not a schedule


def test_missing_matplotlib_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(ImportError, match=r"plot_curves needs matplotlib.*pip install 'functrain\[examples\]'"):
        plot_curves({"a": np.zeros(3)})
