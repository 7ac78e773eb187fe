"""Convolutions against an explicit float64 NumPy loop; shape errors; jit/grad/vmap (ensemble).

Gradients: tests/test_layers_conv_gradients.py.
"""

from __future__ import annotations

import itertools
from typing import cast

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _conv_reference import conv_reference, normal
from _typed import grad, jit, make_jaxpr, vmap

from functrain import initializers
from functrain.layers import Conv1D, Conv2D, ConvParams, PaddingLike, conv1d, conv2d, init_conv1d, init_conv2d

KEY = jax.random.key(0)



CONV2D_CASES = [
    dict(stride=1, padding="SAME", dilation=1, hw=(7, 6), k=(3, 3)),
    dict(stride=2, padding="SAME", dilation=1, hw=(7, 6), k=(3, 2)),
    dict(stride=1, padding="VALID", dilation=1, hw=(7, 6), k=(3, 3)),
    dict(stride=(2, 1), padding="VALID", dilation=(1, 2), hw=(7, 8), k=(3, 3)),
    dict(stride=1, padding=1, dilation=2, hw=(6, 6), k=(3, 3)),
    dict(stride=2, padding=((1, 0), (2, 1)), dilation=1, hw=(5, 6), k=(2, 3)),
    dict(stride=1, padding="SAME", dilation=2, hw=(6, 5), k=(3, 3)),
]


@pytest.mark.parametrize("case", CONV2D_CASES)
def test_conv2d_matches_float64_loop(case: dict[str, object]) -> None:
    hw = cast("tuple[int, ...]", case["hw"])
    k = cast("tuple[int, ...]", case["k"])
    x = normal(0, (2, *hw, 3))
    params = ConvParams(normal(1, (*k, 3, 4)), normal(2, (4,)))
    stride, padding, dilation = case["stride"], case["padding"], case["dilation"]
    y = conv2d(params, x, stride=stride, padding=padding, dilation=dilation)  # type: ignore[arg-type]  # case dict values are objects
    s = (stride, stride) if isinstance(stride, int) else stride
    d = (dilation, dilation) if isinstance(dilation, int) else dilation
    ref = conv_reference(np.asarray(x), np.asarray(params.w), np.asarray(params.b), s, padding, d)  # type: ignore[arg-type]  # as above
    assert y.shape == ref.shape
    np.testing.assert_allclose(np.asarray(y), ref, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize(("stride", "padding", "dilation"), [(1, "SAME", 1), (2, "VALID", 1), (1, ((2, 1),), 2),
                                                              (3, "SAME", 1), (1, 2, 1)])
def test_conv1d_matches_float64_loop(stride: int, padding: PaddingLike, dilation: int) -> None:
    x = normal(0, (3, 9, 2))
    params = ConvParams(normal(1, (3, 2, 5)), normal(2, (5,)))
    y = conv1d(params, x, stride=stride, padding=padding, dilation=dilation)
    ref = conv_reference(np.asarray(x), np.asarray(params.w), np.asarray(params.b), (stride,), padding, (dilation,))
    assert y.shape == ref.shape
    np.testing.assert_allclose(np.asarray(y), ref, rtol=1e-5, atol=1e-4)


def test_conv_one_example_equals_batch_of_one() -> None:
    params = ConvParams(normal(1, (3, 3, 3, 4)), normal(2, (4,)))
    x = normal(0, (5, 5, 3))
    np.testing.assert_allclose(conv2d(params, x, stride=2), conv2d(params, x[None], stride=2)[0], rtol=1e-6)
    p1 = ConvParams(normal(3, (2, 3, 4)), normal(4, (4,)))
    np.testing.assert_allclose(conv1d(p1, x[0], padding="VALID"), conv1d(p1, x[:1], padding="VALID")[0], rtol=1e-6)


def test_init_conv_shapes_and_initializers() -> None:
    p = init_conv2d(KEY, 16, 32, (3, 5))
    assert p.w.shape == (3, 5, 16, 32) and p.b.shape == (32,)
    np.testing.assert_array_equal(np.asarray(p.b), 0.0)
    # glorot_uniform with HWIO fans: n_in = 15 * 16, n_out = 15 * 32.
    a = np.sqrt(6.0 / (15 * 16 + 15 * 32))
    w = np.asarray(p.w)
    assert np.abs(w).max() <= a and abs(w.var() - a * a / 3) < 0.05 * a * a / 3
    p = init_conv1d(KEY, 2, 3, 4, w_init=initializers.ones(), b_init=initializers.constant(2.0))
    assert p.w.shape == (4, 2, 3)
    np.testing.assert_array_equal(np.asarray(p.w), 1.0)
    np.testing.assert_array_equal(np.asarray(p.b), 2.0)
    with pytest.raises(ValueError, match=r"^init_conv2d: argument 'kernel_size' must be an int or a sequence of "
                                         r"2 ints, each >= 1, got tuple \(3, 0\)$"):
        init_conv2d(KEY, 1, 1, (3, 0))
    with pytest.raises(TypeError, match=r"^init_conv1d: argument 'in_channels' must be an int >= 1, got '2'$"):
        init_conv1d(KEY, "2", 1, 3)  # type: ignore[arg-type]  # deliberately wrong


def test_conv_shape_errors_raise_before_xla() -> None:
    params = init_conv2d(KEY, 3, 4, 3)
    with pytest.raises(ValueError, match=r"^conv2d: argument 'x' must be an array of shape \(\*, \*, \*, 3\), "
                                         r"got a traced array of shape \(2, 8, 8, 5\)"):
        jit(conv2d)(params, jnp.ones((2, 8, 8, 5)))  # raised while tracing, before XLA
    with pytest.raises(ValueError, match=r"^conv2d: argument 'x' must be an array of rank 3 or 4 \(N, H, W, C\) "
                                         r"or \(H, W, C\) for one example, got an array of shape \(8, 3\)"):
        conv2d(params, jnp.ones((8, 3)))
    with pytest.raises(ValueError, match=r"^conv2d: argument 'x' must be an array whose spatial sizes fit the "
                                         r"kernel \(3, 3\) .*'VALID', got an array of shape \(1, 2, 8, 3\).*"
                                         r"spatial size \(2, 8\) is too small on spatial axis 0"):
        conv2d(params, jnp.ones((1, 2, 8, 3)), padding="VALID")
    with pytest.raises(ValueError, match=r"^conv2d: .*kernel \(3, 3\) \(dilated extent \(5, 5\)\)"):
        conv2d(params, jnp.ones((1, 4, 8, 3)), padding="VALID", dilation=2)
    with pytest.raises(ValueError, match=r"^conv2d: argument 'padding' must be 'SAME', 'VALID', an int >= 0 or 2 "
                                         r"\(low, high\) pairs of ints >= 0, got 'same'$"):
        conv2d(params, jnp.ones((1, 4, 8, 3)), padding="same")  # type: ignore[arg-type]  # deliberately wrong
    with pytest.raises(ValueError, match=r"^conv2d: argument 'padding' .*, got list \[\(1, 1\)\]$"):
        conv2d(params, jnp.ones((1, 4, 8, 3)), padding=[(1, 1)])
    with pytest.raises(ValueError, match=r"^conv2d: argument 'stride' must be an int or a sequence of 2 ints, "
                                         r"each >= 1, got 0$"):
        conv2d(params, jnp.ones((1, 4, 8, 3)), stride=0)
    with pytest.raises(ValueError, match=r"^conv1d: argument 'params.w' must be an array of rank 3 "
                                         r"\(k, c_in, c_out\), got an array of shape \(3, 3, 3, 4\)"):
        conv1d(params, jnp.ones((4, 3)))
    with pytest.raises(ValueError, match=r"^conv2d: argument 'params.b' must be an array of shape \(4,?\)"):
        conv2d(ConvParams(params.w, params.b[:2]), jnp.ones((1, 4, 8, 3)))


def test_conv_layers_init_shapes_and_errors() -> None:
    zero = initializers.zeros()  # these checks are about shapes: skip drawing random kernels
    layer = Conv2D(8, 3, stride=2, w_init=initializers.constant(0.5))
    params, state, out = layer.init(KEY, (-1, 9, 7, 2))
    assert out == (-1, 5, 4, 8) and state == () and params.w.shape == (3, 3, 2, 8)
    y, _ = layer.apply(params, state, jnp.ones((2, 9, 7, 2)), train=False)
    assert y.shape == (2, 5, 4, 8)
    assert float(y[0, 2, 2, 0]) == 9.0  # an interior window: 3 x 3 taps x 2 channels x 0.5
    _, _, out = Conv2D(8, (3, 2), padding="VALID", dilation=(2, 1), w_init=zero).init(KEY, (4, 9, 7, 2))
    assert out == (4, 5, 6, 8)
    _, _, out = Conv1D(6, 4, padding="VALID", w_init=zero).init(KEY, (-1, 10, 3))
    assert out == (-1, 7, 6)
    with pytest.raises(ValueError, match=r"^Conv2D: argument 'input_shape' must be a shape of rank 4 "
                                         r"\(N, H, W, C\), batch axis included, got tuple \(-1, 9, 2\)$"):
        layer.init(KEY, (-1, 9, 2))
    with pytest.raises(ValueError, match=r"^Conv2D: argument 'input_shape' must be a shape whose spatial sizes "
                                         r"fit the kernel \(5, 5\).*got tuple \(-1, 4, 9, 2\)"):
        Conv2D(8, 5, padding="VALID").init(KEY, (-1, 4, 9, 2))
    with pytest.raises(ValueError, match=r"^Conv2D: argument 'x' must be an array of shape \(\*, \*, \*, 2\), "
                                         r"got an array of shape \(2, 9, 7, 3\)"):
        layer.apply(params, state, jnp.ones((2, 9, 7, 3)), train=False)
    with pytest.raises(ValueError, match=r"^Conv2D: argument 'x' must be an array of rank 4 \(N, H, W, C\), "
                                         r"got an array of shape \(9, 7, 2\)"):
        layer.apply(params, state, jnp.ones((9, 7, 2)), train=False)
    with pytest.raises(ValueError, match=r"^Conv2D: argument 'kernel_size' must be an int or a sequence of 2 ints"):
        Conv2D(8, (3, 3, 3))
    with pytest.raises(TypeError, match=r"^Conv1D: argument 'w_init' must be an initializer .*got 'he_normal'$"):
        Conv1D(8, 3, w_init="he_normal")  # type: ignore[arg-type]  # deliberately wrong


def test_conv_under_jit_grad_and_ensemble_vmap() -> None:
    x = normal(0, (2, 6, 6, 3))
    params = ConvParams(normal(1, (3, 3, 3, 4)), normal(2, (4,)))

    def loss(p: ConvParams, xx: jax.Array) -> jax.Array:
        return jnp.sum(conv2d(p, xx, padding="VALID") ** 2)

    g = jit(grad(loss))(params, x)
    # d/dw sum(y^2) = sum over positions of 2 y x_patch (float64 reference).
    y = conv_reference(np.asarray(x), np.asarray(params.w), np.asarray(params.b), (1, 1), "VALID", (1, 1))
    xn = np.asarray(x, np.float64)
    gw = np.zeros((3, 3, 3, 4))
    for u, v in itertools.product(range(3), range(3)):
        gw[u, v] = 2 * np.einsum("nhwc,nhwo->co", xn[:, u:u + 4, v:v + 4], y)
    np.testing.assert_allclose(g.w, gw, rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(g.b, 2 * y.sum((0, 1, 2)), rtol=1e-4, atol=1e-3)

    stacked = jit(vmap(lambda k: init_conv2d(k, 3, 4, 3)))(jax.random.split(KEY, 3))
    ys = jit(vmap(lambda p: conv2d(p, x, stride=2)))(stacked)
    assert ys.shape == (3, 2, 3, 3, 4)
    for i in range(3):
        ref = conv_reference(np.asarray(x), np.asarray(stacked.w[i]), np.asarray(stacked.b[i]), (2, 2), "SAME",
                             (1, 1))
        np.testing.assert_allclose(ys[i], ref, rtol=1e-5, atol=1e-5)
    # vmap over examples of the one-example form equals the batched call.
    np.testing.assert_allclose(jit(vmap(lambda xi: conv2d(params, xi)))(x), conv2d(params, x), rtol=1e-5,
                               atol=1e-5)
    p1 = ConvParams(normal(3, (3, 3, 2)), normal(4, (2,)))
    np.testing.assert_allclose(jit(conv1d)(p1, x[0]), conv1d(p1, x[0]), rtol=1e-6)


def test_shape_checks_add_nothing_to_the_traced_program() -> None:
    """The chex checks run at trace time only: the program is the convolution and the bias add."""
    from functrain.layers import _conv_gemm

    params = ConvParams(jnp.ones((3, 3, 2, 4)), jnp.zeros(4))
    x = jnp.ones((2, 6, 6, 2))
    def ours_fn(p: ConvParams, z: jax.Array) -> jax.Array:
        return conv2d(p, z, stride=2)

    def bare_fn(p: ConvParams, z: jax.Array) -> jax.Array:
        return _conv_gemm.conv(z, p.w, (2, 2), "SAME", (1, 1), 2) + p.b

    ours = make_jaxpr(ours_fn)(params, x)
    bare = make_jaxpr(bare_fn)(params, x)
    assert [e.primitive for e in ours.eqns] == [e.primitive for e in bare.eqns]
