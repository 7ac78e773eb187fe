"""Adam, AMSGrad and AdamW against float64 NumPy hand computations (with and without jit, under
vmap), scheduled betas in both regimes, and donation of the state."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _typed import jit, vmap

import functrain.optim as fo
from functrain._tree import tree_map
from functrain.optim import schedules

RNG = np.random.default_rng(7)
GRADS = [RNG.normal(size=(3, 4)) * (1.0 + 2.0 * t) for t in range(8)]
PARAMS = RNG.normal(size=(3, 4))


def _updates(tx: fo.GradientTransformation[Any], update: fo.UpdateFn[Any]) -> list[np.ndarray]:
    """The updates of 8 steps on GRADS, through ``update`` (``tx.update`` or a variant of it)."""
    p = {"w": jnp.asarray(PARAMS, jnp.float32)}
    state = tx.init(p)
    out: list[np.ndarray] = []
    for g in GRADS:
        u, state = update({"w": jnp.asarray(g, jnp.float32)}, state, p)
        out.append(np.asarray(u["w"], np.float64))
    return out


def _close(got: list[np.ndarray], expected: list[np.ndarray], rtol: float = 2e-5) -> None:
    assert len(got) == len(expected) == len(GRADS)
    for a, b in zip(got, expected):
        np.testing.assert_allclose(a, b, rtol=rtol, atol=1e-7)


def _per_step(beta: float | Sequence[float]) -> list[float]:
    return [float(beta)] * len(GRADS) if isinstance(beta, (int, float)) else list(beta)


def adam_reference(lr: float, b1: float | Sequence[float], b2: float | Sequence[float],
                   eps: float, amsgrad: bool = False, eps_root: float = 0.0) -> list[np.ndarray]:
    """Adam / AMSGrad in float64; a beta may be a list of per-update values ``beta_t``."""
    b1s, b2s = _per_step(b1), _per_step(b2)
    m = np.zeros((3, 4))
    v = np.zeros((3, 4))
    v_max = np.zeros((3, 4))
    out: list[np.ndarray] = []
    for t, g in enumerate(GRADS, start=1):
        beta1, beta2 = b1s[t - 1], b2s[t - 1]
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g * g
        m_hat = m / (1 - beta1**t)
        v_hat = v / (1 - beta2**t)
        v_max = np.maximum(v_max, v_hat)
        out.append(-lr * m_hat / (np.sqrt((v_max if amsgrad else v_hat) + eps_root) + eps))
    return out


class TestAdam(chex.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    def test_adam_matches_float64_hand_computation_with_bias_correction(self) -> None:
        tx = fo.adam(0.01, 0.9, 0.999, 1e-8)
        got = _updates(tx, self.variant(tx.update))
        _close(got, adam_reference(0.01, 0.9, 0.999, 1e-8))
        # the first step of Adam is -lr g / (|g| + eps) ~ -lr sign(g): the bias correction at work
        g = GRADS[0]
        np.testing.assert_allclose(got[0], -0.01 * g / (np.abs(g) + 1e-8), rtol=1e-5)
        assert np.all(np.abs(np.abs(got[0]) - 0.01) < 1e-5)

    @chex.variants(with_jit=True, without_jit=True)
    def test_amsgrad_and_eps_root_match_float64_hand_computation(self) -> None:
        tx = fo.chain(fo.scale_by_amsgrad(0.5, 0.9, 1e-6, 1e-4), fo.scale(-0.01))
        expected = adam_reference(0.01, 0.5, 0.9, 1e-6, amsgrad=True, eps_root=1e-4)
        _close(_updates(tx, self.variant(tx.update)), expected)
        # the running maximum is active in these gradients: AMSGrad differs from Adam
        adam = adam_reference(0.01, 0.5, 0.9, 1e-6, eps_root=1e-4)
        assert not np.allclose(expected[-1], adam[-1], rtol=1e-3)

    @chex.variants(with_jit=True, without_jit=True)
    def test_scheduled_betas_switch_inside_the_run(self) -> None:
        """beta_1 switches after 3 updates, beta_2 after 4 (of 8): both regimes are checked."""
        b1 = schedules.join([schedules.constant(0.7), schedules.constant(0.3)], [3])
        b2 = schedules.join([schedules.constant(0.9), schedules.constant(0.99)], [4])
        b1_t = [0.7] * 3 + [0.3] * 5  # the t-th update uses b(t - 1), its step count before
        b2_t = [0.9] * 4 + [0.99] * 4
        tx = fo.adam(0.01, b1, b2, 1e-8)
        got = _updates(tx, self.variant(tx.update))
        _close(got, adam_reference(0.01, b1_t, b2_t, 1e-8))
        # before the first switch the run is Adam with the initial betas; after it, it is not
        constant = adam_reference(0.01, 0.7, 0.9, 1e-8)
        _close(got[:3] + constant[3:], constant)
        for t in range(3, 8):
            assert not np.allclose(got[t], constant[t], rtol=1e-3), t

    @chex.variants(with_jit=True, without_jit=True)
    def test_adamw_decays_only_masked_leaves_by_lr_times_lambda(self) -> None:
        p = {"w": jnp.ones((2, 2)), "b": jnp.ones((2,))}
        zero = tree_map(jnp.zeros_like, p)
        tx = fo.adamw(0.1, weight_decay=0.5)  # default mask: only w (a kernel)
        u, state = self.variant(tx.update)(zero, tx.init(p), p)
        np.testing.assert_allclose(u["w"], -0.1 * 0.5 * np.ones((2, 2)), rtol=1e-6)
        np.testing.assert_allclose(u["b"], np.zeros(2))
        assert [int(s.step) for s in state] == [1, 1, 1]
        tx_all = fo.adamw(0.1, weight_decay=0.5, mask=None)
        u, _ = self.variant(tx_all.update)(zero, tx_all.init(p), p)
        np.testing.assert_allclose(u["b"], -0.05 * np.ones(2), rtol=1e-6)


def test_adam_under_vmap_over_betas_and_learning_rates_equals_separate_runs() -> None:
    b1s = jnp.asarray([0.0, 0.5, 0.9])
    lrs = jnp.asarray([0.01, 0.1, 0.02])

    def run(lr: jax.Array, b1: jax.Array) -> jax.Array:
        tx = fo.adam(lr, b1, 0.999, 1e-8)
        p = {"w": jnp.asarray(PARAMS, jnp.float32)}
        s = tx.init(p)
        u = p
        for g in GRADS:
            u, s = tx.update({"w": jnp.asarray(g, jnp.float32)}, s, p)
        w: jax.Array = u["w"]
        return w

    got = jit(vmap(run))(lrs, b1s)
    for i, (lr, b1) in enumerate([(0.01, 0.0), (0.1, 0.5), (0.02, 0.9)]):
        np.testing.assert_allclose(np.asarray(got[i]), adam_reference(lr, b1, 0.999, 1e-8)[-1],
                                   rtol=2e-5, atol=1e-7)


def test_array_hyperparameters_keep_low_precision_state_dtypes() -> None:
    p = {"w": jnp.ones((2, 3), jnp.bfloat16)}
    txs: tuple[fo.GradientTransformation[Any], ...] = (
        fo.adam(jnp.asarray(1e-3), jnp.asarray(0.9), jnp.asarray(0.999)),
        fo.chain(fo.scale_by_amsgrad(jnp.asarray(0.9)), fo.scale(-1e-3)))
    for tx in txs:
        s0 = tx.init(p)
        u, s1 = jit(tx.update)(p, s0, p)
        assert u["w"].dtype == jnp.bfloat16
        for a, b in zip(jax.tree_util.tree_leaves(s0), jax.tree_util.tree_leaves(s1)):
            assert a.dtype == b.dtype


@pytest.mark.parametrize("amsgrad", [False, True])
def test_adam_state_can_be_donated(amsgrad: bool) -> None:
    """Each moment has its own buffer, so ``donate_argnums`` on the state works."""
    params = {"w": jnp.ones((8, 4)), "b": jnp.zeros(4)}
    scale_by: fo.GradientTransformation[Any] = (fo.scale_by_amsgrad() if amsgrad
                                                else fo.scale_by_adam())
    tx = fo.chain(scale_by, fo.scale(-1e-2))
    state = tx.init(params)
    buffers = [id(x) for x in jax.tree_util.tree_leaves(state)]
    assert len(set(buffers)) == len(buffers)

    @functools.partial(jit, donate_argnums=(0, 1))
    def step(p: Any, s: Any) -> tuple[Any, Any]:
        updates, s = tx.update(tree_map(jnp.ones_like, p), s, p)
        return fo.apply_updates(p, updates), s

    p1, s1 = step(params, state)
    p2, _ = step(p1, s1)
    np.testing.assert_allclose(np.asarray(p2["w"]), 1 - 2e-2, rtol=1e-5)


def test_amsgrad_is_its_own_transformation_with_its_own_state() -> None:
    p = {"w": jnp.ones(2)}
    assert type(fo.scale_by_amsgrad().init(p)) is fo.ScaleByAmsgradState
    assert type(fo.scale_by_adam().init(p)) is fo.ScaleByAdamState
    assert fo.ScaleByAmsgradState._fields == ("step", "mu", "nu", "nu_max")
