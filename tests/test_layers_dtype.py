"""``dtype=`` on every layer constructor and ``init_*`` function, and a train step in float64
(x64), bfloat16 and float16: parameters keep their dtype; float64 matches a hand-written jax.grad
reference. Bad dtypes are refused naming ``dtype``."""

from __future__ import annotations

import re
from collections.abc import Callable, Generator
from contextlib import contextmanager
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax
from _typed import jit, value_and_grad

from functrain import layers as L
from functrain import optim, train
from functrain.typing import PyTree

STYLE = re.compile(r"^[\w.]+: argument 'dtype' must be .+, got .+$", re.S)
KEY = jax.random.key(0)
LOW = [jnp.float16, jnp.bfloat16]
ALL = ["float16", "bfloat16", "float64"]

# (name, constructor taking dtype, input shape): every layer with parameters or state.
LAYERS: list[tuple[str, Callable[[Any], L.Layer], tuple[int, ...]]] = [
    ("Dense", lambda dt: L.Dense(3, dtype=dt), (2, 4)),
    ("Conv1D", lambda dt: L.Conv1D(3, 2, dtype=dt), (2, 5, 2)),
    ("Conv2D", lambda dt: L.Conv2D(3, 2, dtype=dt), (2, 4, 4, 2)),
    ("BatchNorm", lambda dt: L.BatchNorm(dtype=dt), (4, 3)),
    ("LayerNorm", lambda dt: L.LayerNorm(dtype=dt), (2, 3)),
    ("WeightNormDense", lambda dt: L.WeightNormDense(3, dtype=dt), (2, 4)),
    ("WeightNormConv2D", lambda dt: L.WeightNormConv2D(3, 2, dtype=dt), (2, 4, 4, 2)),
    ("Residual", lambda dt: L.Residual(L.Dense(5, dtype=dt), dtype=dt), (2, 4)),
    ("Residual-conv", lambda dt: L.Residual(L.Conv2D(3, 2, stride=2, dtype=dt), dtype=dt), (2, 4, 4, 2)),
]

# (name, init function taking key and dtype)
INITS: list[tuple[str, Callable[[jax.Array, Any], PyTree]]] = [
    ("init_dense", lambda k, dt: L.init_dense(k, 4, 3, dtype=dt)),
    ("init_conv1d", lambda k, dt: L.init_conv1d(k, 2, 3, 2, dtype=dt)),
    ("init_conv2d", lambda k, dt: L.init_conv2d(k, 2, 3, 2, dtype=dt)),
    ("init_batch_norm", lambda k, dt: L.init_batch_norm(k, 3, dtype=dt)[0]),
    ("init_layer_norm", lambda k, dt: L.init_layer_norm(k, 3, dtype=dt)),
    ("init_weight_norm", lambda k, dt: L.init_weight_norm(k, (3, 3, 2, 4), dtype=dt)),
]


@contextmanager
def precision(name: str) -> Generator[Any]:
    """The dtype ``name``, under ``jax.enable_x64`` for float64."""
    with jax.enable_x64(name == "float64"):
        yield jnp.dtype(name)


def _dtypes(tree: PyTree) -> set[str]:
    return {jnp.dtype(leaf.dtype).name for leaf in jax.tree_util.tree_leaves(tree)}


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize(("layer_name", "make", "shape"), LAYERS, ids=[c[0] for c in LAYERS])
def test_constructor_builds_parameters_in_dtype(layer_name: str, make: Callable[[Any], L.Layer],
                                                shape: tuple[int, ...], name: str) -> None:
    with precision(name) as dt:
        layer = make(dt)
        params, state, _ = layer.init(KEY, shape)
        assert _dtypes(params) == {dt.name}
        x = jax.random.normal(jax.random.key(1), shape, dt)
        y, new_state = layer.apply(params, state, x, train=True)
        assert y.dtype == dt  # the forward pass stays in the dtype
        if layer_name == "BatchNorm":  # running statistics in at least float32
            stats = "float64" if name == "float64" else "float32"
            assert _dtypes(state) == _dtypes(new_state) == {stats}


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize(("fn_name", "init"), INITS, ids=[c[0] for c in INITS])
def test_init_function_builds_parameters_in_dtype(fn_name: str, init: Callable[[jax.Array, Any], PyTree],
                                                  name: str) -> None:
    with precision(name) as dt:
        assert _dtypes(init(KEY, dt)) == {dt.name}
        assert _dtypes(init(KEY, jnp.float32)) == {"float32"}  # explicit float32 under x64 too


@pytest.mark.parametrize(("layer_name", "make", "shape"), LAYERS, ids=[c[0] for c in LAYERS])
def test_default_stays_float32_under_x64(layer_name: str, make: Callable[[Any], L.Layer],
                                         shape: tuple[int, ...]) -> None:
    with jax.enable_x64(True):
        params, _, _ = make(jnp.float32).init(KEY, shape)
        assert _dtypes(params) == {"float32"}
    assert _dtypes(L.serial(L.Dense(2), L.BatchNorm()).init(KEY, (2, 3))[0]) == {"float32"}


def test_low_precision_values_are_rounded_float32_draws() -> None:
    # bfloat16 parameters are the float32 draw rounded once (same key), not a different draw.
    p32 = L.init_weight_norm(KEY, (4, 3), dtype=jnp.float32)
    p16 = L.init_weight_norm(KEY, (4, 3), dtype=jnp.bfloat16)
    np.testing.assert_array_equal(np.asarray(p16.v, np.float32), np.asarray(p32.v.astype(jnp.bfloat16), np.float32))
    np.testing.assert_allclose(np.asarray(p16.g, np.float32), np.asarray(p32.g), rtol=1e-2)


def test_residual_projection_follows_the_body_dtype() -> None:
    params, _, _ = L.Residual(L.Dense(5, dtype=jnp.bfloat16)).init(KEY, (2, 4))
    assert params.projection.w.dtype == jnp.bfloat16
    params, _, _ = L.Residual(L.serial(L.Relu, L.Dense(5))).init(KEY, (2, 4))
    assert params.projection.w.dtype == jnp.float32
    params, _, _ = L.Residual(L.Dense(5), dtype=jnp.float16).init(KEY, (2, 4))  # explicit wins
    assert params.projection.w.dtype == jnp.float16


# -- bad dtypes -----------------------------------------------------------------------------------

BAD: list[tuple[object, type[Exception]]] = [
    (jnp.int32, ValueError), ("int8", ValueError), (jnp.complex64, ValueError), ("nonsense", TypeError),
    (None, TypeError), (3, TypeError),
]


@pytest.mark.parametrize(("bad", "error"), BAD, ids=[repr(b[0]) for b in BAD])
@pytest.mark.parametrize(("layer_name", "make", "shape"), LAYERS, ids=[c[0] for c in LAYERS])
def test_constructor_refuses_a_bad_dtype(layer_name: str, make: Callable[[Any], L.Layer],
                                         shape: tuple[int, ...], bad: object, error: type[Exception]) -> None:
    if bad is None and layer_name.startswith("Residual"):
        pytest.skip("None is Residual's default (follow the body)")
    with pytest.raises(error) as info:
        make(bad)
    assert STYLE.match(str(info.value)), str(info.value)


@pytest.mark.parametrize(("bad", "error"), BAD, ids=[repr(b[0]) for b in BAD])
@pytest.mark.parametrize(("fn_name", "init"), INITS, ids=[c[0] for c in INITS])
def test_init_function_refuses_a_bad_dtype(fn_name: str, init: Callable[[jax.Array, Any], PyTree],
                                           bad: object, error: type[Exception]) -> None:
    with pytest.raises(error, match=rf"^{fn_name}: argument 'dtype' must be a floating dtype") as info:
        init(KEY, bad)
    assert STYLE.match(str(info.value))


@pytest.mark.parametrize(("layer_name", "make", "shape"), LAYERS, ids=[c[0] for c in LAYERS])
def test_float64_without_x64_is_refused_at_init(layer_name: str, make: Callable[[Any], L.Layer],
                                                shape: tuple[int, ...]) -> None:
    # It would silently be float32; "float" is numpy's name of float64.
    layer = make("float")  # the flag may still be turned on before init
    who = {"Residual": "Dense", "Residual-conv": "Conv2D"}.get(layer_name, layer_name)  # the body first
    with pytest.raises(ValueError, match=rf"^{who}: argument 'dtype' must be .*jax.enable_x64.*got 'float64'$"):
        layer.init(KEY, shape)
    with jax.enable_x64(True):
        assert _dtypes(layer.init(KEY, shape)[0]) == {"float64"}


@pytest.mark.parametrize(("fn_name", "init"), INITS, ids=[c[0] for c in INITS])
def test_init_function_refuses_float64_without_x64(fn_name: str, init: Callable[[jax.Array, Any], PyTree]) -> None:
    with pytest.raises(ValueError, match=rf"^{fn_name}: argument 'dtype' must be .*jax.enable_x64"):
        init(KEY, jnp.float64)


# -- a train step in each dtype -------------------------------------------------------------------


def _mlp(dt: Any) -> L.Layer:
    return L.serial(L.Dense(8, dtype=dt), L.Relu, L.Dense(3, dtype=dt))


def _convnet(dt: Any) -> L.Layer:
    return L.serial(L.Conv2D(4, 3, dtype=dt), L.BatchNorm(dtype=dt), L.Relu, L.GlobalAvgPool,
                    L.Dense(3, dtype=dt))


def _batch(dt: Any, shape: tuple[int, ...]) -> tuple[jax.Array, jax.Array]:
    x = jax.random.normal(jax.random.key(1), shape, jnp.float32).astype(dt)
    return x, jnp.array([0, 1, 2, 1, 0, 2][: shape[0]])


def _one_step(model: L.Layer, dt: Any, shape: tuple[int, ...],
              opt: optim.GradientTransformation[Any]) -> tuple[Any, Any, Any]:
    params, model_state, _ = model.init(KEY, shape)
    state = train.init_train_state(params, model_state, opt)
    step = jit(train.make_train_step(train.classifier_loss(model.apply, train=True), opt))
    new, metrics = step(state, _batch(dt, shape), jax.random.key(2))
    return state, new, metrics


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("opt_name", ["sgd", "adam"])
@pytest.mark.parametrize(("net", "shape"), [(_mlp, (6, 5)), (_convnet, (6, 5, 5, 2))], ids=["mlp", "convnet"])
def test_train_step_keeps_the_dtype(net: Callable[[Any], L.Layer], shape: tuple[int, ...], opt_name: str,
                                    name: str) -> None:
    with precision(name) as dt:
        opt = optim.sgd(0.1) if opt_name == "sgd" else optim.adam(1e-2)
        state, new, metrics = _one_step(net(dt), dt, shape, opt)
        assert _dtypes(new.params) == {dt.name}
        assert jnp.isfinite(metrics["loss"])
        moved = [bool(jnp.any(a != b)) for a, b in zip(jax.tree_util.tree_leaves(state.params),
                                                      jax.tree_util.tree_leaves(new.params), strict=True)]
        assert sum(moved) >= len(moved) - 1  # a real step (a bias may be tiny in float16)
        for before, after in zip(jax.tree_util.tree_leaves(state.model_state),
                                 jax.tree_util.tree_leaves(new.model_state), strict=True):
            assert after.dtype == before.dtype  # the running statistics keep theirs


def _ref_loss_mlp(p: dict[str, jax.Array], x: jax.Array, y: jax.Array) -> jax.Array:
    h = jnp.maximum(x @ p["w1"] + p["b1"], 0.0)
    logp = jax.nn.log_softmax(h @ p["w2"] + p["b2"])
    return -jnp.mean(logp[jnp.arange(y.shape[0]), y])


def test_float64_mlp_step_matches_a_hand_written_gradient() -> None:
    with jax.enable_x64(True):
        state, new, metrics = _one_step(_mlp(jnp.float64), jnp.float64, (6, 5), optim.sgd(0.1))
        d1, _, d2 = state.params
        p = {"w1": d1.w, "b1": d1.b, "w2": d2.w, "b2": d2.b}
        x, y = _batch(jnp.float64, (6, 5))
        loss, g = value_and_grad(_ref_loss_mlp)(p, x, y)
        assert metrics["loss"].dtype == jnp.float64
        np.testing.assert_allclose(metrics["loss"], loss, rtol=1e-13)
        got = {"w1": new.params[0].w, "b1": new.params[0].b, "w2": new.params[2].w, "b2": new.params[2].b}
        for k in p:
            np.testing.assert_allclose(got[k], p[k] - 0.1 * g[k], rtol=1e-12, atol=1e-15)


def _ref_loss_convnet(p: dict[str, jax.Array], x: jax.Array, y: jax.Array) -> tuple[jax.Array, jax.Array]:
    h = lax.conv_general_dilated(x, p["wc"], (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))
    h = h + p["bc"]
    mean, var = jnp.mean(h, axis=(0, 1, 2)), jnp.var(h, axis=(0, 1, 2))
    h = jnp.maximum((h - mean) / jnp.sqrt(var + 1e-5) * p["scale"] + p["bias"], 0.0)
    logp = jax.nn.log_softmax(jnp.mean(h, axis=(1, 2)) @ p["wd"] + p["bd"])
    return -jnp.mean(logp[jnp.arange(y.shape[0]), y]), mean


def test_float64_convnet_step_matches_a_hand_written_gradient() -> None:
    with jax.enable_x64(True):
        state, new, metrics = _one_step(_convnet(jnp.float64), jnp.float64, (6, 5, 5, 2), optim.sgd(0.1))
        conv, bn, _, _, dense = state.params
        p = {"wc": conv.w, "bc": conv.b, "scale": bn.scale, "bias": bn.bias, "wd": dense.w, "bd": dense.b}
        x, y = _batch(jnp.float64, (6, 5, 5, 2))
        (loss, mean), g = value_and_grad(_ref_loss_convnet, has_aux=True)(p, x, y)
        np.testing.assert_allclose(metrics["loss"], loss, rtol=1e-12)
        nconv, nbn, _, _, ndense = new.params
        got = {"wc": nconv.w, "bc": nconv.b, "scale": nbn.scale, "bias": nbn.bias, "wd": ndense.w, "bd": ndense.b}
        for k in p:
            np.testing.assert_allclose(got[k], p[k] - 0.1 * g[k], rtol=1e-10, atol=1e-13, err_msg=k)
        np.testing.assert_allclose(new.model_state[1].mean, 0.1 * mean, rtol=1e-12)  # momentum 0.9 from 0
