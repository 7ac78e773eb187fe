"""Inverted dropout: identity cases, unbiasedness, drop fraction, keys, errors, jit/grad/vmap."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from functrain.layers import Dropout, dropout

KEY = jax.random.key(0)


def test_identity_for_rate_zero_and_eval() -> None:
    x = jax.random.normal(KEY, (4, 5))
    assert dropout(KEY, x, rate=0.0, train=True) is x
    assert dropout(KEY, x, rate=0.7, train=False) is x
    assert dropout(None, x, rate=0.7, train=False) is x
    np.testing.assert_array_equal(jax.jit(lambda z: dropout(KEY, z, rate=0.0, train=True))(x), x)


def test_kept_units_scaled_and_dropped_fraction() -> None:
    rate = 0.3
    x = jnp.full((200_000,), 2.0)
    y = np.asarray(dropout(KEY, x, rate=rate, train=True))
    kept = y != 0
    np.testing.assert_allclose(y[kept], 2.0 / (1 - rate), rtol=1e-6)
    frac = 1.0 - kept.mean()
    sd = math.sqrt(rate * (1 - rate) / x.size)
    assert abs(frac - rate) < 5 * sd


def test_mean_over_keys_equals_input() -> None:
    rate, n_keys = 0.4, 4000
    x = jax.random.normal(KEY, (16,))
    keys = jax.random.split(jax.random.key(1), n_keys)
    ys = jax.jit(jax.vmap(lambda k: dropout(k, x, rate=rate, train=True)))(keys)
    mean = np.asarray(ys, np.float64).mean(0)
    # Var of one draw: x^2 rate / (1 - rate); the mean of n draws has sd |x| sqrt(rate / (1 - rate) / n).
    sd = np.abs(np.asarray(x)) * math.sqrt(rate / (1 - rate) / n_keys)
    assert np.all(np.abs(mean - np.asarray(x)) < 5 * sd + 1e-6)


def test_different_keys_different_masks_same_key_same_mask() -> None:
    x = jnp.ones((1000,))
    k1, k2 = jax.random.split(KEY)
    a = dropout(k1, x, rate=0.5, train=True)
    b = dropout(k2, x, rate=0.5, train=True)
    assert not np.array_equal(np.asarray(a) == 0, np.asarray(b) == 0)
    np.testing.assert_array_equal(a, dropout(k1, x, rate=0.5, train=True))


@pytest.mark.parametrize("rate", [1.0, -0.1, 1.5, float("nan")])
def test_bad_rate_raises(rate: float) -> None:
    with pytest.raises(ValueError, match="dropout: argument 'rate' must be in \\[0, 1\\)"):
        dropout(KEY, jnp.ones(3), rate=rate, train=True)
    with pytest.raises(ValueError, match="dropout: argument 'rate'"):
        dropout(KEY, jnp.ones(3), rate=rate, train=False)
    with pytest.raises(ValueError, match="Dropout: argument 'rate' must be in"):
        Dropout(rate)


def test_train_without_key_raises() -> None:
    with pytest.raises(ValueError, match="dropout: train=True draws a random mask and needs a PRNG key"):
        dropout(None, jnp.ones(3), rate=0.5, train=True)


def test_traced_rate_and_grad() -> None:
    x = jnp.ones((50_000,))
    rates = jnp.array([0.1, 0.5, 0.8])
    fracs = jax.vmap(lambda r: jnp.mean(dropout(KEY, x, rate=r, train=True) == 0))(rates)
    np.testing.assert_allclose(fracs, rates, atol=0.01)
    # The gradient is the mask scaled by 1 / (1 - rate).
    g = jax.grad(lambda z: jnp.sum(dropout(KEY, z, rate=0.25, train=True)))(x)
    y = dropout(KEY, x, rate=0.25, train=True)
    np.testing.assert_allclose(g, y, rtol=1e-6)


def test_dropout_layer() -> None:
    layer = Dropout(0.5)
    params, state, out = layer.init(KEY, (-1, 10))
    assert (params, state, out) == ((), (), (-1, 10))
    x = jnp.ones((4, 10))
    y, s = layer.apply(params, state, x, key=KEY, train=True)
    np.testing.assert_array_equal(y, dropout(KEY, x, rate=0.5, train=True))
    assert s == ()
    np.testing.assert_array_equal(layer.apply(params, state, x, train=False)[0], x)
    with pytest.raises(ValueError, match=r"Dropout\(0.5\): train=True draws a random mask and needs a PRNG key"):
        layer.apply(params, state, x, train=True)
    with pytest.raises(TypeError, match="Dropout: argument 'rate' must be a float"):
        Dropout("0.5")  # type: ignore[arg-type]  # deliberately wrong type


def test_dropout_layer_rate_can_be_a_traced_hyperparameter() -> None:
    """A model built inside a vmapped run sweeps dropout rates in one program."""
    from functrain.layers import serial

    x = jnp.ones((4000,))

    def kept_fraction(rate: jax.Array) -> jax.Array:
        model = serial(Dropout(rate))
        y, _ = model.apply(((),), ((),), x[None], key=jax.random.key(0), train=True)
        return jnp.mean(y != 0)

    rates = jnp.array([0.0, 0.2, 0.5, 0.8])
    kept = jax.jit(jax.vmap(kept_fraction))(rates)
    np.testing.assert_allclose(np.asarray(kept), 1 - np.asarray(rates), atol=0.03)
    with pytest.raises(ValueError, match="Dropout: argument 'rate' must be in"):
        Dropout(jnp.float32(1.5))
    with pytest.raises(ValueError, match="must be a scalar"):
        Dropout(jnp.zeros(2))
