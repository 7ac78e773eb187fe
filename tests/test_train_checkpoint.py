"""Checkpoints: bitwise round trips, atomic writes, corruption detection, mismatch messages, resume."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from functrain import _tree, layers, optim
from functrain.data.datasets import load_digits
from functrain.train import (
    CheckpointError,
    FitOptions,
    FitState,
    classifier_loss,
    early_stopping,
    fit,
    init_fit_state,
    init_train_state,
    load_checkpoint,
    make_eval_step,
    make_train_step,
    reduce_on_plateau,
    save_checkpoint,
    scale_by_plateau,
    train_epoch,
)
from functrain.typing import PyTree


class Pair(NamedTuple):
    first: Any
    second: Any


def _sample_tree() -> PyTree:
    k = jax.random.key(3)
    return {
        "f32": jax.random.normal(k, (3, 4)),
        "bf16": (jax.random.normal(k, (5,)) * 1e3).astype(jnp.bfloat16),
        "f16": jnp.array([np.nan, -0.0, 65504.0], jnp.float16),
        "f64_np": np.array([1 / 3, np.pi], np.float64),
        "i8": jnp.array([-128, 127], jnp.int8),
        "u32": jnp.array([[2**32 - 1]], jnp.uint32),
        "bool": jnp.array([True, False]),
        "key": jax.random.split(jax.random.key(7), 2),
        "raw_key": jax.random.PRNGKey(5),
        "scalars": Pair(3, 2.5),
        "none": None,
        "empty": (),
        "nested": [Pair(jnp.zeros(()), jnp.arange(3))],
    }


def _assert_bitwise(a: PyTree, b: PyTree) -> None:
    assert _tree.describe_difference(a, b) is None
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b), strict=True):
        if hasattr(x, "dtype") and jnp.issubdtype(x.dtype, jax.dtypes.prng_key):
            assert x.dtype == y.dtype
            x, y = jax.random.key_data(x), jax.random.key_data(y)
        xa, ya = np.asarray(x), np.asarray(y)
        assert xa.dtype == ya.dtype and xa.shape == ya.shape
        assert xa.tobytes() == ya.tobytes()


def test_round_trip_is_bitwise_exact(tmp_path: Path) -> None:
    tree = _sample_tree()
    path = tmp_path / "ckpt.bin"
    save_checkpoint(path, tree)
    out = load_checkpoint(path, like=tree)
    _assert_bitwise(out, tree)
    assert isinstance(out["scalars"], Pair) and type(out["scalars"].first) is int
    assert isinstance(out["f64_np"], np.ndarray)
    assert isinstance(out["f32"], jax.Array)
    # like can be abstract (no arrays allocated).
    abstract = jax.eval_shape(lambda: {k: v for k, v in tree.items() if k not in ("f64_np", "scalars")})
    concrete = {k: v for k, v in tree.items() if k not in ("f64_np", "scalars")}
    save_checkpoint(path, concrete)
    _assert_bitwise(load_checkpoint(str(path), like=abstract), concrete)
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]


def test_loaded_arrays_keep_the_placement_of_like(tmp_path: Path) -> None:
    """Uncommitted like arrays load uncommitted (committed inputs would make a jitted epoch compile
    again after a resume), committed ones committed."""
    path = tmp_path / "c"
    tree = {"w": jnp.arange(3.0)}
    save_checkpoint(path, tree)
    loaded = load_checkpoint(path, like=tree)
    assert not tree["w"].committed and not loaded["w"].committed
    placed = jax.device_put(tree, jax.devices()[0])  # committed to a device
    assert placed["w"].committed and load_checkpoint(path, like=placed)["w"].committed


def test_fit_state_with_early_stopping_and_plateau_round_trips(tmp_path: Path) -> None:
    model = layers.serial(layers.Dense(4), layers.BatchNorm(), layers.Dense(2))
    params, mstate, _ = model.init(jax.random.key(0), (-1, 3))
    opt = optim.chain(optim.adam(1e-3), scale_by_plateau())
    fs = init_fit_state(init_train_state(params, mstate, opt),
                        FitOptions(8, early_stopping=early_stopping(3), plateau=reduce_on_plateau()))
    save_checkpoint(tmp_path / "fs", fs)
    out = load_checkpoint(tmp_path / "fs", like=fs)
    assert isinstance(out, FitState)
    _assert_bitwise(out, fs)


def test_mismatches_are_reported_by_leaf_path(tmp_path: Path) -> None:
    path = tmp_path / "c"
    inner = {"w": jnp.zeros((2, 3)), "b": jnp.zeros(3)}
    tree: dict[str, Any] = {"a": inner, "k": jax.random.key(0)}
    save_checkpoint(path, tree)
    with pytest.raises(CheckpointError, match=r"\['a'\]\['w'\]: shape \(2, 3\) in the file, \(3, 2\) in 'like'"):
        load_checkpoint(path, like={**tree, "a": {"w": jnp.zeros((3, 2)), "b": jnp.zeros(3)}})
    with pytest.raises(CheckpointError, match=r"\['a'\]\['b'\]: dtype float32 in the file, bfloat16 in 'like'"):
        load_checkpoint(path, like={**tree, "a": {"w": jnp.zeros((2, 3)), "b": jnp.zeros(3, jnp.bfloat16)}})
    with pytest.raises(CheckpointError, match=r"leaves in 'like' but not in the file: \[\"\['a'\]\['c'\]\"\]"):
        load_checkpoint(path, like={**tree, "a": {**inner, "c": jnp.zeros(1)}})
    with pytest.raises(CheckpointError, match=r"leaves in the file but not in 'like': \[\"\['k'\]\"\]"):
        load_checkpoint(path, like={"a": tree["a"]})
    with pytest.raises(CheckpointError, match=r"\['k'\]: dtype key<fry> in the file, key<rbg> in 'like'"):
        load_checkpoint(path, like={**tree, "k": jax.random.key(0, impl="rbg")})
    with pytest.raises(FileNotFoundError, match="load_checkpoint: no checkpoint"):
        load_checkpoint(tmp_path / "missing", like=tree)
    with pytest.raises(FileNotFoundError, match="save_checkpoint: directory"):
        save_checkpoint(tmp_path / "no" / "dir" / "c", tree)
    with pytest.raises(TypeError, match=r"save_checkpoint: leaf \['f'\] must be an array"):
        save_checkpoint(path, {"f": "text"})
    with pytest.raises(TypeError, match=r"save_checkpoint: argument 'path' must be a file path \(str or "
                                        r"os.PathLike\), got dict"):
        save_checkpoint(tree, path)  # type: ignore[arg-type]  # arguments swapped: the error under test
    with pytest.raises(TypeError, match=r"load_checkpoint: argument 'path' must be a file path"):
        load_checkpoint(3, like=tree)  # type: ignore[arg-type]  # the error under test


def test_truncated_or_corrupted_files_raise_and_the_previous_checkpoint_still_loads(tmp_path: Path) -> None:
    good, bad = tmp_path / "epoch1.ckpt", tmp_path / "epoch2.ckpt"
    tree1 = {"w": jnp.arange(100.0), "s": jnp.int32(1)}
    tree2 = {"w": jnp.arange(100.0) * 2, "s": jnp.int32(2)}
    save_checkpoint(good, tree1)
    save_checkpoint(bad, tree2)
    blob = bad.read_bytes()
    for damaged in (blob[: len(blob) // 2], blob[:10], blob[:-1], b""):
        bad.write_bytes(damaged)
        with pytest.raises(CheckpointError, match="truncated"):
            load_checkpoint(bad, like=tree2)
    flipped = bytearray(blob)
    flipped[len(blob) - 100] ^= 0x01  # one bit of the payload
    bad.write_bytes(bytes(flipped))
    with pytest.raises(CheckpointError, match="corrupted .*checksum"):
        load_checkpoint(bad, like=tree2)
    bad.write_bytes(b"PK\x03\x04 not a checkpoint at all, but long enough to have a header and a digest")
    with pytest.raises(CheckpointError, match="not a functrain checkpoint"):
        load_checkpoint(bad, like=tree2)
    _assert_bitwise(load_checkpoint(good, like=tree1), tree1)


def test_a_crash_during_a_write_leaves_the_previous_checkpoint_intact(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "run.ckpt"
    old = {"w": jnp.ones(1000)}
    save_checkpoint(path, old)

    def crash(fd: int) -> None:
        raise OSError("simulated power failure during fsync")

    monkeypatch.setattr(os, "fsync", crash)  # the module calls os.fsync
    with pytest.raises(OSError, match="simulated"):
        save_checkpoint(path, {"w": jnp.zeros(1000)})
    monkeypatch.undo()
    _assert_bitwise(load_checkpoint(path, like=old), old)
    assert os.listdir(tmp_path) == ["run.ckpt"]  # the temporary file was removed


def _digits_setup(plateau: bool) -> tuple[Any, ...]:
    ds = load_digits()
    x, y = ds.x / 16.0, ds.y
    train, val = (x[:160], y[:160]), (x[160:240], y[160:240])
    model = layers.serial(layers.Dense(16), layers.BatchNorm(), layers.Relu, layers.Dropout(0.1), layers.Dense(10))
    opt: optim.GradientTransformation[Any] = (
        optim.chain(optim.adam(1e-2), scale_by_plateau()) if plateau else optim.adam(1e-2))
    params, mstate, _ = model.init(jax.random.key(0), (-1, 64))
    state = init_train_state(params, mstate, opt)
    step = make_train_step(classifier_loss(model.apply, train=True), opt)
    eval_step = make_eval_step(classifier_loss(model.apply, train=False))
    return train, val, state, step, eval_step


def test_fit_resumed_from_a_checkpoint_ends_bitwise_equal_to_an_uninterrupted_run(tmp_path: Path) -> None:
    train, val, state, step, eval_step = _digits_setup(plateau=True)
    kw: dict[str, Any] = dict(batch_size=32, eval_step=eval_step, val_data=val, progress=False,
                              early_stopping=early_stopping(20), plateau=reduce_on_plateau(0.5, patience=1))
    key = jax.random.key(9)
    full, hist_full = fit(step, state, train, key, epochs=6, **kw)
    path = tmp_path / "fit.ckpt"
    fit(step, state, train, key, epochs=3, checkpoint_path=path, **kw)  # "interrupted" after epoch 3
    resumed, hist = fit(step, state, train, key, epochs=6, checkpoint_path=path, resume=True, **kw)
    np.testing.assert_array_equal(hist.epoch, [3, 4, 5])
    np.testing.assert_array_equal(hist.val["loss"], hist_full.val["loss"][3:])
    _assert_bitwise(resumed, full)
    # The checkpoint now holds the whole run's final state.
    like = init_fit_state(state, FitOptions(32, early_stopping=kw["early_stopping"], plateau=kw["plateau"]))
    assert int(load_checkpoint(path, like=like).epoch) == 6


def test_train_epoch_loop_resumed_from_a_checkpoint_is_bitwise_equal(tmp_path: Path) -> None:
    train, _, state, step, _ = _digits_setup(plateau=False)
    run = jax.jit(train_epoch, static_argnames=("step", "batch_size"))
    key = jax.random.key(1)
    s = state
    for e in range(4):
        s, _ = run(step, s, train, jax.random.fold_in(key, e), batch_size=32)
    r = state
    for e in range(2):
        r, _ = run(step, r, train, jax.random.fold_in(key, e), batch_size=32)
    save_checkpoint(tmp_path / "half", r)
    r = load_checkpoint(tmp_path / "half", like=state)
    for e in range(2, 4):
        r, _ = run(step, r, train, jax.random.fold_in(key, e), batch_size=32)
    _assert_bitwise(r, s)
