"""fit: digits accuracy (slow), restore-best, History, non-finite losses, progress display, errors.

Also the host-side guarantees of issue 12 ("fail loudly, lose nothing"): label checks (case 1),
model-state finiteness (case 2), restore_best without an improving epoch (case 4), int32 ranges (case 13), and the divergence limit of issue 16.
Skipped updates (case 3), Ctrl-C (case 11) and memory (case 17) are in
``test_train_fit_guarantees.py``.
"""

from __future__ import annotations

import functools
import re
import sys
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from _fit_data import fit_data, poisoned, used_in_epoch

from functrain import layers, optim
from functrain._tree import tree_map
from functrain.data.datasets import load_digits, split_dataset
from functrain.train import (
    TrainState,
    classifier_loss,
    early_stopping,
    evaluate,
    fit,
    init_train_state,
    make_eval_step,
    make_train_step,
)
from functrain.train.step import EvalStep, TrainStep
from functrain.typing import Array, Metrics, PRNGKey, PyTree

STYLE = re.compile(r"^[\w.]+: argument '[\w.\[\]']+' must be .+, got .+$", re.S)


@functools.cache
def _digits() -> tuple[tuple[Array, Array], tuple[Array, Array]]:
    """Digits scaled to [0, 1], split 80/20 by key."""
    ds = load_digits()
    ds = ds._replace(x=ds.x / 16.0)
    tt = split_dataset(jax.random.key(0), ds, test_fraction=0.2)
    return (tt.train.x, tt.train.y), (tt.test.x, tt.test.y)




def _mlp(hidden: int, n_out: int, fancy: bool = False) -> layers.Layer:
    if fancy:
        return layers.serial(layers.Dense(hidden), layers.BatchNorm(), layers.Relu, layers.Dropout(0.2),
                             layers.Dense(n_out))
    return layers.serial(layers.Dense(hidden), layers.Relu, layers.Dense(n_out))


def _setup(model: layers.Layer, opt: optim.TransformationLike, n_in: int = 8,
           seed: int = 1) -> tuple[TrainState[Any, Any, Any], TrainStep, EvalStep]:
    params, mstate, _ = model.init(jax.random.key(seed), (-1, n_in))
    state = init_train_state(params, mstate, opt)
    step = make_train_step(classifier_loss(model.apply, train=True), opt)
    eval_step = make_eval_step(classifier_loss(model.apply, train=False))
    return state, step, eval_step


@functools.cache
def _small() -> tuple[TrainState[Any, Any, Any], TrainStep, EvalStep]:
    """One small model and its steps, shared by the tests below (so they share compiled epochs)."""
    return _setup(_mlp(8, 4), optim.sgd(0.1))


# ------------------------------------------------------------------------------------------------
# Accuracy on digits (long runs)


@pytest.mark.slow
def test_fit_plain_mlp_reaches_97_percent_on_digits() -> None:
    train, test = _digits()
    state, step, eval_step = _setup(_mlp(128, 10), optim.sgd(0.1, momentum=0.9), n_in=64)
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
    state0, step, eval_step = _setup(_mlp(128, 10, fancy=True), opt, n_in=64)
    es = early_stopping(patience=4, restore_best=True)
    key = jax.random.key(5)
    state, hist = fit(step, state0, train_data, key, epochs=epochs, batch_size=bs, eval_step=eval_step,
                      val_data=val_data, early_stopping=es, progress=False)
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


# ------------------------------------------------------------------------------------------------
# Runs, History, the caller's state


def test_fit_is_repeatable_leaves_the_callers_state_intact_and_records_the_schedule() -> None:
    data = fit_data(120)
    schedule = optim.schedules.linear_schedule(0.5, 0.05, 9)
    state0, step, _ = _setup(_mlp(16, 4), optim.sgd(schedule))
    before = [np.asarray(x).copy() for x in jax.tree_util.tree_leaves(state0)]
    forty: Any = np.int64(40)  # (annotated int: NumPy ints are accepted at runtime)
    a, hist = fit(step, state0, data, jax.random.key(3), epochs=3, batch_size=forty, progress=False)
    b, _ = fit(step, state0, data, jax.random.key(3), epochs=3, batch_size=40, progress=False)
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))  # bitwise the same run
    for x, y in zip(before, jax.tree_util.tree_leaves(state0), strict=True):  # not donated away
        np.testing.assert_array_equal(x, np.asarray(y))
    assert int(a.step) == 9 and hist.train["loss"][-1] < hist.train["loss"][0]
    assert hist.learning_rate is not None
    np.testing.assert_allclose(hist.learning_rate, [float(schedule(3 * (e + 1))) for e in range(3)],
                               rtol=1e-6)
    np.testing.assert_array_equal(hist.lr_scale, 1.0)
    np.testing.assert_array_equal(hist.nonfinite_steps, 0)
    assert hist.seconds.shape == (3,) and hist.best_epoch is None and hist.stopped_epoch is None


# ------------------------------------------------------------------------------------------------
# Non-finite losses




def test_fit_nan_loss_raises_naming_epoch_and_step() -> None:
    n, bs, bad = 70, 32, 37  # 2 steps per epoch; 6 examples wait each epoch
    state, step, _ = _small()
    key = jax.random.key(4)
    epoch = next(e for e in range(100) if used_in_epoch(key, n, bs, bad, e) is not None)
    s = used_in_epoch(key, n, bs, bad, epoch)
    with pytest.raises(FloatingPointError, match=rf"fit: non-finite loss nan at epoch {epoch}, step {s} of 2"):
        fit(step, state, poisoned(n, bad), key, epochs=epoch + 2, batch_size=bs, progress=False)


def test_fit_skips_nan_steps_under_skip_nonfinite() -> None:
    n, bs, bad = 100, 16, 37
    state, step, _ = _setup(_mlp(16, 4), optim.skip_nonfinite(optim.sgd(0.1)))
    key = jax.random.key(4)
    with pytest.warns(RuntimeWarning, match="1 of 6 updates were skipped") as caught:
        out, hist = fit(step, state, poisoned(n, bad), key, epochs=4, batch_size=bs, progress=False)
    expected = [0 if used_in_epoch(key, n, bs, bad, e) is None else 1 for e in range(4)]
    np.testing.assert_array_equal(hist.nonfinite_steps, expected)
    assert len(caught) == sum(expected)  # one warning per epoch with skipped updates
    assert sum(expected) >= 1
    assert all(bool(jnp.all(jnp.isfinite(p))) for p in jax.tree_util.tree_leaves(out.params))


def test_fit_overflowing_params_raise_even_with_finite_losses() -> None:
    def loss_fn(params: PyTree, ms: PyTree, batch: PyTree, key: PRNGKey) -> tuple[Array, tuple[PyTree, Metrics]]:
        return jnp.sum(jnp.clip(params["w"], -1.0, 1.0)), (ms, {})  # finite even for inf params

    def blow_up(updates: PyTree, state: Any, params: PyTree = None, **extra_args: Any) -> tuple[PyTree, Any]:
        return tree_map(lambda u: u + jnp.inf, updates), state

    def init(params: PyTree) -> tuple[()]:
        return ()

    opt = optim.GradientTransformation(init, blow_up)
    state = init_train_state({"w": jnp.ones(2)}, (), opt)
    with pytest.raises(FloatingPointError, match="became non-finite during epoch 0"):
        fit(make_train_step(loss_fn, opt), state, (jnp.ones((8, 1)),), jax.random.key(0), epochs=2, batch_size=4,
            progress=False)


# ------------------------------------------------------------------------------------------------
# Progress display


def test_progress_lines_without_tqdm(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    small = fit_data(64)
    state, step, eval_step = _small()
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)  # makes "from tqdm.auto import tqdm" fail
    fit(step, state, small, jax.random.key(0), epochs=2, batch_size=32, eval_step=eval_step, val_data=small)
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2
    assert err[1].startswith("epoch 2/2: loss=") and "accuracy=" in err[1] and "val_loss=" in err[1]
    assert "lr=0.1" in err[1]
    fit(step, state, small, jax.random.key(0), epochs=2, batch_size=32, progress=False)
    assert capsys.readouterr().err == ""


def test_progress_bar_with_tqdm(capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("tqdm")
    small = fit_data(64)
    state, step, _ = _small()
    fit(step, state, small, jax.random.key(0), epochs=2, batch_size=32)
    err = capsys.readouterr().err
    assert "2/2" in err and "loss=" in err and "accuracy=" in err


# ------------------------------------------------------------------------------------------------
# Bad input


def _raises(exc: type[Exception], match: str, fn: Any, *args: Any, **kwargs: Any) -> None:
    with pytest.raises(exc, match=match) as info:
        fn(*args, **kwargs)
    assert STYLE.match(str(info.value)), str(info.value)


def test_bad_arguments_name_fit() -> None:
    state, step, eval_step = _small()
    x, y = fit_data(10)
    key = jax.random.key(0)
    kw: dict[str, Any] = {"progress": False}
    with pytest.raises(ValueError, match=r"fit: argument 'train_data' must be arrays with the same"):
        fit(step, state, (x, y[:5]), key, epochs=1, batch_size=2, **kw)
    _raises(ValueError, r"fit: argument 'batch_size' must be an int >= 1, got -3",
            fit, step, state, (x, y), key, epochs=1, batch_size=-3, **kw)
    _raises(ValueError, r"fit: argument 'batch_size' must be an int <= the number of examples \(10\), got 20",
            fit, step, state, (x, y), key, epochs=1, batch_size=20, **kw)
    with pytest.raises(ValueError, match=r"fit: argument 'val_data' must be arrays with the same"):
        fit(step, state, (x, y), key, epochs=1, batch_size=2, eval_step=eval_step, val_data=(x, y[:3]), **kw)
    _raises(ValueError, r"fit: argument 'val_data' must be given exactly when eval_step is given",
            fit, step, state, (x, y), key, epochs=1, batch_size=2, val_data=(x, y), **kw)
    _raises(ValueError, r"fit: argument 'epochs' must be an int in \[1, 2147483647\], got 0",
            fit, step, state, (x, y), key, epochs=0, batch_size=2, **kw)
    _raises(ValueError, r"fit_epoch: argument 'options.monitor' must be the name of a validation metric",
            fit, step, state, (x, y), key, epochs=1, batch_size=2, eval_step=eval_step, val_data=(x, y),
            early_stopping=early_stopping(2), monitor="val_acc", **kw)
    _raises(ValueError, r"fit: argument 'checkpoint_path' must be a path when resume=True, got None",
            fit, step, state, (x, y), key, epochs=1, batch_size=2, resume=True, **kw)
    _raises(TypeError, r"fit: argument 'progress' must be a bool, got 'yes'",
            fit, step, state, (x, y), key, epochs=1, batch_size=2, progress="yes")
    _raises(TypeError, r"fit: argument 'state' must be a TrainState",
            fit, step, {"w": x}, (x, y), key, epochs=1, batch_size=2, **kw)
    _raises(ValueError, r"fit: argument 'learning_rate' must be >= 0, got -0.1",
            fit, step, state, (x, y), key, epochs=1, batch_size=2, learning_rate=-0.1, **kw)
    _raises(TypeError, r"fit: argument 'early_stopping' must be an EarlyStopping rule",
            fit, step, state, (x, y), key, epochs=1, batch_size=2, early_stopping=2, **kw)


# ------------------------------------------------------------------------------------------------
# Issue 12, case 1: labels are checked before training


def _with_model_attached(model: layers.Layer, opt: optim.GradientTransformation[Any]) -> TrainStep:
    """A train step that carries ``loss_fn.apply`` (what ``classifier_loss`` + ``make_train_step`` give)."""
    base = classifier_loss(model.apply, train=True)

    def loss_fn(params: PyTree, ms: PyTree, batch: PyTree, key: PRNGKey) -> tuple[Array, tuple[PyTree, Metrics]]:
        return base(params, ms, batch, key)

    setattr(loss_fn, "apply", model.apply)  # noqa: B010  (a function attribute, read with getattr)
    step = make_train_step(loss_fn, opt)
    if getattr(step, "loss_fn", None) is None:
        setattr(step, "loss_fn", loss_fn)  # noqa: B010
    return step


def test_case_1_fit_rejects_out_of_range_labels_before_training() -> None:
    state, step, eval_step = _small()  # 4 classes
    x, y = fit_data(20)
    key = jax.random.key(0)
    kw: dict[str, Any] = {"epochs": 1, "batch_size": 4, "progress": False}
    _raises(ValueError, r"fit: argument 'train_data\[1\]' must be class labels in \[0, 4\), got 2 out of "
            r"range \(the first at index 3: 4\)",
            fit, step, state, (x, y.at[3].set(4).at[7].set(9)), key, num_classes=4, **kw)
    # Negative labels are refused even when the number of classes is unknown.
    _raises(ValueError, r"fit: argument 'train_data\[1\]' must be class labels (>= 0|in \[0, 4\)), got 1 out "
            r"of range \(the first at index 5: -1\)", fit, step, state, (x, y.at[5].set(-1)), key, **kw)
    # Labels beyond int32 are refused as given (no cast first).
    wide = np.asarray(y, np.int64).copy()
    wide[0] = 2**31
    _raises(ValueError, r"the first at index 0: 2147483648\)", fit, step, state, (x, wide), key, num_classes=4, **kw)
    _raises(ValueError, r"fit: argument 'val_data\[1\]' must be class labels in \[0, 4\), got 1 out of range "
            r"\(the first at index 2: 4\)", fit, step, state, (x, y), key, eval_step=eval_step,
            val_data=(x, y.at[2].set(4)), num_classes=4, **kw)
    # The number of classes found from the model when the step carries its loss's apply.
    model = _mlp(8, 4)
    auto = _with_model_attached(model, optim.sgd(0.1))
    with pytest.raises(ValueError, match=r"in \[0, 4\), got 1 out of range \(the first at index 6: 4\); 4 classes "
                                         r"is the size of the model's output") as info:
        fit(auto, state, (x, y.at[6].set(4)), key, **kw)
    assert STYLE.match(str(info.value))
    _raises(ValueError, r"fit: argument 'num_classes' must be an int in \[1, 2147483647\], got 0",
            fit, step, state, (x, y), key, num_classes=0, **kw)
    # check_labels=False: the labels are the loss's business (here: no ValueError before training).
    try:
        fit(step, state, (x, y.at[5].set(-1)), key, check_labels=False, **kw)
    except FloatingPointError:
        pass  # a NaN loss for the bad label is the loss function's answer


# ------------------------------------------------------------------------------------------------
# Issue 12, case 2: the finiteness check covers the model state


def _running_mean_loss(params: Array, ms: Array, batch: PyTree, key: PRNGKey) -> tuple[Array, tuple[PyTree, Metrics]]:
    """A finite loss of ``x`` while the model state tracks the running mean of ``z`` (like BN statistics)."""
    x, z = batch
    return jnp.mean((x @ params - 1.0) ** 2), (0.9 * ms + 0.1 * jnp.mean(z), {})


def test_case_2_fit_raises_when_the_model_state_becomes_nonfinite() -> None:
    opt = optim.skip_nonfinite(optim.sgd(0.1))
    state = init_train_state(jnp.zeros(3), jnp.zeros(()), opt)
    x, z = jnp.ones((16, 3)), jnp.zeros(16).at[11].set(jnp.nan)
    with pytest.raises(FloatingPointError, match=r"fit: the model state \(first at model_state\) became non-finite "
                                                 r"during epoch 0 .* although every loss was finite: the inputs are "
                                                 r"not finite: train_data\[1\] holds NaN or inf at example 11"):
        fit(make_train_step(_running_mean_loss, opt), state, (x, z), jax.random.key(0), epochs=2, batch_size=4,
            progress=False)


# ------------------------------------------------------------------------------------------------
# Issue 12, case 4: restore_best without any improving epoch


def test_case_4_restore_best_without_a_finite_validation_value_warns_naming_the_metric() -> None:
    state, step, eval_step = _small()
    x, y = fit_data(40)
    val = (x.at[:, 0].set(jnp.nan), y)  # every validation loss is NaN
    with pytest.warns(RuntimeWarning, match=r"fit: restore_best found no epoch that improved on the initial value: "
                                            r"the monitored metric 'val_loss' was NaN in 3 and infinite in 0 of 3 "
                                            r"epochs, so the returned parameters and model state are the initial ones"):
        out, hist = fit(step, state, (x, y), jax.random.key(0), epochs=3, batch_size=8, eval_step=eval_step,
                        val_data=val, early_stopping=early_stopping(5), progress=False)
    assert hist.best_epoch is None and np.all(np.isnan(hist.val["loss"]))
    for a, b in zip(jax.tree_util.tree_leaves(out.params), jax.tree_util.tree_leaves(state.params), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))  # the documented result: the initial ones


# ------------------------------------------------------------------------------------------------
# Issue 12, case 13: documented int32 ranges, checked up front


def test_case_13_epoch_counts_are_int32_and_fit_the_step_counter() -> None:
    state, _, _ = _small()
    data, key = fit_data(16), jax.random.key(0)

    def never(s: Any, batch: Any, k: Any) -> Any:  # the checks come first: nothing may train
        raise AssertionError("fit started training")

    _raises(ValueError, r"fit: argument 'epochs' must be an int in \[1, 2147483647\], got 1000000000000",
            fit, never, state, data, key, epochs=10**12, batch_size=4, progress=False)
    _raises(ValueError, r"fit: argument 'epochs' must be an int <= 536870911, got 2000000000; 2000000000 epochs of "
            r"4 steps from step 0 would overflow the int32 step counter",
            fit, never, state, data, key, epochs=2 * 10**9, batch_size=4, progress=False)


# ------------------------------------------------------------------------------------------------
# Issue 16: the divergence limit stops fit


def _threshold_loss(params: PyTree, ms: PyTree, batch: PyTree, key: PRNGKey) -> tuple[Array, tuple[PyTree, Metrics]]:
    """Pulls ``w`` towards the target ``t``; NaN gradients once ``w > 5`` (``0 * sqrt'`` of a negative)."""
    w, t = params["w"], jax.lax.stop_gradient(params["t"])
    return 0.5 * (w - t) ** 2 + 0.0 * jnp.sqrt(5.0 - w), (ms, {})


def test_issue_16_stops_a_diverging_fit_at_the_predicted_step() -> None:
    # sgd(0.25) towards t = 10 from 0: w = 2.5, 4.375, 5.78125 after steps 0, 1, 2; steps 3, 4, 5 see
    # w > 5 (NaN gradients, skipped, w frozen), so the 3rd consecutive skip is global step 5: epoch 1,
    # step 1 of 4.
    opt = optim.skip_nonfinite(optim.sgd(0.25), max_consecutive=3)
    state = init_train_state({"w": jnp.zeros(()), "t": jnp.asarray(10.0)}, (), opt)
    data = (jnp.zeros((8, 1)),)
    with pytest.warns(RuntimeWarning, match=r"^fit: epoch 0: 1 of 4 updates were skipped"), \
            pytest.raises(FloatingPointError, match=r"fit: the run diverged at epoch 1, step 1 of 4 \(global step 5\): "
                                                    r"the optimizer's skip_nonfinite guard reached its max_consecutive"):
        fit(make_train_step(_threshold_loss, opt), state, data, jax.random.key(0), epochs=5, batch_size=2,
            progress=False)


def test_the_learning_rate_is_read_from_the_optimizer_state_and_the_old_argument_is_deprecated() -> None:
    """fit shows and records the rate the optimizer state holds (issue 15); learning_rate= warns."""
    data = fit_data(120)
    schedule = optim.schedules.exponential_decay(0.4, 0.5, transition_steps=3, staircase=True)
    state0, step, _ = _setup(_mlp(16, 4), optim.sgd(schedule))
    _, hist = fit(step, state0, data, jax.random.key(3), epochs=3, batch_size=40, progress=False)
    assert hist.learning_rate is not None  # 3 steps per epoch: the rate halves every epoch
    np.testing.assert_allclose(hist.learning_rate, [0.2, 0.1, 0.05], rtol=1e-6)
    with pytest.warns(DeprecationWarning, match="fit: argument 'learning_rate' is deprecated"):
        _, old = fit(step, state0, data, jax.random.key(3), epochs=3, batch_size=40,
                     learning_rate=123.0, progress=False)
    assert old.learning_rate is not None
    np.testing.assert_allclose(old.learning_rate, hist.learning_rate)  # the state wins
    import optax

    opt = optax.sgd(0.3)  # an optax optimizer state holds no functrain learning rate
    state1, step1, _ = _setup(_mlp(16, 4), opt)
    _, none = fit(step1, state1, data, jax.random.key(3), epochs=2, batch_size=40, progress=False)
    assert none.learning_rate is None
    with pytest.warns(DeprecationWarning, match="holds none, so the given value is used"):
        _, given = fit(step1, state1, data, jax.random.key(3), epochs=2, batch_size=40,
                       learning_rate=0.3, progress=False)
    assert given.learning_rate is not None
    np.testing.assert_allclose(given.learning_rate, [0.3, 0.3])
