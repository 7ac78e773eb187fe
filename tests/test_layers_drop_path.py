"""Stochastic depth (drop-path): whole examples kept (scaled) or dropped, the expectation kept
(mean over many keys within 3 standard errors), identity at evaluation and for rate 0, inside a
Residual block, with and without jit, under vmap (keys, traced rates), errors."""

from __future__ import annotations

import math
import re
from typing import Any

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _typed import jit, vmap

from functrain.layers import Dense, DropPath, Residual, drop_path, serial

STYLE = re.compile(r"^[\w.]+: argument '[\w.\[\]']+' must be .+, got .+$", re.S)
KEY = jax.random.key(0)
X = jnp.asarray(np.random.default_rng(0).standard_normal((16, 3, 4)), jnp.float32)


def _any(value: object) -> Any:
    """A deliberately wrong argument, past the type checker."""
    return value


class TestDropPath(chex.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    def test_each_example_is_kept_and_scaled_or_dropped_whole(self) -> None:
        rate = 0.25

        def drop(key: jax.Array, x: jax.Array) -> jax.Array:
            return drop_path(key, x, rate=rate, train=True)

        y = np.asarray(self.variant(drop)(KEY, X))
        x = np.asarray(X)
        for yi, xi in zip(y, x):
            if np.all(yi == 0):
                continue
            np.testing.assert_allclose(yi, xi / (1 - rate), rtol=1e-6)
        kept = np.array([not np.all(yi == 0) for yi in y])
        assert 0 < kept.sum() < len(kept)  # masks differ per example

    @chex.variants(with_jit=True, without_jit=True)
    def test_expectation_is_kept(self) -> None:
        rate, n = 0.3, 4000
        x = jnp.asarray([[1.0, -2.0], [0.5, 3.0]])

        def mean_over_keys(keys: jax.Array) -> jax.Array:
            out: jax.Array = vmap(lambda k: drop_path(k, x, rate=rate, train=True))(keys)
            return out

        ys = np.asarray(self.variant(mean_over_keys)(jax.random.split(KEY, n)), np.float64)
        # y = m x / (1 - r), m ~ Bernoulli(1 - r): E[y] = x, sd(y) = |x| sqrt(r / (1 - r))
        se = np.abs(np.asarray(x)) * math.sqrt(rate / (1 - rate)) / math.sqrt(n)
        assert np.all(np.abs(ys.mean(axis=0) - np.asarray(x)) < 3 * se)
        drop_fraction = (ys == 0).all(axis=2).mean()
        assert abs(drop_fraction - rate) < 3 * math.sqrt(rate * (1 - rate) / (2 * n))

    @chex.variants(with_jit=True, without_jit=True)
    def test_identity_at_evaluation_and_for_rate_zero(self) -> None:
        def both(key: jax.Array, x: jax.Array) -> tuple[jax.Array, jax.Array]:
            return drop_path(key, x, rate=0.9, train=False), drop_path(key, x, rate=0.0, train=True)

        evaluation, zero = self.variant(both)(KEY, X)
        np.testing.assert_array_equal(evaluation, X)
        np.testing.assert_array_equal(zero, X)
        assert drop_path(None, X, rate=0.5, train=False) is X

    def test_traced_rate_under_vmap(self) -> None:
        rates = jnp.array([0.0, 0.5, 0.9])
        ys = jit(vmap(lambda r: drop_path(KEY, X, rate=r, train=True)))(rates)
        np.testing.assert_array_equal(ys[0], X)  # a traced 0 keeps everything
        for i, r in enumerate([0.5, 0.9]):
            np.testing.assert_allclose(ys[i + 1], drop_path(KEY, X, rate=r, train=True), rtol=1e-6)
        assert np.mean(np.all(np.asarray(ys[2]) == 0, axis=(1, 2))) > 0.5


def test_in_a_residual_block_the_dropped_examples_pass_through() -> None:
    block = Residual(serial(Dense(4), DropPath(0.5)))
    params, state, shape = block.init(KEY, (-1, 4))
    assert params.body[1] == () and shape == (-1, 4)
    x = jnp.asarray(np.random.default_rng(1).standard_normal((32, 4)), jnp.float32)
    y, _ = block.apply(params, state, x, key=jax.random.key(3), train=True)
    branch = np.asarray(x @ params.body[0].w + params.body[0].b)
    passed = np.all(np.asarray(y) == np.asarray(x), axis=1)
    assert 0 < passed.sum() < 32
    np.testing.assert_allclose(np.asarray(y)[~passed], np.asarray(x)[~passed] + 2 * branch[~passed],
                               rtol=1e-5, atol=1e-6)
    y_eval, _ = block.apply(params, state, x, train=False)
    np.testing.assert_allclose(np.asarray(y_eval), np.asarray(x) + branch, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(("call", "error", "name"), [
    (lambda: DropPath(1.0), ValueError, "rate"),
    (lambda: DropPath(_any("x")), TypeError, "rate"),
    (lambda: drop_path(KEY, X, rate=-0.1, train=True), ValueError, "rate"),
    (lambda: drop_path(KEY, X, rate=0.1, train=_any(1)), TypeError, "train"),
    (lambda: drop_path(None, X, rate=0.1, train=True), ValueError, "key"),
    (lambda: drop_path(KEY, jnp.asarray(1.0), rate=0.1, train=True), ValueError, "x"),
    (lambda: DropPath(0.2).apply((), (), X, train=True), ValueError, "key"),
])
def test_errors(call: object, error: type[Exception], name: str) -> None:
    with pytest.raises(error) as info:
        call()  # type: ignore[operator]  # a lambda from the table
    assert f"argument '{name}'" in str(info.value) and STYLE.match(str(info.value)), str(info.value)
