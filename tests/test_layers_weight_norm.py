"""Weight normalization against its closed form; the weight-normalized dense and conv ops equal the
plain ops with the computed kernel; init (g = ||v||); gradient; ensemble vmap; layers; errors."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _typed import grad, jit

from functrain import initializers
from functrain.layers import (
    ConvParams,
    DenseParams,
    WeightNormConv2D,
    WeightNormDense,
    WeightNormParams,
    conv1d,
    conv2d,
    dense,
    init_weight_norm,
    weight_norm,
    weight_norm_conv1d,
    weight_norm_conv2d,
    weight_norm_dense,
)

KEY = jax.random.key(0)


def _normal(seed: int, shape: tuple[int, ...]) -> jax.Array:
    """Test inputs from NumPy (a jax.random draw compiles a program per shape, ~0.5 s each)."""
    return jnp.asarray(np.random.default_rng(seed).standard_normal(shape), jnp.float32)


def _w_reference(v: jax.Array, g: jax.Array) -> np.ndarray:
    vn = np.asarray(v, np.float64)
    out: np.ndarray = np.asarray(g, np.float64) * vn / np.sqrt((vn**2).reshape(-1, vn.shape[-1]).sum(0))
    return out


def test_weight_norm_closed_form() -> None:
    v = _normal(0, (3, 3, 2, 4))
    g = jnp.array([1.0, 2.0, 0.5, 3.0])
    w = weight_norm(v, g)
    np.testing.assert_allclose(np.asarray(w), _w_reference(v, g), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(np.asarray(w).reshape(-1, 4), axis=0), g, rtol=1e-5)
    # Dense: the norm is over n_in for each output unit.
    wd = weight_norm(_normal(1, (5, 3)), jnp.ones(3))
    np.testing.assert_allclose(np.linalg.norm(np.asarray(wd), axis=0), 1.0, rtol=1e-5)
    # Scaling v does not change w.
    np.testing.assert_allclose(weight_norm(7.0 * v, g), w, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match=r"^weight_norm: argument 'g' must be an array of shape \(4,?\), got an "
                                         r"array of shape \(3,\)"):
        weight_norm(v, jnp.ones(3))
    with pytest.raises(ValueError, match=r"^weight_norm: argument 'v' must be a kernel of rank >= 2"):
        weight_norm(jnp.ones(3), jnp.ones(3))


def test_init_weight_norm_starts_at_v() -> None:
    params = init_weight_norm(KEY, (5, 3), b_init=initializers.constant(0.25))
    assert params.v.shape == (5, 3) and params.g.shape == (3,) and params.b.shape == (3,)
    # g = ||v||, so the initial effective kernel is v itself.
    np.testing.assert_allclose(params.g, np.linalg.norm(np.asarray(params.v, np.float64), axis=0), rtol=1e-5)
    np.testing.assert_array_equal(params.b, 0.25)
    with pytest.raises(ValueError, match=r"^init_weight_norm: argument 'kernel_shape' must be a kernel shape of "
                                         r"rank >= 2 .*, got tuple \(5,\)$"):
        init_weight_norm(KEY, (5,))
    with pytest.raises(TypeError, match=r"^init_weight_norm: argument 'kernel_shape' must be a kernel shape"):
        init_weight_norm(KEY, 5)  # type: ignore[arg-type]  # deliberately wrong


def test_weight_norm_ops_equal_plain_ops_with_the_computed_kernel() -> None:
    x = _normal(0, (4, 5))
    params = WeightNormParams(_normal(1, (5, 3)), jnp.array([1.0, 2.0, 0.5]), jnp.full((3,), 0.25))
    xc = _normal(2, (2, 5, 5, 2))
    pc = WeightNormParams(_normal(3, (3, 3, 2, 4)), jnp.arange(1.0, 5.0), jnp.zeros(4))
    p1 = WeightNormParams(_normal(4, (3, 2, 4)), jnp.ones(4), jnp.ones(4))

    @jit
    def run(xx: jax.Array, xi: jax.Array) -> tuple[jax.Array, ...]:
        return (weight_norm_dense(params, xx),
                dense(DenseParams(weight_norm(params.v, params.g), params.b), xx),
                weight_norm_conv2d(pc, xi, stride=2), conv2d(ConvParams(weight_norm(pc.v, pc.g), pc.b), xi, stride=2),
                weight_norm_conv1d(p1, xi[0, 0], padding="VALID"),
                conv1d(ConvParams(weight_norm(p1.v, p1.g), p1.b), xi[0, 0], padding="VALID"))

    yd, yd_ref, yc, yc_ref, y1, y1_ref = run(x, xc)
    np.testing.assert_allclose(yd, np.asarray(x, np.float64) @ _w_reference(params.v, params.g) + 0.25,
                               rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(yd, yd_ref, rtol=1e-6, atol=1e-6)
    assert yc.shape == (2, 3, 3, 4) and y1.shape == (3, 4)
    np.testing.assert_allclose(yc, yc_ref, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(y1, y1_ref, rtol=1e-6, atol=1e-6)


def test_weight_norm_gradient_and_ensemble_vmap() -> None:
    x = _normal(0, (4, 5))
    params = WeightNormParams(_normal(1, (5, 3)), jnp.ones(3), jnp.zeros(3))
    # Gradient with respect to g of sum(x w) is sum_n x_n . v / ||v|| per unit.
    def total(p: WeightNormParams) -> jax.Array:
        return jnp.sum(weight_norm_dense(p, x))

    gg = jit(grad(total))(params)
    vn = np.asarray(params.v, np.float64)
    ref_g = (np.asarray(x, np.float64).sum(0) @ vn) / np.linalg.norm(vn, axis=0)
    np.testing.assert_allclose(gg.g, ref_g, rtol=1e-4, atol=1e-5)
    # Ensemble: one initialization per seed, applied in one program.
    def member(k: jax.Array) -> tuple[WeightNormParams, jax.Array]:
        p = init_weight_norm(k, (5, 3))
        return p, weight_norm_dense(p, x)

    stacked, ys = jit(jax.vmap(member))(jax.random.split(KEY, 3))
    assert not np.allclose(stacked.v[0], stacked.v[1])
    for i in range(3):  # with g = ||v|| the kernel is v itself
        np.testing.assert_allclose(ys[i], np.asarray(x, np.float64) @ np.asarray(stacked.v[i], np.float64),
                                   rtol=1e-4, atol=1e-5)


def test_weight_norm_layers() -> None:
    lp, ls, out = WeightNormDense(4).init(KEY, (-1, 6))
    assert out == (-1, 4) and isinstance(lp, WeightNormParams) and lp.v.shape == (6, 4)
    x = _normal(0, (3, 6))
    np.testing.assert_allclose(WeightNormDense(4).apply(lp, ls, x, train=False)[0], weight_norm_dense(lp, x),
                               rtol=1e-6)
    layer = WeightNormConv2D(5, 3, padding="VALID", v_init=initializers.ones())
    cp, cs, out = layer.init(KEY, (-1, 6, 6, 2))
    assert out == (-1, 4, 4, 5) and cp.v.shape == (3, 3, 2, 5)
    xc = jnp.ones((2, 6, 6, 2))
    y = layer.apply(cp, cs, xc, train=False)[0]
    # v = 1, g = ||v|| = sqrt(18): w = 1 and each output sums 3 x 3 x 2 ones.
    np.testing.assert_allclose(y, 18.0, rtol=1e-5)
    with pytest.raises(ValueError, match=r"^WeightNormConv2D: argument 'x' must be an array of shape "
                                         r"\(\*, \*, \*, 2\), got an array of shape \(2, 6, 6, 3\)"):
        layer.apply(cp, cs, jnp.ones((2, 6, 6, 3)), train=False)
    with pytest.raises(ValueError, match=r"^WeightNormConv2D: argument 'input_shape' must be a shape whose spatial "
                                         r"sizes fit the kernel \(3, 3\)"):
        layer.init(KEY, (-1, 2, 6, 2))
    with pytest.raises(ValueError, match=r"^weight_norm_dense: argument 'x' must be an array of shape \(\*, 6\), "
                                         r"got an array of shape \(4, 5\)"):
        weight_norm_dense(lp, jnp.ones((4, 5)))
    with pytest.raises(ValueError, match=r"^weight_norm_conv2d: argument 'params.v' must be an array of rank 4"):
        weight_norm_conv2d(lp, xc)
    with pytest.raises(ValueError, match=r"^WeightNormDense: argument 'out_features' must be an int >= 1, got 0$"):
        WeightNormDense(0)
    with pytest.raises(ValueError, match=r"^WeightNormConv2D: argument 'stride' must be an int or a sequence of 2 "):
        WeightNormConv2D(5, 3, stride=(1, 2, 3))
