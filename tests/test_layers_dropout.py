"""Inverted dropout: identity cases, unbiasedness, drop fraction, keys, errors; with and without
jit (chex variants) and under vmap (over keys, over rates)."""

from __future__ import annotations

import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _typed import grad, jit

from functrain.layers import Dropout, dropout, serial

KEY = jax.random.key(0)


def test_identity_for_rate_zero_and_eval() -> None:
    x = jnp.asarray(np.random.default_rng(0).standard_normal((4, 5)), jnp.float32)
    assert dropout(KEY, x, rate=0.0, train=True) is x
    assert dropout(KEY, x, rate=0.7, train=False) is x
    assert dropout(None, x, rate=0.7, train=False) is x
    no = np.bool_(False)
    assert dropout(KEY, x, rate=0.7, train=no) is x  # type: ignore[arg-type]  # NumPy bools are accepted at run time


class TestDropout(chex.TestCase):
    """The same properties with and without ``jax.jit`` (the key is traced under jit)."""

    @chex.variants(with_jit=True, without_jit=True)
    def test_kept_units_scaled_and_dropped_fraction(self) -> None:
        rate = 0.3

        def drop(key: jax.Array, x: jax.Array) -> jax.Array:
            return dropout(key, x, rate=rate, train=True)

        x = jnp.full((100_000,), 2.0)
        y = np.asarray(self.variant(drop)(KEY, x))
        kept = y != 0
        np.testing.assert_allclose(y[kept], 2.0 / (1 - rate), rtol=1e-6)
        sd = math.sqrt(rate * (1 - rate) / x.size)
        assert abs((1.0 - kept.mean()) - rate) < 5 * sd

    @chex.variants(with_jit=True, without_jit=True)
    def test_same_key_same_mask_different_keys_differ(self) -> None:
        def drop(key: jax.Array, x: jax.Array) -> jax.Array:
            return dropout(key, x, rate=0.5, train=True)

        x = jnp.ones((1000,))
        k1, k2 = jax.random.split(KEY)
        a, b = self.variant(drop)(k1, x), self.variant(drop)(k2, x)
        assert not np.array_equal(np.asarray(a) == 0, np.asarray(b) == 0)
        np.testing.assert_array_equal(a, dropout(k1, x, rate=0.5, train=True))

    @chex.variants(with_jit=True, without_jit=True)
    def test_rate_zero_and_eval_are_the_identity(self) -> None:
        def both(key: jax.Array, x: jax.Array) -> tuple[jax.Array, jax.Array]:
            return dropout(key, x, rate=0.0, train=True), dropout(key, x, rate=0.7, train=False)

        x = jnp.arange(6.0)
        zero_rate, evaluation = self.variant(both)(KEY, x)
        np.testing.assert_array_equal(zero_rate, x)
        np.testing.assert_array_equal(evaluation, x)

    @chex.variants(with_jit=True, without_jit=True)
    def test_gradient_is_the_scaled_mask(self) -> None:
        def value_and_grad(x: jax.Array) -> tuple[jax.Array, jax.Array]:
            y = dropout(KEY, x, rate=0.25, train=True)
            def total(z: jax.Array) -> jax.Array:
                return jnp.sum(dropout(KEY, z, rate=0.25, train=True))

            g = grad(total)(x)
            return y, g

        y, g = self.variant(value_and_grad)(jnp.ones((1000,)))
        np.testing.assert_allclose(g, y, rtol=1e-6)  # d(m x / (1 - r)) / dx = m / (1 - r) = y at x = 1
        assert set(np.unique(np.asarray(g)).tolist()) == {0.0, float(np.float32(1 / 0.75))}

    @chex.variants(with_jit=True, without_jit=True)
    def test_layer_matches_the_op(self) -> None:
        layer = Dropout(0.5)

        def train_and_eval(key: jax.Array, x: jax.Array) -> tuple[jax.Array, jax.Array]:
            y, _ = layer.apply((), (), x, key=key, train=True)
            y_eval, _ = layer.apply((), (), x, train=False)
            return y, y_eval

        x = jnp.ones((4, 10))
        y, y_eval = self.variant(train_and_eval)(KEY, x)
        np.testing.assert_array_equal(y, dropout(KEY, x, rate=0.5, train=True))
        np.testing.assert_array_equal(y_eval, x)


def test_mean_over_keys_equals_input_under_vmap() -> None:
    rate, n_keys = 0.4, 4000
    x = jnp.asarray(np.random.default_rng(1).standard_normal(16), jnp.float32)
    keys = jax.random.split(jax.random.key(1), n_keys)
    def draw(k: jax.Array) -> jax.Array:
        return dropout(k, x, rate=rate, train=True)

    ys = jit(jax.vmap(draw))(keys)
    mean = np.asarray(ys, np.float64).mean(0)
    # Var of one draw: x^2 rate / (1 - rate); the mean of n draws has sd |x| sqrt(rate / (1 - rate) / n).
    sd = np.abs(np.asarray(x)) * math.sqrt(rate / (1 - rate) / n_keys)
    assert np.all(np.abs(mean - np.asarray(x)) < 5 * sd + 1e-6)


def test_traced_rates_under_vmap() -> None:
    x = jnp.ones((20_000,))
    rates = jnp.array([0.0, 0.1, 0.5, 0.8])

    def dropped_fraction(rate: jax.Array) -> tuple[jax.Array, jax.Array]:
        op = jnp.mean(dropout(KEY, x, rate=rate, train=True) == 0)
        # A model built inside a vmapped run sweeps dropout rates in one program.
        y, _ = serial(Dropout(rate)).apply(((),), ((),), x[None], key=KEY, train=True)
        return op, jnp.mean(y == 0)

    fracs, layer_fracs = jit(jax.vmap(dropped_fraction))(rates)
    np.testing.assert_allclose(fracs, rates, atol=0.02)
    np.testing.assert_allclose(layer_fracs, rates, atol=0.02)


@pytest.mark.parametrize("rate", [1.0, -0.1, 1.5, float("nan")])
def test_bad_rate_raises(rate: float) -> None:
    with pytest.raises(ValueError, match=r"^dropout: argument 'rate' must be in \[0, 1\), got "):
        dropout(KEY, jnp.ones(3), rate=rate, train=True)
    with pytest.raises(ValueError, match=r"^dropout: argument 'rate' must be in \[0, 1\)"):
        dropout(KEY, jnp.ones(3), rate=rate, train=False)
    with pytest.raises(ValueError, match=r"^Dropout: argument 'rate' must be in \[0, 1\)"):
        Dropout(rate)


def test_other_argument_errors() -> None:
    with pytest.raises(ValueError, match=r"^dropout: argument 'key' must be a PRNG key when train=True .*, "
                                         r"got None$"):
        dropout(None, jnp.ones(3), rate=0.5, train=True)
    with pytest.raises(TypeError, match=r"^dropout: argument 'train' must be a bool, got 1$"):
        dropout(KEY, jnp.ones(3), rate=0.5, train=1)  # type: ignore[arg-type]  # deliberately wrong
    with pytest.raises(ValueError, match=r"^Dropout: argument 'key' must be a PRNG key when train=True"):
        Dropout(0.5).apply((), (), jnp.ones((2, 3)), train=True)
    with pytest.raises(TypeError, match=r"^Dropout: argument 'rate' must be a number, got '0.5'$"):
        Dropout("0.5")  # type: ignore[arg-type]  # deliberately wrong type
    with pytest.raises(ValueError, match=r"^Dropout: argument 'rate' must be in \[0, 1\), got 1.5 "):
        Dropout(jnp.float32(1.5))
    with pytest.raises(ValueError, match=r"^Dropout: argument 'rate' must be a scalar, got an array of shape \(2,\)"):
        Dropout(jnp.zeros(2))
    params, state, out = Dropout(0.5).init(KEY, (-1, 10))
    assert (params, state, out) == ((), (), (-1, 10))
