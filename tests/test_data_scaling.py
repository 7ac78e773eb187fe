"""Min-max scaling and standardization, checked against float64 NumPy hand computations."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from functrain.data import scaling as S

RNG = np.random.default_rng(0)


def _train_test() -> tuple[np.ndarray, np.ndarray]:
    x = RNG.normal(3.0, 5.0, size=(40, 4))
    x[:, 2] = 7.25  # a constant feature
    x_test = RNG.normal(3.0, 8.0, size=(9, 4))
    return x.astype(np.float32), x_test.astype(np.float32)


@pytest.mark.parametrize("feature_range", [(0.0, 1.0), (-1.0, 1.0)])
def test_min_max_matches_numpy_and_uses_training_statistics(feature_range: tuple[float, float]) -> None:
    x, x_test = _train_test()
    lo, hi = feature_range
    stats = S.fit_min_max(x, feature_range)
    x64, t64 = x.astype(np.float64), x_test.astype(np.float64)
    mn, mx = x64.min(0), x64.max(0)
    span = np.where(mx > mn, mx - mn, 1.0)
    np.testing.assert_allclose(S.min_max_scale(stats, x), lo + (x64 - mn) * (hi - lo) / span,
                               rtol=1e-5, atol=1e-5)
    # test data uses the training statistics, so it may leave the range (no peeking, no clipping)
    scaled_test = np.asarray(S.min_max_scale(stats, x_test))
    np.testing.assert_allclose(scaled_test, lo + (t64 - mn) * (hi - lo) / span, rtol=1e-5, atol=1e-5)
    assert scaled_test.min() < lo or scaled_test.max() > hi
    scaled = np.asarray(S.min_max_scale(stats, x))
    np.testing.assert_allclose(scaled[:, [0, 1, 3]].min(0), lo, atol=1e-6)
    np.testing.assert_allclose(scaled[:, [0, 1, 3]].max(0), hi, atol=1e-6)
    # the constant feature maps to the bottom of the range, finitely
    np.testing.assert_array_equal(scaled[:, 2], lo)
    assert np.isfinite(scaled_test).all()


def test_standardize_matches_numpy_and_handles_constant_features() -> None:
    x, x_test = _train_test()
    stats = S.fit_standardize(x)
    x64 = x.astype(np.float64)
    mean, std = x64.mean(0), x64.std(0)
    std_safe = np.where(std > 0, std, 1.0)
    np.testing.assert_allclose(stats.mean, mean, rtol=1e-5)
    np.testing.assert_allclose(stats.std, std_safe, rtol=1e-5)
    assert float(stats.std[2]) == 1.0
    z = np.asarray(S.standardize(stats, x), np.float64)
    np.testing.assert_allclose(z.mean(0), 0.0, atol=1e-5)
    np.testing.assert_allclose(z.std(0)[[0, 1, 3]], 1.0, rtol=1e-5)
    np.testing.assert_array_equal(z[:, 2], 0.0)
    np.testing.assert_allclose(S.standardize(stats, x_test),
                               (x_test.astype(np.float64) - mean) / std_safe, rtol=1e-4, atol=1e-5)


def test_constant_feature_whose_mean_rounds_is_not_blown_up() -> None:
    # 0.1 is not representable: the float32 mean of a constant column may differ from its values,
    # giving a tiny non-zero std; the exact max == min test still treats it as constant.
    x = jnp.full((7, 1), 0.1, jnp.float32)
    stats = S.fit_standardize(x)
    assert float(stats.std[0]) == 1.0
    assert float(jnp.max(jnp.abs(S.standardize(stats, x)))) < 1e-6


@pytest.mark.parametrize("feature_range", [(0.0, 1.0), (-1.0, 1.0)])
def test_inverse_transforms_round_trip(feature_range: tuple[float, float]) -> None:
    x, x_test = _train_test()
    mm = S.fit_min_max(x, feature_range)
    np.testing.assert_allclose(S.inverse_min_max_scale(mm, S.min_max_scale(mm, x_test)), x_test,
                               rtol=1e-5, atol=1e-4)
    st = S.fit_standardize(x)
    np.testing.assert_allclose(S.inverse_standardize(st, S.standardize(st, x_test)), x_test,
                               rtol=1e-5, atol=1e-4)


def test_per_channel_statistics_of_images() -> None:
    imgs = RNG.uniform(0, 255, size=(6, 5, 4, 3)).astype(np.float32)
    st = S.fit_standardize(imgs, axis=(0, 1, 2))
    assert st.mean.shape == (3,)
    np.testing.assert_allclose(st.mean, imgs.astype(np.float64).mean((0, 1, 2)), rtol=1e-5)
    np.testing.assert_allclose(st.std, imgs.astype(np.float64).std((0, 1, 2)), rtol=1e-5)
    mm = S.fit_min_max(imgs, (-1.0, 1.0), axis=(0, 1, 2))
    out = np.asarray(S.min_max_scale(mm, imgs))
    np.testing.assert_allclose(out.min((0, 1, 2)), -1.0, atol=1e-6)
    np.testing.assert_allclose(out.max((0, 1, 2)), 1.0, atol=1e-6)
    # one image (no batch axis) broadcasts against the statistics too
    np.testing.assert_allclose(S.min_max_scale(mm, imgs[0]), out[0], rtol=1e-6)


def test_integer_pixels_become_float32() -> None:
    x = np.array([[0, 255], [128, 0]], np.uint8)
    stats = S.fit_min_max(x)
    out = S.min_max_scale(stats, x)
    assert out.dtype == jnp.float32
    np.testing.assert_allclose(out, [[0.0, 1.0], [1.0, 0.0]])


def test_transforms_under_jit_and_vmap() -> None:
    x, x_test = _train_test()
    mm = jax.jit(S.fit_min_max, static_argnums=(1, 2))(x, (-1.0, 1.0), 0)
    st = jax.jit(S.fit_standardize)(x)
    np.testing.assert_allclose(mm.data_min, S.fit_min_max(x).data_min)
    np.testing.assert_allclose(st.std, S.fit_standardize(x).std)
    np.testing.assert_allclose(jax.jit(S.min_max_scale)(mm, x_test), S.min_max_scale(mm, x_test),
                               rtol=1e-6)
    per_example = jax.vmap(lambda xi: S.standardize(st, xi))(jnp.asarray(x_test))
    np.testing.assert_allclose(per_example, S.standardize(st, x_test), rtol=1e-6)
    inv = jax.jit(jax.vmap(S.inverse_standardize, in_axes=(None, 0)))(st, S.standardize(st, x_test))
    np.testing.assert_allclose(inv, x_test, rtol=1e-5, atol=1e-4)


def test_bad_input_is_reported() -> None:
    x = np.ones((4, 3), np.float32)
    with pytest.raises(ValueError, match=r"fit_min_max: argument 'feature_range'.*lower < upper"):
        S.fit_min_max(x, (1.0, 0.0))
    with pytest.raises(TypeError, match=r"fit_min_max: argument 'feature_range' must be a pair"):
        S.fit_min_max(x, (0.0,))  # type: ignore[arg-type]  # deliberately wrong arity
    with pytest.raises(ValueError, match=r"fit_standardize: argument 'axis' must name the leading"):
        S.fit_standardize(x, axis=1)
    with pytest.raises(ValueError, match=r"fit_standardize: argument 'axis' .* only 2"):
        S.fit_standardize(x, axis=(0, 1, 2))
    with pytest.raises(ValueError, match=r"fit_standardize: argument 'x' has no samples"):
        S.fit_standardize(np.zeros((0, 3)))
    with pytest.raises(ValueError, match=r"fit_min_max: argument 'x' must have at least one"):
        S.fit_min_max(np.float32(1.0))
    with pytest.raises(TypeError, match=r"fit_standardize: argument 'x' must be a numeric array, got ndarray of dtype <U1"):
        S.fit_standardize(np.array([["a"], ["b"]]))
    stats = S.fit_standardize(x)
    with pytest.raises(ValueError, match=r"standardize: argument 'x' of shape \(4, 5\).*\(3,\)"):
        S.standardize(stats, np.ones((4, 5)))
    with pytest.raises(ValueError, match=r"inverse_min_max_scale: argument 'y' of shape \(2,\)"):
        S.inverse_min_max_scale(S.fit_min_max(x), np.ones((2,)))
