"""Adagrad and RMSProp against float64 NumPy hand computations (with and without jit, under
vmap); array hyperparameters keep low-precision dtypes."""

from __future__ import annotations

from typing import Any

import chex
import jax
import jax.numpy as jnp
import numpy as np
from _typed import jit

import functrain.optim as fo
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


def rmsprop_reference(lr: float, rhos: list[float], eps: float, nu0: float,
                      centered: bool) -> list[np.ndarray]:
    nu = np.full((3, 4), nu0)
    mu = np.zeros((3, 4))
    out: list[np.ndarray] = []
    for rho, g in zip(rhos, GRADS):
        nu = rho * nu + (1 - rho) * g * g
        mu = rho * mu + (1 - rho) * g
        var = nu - mu * mu if centered else nu
        out.append(-lr * g / np.sqrt(var + eps))
    return out


class TestAdaptive(chex.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    def test_adagrad_matches_float64_hand_computation(self) -> None:
        lr, g0, eps = 0.5, 0.1, 1e-7
        acc = np.full((3, 4), g0)
        expected: list[np.ndarray] = []
        for g in GRADS:
            acc = acc + g * g  # G_t = G_{t-1} + g_t^2
            expected.append(-lr * g / np.sqrt(acc + eps))
        tx = fo.adagrad(lr, g0, eps)
        _close(_updates(tx, self.variant(tx.update)), expected)

    @chex.variants(with_jit=True, without_jit=True)
    def test_adagrad_zero_accumulator_gives_zero_update_not_nan(self) -> None:
        tx = fo.adagrad(0.1, initial_accumulator_value=0.0, eps=0.0)
        g = {"w": jnp.asarray([0.0, 2.0])}
        u, s = self.variant(tx.update)(g, tx.init(g))
        np.testing.assert_allclose(u["w"], [0.0, -0.1])
        np.testing.assert_allclose(s[0].sum_of_squares["w"], [0.0, 4.0])

    @chex.variants(with_jit=True, without_jit=True)
    def test_rmsprop_matches_float64_hand_computation(self) -> None:
        lr, rho, eps, nu0 = 0.01, 0.8, 1e-6, 1.0
        for centered in (False, True):
            tx = fo.rmsprop(lr, rho, eps, nu0, centered)
            expected = rmsprop_reference(lr, [rho] * 8, eps, nu0, centered)
            _close(_updates(tx, self.variant(tx.update)), expected)

    @chex.variants(with_jit=True, without_jit=True)
    def test_rmsprop_scheduled_decay_switches_inside_the_run(self) -> None:
        decay = schedules.join([schedules.constant(0.5), schedules.constant(0.9)], [3])
        tx = fo.rmsprop(0.01, decay, 1e-6, 1.0)
        got = _updates(tx, self.variant(tx.update))
        _close(got, rmsprop_reference(0.01, [0.5] * 3 + [0.9] * 5, 1e-6, 1.0, False))
        assert not np.allclose(got[-1], rmsprop_reference(0.01, [0.5] * 8, 1e-6, 1.0, False)[-1])


def test_rmsprop_under_vmap_over_decays_and_learning_rates_equals_separate_runs() -> None:
    decays = jnp.asarray([0.0, 0.5, 0.9])
    lrs = jnp.asarray([0.1, 0.01, 0.05])

    def final_update(lr: jax.Array, rho: jax.Array) -> jax.Array:
        tx = fo.rmsprop(lr, rho, 1e-6, 1.0)
        p = {"w": jnp.asarray(PARAMS, jnp.float32)}
        s = tx.init(p)
        u = p
        for g in GRADS:
            u, s = tx.update({"w": jnp.asarray(g, jnp.float32)}, s, p)
        w: jax.Array = u["w"]
        return w

    got = jit(jax.vmap(final_update))(lrs, decays)
    for i, (lr, rho) in enumerate([(0.1, 0.0), (0.01, 0.5), (0.05, 0.9)]):
        expected = rmsprop_reference(lr, [rho] * 8, 1e-6, 1.0, False)[-1]
        np.testing.assert_allclose(np.asarray(got[i]), expected, rtol=2e-5, atol=1e-7)


def test_array_hyperparameters_keep_low_precision_state_dtypes() -> None:
    p = {"w": jnp.ones((2, 3), jnp.bfloat16)}
    transforms: list[fo.GradientTransformation[Any]] = [
        fo.rmsprop(jnp.asarray(1e-3), jnp.asarray(0.9), centered=True),
        fo.adagrad(jnp.asarray(1e-3)),
        fo.momentum(jnp.asarray(1e-3), jnp.asarray(0.9))]
    for tx in transforms:
        s0 = tx.init(p)
        u, s1 = jit(tx.update)(p, s0, p)
        assert u["w"].dtype == jnp.bfloat16
        for a, b in zip(jax.tree_util.tree_leaves(s0), jax.tree_util.tree_leaves(s1)):
            assert a.dtype == b.dtype
