"""fit's run-time guarantees (issue 12): skipped updates are counted and reported (case 3), Ctrl-C
stops at an epoch boundary (case 11), memory stays flat over 10,000 epochs (case 17)."""

from __future__ import annotations

import functools
import importlib
import os
import re
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from _fit_data import fit_data, poisoned, used_in_epoch

from functrain import layers, optim
from functrain.train import (
    FitInterrupted,
    TrainState,
    classifier_loss,
    fit,
    init_fit_state,
    init_train_state,
    load_checkpoint,
    make_train_step,
)
from functrain.train.step import TrainStep
from functrain.typing import Array, Metrics, PRNGKey, PyTree




@functools.cache
def _small() -> tuple[TrainState[Any, Any, Any], TrainStep]:
    """The small model of test_train_fit.py (the same compiled epochs)."""
    model = layers.serial(layers.Dense(8), layers.Relu, layers.Dense(4))
    opt = optim.sgd(0.1)
    params, mstate, _ = model.init(jax.random.key(1), (-1, 8))
    return init_train_state(params, mstate, opt), make_train_step(classifier_loss(model.apply, train=True), opt)




def _raises(exc: type[Exception], match: str, fn: Any, *args: Any, **kwargs: Any) -> None:
    with pytest.raises(exc, match=match) as info:
        fn(*args, **kwargs)
    assert STYLE.match(str(info.value)), str(info.value)


STYLE = re.compile(r"^[\w.]+: argument '[\w.\[\]']+' must be .+, got .+$", re.S)


# ------------------------------------------------------------------------------------------------
# Issue 12, case 3: skipped updates, no-update epochs, the data named in NaN-loss errors


def _flag_loss(params: Array, ms: PyTree, batch: PyTree, key: PRNGKey) -> tuple[Array, tuple[PyTree, Metrics]]:
    """Always a finite loss; NaN gradients exactly when the batch holds a flagged example."""
    x, flag = batch
    smooth = jnp.mean(jnp.sqrt(flag * jnp.square(params[0] - params[0]) + (1.0 - flag)))  # d/dw: 0 * inf
    return jnp.mean((x @ params - 1.0) ** 2) + smooth, (ms, {})


FLAG_OPT = optim.skip_nonfinite(optim.sgd(0.1))
FLAG_STEP = make_train_step(_flag_loss, FLAG_OPT)
FLAG_STATE = init_train_state(jnp.zeros(3), (), FLAG_OPT)


def test_case_3_history_counts_the_guards_skipped_updates_not_nan_losses() -> None:
    data = (jnp.ones((12, 3)), jnp.ones(12))  # every gradient NaN, every loss finite
    key = jax.random.key(0)
    with pytest.raises(FloatingPointError, match=r"fit: epoch 0 made no update: all 3 of its updates were skipped"):
        fit(FLAG_STEP, FLAG_STATE, data, key, epochs=2, batch_size=4, progress=False)
    with pytest.warns(RuntimeWarning, match="made no update") as caught:
        out, hist = fit(FLAG_STEP, FLAG_STATE, data, key, epochs=2, batch_size=4, progress=False,
                        on_no_update="warn")
    assert [str(w.message)[:28] for w in caught] == ["fit: epoch 0 made no update:", "fit: epoch 1 made no update:"]
    assert np.all(np.isfinite(hist.train["loss"]))
    np.testing.assert_array_equal(hist.skipped_updates, [3, 3])
    np.testing.assert_array_equal(hist.nonfinite_steps, [3, 3])  # the former name
    np.testing.assert_array_equal(np.asarray(out.params), 0.0)  # nothing was applied
    _raises(ValueError, r"fit: argument 'on_no_update' must be one of 'raise', 'warn', got 'ignore'",
            fit, FLAG_STEP, FLAG_STATE, data, key, epochs=1, batch_size=4, on_no_update="ignore")


def test_case_3_warns_once_per_epoch_with_the_count() -> None:
    n, bs, epochs = 40, 8, 3  # 5 steps per epoch, every example used every epoch
    data = (jnp.ones((n, 3)), jnp.zeros(n).at[5].set(1.0).at[30].set(1.0))
    key = jax.random.key(2)
    with pytest.warns(RuntimeWarning) as caught:
        _, hist = fit(FLAG_STEP, FLAG_STATE, data, key, epochs=epochs, batch_size=bs, progress=False)
    expected: list[int] = []
    for e in range(epochs):  # one skip per batch holding a flagged example (the documented schedule)
        perm = np.asarray(jax.random.permutation(jax.random.split(jax.random.fold_in(key, e))[0], n))
        expected.append(len({int(np.flatnonzero(perm == i)[0]) // bs for i in (5, 30)}))
    np.testing.assert_array_equal(hist.skipped_updates, expected)
    assert [str(w.message) for w in caught] == [
        f"fit: epoch {e}: {k} of 5 updates were skipped as non-finite by the optimizer's guard" for e, k in
        enumerate(expected)]


def test_case_3_optax_apply_if_finite_skips_are_counted_too() -> None:
    optax = pytest.importorskip("optax")
    opt = optax.apply_if_finite(optax.sgd(0.1), 100)
    data = (jnp.ones((8, 3)), jnp.zeros(8).at[0].set(1.0))
    with pytest.warns(RuntimeWarning, match="1 of 2 updates were skipped"):
        _, hist = fit(make_train_step(_flag_loss, opt), init_train_state(jnp.zeros(3), (), opt), data,
                      jax.random.key(0), epochs=2, batch_size=4, progress=False)
    np.testing.assert_array_equal(hist.skipped_updates, [1, 1])


def test_case_3_nan_loss_error_points_at_the_data_not_the_learning_rate() -> None:
    n, bs, bad = 70, 32, 37
    state, step = _small()
    key = jax.random.key(4)
    epoch = next(e for e in range(100) if used_in_epoch(key, n, bs, bad, e) is not None)
    with pytest.raises(FloatingPointError) as info:
        fit(step, state, poisoned(n, bad), key, epochs=epoch + 2, batch_size=bs, progress=False)
    text = str(info.value)
    assert "the parameters (first at params" in text
    assert re.search(r"the inputs are not finite: train_data\[0\] holds NaN or inf at example 37, used by step "
                     r"\d \(1 of the 70 examples of train_data\[0\] are not finite\); clean or filter the data", text)
    assert "learning rate" not in text


# ------------------------------------------------------------------------------------------------
# Issue 12, case 11: Ctrl-C stops at the next epoch boundary


def _bitwise(a: PyTree, b: PyTree) -> None:
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def _ctrl_c_during(monkeypatch: pytest.MonkeyPatch, epoch: int, times: int = 1) -> list[int]:
    """Make the ``epoch``-th compiled epoch of ``fit`` receive ``times`` SIGINTs while it runs."""
    if signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        pytest.skip("a SIGINT handler other than Python's default is installed")
    fit_module = importlib.import_module("functrain.train.fit")  # (the package attribute is the function)
    original = fit_module._fit_epoch_jit
    calls: list[int] = []

    def epoch_with_ctrl_c(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        out = original(*args, **kwargs)
        if len(calls) == epoch + 1:
            for _ in range(times):
                os.kill(os.getpid(), signal.SIGINT)
        return out

    monkeypatch.setattr(fit_module, "_fit_epoch_jit", epoch_with_ctrl_c)
    return calls


def test_case_11_ctrl_c_finishes_the_epoch_saves_it_and_raises(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    state, step = _small()
    data, key, path = fit_data(64), jax.random.key(3), tmp_path / "run.ckpt"
    calls = _ctrl_c_during(monkeypatch, epoch=1)
    with pytest.raises(KeyboardInterrupt) as info:  # (catching any KeyboardInterrupt: a failure, never an abort)
        fit(step, state, data, key, epochs=6, batch_size=16, checkpoint_path=path, progress=False)
    assert len(calls) == 2 and signal.getsignal(signal.SIGINT) is signal.default_int_handler
    error = info.value
    assert isinstance(error, FitInterrupted), repr(error)
    assert re.match(r"^fit: interrupted \(Ctrl-C\) after epoch 1; checkpoint saved to '.*run.ckpt'$", str(error))
    assert error.fit_state is not None and error.history is not None
    assert int(error.fit_state.epoch) == 2 and error.history.epoch.tolist() == [0, 1]
    _bitwise(load_checkpoint(path, like=init_fit_state(state)), error.fit_state)  # the last completed epoch
    monkeypatch.undo()
    two, _ = fit(step, state, data, key, epochs=2, batch_size=16, progress=False)
    _bitwise(error.state, two)
    resumed, hist = fit(step, state, data, key, epochs=3, batch_size=16, checkpoint_path=path, resume=True,
                        progress=False)
    assert hist.epoch.tolist() == [2] and int(resumed.step) == 12


def test_case_11_a_second_ctrl_c_interrupts_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    state, step = _small()
    _ctrl_c_during(monkeypatch, epoch=0, times=2)
    with pytest.raises(KeyboardInterrupt) as info:
        fit(step, state, fit_data(64), jax.random.key(3), epochs=3, batch_size=16, progress=False)
    assert not isinstance(info.value, FitInterrupted)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


_SIGINT_SCRIPT = textwrap.dedent("""
    import sys
    sys.modules["tqdm.auto"] = None  # plain progress lines on stderr
    import jax, jax.numpy as jnp, numpy as np
    import functrain as ft
    from functrain.train import FitInterrupted, fit, load_checkpoint, init_fit_state
    model = ft.serial(ft.layers.Dense(128), ft.layers.BatchNorm(), ft.layers.Relu, ft.layers.Dropout(0.1),
                      ft.layers.Dense(128), ft.layers.Relu, ft.layers.Dense(10))
    params, ms, _ = model.init(jax.random.key(0), (-1, 32))
    opt = ft.optim.adam(1e-3)
    state = ft.train.init_train_state(params, ms, opt)
    step = ft.train.make_train_step(ft.train.classifier_loss(model.apply, train=True), opt)
    rng = np.random.default_rng(0)
    data = (jnp.asarray(rng.normal(size=(4096, 32)), jnp.float32), jnp.asarray(rng.integers(0, 10, 4096), jnp.int32))
    path, key = sys.argv[1], jax.random.key(1)
    print("READY", flush=True)
    try:
        fit(step, state, data, key, epochs=10000, batch_size=32, checkpoint_path=path)
    except FitInterrupted as error:
        done = int(error.fit_state.epoch)
        if done == 0:  # interrupted during fit's entry checks: nothing trained, nothing saved
            print("INTERRUPTED 0 True", flush=True)
            sys.exit(130)
        saved = load_checkpoint(path, like=init_fit_state(state))
        fresh, _ = fit(step, state, data, key, epochs=done, batch_size=32, progress=False)
        same = all(bool(np.array_equal(a, b)) for a, b in zip(jax.tree_util.tree_leaves(saved.train_state),
                                                              jax.tree_util.tree_leaves(fresh)))
        print(f"INTERRUPTED {done} {same}", flush=True)
        sys.exit(130)
""")


def _run_and_interrupt(tmp_path: Path, delay: float | None) -> tuple[int, str]:
    """Start the script, send SIGINT ``delay`` s after READY (or after its 2nd epoch line); rc and stdout."""
    import time

    env = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    proc = subprocess.Popen([sys.executable, "-c", _SIGINT_SCRIPT, str(tmp_path / "run.ckpt")], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stderr is not None
    assert proc.stdout.readline().strip() == "READY"
    if delay is None:
        while not proc.stderr.readline().startswith("epoch 2/"):
            pass
    else:
        time.sleep(delay)
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=300)
    return proc.returncode, out


@pytest.mark.slow
def test_case_11_sigint_to_a_process_running_fit_keeps_the_last_completed_epoch(tmp_path: Path) -> None:
    rc, out = _run_and_interrupt(tmp_path, delay=None)
    assert rc == 130, out
    done, same = out.split()[1:3]
    assert int(done) >= 2 and same == "True", out


@pytest.mark.slow
def test_case_11_sigint_during_compilation_never_crashes(tmp_path: Path) -> None:
    """SIGINT while XLA compiles the first epoch crashed 3 of 10 runs before (exit -11)."""
    rng = np.random.default_rng(0)
    for delay in rng.uniform(0.2, 1.5, size=6):
        rc, out = _run_and_interrupt(tmp_path, delay=float(delay))
        assert rc == 130, (delay, rc, out)
        assert out.split()[-1] == "True", out


# ------------------------------------------------------------------------------------------------
# Issue 12, case 17: memory stays flat over 10,000 epochs


_SOAK_SCRIPT = textwrap.dedent("""
    import importlib, os
    import jax, jax.numpy as jnp
    import functrain as ft
    fit_module = importlib.import_module("functrain.train.fit")
    model = ft.serial(ft.layers.Dense(8), ft.layers.BatchNorm(), ft.layers.Relu, ft.layers.Dense(3))
    params, model_state, _ = model.init(jax.random.key(0), (-1, 4))
    schedule = ft.optim.schedules.cosine_decay(0.1, 30000)
    opt = ft.optim.sgd(schedule)
    state = ft.train.init_train_state(params, model_state, opt)
    step = ft.train.make_train_step(ft.train.classifier_loss(model.apply, train=True), opt)
    eval_step = ft.train.make_eval_step(ft.train.classifier_loss(model.apply, train=False))
    data = (jnp.ones((16, 4)), jnp.zeros(16, jnp.int32))
    page, rss, original = os.sysconf("SC_PAGE_SIZE"), {}, fit_module._fit_epoch_jit

    def sampled(*args, **kwargs):  # resident memory after epochs 1,000 (warmed up) and 10,000
        out = original(*args, **kwargs)
        if int(out[0].epoch) in (1000, 10000):
            with open("/proc/self/statm") as f:
                rss[int(out[0].epoch)] = int(f.read().split()[1]) * page
        return out

    fit_module._fit_epoch_jit = sampled
    ft.train.fit(step, state, data, jax.random.key(0), epochs=10000, batch_size=4, eval_step=eval_step,
                 val_data=data, early_stopping=ft.train.early_stopping(10**6), progress=False)
    print(rss[1000], rss[10000])
""")


@pytest.mark.slow
@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="needs /proc (Linux)")
def test_case_17_memory_is_flat_over_10000_epochs() -> None:
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    out = subprocess.run([sys.executable, "-c", _SOAK_SCRIPT], env=env, capture_output=True, text=True,
                         timeout=600, check=True).stdout
    after_warmup, at_end = (int(v) for v in out.split())
    assert at_end - after_warmup < 5 * 2**20, (after_warmup, at_end)
