"""Batch, layer and weight normalization against closed forms; axis_name; jit/grad/vmap."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from functrain import initializers
from functrain.layers import (
    BatchNorm,
    BatchNormParams,
    BatchNormState,
    LayerNorm,
    LayerNormParams,
    WeightNormConv2D,
    WeightNormDense,
    WeightNormParams,
    batch_norm,
    conv2d,
    dense,
    init_batch_norm,
    init_conv2d,
    init_dense,
    init_layer_norm,
    init_weight_norm,
    layer_norm,
    weight_norm,
    weight_norm_conv1d,
    weight_norm_conv2d,
    weight_norm_dense,
)
from functrain.layers import ConvParams, DenseParams, conv1d

KEY = jax.random.key(0)


def _features(shape: tuple[int, ...], seed: int = 0) -> jax.Array:
    """Inputs with per-feature offsets and scales far from (0, 1)."""
    x = jax.random.normal(jax.random.key(seed), shape)
    c = shape[-1]
    return x * jnp.arange(1.0, c + 1.0) + 10.0 * jnp.arange(c)


@pytest.mark.parametrize("shape", [(64, 5), (8, 4, 3, 5)])
def test_batch_norm_train_normalizes_each_feature(shape: tuple[int, ...]) -> None:
    x = _features(shape)
    params, state = init_batch_norm(KEY, 5)
    y, _ = batch_norm(params, state, x, train=True)
    axes = tuple(range(len(shape) - 1))
    yn = np.asarray(y, np.float64)
    np.testing.assert_allclose(yn.mean(axes), 0.0, atol=1e-5)
    # Variance of the normalized values is var / (var + eps).
    var = np.asarray(x, np.float64).var(axes)
    np.testing.assert_allclose(yn.var(axes), var / (var + 1e-5), rtol=1e-4)
    # Scale and bias act after the normalization.
    p2 = BatchNormParams(scale=jnp.arange(1.0, 6.0), bias=jnp.full((5,), -3.0))
    y2, _ = batch_norm(p2, state, x, train=True)
    np.testing.assert_allclose(np.asarray(y2), yn * np.arange(1.0, 6.0) - 3.0, rtol=1e-5, atol=1e-5)


def test_batch_norm_running_stats_closed_form_and_eval() -> None:
    params, state = init_batch_norm(KEY, 3)
    momentum, steps = 0.8, 6
    batches = [_features((10, 2, 3), seed=k) * (1 + k) + k for k in range(steps)]
    step = jax.jit(lambda s, xb: batch_norm(params, s, xb, train=True, momentum=momentum))
    for xb in batches:
        _, state = step(state, xb)
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
    x = _features((7, 3), seed=99)
    y, same = batch_norm(p2, state, x, train=False)
    assert same is state
    ref = (np.asarray(x, np.float64) - mean_ref) / np.sqrt(var_ref + 1e-5) * np.array([1.0, 2.0, 0.5]) \
        + np.array([0.0, 1.0, -1.0])
    np.testing.assert_allclose(np.asarray(y), ref, rtol=1e-4, atol=1e-4)


def test_batch_norm_axis_name_under_vmap_equals_whole_batch() -> None:
    params = BatchNormParams(scale=jnp.array([1.0, 2.0, 3.0]), bias=jnp.array([0.5, 0.0, -0.5]))
    _, state = init_batch_norm(KEY, 3)
    x = _features((4, 6, 2, 2, 3))  # 4 shards of 6 images
    whole_y, whole_s = batch_norm(params, state, x.reshape(24, 2, 2, 3), train=True)

    def shard(xs: jax.Array) -> tuple[jax.Array, BatchNormState]:
        return batch_norm(params, state, xs, train=True, axis_name="shards")

    ys, ss = jax.jit(jax.vmap(shard, axis_name="shards"))(x)
    np.testing.assert_allclose(ys.reshape(24, 2, 2, 3), whole_y, rtol=1e-5, atol=1e-5)
    for i in range(4):
        np.testing.assert_allclose(ss.mean[i], whole_s.mean, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(ss.var[i], whole_s.var, rtol=1e-5)
    # Without axis_name, each shard uses its own statistics (a different result).
    ys_local, _ = jax.vmap(lambda xs: batch_norm(params, state, xs, train=True))(x)
    assert not np.allclose(ys_local.reshape(24, 2, 2, 3), whole_y, atol=1e-3)
    # vmap over single examples (equinox style): x of shape (C,) per example.
    flat = x.reshape(-1, 3)
    ye, se = jax.vmap(lambda xi: batch_norm(params, state, xi, train=True, axis_name="b"), axis_name="b")(flat)
    yw, sw = batch_norm(params, state, flat, train=True)
    np.testing.assert_allclose(ye, yw, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(se.var[0], sw.var, rtol=1e-5)


def test_batch_norm_gradient_matches_closed_form() -> None:
    x = _features((16, 3))
    params, state = init_batch_norm(KEY, 3)
    r = jax.random.normal(jax.random.key(5), (16, 3))

    def loss(xx: jax.Array) -> jax.Array:
        return jnp.sum(batch_norm(params, state, xx, train=True)[0] * r)

    g = jax.jit(jax.grad(loss))(x)
    # dL/dx = (1/sigma) (r - mean(r) - x_hat mean(r x_hat)), gamma = 1, per feature.
    xn = np.asarray(x, np.float64)
    rn = np.asarray(r, np.float64)
    sigma = np.sqrt(xn.var(0) + 1e-5)
    xh = (xn - xn.mean(0)) / sigma
    ref = (rn - rn.mean(0) - xh * (rn * xh).mean(0)) / sigma
    np.testing.assert_allclose(np.asarray(g), ref, rtol=1e-3, atol=1e-5)
    # Gradients with respect to scale and bias: sum(r x_hat) and sum(r).
    gp = jax.grad(lambda p: jnp.sum(batch_norm(p, state, x, train=True)[0] * r))(params)
    np.testing.assert_allclose(gp.scale, (rn * xh).sum(0), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(gp.bias, rn.sum(0), rtol=1e-5, atol=1e-5)


def test_batch_norm_ensemble_vmap() -> None:
    keys = jax.random.split(KEY, 3)
    params, state = jax.vmap(lambda k: init_batch_norm(k, 4, scale_init=initializers.uniform(1.0)))(keys)
    x = _features((10, 4))
    ys, ss = jax.vmap(lambda p, s: batch_norm(p, s, x, train=True))(params, state)
    for i in range(3):
        p_i = BatchNormParams(params.scale[i], params.bias[i])
        y_i, s_i = batch_norm(p_i, BatchNormState(state.mean[i], state.var[i]), x, train=True)
        np.testing.assert_allclose(ys[i], y_i, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(ss.var[i], s_i.var, rtol=1e-5)


def test_batch_norm_errors() -> None:
    params, state = init_batch_norm(KEY, 3)
    with pytest.raises(ValueError, match=r"batch_norm: expected an input with 3 features.*got shape \(4, 5\)"):
        jax.jit(lambda x: batch_norm(params, state, x, train=True))(jnp.ones((4, 5)))
    with pytest.raises(ValueError, match="batch_norm: argument 'momentum' must be in"):
        batch_norm(params, state, jnp.ones((4, 3)), train=True, momentum=1.5)
    with pytest.raises(ValueError, match="batch_norm: argument 'eps'"):
        batch_norm(params, state, jnp.ones((4, 3)), train=True, eps=0.0)
    with pytest.raises(ValueError, match="batch_norm: training needs at least 2 values per feature"):
        batch_norm(params, state, jnp.ones((1, 3)), train=True)
    with pytest.raises(ValueError, match=r"batch_norm: state mean and var must have shape \(3,\)"):
        batch_norm(params, BatchNormState(jnp.zeros(2), jnp.ones(2)), jnp.ones((4, 3)), train=False)
    with pytest.raises(ValueError, match="init_batch_norm: argument 'num_features'"):
        init_batch_norm(KEY, 0)


def test_batch_norm_layer() -> None:
    layer = BatchNorm(momentum=0.5)
    params, state, out = layer.init(KEY, (-1, 4, 4, 2))
    assert out == (-1, 4, 4, 2)
    assert isinstance(params, BatchNormParams) and isinstance(state, BatchNormState)
    x = _features((3, 4, 4, 2))
    y, new_state = layer.apply(params, state, x, train=True)
    y_ref, s_ref = batch_norm(params, state, x, train=True, momentum=0.5)
    np.testing.assert_allclose(y, y_ref, rtol=1e-6)
    np.testing.assert_allclose(new_state.mean, s_ref.mean, rtol=1e-6)
    with pytest.raises(ValueError, match=r"BatchNorm\(momentum=0.5\): expected an input with 2 features"):
        layer.apply(params, state, jnp.ones((3, 4, 4, 3)), train=False)
    with pytest.raises(ValueError, match="BatchNorm: argument 'momentum'"):
        BatchNorm(momentum=-0.1)


def test_layer_norm_closed_form_and_layer() -> None:
    x = _features((4, 3, 6))
    params = LayerNormParams(scale=jnp.linspace(0.5, 2.0, 6), bias=jnp.linspace(-1.0, 1.0, 6))
    y = jax.jit(layer_norm)(params, x)
    xn = np.asarray(x, np.float64)
    ref = (xn - xn.mean(-1, keepdims=True)) / np.sqrt(xn.var(-1, keepdims=True) + 1e-5)
    ref = ref * np.linspace(0.5, 2.0, 6) + np.linspace(-1.0, 1.0, 6)
    np.testing.assert_allclose(np.asarray(y), ref, rtol=1e-4, atol=1e-5)
    p0 = init_layer_norm(KEY, 6)
    np.testing.assert_array_equal(np.asarray(p0.scale), 1.0)
    np.testing.assert_array_equal(np.asarray(p0.bias), 0.0)
    layer = LayerNorm()
    lp, ls, out = layer.init(KEY, (-1, 3, 6))
    assert out == (-1, 3, 6) and ls == ()
    np.testing.assert_allclose(layer.apply(lp, ls, x, train=True)[0], layer_norm(p0, x), rtol=1e-6)
    with pytest.raises(ValueError, match=r"layer_norm: expected an input with 6 features.*\(4, 5\)"):
        layer_norm(params, jnp.ones((4, 5)))
    # Under vmap over an ensemble of parameters, and its gradient sums to zero along the features
    # (shifting all features of an example leaves the output unchanged).
    stacked = jax.vmap(lambda k: init_layer_norm(k, 6, scale_init=initializers.uniform(1.0)))(jax.random.split(KEY, 2))
    assert jax.vmap(layer_norm, in_axes=(0, None))(stacked, x).shape == (2, 4, 3, 6)
    g = jax.grad(lambda xx: jnp.sum(layer_norm(params, xx) * jnp.arange(6.0)))(x)
    np.testing.assert_allclose(np.asarray(g).sum(-1), 0.0, atol=1e-4)


def test_weight_norm_closed_form() -> None:
    v = jax.random.normal(KEY, (3, 3, 2, 4))
    g = jnp.array([1.0, 2.0, 0.5, 3.0])
    w = weight_norm(v, g)
    vn = np.asarray(v, np.float64)
    ref = np.asarray(g)[None, None, None, :] * vn / np.sqrt((vn**2).sum((0, 1, 2)))
    np.testing.assert_allclose(np.asarray(w), ref, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(np.asarray(w).reshape(-1, 4), axis=0), g, rtol=1e-5)
    # Dense: the norm is over n_in for each output unit.
    vd = jax.random.normal(KEY, (5, 3))
    wd = weight_norm(vd, jnp.ones(3))
    np.testing.assert_allclose(np.linalg.norm(np.asarray(wd), axis=0), 1.0, rtol=1e-5)
    # Scaling v does not change w.
    np.testing.assert_allclose(weight_norm(7.0 * v, g), w, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match=r"weight_norm: length g must have shape \(4,\)"):
        weight_norm(v, jnp.ones(3))


def test_weight_norm_ops_and_init() -> None:
    params = init_weight_norm(KEY, (5, 3), b_init=initializers.constant(0.25))
    assert params.v.shape == (5, 3) and params.g.shape == (3,) and params.b.shape == (3,)
    # g = ||v||, so the initial effective kernel is v itself.
    np.testing.assert_allclose(weight_norm(params.v, params.g), params.v, rtol=1e-5, atol=1e-6)
    x = jax.random.normal(KEY, (4, 5))
    ref = np.asarray(x, np.float64) @ np.asarray(weight_norm(params.v, params.g), np.float64) + 0.25
    np.testing.assert_allclose(weight_norm_dense(params, x), ref, rtol=1e-5, atol=1e-5)
    pc = init_weight_norm(KEY, (3, 3, 2, 4))
    pc = WeightNormParams(pc.v, pc.g * 2.0, pc.b)
    xc = jax.random.normal(KEY, (2, 5, 5, 2))
    np.testing.assert_allclose(weight_norm_conv2d(pc, xc, stride=2),
                               conv2d(ConvParams(2.0 * pc.v, pc.b), xc, stride=2), rtol=1e-4, atol=1e-5)
    p1 = init_weight_norm(KEY, (3, 2, 4))
    np.testing.assert_allclose(weight_norm_conv1d(p1, xc[0], padding="VALID"),
                               conv1d(ConvParams(p1.v, p1.b), xc[0], padding="VALID"), rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="init_weight_norm: argument 'kernel_shape'"):
        init_weight_norm(KEY, (5,))
    with pytest.raises(ValueError, match=r"weight_norm_dense: expected input with 5 features.*\(4, 6\)"):
        weight_norm_dense(params, jnp.ones((4, 6)))
    # Gradient with respect to g of sum(x w) is sum_n x_n . v / ||v|| per unit.
    gg = jax.grad(lambda p: jnp.sum(weight_norm_dense(p, x)))(params)
    vn = np.asarray(params.v, np.float64)
    ref_g = (np.asarray(x, np.float64).sum(0) @ vn) / np.linalg.norm(vn, axis=0)
    np.testing.assert_allclose(gg.g, ref_g, rtol=1e-4, atol=1e-5)
    # Ensemble vmap.
    stacked = jax.vmap(lambda k: init_weight_norm(k, (5, 3)))(jax.random.split(KEY, 3))
    ys = jax.jit(jax.vmap(weight_norm_dense, in_axes=(0, None)))(stacked, x)
    np.testing.assert_allclose(ys[1], dense(DenseParams(stacked.v[1], stacked.b[1]), x), rtol=1e-4, atol=1e-5)


def test_weight_norm_layers() -> None:
    lp, ls, out = WeightNormDense(4).init(KEY, (-1, 6))
    assert out == (-1, 4) and isinstance(lp, WeightNormParams)
    x = jax.random.normal(KEY, (3, 6))
    np.testing.assert_allclose(WeightNormDense(4).apply(lp, ls, x, train=False)[0], weight_norm_dense(lp, x),
                               rtol=1e-6)
    layer = WeightNormConv2D(5, 3, padding="VALID")
    cp, cs, out = layer.init(KEY, (-1, 6, 6, 2))
    assert out == (-1, 4, 4, 5)
    xc = jax.random.normal(KEY, (2, 6, 6, 2))
    np.testing.assert_allclose(layer.apply(cp, cs, xc, train=False)[0],
                               weight_norm_conv2d(cp, xc, padding="VALID"), rtol=1e-6)
    with pytest.raises(ValueError, match=r"WeightNormConv2D\(5, \(3, 3\)\): expected an input with 2 channels"):
        layer.apply(cp, cs, jnp.ones((2, 6, 6, 3)), train=False)
    # Sanity: with the same direction, the weight-normalized dense layer equals init_dense's kernel path.
    dp = init_dense(KEY, 6, 4)
    wp = WeightNormParams(dp.w, jnp.linalg.norm(dp.w, axis=0), dp.b)
    np.testing.assert_allclose(weight_norm_dense(wp, x), dense(dp, x), rtol=1e-5, atol=1e-6)
    assert init_conv2d(KEY, 2, 5, 3).w.shape == cp.v.shape
