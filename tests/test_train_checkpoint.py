"""Checkpoints: bitwise round trips, atomic writes, corruption detection, mismatch messages, resume.

Also issue 12: stale temporaries of killed saves (case 14) and the edge cases of case 15
(unsupported leaves, malformed headers that pass the checksum, unknown versions, file modes,
resume below the saved epoch, a checkpoint path in a missing directory).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _typed import devices, eval_shape, jit

from functrain import _jax, _tree, layers, optim
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
    abstract = eval_shape(lambda: {k: v for k, v in tree.items() if k not in ("f64_np", "scalars")})
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
    placed = _jax.device_put(tree, devices()[0])  # committed to a device
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
    with pytest.raises(TypeError, match=r"save_checkpoint: argument 'tree' must be a pytree whose leaves are arrays "
                                        r".*, got 'text'; the leaf at tree\['f'\]"):
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
    run = jit(train_epoch, static_argnames=("step", "batch_size"))
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


# ------------------------------------------------------------------------------------------------
# Issue 12, case 14: temporaries of killed saves


def _temporaries(directory: Path) -> list[str]:
    return sorted(n for n in os.listdir(directory) if n.endswith(".tmp"))


def test_case_14_a_save_removes_stale_temporaries_and_load_ignores_them(tmp_path: Path) -> None:
    path = tmp_path / "run.ckpt"
    tree = {"w": jnp.arange(4.0)}
    save_checkpoint(path, tree)
    # What killed saves leave behind (the old mkstemp names and the new ones), plus other files.
    stale = [".run.ckpt.k3j_9x2a.tmp", ".run.ckpt.0a1b2c3d.tmp"]
    others = [".run.ckpt.b.0a1b2c3d.tmp", ".other.ckpt.0a1b2c3d.tmp", "run.ckpt.tmp"]
    for name in stale + others:
        (tmp_path / name).write_bytes(b"half a checkpoint")
    _assert_bitwise(load_checkpoint(path, like=tree), tree)  # temporaries are never read
    save_checkpoint(path, {"w": jnp.ones(4)})
    assert sorted(os.listdir(tmp_path)) == sorted(others + ["run.ckpt"])  # only this target's went


def test_case_14_a_temporary_held_by_a_live_save_is_left_alone(tmp_path: Path) -> None:
    fcntl = pytest.importorskip("fcntl")
    path, live = tmp_path / "run.ckpt", tmp_path / ".run.ckpt.0a1b2c3d.tmp"
    with open(live, "wb") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)  # as a concurrent save holds its temporary
        save_checkpoint(path, {"w": jnp.ones(2)})
        assert live.exists()
    save_checkpoint(path, {"w": jnp.ones(2)})
    assert not live.exists()


_KILL_SCRIPT = textwrap.dedent("""
    import sys
    import numpy as np
    from functrain.train import save_checkpoint
    path, start = sys.argv[1], int(sys.argv[2])
    big = np.zeros(25_000_000, np.float32)  # 100 MB
    print("READY", flush=True)
    for i in range(start, start + 10_000):
        big[:] = i
        save_checkpoint(path, {"i": np.int64(i), "big": big})
        print(i, flush=True)
""")


@pytest.mark.slow
def test_case_14_saves_killed_at_random_points_leave_a_loadable_checkpoint_and_no_temporaries(tmp_path: Path) -> None:
    path = tmp_path / "big.ckpt"
    like = {"big": np.zeros(25_000_000, np.float32), "i": np.int64(0)}
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1]), "JAX_PLATFORMS": "cpu"}
    rng = np.random.default_rng(0)
    completed = -1
    for kill in range(20):
        proc = subprocess.Popen([sys.executable, "-c", _KILL_SCRIPT, str(path), str(100 * kill)], env=env,
                                stdout=subprocess.PIPE, text=True)
        assert proc.stdout is not None and proc.stdout.readline().strip() == "READY"
        time.sleep(float(rng.uniform(0.0, 1.5)))
        proc.send_signal(signal.SIGKILL)
        out, _ = proc.communicate()
        done = [int(v) for v in out.split()]
        completed = done[-1] if done else completed
        if completed >= 0:  # the last complete save (or a later one that finished unreported)
            loaded = load_checkpoint(path, like=like)
            i = int(loaded["i"])
            assert i >= completed and bool(np.all(loaded["big"] == i))
        assert len(_temporaries(tmp_path)) <= 1  # at most the one of the save just killed
    save_checkpoint(path, {"big": np.zeros(3, np.float32), "i": np.int64(-1)})  # the next run's first save
    assert _temporaries(tmp_path) == [] and os.listdir(tmp_path) == ["big.ckpt"]


# ------------------------------------------------------------------------------------------------
# Issue 12, case 15: checkpoint edge cases


def test_case_15_unsupported_leaves_are_refused_naming_their_path(tmp_path: Path) -> None:
    path = tmp_path / "c.ckpt"
    with pytest.raises(TypeError, match=r"save_checkpoint: argument 'tree' must be .*, got an array of shape \(2,\) "
                                        r"and dtype object; the leaf at tree\['a'\]\[1\] has dtype object"):
        save_checkpoint(path, {"a": [np.zeros(2), np.array([None, 1], dtype=object)]})
    with pytest.raises(TypeError, match=r"dtype <U3"):
        save_checkpoint(path, {"s": np.array(["abc"])})
    with pytest.raises(ValueError, match=r"save_checkpoint: argument 'tree' must be a pytree whose Python ints fit "
                                         r"int64, got 9223372036854775808; the leaf at tree\['n'\]"):
        save_checkpoint(path, {"n": 2**63})
    with pytest.raises(ValueError, match=r"fit int64, got -9223372036854775809"):
        save_checkpoint(path, {"n": -(2**63) - 1})
    assert not path.exists() and os.listdir(tmp_path) == []  # nothing written
    save_checkpoint(path, {"n": 2**63 - 1, "m": -(2**63)})  # the int64 range itself round-trips
    assert load_checkpoint(path, like={"n": 0, "m": 0}) == {"n": 2**63 - 1, "m": -(2**63)}


def _rewrite_header(path: Path, edit: Callable[[Any], Any]) -> None:
    """Replace the JSON header of ``path`` by ``edit(header)`` and fix the checksum (a valid digest)."""
    blob = path.read_bytes()
    magic, n = blob[:16], int.from_bytes(blob[16:24], "little")
    header, payload = json.loads(blob[24:24 + n]), blob[24 + n:-32]
    new = edit(header)
    raw = new if isinstance(new, bytes) else json.dumps(new).encode()
    body = magic + len(raw).to_bytes(8, "little") + raw + payload
    path.write_bytes(body + hashlib.sha256(body).digest())


def test_case_15_every_malformed_header_that_passes_the_checksum_is_a_checkpoint_error(tmp_path: Path) -> None:
    tree = {"w": jnp.arange(6.0).reshape(2, 3), "k": jax.random.key(1), "n": 3}
    path = tmp_path / "c.ckpt"

    def leaf(name: str, **changes: Any) -> Any:
        def edit(h: Any) -> Any:
            next(e for e in h["leaves"] if e["path"] == f"['{name}']").update(changes)
            return h
        return edit

    edits: list[tuple[str, Callable[[Any], Any] | None]] = [
        ("a list", lambda h: [h]), ("not UTF-8 JSON", lambda h: b"\xff\xfe{"), ("null", lambda h: None),
        ("no leaves", lambda h: {k: v for k, v in h.items() if k != "leaves"}),
        ("leaves not a list", lambda h: {**h, "leaves": {"a": 1}}),
        ("a leaf not an object", lambda h: {**h, "leaves": [3] + h["leaves"][1:]}),
        ("a missing field", lambda h: {**h, "leaves": [{"path": "x"}] + h["leaves"][1:]}),
        ("a string shape", leaf("w", shape="2,3")), ("a negative dimension", leaf("w", shape=[-2, -3])),
        ("a float offset", leaf("w", offset=0.5)), ("a bool size", leaf("w", nbytes=True)),
        ("an offset beyond the payload", leaf("w", offset=10**12)),
        ("a size that does not fit the shape", leaf("w", shape=[4, 3])),
        ("an unknown dtype", leaf("w", dtype="float128x")), ("an object dtype", leaf("w", dtype="object")),
        ("a string dtype", leaf("w", dtype="<U3")), ("a numeric path", leaf("w", path=7)),
        ("an object dtype for a Python int", leaf("n", dtype="object")),
        ("an unknown key implementation", leaf("k", key_impl="no-such-prng")),
        ("key data of the wrong size", leaf("k", nbytes=3)), ("a key impl that is a number", leaf("k", key_impl=5)),
        ("wrong payload size", lambda h: {**h, "payload_bytes": 1}),
        ("a huge header length", None),
    ]
    for what, edit in edits:
        save_checkpoint(path, tree)
        if edit is None:  # a header length beyond the file, with a valid checksum
            blob = path.read_bytes()
            body = blob[:16] + (10**9).to_bytes(8, "little") + blob[24:-32]
            path.write_bytes(body + hashlib.sha256(body).digest())
        else:
            _rewrite_header(path, edit)
        with pytest.raises(CheckpointError, match=r"^load_checkpoint: ") as info:
            load_checkpoint(path, like=tree)
        assert type(info.value) is CheckpointError, what


def test_case_15_an_unknown_format_version_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "c.ckpt"
    for version in (99, 0, None, "1"):
        save_checkpoint(path, {"w": jnp.ones(2)})
        _rewrite_header(path, lambda h: {**h, "version": version})
        with pytest.raises(CheckpointError, match=rf"has checkpoint format version {re.escape(repr(version))}; this "
                                                  r"version of functrain reads version 1"):
            load_checkpoint(path, like={"w": jnp.ones(2)})


def test_case_15_files_get_the_mode_the_umask_gives(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        save_checkpoint(tmp_path / "a.ckpt", {"w": jnp.ones(2)})
        os.umask(0o077)
        save_checkpoint(tmp_path / "b.ckpt", {"w": jnp.ones(2)})
    finally:
        os.umask(old)
    assert (tmp_path / "a.ckpt").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "b.ckpt").stat().st_mode & 0o777 == 0o600


def test_case_15_resume_below_the_saved_epoch_and_missing_directories_fail_before_training(tmp_path: Path) -> None:
    train, _, state, step, _ = _digits_setup(plateau=False)
    path, key = tmp_path / "fit.ckpt", jax.random.key(0)
    fit(step, state, train, key, epochs=3, batch_size=32, checkpoint_path=path, progress=False)
    with pytest.raises(ValueError, match=r"^fit: argument 'epochs' must be an int >= 3, the epochs already run in the "
                                         r"checkpoint being resumed \('.*fit.ckpt'\), got 2$"):
        fit(step, state, train, key, epochs=2, batch_size=32, checkpoint_path=path, resume=True, progress=False)
    same, hist = fit(step, state, train, key, epochs=3, batch_size=32, checkpoint_path=path, resume=True,
                     progress=False)
    assert hist.epoch.tolist() == [] and int(same.step) == 3 * (160 // 32)  # nothing left to run
    traced: list[int] = []

    def counting(s: Any, batch: Any, k: Any) -> Any:
        traced.append(1)
        return step(s, batch, k)

    with pytest.raises(FileNotFoundError, match=r"^fit: argument 'checkpoint_path' must be a file path in an existing, "
                                                r"writable directory, got '.*missing/fit.ckpt'; the directory .* does "
                                                r"not exist$"):
        fit(counting, state, train, key, epochs=1, batch_size=32, checkpoint_path=tmp_path / "missing" / "fit.ckpt",
            progress=False)
    with pytest.raises(IsADirectoryError, match=r"it is a directory"):
        fit(counting, state, train, key, epochs=1, batch_size=32, checkpoint_path=tmp_path, progress=False)
    assert traced == []  # refused before anything was traced or trained
