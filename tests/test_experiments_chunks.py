"""Chunked runs and Ctrl-C (issue 12, case 11): the same run in chunks of epochs, stopped between them.

A run compiled by ``compile_chunked`` and run chunk after chunk must compute exactly what one
chunk of every epoch computes (bitwise), and the single program of ``run_many`` to float32
rounding; stopped between chunks, it keeps the completed epochs. SIGINT is recorded, not raised.
"""

from __future__ import annotations

import signal
from typing import Any

import jax
import numpy as np
import pytest
from _cli import toy_splits

from functrain.experiments import interrupts, tricks
from functrain.experiments.tricks import chunks


def _tiny_config(**change: Any) -> tricks.RunConfig:
    """Batch norm (model state), dropout (keys) and early stopping (best state): all carried."""
    return tricks.RunConfig(hidden=(8,), batch_norm=True, dropout=0.2, optimizer="sgd", learning_rate=0.5,
                            epochs=6, batch_size=16, early_stopping=2)._replace(**change)


QUICK = {"xla_backend_optimization_level": 0}  # compiles about 3x faster (as --quick)


def test_case_11_chunked_runs_equal_the_unchunked_run() -> None:
    splits, keys = toy_splits(), jax.random.split(jax.random.key(3), 2)
    config = _tiny_config()
    # chunks of 1 epoch; and of 4 epochs, then a remainder of 2
    one, four = (chunks.run_chunked(chunks.compile_chunked(config, splits, keys, chunk_epochs=n,
                                                           compiler_options=QUICK), keys) for n in (1, 4))
    assert one.output is not None and four.output is not None and not one.interrupted and not four.interrupted
    assert one.epochs_done == 3 and four.epochs_done == 4  # every seed stopped early (patience 2) in epoch 3
    active = np.asarray(one.output.active)
    assert active.shape == (2, 6) and not active[:, 3:].any()
    for name, a in one.output._asdict().items():
        if name in ("train_loss", "train_accuracy", "val_loss", "val_accuracy"):
            b = getattr(four.output, name)
            np.testing.assert_array_equal(np.asarray(a)[active], np.asarray(b)[active], err_msg=name)  # bitwise
            assert np.isnan(np.asarray(a)[~active]).all()  # skipped once every seed had stopped
        else:
            for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(getattr(four.output, name))):
                np.testing.assert_array_equal(np.asarray(x), np.asarray(y), err_msg=name)


@pytest.mark.slow  # compiles the run twice more (chunked and as one program)
def test_case_11_chunked_run_equals_run_many_to_float32_rounding() -> None:
    splits, keys = toy_splits(), jax.random.split(jax.random.key(3), 2)
    config = _tiny_config()
    out = chunks.run_chunked(chunks.compile_chunked(config, splits, keys, compiler_options=QUICK), keys).output
    assert out is not None
    # the single program of run_many fuses initialization, training and test evaluation together
    run, _ = tricks.make_run(config, splits)
    whole = tricks.run_many(run, keys, compiler_options=QUICK)
    active = np.asarray(whole.active)
    for name in ("active", "finite", "epochs_run", "test_accuracy"):
        np.testing.assert_array_equal(np.asarray(getattr(out, name)), np.asarray(getattr(whole, name)), err_msg=name)
    for name in ("train_loss", "train_accuracy", "val_loss", "val_accuracy"):
        np.testing.assert_allclose(np.asarray(getattr(out, name))[active], np.asarray(getattr(whole, name))[active],
                                   rtol=1e-5, err_msg=name)
    for x, y in zip(jax.tree_util.tree_leaves(out.state.params), jax.tree_util.tree_leaves(whole.state.params)):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-5, atol=1e-6)


def test_case_11_chunked_run_stops_between_epochs_and_keeps_the_completed_ones() -> None:
    splits, keys = toy_splits(), jax.random.split(jax.random.key(3), 2)
    config = _tiny_config(early_stopping=None, batch_norm=False)
    program = chunks.compile_chunked(config, splits, keys, compiler_options=QUICK)
    seen: list[chunks.Progress] = []
    stopped = chunks.run_chunked(program, keys, stop=lambda: len(seen) == 2, progress=seen.append)
    assert stopped.interrupted and stopped.epochs_done == 2 and [p.epoch for p in seen] == [1, 2]
    assert seen[0].seeds == seen[0].training == 2 and seen[0].epochs == 6
    full = chunks.run_chunked(program, keys)
    assert stopped.output is not None and full.output is not None and not full.interrupted
    assert stopped.output.val_loss.shape == (2, 2)
    np.testing.assert_array_equal(np.asarray(stopped.output.val_loss), np.asarray(full.output.val_loss)[:, :2])
    assert seen[1].val_accuracy == pytest.approx(float(np.mean(np.asarray(full.output.val_accuracy)[:, 1])))
    # the kept state is the one after epoch 2: 2 epochs x 3 steps (50 // 16)
    assert np.asarray(stopped.output.state.step).tolist() == [6, 6]
    assert chunks.run_chunked(program, keys, stop=lambda: True) == chunks.ChunkedResult(None, 0, True)


def test_case_11_interrupts_are_recorded_not_raised() -> None:
    previous = signal.getsignal(signal.SIGINT)
    assert previous is signal.default_int_handler
    with interrupts.deferred_interrupts() as flag:
        assert not flag.requested()
        signal.raise_signal(signal.SIGINT)  # would raise KeyboardInterrupt here without the deferral
        assert flag.requested()
        assert signal.getsignal(signal.SIGINT) is signal.SIG_DFL  # a second Ctrl-C ends the process
    assert signal.getsignal(signal.SIGINT) is previous
    # an ignored SIGINT (nohup, background jobs) stays ignored
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with interrupts.deferred_interrupts() as flag:
            assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN and not flag.requested()
    finally:
        signal.signal(signal.SIGINT, previous)
    assert issubclass(interrupts.Interrupted, KeyboardInterrupt) and interrupts.EXIT_STATUS == 130
