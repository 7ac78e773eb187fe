"""Residual blocks: the zero-gamma start (issue 17) and its helper."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _typed import grad

from functrain import layers


def test_zero_init_last_bn_makes_every_block_start_as_its_shortcut() -> None:
    body = layers.serial(layers.Conv2D(4, 3), layers.BatchNorm(), layers.Relu, layers.Conv2D(4, 3),
                         layers.BatchNorm())
    block = layers.Residual(body, zero_init_last_bn=True)
    params, state, _ = block.init(jax.random.key(0), (-1, 6, 6, 4))
    x = jnp.asarray(np.random.default_rng(0).normal(size=(3, 6, 6, 4)), jnp.float32)
    for train in (False, True):  # batch statistics or running ones: the branch outputs its bias, 0
        y, _ = block.apply(params, state, x, train=train)
        np.testing.assert_array_equal(np.asarray(y), np.asarray(x))
    np.testing.assert_array_equal(np.asarray(params.body[1].scale), 1.0)  # only the last BN
    np.testing.assert_array_equal(np.asarray(params.body[4].scale), 0.0)
    plain, _, _ = layers.Residual(body).init(jax.random.key(0), (-1, 6, 6, 4))
    np.testing.assert_array_equal(np.asarray(plain.body[4].scale), 1.0)  # default: unchanged
    # the other leaves are the same draws as without the option
    for a, b in zip(jax.tree_util.tree_leaves(plain.body[:4]), jax.tree_util.tree_leaves(params.body[:4])):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_zero_init_last_bn_still_learns_the_branch() -> None:
    """The scale's gradient is not zero at zero (the branch's output is normalized, not zero)."""
    block = layers.Residual(layers.serial(layers.Dense(3), layers.BatchNorm()), zero_init_last_bn=True)
    params, state, _ = block.init(jax.random.key(1), (-1, 3))
    x = jnp.asarray(np.random.default_rng(1).normal(size=(8, 3)), jnp.float32)

    def loss(p: layers.ResidualParams) -> jax.Array:
        y, _ = block.apply(p, state, x, train=True)
        return jnp.sum(y * jnp.arange(3.0))

    grads = grad(loss)(params)
    assert float(jnp.abs(grads.body[1].scale).sum()) > 0


def test_zero_init_last_bn_needs_a_batch_norm_and_a_bool() -> None:
    block = layers.Residual(layers.Dense(3), zero_init_last_bn=True)
    with pytest.raises(ValueError, match="Residual: argument 'zero_init_last_bn' must be True only for a branch "
                                         "with a BatchNorm layer, got True; the branch's parameters hold no"):
        block.init(jax.random.key(0), (-1, 3))
    with pytest.raises(TypeError, match="Residual: argument 'zero_init_last_bn' must be a bool, got 1"):
        layers.Residual(layers.Dense(3), zero_init_last_bn=1)  # type: ignore[arg-type]  # on purpose
