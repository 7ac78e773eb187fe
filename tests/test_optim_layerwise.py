"""The trust ratio, LARS and LAMB: per-layer norms (with and without jit, under vmap), float64
transcriptions of You et al. 2017/2020, masks, bad arguments."""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _typed import jit

from functrain import _tree
import functrain.optim as fo
from functrain.typing import PyTree

RNG = np.random.default_rng(3)
PARAMS = {"w": jnp.asarray(RNG.normal(size=(4, 3)), jnp.float32),
          "conv": jnp.asarray(RNG.normal(size=(2, 2, 1, 3)), jnp.float32),
          "b": jnp.asarray(RNG.normal(size=(3,)), jnp.float32)}
GRADS = [{name: jnp.asarray(RNG.normal(size=x.shape) * 10.0 ** (k % 3 - 1), jnp.float32)
          for name, x in PARAMS.items()} for k in range(6)]


def _norm(x: PyTree) -> float:
    return float(np.linalg.norm(np.asarray(x, np.float64)))


class TestTrustRatio(chex.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    def test_each_leaf_gets_norm_coefficient_times_its_parameter_norm(self) -> None:
        tx = fo.scale_by_trust_ratio(trust_coefficient=0.01)
        update = self.variant(tx.update)
        for g in GRADS:
            u, _ = update(g, tx.init(PARAMS), PARAMS)
            for name in PARAMS:
                np.testing.assert_allclose(_norm(u[name]), 0.01 * _norm(PARAMS[name]), rtol=1e-5)
                dot = np.sum(np.asarray(u[name], np.float64) * np.asarray(g[name], np.float64))
                assert dot / _norm(u[name]) / _norm(g[name]) > 1 - 1e-5  # the direction is kept

    def test_zero_norms_leave_the_update_unchanged_and_min_norm_bounds_them(self) -> None:
        params = {"zero": jnp.zeros(3), "small": jnp.full(4, 1e-3)}
        grads = {"zero": jnp.ones(3), "small": jnp.full(4, 0.5)}
        u, _ = fo.scale_by_trust_ratio().update(grads, fo.EmptyState(), params)
        np.testing.assert_array_equal(u["zero"], 1.0)
        np.testing.assert_allclose(_norm(u["small"]), 2e-3, rtol=1e-5)
        u, _ = fo.scale_by_trust_ratio(min_norm=0.1).update(grads, fo.EmptyState(), params)
        np.testing.assert_allclose(_norm(u["small"]), 0.1, rtol=1e-5)  # ||w|| raised to 0.1

    def test_vmap_over_parameter_batches(self) -> None:
        tx = fo.scale_by_trust_ratio()
        batch = _tree.tree_map(lambda x: jnp.stack([x, 3 * x]), PARAMS)
        gb = _tree.tree_map(lambda x: jnp.stack([x, x]), GRADS[0])
        u, _ = jit(jax.vmap(tx.update, in_axes=(0, None, 0)))(gb, fo.EmptyState(), batch)
        np.testing.assert_allclose(u["w"][1], 3 * u["w"][0], rtol=1e-5)


def test_lars_follows_the_formula() -> None:
    lr, wd, tc, mom = 0.5, 1e-2, 0.02, 0.9
    tx = fo.lars(lr, wd, trust_coefficient=tc, momentum=mom)  # default masks: not "b"
    params, state = PARAMS, tx.init(PARAMS)
    w = {k: np.asarray(v, np.float64) for k, v in PARAMS.items()}
    v = {k: np.zeros(x.shape) for k, x in w.items()}
    for g in GRADS:
        for k in w:
            d = np.asarray(g[k], np.float64)
            if k != "b":  # You et al. 2017, algorithm 1 (optax's order: momentum of lr * step)
                d = d + wd * w[k]
                d = tc * np.linalg.norm(w[k]) / np.linalg.norm(d) * d
            v[k] = mom * v[k] - lr * d
            w[k] = w[k] + v[k]
        u, state = jit(tx.update)(g, state, params)
        params = fo.apply_updates(params, u)
    for k in w:
        np.testing.assert_allclose(params[k], w[k], rtol=1e-4, atol=1e-6)


def test_lamb_follows_the_formula() -> None:
    lr, b1, b2, eps, wd = 0.01, 0.8, 0.9, 1e-6, 0.1
    tx = fo.lamb(lr, b1, b2, eps, weight_decay=wd, mask=None)
    params, state = PARAMS, tx.init(PARAMS)
    w = {k: np.asarray(x, np.float64) for k, x in PARAMS.items()}
    m = {k: np.zeros(x.shape) for k, x in w.items()}
    s = {k: np.zeros(x.shape) for k, x in w.items()}
    for t, g in enumerate(GRADS, start=1):
        for k in w:
            gk = np.asarray(g[k], np.float64)
            m[k] = b1 * m[k] + (1 - b1) * gk
            s[k] = b2 * s[k] + (1 - b2) * gk**2
            r = m[k] / (1 - b1**t) / (np.sqrt(s[k] / (1 - b2**t)) + eps) + wd * w[k]
            w[k] = w[k] - lr * np.linalg.norm(w[k]) / np.linalg.norm(r) * r  # You et al. 2020
        u, state = jit(tx.update)(g, state, params)
        params = fo.apply_updates(params, u)
    for k in w:
        np.testing.assert_allclose(params[k], w[k], rtol=1e-4, atol=1e-6)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match=r"^scale_by_trust_ratio: argument 'min_norm' must be "):
        fo.scale_by_trust_ratio(min_norm=-1.0)
    with pytest.raises(ValueError, match=r"^lars: argument 'trust_coefficient' must be >= 0"):
        fo.lars(0.1, trust_coefficient=-1.0)
    with pytest.raises(TypeError, match=r"^lars: argument 'nesterov' must be a bool, got 1$"):
        fo.lars(0.1, nesterov=1)  # type: ignore[arg-type]  # the error tested
    with pytest.raises(ValueError, match=r"^lamb: argument 'b1' must be in \[0, 1\)"):
        fo.lamb(0.1, b1=2.0)
    tx = fo.scale_by_trust_ratio()
    with pytest.raises(TypeError, match=r"^scale_by_trust_ratio: argument 'params' must be the "):
        tx.update({"w": jnp.ones(2)}, tx.init(None))
