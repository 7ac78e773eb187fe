"""Clipping: global-norm property test (hypothesis), per-block and per-value hand checks, AGC
against a float64 NumPy unit-wise computation, jit/vmap."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _typed import jit, norm, vmap
from hypothesis import given, settings
from hypothesis import strategies as st

import functrain.optim as fo
from functrain._tree import tree_map
from functrain.typing import PyTree


# a fixed pool of leaf shapes (scalars, vectors, dense and conv kernels) keeps compilation cached
SHAPES = [(), (3,), (4, 2), (2, 2, 1, 3), (5,)]


@st.composite
def _trees(draw: st.DrawFn) -> dict[str, np.ndarray]:
    shapes = draw(st.lists(st.sampled_from(SHAPES), min_size=1, max_size=5))
    rng = np.random.default_rng(draw(st.integers(0, 2**31 - 1)))
    scale = draw(st.floats(1e-4, 1e4))
    return {f"leaf{i}": (scale * rng.normal(size=tuple(s))).astype(np.float32)
            for i, s in enumerate(shapes)}


def _norm(tree: dict[str, np.ndarray] | list[np.ndarray]) -> float:
    leaves = tree.values() if isinstance(tree, dict) else tree
    return float(np.sqrt(sum(np.sum(np.asarray(x, np.float64) ** 2) for x in leaves)))


@settings(max_examples=40, deadline=None)
@given(tree=_trees(), theta=st.floats(1e-3, 1e3))
def test_clip_by_global_norm_output_norm_is_min_of_norm_and_theta(
    tree: dict[str, np.ndarray], theta: float
) -> None:
    g = {k: jnp.asarray(v) for k, v in tree.items()}
    u, _ = fo.clip_by_global_norm(theta).update(g, fo.EmptyState())
    n = _norm(tree)
    np.testing.assert_allclose(_norm({k: np.asarray(v) for k, v in u.items()}), min(n, theta),
                               rtol=1e-5)
    if n <= theta:  # unchanged, bit for bit
        for k in tree:
            np.testing.assert_array_equal(np.asarray(u[k]), tree[k])
    else:  # same direction
        for k in tree:
            np.testing.assert_allclose(np.asarray(u[k], np.float64), tree[k] * theta / n,
                                       rtol=1e-5, atol=1e-6 * theta)


def test_clip_by_global_norm_zero_gradient_and_traced_theta() -> None:
    g = {"a": jnp.zeros(3)}
    u, _ = fo.clip_by_global_norm(1.0).update(g, fo.EmptyState())
    assert np.all(np.asarray(u["a"]) == 0.0)

    def clipped_norm(theta: jax.Array) -> jax.Array:
        out, _ = fo.clip_by_global_norm(theta).update({"x": jnp.asarray([3.0, 4.0])},
                                                      fo.EmptyState())
        n: jax.Array = norm(out["x"])
        return n

    np.testing.assert_allclose(jit(vmap(clipped_norm))(jnp.asarray([1.0, 5.0, 10.0])),
                               [1.0, 5.0, 5.0], rtol=1e-6)


def test_clip_by_block_norm_clips_each_leaf_separately() -> None:
    g = {"big": jnp.asarray([3.0, 4.0]), "small": jnp.asarray([0.3, 0.4])}
    u, _ = jit(fo.clip_by_block_norm(1.0).update)(g, fo.EmptyState())
    np.testing.assert_allclose(u["big"], [0.6, 0.8], rtol=1e-6)
    np.testing.assert_array_equal(u["small"], g["small"])
    u0, _ = fo.clip_by_block_norm(1.0).update({"z": jnp.zeros(2)}, fo.EmptyState())
    assert np.all(np.asarray(u0["z"]) == 0.0)


def test_clip_by_value() -> None:
    def f32(*xs: float) -> np.ndarray:
        return np.asarray(xs, np.float32)

    g = {"x": jnp.asarray(f32(-3.0, -0.5, 0.2, 2.0))}
    u, _ = fo.clip_by_value(max_delta=1.0).update(g, fo.EmptyState())
    np.testing.assert_array_equal(u["x"], f32(-1.0, -0.5, 0.2, 1.0))
    u, _ = fo.clip_by_value(min_value=-0.4, max_value=0.1).update(g, fo.EmptyState())
    np.testing.assert_array_equal(u["x"], f32(-0.4, -0.4, 0.1, 0.1))
    u, _ = fo.clip_by_value(min_value=0.0).update(g, fo.EmptyState())
    np.testing.assert_array_equal(u["x"], f32(0.0, 0.0, 0.2, 2.0))


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        ({}, r"clip_by_value: argument 'max_delta' must be a bound when min_value and max_value "
             r"are None, got None"),
        ({"max_delta": 1.0, "min_value": 0.0},
         r"clip_by_value: argument 'min_value' must be None when max_delta is given, got 0.0"),
        ({"max_delta": 0.0}, r"clip_by_value: argument 'max_delta' must be > 0, got 0.0"),
        ({"min_value": 1.0, "max_value": 0.0},
         r"clip_by_value: argument 'max_value' must be >= 1, got 0.0"),
    ],
)
def test_clip_by_value_bad_input(kwargs: dict[str, float], pattern: str) -> None:
    with pytest.raises(ValueError, match=pattern):
        fo.clip_by_value(**kwargs)


def _unit_norms(x: np.ndarray) -> np.ndarray:
    axes = {1: (0,), 2: (0,), 4: (0, 1, 2)}[x.ndim]
    return np.broadcast_to(np.sqrt(np.sum(x**2, axis=axes, keepdims=True)), x.shape)


def test_adaptive_grad_clip_matches_float64_unitwise_rule() -> None:
    rng = np.random.default_rng(3)
    params = {"dense": rng.normal(size=(5, 4)), "conv": rng.normal(size=(3, 3, 2, 4)),
              "bias": np.zeros(4)}
    grads = {"dense": rng.normal(size=(5, 4)) * np.array([0.01, 1.0, 0.05, 10.0]),
             "conv": rng.normal(size=(3, 3, 2, 4)), "bias": rng.normal(size=4)}
    lam, eps = 0.1, 1e-3
    tx = fo.adaptive_grad_clip(lam, eps)
    u, _ = jit(tx.update)(tree_map(jnp.asarray, grads), fo.EmptyState(),
                              tree_map(jnp.asarray, params))
    n_clipped = 0
    for k in params:
        g_n = _unit_norms(grads[k])
        max_n = lam * np.maximum(_unit_norms(params[k]), eps)
        expected = np.where(g_n < max_n, grads[k], grads[k] * max_n / np.maximum(g_n, 1e-6))
        n_clipped += int(np.sum(g_n >= max_n))
        np.testing.assert_allclose(np.asarray(u[k], np.float64), expected, rtol=1e-5, atol=1e-7)
    assert 0 < n_clipped < sum(x.size for x in params.values())  # both branches exercised


def test_unitwise_norm_rejects_ndim_above_5() -> None:
    with pytest.raises(ValueError, match=r"unitwise_norm: argument 'x' must be an array with "
                                         r"ndim <= 5, got an array of shape \(2, 2, 2, 2, 2, 2\)"):
        fo.unitwise_norm(jnp.ones((2,) * 6))


def test_clip_by_block_rms_bounds_each_leaf_rms_whatever_its_size() -> None:
    rng = np.random.default_rng(6)
    g = {"big": jnp.asarray(rng.normal(size=(50, 40)) * 3.0, jnp.float32),
         "small": jnp.asarray([0.1, -0.2], jnp.float32), "zero": jnp.zeros(3)}
    tx = fo.clip_by_block_rms(0.5)
    u, _ = jit(tx.update)(g, tx.init(g))
    big = np.asarray(g["big"], np.float64)
    rms = np.sqrt(np.mean(big**2))
    np.testing.assert_allclose(u["big"], big * 0.5 / rms, rtol=1e-5)  # clipped to rms 0.5
    np.testing.assert_array_equal(u["small"], g["small"])  # rms below 0.5: unchanged
    np.testing.assert_array_equal(u["zero"], 0.0)
    batch = tree_map(lambda x: jnp.stack([x, x / 100]), g)
    def update(updates: PyTree, state: fo.EmptyState) -> tuple[PyTree, fo.EmptyState]:
        return tx.update(updates, state)

    ub, _ = vmap(update, in_axes=(0, None))(batch, fo.EmptyState())
    np.testing.assert_allclose(ub["big"][1], big / 100, rtol=1e-5)  # rms 0.03: unchanged
    with pytest.raises(ValueError, match=r"^clip_by_block_rms: argument 'max_rms' must be > 0"):
        fo.clip_by_block_rms(0.0)
