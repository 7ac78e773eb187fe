"""serial / parallel / Concatenate / Residual: shapes, state threading, keys, jit/grad/vmap, errors."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from functrain.layers import (
    BatchNorm,
    BatchNormState,
    Concatenate,
    Conv2D,
    ConvParams,
    Dense,
    DenseParams,
    Dropout,
    Flatten,
    Identity,
    LeakyRelu,
    MaxPool,
    Relu,
    Residual,
    ResidualParams,
    Tanh,
    batch_norm,
    conv2d,
    dense,
    dropout,
    max_pool,
    parallel,
    serial,
)

KEY = jax.random.key(0)


def _mlp() -> Any:
    return serial(Dense(8), BatchNorm(momentum=0.5), Relu, Dropout(0.5), Dense(3))


def test_serial_init_structure_and_manual_equivalence() -> None:
    model = _mlp()
    params, state, out = model.init(KEY, (-1, 4))
    assert out == (-1, 3)
    assert len(params) == 5 and len(state) == 5
    assert isinstance(params[0], DenseParams) and params[2] == () and params[3] == ()
    assert isinstance(state[1], BatchNormState) and state[0] == ()
    x = jax.random.normal(KEY, (6, 4))
    k = jax.random.key(7)
    y, new_state = model.apply(params, state, x, key=k, train=True)
    # The same computation by hand with the ops, the key split once per layer.
    keys = jax.random.split(k, 5)
    h = dense(params[0], x)
    h, bn_state = batch_norm(params[1], state[1], h, train=True, momentum=0.5)
    h = jax.nn.relu(h)
    h = dropout(keys[3], h, rate=0.5, train=True)
    ref = dense(params[4], h)
    np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(new_state[1].mean, bn_state.mean, rtol=1e-6)
    np.testing.assert_allclose(new_state[1].var, bn_state.var, rtol=1e-6)
    assert new_state[0] == () and new_state[3] == ()


def test_serial_eval_is_deterministic_and_needs_no_key() -> None:
    model = _mlp()
    params, state, _ = model.init(KEY, (-1, 4))
    x = jax.random.normal(KEY, (6, 4))
    y1, s1 = model.apply(params, state, x, train=False)
    y2, _ = jax.jit(lambda p, s, z: model.apply(p, s, z, train=False))(params, state, x)
    np.testing.assert_allclose(y1, y2, rtol=1e-6)
    np.testing.assert_array_equal(s1[1].mean, state[1].mean)
    with pytest.raises(ValueError, match=r"Dropout\(0.5\): train=True draws a random mask and needs a PRNG key"):
        model.apply(params, state, x, train=True)
    # Different keys give different training outputs.
    ya, _ = model.apply(params, state, x, key=jax.random.key(1), train=True)
    yb, _ = model.apply(params, state, x, key=jax.random.key(2), train=True)
    assert not np.allclose(ya, yb)


def test_serial_model_jit_grad_and_state_threading() -> None:
    model = _mlp()
    params, state, _ = model.init(KEY, (-1, 4))
    x = jax.random.normal(KEY, (16, 4))
    labels = jnp.arange(16) % 3

    def loss(p: Any, s: Any, k: jax.Array) -> tuple[jax.Array, Any]:
        logits, new_s = model.apply(p, s, x, key=k, train=True)
        return -jnp.mean(jax.nn.log_softmax(logits)[jnp.arange(16), labels]), new_s

    @jax.jit
    def step(p: Any, s: Any, k: jax.Array) -> tuple[Any, Any, jax.Array]:
        (val, new_s), g = jax.value_and_grad(loss, has_aux=True)(p, s, k)
        return jax.tree_util.tree_map(lambda a, b: a - 0.1 * b, p, g), new_s, val

    losses = []
    for i in range(30):
        params, state, val = step(params, state, jax.random.key(i))
        losses.append(float(val))
    assert losses[-1] < losses[0]
    assert not np.allclose(state[1].mean, 0.0)  # the running statistics were updated through serial



def test_serial_gradient_matches_finite_difference() -> None:
    # A smooth model (tanh instead of ReLU kinks) with batch norm and a fixed dropout mask.
    model = serial(Dense(8), BatchNorm(), Tanh, Dropout(0.25), Dense(1))
    p0, s0, _ = model.init(KEY, (-1, 4))
    x = jax.random.normal(KEY, (16, 4))
    k = jax.random.key(3)

    def loss(p: Any) -> jax.Array:
        return jnp.mean(model.apply(p, s0, x, key=k, train=True)[0] ** 2)

    g = jax.jit(jax.grad(loss))(p0)
    d = jax.tree_util.tree_map(lambda a: jax.random.normal(jax.random.key(11), a.shape), p0)
    eps = 1e-2
    plus = jax.tree_util.tree_map(lambda a, b: a + eps * b, p0, d)
    minus = jax.tree_util.tree_map(lambda a, b: a - eps * b, p0, d)
    fd = (float(loss(plus)) - float(loss(minus))) / (2 * eps)
    directional = sum(float(jnp.vdot(a, b)) for a, b in zip(jax.tree_util.tree_leaves(g),
                                                           jax.tree_util.tree_leaves(d)))
    np.testing.assert_allclose(directional, fd, rtol=1e-2, atol=1e-4)


def test_serial_vmap_over_seeds_and_ensemble() -> None:
    model = serial(Conv2D(4, 3), BatchNorm(), Relu, MaxPool(2), Flatten, Dropout(0.2), Dense(3))
    keys = jax.random.split(KEY, 3)

    def init(k: jax.Array) -> tuple[Any, Any]:
        p, s, _ = model.init(k, (-1, 6, 6, 2))
        return p, s

    params, state = jax.jit(jax.vmap(init))(keys)  # init uses only static shapes: vmappable over seeds
    assert params[0].w.shape == (3, 3, 3, 2, 4)
    assert not np.allclose(params[0].w[0], params[0].w[1])
    x = jax.random.normal(KEY, (5, 6, 6, 2))

    def run(p: Any, s: Any, k: jax.Array) -> tuple[jax.Array, Any]:
        return model.apply(p, s, x, key=k, train=True)

    ys, new_states = jax.jit(jax.vmap(run))(params, state, keys)
    assert ys.shape == (3, 5, 3)
    for i in range(3):
        p_i = jax.tree_util.tree_map(lambda a: a[i], params)
        s_i = jax.tree_util.tree_map(lambda a: a[i], state)
        y_i, ns_i = model.apply(p_i, s_i, x, key=keys[i], train=True)
        np.testing.assert_allclose(ys[i], y_i, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(new_states[1].var[i], ns_i[1].var, rtol=1e-5)
        # Each member of the ensemble equals a model initialized from its own key.
        p_ref, _, _ = model.init(keys[i], (-1, 6, 6, 2))
        np.testing.assert_allclose(p_i[0].w, p_ref[0].w, rtol=1e-6)
    g = jax.jit(jax.vmap(jax.grad(lambda p, s, k: jnp.sum(run(p, s, k)[0] ** 2))))(params, state, keys)
    assert g[0].w.shape == params[0].w.shape


def test_serial_batch_norm_axis_name_under_vmap() -> None:
    model = serial(Dense(4), BatchNorm(axis_name="shards"), Relu)
    plain = serial(Dense(4), BatchNorm(), Relu)
    params, state, _ = model.init(KEY, (-1, 3))
    x = jax.random.normal(KEY, (4, 5, 3))
    ys, ss = jax.vmap(lambda xs: model.apply(params, state, xs, train=True), axis_name="shards")(x)
    y, s = plain.apply(params, state, x.reshape(20, 3), train=True)
    np.testing.assert_allclose(ys.reshape(20, 4), y, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(ss[1].mean[2], s[1].mean, rtol=1e-5, atol=1e-6)


def test_serial_init_error_names_position_layer_and_shapes() -> None:
    model = serial(Conv2D(4, 3, padding="VALID"), MaxPool(2), Conv2D(8, 3, padding="VALID"), Flatten, Dense(2))
    with pytest.raises(ValueError, match=r"serial: layer 2 of 5: Conv2D\(8, \(3, 3\)\): the kernel \(3, 3\).*"
                                         r"larger than the input's spatial size \(2, 2\).*\(-1, 2, 2, 4\)"):
        model.init(KEY, (-1, 6, 6, 1))
    params, state, out = model.init(KEY, (-1, 12, 12, 1))
    assert out == (-1, 2)
    with pytest.raises(ValueError, match=r"Conv2D\(4, \(3, 3\)\): expected an input with 1 channels.*"
                                         r"\(2, 12, 12, 3\)"):
        jax.jit(lambda z: model.apply(params, state, z, train=False))(jnp.ones((2, 12, 12, 3)))
    with pytest.raises(ValueError, match=r"Conv2D\(4, \(3, 3\)\): expected an input_shape of rank 4"):
        model.init(KEY, (-1, 12, 12))
    with pytest.raises(ValueError, match="serial: expected params as a tuple with one entry per layer"):
        model.apply(params[:3], state, jnp.ones((2, 12, 12, 1)), train=False)


def test_serial_rejects_non_layers() -> None:
    with pytest.raises(TypeError, match=r"serial: argument 1 .*the function LeakyRelu \(did you forget to call it"):
        serial(Dense(3), LeakyRelu)  # type: ignore[arg-type]  # deliberately wrong
    with pytest.raises(ValueError, match="serial: argument 0 is parallel"):
        serial(parallel(Dense(2), Dense(3)), Dense(3))
    with pytest.raises(ValueError, match="serial: argument 1 is a join"):
        serial(Dense(2), Concatenate)
    with pytest.raises(TypeError, match="parallel: argument 0 must be a Layer"):
        parallel(Concatenate)  # type: ignore[arg-type]  # deliberately wrong
    with pytest.raises(ValueError, match="parallel: needs at least one branch"):
        parallel()


def test_parallel_concatenate_inception_block() -> None:
    block = serial(
        parallel(
            Conv2D(3, 1),
            serial(Conv2D(2, 1), Relu, Conv2D(4, 3)),
            serial(MaxPool(3, stride=1, padding="SAME"), Conv2D(2, 1)),
            Identity,
        ),
        Concatenate,
    )
    params, state, out = block.init(KEY, (-1, 6, 6, 5))
    assert out == (-1, 6, 6, 3 + 4 + 2 + 5)
    assert len(params) == 2 and len(params[0]) == 4 and params[1] == ()
    x = jax.random.normal(KEY, (2, 6, 6, 5))
    y, new_state = jax.jit(lambda p, s, z: block.apply(p, s, z, train=False))(params, state, x)
    b0, b1, b2, _ = params[0]
    ref = jnp.concatenate([
        conv2d(b0, x),
        conv2d(b1[2], jax.nn.relu(conv2d(b1[0], x))),
        conv2d(b2[1], max_pool(x, 3, stride=1, padding="SAME")),
        x,
    ], axis=-1)
    np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-5)
    assert new_state == state  # no batch norm inside: all empty tuples
    with pytest.raises(ValueError, match=r"Concatenate: every input must have the same shape except in the last"):
        serial(parallel(Conv2D(2, 1), MaxPool(2)), Concatenate).init(KEY, (-1, 6, 6, 5))


def test_residual_identity_and_projection() -> None:
    body = serial(Dense(4), Relu, Dense(4))
    res = Residual(body)
    params, state, out = res.init(KEY, (-1, 4))
    assert out == (-1, 4) and isinstance(params, ResidualParams) and params.projection == ()
    x = jax.random.normal(KEY, (3, 4))
    y, _ = res.apply(params, state, x, train=False)
    np.testing.assert_allclose(y, x + body.apply(params.body, state, x, train=False)[0], rtol=1e-6)

    # A dense projection when the width changes.
    res = Residual(serial(Dense(6), Relu))
    params, state, out = res.init(KEY, (-1, 4))
    assert out == (-1, 6) and isinstance(params.projection, DenseParams)
    y, _ = res.apply(params, state, x, train=False)
    np.testing.assert_allclose(y, dense(params.projection, x) + jax.nn.relu(dense(params.body[0], x)), rtol=1e-5,
                               atol=1e-6)

    # A strided 1x1 convolution when the body downsamples and widens an image; BN state threads through.
    body = serial(Conv2D(8, 3, stride=2), BatchNorm(), Relu, Conv2D(8, 3), BatchNorm())
    res = Residual(body)
    params, state, out = res.init(KEY, (-1, 7, 7, 3))
    assert out == (-1, 4, 4, 8)
    assert isinstance(params.projection, ConvParams) and params.projection.w.shape == (1, 1, 3, 8)
    xi = jax.random.normal(KEY, (2, 7, 7, 3))
    y, new_state = jax.jit(lambda p, s, z: res.apply(p, s, z, train=True))(params, state, xi)
    body_y, body_s = body.apply(params.body, state, xi, train=True)
    np.testing.assert_allclose(y, conv2d(params.projection, xi, stride=2) + body_y, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(new_state[1].mean, body_s[1].mean, rtol=1e-5, atol=1e-7)
    g = jax.grad(lambda p: jnp.sum(res.apply(p, state, xi, train=True)[0] ** 2))(params)
    assert g.projection.w.shape == (1, 1, 3, 8)

    with pytest.raises(ValueError, match=r"Residual: cannot project the shortcut from input shape \(-1, 8, 8, 3\)"):
        Residual(Conv2D(3, 3, padding="VALID")).init(KEY, (-1, 8, 8, 3))
    with pytest.raises(ValueError, match="Residual: the body must keep the rank"):
        Residual(serial(Flatten, Dense(3))).init(KEY, (-1, 4, 4, 3))
    with pytest.raises(TypeError, match="Residual: argument 'layer' must be a Layer"):
        Residual(Concatenate)  # type: ignore[arg-type]  # deliberately wrong


def test_residual_ensemble_vmap() -> None:
    res = Residual(serial(Dense(5), Relu))
    keys = jax.random.split(KEY, 2)
    params = jax.vmap(lambda k: res.init(k, (-1, 3))[0])(keys)
    x = jax.random.normal(KEY, (4, 3))
    ys = jax.vmap(lambda p: res.apply(p, (((), ())), x, train=False)[0])(params)
    for i in range(2):
        p_i = jax.tree_util.tree_map(lambda a: a[i], params)
        np.testing.assert_allclose(ys[i], res.apply(p_i, ((), ()), x, train=False)[0], rtol=1e-5, atol=1e-6)
