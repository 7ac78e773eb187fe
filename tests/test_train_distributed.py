"""Data parallelism on 8 simulated CPU devices (in a subprocess, since the device count is fixed
when JAX starts): a sharded step equals the single-device step on the same global batch."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import pytest
from _typed import devices

from functrain.train.distributed import data_mesh  # pyright: ignore[reportUnknownVariableType]  # devices: Sequence[jax.Device], Unknown to pyright
from functrain.train.distributed import data_parallel_step, is_replicated, replicate, shard_batch

SCRIPT = textwrap.dedent(
    """
    import jax, jax.numpy as jnp, numpy as np
    from functrain import layers, optim
    from functrain.train import classifier_loss, init_train_state, make_train_step
    from functrain.train.distributed import (batch_sharding, data_mesh, data_parallel_step,
                                             is_replicated, replicate, shard_batch)

    assert len(jax.devices()) == 8, jax.devices()
    # BN after the ReLU (a bias right before BN has an exactly-zero gradient, which Adam would turn
    # into lr-sized steps along round-off noise that differs between any two programs).
    model = layers.serial(layers.Dense(32), layers.Relu, layers.BatchNorm(), layers.Dropout(0.25),
                          layers.Dense(10))
    params, mstate, _ = model.init(jax.random.key(0), (-1, 12))
    opt = optim.chain(optim.clip_by_global_norm(1.0), optim.adam(1e-2))
    state0 = init_train_state(params, mstate, opt)
    step = make_train_step(classifier_loss(model.apply, train=True), opt)
    x = jax.random.normal(jax.random.key(1), (64, 12)) * 3.0 + 1.0
    y = jax.random.randint(jax.random.key(2), (64,), 0, 10)

    single = jax.jit(step)
    mesh = data_mesh()
    pstep = data_parallel_step(step, mesh)
    s1, sp = state0, replicate(state0, mesh)
    batch = shard_batch((x, y), mesh)
    assert batch[0].sharding == batch_sharding(mesh)
    assert len(batch[0].addressable_shards) == 8 and batch[0].addressable_shards[0].data.shape == (8, 12)
    for i in range(2):
        k = jax.random.key(10 + i)
        s1, m1 = single(s1, (x, y), k)
        sp, mp = pstep(sp, batch, k)
        for a, b in zip(jax.tree_util.tree_leaves((s1, m1)), jax.tree_util.tree_leaves((sp, mp)), strict=True):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=2e-5, atol=2e-6)
        assert is_replicated(sp), "state is not replicated"
        assert is_replicated(mp), "metrics are not replicated"
    # Batch-norm statistics are global: they equal the whole-batch statistics, not one shard's.
    h = np.maximum(np.asarray(x @ params[0].w + params[0].b), 0.0)
    expected_mean = 0.9 * np.asarray(mstate[2].mean) + 0.1 * h.mean(0)
    s_one, _ = single(state0, (x, y), jax.random.key(10))
    np.testing.assert_allclose(np.asarray(s_one.model_state[2].mean), expected_mean, rtol=1e-5, atol=1e-6)
    shard_only = 0.9 * np.asarray(mstate[2].mean) + 0.1 * h[:8].mean(0)
    assert not np.allclose(expected_mean, shard_only, atol=1e-3)
    # A host batch works too (it is split over the devices on the way in).
    sp2, _ = pstep(replicate(state0, mesh), (x, y), jax.random.key(10))
    np.testing.assert_allclose(np.asarray(sp2.model_state[2].mean), expected_mean, rtol=1e-5, atol=1e-6)
    try:
        pstep(sp, (x[:60], y[:60]), jax.random.key(0))
    except ValueError as e:
        assert "divisible by the 8 devices" in str(e), e
    else:
        raise AssertionError("a batch of 60 on 8 devices was accepted")
    print("DATA-PARALLEL-OK")
    """
)


@pytest.mark.slow
def test_data_parallel_step_equals_single_device_step_on_8_cpu_devices() -> None:
    env = dict(os.environ)
    env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8").strip()
    env["JAX_PLATFORMS"] = "cpu"
    proc = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "DATA-PARALLEL-OK" in proc.stdout


def test_single_device_mesh_and_errors() -> None:
    mesh = data_mesh(devices()[:1])
    assert mesh.axis_names == ("data",)
    tree = {"w": jnp.ones((3, 3))}
    assert is_replicated(replicate(tree, mesh))
    sharded = shard_batch((jnp.ones((4, 2)),), mesh)
    assert sharded[0].shape == (4, 2)
    with pytest.raises(ValueError, match="data_mesh: argument 'devices' must be a list of at least one device"):
        data_mesh([])
    with pytest.raises(ValueError, match=r"shard_batch: argument 'batch' must be arrays with a leading batch "
                                         r"axis divisible by the 1 devices of the mesh, got shape \(\) at batch\[0\]"):
        shard_batch((jnp.float32(1.0),), mesh)
    with pytest.raises(TypeError, match=r"shard_batch: argument 'mesh' must be a jax.sharding.Mesh"):
        shard_batch((jnp.ones(2),), jax.devices())  # type: ignore[arg-type]  # the error under test
    with pytest.raises(TypeError, match=r"data_parallel_step: argument 'step' must be a train step function"):
        data_parallel_step(None, mesh)  # type: ignore[arg-type]  # the error under test

    def step(s: jax.Array, batch: tuple[jax.Array], key: jax.Array) -> tuple[jax.Array, dict[str, jax.Array]]:
        return s + jnp.sum(batch[0]), {"loss": jnp.sum(batch[0])}

    out, metrics = data_parallel_step(step, mesh)(jnp.zeros(()), (jnp.ones((4, 2)),), jax.random.key(0))
    assert float(out) == 8.0 and float(metrics["loss"]) == 8.0
