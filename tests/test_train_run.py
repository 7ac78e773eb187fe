"""FitOptions, init_fit_state, fit_epoch, fit_scan, final_train_state: one run as a pure function."""

from __future__ import annotations

import re
import warnings
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _typed import jit

from functrain import _tree, layers, optim
from functrain.train import (
    EpochMetrics,
    FitOptions,
    FitState,
    TrainState,
    classifier_loss,
    early_stopping,
    final_train_state,
    fit,
    fit_epoch,
    fit_scan,
    init_fit_state,
    init_train_state,
    make_eval_step,
    make_train_step,
    reduce_on_plateau,
    scale_by_plateau,
)
from functrain.train.step import EvalStep, TrainStep
from functrain.typing import Array, Metrics, PRNGKey, PyTree

STYLE = re.compile(r"^[\w.]+: argument '[\w.\[\]']+' must be .+, got .+$", re.S)

MODEL = layers.serial(layers.Dense(16), layers.Relu, layers.Dense(4))


def _data(n: int, seed: int = 0) -> tuple[Array, Array]:
    """A small synthetic classification problem (host RNG: nothing to compile)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 8)).astype(np.float32)
    w = np.random.default_rng(100).normal(size=(8, 4))
    return jnp.asarray(x), jnp.asarray(np.argmax(x @ w, axis=1).astype(np.int32))


def _setup(opt: optim.GradientTransformation[Any], seed: int = 1) -> tuple[
        TrainState[Any, Any, Any], TrainStep, EvalStep]:
    params, mstate, _ = MODEL.init(jax.random.key(seed), (-1, 8))
    state = init_train_state(params, mstate, opt)
    step = make_train_step(classifier_loss(MODEL.apply, train=True), opt)
    eval_step = make_eval_step(classifier_loss(MODEL.apply, train=False))
    return state, step, eval_step


def _linear_loss(params: Array, model_state: PyTree, batch: PyTree,
                 key: PRNGKey) -> tuple[Array, tuple[PyTree, Metrics]]:
    """A least-squares model (cheap to compile) with a second metric, the largest error."""
    x, y = batch
    err = x @ params - y
    return jnp.mean(err ** 2), (model_state, {"max_err": jnp.max(jnp.abs(err))})


def _linear_data(n: int, seed: int) -> tuple[Array, Array]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3))
    y = x @ np.array([1.0, -2.0, 0.5]) + 0.3 * rng.normal(size=n)
    return jnp.asarray(x, jnp.float32), jnp.asarray(y, jnp.float32)


LINEAR_OPT = optim.sgd(0.05)
LINEAR_STEP = make_train_step(_linear_loss, LINEAR_OPT)
LINEAR_EVAL = make_eval_step(_linear_loss)
LINEAR_STATE = init_train_state(jnp.zeros(3), (), LINEAR_OPT)


def _raises(exc: type[Exception], match: str, fn: Any, *args: Any, **kwargs: Any) -> None:
    with pytest.raises(exc, match=match) as info:
        fn(*args, **kwargs)
    assert STYLE.match(str(info.value)), str(info.value)


# ------------------------------------------------------------------------------------------------
# FitOptions


def test_fit_options_are_validated_normalized_and_hashable() -> None:
    es = early_stopping(3)
    n16: Any = np.int64(16)  # (annotated int: NumPy ints are accepted at runtime)
    n64: Any = np.int32(64)
    a = FitOptions(batch_size=n16, eval_batch_size=n64, early_stopping=es)
    assert type(a.batch_size) is int and type(a.eval_batch_size) is int
    b = FitOptions(16, eval_batch_size=64, early_stopping=early_stopping(3))
    assert a == b and hash(a) == hash(b)  # equal options: one jit cache entry
    assert a != FitOptions(16, eval_batch_size=64, early_stopping=es, monitor="val_accuracy")
    with pytest.raises(AttributeError):
        a.batch_size = 3  # type: ignore[misc]  # frozen: the deliberate error under test
    _raises(ValueError, r"FitOptions: argument 'batch_size' must be an int >= 1, got 0", FitOptions, 0)
    _raises(TypeError, r"FitOptions: argument 'batch_size' must be an int >= 1, got 8.0", FitOptions, 8.0)
    _raises(TypeError, r"FitOptions: argument 'eval_step' must be an eval step function or None",
            FitOptions, 8, eval_step=3)
    _raises(ValueError, r"FitOptions: argument 'eval_batch_size' must be an int >= 1", FitOptions, 8,
            eval_batch_size=-1)
    _raises(TypeError, r"FitOptions: argument 'early_stopping' must be an EarlyStopping rule",
            FitOptions, 8, early_stopping=3)
    _raises(TypeError, r"FitOptions: argument 'plateau' must be a ReduceOnPlateau rule",
            FitOptions, 8, plateau=early_stopping(2))
    _raises(TypeError, r"FitOptions: argument 'monitor' must be a metric name", FitOptions, 8, monitor=None)


def test_fit_options_are_static_under_jit_and_vmap() -> None:
    """A FitOptions passes through jit and vmap unchanged; equal options reuse the compiled epoch."""
    data = _linear_data(32, seed=0)
    traces: list[int] = []

    def epoch(fs: FitState[Any], key: PRNGKey, options: FitOptions) -> tuple[FitState[Any], EpochMetrics]:
        traces.append(options.batch_size)
        return fit_epoch(LINEAR_STEP, fs, data, key, options)

    jitted = jit(epoch)  # no static_argnums needed: FitOptions is a static pytree
    fs = init_fit_state(LINEAR_STATE)
    out1, _ = jitted(fs, jax.random.key(0), FitOptions(8))
    eight: Any = np.int64(8)  # (annotated int: NumPy ints are accepted at runtime)
    out2, _ = jitted(fs, jax.random.key(0), FitOptions(eight))
    assert traces == [8]
    np.testing.assert_array_equal(out1.train_state.params, out2.train_state.params)
    jitted(fs, jax.random.key(0), FitOptions(16))
    assert traces == [8, 16]
    keys = jax.random.split(jax.random.key(1), 2)
    stacked = _tree.tree_map(lambda x: jnp.stack([x, x]), fs)
    batched, m = jit(jax.vmap(epoch, in_axes=(0, 0, None)))(stacked, keys, FitOptions(8))
    assert m.train["loss"].shape == (2,) and int(batched.epoch[1]) == 1


# ------------------------------------------------------------------------------------------------
# fit_epoch / fit_scan / fit: one computation


def test_fit_scan_computes_the_same_run_as_fit_and_a_manual_loop() -> None:
    train_data, val_data = _data(200), _data(60, seed=5)
    state0, step, eval_step = _setup(optim.adam(3e-2))
    es = early_stopping(patience=1, min_delta=0.06)  # the validation loss gains less than that by epoch 4
    options = FitOptions(batch_size=50, eval_step=eval_step, early_stopping=es)
    key = jax.random.key(11)
    state, hist = fit(step, state0, train_data, key, epochs=8, batch_size=50, eval_step=eval_step,
                      val_data=val_data, early_stopping=es, progress=False)
    def scan(fs: FitState[Any]) -> tuple[FitState[Any], Any]:
        return fit_scan(step, fs, train_data, key, options, epochs=8, val_data=val_data)

    run = jit(scan)
    fs, m = run(init_fit_state(state0, options))
    n_active = int(np.sum(m.active))
    assert n_active == len(hist.epoch) and hist.stopped_epoch == n_active - 1 < 7  # it stopped early
    np.testing.assert_allclose(m.val["loss"][:n_active], hist.val["loss"], rtol=1e-5)
    scanned = final_train_state(fs, options)
    for a, b in zip(jax.tree_util.tree_leaves(scanned.params), jax.tree_util.tree_leaves(state.params), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(m.active, np.arange(8) < n_active)
    assert fs.early_stopping is not None and int(fs.early_stopping.epoch) == n_active


def test_monitor_picks_the_named_metric() -> None:
    """Early stopping keeps the best value of exactly the monitored metric (train or validation)."""
    train_data, val_data = _linear_data(48, seed=0), _linear_data(16, seed=5)
    es = early_stopping(patience=50, mode="max")  # "max" of an error: the worst epoch, unlike the loss
    for monitor, part, name in (("train_max_err", "train", "max_err"), ("loss", "val", "loss"),
                                ("val_max_err", "val", "max_err"), ("train_loss", "train", "loss")):
        options = FitOptions(16, eval_step=LINEAR_EVAL, early_stopping=es, monitor=monitor)
        fs, m = jit(fit_scan, static_argnums=(0,), static_argnames="epochs")(
            LINEAR_STEP, init_fit_state(LINEAR_STATE, options), train_data, jax.random.key(0), options,
            epochs=3, val_data=val_data)
        assert fs.early_stopping is not None
        watched = np.asarray(getattr(m, part)[name])
        assert len(np.unique(watched)) == 3  # the epochs differ, so a wrong pick is caught
        np.testing.assert_allclose(fs.early_stopping.best_value, np.max(watched), rtol=1e-6)
        assert int(fs.early_stopping.best_epoch) == int(np.argmax(watched))


def test_final_train_state_restores_the_best_epoch_only_with_the_rule() -> None:
    data = _linear_data(64, seed=0)
    options = FitOptions(16, early_stopping=early_stopping(patience=10))
    fs, _ = fit_scan(LINEAR_STEP, init_fit_state(LINEAR_STATE, options), data, jax.random.key(0), options,
                     epochs=3)
    assert fs.early_stopping is not None
    best = int(fs.early_stopping.best_epoch)
    kept = final_train_state(fs, options)
    assert kept.params is fs.early_stopping.best_params[0]
    assert int(kept.step) == int(fs.train_state.step) == 12  # the step counter is the last epoch's
    assert final_train_state(fs) is fs.train_state  # without the options: the last epoch
    assert final_train_state(fs, FitOptions(16)) is fs.train_state
    assert 0 <= best <= 2


def test_plateau_and_early_stopping_states_need_matching_options() -> None:
    opt = optim.chain(optim.sgd(0.1), scale_by_plateau())
    state, step, eval_step = _setup(opt)
    data = _data(32)
    key = jax.random.key(0)
    with_rules = FitOptions(8, early_stopping=early_stopping(2), plateau=reduce_on_plateau())
    fs = init_fit_state(state, with_rules)
    assert fs.early_stopping is not None and fs.plateau is not None
    plain = init_fit_state(state)
    assert plain.early_stopping is None and plain.plateau is None
    _raises(ValueError, r"fit_epoch: argument 'options.early_stopping' must be set exactly when "
            r"fit_state holds an early-stopping state", fit_epoch, step, plain, data, key, with_rules)
    _raises(ValueError, r"fit_epoch: argument 'options.plateau' must be set exactly when",
            fit_epoch, step, fs, data, key, FitOptions(8, early_stopping=early_stopping(2)))
    _raises(ValueError, r"fit_epoch: argument 'val_data' must be validation data since "
            r"options.eval_step is set, got None", fit_epoch, step, plain, data, key,
            FitOptions(8, eval_step=eval_step))
    _raises(ValueError, r"fit_epoch: argument 'val_data' must be None when options.eval_step is None",
            fit_epoch, step, plain, data, key, FitOptions(8), val_data=data)
    _raises(ValueError, r"fit_epoch: argument 'options.monitor' must be the name of a training metric, "
            r"or 'train_<name>' / 'val_<name>': one of \['accuracy', 'loss', 'train_accuracy'",
            fit_epoch, step, fs, data, key, FitOptions(8, early_stopping=early_stopping(2),
                                                       plateau=reduce_on_plateau(), monitor="val_loss"))
    _raises(TypeError, r"fit_epoch: argument 'fit_state' must be a FitState", fit_epoch, step, state,
            data, key, FitOptions(8))
    _raises(TypeError, r"fit_epoch: argument 'options' must be a FitOptions", fit_epoch, step, plain,
            data, key, {"batch_size": 8})
    _raises(ValueError, r"fit_epoch: argument 'options.batch_size' must be an int <= the number of "
            r"examples \(32\), got 64", fit_epoch, step, plain, data, key, FitOptions(64))
    _raises(ValueError, r"fit_scan: argument 'epochs' must be an int in \[1, 2147483647\], got 0", fit_scan,
            step, plain, data, key, FitOptions(8), epochs=0)
    _raises(ValueError, r"init_fit_state: argument 'train_state.opt_state' must be the state of an "
            r"optimizer with exactly one scale_by_plateau\(\)", init_fit_state,
            _setup(optim.sgd(0.1))[0], FitOptions(8, plateau=reduce_on_plateau()))
    _raises(TypeError, r"init_fit_state: argument 'options' must be a FitOptions or None",
            init_fit_state, state, early_stopping(2))
    _raises(TypeError, r"final_train_state: argument 'fit_state' must be a FitState",
            final_train_state, state)


# ------------------------------------------------------------------------------------------------
# Issue 12: finiteness of the model state (case 2), restore_best without improvement (case 4),
# epoch ranges (case 13); issue 16: a diverged run freezes inside fit_scan


def _running_mean_loss(params: Array, ms: Array, batch: PyTree, key: PRNGKey) -> tuple[Array, tuple[PyTree, Metrics]]:
    """A finite loss of ``x`` while the model state tracks the running mean of ``z`` (like BN statistics)."""
    x, z = batch
    return jnp.mean((x @ params - 1.0) ** 2), (0.9 * ms + 0.1 * jnp.mean(z), {})


def test_case_2_epoch_finiteness_covers_the_model_state() -> None:
    opt = optim.skip_nonfinite(optim.sgd(0.1))
    fs = init_fit_state(init_train_state(jnp.zeros(3), jnp.zeros(()), opt))
    step = make_train_step(_running_mean_loss, opt)
    clean = (jnp.ones((8, 3)), jnp.zeros(8))
    _, m = fit_epoch(step, fs, clean, jax.random.key(0), FitOptions(4))
    assert bool(m.finite)
    out, m = fit_epoch(step, fs, (clean[0], clean[1].at[2].set(jnp.inf)), jax.random.key(0), FitOptions(4))
    assert not bool(m.finite) and bool(jnp.all(jnp.isfinite(m.step_loss)))  # only the model state broke
    assert bool(jnp.all(jnp.isfinite(out.train_state.params)))


def test_case_4_final_train_state_warns_when_no_epoch_improved() -> None:
    options = FitOptions(16, eval_step=LINEAR_EVAL, early_stopping=early_stopping(patience=10))
    x, y = _linear_data(32, seed=0)
    fs, m = fit_scan(LINEAR_STEP, init_fit_state(LINEAR_STATE, options), (x, y), jax.random.key(0), options,
                     epochs=2, val_data=(x.at[0, 0].set(jnp.nan), y))
    assert bool(jnp.all(jnp.isnan(m.val["loss"])))
    with pytest.warns(RuntimeWarning, match=r"final_train_state: restore_best found no epoch whose monitored metric "
                                            r"'loss' improved on its initial value: every value was NaN or infinite"):
        kept = final_train_state(fs, options)
    np.testing.assert_array_equal(kept.params, LINEAR_STATE.params)  # the initial parameters, as documented
    # A batch of runs: the warning names the runs that never improved.
    assert fs.early_stopping is not None
    good = fs._replace(early_stopping=fs.early_stopping._replace(best_epoch=jnp.asarray(0, jnp.int32)))
    batch = _tree.tree_map(lambda a, b: jnp.stack([a, b]), good, fs)
    with pytest.warns(RuntimeWarning, match=r"its initial value \(runs \[1\]\)"):
        final_train_state(batch, options)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        final_train_state(good, options)  # an improving run: no warning


def test_case_13_fit_scan_epochs_fit_int32_and_the_step_counter() -> None:
    fs, data = init_fit_state(LINEAR_STATE), _linear_data(32, seed=0)
    _raises(ValueError, r"fit_scan: argument 'epochs' must be an int in \[1, 2147483647\], got 2147483648",
            fit_scan, LINEAR_STEP, fs, data, jax.random.key(0), FitOptions(8), epochs=2**31)
    _raises(ValueError, r"fit_scan: argument 'epochs' must be an int <= 536870911, got 536870912; 536870912 "
            r"epochs of 4 steps from step 0 would overflow the int32 step counter",
            fit_scan, LINEAR_STEP, fs, data, jax.random.key(0), FitOptions(8), epochs=2**29)


def _threshold_loss(params: PyTree, ms: PyTree, batch: PyTree, key: PRNGKey) -> tuple[Array, tuple[PyTree, Metrics]]:
    """Pulls ``w`` towards the target ``t``; NaN gradients once ``w > 5`` (``0 * sqrt'`` of a negative)."""
    w, t = params["w"], jax.lax.stop_gradient(params["t"])
    return 0.5 * (w - t) ** 2 + 0.0 * jnp.sqrt(5.0 - w), (ms, {})


def test_issue_16_a_diverging_run_freezes_in_a_vmapped_fit_scan_and_the_others_match_their_solo_runs() -> None:
    opt = optim.skip_nonfinite(optim.sgd(0.25), max_consecutive=3)
    step = make_train_step(_threshold_loss, opt)
    options, data = FitOptions(2), (jnp.zeros((8, 1)),)  # 4 steps per epoch
    targets = jnp.asarray([1.0, 2.0, 3.0, 10.0])  # only the last run crosses w = 5 (at its 4th step)

    def run(key: PRNGKey, t: Array) -> tuple[FitState[Any], EpochMetrics]:
        state = init_train_state({"w": jnp.zeros(()), "t": t}, (), opt)
        return fit_scan(step, init_fit_state(state), data, key, options, epochs=4)

    keys = jax.random.split(jax.random.key(0), 4)
    fs, m = jit(jax.vmap(run))(keys, targets)
    np.testing.assert_array_equal(m.diverged[3], [False, True, True, True])
    np.testing.assert_array_equal(m.diverged_step[3], [-1, 1, -1, -1])  # global step 5 = epoch 1, step 1
    np.testing.assert_array_equal(m.active[3], [True, True, False, False])
    np.testing.assert_array_equal(m.skipped[3], [1, 4, 0, 0])  # step 3; steps 4-7 (NaN, then frozen)
    assert float(fs.train_state.params["w"][3]) == 5.78125 and int(fs.train_state.step[3]) == 8
    for i in range(3):  # the good runs: never diverged, and exactly their solo runs
        solo_fs, solo_m = jit(run)(keys[i], targets[i])
        assert not bool(jnp.any(m.diverged[i])) and bool(jnp.all(m.active[i]))
        np.testing.assert_array_equal(m.skipped[i], 0)
        np.testing.assert_allclose(fs.train_state.params["w"][i], solo_fs.train_state.params["w"], rtol=1e-6)
        np.testing.assert_allclose(m.train["loss"][i], solo_m.train["loss"], rtol=1e-6)
