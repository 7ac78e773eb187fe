"""Lookahead: the closed form on a quadratic (with and without jit), make_train_step unchanged,
alpha schedules and traced alphas (vmap), resetting the fast state, bad arguments."""

from __future__ import annotations

from typing import Any

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _typed import jit, vmap

import functrain.optim as fo
from functrain import train
from functrain.typing import Array, PyTree

W0 = np.asarray([1.0, -2.0, 0.5])
CURVATURE = 2.0  # f(w) = CURVATURE / 2 * ||w||^2: SGD multiplies w by c = 1 - lr * CURVATURE
LR = 0.1


def _grad(params: PyTree) -> PyTree:
    return {"w": CURVATURE * params["w"]}


class TestLookahead(chex.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    def test_slow_weights_follow_the_closed_form_on_a_quadratic(self) -> None:
        k, alpha = 5, 0.4
        tx = fo.lookahead(fo.sgd(LR), sync_period=k, alpha=alpha)
        update = self.variant(tx.update)
        params = {"w": jnp.asarray(W0, jnp.float32)}
        state = tx.init(params)
        c = 1 - LR * CURVATURE
        slow = W0.copy()
        for cycle in range(3):
            for j in range(1, k + 1):
                u, state = update(_grad(params), state, params)
                params = fo.apply_updates(params, u)
                if j < k:  # k steps forward: the fast weights are SGD's, the slow ones wait
                    np.testing.assert_allclose(params["w"], slow * c**j, rtol=1e-6)
                    np.testing.assert_allclose(state.slow["w"], slow, rtol=1e-6)
            fast = slow * c**k
            slow = slow + alpha * (fast - slow)  # one step back
            np.testing.assert_allclose(state.slow["w"], slow, rtol=1e-6)
            np.testing.assert_allclose(params["w"], slow, rtol=1e-6)  # synchronized
            assert int(state.since_sync) == 0 and int(state.step) == k * (cycle + 1)

    @chex.variants(with_jit=True, without_jit=True)
    def test_reset_state_restarts_the_fast_optimizer_at_each_synchronization(self) -> None:
        tx = fo.lookahead(fo.momentum(LR, 0.9), sync_period=3, alpha=0.5, reset_state=True)
        update = self.variant(tx.update)
        params = {"w": jnp.asarray(W0, jnp.float32)}
        state = tx.init(params)
        for t in range(1, 7):
            u, state = update(_grad(params), state, params)
            params = fo.apply_updates(params, u)
            velocity = np.asarray(state.inner_state[0].trace["w"])
            assert (int(state.inner_state[0].step) == 0) == (t % 3 == 0)
            assert np.all(velocity == 0.0) == (t % 3 == 0)


def test_make_train_step_trains_with_lookahead_unchanged() -> None:
    def loss_fn(params: PyTree, model_state: PyTree, batch: Array, key: Array
                ) -> tuple[Array, tuple[PyTree, dict[str, Array]]]:
        loss = 0.5 * CURVATURE * jnp.sum(params["w"] ** 2) + 0.0 * jnp.sum(batch)
        return loss, (model_state, {})

    tx = fo.lookahead(fo.sgd(LR), 4, 0.5)
    step = jit(train.make_train_step(loss_fn, tx))
    state = train.init_train_state({"w": jnp.asarray(W0, jnp.float32)}, (), tx)
    for _ in range(8):
        state, _ = step(state, jnp.zeros(1), jax.random.key(0))
    c4 = (1 - LR * CURVATURE) ** 4
    expected = W0 * (1 + 0.5 * (c4 - 1)) ** 2
    np.testing.assert_allclose(state.params["w"], expected, rtol=1e-6)
    np.testing.assert_allclose(state.opt_state.slow["w"], expected, rtol=1e-6)


def test_alpha_schedule_and_traced_alpha() -> None:
    def final_slow(tx: Any) -> Array:
        params = {"w": jnp.asarray(W0, jnp.float32)}
        state = tx.init(params)
        for _ in range(4):
            u, state = tx.update(_grad(params), state, params)
            params = fo.apply_updates(params, u)
        slow: Array = state.slow["w"]
        return slow

    c2 = (1 - LR * CURVATURE) ** 2
    # alpha(step): 1.0 at the first synchronization (step index 1), 0.25 at the second (index 3)
    alpha = fo.schedules.piecewise_constant(1.0, {2: 0.25})
    slow1 = W0 * c2
    np.testing.assert_allclose(final_slow(fo.lookahead(fo.sgd(LR), 2, alpha)),
                               slow1 + 0.25 * (slow1 * c2 - slow1), rtol=1e-6)
    alphas = jnp.asarray([0.0, 0.5, 1.0])
    swept = jit(vmap(lambda a: final_slow(fo.lookahead(fo.sgd(LR), 2, a))))(alphas)
    for a, row in zip([0.0, 0.5, 1.0], swept):
        np.testing.assert_allclose(row, W0 * (1 + a * (c2 - 1)) ** 2, rtol=1e-6)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match=r"^lookahead: argument 'sync_period' must be an int >= 1, "
                                         r"got 0$"):
        fo.lookahead(fo.sgd(0.1), 0)
    with pytest.raises(ValueError, match=r"^lookahead: argument 'alpha' must be in \[0, 1\]"):
        fo.lookahead(fo.sgd(0.1), 5, 1.5)
    with pytest.raises(TypeError, match=r"^lookahead: argument 'inner' must be a gradient"):
        fo.lookahead("adam", 5)  # type: ignore[call-overload]  # the error tested
    tx = fo.lookahead(fo.sgd(0.1), 5)
    with pytest.raises(TypeError, match=r"^lookahead: argument 'params' must be the current "):
        tx.update({"w": jnp.ones(2)}, tx.init({"w": jnp.ones(2)}))
