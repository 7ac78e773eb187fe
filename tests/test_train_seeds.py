"""run_seeds / sweep: vmapped whole runs equal separate runs, with every trick inside."""

from __future__ import annotations

import functools
import re
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _typed import jit, lower, norm, vmap

from functrain import layers, optim
from functrain._tree import tree_map
from functrain.data.datasets import load_digits, split_dataset
from functrain.train import (
    EpochMetrics,
    FitOptions,
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
    train_epoch,
)
from functrain.train.seeds import Stats, grid, run_seeds, summarize, sweep
from functrain.typing import Array, PRNGKey

STYLE = re.compile(r"^[\w.]+: argument '[\w.\[\]']+' must be .+, got .+$", re.S)

EPOCHS = 4
BS = 40


@functools.cache
def _data() -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    # Host float64 arrays: the cache must never hold values created while tracing.
    ds = load_digits()
    tt = split_dataset(jax.random.key(0), ds, test_fraction=0.2)
    x, y = np.asarray(tt.train.x, np.float64) / 16.0, np.asarray(tt.train.y)
    return (x[:200], y[:200]), (x[200:280], y[200:280])  # 80 = 2 validation batches, no tail


_data()  # fill the cache at import, outside any trace


class Out(NamedTuple):
    val_loss: Array  # (EPOCHS,)
    active: Array  # (EPOCHS,)
    stopped_after: Array  # epochs actually trained
    final_accuracy: Array
    ema_params: Any


MODEL = layers.serial(layers.Dense(16), layers.Relu, layers.BatchNorm(), layers.Dropout(0.2),
                      layers.Dense(10))
ES = early_stopping(patience=1, min_delta=0.02)
PLATEAU = reduce_on_plateau(factor=0.5, patience=1)


def _f64(tree: Any) -> Any:
    return tree_map(lambda a: jnp.asarray(a, jnp.float64), tree)


def _train(key: PRNGKey, lr: Array | float = 1e-2, wd: Array | float = 1e-4, adam: bool = True) -> Out:
    """A whole run in float64 (call it under ``jax.enable_x64``): init, epochs in lax.scan with BN,
    dropout, schedule, clipping, weight decay, reduce-on-plateau, early stopping and an EMA."""
    train_data, val_data = _data()
    init_key, run_key = jax.random.split(key)
    params, mstate, _ = MODEL.init(init_key, (-1, 64))
    params, mstate = _f64(params), _f64(mstate)
    steps = EPOCHS * (len(train_data[0]) // BS)
    schedule = optim.schedules.warmup_cosine_decay(0.0, lr, 2, steps)
    inner: optim.GradientTransformation[Any] = (optim.adamw(schedule, weight_decay=wd) if adam else
             optim.chain(optim.add_decayed_weights(wd), optim.momentum(optim.schedules.warmup_cosine_decay(0.0, 9 * lr, 2, steps), 0.9)))
    opt = optim.chain(optim.clip_by_global_norm(1.0), inner, scale_by_plateau())
    step = make_train_step(classifier_loss(MODEL.apply, train=True), opt)
    eval_step = make_eval_step(classifier_loss(MODEL.apply, train=False))
    options = FitOptions(BS, eval_step=eval_step, early_stopping=ES, plateau=PLATEAU)
    fs = init_fit_state(init_train_state(params, mstate, opt), options)

    def epoch(carry: tuple[Any, Any], _: None) -> tuple[tuple[Any, Any], EpochMetrics]:
        fs, ema = carry
        fs, m = fit_epoch(step, fs, train_data, run_key, options, val_data=val_data)
        ema = ema_update(ema, fs.train_state.params, 0.5)
        return (fs, ema), m

    (fs, ema), m = jax.lax.scan(epoch, (fs, params), None, length=EPOCHS)
    trained = jnp.sum(m.active)
    acc = m.val["accuracy"][trained - 1]  # the last epoch that trained (the state kept)
    return Out(m.val["loss"], m.active, trained, acc, ema)


def _assert_close(a: Any, b: Any) -> None:
    """Vmapped and separate float64 runs agree up to reassociation, leaf by leaf, everywhere.

    In float32, Adam turned the round-off noise of nearly-zero gradients (dead ReLU units) into
    lr-sized steps, so a few coordinates differed by ~1e-2 and the old test let 25% of them be
    off. In float64 that noise is ~1e-17; Adam scales it to at most ``lr * noise / eps`` per step
    (~1e-11), and the largest difference measured is ~5e-11: every coordinate must agree to 1e-9.
    """
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b), strict=True):
        assert np.asarray(x).dtype == np.asarray(y).dtype
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-8, atol=1e-9)


# The two whole-run comparisons compile four float64 programs with every trick inside (seconds of
# XLA compile time each): slow. The fast tests below check run_seeds/sweep against per-key calls.
@pytest.mark.slow
def test_run_seeds_with_adamw_equals_separate_runs() -> None:
    """(The sweep test below does the same with momentum SGD.)"""
    with jax.enable_x64(True):
        keys = jax.random.split(jax.random.key(42), 3)
        runs = run_seeds(_train, keys)
        assert runs.results.ema_params[0].w.dtype == jnp.float64
        single = jit(_train)
        for s in range(3):
            _assert_close(tree_map(lambda x: x[s], runs.results), single(keys[s]))
    # Summary statistics over seeds.
    acc = np.asarray(runs.results.final_accuracy)
    stats = runs.summary.final_accuracy
    assert isinstance(stats, Stats)
    np.testing.assert_allclose([stats.mean, stats.std, stats.min, stats.max],
                               [acc.mean(), acc.std(), acc.min(), acc.max()], rtol=1e-6)
    assert float(stats.mean) > 0.5  # 4 short epochs on 200 digits; chance is 0.1


@pytest.mark.slow
def test_sweep_equals_separate_runs_and_members_stop_on_their_own() -> None:
    with jax.enable_x64(True):
        keys = jax.random.split(jax.random.key(7), 2)
        lrs = jnp.array([1e-2, 1e-3, 3e-5])  # momentum SGD learning rates 9x these
        six: Any = np.int64(6)  # (annotated int: NumPy ints are accepted at runtime)
        runs = sweep(lambda k, hp: _train(k, hp["lr"], adam=False), keys, {"lr": lrs}, chunk_size=six)
        assert runs.results.val_loss.shape == (3, 2, EPOCHS)
        single = jit(functools.partial(_train, adam=False))
        for g in range(3):
            for s in range(2):
                _assert_close(tree_map(lambda x: x[g, s], runs.results), single(keys[s], lrs[g]))
    stopped = np.asarray(runs.results.stopped_after)
    assert len(np.unique(stopped)) >= 2, stopped  # different members stop at different epochs
    assert stopped.min() < EPOCHS
    # A member that stopped keeps reporting inactive epochs afterwards.
    active = np.asarray(runs.results.active)
    for g in range(3):
        for s in range(2):
            k = int(stopped[g, s])
            assert active[g, s, :k].all() and not active[g, s, k:].any()
    assert runs.summary.final_accuracy.mean.shape == (3,)


def _hyperparams(key: PRNGKey, hp: dict[str, Array]) -> dict[str, Array]:
    return hp


def _tiny(key: PRNGKey) -> dict[str, Array]:
    w = jax.random.normal(key, (3, 3))
    return {"norm": jnp.linalg.norm(w), "w": w, "n": jnp.array(3)}


def test_chunking_gives_the_same_results() -> None:
    keys = jax.random.split(jax.random.key(0), 7)
    full = run_seeds(_tiny, keys)
    chunks: tuple[Any, ...] = (1, 3, np.int64(3))  # NumPy ints are ints (the same program as 3)
    for chunk in chunks:
        chunked = run_seeds(_tiny, keys, chunk_size=chunk).results
        for x, y in zip(jax.tree_util.tree_leaves(chunked), jax.tree_util.tree_leaves(full.results), strict=True):
            np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-6)
    np.testing.assert_allclose(full.results["norm"],
                               [float(norm(jax.random.normal(k, (3, 3)))) for k in keys], rtol=1e-6)


def test_raw_keys_and_no_jit() -> None:
    raw = jax.random.split(jax.random.PRNGKey(0), 3)
    out = run_seeds(_tiny, raw, jit=False)
    assert out.results["w"].shape == (3, 3, 3)


def test_grid_is_a_cartesian_product() -> None:
    g = grid(lr=[0.1, 0.01], wd=[0.0, 1e-4, 1e-3])
    np.testing.assert_allclose(g["lr"], [0.1, 0.1, 0.1, 0.01, 0.01, 0.01])
    np.testing.assert_allclose(g["wd"], [0.0, 1e-4, 1e-3] * 2)
    def train_fn(k: PRNGKey, hp: dict[str, Array]) -> dict[str, Array]:
        return {"v": hp["lr"] + hp["wd"] + jax.random.uniform(k)}

    out = sweep(train_fn, jax.random.split(jax.random.key(1), 2), g)
    assert out.results["v"].shape == (6, 2)
    u = np.asarray([float(jax.random.uniform(k)) for k in jax.random.split(jax.random.key(1), 2)])
    np.testing.assert_allclose(out.results["v"], (np.asarray(g["lr"]) + np.asarray(g["wd"]))[:, None] + u,
                               rtol=1e-6)


def test_summarize_skips_non_numeric_leaves() -> None:
    s = summarize({"a": jnp.arange(4.0), "k": jax.random.split(jax.random.key(0), 4), "f": "text"})
    assert isinstance(s["a"], Stats) and s["k"] is None and s["f"] is None
    np.testing.assert_allclose(s["a"].std, np.std(np.arange(4.0)))


def _raises(exc: type[Exception], match: str, fn: Any, *args: Any, **kwargs: Any) -> None:
    with pytest.raises(exc, match=match) as info:
        fn(*args, **kwargs)
    assert STYLE.match(str(info.value)), str(info.value)


def test_bad_input() -> None:
    keys = jax.random.split(jax.random.key(0), 2)
    _raises(TypeError, "run_seeds: argument 'keys' must be a batch of PRNG keys", run_seeds, _tiny,
            jnp.zeros((3,), jnp.float32))
    _raises(ValueError, "run_seeds: argument 'keys' must be at least one PRNG key", run_seeds, _tiny, keys[:0])
    _raises(ValueError, "run_seeds: argument 'chunk_size' must be an int >= 1, got 0", run_seeds, _tiny, keys,
            chunk_size=0)
    _raises(TypeError, "run_seeds: argument 'chunk_size' must be an int >= 1, got 2.0", run_seeds, _tiny, keys,
            chunk_size=2.0)
    _raises(TypeError, "run_seeds: argument 'train_fn' must be a function", run_seeds, 3, keys)
    _raises(TypeError, "run_seeds: argument 'jit' must be a bool", run_seeds, _tiny, keys, jit=None)
    _raises(TypeError, "sweep: argument 'keys' must be a batch of PRNG keys", sweep, _tiny, [1, 2], {"a": jnp.zeros(2)})
    with pytest.raises(ValueError, match="sweep: argument 'hyperparams' must be arrays with the same leading length"):
        sweep(_hyperparams, keys, {"a": jnp.zeros(2), "b": jnp.zeros(3)})
    _raises(ValueError, r"sweep: argument 'hyperparams' must be arrays with a leading example axis, .*a scalar at "
            r"hyperparams\['a'\]", sweep, _hyperparams, keys, {"a": jnp.float32(1.0)})
    _raises(ValueError, "grid: argument 'lr' must be a non-empty 1-d sequence of values", grid, lr=[])
    _raises(ValueError, "grid: argument 'axes' must be at least one named axis", grid)


def test_calling_again_with_the_same_train_fn_does_not_recompile() -> None:
    traces: list[int] = []

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


def test_run_seeds_is_the_compiled_once_vmapped_run_plus_its_summary() -> None:
    """No overhead: run_seeds compiles jit(vmap(train_fn)) and the seed summary, nothing else:
    bitwise the reference's results, the same training loop (dots, loops) in the program, and
    the summary equal to summarize() of the reference results."""
    (x, y), _ = _data()
    data = (jnp.asarray(x[:64], jnp.float32), jnp.asarray(y[:64]))
    model = layers.serial(layers.Dense(16), layers.Relu, layers.Dense(10))
    opt = optim.adam(1e-2)
    step = make_train_step(classifier_loss(model.apply, train=True), opt)

    def train(key: PRNGKey) -> dict[str, Array]:
        k_init, k_epoch = jax.random.split(key)
        params, model_state, _ = model.init(k_init, (-1, 64))
        _, metrics = train_epoch(step, init_train_state(params, model_state, opt), data, k_epoch, batch_size=16)
        return metrics

    keys = jax.random.split(jax.random.key(0), 3)
    runs = run_seeds(train, keys)
    ref = jit(vmap(train))(keys)
    for name in ref:
        np.testing.assert_array_equal(np.asarray(runs.results[name]), np.asarray(ref[name]))
        np.testing.assert_allclose(np.asarray(runs.summary[name].std), np.asarray(summarize(ref)[name].std),
                                   rtol=1e-6)

    def ops(text: str | None) -> tuple[int, int]:
        assert text is not None
        return len(re.findall(r" dot\(", text)), len(re.findall(r" while\(", text))

    ours = lower(lambda k: run_seeds(train, k, jit=False), keys).compile().as_text()  # its program
    assert ops(ours) == ops(lower(vmap(train), keys).compile().as_text())


def test_case_10_the_docs_state_what_chunking_preserves_and_it_holds() -> None:
    """Issue 12, case 10: chunked results were documented as "identical"; they agree up to rounding."""
    import functrain.train.seeds as seeds_module

    doc = " ".join((seeds_module.__doc__ or "").split())
    assert "results are identical" not in doc
    assert "up to floating-point rounding, not bit for bit" in doc and "bitwise reproducible" in doc

    def run(key: PRNGKey) -> dict[str, Array]:
        x = jax.random.normal(key, (256,))
        return {"norm": jnp.linalg.norm(x), "sum": jnp.sum(x), "n": jnp.sum(jax.random.key_data(key) % 7)}

    keys = jax.random.split(jax.random.key(0), 7)
    whole = run_seeds(run, keys).results
    for chunk in (1, 3, 4):
        chunked = run_seeds(run, keys, chunk_size=chunk).results
        np.testing.assert_allclose(chunked["norm"], whole["norm"], rtol=1e-6)  # float: up to rounding
        np.testing.assert_allclose(chunked["sum"], whole["sum"], rtol=1e-5, atol=1e-5)
        np.testing.assert_array_equal(chunked["n"], whole["n"])  # integers without floats: identical
        again = run_seeds(run, keys, chunk_size=chunk).results  # the same chunk size: bitwise
        for a, b in zip(jax.tree_util.tree_leaves(again), jax.tree_util.tree_leaves(chunked), strict=True):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
