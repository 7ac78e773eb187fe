"""Adagrad, RMSProp, Adam/AMSGrad and AdamW against float64 NumPy hand computations."""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import functrain.optim as fo
from functrain.optim import schedules

RNG = np.random.default_rng(7)
GRADS = [RNG.normal(size=(3, 4)) * (1.0 + 2.0 * t) for t in range(8)]
PARAMS = RNG.normal(size=(3, 4))


def _updates(tx: fo.GradientTransformation[Any], grads: list[np.ndarray] = GRADS,
             params: np.ndarray = PARAMS) -> list[np.ndarray]:
    p = {"w": jnp.asarray(params, jnp.float32)}
    state = tx.init(p)
    update = jax.jit(tx.update)
    out = []
    for g in grads:
        u, state = update({"w": jnp.asarray(g, jnp.float32)}, state, p)
        out.append(np.asarray(u["w"], np.float64))
    return out


def _close(got: list[np.ndarray], expected: list[np.ndarray], rtol: float = 2e-5) -> None:
    for a, b in zip(got, expected):
        np.testing.assert_allclose(a, b, rtol=rtol, atol=1e-7)


def test_adagrad_matches_float64_hand_computation() -> None:
    lr, g0, eps = 0.5, 0.1, 1e-7
    acc = np.full((3, 4), g0)
    expected = []
    for g in GRADS:
        acc = acc + g * g  # G_t = G_{t-1} + g_t^2
        expected.append(-lr * g / np.sqrt(acc + eps))
    _close(_updates(fo.adagrad(lr, g0, eps)), expected)


def test_adagrad_zero_accumulator_gives_zero_update_not_nan() -> None:
    tx = fo.adagrad(0.1, initial_accumulator_value=0.0, eps=0.0)
    g = {"w": jnp.asarray([0.0, 2.0])}
    u, s = tx.update(g, tx.init(g))
    np.testing.assert_allclose(u["w"], [0.0, -0.1])
    np.testing.assert_allclose(s[0].sum_of_squares["w"], [0.0, 4.0])


@pytest.mark.parametrize("centered", [False, True])
def test_rmsprop_matches_float64_hand_computation(centered: bool) -> None:
    lr, rho, eps, nu0 = 0.01, 0.8, 1e-6, 1.0
    nu = np.full((3, 4), nu0)
    mu = np.zeros((3, 4))
    expected = []
    for g in GRADS:
        nu = rho * nu + (1 - rho) * g * g
        mu = rho * mu + (1 - rho) * g
        var = nu - mu * mu if centered else nu
        expected.append(-lr * g / np.sqrt(var + eps))
    _close(_updates(fo.rmsprop(lr, rho, eps, nu0, centered)), expected)


def _adam_reference(lr: float, b1: float, b2: float, eps: float, amsgrad: bool = False,
                    eps_root: float = 0.0) -> list[np.ndarray]:
    m = np.zeros((3, 4))
    v = np.zeros((3, 4))
    v_max = np.zeros((3, 4))
    out = []
    for t, g in enumerate(GRADS, start=1):
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        m_hat = m / (1 - b1**t)
        v_hat = v / (1 - b2**t)
        v_max = np.maximum(v_max, v_hat)
        out.append(-lr * m_hat / (np.sqrt((v_max if amsgrad else v_hat) + eps_root) + eps))
    return out


def test_adam_matches_float64_hand_computation_with_bias_correction() -> None:
    _close(_updates(fo.adam(0.01, 0.9, 0.999, 1e-8)), _adam_reference(0.01, 0.9, 0.999, 1e-8))
    # the first step of Adam is -lr g / (|g| + eps) ~ -lr sign(g): the bias correction at work
    first = _updates(fo.adam(0.01), GRADS[:1])[0]
    g = GRADS[0]
    np.testing.assert_allclose(first, -0.01 * g / (np.abs(g) + 1e-8), rtol=1e-5)
    assert np.all(np.abs(np.abs(first) - 0.01) < 1e-5)


def test_amsgrad_and_eps_root_match_float64_hand_computation() -> None:
    tx = fo.chain(fo.scale_by_adam(0.5, 0.9, 1e-6, 1e-4, amsgrad=True), fo.scale(-0.01))
    _close(_updates(tx), _adam_reference(0.01, 0.5, 0.9, 1e-6, amsgrad=True, eps_root=1e-4))


def test_adam_with_scheduled_betas_uses_current_beta() -> None:
    b1 = schedules.constant(0.7)
    b2 = schedules.join([schedules.constant(0.9), schedules.constant(0.99)], [100])
    _close(_updates(fo.adam(0.01, b1, b2, 1e-8)), _adam_reference(0.01, 0.7, 0.9, 1e-8))


def test_adamw_decays_only_masked_leaves_by_lr_times_lambda() -> None:
    p = {"w": jnp.ones((2, 2)), "b": jnp.ones((2,))}
    zero = jax.tree_util.tree_map(jnp.zeros_like, p)
    tx = fo.adamw(0.1, weight_decay=0.5)  # default mask: only w (ndim >= 2)
    u, _ = tx.update(zero, tx.init(p), p)
    np.testing.assert_allclose(u["w"], -0.1 * 0.5 * np.ones((2, 2)), rtol=1e-6)
    np.testing.assert_allclose(u["b"], np.zeros(2))
    tx_all = fo.adamw(0.1, weight_decay=0.5, mask=None)
    u, _ = tx_all.update(zero, tx_all.init(p), p)
    np.testing.assert_allclose(u["b"], -0.05 * np.ones(2), rtol=1e-6)


def test_array_hyperparameters_keep_low_precision_state_dtypes() -> None:
    p = {"w": jnp.ones((2, 3), jnp.bfloat16)}
    for tx in (fo.adam(jnp.asarray(1e-3), jnp.asarray(0.9), jnp.asarray(0.999)),
               fo.rmsprop(jnp.asarray(1e-3), jnp.asarray(0.9), centered=True),
               fo.momentum(jnp.asarray(1e-3), jnp.asarray(0.9))):
        s0 = tx.init(p)
        u, s1 = jax.jit(tx.update)(p, s0, p)
        assert u["w"].dtype == jnp.bfloat16
        for a, b in zip(jax.tree_util.tree_leaves(s0), jax.tree_util.tree_leaves(s1)):
            assert a.dtype == b.dtype


def test_adam_under_jit_and_vmap_over_betas() -> None:
    b1s = jnp.asarray([0.0, 0.5, 0.9])

    def run(b1: jax.Array) -> jax.Array:
        tx = fo.adam(0.01, b1, 0.999, 1e-8)
        p = {"w": jnp.asarray(PARAMS, jnp.float32)}
        s = tx.init(p)
        u = p
        for g in GRADS:
            u, s = tx.update({"w": jnp.asarray(g, jnp.float32)}, s, p)
        w: jax.Array = u["w"]
        return w

    got = jax.jit(jax.vmap(run))(b1s)
    for i, b1 in enumerate([0.0, 0.5, 0.9]):
        np.testing.assert_allclose(np.asarray(got[i]), _adam_reference(0.01, b1, 0.999, 1e-8)[-1],
                                   rtol=2e-5, atol=1e-7)


@pytest.mark.parametrize("amsgrad", [False, True])
def test_adam_state_can_be_donated(amsgrad: bool) -> None:
    """Each moment has its own buffer, so ``donate_argnums`` on the state works."""
    params = {"w": jnp.ones((8, 4)), "b": jnp.zeros(4)}
    tx = fo.chain(fo.scale_by_adam(amsgrad=amsgrad), fo.scale(-1e-2))
    state = tx.init(params)
    buffers = [id(x) for x in jax.tree_util.tree_leaves(state)]
    assert len(set(buffers)) == len(buffers)

    @functools.partial(jax.jit, donate_argnums=(0, 1))
    def step(p: Any, s: Any) -> tuple[Any, Any]:
        updates, s = tx.update(jax.tree_util.tree_map(jnp.ones_like, p), s, p)
        return fo.apply_updates(p, updates), s

    p1, s1 = step(params, state)
    p2, _ = step(p1, s1)
    np.testing.assert_allclose(np.asarray(p2["w"]), 1 - 2e-2, rtol=1e-5)
