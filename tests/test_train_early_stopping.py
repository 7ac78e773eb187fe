"""Early stopping: the rule on recorded curves (Python, jit, scan), and per-seed stopping under vmap."""

from __future__ import annotations

import functools
from typing import Any

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax
from _typed import jit

from functrain import _tree, layers, optim
from functrain.data.datasets import load_digits
from functrain.train import (
    EarlyStoppingState,
    FitOptions,
    FitState,
    classifier_loss,
    early_stopping,
    fit_epoch,
    init_fit_state,
    init_train_state,
    make_eval_step,
    make_train_step,
    masked_update,
)
from functrain.typing import Array, PRNGKey


def _reference_stop(values: list[float], patience: int, min_delta: float, mode: str) -> tuple[int | None, int]:
    """Plain-Python statement of the rule: (stopping epoch or None, best epoch)."""
    best, best_epoch, bad = (np.inf if mode == "min" else -np.inf), -1, 0
    for e, v in enumerate(values):
        improved = v < best - min_delta if mode == "min" else v > best + min_delta
        if improved:
            best, best_epoch, bad = v, e, 0
        else:
            bad += 1
            if bad >= patience:
                return e, best_epoch
    return None, best_epoch


CURVE = [1.00, 0.80, 0.85, 0.70, 0.72, 0.71, 0.75, 0.69, 0.60, 0.65, 0.64, 0.66, 0.70, 0.90]


def _run_python(values: list[float], **kw: Any) -> EarlyStoppingState:
    es = early_stopping(**kw)
    s = es.init(jnp.asarray(-1))
    for e, v in enumerate(values):
        s = es.update(s, v, jnp.asarray(e))
    return s


def test_stops_at_the_epoch_the_rule_implies_for_a_recorded_curve() -> None:
    # Best values at epochs 0, 1, 3; epochs 4, 5, 6 do not improve: patience 3 stops at epoch 6.
    s = _run_python(CURVE, patience=3)
    assert bool(s.stopped) and int(s.epoch) == 7
    assert int(s.best_epoch) == 3 and float(s.best_value) == pytest.approx(0.70)
    assert int(s.best_params) == 3  # the restored "params" are those of the best epoch
    # Patience 4 survives to see 0.69 at epoch 7, then 0.60 at 8, and stops at 12.
    s4 = _run_python(CURVE, patience=4)
    assert bool(s4.stopped) and int(s4.epoch) - 1 == 12 and int(s4.best_epoch) == 8


@pytest.mark.parametrize("patience", [1, 2, 3, 5])
@pytest.mark.parametrize("min_delta", [0.0, 0.015, 0.2])
@pytest.mark.parametrize("mode", ["min", "max"])
def test_matches_the_reference_rule(patience: int, min_delta: float, mode: str) -> None:
    values = CURVE if mode == "min" else [1 - v for v in CURVE]
    stop, best_epoch = _reference_stop(values, patience, min_delta, mode)
    s = _run_python(values, patience=patience, min_delta=min_delta, mode=mode)
    assert bool(s.stopped) == (stop is not None)
    if stop is not None:
        assert int(s.epoch) == stop + 1
    assert int(s.best_epoch) == best_epoch


class TestEarlyStoppingUpdate(chex.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    def test_update_follows_the_reference_rule_and_keeps_the_best_params(self) -> None:
        for patience, min_delta, mode in ((1, 0.0, "min"), (3, 0.015, "min"), (2, 0.2, "max")):
            es = early_stopping(patience, min_delta=min_delta, mode=mode)  # type: ignore[arg-type]  # str from the table
            values = CURVE if mode == "min" else [1 - v for v in CURVE]

            def update(s: EarlyStoppingState, v: Array, params: Array) -> EarlyStoppingState:
                return es.update(s, v, params)

            step = self.variant(update)
            s = es.init(jnp.asarray(-1))
            for e, v in enumerate(values):
                s = step(s, jnp.asarray(v), jnp.asarray(e))
            stop, best_epoch = _reference_stop(values, patience, min_delta, mode)
            assert bool(s.stopped) == (stop is not None)
            assert int(s.epoch) == (len(values) if stop is None else stop + 1)
            assert int(s.best_epoch) == best_epoch == int(s.best_params)
            np.testing.assert_allclose(s.best_value, values[best_epoch], rtol=1e-6)

    @chex.variants(with_jit=True, without_jit=True)
    def test_masked_update_freezes_stopped_runs(self) -> None:
        def masked(stopped: Array, new: Any, old: Any) -> Any:
            return masked_update(stopped, new, old)

        old = {"w": jnp.zeros(2), "step": jnp.int32(3)}
        new = {"w": jnp.ones(2), "step": jnp.int32(4)}
        chex.assert_trees_all_equal(self.variant(masked)(jnp.asarray(True), new, old), old)
        chex.assert_trees_all_equal(self.variant(masked)(jnp.asarray(False), new, old), new)


def test_jit_scan_over_a_recorded_curve_equals_python_and_freezes() -> None:
    es = early_stopping(patience=3)
    values = jnp.asarray(CURVE)

    @jit
    def run(values: Array) -> tuple[EarlyStoppingState, Array]:
        def body(s: EarlyStoppingState, ev: tuple[Array, Array]) -> tuple[EarlyStoppingState, Array]:
            e, v = ev
            s = es.update(s, v, e)
            return s, s.stopped
        return lax.scan(body, es.init(jnp.asarray(-1)), (jnp.arange(values.shape[0]), values))

    s, stopped = run(values)
    ref = _run_python(CURVE, patience=3)
    for a, b in zip(s, ref, strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    np.testing.assert_array_equal(stopped, np.arange(len(CURVE)) >= 6)


def test_nan_never_improves_and_restore_without_copy() -> None:
    s = _run_python([1.0, float("nan"), float("nan")], patience=2)
    assert bool(s.stopped) and int(s.best_epoch) == 0
    es = early_stopping(patience=2, restore_best=False)
    st = es.init()
    assert st.best_params is None
    st = es.update(st, 1.0)
    assert es.restore(st, "current") == "current"


def test_masked_update_freezes_only_stopped_runs() -> None:
    old = {"w": jnp.zeros((3, 2)), "k": jax.random.split(jax.random.key(0), 3)}
    new = {"w": jnp.ones((3, 2)), "k": jax.random.split(jax.random.key(1), 3)}
    stopped = jnp.array([True, False, True])
    out = jax.vmap(masked_update)(stopped, new, old)
    np.testing.assert_array_equal(out["w"], [[0, 0], [1, 1], [0, 0]])
    np.testing.assert_array_equal(jax.random.key_data(out["k"][1]), jax.random.key_data(new["k"][1]))
    with pytest.raises(TypeError, match=r"masked_update: argument 'new' must be a pytree with the structure "
                                        r"of old, got missing leaves \[\"\['b'\]\"\]"):
        masked_update(True, {"a": jnp.ones(1)}, {"b": jnp.ones(1)})


@functools.cache
def _small_digits() -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    ds = load_digits()
    x, y = np.asarray(ds.x) / 16.0, np.asarray(ds.y)
    return (x[:120], y[:120]), (x[120:220], y[120:220])


def test_vmap_over_four_seeds_each_stops_at_its_own_epoch_and_stays_frozen() -> None:
    train_data, val_data = _small_digits()
    model = layers.serial(layers.Dense(16), layers.Relu, layers.Dense(10))
    opt = optim.adam(3e-2)
    step = make_train_step(classifier_loss(model.apply, train=True), opt)
    eval_step = make_eval_step(classifier_loss(model.apply, train=False))
    es = early_stopping(patience=2)
    options = FitOptions(batch_size=40, eval_step=eval_step, early_stopping=es)
    epochs = 20
    # The initial states are built outside the compiled program (less to compile), then stacked.
    seeds = jax.random.split(jax.random.key(42), 4)
    starts = [init_fit_state(init_train_state(*model.init(seed, (-1, 64))[:2], opt), options) for seed in seeds]
    stacked = _tree.tree_map(lambda *xs: jnp.stack(xs), *starts)

    def run(fs: FitState[Any], key: PRNGKey) -> tuple[FitState[Any], Any, Array]:
        def body(fs: FitState[Any], _: None) -> tuple[FitState[Any], tuple[Any, Array]]:
            fs, m = fit_epoch(step, fs, train_data, key, options, val_data=val_data)
            return fs, (m, fs.train_state.params[0].w)

        fs, (m, ws) = lax.scan(body, fs, None, length=epochs)
        return fs, m, ws

    fs, m, ws = jit(jax.vmap(run))(stacked, seeds)
    stops: list[int] = []
    stopping = fs.early_stopping
    assert stopping is not None
    for i in range(4):
        assert bool(stopping.stopped[i])
        stop = int(stopping.epoch[i]) - 1
        stops.append(stop)
        # The rule applied to this seed's own recorded validation curve.
        curve = [float(v) for v in m.val["loss"][i, : stop + 1]]
        ref_stop, ref_best = _reference_stop(curve, 2, 0.0, "min")
        assert ref_stop == stop and ref_best == int(stopping.best_epoch[i])
        np.testing.assert_array_equal(np.asarray(m.active[i]), np.arange(epochs) <= stop)
        # Params unchanged (bitwise) after the stopping epoch, and changing before it.
        for e in range(stop + 1, epochs):
            np.testing.assert_array_equal(ws[i, e], ws[i, stop])
        assert not np.array_equal(ws[i, stop], ws[i, stop - 1])
        assert int(fs.train_state.step[i]) == (stop + 1) * (120 // 40)
    assert len(set(stops)) >= 2, stops  # the seeds stop at different epochs


def test_bad_arguments() -> None:
    with pytest.raises(ValueError,
                       match=r"early_stopping: argument 'patience' must be an int in \[1, 2147483647\], got 0"):
        early_stopping(0)
    with pytest.raises(TypeError, match="patience"):
        early_stopping(2.5)  # type: ignore[arg-type]  # deliberate misuse
    with pytest.raises(ValueError, match="min_delta"):
        early_stopping(2, min_delta=-0.1)
    with pytest.raises(ValueError, match="mode"):
        early_stopping(2, mode="minimum")  # type: ignore[arg-type]  # deliberate misuse
    with pytest.raises(TypeError, match="restore_best"):
        early_stopping(2, restore_best=1)  # type: ignore[arg-type]  # deliberate misuse
    with pytest.raises(TypeError, match=r"early_stopping: argument 'min_delta' must be a number"):
        early_stopping(2, min_delta="0.1")  # type: ignore[arg-type]  # deliberate misuse
    two: Any = np.int64(2)  # (annotated int: NumPy ints are accepted at runtime)
    assert early_stopping(two).patience == 2
    es = early_stopping(2)
    with pytest.raises(ValueError, match=r"EarlyStopping.init: argument 'params' must be the initial parameters"):
        es.init()
    with pytest.raises(ValueError, match=r"EarlyStopping.update: argument 'value' must be a scalar, got an array "
                                         r"of shape \(2,\)"):
        es.update(es.init(jnp.ones(2)), jnp.ones(2), jnp.ones(2))
    with pytest.raises(TypeError, match=r"EarlyStopping.update: argument 'params' must be a pytree with the "
                                        r"structure of the params given to init"):
        es.update(es.init({"a": jnp.ones(2)}), 1.0, {"b": jnp.ones(2)})


def test_case_13_patience_is_an_int32_count() -> None:
    """Issue 12, case 13: patience beyond int32 is refused up front (the state counts in int32)."""
    with pytest.raises(ValueError, match=r"^early_stopping: argument 'patience' must be an int in \[1, 2147483647\], "
                                         r"got 2147483648$"):
        early_stopping(2**31)
    assert early_stopping(2**31 - 1).patience == 2**31 - 1
