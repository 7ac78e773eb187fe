"""lr_find: the exponential schedule reaches the optimizer, the smoothing / stopping / suggestions
against a float64 reimplementation of fastai's loop, 8 seeds in one program equal 8 solo runs,
candidate ranges vmapped, the suggestion on digits against a grid of fixed rates (slow), the plot,
errors."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _typed import jit

from functrain import _tree, data, layers, optim, plotting, train
from functrain.train import LRFindResult, lr_find
from functrain.typing import Array, LossFn, Metrics, PRNGKey, PyTree

STYLE = re.compile(r"^[\w.]+: argument '[\w.\[\]']+' must be .+, got .+$", re.S)
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def linear(params: PyTree, model_state: PyTree, batch: PyTree,
           key: PRNGKey) -> tuple[Array, tuple[PyTree, Metrics]]:
    return jnp.sum(params), (model_state, {})  # constant gradient 1: w_t = -sum_{i<t} lr_i


def least_squares(params: PyTree, model_state: PyTree, batch: PyTree,
                  key: PRNGKey) -> tuple[Array, tuple[PyTree, Metrics]]:
    x, y = batch
    return jnp.mean((x @ params - y) ** 2), (model_state, {})


def _regression() -> tuple[Array, Array]:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((96, 3)).astype(np.float32)
    return jnp.asarray(x), jnp.asarray(x @ np.array([1.0, -1.0, 2.0], np.float32)
                                       + 0.3 * rng.standard_normal(96).astype(np.float32))


def test_the_optimizer_follows_the_exponential_schedule() -> None:
    steps, low, high = 25, 1e-3, 10.0
    result = lr_find(linear, optim.sgd, jnp.zeros(2), (), (jnp.zeros((8, 1)),), jax.random.key(0),
                     min_lr=low, max_lr=high, steps=steps, batch_size=4, diverge_factor=None)
    lrs = low * (high / low) ** (np.arange(steps) / (steps - 1))
    np.testing.assert_allclose(np.asarray(result.lrs), lrs, rtol=1e-5)
    before = np.concatenate([[0.0], np.cumsum(lrs)[:-1]])  # the loss is measured before step t's update
    np.testing.assert_allclose(np.asarray(result.raw_losses), -2 * before, rtol=1e-4, atol=1e-6)
    assert int(result.steps_run) == steps and not np.isnan(np.asarray(result.losses)).any()


def _fastai_reference(raw: np.ndarray, lrs: np.ndarray, beta: float, factor: float, skip_start: int,
                      skip_end: int, k: int) -> tuple[np.ndarray, int, float, float]:
    """fastai's smoothing and stop, then the windowed steepest descent, in float64."""
    avg, best = 0.0, np.inf
    smooth: list[float] = []
    for t, loss in enumerate(raw):
        avg = beta * avg + (1 - beta) * loss
        s = avg / (1 - beta ** (t + 1))
        best = min(best, s)
        smooth.append(s)
        if s > factor * best or not np.isfinite(s):
            break
    sm = np.array(smooth)
    n, low = len(sm), int(np.argmin(sm))
    candidates = [((sm[i + k] - sm[i]) / (np.log(lrs[i + k]) - np.log(lrs[i])), i)
                  for i in range(skip_start, n) if i + k < n - skip_end and i + k <= low]
    steep = lrs[min(candidates)[1] + k // 2] if candidates else np.nan
    return sm, n, float(steep), float(lrs[low] / 10)


def test_smoothing_stop_and_suggestions_match_a_float64_reference() -> None:
    x, y = _regression()
    result = lr_find(least_squares, lambda lr: optim.sgd(lr, momentum=0.5), jnp.zeros(3), (), (x, y),
                     jax.random.key(1), min_lr=1e-3, max_lr=3.0, steps=60, batch_size=16, smoothing=0.9,
                     skip_start=5, skip_end=3, window=4)
    n = int(result.steps_run)
    raw = np.asarray(result.raw_losses, np.float64)
    assert 10 < n < 60 and np.isnan(raw[n:]).all() and np.isfinite(raw[:n]).all()
    lrs = np.asarray(result.lrs, np.float64)
    smooth, n_ref, steep, by_min = _fastai_reference(raw[:n], lrs, 0.9, 4.0, 5, 3, 4)
    assert n_ref == n
    np.testing.assert_allclose(np.asarray(result.losses)[:n], smooth, rtol=1e-5)
    assert np.isnan(np.asarray(result.losses)[n:]).all()
    np.testing.assert_allclose(float(result.suggestion), steep, rtol=1e-6)
    np.testing.assert_allclose(float(result.min_loss_suggestion), by_min, rtol=1e-6)


def _classifier() -> tuple[LossFn, PyTree, PyTree, tuple[Array, Array]]:
    rng = np.random.default_rng(2)
    x = rng.standard_normal((128, 6)).astype(np.float32)
    y = (x[:, 0] + x[:, 1] > 0).astype(np.int32) + (x[:, 2] > 1).astype(np.int32)
    model = layers.serial(layers.Dense(8), layers.Relu, layers.Dense(3))
    params, state, _ = model.init(jax.random.key(3), (-1, 6))
    return train.classifier_loss(model.apply, train=True), params, state, (jnp.asarray(x), jnp.asarray(y))


def _assert_same(a: LRFindResult, b: LRFindResult) -> None:
    for name, u, v in zip(LRFindResult._fields, a, b):
        np.testing.assert_allclose(np.asarray(u), np.asarray(v), rtol=1e-5, atol=1e-6, equal_nan=True,
                                   err_msg=name)


def test_eight_seeds_in_one_program_equal_eight_solo_runs() -> None:
    loss_fn, params, state, xy = _classifier()
    keys = jax.random.split(jax.random.key(4), 8)
    options: dict[str, Any] = {"min_lr": 1e-3, "max_lr": 50.0, "steps": 30, "batch_size": 16}
    together = lr_find(loss_fn, optim.sgd, params, state, xy, keys, **options)
    assert together.losses.shape == (8, 30) and together.suggestion.shape == (8,)
    assert len({int(s) for s in together.steps_run}) > 1 or int(together.steps_run[0]) < 30
    for i in range(8):
        _assert_same(_tree.tree_map(lambda leaf, i=i: leaf[i], together),
                     lr_find(loss_fn, optim.sgd, params, state, xy, keys[i], **options))


class Unhashable:
    """A loss function object that defines ``==`` but not ``hash`` (so jit cannot key a cache on it)."""

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Unhashable)

    __hash__ = None  # type: ignore[assignment]  # deliberately unhashable

    def __call__(self, params: PyTree, model_state: PyTree, batch: PyTree,
                 key: PRNGKey) -> tuple[Array, tuple[PyTree, Metrics]]:
        return least_squares(params, model_state, batch, key)


def test_an_unhashable_loss_function_works_too() -> None:
    xy = _regression()
    options: dict[str, Any] = {"min_lr": 1e-3, "max_lr": 3.0, "steps": 24, "batch_size": 16}
    for key in (jax.random.key(7), jax.random.split(jax.random.key(7), 2)):
        _assert_same(lr_find(Unhashable(), optim.sgd, jnp.zeros(3), (), xy, key, **options),
                     lr_find(least_squares, optim.sgd, jnp.zeros(3), (), xy, key, **options))


def test_candidate_ranges_and_starting_weights_vmapped() -> None:
    xy = _regression()
    key = jax.random.key(5)
    lows, highs = jnp.array([1e-4, 1e-2]), jnp.array([1.0, 30.0])
    inits = jnp.array([[0.0, 0.0, 0.0], [1.0, -1.0, 0.5]])

    def one(lo: Array, hi: Array, p: Array) -> LRFindResult:
        return lr_find(least_squares, optim.sgd, p, (), xy, key, min_lr=lo, max_lr=hi, steps=24, batch_size=16)

    batched = jit(jax.vmap(one))(lows, highs, inits)
    for i in range(2):
        solo = lr_find(least_squares, optim.sgd, inits[i], (), xy, key, min_lr=float(lows[i]),
                       max_lr=float(highs[i]), steps=24, batch_size=16)
        _assert_same(_tree.tree_map(lambda leaf, i=i: leaf[i], batched), solo)


@pytest.mark.slow  # ~10 s on 2 CPU cores: 8 range tests and a grid of 8 fixed rates on the digits
def test_the_suggestion_on_digits_is_near_the_best_fixed_rate() -> None:
    digits = data.split_dataset(jax.random.key(0), data.load_digits(), test_fraction=0.25).train
    stats = data.fit_min_max(digits.x, feature_range=(-1.0, 1.0))
    xy = (data.min_max_scale(stats, digits.x), jnp.asarray(digits.y))
    model = layers.serial(layers.Dense(64), layers.Relu, layers.Dense(10))
    params, state, _ = model.init(jax.random.key(1), (-1, 64))
    loss_fn = train.classifier_loss(model.apply, train=True)
    found = lr_find(loss_fn, optim.sgd, params, state, xy, jax.random.split(jax.random.key(2), 8),
                    min_lr=1e-4, max_lr=100.0, steps=100, batch_size=32)

    grid = jnp.asarray([0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0])  # the grid of fixed rates

    def final_loss(lr: Array) -> Array:  # SGD at a fixed rate: 3 epochs, then the training loss
        opt = optim.sgd(lr)
        step = train.make_train_step(loss_fn, opt, grad_norm=False)
        run = train.init_train_state(params, state, opt)
        for k in jax.random.split(jax.random.key(3), 3):
            run, _ = train.train_epoch(step, run, xy, k, batch_size=32)
        eval_step = train.make_eval_step(train.classifier_loss(model.apply, train=False))
        return train.evaluate(eval_step, run, xy, batch_size=len(xy[1]))["loss"]

    best = float(grid[int(jnp.argmin(jit(jax.vmap(final_loss))(grid)))])
    suggestions = np.asarray(found.suggestion)
    assert np.all((suggestions > best / 10) & (suggestions < best * 10)), (best, suggestions)


def test_plot_lr_find(tmp_path: Path) -> None:
    x, y = _regression()
    result = lr_find(least_squares, optim.sgd, jnp.zeros(3), (), (x, y), jax.random.split(jax.random.key(6), 3),
                     min_lr=1e-3, max_lr=3.0, steps=30, batch_size=16)
    fig = plotting.plot_lr_find(result, path=tmp_path / "lr.png")
    ax = fig.axes[0]
    assert ax.get_xscale() == "log" and ax.get_xlabel() == "learning rate"
    mean = np.nanmean(np.asarray(result.losses, np.float64), axis=0)
    np.testing.assert_allclose(np.asarray(ax.lines[0].get_ydata(), np.float64), mean, rtol=1e-6)
    marks = [float(np.asarray(line.get_xdata())[0]) for line in ax.lines[1:]]
    np.testing.assert_allclose(marks, [np.median(np.asarray(result.suggestion)),
                                       np.median(np.asarray(result.min_loss_suggestion))], rtol=1e-6)
    assert (tmp_path / "lr.png").read_bytes()[:8] == PNG_MAGIC
    with pytest.raises(TypeError, match="argument 'result'"):
        plotting.plot_lr_find({"lrs": [1.0]})  # type: ignore[arg-type]  # not a result


def _not_an_optimizer(lr: Any) -> Any:
    return lr


@pytest.mark.parametrize(("kwargs", "error", "name"), [
    ({"min_lr": 0.0}, ValueError, "min_lr"),
    ({"min_lr": 1.0, "max_lr": 0.5}, ValueError, "max_lr"),
    ({"steps": 10}, ValueError, "steps"),
    ({"steps": 30, "window": 20}, ValueError, "steps"),
    ({"batch_size": 1000}, ValueError, "batch_size"),
    ({"smoothing": 1.0}, ValueError, "smoothing"),
    ({"diverge_factor": 1.0}, ValueError, "diverge_factor"),
    ({"optimizer": optim.sgd(0.1)}, TypeError, "optimizer"),
    ({"optimizer": _not_an_optimizer}, TypeError, "optimizer(schedule)"),
    ({"loss_fn": 3}, TypeError, "loss_fn"),
    ({"key": 0}, TypeError, "key"),
    ({"window": 0}, ValueError, "window"),
])
def test_errors(kwargs: dict[str, object], error: type[Exception], name: str) -> None:
    x, y = _regression()
    args: dict[str, object] = {"loss_fn": least_squares, "optimizer": optim.sgd, "params": jnp.zeros(3),
                               "model_state": (), "data": (x, y), "key": jax.random.key(0)}
    with pytest.raises(error) as info:
        lr_find(**(args | kwargs))  # type: ignore[arg-type]  # deliberately bad arguments
    text = str(info.value)
    assert f"argument '{name}'" in text and re.match(r"^[\w.]+: argument '[\w.\[\]'()]+' must be .+, got .+$",
                                                      text, re.S), text
