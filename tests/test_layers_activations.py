"""Activations against closed forms (float64 NumPy), and their layer forms."""

from __future__ import annotations

import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _typed import grad, jit, vmap

from functrain import layers as L

X = np.linspace(-4.0, 4.0, 41)
_erf = np.vectorize(math.erf)


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(-1, keepdims=True))
    out: np.ndarray = e / e.sum(-1, keepdims=True)
    return out


CASES: list[tuple[str, Callable[[jax.Array], jax.Array], Callable[[np.ndarray], np.ndarray]]] = [
    ("relu", L.relu, lambda x: np.maximum(x, 0.0)),
    ("leaky_relu", L.leaky_relu, lambda x: np.where(x >= 0, x, 0.01 * x)),
    ("leaky_relu_0.2", lambda x: L.leaky_relu(x, 0.2), lambda x: np.where(x >= 0, x, 0.2 * x)),
    ("elu", L.elu, lambda x: np.where(x > 0, x, np.expm1(x))),
    ("elu_2", lambda x: L.elu(x, 2.0), lambda x: np.where(x > 0, x, 2.0 * np.expm1(x))),
    ("gelu", L.gelu, lambda x: 0.5 * x * (1.0 + _erf(x / np.sqrt(2.0)))),
    ("gelu_tanh", lambda x: L.gelu(x, approximate=True),
     lambda x: 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x**3)))),
    ("tanh", L.tanh, np.tanh),
    ("sigmoid", L.sigmoid, lambda x: 1.0 / (1.0 + np.exp(-x))),
    ("softmax", L.softmax, _softmax),
    ("log_softmax", L.log_softmax, lambda x: np.log(_softmax(x))),
]


@pytest.mark.parametrize(("name", "fn", "ref"), CASES, ids=[c[0] for c in CASES])
def test_activation_matches_closed_form(name: str, fn: Callable[[jax.Array], jax.Array],
                                        ref: Callable[[np.ndarray], np.ndarray]) -> None:
    x = X.reshape(1, -1)
    y = jit(fn)(jnp.asarray(x, jnp.float32))
    assert y.shape == x.shape and y.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(y), ref(x), rtol=1e-5, atol=1e-6)


def test_softmax_axis_argument() -> None:
    x = np.arange(6.0).reshape(2, 3)
    np.testing.assert_allclose(L.softmax(jnp.asarray(x), axis=0), _softmax(x.T).T, rtol=1e-6)
    np.testing.assert_allclose(L.log_softmax(jnp.asarray(x), axis=0), np.log(_softmax(x.T).T), rtol=1e-5)


def test_activation_gradients_and_vmap() -> None:
    x = jnp.asarray(X, jnp.float32)
    g = jit(vmap(grad(L.tanh)))(x)
    np.testing.assert_allclose(g, 1 - np.tanh(X) ** 2, rtol=1e-5, atol=1e-6)
    g = jit(vmap(grad(L.sigmoid)))(x)
    s = 1 / (1 + np.exp(-X))
    np.testing.assert_allclose(g, s * (1 - s), rtol=1e-5, atol=1e-6)


def _abs(x: jax.Array) -> jax.Array:
    return jnp.abs(x)


LAYER_CASES: list[tuple[L.Layer, Callable[[jax.Array], jax.Array]]] = [
    (L.Relu, L.relu), (L.Tanh, L.tanh), (L.Sigmoid, L.sigmoid), (L.Gelu, L.gelu),
    (L.Softmax, L.softmax), (L.LogSoftmax, L.log_softmax),
    (L.LeakyRelu(0.3), lambda x: L.leaky_relu(x, 0.3)), (L.Elu(0.5), lambda x: L.elu(x, 0.5)),
    (L.Elementwise(_abs), _abs),
]


@pytest.mark.parametrize(("layer", "fn"), LAYER_CASES)
def test_activation_layers(layer: L.Layer, fn: Callable[[jax.Array], jax.Array]) -> None:
    params, state, out = layer.init(jax.random.key(0), (-1, 4, 3))
    assert params == () and state == () and out == (-1, 4, 3)
    x = jnp.asarray(np.random.default_rng(1).standard_normal((2, 4, 3)), jnp.float32)
    y, new_state = layer.apply(params, state, x, train=True)
    assert new_state == ()
    np.testing.assert_allclose(y, fn(x), rtol=1e-6)


def test_activation_constructor_errors() -> None:
    with pytest.raises(TypeError, match=r"^LeakyRelu: argument 'negative_slope' must be a number, got '0.1'$"):
        L.LeakyRelu("0.1")  # type: ignore[arg-type]  # deliberately wrong type
    with pytest.raises(ValueError, match=r"^Elu: argument 'alpha' must be a finite number, got nan$"):
        L.Elu(float("nan"))
    with pytest.raises(TypeError, match=r"^Elementwise: argument 'fn' must be a function of an array, got 3$"):
        L.Elementwise(3)  # type: ignore[arg-type]  # deliberately wrong type
    with pytest.raises(TypeError, match=r"^Elementwise: argument 'name' must be a string or None, got 3$"):
        L.Elementwise(jnp.abs, 3)  # type: ignore[arg-type]  # deliberately wrong type
    with pytest.raises(ValueError, match=r"^Relu: argument 'input_shape' must be a shape whose non-batch sizes "
                                         r"are >= 1, got tuple \(-1, 0\)$"):
        L.Relu.init(jax.random.key(0), (-1, 0))
