"""Decoupled weight decay and its masks (with and without jit, under vmap)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _typed import jit, vmap

import functrain.optim as fo
from functrain._tree import tree_leaves_with_path, tree_map
from functrain.optim import schedules
from functrain.typing import PyTree

PARAMS = {"dense": {"w": jnp.full((2, 3), 2.0), "b": jnp.full((3,), 2.0)},
          "conv": (jnp.full((3, 3, 1, 2), 2.0),), "scale": jnp.full((3,), 2.0)}


def _zeros() -> PyTree:
    return tree_map(jnp.zeros_like, PARAMS)


def _decayed(mask: object, wd: float = 0.5) -> dict[str, float]:
    tx = fo.add_decayed_weights(wd, mask)
    u, _ = jit(tx.update)(_zeros(), tx.init(PARAMS), PARAMS)
    return {k: float(v.ravel()[0]) for k, v in tree_leaves_with_path(u)}


def test_default_decay_mask_selects_matrices_and_kernels() -> None:
    mask = fo.default_decay_mask(PARAMS)
    assert mask == {"dense": {"w": True, "b": False}, "conv": (True,), "scale": False}
    # the library's one weight rule: floating arrays with ndim >= 2 (not integer tables)
    odd = {"table": jnp.ones((2, 2), jnp.int32), "bf16": jnp.ones((2, 2), jnp.bfloat16),
           "scalar": jnp.ones(())}
    assert fo.default_decay_mask(odd) == {"bf16": True, "scalar": False, "table": False}
    assert all(type(flag) is bool for flag in jax.tree_util.tree_leaves(mask))


def test_mask_none_decays_every_leaf() -> None:
    assert set(_decayed(None).values()) == {1.0}  # 0 + 0.5 * 2


def test_function_mask_and_default_mask() -> None:
    d = _decayed(fo.default_decay_mask)
    assert d == {"['conv'][0]": 1.0, "['dense']['b']": 0.0, "['dense']['w']": 1.0,
                 "['scale']": 0.0}


def test_pytree_mask_prefix_and_bool_arrays() -> None:
    d = _decayed({"dense": False, "conv": (True,), "scale": jnp.asarray(True)})
    assert d == {"['conv'][0]": 1.0, "['dense']['b']": 0.0, "['dense']['w']": 0.0,
                 "['scale']": 1.0}
    # an elementwise boolean mask for one leaf
    tx = fo.add_decayed_weights(0.5, {"dense": {"w": True, "b": jnp.asarray([True, False, True])},
                                      "conv": (False,), "scale": False})
    u, _ = tx.update(_zeros(), tx.init(PARAMS), PARAMS)
    np.testing.assert_array_equal(u["dense"]["b"], [1.0, 0.0, 1.0])


def test_bad_masks_raise_type_error() -> None:
    tx = fo.add_decayed_weights(0.5, {"dense": True})
    with pytest.raises(TypeError, match=r"add_decayed_weights: argument 'mask' must be a pytree "
                                        r"with the structure of the params"):
        tx.update(_zeros(), tx.init(PARAMS), PARAMS)
    tx = fo.add_decayed_weights(0.5, {"dense": 1.0, "conv": (True,), "scale": True})
    with pytest.raises(TypeError, match=r"add_decayed_weights: argument 'mask' must be a pytree "
                                        r"of bools or boolean arrays, got 1.0"):
        tx.update(_zeros(), tx.init(PARAMS), PARAMS)


class TestWeightDecay(chex.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    def test_scheduled_weight_decay_counts_steps(self) -> None:
        tx = fo.add_decayed_weights(schedules.exponential_decay(1.0, 0.5), mask=None)
        update = self.variant(tx.update)
        s = tx.init(PARAMS)
        for t in range(3):
            u, s = update(_zeros(), s, PARAMS)
            np.testing.assert_allclose(u["scale"], 2.0 * 0.5**t)
        assert int(s.step) == 3

    @chex.variants(with_jit=True, without_jit=True)
    def test_weight_decay_zero_passes_the_updates_through_and_counts(self) -> None:
        g = tree_map(jnp.ones_like, PARAMS)
        tx = fo.add_decayed_weights(0.0)
        u, s = self.variant(tx.update)(g, tx.init(PARAMS), PARAMS)
        for a, b in zip(jax.tree_util.tree_leaves(u), jax.tree_util.tree_leaves(g), strict=True):
            np.testing.assert_array_equal(a, b)
        assert int(s.step) == 1


def test_weight_decay_zero_is_a_no_op_and_traced_decay_works_under_vmap() -> None:
    g = tree_map(jnp.ones_like, PARAMS)
    tx = fo.add_decayed_weights(0.0)
    u, _ = tx.update(g, tx.init(PARAMS), PARAMS)
    assert u is g

    def decayed_w(wd: jax.Array) -> jax.Array:
        tx = fo.add_decayed_weights(wd, fo.default_decay_mask)
        out, _ = tx.update(_zeros(), tx.init(PARAMS), PARAMS)
        w: jax.Array = out["dense"]["w"][0, 0] + out["scale"][0]
        return w

    np.testing.assert_allclose(jit(vmap(decayed_w))(jnp.asarray([0.0, 0.1, 1.0])),
                               [0.0, 0.2, 2.0], rtol=1e-6)


def test_equinox_module_params_with_default_mask() -> None:
    import equinox as eqx

    model = eqx.nn.Linear(3, 2, key=jax.random.key(0))
    partition: Callable[..., tuple[Any, Any]] = eqx.partition  # pyright: ignore[reportUnknownMemberType, reportUnknownVariableType]  # untyped
    params, _ = partition(model, eqx.is_array)
    tx = fo.adamw(0.1, weight_decay=0.5)
    zero = tree_map(jnp.zeros_like, params)
    u, _ = tx.update(zero, tx.init(params), params)
    np.testing.assert_allclose(u.weight, -0.05 * model.weight, rtol=1e-6)
    np.testing.assert_array_equal(u.bias, np.zeros(2))
