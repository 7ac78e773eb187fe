"""train_epoch, evaluate, fit_epoch/fit_scan and fit: equivalences, digits accuracy, errors."""

from __future__ import annotations

import functools
import sys
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from functrain import layers, optim
from functrain.data.datasets import load_digits, split_dataset
from functrain.train import (
    TrainState,
    early_stopping,
    evaluate,
    fit,
    fit_scan,
    init_fit_state,
    init_train_state,
    make_eval_step,
    make_train_step,
    train_epoch,
    classifier_loss,
    final_train_state,
)
from functrain.typing import Array, Metrics, PRNGKey, PyTree


@functools.cache
def _digits() -> tuple[tuple[Array, Array], tuple[Array, Array]]:
    """Digits scaled to [0, 1], split 80/20 by key."""
    ds = load_digits()
    ds = ds._replace(x=ds.x / 16.0)
    tt = split_dataset(jax.random.key(0), ds, test_fraction=0.2)
    return (tt.train.x, tt.train.y), (tt.test.x, tt.test.y)


def _mlp(hidden: int = 64, fancy: bool = False) -> layers.Layer:
    if fancy:
        return layers.serial(layers.Dense(hidden), layers.BatchNorm(), layers.Relu, layers.Dropout(0.2),
                             layers.Dense(10))
    return layers.serial(layers.Dense(hidden), layers.Relu, layers.Dense(10))


def _setup(model: layers.Layer, opt: optim.GradientTransformation[Any], seed: int = 1) -> tuple[
        TrainState[Any, Any, Any], Any, Any]:
    params, mstate, _ = model.init(jax.random.key(seed), (-1, 64))
    state = init_train_state(params, mstate, opt)
    step = make_train_step(classifier_loss(model.apply, train=True), opt)
    eval_step = make_eval_step(classifier_loss(model.apply, train=False))
    return state, step, eval_step


def _assert_trees_equal(a: PyTree, b: PyTree) -> None:
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


# ------------------------------------------------------------------------------------------------
# train_epoch


def test_train_epoch_equals_python_loop_over_the_same_batches() -> None:
    (x, y), _ = _digits()
    x, y = x[:203], y[:203]  # 203 = 12 * 16 + 11: the partial batch is dropped
    model = _mlp(32, fancy=True)  # batch norm state and dropout keys both flow through
    state, step, _ = _setup(model, optim.momentum(0.05, 0.9))
    key = jax.random.key(7)
    bs = 16
    new_state, metrics = jax.jit(train_epoch, static_argnames=("step", "batch_size"))(
        step, state, (x, y), key, batch_size=bs)

    # The documented schedule, by hand.
    perm_key, step_key = jax.random.split(key)
    perm = np.asarray(jax.random.permutation(perm_key, 203))
    keys = jax.random.split(step_key, 203 // bs)
    jstep = jax.jit(step)
    s = state
    losses = []
    for i in range(203 // bs):
        idx = perm[i * bs:(i + 1) * bs]
        s, m = jstep(s, (x[idx], y[idx]), keys[i])
        losses.append(float(m["loss"]))
    assert int(new_state.step) == int(s.step) == 12
    for a, b in zip(jax.tree_util.tree_leaves(new_state), jax.tree_util.tree_leaves(s), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=2e-5, atol=2e-6)
    np.testing.assert_allclose(metrics["loss"], np.mean(losses), rtol=1e-5)
    assert set(metrics) == {"loss", "grad_norm", "accuracy"}


def _counting_step(state: TrainState[Any, Any, Any], batch: PyTree, key: PRNGKey) -> tuple[
        TrainState[Any, Any, Any], Metrics]:
    (idx,) = batch
    seen = state.model_state.at[idx].add(1)
    return state._replace(step=state.step + 1, model_state=seen), {"loss": jnp.zeros(())}


def test_train_epoch_sees_each_example_at_most_once_and_reshuffles() -> None:
    n, bs = 23, 5
    data = (jnp.arange(n),)
    state = TrainState(jnp.zeros((), jnp.int32), (), jnp.zeros(n, jnp.int32), ())
    run = jax.jit(train_epoch, static_argnames=("step", "batch_size"))
    s1, _ = run(_counting_step, state, data, jax.random.key(0), batch_size=bs)
    counts = np.asarray(s1.model_state)
    assert counts.max() == 1 and counts.sum() == (n // bs) * bs  # 3 examples dropped
    s2, _ = run(_counting_step, state, data, jax.random.key(1), batch_size=bs)
    assert not np.array_equal(counts, np.asarray(s2.model_state))  # a different epoch drops others
    # Over many epochs every example is seen.
    s = state
    for e in range(12):
        s, _ = run(_counting_step, s, data, jax.random.key(e), batch_size=bs)
    assert np.asarray(s.model_state).min() >= 1


def test_train_epoch_under_vmap_matches_each_seed() -> None:
    (x, y), _ = _digits()
    x, y = x[:96], y[:96]
    model = _mlp(16)
    opt = optim.sgd(0.1)
    step = make_train_step(classifier_loss(model.apply, train=True), opt)

    def run(seed_key: PRNGKey) -> tuple[TrainState[Any, Any, Any], Metrics]:
        init_key, epoch_key = jax.random.split(seed_key)
        params, mstate, _ = model.init(init_key, (-1, 64))
        return train_epoch(step, init_train_state(params, mstate, opt), (x, y), epoch_key, batch_size=32)

    keys = jax.random.split(jax.random.key(3), 4)
    batched, bm = jax.jit(jax.vmap(run))(keys)
    for i in range(4):
        single, sm = jax.jit(run)(keys[i])
        np.testing.assert_allclose(batched.params[0].w[i], single.params[0].w, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(bm["loss"][i], sm["loss"], rtol=1e-5)


# ------------------------------------------------------------------------------------------------
# evaluate


def _mean_eval(state: TrainState[Any, Any, Any], batch: PyTree) -> Metrics:
    (v,) = batch
    return {"loss": jnp.mean(v), "max": jnp.mean(v * 0 + 1)}


@pytest.mark.parametrize("batch_size", [1, 3, 4, 10, 64])
def test_evaluate_covers_the_tail_with_correct_weights(batch_size: int) -> None:
    v = jnp.arange(10.0) ** 2
    state = TrainState(jnp.zeros((), jnp.int32), (), (), ())
    m = jax.jit(evaluate, static_argnames=("eval_step", "batch_size"))(_mean_eval, state, (v,), batch_size=batch_size)
    np.testing.assert_allclose(m["loss"], np.mean(np.arange(10.0) ** 2), rtol=1e-6)
    np.testing.assert_allclose(m["max"], 1.0, rtol=1e-6)


# ------------------------------------------------------------------------------------------------
# fit on digits (acceptance)


def test_fit_plain_mlp_reaches_97_percent_on_digits() -> None:
    train, test = _digits()
    state, step, eval_step = _setup(_mlp(128), optim.sgd(0.1, momentum=0.9))
    state, hist = fit(step, state, train, jax.random.key(2), epochs=15, batch_size=32, progress=False)
    acc = evaluate(eval_step, state, test, batch_size=128)["accuracy"]
    assert float(acc) >= 0.97, float(acc)
    assert hist.train["loss"].shape == (15,) and hist.val == {}
    assert hist.train["loss"][-1] < hist.train["loss"][0]
    np.testing.assert_array_equal(hist.epoch, np.arange(15))


@pytest.mark.slow
def test_fit_batchnorm_dropout_adam_cosine_reaches_97_percent_with_restore_best() -> None:
    (x, y), test = _digits()
    # Validation split carved from the training part; the test set stays untouched.
    train_data, val_data = (x[:1150], y[:1150]), (x[1150:], y[1150:])
    epochs, bs = 20, 32
    schedule = optim.schedules.cosine_decay(3e-3, epochs * (1150 // bs))
    opt = optim.adam(schedule)
    state0, step, eval_step = _setup(_mlp(128, fancy=True), opt)
    es = early_stopping(patience=4, restore_best=True)
    key = jax.random.key(5)
    state, hist = fit(step, state0, train_data, key, epochs=epochs, batch_size=bs, eval_step=eval_step,
                      val_data=val_data, early_stopping=es, learning_rate=schedule, progress=False)
    acc = evaluate(eval_step, state, test, batch_size=128)["accuracy"]
    assert float(acc) >= 0.97, float(acc)

    # restore_best: the returned params and batch-norm statistics are those of the best validation epoch.
    best = hist.best_epoch
    assert best is not None and best == int(np.argmin(hist.val["loss"]))
    np.testing.assert_allclose(evaluate(eval_step, state, val_data, batch_size=bs)["loss"],
                               hist.val["loss"][best], rtol=1e-6)
    rerun, _ = fit(step, state0, train_data, key, epochs=best + 1, batch_size=bs, progress=False)
    for a, b in zip(jax.tree_util.tree_leaves((state.params, state.model_state)),
                    jax.tree_util.tree_leaves((rerun.params, rerun.model_state)), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6, atol=1e-7)
    # The recorded learning rate is the schedule at the end of each epoch.
    assert hist.learning_rate is not None
    steps_per_epoch = 1150 // bs
    np.testing.assert_allclose(hist.learning_rate,
                               [float(schedule(steps_per_epoch * (e + 1))) for e in hist.epoch], rtol=1e-6)


def test_fit_scan_computes_the_same_run_as_fit() -> None:
    (x, y), _ = _digits()
    train_data, val_data = (x[:300], y[:300]), (x[300:400], y[300:400])
    state0, step, eval_step = _setup(_mlp(32), optim.adam(1e-2))
    es = early_stopping(patience=2)
    key = jax.random.key(11)
    state, hist = fit(step, state0, train_data, key, epochs=8, batch_size=50, eval_step=eval_step,
                      val_data=val_data, early_stopping=es, progress=False)
    run = jax.jit(lambda fs: fit_scan(step, fs, train_data, key, epochs=8, batch_size=50, eval_step=eval_step,
                                      val_data=val_data, early_stopping=es))
    fs, m = run(init_fit_state(state0, early_stopping=es))
    n_active = int(np.sum(m.active))
    assert n_active == len(hist.epoch)
    np.testing.assert_allclose(m.val["loss"][:n_active], hist.val["loss"], rtol=1e-5)
    scanned = final_train_state(fs, es)
    for a, b in zip(jax.tree_util.tree_leaves(scanned.params), jax.tree_util.tree_leaves(state.params), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------------------------------------------
# non-finite losses


def _poisoned(n: int, bad: int) -> tuple[Array, Array]:
    (x, y), _ = _digits()
    x, y = x[:n], y[:n]
    return x.at[bad, 3].set(jnp.nan), y


def _first_bad_step(key: PRNGKey, n: int, bs: int, bad: int) -> tuple[int, int]:
    """(epoch, step) at which the poisoned example is first used, from the documented schedule."""
    for epoch in range(100):
        perm_key, _ = jax.random.split(jax.random.fold_in(key, epoch))
        perm = np.asarray(jax.random.permutation(perm_key, n))
        pos = int(np.flatnonzero(perm == bad)[0])
        if pos < (n // bs) * bs:
            return epoch, pos // bs
    raise AssertionError("never used")


def test_fit_nan_loss_raises_naming_epoch_and_step() -> None:
    n, bs, bad = 100, 16, 37
    data = _poisoned(n, bad)
    state, step, _ = _setup(_mlp(16), optim.sgd(0.1))
    key = jax.random.key(4)
    epoch, s = _first_bad_step(key, n, bs, bad)
    with pytest.raises(FloatingPointError, match=rf"fit: non-finite loss nan at epoch {epoch}, step {s} of 6"):
        fit(step, state, data, key, epochs=epoch + 2, batch_size=bs, progress=False)


def test_fit_skips_nan_steps_under_skip_nonfinite() -> None:
    n, bs, bad = 100, 16, 37
    data = _poisoned(n, bad)
    state, step, _ = _setup(_mlp(16), optim.skip_nonfinite(optim.sgd(0.1)))
    key = jax.random.key(4)
    out, hist = fit(step, state, data, key, epochs=4, batch_size=bs, progress=False)
    expected = [1 if _used_in_epoch(key, n, bs, bad, e) else 0 for e in range(4)]
    np.testing.assert_array_equal(hist.nonfinite_steps, expected)
    assert sum(expected) >= 1
    assert all(bool(jnp.all(jnp.isfinite(p))) for p in jax.tree_util.tree_leaves(out.params))


def _used_in_epoch(key: PRNGKey, n: int, bs: int, bad: int, epoch: int) -> bool:
    perm_key, _ = jax.random.split(jax.random.fold_in(key, epoch))
    perm = np.asarray(jax.random.permutation(perm_key, n))
    return bool(int(np.flatnonzero(perm == bad)[0]) < (n // bs) * bs)


def test_fit_overflowing_params_raise_even_with_finite_losses() -> None:
    def loss_fn(params: PyTree, ms: PyTree, batch: PyTree, key: PRNGKey) -> tuple[Array, tuple[PyTree, Metrics]]:
        return jnp.sum(jnp.clip(params["w"], -1.0, 1.0)), (ms, {})  # finite even for inf params

    def blow_up(updates: PyTree, state: Any, params: PyTree = None) -> tuple[PyTree, Any]:
        return jax.tree_util.tree_map(lambda u: u + jnp.inf, updates), state

    opt = optim.GradientTransformation(lambda p: (), blow_up)
    state = init_train_state({"w": jnp.ones(2)}, (), opt)
    with pytest.raises(FloatingPointError, match="became non-finite during epoch 0"):
        fit(make_train_step(loss_fn, opt), state, (jnp.ones((8, 1)),), jax.random.key(0), epochs=2, batch_size=4,
            progress=False)


# ------------------------------------------------------------------------------------------------
# progress display


def test_progress_lines_without_tqdm(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    train, _ = _digits()
    small = (train[0][:64], train[1][:64])
    state, step, eval_step = _setup(_mlp(8), optim.sgd(0.1))
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)  # makes "from tqdm.auto import tqdm" fail
    fit(step, state, small, jax.random.key(0), epochs=2, batch_size=32, eval_step=eval_step, val_data=small,
        learning_rate=0.1)
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2
    assert err[1].startswith("epoch 2/2: loss=") and "accuracy=" in err[1] and "val_loss=" in err[1]
    assert "lr=0.1" in err[1]
    fit(step, state, small, jax.random.key(0), epochs=2, batch_size=32, progress=False)
    assert capsys.readouterr().err == ""


def test_progress_bar_with_tqdm(capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("tqdm")
    train, _ = _digits()
    small = (train[0][:64], train[1][:64])
    state, step, _ = _setup(_mlp(8), optim.sgd(0.1))
    fit(step, state, small, jax.random.key(0), epochs=2, batch_size=32)
    err = capsys.readouterr().err
    assert "2/2" in err and "loss=" in err and "accuracy=" in err


# ------------------------------------------------------------------------------------------------
# bad input


def test_bad_data_and_batch_sizes() -> None:
    state, step, eval_step = _setup(_mlp(8), optim.sgd(0.1))
    x, y = jnp.zeros((10, 64)), jnp.zeros((10,), jnp.int32)
    key = jax.random.key(0)
    with pytest.raises(ValueError, match=r"train_epoch: the arrays in 'data' must have the same leading length"):
        train_epoch(step, state, (x, y[:9]), key, batch_size=2)
    with pytest.raises(ValueError, match=r"train_epoch: argument 'batch_size' must be an int >= 1, got 0"):
        train_epoch(step, state, (x, y), key, batch_size=0)
    with pytest.raises(ValueError, match=r"train_epoch: argument 'batch_size' must be <= the number of examples 10, got 11"):
        train_epoch(step, state, (x, y), key, batch_size=11)
    with pytest.raises(TypeError, match=r"batch_size' must be an int"):
        train_epoch(step, state, (x, y), key, batch_size=2.0)  # type: ignore[arg-type]  # deliberate misuse
    with pytest.raises(ValueError, match=r"fit: the arrays in 'train_data'"):
        fit(step, state, (x, y[:5]), key, epochs=1, batch_size=2, progress=False)
    with pytest.raises(ValueError, match=r"fit: argument 'batch_size' must be an int >= 1, got -3"):
        fit(step, state, (x, y), key, epochs=1, batch_size=-3, progress=False)
    with pytest.raises(ValueError, match=r"fit: argument 'batch_size' must be <= the number of examples"):
        fit(step, state, (x, y), key, epochs=1, batch_size=20, progress=False)
    with pytest.raises(ValueError, match=r"fit: the arrays in 'val_data'"):
        fit(step, state, (x, y), key, epochs=1, batch_size=2, eval_step=eval_step, val_data=(x, y[:3]),
            progress=False)
    with pytest.raises(ValueError, match=r"'eval_step' and 'val_data' must be given together"):
        fit(step, state, (x, y), key, epochs=1, batch_size=2, val_data=(x, y), progress=False)
    with pytest.raises(ValueError, match=r"fit: argument 'epochs' must be an int >= 1"):
        fit(step, state, (x, y), key, epochs=0, batch_size=2, progress=False)
    with pytest.raises(ValueError, match=r"evaluate: the arrays in 'data'"):
        evaluate(eval_step, state, (x[:3], y), batch_size=2)
    with pytest.raises(ValueError, match=r"evaluate: argument 'batch_size' must be an int >= 1"):
        evaluate(eval_step, state, (x, y), batch_size=0)
    with pytest.raises(ValueError, match=r"no examples"):
        train_epoch(step, state, (x[:0], y[:0]), key, batch_size=1)
    with pytest.raises(ValueError, match=r"monitor='val_acc' is not a metric"):
        fit(step, state, (x, y), key, epochs=1, batch_size=2, eval_step=eval_step, val_data=(x, y),
            early_stopping=early_stopping(2), monitor="val_acc", progress=False)
    with pytest.raises(ValueError, match="resume=True needs a 'checkpoint_path'"):
        fit(step, state, (x, y), key, epochs=1, batch_size=2, resume=True, progress=False)
