"""run_seeds / sweep: vmapped whole runs equal separate runs, with every trick inside."""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from functrain import layers, optim
from functrain.data.datasets import load_digits, split_dataset
from functrain.train import (
    early_stopping,
    ema_update,
    fit_epoch,
    init_fit_state,
    init_train_state,
    make_eval_step,
    make_train_step,
    classifier_loss,
    reduce_on_plateau,
    scale_by_plateau,
)
from functrain.train.seeds import Stats, grid, run_seeds, summarize, sweep
from functrain.typing import Array, PRNGKey

EPOCHS = 6
BS = 50


@functools.cache
def _data() -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    # Host arrays: the cache must never hold values created while tracing.
    ds = load_digits()
    tt = split_dataset(jax.random.key(0), ds, test_fraction=0.2)
    x, y = np.asarray(tt.train.x) / 16.0, np.asarray(tt.train.y)
    return (x[:400], y[:400]), (x[400:550], y[400:550])


_data()  # fill the cache at import, outside any trace


class Out(NamedTuple):
    val_loss: Array  # (EPOCHS,)
    active: Array  # (EPOCHS,)
    stopped_after: Array  # epochs actually trained
    final_accuracy: Array
    ema_params: Any


# BN after the ReLU: a bias right before BN has an exactly-zero gradient, which Adam would turn
# into an lr-sized random walk of round-off noise (different under vmap and alone).
MODEL = layers.serial(layers.Dense(32), layers.Relu, layers.BatchNorm(), layers.Dropout(0.2),
                      layers.Dense(10))
ES = early_stopping(patience=1, min_delta=0.02)
PLATEAU = reduce_on_plateau(factor=0.5, patience=1)


def _train(key: PRNGKey, lr: Array | float = 3e-3, wd: Array | float = 1e-4, adam: bool = True) -> Out:
    """A whole run: init, epochs in lax.scan with BN, dropout, schedule, clipping, weight decay,
    reduce-on-plateau, early stopping and an EMA of the parameters."""
    train_data, val_data = _data()
    init_key, run_key = jax.random.split(key)
    params, mstate, _ = MODEL.init(init_key, (-1, 64))
    steps = EPOCHS * (len(train_data[0]) // BS)
    schedule = optim.schedules.warmup_cosine_decay(0.0, lr, 4, steps)
    inner = (optim.adamw(schedule, weight_decay=wd) if adam else
             optim.chain(optim.add_decayed_weights(wd), optim.momentum(optim.schedules.warmup_cosine_decay(0.0, 30 * lr, 4, steps), 0.9)))
    opt = optim.chain(optim.clip_by_global_norm(1.0), inner, scale_by_plateau())
    step = make_train_step(classifier_loss(MODEL.apply, train=True), opt)
    eval_step = make_eval_step(classifier_loss(MODEL.apply, train=False))
    fs = init_fit_state(init_train_state(params, mstate, opt), early_stopping=ES, plateau=PLATEAU)

    def epoch(carry: tuple[Any, Any], _: None) -> tuple[tuple[Any, Any], tuple[Array, Array]]:
        fs, ema = carry
        fs, m = fit_epoch(step, fs, train_data, run_key, batch_size=BS, eval_step=eval_step,
                          val_data=val_data, early_stopping=ES, plateau=PLATEAU)
        ema = ema_update(ema, fs.train_state.params, 0.5)
        return (fs, ema), (m.val["loss"], m.active)

    (fs, ema), (val_loss, active) = jax.lax.scan(epoch, (fs, params), None, length=EPOCHS)
    acc = eval_step(fs.train_state, val_data)["accuracy"]
    return Out(val_loss, active, jnp.sum(active), acc, ema)


def _assert_close(a: Any, b: Any, adam: bool = False) -> None:
    """Vmapped and separate runs agree up to float32 reassociation.

    Metrics must agree tightly. Parameters get an absolute tolerance: Adam divides each gradient
    by its own RMS, so a coordinate whose gradient is nearly zero takes lr-sized steps in the
    direction of its round-off noise, and vmap's batched matmuls round differently (a few such
    coordinates differ by up to ~1e-2); the bulk must agree to 1e-4.
    """
    if isinstance(a, Out) and adam:
        _assert_close(tuple(a)[:-1], tuple(b)[:-1])
        for x, y in zip(jax.tree_util.tree_leaves(a.ema_params), jax.tree_util.tree_leaves(b.ema_params),
                        strict=True):
            np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-2, atol=2e-2)
            assert np.mean(np.abs(np.asarray(x) - np.asarray(y)) < 1e-4) >= 0.75
        return
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b), strict=True):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-3, atol=1e-4)


@pytest.mark.slow
@pytest.mark.parametrize("adam", [False, True], ids=["momentum", "adamw"])
def test_run_seeds_equals_separate_runs(adam: bool) -> None:
    keys = jax.random.split(jax.random.key(42), 8)
    train = functools.partial(_train, adam=adam)
    runs = run_seeds(train, keys)
    single = jax.jit(train)
    for s in range(8):
        _assert_close(jax.tree_util.tree_map(lambda x: x[s], runs.results), single(keys[s]), adam)
    # Summary statistics over seeds.
    acc = np.asarray(runs.results.final_accuracy)
    stats = runs.summary.final_accuracy
    assert isinstance(stats, Stats)
    np.testing.assert_allclose([stats.mean, stats.std, stats.min, stats.max],
                               [acc.mean(), acc.std(), acc.min(), acc.max()], rtol=1e-6)
    assert float(stats.mean) > 0.5  # 6 short epochs on 400 digits; chance is 0.1


@pytest.mark.slow
def test_sweep_equals_separate_runs_and_members_stop_on_their_own() -> None:
    keys = jax.random.split(jax.random.key(7), 4)
    lrs = jnp.array([3e-3, 1e-3, 3e-4, 1e-5])  # momentum SGD learning rates 30x these
    runs = sweep(lambda k, hp: _train(k, hp["lr"], adam=False), keys, {"lr": lrs}, chunk_size=6)
    assert runs.results.val_loss.shape == (4, 4, EPOCHS)
    single = jax.jit(functools.partial(_train, adam=False))
    for g in range(4):
        for s in range(4):
            _assert_close(jax.tree_util.tree_map(lambda x: x[g, s], runs.results), single(keys[s], lrs[g]))
    stopped = np.asarray(runs.results.stopped_after)
    assert len(np.unique(stopped)) >= 2, stopped  # different members stop at different epochs
    assert stopped.min() < EPOCHS
    # A member that stopped keeps reporting inactive epochs afterwards.
    active = np.asarray(runs.results.active)
    for g in range(4):
        for s in range(4):
            k = int(stopped[g, s])
            assert active[g, s, :k].all() and not active[g, s, k:].any()
    assert runs.summary.final_accuracy.mean.shape == (4,)


def _tiny(key: PRNGKey) -> dict[str, Array]:
    w = jax.random.normal(key, (3, 3))
    return {"norm": jnp.linalg.norm(w), "w": w, "n": jnp.array(3)}


def test_chunking_gives_the_same_results() -> None:
    keys = jax.random.split(jax.random.key(0), 7)
    full = run_seeds(_tiny, keys)
    for chunk in (1, 3, 7, 100):
        _assert_close(run_seeds(_tiny, keys, chunk_size=chunk).results, full.results)
    np.testing.assert_allclose(full.results["norm"],
                               [float(jnp.linalg.norm(jax.random.normal(k, (3, 3)))) for k in keys], rtol=1e-6)


def test_raw_keys_and_no_jit() -> None:
    raw = jax.random.split(jax.random.PRNGKey(0), 3)
    out = run_seeds(_tiny, raw, jit=False)
    assert out.results["w"].shape == (3, 3, 3)


def test_grid_is_a_cartesian_product() -> None:
    g = grid(lr=[0.1, 0.01], wd=[0.0, 1e-4, 1e-3])
    np.testing.assert_allclose(g["lr"], [0.1, 0.1, 0.1, 0.01, 0.01, 0.01])
    np.testing.assert_allclose(g["wd"], [0.0, 1e-4, 1e-3] * 2)
    out = sweep(lambda k, hp: {"v": hp["lr"] + hp["wd"] + jax.random.uniform(k)},
                jax.random.split(jax.random.key(1), 2), g)
    assert out.results["v"].shape == (6, 2)
    u = np.asarray([float(jax.random.uniform(k)) for k in jax.random.split(jax.random.key(1), 2)])
    np.testing.assert_allclose(out.results["v"], (np.asarray(g["lr"]) + np.asarray(g["wd"]))[:, None] + u,
                               rtol=1e-6)


def test_summarize_skips_non_numeric_leaves() -> None:
    s = summarize({"a": jnp.arange(4.0), "k": jax.random.split(jax.random.key(0), 4), "f": "text"})
    assert isinstance(s["a"], Stats) and s["k"] is None and s["f"] is None
    np.testing.assert_allclose(s["a"].std, np.std(np.arange(4.0)))


def test_bad_input() -> None:
    keys = jax.random.split(jax.random.key(0), 2)
    with pytest.raises(ValueError, match="run_seeds: argument 'keys'"):
        run_seeds(_tiny, jnp.zeros((3,), jnp.float32))
    with pytest.raises(ValueError, match="argument 'chunk_size' must be a positive int"):
        run_seeds(_tiny, keys, chunk_size=0)
    with pytest.raises(TypeError, match="argument 'train_fn' must be callable"):
        run_seeds(3, keys)  # type: ignore[arg-type]  # the error under test
    with pytest.raises(ValueError, match="same leading length"):
        sweep(lambda k, hp: hp, keys, {"a": jnp.zeros(2), "b": jnp.zeros(3)})
    with pytest.raises(ValueError, match="leading configuration axis"):
        sweep(lambda k, hp: hp, keys, {"a": jnp.float32(1.0)})
    with pytest.raises(ValueError, match="grid: argument 'lr'"):
        grid(lr=[])


def test_calling_again_with_the_same_train_fn_does_not_recompile() -> None:
    traces = []

    def counted(key: PRNGKey) -> dict[str, Array]:
        traces.append(1)
        return _tiny(key)

    for seed in range(3):
        run_seeds(counted, jax.random.split(jax.random.key(seed), 4))
    assert len(traces) == 1

    def counted_sweep(key: PRNGKey, hp: dict[str, Array]) -> Array:
        traces.append(2)
        return hp["lr"] * jax.random.uniform(key)

    for lr in (0.1, 0.2):
        out = sweep(counted_sweep, jax.random.split(jax.random.key(0), 2), {"lr": jnp.array([lr, 2 * lr])})
    assert traces.count(2) == 1
    np.testing.assert_allclose(out.results[1], 2 * out.results[0], rtol=1e-6)
