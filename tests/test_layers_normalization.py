"""Batch and layer normalization against closed forms; running statistics with and without jit
(chex variants); axis_name, ensembles and examples under vmap; gradients; errors."""

from __future__ import annotations

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _typed import grad, jit, vmap

from functrain import initializers
from functrain.layers import (
    BatchNorm,
    BatchNormParams,
    BatchNormState,
    LayerNorm,
    LayerNormParams,
    batch_norm,
    init_batch_norm,
    init_layer_norm,
    layer_norm,
)

KEY = jax.random.key(0)


def _features(shape: tuple[int, ...], seed: int = 0) -> jax.Array:
    """Inputs with per-feature offsets and scales far from (0, 1) (NumPy draws: no compile per shape)."""
    x = np.random.default_rng(seed).standard_normal(shape)
    c = shape[-1]
    return jnp.asarray(x * np.arange(1.0, c + 1.0) + 10.0 * np.arange(c), jnp.float32)


def _bn_reference(x: np.ndarray, scale: np.ndarray, bias: np.ndarray, eps: float = 1e-5) -> np.ndarray:
    """float64 batch normalization with the batch's biased statistics over every axis but the last."""
    x = np.asarray(x, np.float64).reshape(-1, x.shape[-1])
    out: np.ndarray = (x - x.mean(0)) / np.sqrt(x.var(0) + eps) * scale + bias
    return out


class TestBatchNorm(chex.TestCase):
    """Training and evaluation, the running statistics and the layer, with and without jit."""

    @chex.variants(with_jit=True, without_jit=True)
    def test_train_normalizes_each_feature(self) -> None:
        x = _features((8, 4, 3, 5))
        params = BatchNormParams(scale=jnp.arange(1.0, 6.0), bias=jnp.full((5,), -3.0))
        _, state = init_batch_norm(KEY, 5)

        def train(p: BatchNormParams, s: BatchNormState, xx: jax.Array) -> tuple[jax.Array, BatchNormState]:
            return batch_norm(p, s, xx, train=True)

        y, _ = self.variant(train)(params, state, x)
        ref = _bn_reference(np.asarray(x), np.arange(1.0, 6.0), np.full(5, -3.0))
        np.testing.assert_allclose(np.asarray(y).reshape(-1, 5), ref, rtol=1e-4, atol=1e-4)

    @chex.variants(with_jit=True, without_jit=True)
    def test_running_stats_closed_form_and_eval(self) -> None:
        params, state = init_batch_norm(KEY, 3)
        momentum, steps = 0.8, 4
        batches = [_features((10, 2, 3), seed=k) * (1 + k) + k for k in range(steps)]

        def step(s: BatchNormState, xb: jax.Array) -> BatchNormState:
            return batch_norm(params, s, xb, train=True, momentum=momentum)[1]

        step = self.variant(step)
        for xb in batches:
            state = step(state, xb)
        # Closed form: mean_K = m^K mean_0 + sum_k (1 - m) m^(K - k) mu_k (k = 1..K); var likewise with the
        # unbiased batch variance n / (n - 1) * sigma_k^2 and var_0 = 1.
        mean_ref = np.zeros(3)
        var_ref = np.ones(3) * momentum**steps
        for k, xb in enumerate(batches, start=1):
            xb64 = np.asarray(xb, np.float64).reshape(-1, 3)
            w = (1 - momentum) * momentum ** (steps - k)
            mean_ref += w * xb64.mean(0)
            var_ref += w * xb64.var(0, ddof=1)
        np.testing.assert_allclose(state.mean, mean_ref, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(state.var, var_ref, rtol=1e-5)

        # Evaluation uses the running statistics (and leaves them unchanged).
        p2 = BatchNormParams(scale=jnp.array([1.0, 2.0, 0.5]), bias=jnp.array([0.0, 1.0, -1.0]))

        def evaluate(s: BatchNormState, xx: jax.Array) -> tuple[jax.Array, BatchNormState]:
            return batch_norm(p2, s, xx, train=False)

        x = _features((7, 3), seed=99)
        y, same = self.variant(evaluate)(state, x)
        chex.assert_trees_all_equal(same, state)
        ref = (np.asarray(x, np.float64) - mean_ref) / np.sqrt(var_ref + 1e-5) * np.array([1.0, 2.0, 0.5]) \
            + np.array([0.0, 1.0, -1.0])
        np.testing.assert_allclose(np.asarray(y), ref, rtol=1e-4, atol=1e-4)

    @chex.variants(with_jit=True, without_jit=True)
    def test_layer_matches_the_op(self) -> None:
        layer = BatchNorm(momentum=0.5)
        params, state, out = layer.init(KEY, (-1, 4, 4, 2))
        assert out == (-1, 4, 4, 2)
        assert isinstance(params, BatchNormParams) and isinstance(state, BatchNormState)
        x = _features((3, 4, 4, 2))

        def train(s: BatchNormState, xx: jax.Array) -> tuple[jax.Array, BatchNormState]:
            y, new = layer.apply(params, s, xx, train=True)
            return y, new

        y, new_state = self.variant(train)(state, x)
        y_ref, s_ref = batch_norm(params, state, x, train=True, momentum=0.5)
        np.testing.assert_allclose(y, y_ref, rtol=1e-6)
        chex.assert_trees_all_close(new_state, s_ref, rtol=1e-6)


def test_batch_norm_same_state_object_in_evaluation() -> None:
    params, state = init_batch_norm(KEY, 3)
    _, same = batch_norm(params, state, jnp.ones((2, 3)), train=False)
    assert same is state


def test_batch_norm_axis_name_under_vmap_equals_whole_batch() -> None:
    params = BatchNormParams(scale=jnp.array([1.0, 2.0, 3.0]), bias=jnp.array([0.5, 0.0, -0.5]))
    _, state = init_batch_norm(KEY, 3)
    x = _features((4, 6, 2, 2, 3))  # 4 shards of 6 images
    flat = x.reshape(-1, 3)

    def shard(xs: jax.Array) -> tuple[jax.Array, BatchNormState]:
        return batch_norm(params, state, xs, train=True, axis_name="shards")

    def local(xs: jax.Array) -> jax.Array:
        return batch_norm(params, state, xs, train=True)[0]

    def example(xi: jax.Array) -> tuple[jax.Array, BatchNormState]:
        return batch_norm(params, state, xi, train=True, axis_name="b")

    @jit
    def run(xx: jax.Array) -> tuple[tuple[jax.Array, BatchNormState], jax.Array, tuple[jax.Array, BatchNormState],
                                    tuple[jax.Array, BatchNormState]]:
        return (vmap(shard, axis_name="shards")(xx), vmap(local)(xx),
                vmap(example, axis_name="b")(xx.reshape(-1, 3)), batch_norm(params, state, xx.reshape(-1, 3),
                                                                             train=True))

    (ys, ss), ys_local, (ye, se), (whole_y, whole_s) = run(x)
    ref = _bn_reference(np.asarray(flat), np.array([1.0, 2.0, 3.0]), np.array([0.5, 0.0, -0.5]))
    np.testing.assert_allclose(whole_y, ref, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(ys.reshape(-1, 3), whole_y, rtol=1e-5, atol=1e-5)
    for i in range(4):
        np.testing.assert_allclose(ss.mean[i], whole_s.mean, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(ss.var[i], whole_s.var, rtol=1e-5)
    # Without axis_name, each shard uses its own statistics (a different result).
    assert not np.allclose(ys_local.reshape(-1, 3), whole_y, atol=1e-3)
    # vmap over single examples (equinox style): x of shape (C,) per example.
    np.testing.assert_allclose(ye, whole_y, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(se.var[0], whole_s.var, rtol=1e-5)


def test_batch_norm_gradient_matches_closed_form() -> None:
    x = _features((16, 3))
    params, state = init_batch_norm(KEY, 3)
    r = jnp.asarray(np.random.default_rng(5).standard_normal((16, 3)), jnp.float32)

    def loss(p: BatchNormParams, xx: jax.Array) -> jax.Array:
        return jnp.sum(batch_norm(p, state, xx, train=True)[0] * r)

    gp, g = jit(grad(loss, argnums=(0, 1)))(params, x)
    # dL/dx = (1/sigma) (r - mean(r) - x_hat mean(r x_hat)), gamma = 1, per feature.
    xn = np.asarray(x, np.float64)
    rn = np.asarray(r, np.float64)
    sigma = np.sqrt(xn.var(0) + 1e-5)
    xh = (xn - xn.mean(0)) / sigma
    ref = (rn - rn.mean(0) - xh * (rn * xh).mean(0)) / sigma
    np.testing.assert_allclose(np.asarray(g), ref, rtol=1e-3, atol=1e-5)
    # Gradients with respect to scale and bias: sum(r x_hat) and sum(r).
    np.testing.assert_allclose(gp.scale, (rn * xh).sum(0), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(gp.bias, rn.sum(0), rtol=1e-5, atol=1e-5)


def test_batch_norm_ensemble_vmap() -> None:
    keys = jax.random.split(KEY, 3)
    x = _features((10, 4))

    def member(k: jax.Array) -> tuple[BatchNormParams, jax.Array, BatchNormState]:
        p, s = init_batch_norm(k, 4, scale_init=initializers.uniform(1.0))
        y, new = batch_norm(p, s, x, train=True)
        return p, y, new

    params, ys, ss = jit(vmap(member))(keys)
    assert not np.allclose(params.scale[0], params.scale[1])  # one draw per seed
    xn = np.asarray(x, np.float64)
    for i in range(3):
        ref = _bn_reference(xn, np.asarray(params.scale[i]), np.asarray(params.bias[i]))
        np.testing.assert_allclose(ys[i], ref, rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(ss.var[i], 0.9 + 0.1 * xn.var(0, ddof=1), rtol=1e-5)


def test_batch_norm_errors() -> None:
    params, state = init_batch_norm(KEY, 3)
    with pytest.raises(ValueError, match=r"^batch_norm: argument 'x' must be an array of shape \(\*, 3\), got a "
                                         r"traced array of shape \(4, 5\)"):
        jit(functools.partial(batch_norm, params, state, train=True))(jnp.ones((4, 5)))
    with pytest.raises(ValueError, match=r"^batch_norm: argument 'momentum' must be in \[0, 1\], got 1.5$"):
        batch_norm(params, state, jnp.ones((4, 3)), train=True, momentum=1.5)
    with pytest.raises(ValueError, match=r"^batch_norm: argument 'eps' must be a finite number > 0, got 0.0$"):
        batch_norm(params, state, jnp.ones((4, 3)), train=True, eps=0.0)
    with pytest.raises(TypeError, match=r"^batch_norm: argument 'train' must be a bool, got 'yes'$"):
        batch_norm(params, state, jnp.ones((4, 3)), train="yes")  # type: ignore[arg-type]  # deliberately wrong
    with pytest.raises(ValueError, match=r"^batch_norm: argument 'x' must be an array with at least 2 values per "
                                         r"feature in training .*, got an array of shape \(1, 3\)"):
        batch_norm(params, state, jnp.ones((1, 3)), train=True)
    with pytest.raises(ValueError, match=r"^batch_norm: argument 'state.mean' must be an array of shape \(3,?\), "
                                         r"got an array of shape \(2,\)"):
        batch_norm(params, BatchNormState(jnp.zeros(2), jnp.ones(2)), jnp.ones((4, 3)), train=False)
    with pytest.raises(ValueError, match=r"^batch_norm: argument 'params.bias' must be an array of shape \(3,?\)"):
        batch_norm(BatchNormParams(params.scale, jnp.zeros(4)), state, jnp.ones((4, 3)), train=False)
    with pytest.raises(ValueError, match=r"^init_batch_norm: argument 'num_features' must be an int >= 1, got 0$"):
        init_batch_norm(KEY, 0)
    layer = BatchNorm(momentum=0.5)
    lp, ls, _ = layer.init(KEY, (-1, 4, 4, 2))
    with pytest.raises(ValueError, match=r"^BatchNorm: argument 'x' must be an array of shape \(\*, \*, \*, 2\), "
                                         r"got an array of shape \(3, 4, 4, 3\)"):
        layer.apply(lp, ls, jnp.ones((3, 4, 4, 3)), train=False)
    with pytest.raises(ValueError, match=r"^BatchNorm: argument 'momentum' must be in \[0, 1\], got -0.1$"):
        BatchNorm(momentum=-0.1)
    with pytest.raises(ValueError, match=r"^BatchNorm: argument 'input_shape' must be a shape of rank >= 2"):
        layer.init(KEY, (-1,))


def test_layer_norm_closed_form_and_layer() -> None:
    x = _features((4, 3, 6))
    params = LayerNormParams(scale=jnp.linspace(0.5, 2.0, 6), bias=jnp.linspace(-1.0, 1.0, 6))
    xn = np.asarray(x, np.float64)
    ref = (xn - xn.mean(-1, keepdims=True)) / np.sqrt(xn.var(-1, keepdims=True) + 1e-5)
    ref = ref * np.linspace(0.5, 2.0, 6) + np.linspace(-1.0, 1.0, 6)
    layer = LayerNorm()
    lp, ls, out = layer.init(KEY, (-1, 3, 6))
    assert out == (-1, 3, 6) and ls == ()
    np.testing.assert_array_equal(np.asarray(lp.scale), 1.0)
    np.testing.assert_array_equal(np.asarray(lp.bias), 0.0)

    @jit
    def run(xx: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
        y = layer_norm(params, xx)
        y_layer = layer.apply(params, (), xx, train=True)[0]
        # Under vmap over examples; and its gradient sums to zero along the features
        # (shifting all features of an example leaves the output unchanged).
        y_vmap = vmap(lambda xi: layer_norm(params, xi))(xx)
        g = grad(lambda z: jnp.sum(layer_norm(params, z) * jnp.arange(6.0)))(xx)
        return y, y_layer, y_vmap, g

    y, y_layer, y_vmap, g = run(x)
    np.testing.assert_allclose(np.asarray(y), ref, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(y_layer, y, rtol=1e-6)
    np.testing.assert_allclose(y_vmap, y, rtol=1e-6)
    np.testing.assert_allclose(np.asarray(g).sum(-1), 0.0, atol=1e-4)
    p0 = init_layer_norm(KEY, 6)
    np.testing.assert_array_equal(np.asarray(p0.scale), 1.0)
    with pytest.raises(ValueError, match=r"^layer_norm: argument 'x' must be an array of shape \(\*, 6\), got an "
                                         r"array of shape \(4, 5\)"):
        layer_norm(params, jnp.ones((4, 5)))
    with pytest.raises(ValueError, match=r"^LayerNorm: argument 'eps' must be a finite number > 0, got -1.0$"):
        LayerNorm(eps=-1.0)
    with pytest.raises(ValueError, match=r"^layer_norm: argument 'params.scale' must be an array of rank 1"):
        layer_norm(LayerNormParams(jnp.ones((2, 6)), jnp.ones(6)), x)


def test_case_6_integer_inputs_are_promoted_to_the_parameter_dtype() -> None:
    """Issue 12 case 6: uint8/int32/bool inputs gave integer outputs (0s and 1s); they are promoted
    to the parameter dtype as dense and conv promote them, with the values of the float input."""
    pixels = np.random.default_rng(0).integers(0, 256, (6, 4))
    as_float = jnp.asarray(pixels, jnp.float32)
    bn = BatchNorm()
    bp, bs, _ = bn.init(KEY, (-1, 4))
    for dtype in (jnp.uint8, jnp.int32, jnp.int8):
        x = jnp.asarray(pixels % 128, dtype) if dtype == jnp.int8 else jnp.asarray(pixels, dtype)
        ref_x = x.astype(jnp.float32)
        for train in (True, False):
            y, s = bn.apply(bp, bs, x, train=train)
            y_ref, s_ref = bn.apply(bp, bs, ref_x, train=train)
            assert y.dtype == jnp.float32, (dtype, train)
            np.testing.assert_allclose(y, y_ref, rtol=1e-6)
            chex.assert_trees_all_close(s, s_ref)
        y16, _ = batch_norm(*init_batch_norm(KEY, 4, dtype=jnp.bfloat16), x, train=True)
        assert y16.dtype == jnp.bfloat16
        ln = layer_norm(init_layer_norm(KEY, 4), x)
        assert ln.dtype == jnp.float32
        np.testing.assert_allclose(ln, layer_norm(init_layer_norm(KEY, 4), ref_x), rtol=1e-6)
        ln_layer, _ = LayerNorm().apply(init_layer_norm(KEY, 4), (), x, train=False)
        assert ln_layer.dtype == jnp.float32
    assert float(jnp.std(bn.apply(bp, bs, jnp.asarray(pixels, jnp.uint8), train=True)[0])) > 0.5
    assert batch_norm(bp, bs, jnp.asarray(pixels > 100), train=True)[0].dtype == jnp.float32
    # Floating inputs keep their dtype (mixed precision: bfloat16 activations, float32 params).
    assert batch_norm(bp, bs, as_float.astype(jnp.bfloat16), train=True)[0].dtype == jnp.bfloat16
    assert layer_norm(init_layer_norm(KEY, 4), as_float.astype(jnp.float16)).dtype == jnp.float16
