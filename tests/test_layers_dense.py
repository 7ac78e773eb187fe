"""Dense layer: float64 NumPy reference, initializers, shape errors, jit/grad/vmap (ensemble)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _typed import grad, jit, make_jaxpr

from functrain import initializers
from functrain.layers import Dense, DenseParams, _dense_gemm, dense, init_dense

KEY = jax.random.key(0)


def _normal(seed: int, shape: tuple[int, ...]) -> jax.Array:
    """Test inputs from NumPy (a jax.random draw compiles a program per shape, ~0.5 s each)."""
    return jnp.asarray(np.random.default_rng(seed).standard_normal(shape), jnp.float32)


def _reference(w: np.ndarray, b: np.ndarray, x: np.ndarray) -> np.ndarray:
    w64, b64, x64 = (np.asarray(a, np.float64) for a in (w, b, x))
    flat = x64.reshape(-1, x64.shape[-1])
    out = np.zeros((flat.shape[0], w64.shape[1]))
    for n in range(flat.shape[0]):
        for o in range(w64.shape[1]):
            out[n, o] = b64[o] + sum(flat[n, i] * w64[i, o] for i in range(w64.shape[0]))
    return out.reshape(x64.shape[:-1] + (w64.shape[1],))


@pytest.mark.parametrize("x_shape", [(5,), (4, 5), (2, 3, 5)])
def test_dense_matches_float64_reference(x_shape: tuple[int, ...]) -> None:
    params = DenseParams(_normal(1, (5, 3)), _normal(2, (3,)))
    x = _normal(3, x_shape)
    y = dense(params, x)
    assert y.shape == x_shape[:-1] + (3,)
    np.testing.assert_allclose(np.asarray(y), _reference(np.asarray(params.w), np.asarray(params.b), np.asarray(x)),
                               rtol=1e-5, atol=1e-5)


def test_init_dense_shapes_and_default_initializers() -> None:
    params = init_dense(KEY, 300, 200)
    assert params.w.shape == (300, 200) and params.b.shape == (200,)
    assert params.w.dtype == jnp.float32
    np.testing.assert_array_equal(np.asarray(params.b), 0.0)
    # Default is glorot_uniform: U(-a, a), a = sqrt(6 / (n_in + n_out)).
    a = np.sqrt(6.0 / 500.0)
    w = np.asarray(params.w)
    assert np.abs(w).max() <= a
    assert abs(w.var() - a * a / 3.0) < 0.05 * a * a / 3.0


def test_init_dense_uses_given_initializers() -> None:
    params = init_dense(KEY, 4, 6, w_init=initializers.constant(0.5), b_init=initializers.constant(-1.0),
                        dtype=jnp.bfloat16)
    assert params.w.dtype == jnp.bfloat16 and params.b.dtype == jnp.bfloat16
    np.testing.assert_array_equal(np.asarray(params.w, np.float32), 0.5)
    np.testing.assert_array_equal(np.asarray(params.b, np.float32), -1.0)
    with pytest.raises(ValueError, match=r"^init_dense: argument 'in_features' must be an int >= 1, got 0$"):
        init_dense(KEY, 0, 3)
    with pytest.raises(TypeError, match=r"^init_dense: argument 'out_features' must be an int >= 1, got 3.0$"):
        init_dense(KEY, 2, 3.0)  # type: ignore[arg-type]  # deliberately wrong
    n_in = np.int64(2)
    assert init_dense(KEY, n_in, 3).w.shape == (2, 3)  # type: ignore[arg-type]  # NumPy integers are accepted at run time


def test_dense_wrong_feature_count_raises_before_xla() -> None:
    params = init_dense(KEY, 5, 3)
    expected = r"^dense: argument 'x' must be an array of shape \(\*, 5\), got an? (traced )?array of shape \(4, 6\)"
    with pytest.raises(ValueError, match=expected):
        dense(params, jnp.ones((4, 6)))
    with pytest.raises(ValueError, match=expected):  # at trace time, before XLA
        jit(dense)(params, jnp.ones((4, 6)))
    with pytest.raises(ValueError, match=r"^dense: argument 'params.b' must be an array of shape \(3,?\), "
                                         r"got an array of shape \(4,\)"):
        dense(DenseParams(params.w, jnp.zeros(4)), jnp.ones((4, 5)))
    with pytest.raises(ValueError, match=r"^dense: argument 'params.w' must be an array of rank 2"):
        dense(DenseParams(params.w[0], params.b), jnp.ones((4, 5)))


def test_dense_layer_init_and_apply_errors_name_the_layer() -> None:
    layer = Dense(7)
    params, state, out = layer.init(KEY, (-1, 3, 5))
    assert out == (-1, 3, 7) and state == ()
    assert params.w.shape == (5, 7)
    with pytest.raises(ValueError, match=r"^Dense: argument 'input_shape' must be a shape of rank >= 2 "
                                         r"\(N, \.\.\., features\).*got tuple \(5,\)$"):
        layer.init(KEY, (5,))
    with pytest.raises(TypeError, match=r"^Dense: argument 'input_shape' must be a sequence of ints"):
        layer.init(KEY, 5)  # type: ignore[arg-type]  # deliberately wrong
    with pytest.raises(ValueError, match=r"^Dense: argument 'x' must be an array of shape \(\*, 5\), "
                                         r"got an array of shape \(2, 4\)"):
        layer.apply(params, state, jnp.ones((2, 4)), train=False)
    with pytest.raises(ValueError, match=r"^Dense: argument 'out_features' must be an int >= 1, got 0$"):
        Dense(0)


def test_dense_under_jit_grad_and_ensemble_vmap() -> None:
    x = _normal(0, (8, 5))
    params = init_dense(KEY, 5, 3)
    np.testing.assert_allclose(jit(dense)(params, x), dense(params, x), rtol=1e-6)

    def loss(p: DenseParams) -> jax.Array:
        return jnp.sum(dense(p, x) ** 2)

    g = jit(grad(loss))(params)
    y = np.asarray(dense(params, x), np.float64)
    np.testing.assert_allclose(g.w, 2 * np.asarray(x, np.float64).T @ y, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(g.b, 2 * y.sum(0), rtol=1e-4, atol=1e-4)

    keys = jax.random.split(KEY, 4)
    def init(k: jax.Array) -> DenseParams:
        return init_dense(k, 5, 3)

    stacked = jit(jax.vmap(init))(keys)
    ys = jit(jax.vmap(dense, in_axes=(0, None)))(stacked, x)
    assert ys.shape == (4, 8, 3)
    w, b = np.asarray(stacked.w, np.float64), np.asarray(stacked.b, np.float64)
    np.testing.assert_allclose(ys, np.einsum("nf,kfo->kno", np.asarray(x, np.float64), w) + b[:, None],
                               rtol=1e-5, atol=1e-5)
    # Each member is the model its own key initializes (init is vmappable over seeds).
    np.testing.assert_array_equal(stacked.w[2], init_dense(keys[2], 5, 3).w)
    assert not np.allclose(ys[0], ys[1])


def test_shape_checks_add_nothing_to_the_traced_program() -> None:
    """The chex checks run at trace time only: the program is exactly the bare computation
    (``x @ w + b``; for a narrow layer, functrain's matmul with its CPU kernel-gradient rule)."""
    for n_in, n_out in ((5, 3), (5, 8)):
        params = DenseParams(jnp.ones((n_in, n_out)), jnp.zeros(n_out))
        x = jnp.ones((4, n_in))
        ours = make_jaxpr(dense)(params, x)
        bare_matmul = _dense_gemm.matmul if n_out < n_in else jnp.matmul

        def by_hand(p: DenseParams, z: jax.Array) -> jax.Array:
            return bare_matmul(z, p.w) + p.b

        def layer(p: DenseParams, z: jax.Array, n: int = n_out) -> jax.Array:
            return Dense(n).apply(p, (), z, train=False)[0]

        bare = make_jaxpr(by_hand)(params, x)
        assert [e.primitive for e in ours.eqns] == [e.primitive for e in bare.eqns]
        layer_apply = make_jaxpr(layer)(params, x)
        assert [e.primitive for e in layer_apply.eqns] == [e.primitive for e in bare.eqns]
    assert "custom_jvp_call" in str(make_jaxpr(dense)(DenseParams(jnp.ones((5, 3)), jnp.zeros(3)), x))
