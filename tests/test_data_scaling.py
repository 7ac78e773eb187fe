"""Min-max scaling and standardization, checked against float64 NumPy hand computations."""

from __future__ import annotations

import re
from collections.abc import Callable

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from functrain.data import scaling as S

RNG = np.random.default_rng(0)
STYLE = re.compile(r"^[\w.]+: argument '[\w.\[\]']+' must be .+, got .+$", re.S)


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


class TestTransformsUnderJit(chex.TestCase):
    """The fitted transforms are pure functions of (statistics, data): jit and vmap change nothing."""

    @chex.variants(with_jit=True, without_jit=True)
    def test_scale_and_invert_match_the_eager_result(self) -> None:
        x, x_test = _train_test()
        mm, st = S.fit_min_max(x, (-1.0, 1.0)), S.fit_standardize(x)
        scale = self.variant(S.min_max_scale)
        invert = self.variant(S.inverse_min_max_scale)
        standardize = self.variant(S.standardize)
        unstandardize = self.variant(S.inverse_standardize)
        np.testing.assert_allclose(scale(mm, x_test), S.min_max_scale(mm, x_test), rtol=1e-6)
        np.testing.assert_allclose(invert(mm, scale(mm, x_test)), x_test, rtol=1e-5, atol=1e-4)
        np.testing.assert_allclose(standardize(st, x_test), S.standardize(st, x_test), rtol=1e-6)
        np.testing.assert_allclose(unstandardize(st, standardize(st, x_test)), x_test, rtol=1e-5,
                                   atol=1e-4)

    @chex.variants(with_jit=True, without_jit=True)
    def test_fit_matches_numpy(self) -> None:
        x, _ = _train_test()

        def fit(data: jax.Array) -> tuple[S.MinMaxStats, S.StandardizeStats]:
            return S.fit_min_max(data, (-1.0, 1.0)), S.fit_standardize(data)

        mm, st = self.variant(fit)(jnp.asarray(x))
        np.testing.assert_allclose(mm.data_min, x.min(0))
        np.testing.assert_allclose(mm.data_max, x.max(0))
        np.testing.assert_allclose(st.mean, x.astype(np.float64).mean(0), rtol=1e-5)

    def test_vmap_over_examples_and_over_statistics(self) -> None:
        x, x_test = _train_test()
        st = S.fit_standardize(x)

        def standardize(xi: jax.Array) -> jax.Array:
            return S.standardize(st, xi)

        per_example = jax.vmap(standardize)(jnp.asarray(x_test))
        np.testing.assert_allclose(per_example, S.standardize(st, x_test), rtol=1e-6)
        # one set of statistics per data set (e.g. per seed), fitted and applied under vmap
        both = jnp.stack([jnp.asarray(x), 2.0 * jnp.asarray(x) + 1.0])
        stats = jax.vmap(S.fit_standardize)(both)
        z = jax.vmap(S.standardize)(stats, both)
        np.testing.assert_allclose(z[1], z[0], rtol=1e-4, atol=1e-5)  # affine data, same z-scores
        np.testing.assert_allclose(stats.mean[1], 2.0 * stats.mean[0] + 1.0, rtol=1e-5)


def _message(exc: type[Exception], fn: Callable[..., object], *args: object,
             **kwargs: object) -> str:
    """Call ``fn``, expect ``exc`` with a message in the library's one style, return it."""
    with pytest.raises(exc) as info:
        fn(*args, **kwargs)
    text = str(info.value)
    assert STYLE.match(text), text
    return text


def test_numpy_integer_axes_are_accepted() -> None:
    imgs = RNG.uniform(0, 1, size=(3, 2, 2, 2)).astype(np.float32)
    st = S.fit_standardize(imgs, axis=(np.int64(0), np.int32(1), 2))  # type: ignore[arg-type]  # NumPy integers are ints at runtime
    np.testing.assert_allclose(st.mean, S.fit_standardize(imgs, axis=(0, 1, 2)).mean)
    assert S.fit_min_max(imgs, axis=np.int64(0)).data_min.shape == (2, 2, 2)  # type: ignore[arg-type]  # NumPy integers are ints at runtime


def test_bad_input_is_reported() -> None:
    x = np.ones((4, 3), np.float32)
    assert "lower < upper, got tuple (1.0, 0.0)" in _message(ValueError, S.fit_min_max, x, (1.0, 0.0))
    _message(ValueError, S.fit_min_max, x, (0.0, float("inf")))
    assert _message(TypeError, S.fit_min_max, x, (0.0,)).startswith(
        "fit_min_max: argument 'feature_range' must be a pair")
    _message(TypeError, S.fit_min_max, x, ("a", "b"))
    assert "leading axes (0, ..., k-1)" in _message(ValueError, S.fit_standardize, x, axis=1)
    _message(TypeError, S.fit_standardize, x, axis=0.5)
    _message(TypeError, S.fit_standardize, x, axis=True)
    assert "at most the 2 axes of 'x'" in _message(ValueError, S.fit_standardize, x, axis=(0, 1, 2))
    assert "at least one sample" in _message(ValueError, S.fit_standardize, np.zeros((0, 3)))
    assert "at least one (sample) axis" in _message(ValueError, S.fit_min_max, np.float32(1.0))
    assert _message(TypeError, S.fit_standardize, np.array([["a"], ["b"]])) == (
        "fit_standardize: argument 'x' must be a real numeric array, got an array of shape (2, 1) "
        "and dtype <U1")
    _message(TypeError, S.fit_standardize, np.ones((2, 2), np.complex64))
    stats = S.fit_standardize(x)
    assert _message(ValueError, S.standardize, stats, np.ones((4, 5))) == (
        "standardize: argument 'x' must be an array of shape (*, 3), got an array of shape (4, 5) "
        "and dtype float32")
    text = _message(ValueError, S.inverse_min_max_scale, S.fit_min_max(np.ones((4, 2, 3))),
                    np.ones((3,)))
    assert text.startswith("inverse_min_max_scale: argument 'y' must be an array whose trailing "
                           "axes have the shape of the fitted statistics (2, 3)")
    assert "'stats' must be a StandardizeStats (from fit_standardize), got MinMaxStats" in _message(
        TypeError, S.standardize, S.fit_min_max(x), x)
    assert "'stats' must be a MinMaxStats" in _message(TypeError, S.min_max_scale, (0.0, 1.0), x)
