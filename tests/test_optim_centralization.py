"""Gradient centralization: zero-mean weight-vector gradients per output unit for dense (in, out)
and conv HWIO kernels (with and without jit, under vmap), other leaves unchanged, a projection."""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _typed import jit

from functrain import _tree
import functrain.optim as fo

RNG = np.random.default_rng(5)
GRADS = {"dense": jnp.asarray(RNG.normal(size=(6, 4)), jnp.float32),
         "conv": jnp.asarray(RNG.normal(size=(3, 3, 2, 5)), jnp.float32),
         "bias": jnp.asarray(RNG.normal(size=(4,)), jnp.float32)}


class TestCentralize(chex.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    def test_each_output_unit_has_zero_mean_gradient(self) -> None:
        tx = fo.centralize()
        u, _ = self.variant(tx.update)(GRADS, tx.init(GRADS))
        np.testing.assert_allclose(np.mean(u["dense"], axis=0), 0.0, atol=1e-6)  # columns
        np.testing.assert_allclose(np.mean(u["conv"], axis=(0, 1, 2)), 0.0, atol=1e-6)
        np.testing.assert_array_equal(u["bias"], GRADS["bias"])
        g = np.asarray(GRADS["dense"], np.float64)  # Yong et al. 2020, eq. 3
        np.testing.assert_allclose(u["dense"], g - g.mean(axis=0, keepdims=True), rtol=1e-5,
                                   atol=1e-6)
        again, _ = tx.update(u, tx.init(u))  # a projection: applying it twice changes nothing
        np.testing.assert_allclose(again["conv"], u["conv"], atol=1e-6)

    def test_output_axis_zero_is_the_pytorch_layout(self) -> None:
        tx = fo.centralize(output_axis=0)
        u, _ = tx.update(GRADS, tx.init(GRADS))
        np.testing.assert_allclose(np.mean(u["dense"], axis=1), 0.0, atol=1e-6)

    def test_vmap_over_gradient_batches(self) -> None:
        tx = fo.centralize()
        batch = _tree.tree_map(lambda x: jnp.stack([x, 2 * x]), GRADS)
        u, _ = jit(jax.vmap(tx.update, in_axes=(0, None)))(batch, fo.EmptyState())
        single, _ = tx.update(GRADS, fo.EmptyState())
        np.testing.assert_allclose(u["conv"][1], 2 * single["conv"], rtol=1e-5, atol=1e-6)


def test_bad_arguments() -> None:
    with pytest.raises(TypeError, match=r"^centralize: argument 'output_axis' must be an int"):
        fo.centralize(output_axis=1.0)  # type: ignore[arg-type]  # the error tested
