"""Losses against float64 NumPy references; stability at extreme logits; bad input."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _typed import grad, jit

from functrain import _tree, losses
from functrain.layers import DenseParams

STYLE = re.compile(r"^[\w.]+: argument '[\w.\[\]']+' must be .+, got .+$", re.S)


def _np_log_softmax(z: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    z = z.astype(np.float64)
    m = z.max(axis=-1, keepdims=True)
    return np.asarray(z - m - np.log(np.exp(z - m).sum(axis=-1, keepdims=True)))


@pytest.fixture
def logits() -> jax.Array:
    return jax.random.normal(jax.random.key(0), (7, 5)) * 3.0


def test_softmax_cross_entropy_integer_labels_matches_numpy(logits: jax.Array) -> None:
    labels = jnp.array([0, 1, 4, 2, 3, 3, 0])
    ref = -_np_log_softmax(np.asarray(logits))[np.arange(7), np.asarray(labels)]
    got = losses.softmax_cross_entropy(logits, labels, reduction="none")
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(losses.softmax_cross_entropy(logits, labels), ref.mean(), rtol=1e-5)
    np.testing.assert_allclose(losses.softmax_cross_entropy(logits, labels, reduction="sum"), ref.sum(), rtol=1e-5)


def test_softmax_cross_entropy_one_hot_equals_integer_and_soft_labels(logits: jax.Array) -> None:
    labels = jnp.array([0, 1, 4, 2, 3, 3, 0])
    one_hot = jax.nn.one_hot(labels, 5)
    np.testing.assert_allclose(losses.softmax_cross_entropy(logits, one_hot),
                               losses.softmax_cross_entropy(logits, labels), rtol=1e-6)
    soft = jax.nn.softmax(jax.random.normal(jax.random.key(1), (7, 5)))
    ref = -(np.asarray(soft, np.float64) * _np_log_softmax(np.asarray(logits))).sum(-1)
    np.testing.assert_allclose(losses.softmax_cross_entropy(logits, soft, reduction="none"), ref, rtol=1e-5)


def test_softmax_cross_entropy_is_finite_for_extreme_logits() -> None:
    z = jnp.array([[1e4, -1e4, 0.0], [-1e30, 1e30, 0.0]], jnp.float32)
    out = losses.softmax_cross_entropy(z, jnp.array([1, 0]), reduction="none")
    assert bool(jnp.all(jnp.isfinite(out)))
    np.testing.assert_allclose(out, [2e4, 2e30], rtol=1e-6)
    # A one-hot zero times a -inf-free log-probability gives 0, not NaN.
    out2 = losses.softmax_cross_entropy(z, jax.nn.one_hot(jnp.array([0, 1]), 3), reduction="none")
    np.testing.assert_allclose(out2, [0.0, 0.0], atol=1e-6)
    def loss(logits: jax.Array) -> jax.Array:
        return losses.softmax_cross_entropy(logits, jnp.array([1, 0]))

    g = grad(loss)(z)
    assert bool(jnp.all(jnp.isfinite(g)))


def test_softmax_cross_entropy_batch_dims_and_jit_vmap(logits: jax.Array) -> None:
    z = logits.reshape(7, 1, 5)
    y = jnp.array([0, 1, 4, 2, 3, 3, 0]).reshape(7, 1)
    assert losses.softmax_cross_entropy(z, y, reduction="none").shape == (7, 1)
    jitted = jit(losses.softmax_cross_entropy)(z, y)
    np.testing.assert_allclose(jitted, losses.softmax_cross_entropy(z, y), rtol=1e-6)
    def one(a: jax.Array, b: jax.Array) -> jax.Array:
        return losses.softmax_cross_entropy(a, b)

    per = jax.vmap(one)(z, y)
    np.testing.assert_allclose(per, losses.softmax_cross_entropy(z, y, reduction="none")[:, 0], rtol=1e-6)


def test_binary_cross_entropy_matches_numpy_and_is_stable() -> None:
    x = jnp.array([-800.0, -20.0, -1.0, 0.0, 0.5, 30.0, 900.0])
    y = jnp.array([1.0, 0.0, 1.0, 1.0, 0.0, 0.0, 1.0])
    xd, yd = np.asarray(x, np.float64), np.asarray(y, np.float64)
    ref = np.maximum(xd, 0) - xd * yd + np.log1p(np.exp(-np.abs(xd)))
    got = losses.binary_cross_entropy(x, y, reduction="none")
    np.testing.assert_allclose(got, ref, rtol=1e-6)
    # Naive -y log(p) - (1-y) log(1-p) on moderate values (float64 reference).
    xm = np.array([-2.0, 0.3, 1.7]); ym = np.array([0.0, 1.0, 0.25])
    p = 1 / (1 + np.exp(-xm))
    naive = -ym * np.log(p) - (1 - ym) * np.log(1 - p)
    np.testing.assert_allclose(losses.binary_cross_entropy(jnp.asarray(xm, jnp.float32), jnp.asarray(ym, jnp.float32),
                                                           reduction="none"), naive, rtol=1e-5)
    np.testing.assert_allclose(losses.binary_cross_entropy(x, y.astype(jnp.int32)), ref.mean(), rtol=1e-6)
    def loss(logits: jax.Array) -> jax.Array:
        return losses.binary_cross_entropy(logits, y)

    assert bool(jnp.all(jnp.isfinite(grad(loss)(x))))


def test_mean_squared_error_matches_numpy() -> None:
    p = jax.random.normal(jax.random.key(2), (4, 3))
    t = jax.random.normal(jax.random.key(3), (4, 3))
    d = np.asarray(p, np.float64) - np.asarray(t, np.float64)
    np.testing.assert_allclose(losses.mean_squared_error(p, t), (d ** 2).mean(), rtol=1e-6)
    np.testing.assert_allclose(losses.mean_squared_error(p, t, reduction="sum"), (d ** 2).sum(), rtol=1e-6)
    np.testing.assert_allclose(losses.mean_squared_error(p, t, reduction="none"), d ** 2, rtol=1e-5)


def test_accuracy_integer_and_one_hot() -> None:
    z = jnp.array([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7], [0.6, 0.4]])
    y = jnp.array([1, 1, 1, 0])
    assert float(losses.accuracy(z, y)) == pytest.approx(0.75)
    assert float(losses.accuracy(z, jax.nn.one_hot(y, 2))) == pytest.approx(0.75)
    assert losses.accuracy(z, y).dtype == jnp.float32


def test_case_1_out_of_range_labels_give_nan_without_wrap_around(logits: jax.Array) -> None:
    """Issue 12 case 1: -1 is not the last class and C is not a silent NaN of some paths: every
    label outside [0, C) gives that example a NaN loss and gradient, eagerly, under jit and vmap."""
    good = jnp.array([0, 1, 4, 2, 3, 3, 0])
    ref = losses.softmax_cross_entropy(logits, good, reduction="none")
    for bad_value in (-1, 5, -6, 2**31 - 1):
        bad = good.at[2].set(bad_value)
        for fn in (losses.softmax_cross_entropy, jit(losses.softmax_cross_entropy,
                                                         static_argnames="reduction")):
            per = fn(logits, bad, reduction="none")
            assert bool(jnp.isnan(per[2])), bad_value
            np.testing.assert_array_equal(np.delete(per, 2), np.delete(ref, 2))
        assert bool(jnp.isnan(losses.softmax_cross_entropy(logits, bad)))
        assert bool(jnp.isnan(losses.accuracy(logits, bad)))
        assert bool(jnp.isnan(jit(losses.accuracy)(logits, bad)))
        def summed(z: jax.Array, y: jax.Array = bad) -> jax.Array:
            return losses.softmax_cross_entropy(z, y, reduction="sum")

        def one(z: jax.Array, y: jax.Array) -> jax.Array:
            return losses.softmax_cross_entropy(z, y)

        grads = grad(summed)(logits)
        assert bool(jnp.all(jnp.isnan(grads[2]))) and bool(jnp.all(jnp.isfinite(np.delete(grads, 2, 0))))
        per_vmap = jax.vmap(one)(logits, bad)
        assert [bool(v) for v in jnp.isnan(per_vmap)] == [i == 2 for i in range(7)]
        assert bool(jnp.isnan(jax.vmap(losses.accuracy)(logits, bad)[2]))
    # Narrow and unsigned label dtypes: no overflow of the class count, no wrap-around.
    wide = jnp.zeros((2, 300))
    assert bool(jnp.isfinite(losses.softmax_cross_entropy(wide, jnp.array([1, 127], jnp.int8))))
    assert bool(jnp.isnan(losses.softmax_cross_entropy(logits, good.astype(jnp.uint8).at[0].set(5))))
    assert float(losses.accuracy(logits, good)) == float(losses.accuracy(logits, good.astype(jnp.uint8)))
    # Integer binary targets outside {0, 1} are NaN too; soft floating targets are untouched.
    bce = losses.binary_cross_entropy(jnp.zeros(4), jnp.array([0, 1, 2, -1]), reduction="none")
    assert [bool(v) for v in jnp.isnan(bce)] == [False, False, True, True]
    assert bool(jnp.isfinite(losses.binary_cross_entropy(jnp.zeros(2), jnp.array([0.25, 1.0]))))


def test_penalties_default_mask_skips_biases() -> None:
    params: dict[str, Any] = {"dense": DenseParams(w=jnp.array([[1.0, -2.0], [3.0, 0.5]]), b=jnp.array([10.0, -10.0])),
              "kernel": jnp.ones((2, 2, 1, 1)) * -1.5}
    w2 = 1 + 4 + 9 + 0.25 + 4 * 2.25
    assert float(losses.l2_penalty(params)) == pytest.approx(0.5 * w2)
    assert float(losses.l1_penalty(params)) == pytest.approx(1 + 2 + 3 + 0.5 + 4 * 1.5)
    # The factor 1/2 makes the gradient equal to the weights.
    g = grad(losses.l2_penalty)(params)
    np.testing.assert_array_equal(g["dense"].w, params["dense"].w)
    np.testing.assert_array_equal(g["dense"].b, jnp.zeros(2))
    np.testing.assert_array_equal(grad(losses.l1_penalty)(params)["dense"].w, jnp.sign(params["dense"].w))


def test_penalties_explicit_masks_and_empty() -> None:
    params = {"w": jnp.array([[2.0]]), "b": jnp.array([3.0])}
    assert float(losses.l2_penalty(params, mask={"w": False, "b": True})) == pytest.approx(4.5)
    assert float(losses.l1_penalty(params, mask=lambda x: True)) == pytest.approx(5.0)
    assert float(losses.l2_penalty({"b": jnp.ones(3)})) == 0.0
    bf = {"w": jnp.full((64, 64), 0.01, jnp.bfloat16)}
    assert losses.l2_penalty(bf).dtype == jnp.float32
    assert float(losses.l2_penalty(bf)) == pytest.approx(0.5 * 4096 * float(jnp.bfloat16(0.01)) ** 2, rel=1e-5)
    assert float(jit(losses.l2_penalty)(params)) == pytest.approx(2.0)


def test_default_penalty_mask_is_the_library_kernel_rule() -> None:
    leaves = [jnp.ones((2, 2)), np.ones((3, 3, 1, 2), np.float16), jnp.ones(3), jnp.ones(()),
              jnp.ones((2, 2), jnp.int32), 1.0, "w"]
    assert [losses.default_penalty_mask(x) for x in leaves] == [True, True, False, False, False,
                                                                False, False]
    assert [losses.default_penalty_mask(x) for x in leaves] == [_tree.is_kernel(x) for x in leaves]


def _message(exc: type[Exception], fn: Callable[..., object], *args: object,
             **kwargs: object) -> str:
    """Call ``fn``, expect ``exc`` with a message in the library's one style, return it."""
    with pytest.raises(exc) as info:
        fn(*args, **kwargs)
    text = str(info.value)
    assert STYLE.match(text), text
    return text


def test_bad_inputs() -> None:
    z = jnp.zeros((3, 4))
    assert _message(ValueError, losses.softmax_cross_entropy, z, jnp.zeros((4,), jnp.int32)) == (
        "softmax_cross_entropy: argument 'labels' must be an array of shape (3,), got an array of "
        "shape (4,) and dtype int32; integer class labels have the shape logits.shape[:-1] = (3,)")
    assert "floating (one-hot or soft) labels have the shape of the logits (3, 4)" in _message(
        ValueError, losses.softmax_cross_entropy, z, jnp.zeros((3, 5)))
    assert "argument 'labels' must be integer class indices or floating one-hot vectors" in _message(
        TypeError, losses.softmax_cross_entropy, z, jnp.zeros((3,), jnp.bool_))
    assert "argument 'logits' must be a floating array" in _message(
        TypeError, losses.softmax_cross_entropy, jnp.zeros((3, 4), jnp.int32), jnp.zeros((3,), jnp.int32))
    assert "argument 'logits' must be an array with a trailing class axis" in _message(
        ValueError, losses.accuracy, jnp.zeros(()), jnp.zeros((), jnp.int32))
    assert _message(ValueError, losses.softmax_cross_entropy, z, jnp.zeros((3,), jnp.int32),
                    reduction="avg") == (
        "softmax_cross_entropy: argument 'reduction' must be one of 'mean', 'sum', 'none', got 'avg'")
    for fn in (losses.binary_cross_entropy, losses.mean_squared_error):
        assert "argument 'reduction' must be one of" in _message(ValueError, fn, z, z, reduction="x")
    assert _message(ValueError, losses.binary_cross_entropy, z, jnp.zeros((3,))).startswith(
        "binary_cross_entropy: argument 'labels' must be an array of shape (3, 4), got an array of "
        "shape (3,)")
    _message(TypeError, losses.binary_cross_entropy, jnp.zeros(3, jnp.int32), jnp.zeros(3))
    assert _message(ValueError, losses.mean_squared_error, z, jnp.zeros((4, 3))).startswith(
        "mean_squared_error: argument 'targets' must be an array of shape (3, 4)")
    assert "accuracy: argument 'labels' must be an array of shape (3,)" in _message(
        ValueError, losses.accuracy, z, jnp.zeros((2,), jnp.int32))
    assert "argument 'predictions' must be an array, got 'abc'" in _message(
        TypeError, losses.mean_squared_error, "abc", z)
    assert _message(TypeError, losses.l2_penalty, {"w": z}, mask={"v": True}).startswith(
        "l2_penalty: argument 'mask' must be a pytree with the structure of the params, got ")
    assert "missing leaves" in _message(TypeError, losses.l1_penalty, {"w": z, "b": z}, mask={"w": True})


def test_shape_checks_run_at_trace_time_only() -> None:
    """Under jit the shape assertion runs once, when tracing; the compiled call repeats nothing."""
    traces: list[int] = []

    def loss(z: jax.Array, y: jax.Array) -> jax.Array:
        traces.append(1)
        return losses.softmax_cross_entropy(z, y)

    step = jit(loss)
    z, y = jnp.zeros((3, 4)), jnp.zeros((3,), jnp.int32)
    for _ in range(3):
        step(z, y)
    assert len(traces) == 1
    with pytest.raises(ValueError, match=r"argument 'labels' must be an array of shape \(3,\)"):
        step(z, jnp.zeros((2,), jnp.int32))  # a new shape re-traces, and the check catches it


@pytest.mark.parametrize("eps", [0.0, 0.1, 0.5, 1.0])
def test_label_smoothing_equals_optax_smoothed_cross_entropy(eps: float) -> None:
    """Issue 17: softmax_cross_entropy(label_smoothing=eps) == optax.smooth_labels + CE (rel 1e-6)."""
    import optax

    rng = np.random.default_rng(0)
    logits = jnp.asarray(rng.normal(size=(16, 7)) * 3, jnp.float32)
    labels = jnp.asarray(rng.integers(0, 7, 16))
    soft = jnp.asarray(rng.dirichlet(np.ones(7), 16), jnp.float32)  # e.g. mixup targets
    for targets, ours_labels in ((jax.nn.one_hot(labels, 7), labels), (soft, soft)):
        want = optax.softmax_cross_entropy(logits, optax.smooth_labels(targets, eps))
        got = losses.softmax_cross_entropy(logits, ours_labels, label_smoothing=eps, reduction="none")
        np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-6, atol=1e-6)
    def smoothed(e: jax.Array) -> jax.Array:
        return losses.softmax_cross_entropy(logits, labels, label_smoothing=e)

    traced = jit(smoothed)
    np.testing.assert_allclose(float(traced(jnp.float32(eps))),
                               float(losses.softmax_cross_entropy(logits, labels, label_smoothing=eps)),
                               rtol=1e-6)
    bad = losses.softmax_cross_entropy(logits, labels.at[0].set(7), label_smoothing=eps, reduction="none")
    assert np.isnan(float(bad[0]))  # an out-of-range label stays NaN, smoothed or not


def test_label_smoothing_outside_the_unit_interval_is_refused() -> None:
    z = jnp.zeros((2, 3))
    with pytest.raises(ValueError, match=r"softmax_cross_entropy: argument 'label_smoothing' must be in \[0, 1\], got 1.5"):
        losses.softmax_cross_entropy(z, jnp.array([0, 1]), label_smoothing=1.5)
