"""SGD, momentum (trace) and normalized SGD against float64 hand computations (with and without
jit, under vmap)."""

from __future__ import annotations

from typing import Any

import chex
import jax
import jax.numpy as jnp
import numpy as np
from _typed import jit, vmap
from hypothesis import given, settings
from hypothesis import strategies as st

import functrain.optim as fo
from functrain.optim import schedules

RNG = np.random.default_rng(1)
GRADS = [RNG.normal(size=(4, 3)) for _ in range(6)]


def _run(tx: fo.GradientTransformation[Any], update: fo.UpdateFn[Any],
         grads: list[np.ndarray] = GRADS) -> list[np.ndarray]:
    """The updates of ``tx`` on ``grads``, through ``update`` (``tx.update`` or a variant)."""
    state = tx.init({"w": jnp.zeros((4, 3))})
    out: list[np.ndarray] = []
    for g in grads:
        u, state = update({"w": jnp.asarray(g, jnp.float32)}, state)
        out.append(np.asarray(u["w"], np.float64))
    return out


class TestSgd(chex.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    def test_momentum_matches_float64_velocity_recursion(self) -> None:
        lr, gamma = 0.1, 0.9
        for nesterov in (False, True):
            v = np.zeros((4, 3))
            expected: list[np.ndarray] = []
            for g in GRADS:
                v = gamma * v + g
                expected.append(-lr * (g + gamma * v if nesterov else v))
            tx = fo.momentum(lr, gamma, nesterov=nesterov)
            for a, b in zip(_run(tx, self.variant(tx.update)), expected, strict=True):
                np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)

    @chex.variants(with_jit=True, without_jit=True)
    def test_sgd_is_minus_lr_times_gradient_and_sgd_momentum_equals_momentum(self) -> None:
        tx = fo.sgd(0.3)
        for a, g in zip(_run(tx, self.variant(tx.update)), GRADS, strict=True):
            np.testing.assert_allclose(a, -0.3 * g, rtol=1e-6)
        with_momentum, heavy_ball = fo.sgd(0.3, 0.5), fo.momentum(0.3, 0.5)
        for a, b in zip(_run(with_momentum, self.variant(with_momentum.update)),
                        _run(heavy_ball, self.variant(heavy_ball.update)), strict=True):
            np.testing.assert_array_equal(a, b)

    @chex.variants(with_jit=True, without_jit=True)
    def test_scheduled_momentum_and_learning_rate(self) -> None:
        lr = schedules.exponential_decay(0.1, 0.5)
        gamma = schedules.linear_schedule(0.0, 0.8, 4)
        v = np.zeros((4, 3))
        expected: list[np.ndarray] = []
        for t, g in enumerate(GRADS):
            v = min(0.2 * t, 0.8) * v + g
            expected.append(-0.1 * 0.5**t * v)
        tx = fo.momentum(lr, gamma)
        for a, b in zip(_run(tx, self.variant(tx.update)), expected, strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)

    @chex.variants(with_jit=True, without_jit=True)
    def test_trace_state_is_the_velocity_and_counts_steps(self) -> None:
        tx = fo.trace(0.5)
        update = self.variant(tx.update)
        s = tx.init({"w": jnp.zeros(2)})
        assert int(s.step) == 0 and s.step.dtype == jnp.int32
        _, s = update({"w": jnp.asarray([1.0, 2.0])}, s)
        _, s = update({"w": jnp.asarray([1.0, 0.0])}, s)
        np.testing.assert_allclose(s.trace["w"], [1.5, 1.0])
        assert int(s.step) == 2


@st.composite
def _trees(draw: st.DrawFn) -> list[np.ndarray]:
    shapes = draw(st.lists(st.sampled_from([(), (3,), (4, 2), (2, 2, 1, 3)]), min_size=1,
                           max_size=4))
    seed = draw(st.integers(0, 2**31 - 1))
    scale = draw(st.floats(1e-3, 1e3))
    rng = np.random.default_rng(seed)
    return [scale * rng.normal(size=tuple(s)).astype(np.float32) for s in shapes]


@settings(max_examples=25, deadline=None)
@given(tree=_trees(), lr=st.floats(1e-3, 10.0))
def test_normalized_sgd_update_has_norm_exactly_lr(tree: list[np.ndarray], lr: float) -> None:
    grads = [jnp.asarray(x) for x in tree]
    tx = fo.normalized_sgd(lr)
    u, _ = tx.update(grads, tx.init(grads))
    norm = np.sqrt(sum(np.sum(np.asarray(x, np.float64) ** 2) for x in u))
    np.testing.assert_allclose(norm, lr, rtol=1e-6)
    # direction: -g / ||g||
    g_norm = np.sqrt(sum(np.sum(np.asarray(x, np.float64) ** 2) for x in tree))
    for a, g in zip(u, tree):
        np.testing.assert_allclose(np.asarray(a), -lr * g / g_norm, rtol=1e-5, atol=1e-7 * lr)


def test_normalize_by_global_norm_of_zero_gradient_is_zero() -> None:
    tx = fo.normalized_sgd(0.1)
    g = {"a": jnp.zeros((3,)), "b": jnp.zeros((2, 2))}
    u, _ = jit(tx.update)(g, tx.init(g))
    for x in jax.tree_util.tree_leaves(u):
        assert np.all(np.asarray(x) == 0.0)


def test_momentum_under_vmap_runs_each_decay_and_learning_rate_separately() -> None:
    decays = jnp.asarray([0.0, 0.5, 0.9])
    lrs = jnp.asarray([1.0, 0.5, 2.0])

    def final(lr: jax.Array, gamma: jax.Array) -> tuple[jax.Array, jax.Array]:
        tx = fo.momentum(lr, gamma)
        s = tx.init({"w": jnp.zeros(())})
        for g in (1.0, 1.0, 1.0):
            u, s = tx.update({"w": jnp.asarray(g)}, s)
        return s[0].trace["w"], u["w"]

    velocity, update = jit(vmap(final))(lrs, decays)
    np.testing.assert_allclose(velocity, [1.0, 1.75, 2.71], rtol=1e-6)
    np.testing.assert_allclose(update, [-1.0, -0.875, -5.42], rtol=1e-6)
