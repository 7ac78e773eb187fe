"""serial / parallel / Concatenate / Residual: shapes, state threading, keys, jit/grad/vmap, errors."""

from __future__ import annotations

from typing import Any

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _typed import grad, jit, value_and_grad

from functrain import _tree, initializers
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


def _normal(seed: int, shape: tuple[int, ...]) -> jax.Array:
    """Test inputs from NumPy (a jax.random draw compiles a program per shape)."""
    return jnp.asarray(np.random.default_rng(seed).standard_normal(shape), jnp.float32)


def _mlp() -> Any:
    return serial(Dense(8), BatchNorm(momentum=0.5), Relu, Dropout(0.5), Dense(3))


def test_serial_init_structure_and_manual_equivalence() -> None:
    model = _mlp()
    params, state, out = model.init(KEY, (-1, 4))
    assert out == (-1, 3)
    assert len(params) == 5 and len(state) == 5
    assert isinstance(params[0], DenseParams) and params[2] == () and params[3] == ()
    assert isinstance(state[1], BatchNormState) and state[0] == ()
    x = _normal(0, (6, 4))
    k = jax.random.key(7)

    def by_hand(x: jax.Array) -> tuple[jax.Array, BatchNormState]:
        # The same computation with the ops, the key split once per layer.
        keys = jax.random.split(k, 5)
        h = dense(params[0], x)
        h, bn_state = batch_norm(params[1], state[1], h, train=True, momentum=0.5)
        h = dropout(keys[3], jax.nn.relu(h), rate=0.5, train=True)
        return dense(params[4], h), bn_state

    def train_apply(z: jax.Array) -> Any:
        return model.apply(params, state, z, key=k, train=True)

    y, new_state = jit(train_apply)(x)
    ref, bn_state = jit(by_hand)(x)
    np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-6)
    chex.assert_trees_all_close(new_state[1], bn_state, rtol=1e-6)
    assert new_state[0] == () and new_state[3] == ()


def test_serial_eval_is_deterministic_and_needs_no_key() -> None:
    model = _mlp()
    params, state, _ = model.init(KEY, (-1, 4))
    x = _normal(0, (6, 4))
    y1, s1 = model.apply(params, state, x, train=False)
    def eval_apply(p: Any, s: Any, z: jax.Array) -> Any:
        return model.apply(p, s, z, train=False)

    y2, _ = jit(eval_apply)(params, state, x)
    np.testing.assert_allclose(y1, y2, rtol=1e-6)
    np.testing.assert_array_equal(s1[1].mean, state[1].mean)
    with pytest.raises(ValueError, match=r"^Dropout: argument 'key' must be a PRNG key when train=True .*got None; "
                                         r"at serial layer 3 of 5$"):
        model.apply(params, state, x, train=True)
    # Different keys give different training outputs.
    def train_output(k: jax.Array) -> Any:
        return model.apply(params, state, x, key=k, train=True)[0]

    train = jit(train_output)
    assert not np.allclose(train(jax.random.key(1)), train(jax.random.key(2)))


def test_serial_model_jit_grad_and_state_threading() -> None:
    model = _mlp()
    params, state, _ = model.init(KEY, (-1, 4))
    x = _normal(0, (16, 4))
    labels = jnp.arange(16) % 3

    def loss(p: Any, s: Any, k: jax.Array) -> tuple[jax.Array, Any]:
        logits, new_s = model.apply(p, s, x, key=k, train=True)
        return -jnp.mean(jax.nn.log_softmax(logits)[jnp.arange(16), labels]), new_s

    @jit
    def step(p: Any, s: Any, k: jax.Array) -> tuple[Any, Any, jax.Array]:
        (val, new_s), g = value_and_grad(loss, has_aux=True)(p, s, k)
        return _tree.tree_map(lambda a, b: a - 0.1 * b, p, g), new_s, val

    losses: list[float] = []
    for i in range(20):
        params, state, val = step(params, state, jax.random.key(i))
        losses.append(float(val))
    assert losses[-1] < losses[0]
    assert not np.allclose(state[1].mean, 0.0)  # the running statistics were updated through serial


def test_serial_gradient_matches_finite_difference() -> None:
    # A smooth model (tanh instead of ReLU kinks) with batch norm and a fixed dropout mask, in float64.
    model = serial(Dense(8), BatchNorm(), Tanh, Dropout(0.25), Dense(1))
    with jax.enable_x64(True):
        p0, s0, _ = model.init(KEY, (-1, 4))
        p0 = _tree.tree_map(lambda a: a.astype(jnp.float64), p0)
        x = jnp.asarray(np.random.default_rng(0).standard_normal((16, 4)))
        d = _tree.tree_map(lambda a: jnp.asarray(np.random.default_rng(11).standard_normal(a.shape)), p0)
        k = jax.random.key(3)

        @jit
        def loss(p: Any) -> jax.Array:
            return jnp.mean(model.apply(p, s0, x, key=k, train=True)[0] ** 2)

        @jit
        def fd_and_directional(p: Any) -> tuple[jax.Array, jax.Array]:
            eps = 1e-5
            plus = _tree.tree_map(lambda a, b: a + eps * b, p, d)
            minus = _tree.tree_map(lambda a, b: a - eps * b, p, d)
            g = grad(loss)(p)
            directional = sum(jnp.vdot(a, b) for a, b in zip(jax.tree_util.tree_leaves(g),
                                                             jax.tree_util.tree_leaves(d)))
            return (loss(plus) - loss(minus)) / (2 * eps), jnp.asarray(directional)

        fd, directional = fd_and_directional(p0)
        np.testing.assert_allclose(float(directional), float(fd), rtol=1e-6)


def test_serial_vmap_over_seeds_and_ensemble() -> None:
    # Convolutions with vmapped kernels are tested in test_layers_conv.py; a dense model keeps this fast.
    model = serial(Dense(4), BatchNorm(), Relu, MaxPool((2,)), Flatten, Dropout(0.2), Dense(3))
    keys = jax.random.split(KEY, 3)
    x = _normal(0, (4, 4, 2))

    def member(k: jax.Array) -> tuple[Any, Any, jax.Array, Any, Any]:
        """Initialize from k (init uses only static shapes: vmappable over seeds), run, differentiate."""
        p, s, _ = model.init(k, (-1, 4, 2))

        def loss(q: Any) -> tuple[jax.Array, tuple[jax.Array, Any]]:
            y, new_s = model.apply(q, s, x, key=k, train=True)
            return jnp.sum(y**2), (y, new_s)

        g, (y, new_s) = grad(loss, has_aux=True)(p)
        return p, s, y, new_s, g

    # One compiled program for the whole ensemble, one for a single member.
    params, state, ys, new_states, g = jit(jax.vmap(member))(keys)
    one = jit(member)
    assert params[0].w.shape == (3, 2, 4) and ys.shape == (3, 4, 3)
    assert not np.allclose(params[0].w[0], params[0].w[1])
    for i in (0, 2):  # each member equals the model its own key initializes, run on its own
        chex.assert_trees_all_close(_tree.tree_map(lambda a: a[i], (params, state, ys, new_states, g)),
                                    one(keys[i]), rtol=1e-4, atol=1e-5)


def test_serial_batch_norm_axis_name_under_vmap() -> None:
    model = serial(Dense(4), BatchNorm(axis_name="shards"), Relu)
    plain = serial(Dense(4), BatchNorm(), Relu)
    params, state, _ = model.init(KEY, (-1, 3))
    x = _normal(0, (4, 5, 3))

    @jit
    def both(xx: jax.Array) -> tuple[tuple[jax.Array, Any], tuple[jax.Array, Any]]:
        def shard(xs: jax.Array) -> tuple[jax.Array, Any]:
            return model.apply(params, state, xs, train=True)

        sharded = jax.vmap(shard, axis_name="shards")(xx)
        return sharded, plain.apply(params, state, xx.reshape(20, 3), train=True)

    (ys, ss), (y, s) = both(x)
    np.testing.assert_allclose(ys.reshape(20, 4), y, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(ss[1].mean[2], s[1].mean, rtol=1e-5, atol=1e-6)


def test_serial_init_error_names_position_layer_and_shapes() -> None:
    zero = initializers.zeros()  # about shapes only: no random kernels to draw
    model = serial(Conv2D(4, 3, padding="VALID", w_init=zero), MaxPool(2),
                   Conv2D(8, 3, padding="VALID", w_init=zero), Flatten, Dense(2, w_init=zero))
    with pytest.raises(ValueError, match=r"^Conv2D: argument 'input_shape' must be a shape whose spatial sizes fit "
                                         r"the kernel \(3, 3\).*got tuple \(-1, 2, 2, 4\); spatial size \(2, 2\) is "
                                         r"too small on spatial axis 0; at serial layer 2 of 5$"):
        model.init(KEY, (-1, 6, 6, 1))
    params, state, out = model.init(KEY, (-1, 12, 12, 1))
    assert out == (-1, 2)

    def eval_apply(z: jax.Array) -> tuple[jax.Array, Any]:
        return model.apply(params, state, z, train=False)

    with pytest.raises(ValueError, match=r"^Conv2D: argument 'x' must be an array of shape \(\*, \*, \*, 1\), got "
                                         r"a traced array of shape \(2, 12, 12, 3\).*; at serial layer 0 of 5"):
        jit(eval_apply)(jnp.ones((2, 12, 12, 3)))
    with pytest.raises(ValueError, match=r"^Conv2D: argument 'input_shape' must be a shape of rank 4 .*; at serial "
                                         r"layer 0 of 5$"):
        model.init(KEY, (-1, 12, 12))
    with pytest.raises(ValueError, match=r"(?s)^serial: argument 'params' must be a tuple with one entry per layer "
                                         r"\(5\), got tuple .*; it has 3 entries$"):
        model.apply(params[:3], state, jnp.ones((2, 12, 12, 1)), train=False)
    with pytest.raises(TypeError, match=r"^serial: argument 'state' must be a tuple with one entry per layer"):
        model.apply(params, None, jnp.ones((2, 12, 12, 1)), train=False)  # type: ignore[arg-type]  # deliberate misuse


def test_serial_rejects_non_layers() -> None:
    with pytest.raises(TypeError, match=r"^serial: argument 'layers\[1\]' must be a Layer .*got the function "
                                        r"LeakyRelu; did you forget to call it, e.g. LeakyRelu\(\.\.\.\)\?$"):
        serial(Dense(3), LeakyRelu)  # type: ignore[arg-type]  # deliberately wrong
    with pytest.raises(ValueError, match=r"^serial: argument 'layers\[0\]' must be followed directly by a join "
                                         r"such as Concatenate"):
        serial(parallel(Dense(2), Dense(3)), Dense(3))
    with pytest.raises(ValueError, match=r"^serial: argument 'layers\[1\]' must be directly after parallel"):
        serial(Dense(2), Concatenate)
    with pytest.raises(TypeError, match=r"^parallel: argument 'layers\[0\]' must be a Layer"):
        parallel(Concatenate)  # type: ignore[arg-type]  # deliberately wrong
    with pytest.raises(ValueError, match=r"^parallel: argument 'layers' must be at least one branch"):
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
    x = _normal(0, (2, 6, 6, 5))

    def by_hand(z: jax.Array) -> jax.Array:
        b0, b1, b2, _ = params[0]
        return jnp.concatenate([
            conv2d(b0, z),
            conv2d(b1[2], jax.nn.relu(conv2d(b1[0], z))),
            conv2d(b2[1], max_pool(z, 3, stride=1, padding="SAME")),
            z,
        ], axis=-1)

    def eval_apply(p: Any, s: Any, z: jax.Array) -> tuple[jax.Array, Any]:
        return block.apply(p, s, z, train=False)

    y, new_state = jit(eval_apply)(params, state, x)
    np.testing.assert_allclose(y, jit(by_hand)(x), rtol=1e-5, atol=1e-5)
    assert new_state == state  # no batch norm inside: all empty tuples
    with pytest.raises(ValueError, match=r"^Concatenate: argument 'input_shapes' must be shapes that agree on every "
                                         r"axis but the last \(channel\) axis, got list \[\(-1, 6, 6, 2\), "
                                         r"\(-1, 3, 3, 5\)\]; at serial layer 0 of 2$"):
        serial(parallel(Conv2D(2, 1), MaxPool(2)), Concatenate).init(KEY, (-1, 6, 6, 5))


def test_residual_identity_and_dense_projection() -> None:
    body = serial(Dense(4), Relu, Dense(4))
    res = Residual(body)
    params, state, out = res.init(KEY, (-1, 4))
    assert out == (-1, 4) and isinstance(params, ResidualParams) and params.projection == ()
    x = _normal(0, (3, 4))
    y, _ = res.apply(params, state, x, train=False)
    np.testing.assert_allclose(y, x + body.apply(params.body, state, x, train=False)[0], rtol=1e-6)

    # A dense projection when the width changes.
    res = Residual(serial(Dense(6), Relu))
    params, state, out = res.init(KEY, (-1, 4))
    assert out == (-1, 6) and isinstance(params.projection, DenseParams)
    y, _ = res.apply(params, state, x, train=False)
    np.testing.assert_allclose(y, dense(params.projection, x) + jax.nn.relu(dense(params.body[0], x)), rtol=1e-5,
                               atol=1e-6)


def test_residual_conv_projection_threads_batch_norm_state() -> None:
    # A strided 1x1 convolution when the body downsamples and widens an image; BN state threads through.
    body = serial(Conv2D(4, 3, stride=2), BatchNorm(), Relu, Conv2D(4, 3), BatchNorm())
    res = Residual(body)
    params, state, out = res.init(KEY, (-1, 5, 5, 2))
    assert out == (-1, 3, 3, 4)
    assert isinstance(params.projection, ConvParams) and params.projection.w.shape == (1, 1, 2, 4)
    xi = _normal(1, (2, 5, 5, 2))

    @jit
    def run(p: Any, z: jax.Array) -> tuple[jax.Array, Any, jax.Array, Any, jax.Array, Any]:
        y, new_state = res.apply(p, state, z, train=True)
        body_y, body_s = body.apply(p.body, state, z, train=True)
        def loss(q: Any) -> jax.Array:
            return jnp.sum(res.apply(q, state, z, train=True)[0] ** 2)

        g = grad(loss)(p)
        return y, new_state, conv2d(p.projection, z, stride=2) + body_y, body_s, g.projection.w, g

    y, new_state, ref, body_s, g_proj, _ = run(params, xi)
    np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-5)
    chex.assert_trees_all_close(new_state, body_s, rtol=1e-6)
    assert g_proj.shape == (1, 1, 2, 4) and float(jnp.abs(g_proj).sum()) > 0


def test_residual_errors() -> None:
    zero = initializers.zeros()
    with pytest.raises(ValueError, match=r"^Residual: argument 'input_shape' must be an input whose spatial sizes a "
                                         r"strided 1x1 convolution maps onto the body's output \(-1, 6, 6, 3\).*, got "
                                         r"tuple \(-1, 8, 8, 3\); spatial 8 -> 6$"):
        Residual(Conv2D(3, 3, padding="VALID", w_init=zero)).init(KEY, (-1, 8, 8, 3))
    with pytest.raises(ValueError, match=r"^Residual: argument 'input_shape' must be a shape that the body maps to the "
                                         r"same rank and batch size, got tuple \(-1, 4, 4, 3\); the body returns "
                                         r"\(-1, 3\)$"):
        Residual(serial(Flatten, Dense(3, w_init=zero))).init(KEY, (-1, 4, 4, 3))
    with pytest.raises(TypeError, match=r"^Residual: argument 'layer' must be a Layer"):
        Residual(Concatenate)  # type: ignore[arg-type]  # deliberately wrong
    res = Residual(Dense(3, w_init=zero))
    params, state, _ = res.init(KEY, (-1, 2))
    with pytest.raises(ValueError, match=r"^Dense: argument 'x' must be an array of shape \(\*, 2\), got an "
                                         r"array of shape \(4, 5\)"):  # the body sees the input first
        res.apply(params, state, jnp.ones((4, 5)), train=False)


def test_residual_ensemble_vmap() -> None:
    res = Residual(serial(Dense(5), Relu))
    keys = jax.random.split(KEY, 2)
    x = _normal(0, (4, 3))

    def member(k: jax.Array) -> tuple[Any, jax.Array]:
        p = res.init(k, (-1, 3))[0]
        return p, res.apply(p, ((), ()), x, train=False)[0]

    params, ys = jit(jax.vmap(member))(keys)
    xn = np.asarray(x, np.float64)
    for i in range(2):
        body, proj = params.body[0], params.projection
        ref = xn @ np.asarray(proj.w[i]) + np.asarray(proj.b[i]) + np.maximum(
            xn @ np.asarray(body.w[i]) + np.asarray(body.b[i]), 0.0)
        np.testing.assert_allclose(ys[i], ref, rtol=1e-5, atol=1e-5)


def test_case_8_swapped_params_and_state_name_the_layer_and_expectation() -> None:
    """Issue 12 case 8: swapped params/model_state gave "not enough values to unpack (expected 2,
    got 0)" deep inside serial; serial, parallel and Residual now name the entry, the layer and
    the expected structure (one message style), eagerly and under jit; correct calls are untouched."""
    style = r"^[\w.]+: argument '[\w.\[\]']+' must be .+, got .+$"
    model = serial(Dense(16), BatchNorm(), Relu, Dense(3))
    params, state, _ = model.init(KEY, (-1, 4))
    x = jnp.ones((8, 4))
    expected = (r"^serial: argument 'params\[0\]' must be the parameters of layer 0 of 4, "
                r"DenseParams\(w=f32\[4,16\], b=f32\[16\]\), got \(\); params and state look swapped")
    for run in (model.apply, jit(model.apply, static_argnames="train")):
        with pytest.raises(TypeError, match=expected) as info:
            run(state, params, x, train=True)
        assert __import__("re").match(style, str(info.value))
    # A wrong entry that is not a swap: the state of layer 1 replaced by its parameters.
    with pytest.raises(TypeError, match=r"^serial: argument 'state\[1\]' must be the state of layer 1 "
                                        r"of 4, BatchNormState\(mean=f32\[16\], var=f32\[16\]\), got "
                                        r"BatchNormParams\(scale=f32\[16\], bias=f32\[16\]\)$"):
        model.apply(params, (state[0], params[1], *state[2:]), x, train=True)
    block = Residual(serial(Dense(4), BatchNorm()))
    rp, rs, _ = block.init(KEY, (-1, 4))
    with pytest.raises(TypeError, match=r"^Residual: argument 'params.body' must be the parameters of the "
                                        r"body, \(DenseParams\(w=f32\[4,4\], b=f32\[4\]\), "
                                        r"BatchNormParams.*got \(\); params and state look swapped"):
        block.apply(rs, rp, x, train=True)  # type: ignore[arg-type]  # deliberate misuse: swapped
    branches = serial(parallel(Dense(2), serial(Dense(3), BatchNorm())), Concatenate)
    bp, bs, _ = branches.init(KEY, (-1, 4))
    with pytest.raises(TypeError, match=r"^parallel: argument 'params\[0\]' must be the parameters of "
                                        r"branch 0 of 2, DenseParams.*; at serial layer 0 of 2$"):
        branches.apply(bs, bp, x, train=True)
    # Other errors are not rewritten, and correct calls still work (the check runs only on errors).
    with pytest.raises(ValueError, match=r"^Dense: argument 'x' must be an array of shape \(\*, 4\)"):
        model.apply(params, state, jnp.ones((8, 5)), train=True)
    assert model.apply(params, state, x, train=True)[0].shape == (8, 3)
    assert block.apply(rp, rs, x, train=False)[0].shape == (8, 4)
    # Lists for tuples are still accepted (the entries hold the right leaves).
    assert model.apply(list(params), list(state), x, train=False)[0].shape == (8, 3)  # type: ignore[arg-type]  # lists work at run time
