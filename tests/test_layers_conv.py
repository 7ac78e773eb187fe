"""Convolutions against an explicit float64 NumPy loop; shape errors; jit/grad/vmap (ensemble)."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from functrain import initializers
from functrain.layers import Conv1D, Conv2D, ConvParams, conv1d, conv2d, init_conv1d, init_conv2d
from functrain.layers._util import PaddingLike

KEY = jax.random.key(0)


def _pads(size: int, k: int, s: int, d: int, padding: PaddingLike, axis: int) -> tuple[int, int]:
    span = (k - 1) * d + 1
    if padding == "VALID":
        return 0, 0
    if padding == "SAME":
        out = -(-size // s)
        total = max((out - 1) * s + span - size, 0)
        return total // 2, total - total // 2
    if isinstance(padding, int):
        return padding, padding
    assert not isinstance(padding, str)
    lo, hi = list(padding)[axis]
    return lo, hi


def conv_reference(x: np.ndarray, w: np.ndarray, b: np.ndarray, stride: Sequence[int], padding: PaddingLike,
                   dilation: Sequence[int]) -> np.ndarray:
    """Direct definition: y[n, o..., c_out] = b + sum x_pad[n, o*s + t*d, c_in] w[t, c_in, c_out]."""
    x = np.asarray(x, np.float64)
    w = np.asarray(w, np.float64)
    nsp = w.ndim - 2
    pads = [_pads(x.shape[1 + a], w.shape[a], stride[a], dilation[a], padding, a) for a in range(nsp)]
    xp = np.pad(x, [(0, 0)] + pads + [(0, 0)])
    out_sizes = [(xp.shape[1 + a] - ((w.shape[a] - 1) * dilation[a] + 1)) // stride[a] + 1 for a in range(nsp)]
    y = np.zeros((x.shape[0], *out_sizes, w.shape[-1]))
    for n in range(x.shape[0]):
        for pos in itertools.product(*(range(o) for o in out_sizes)):
            acc = np.array(b, np.float64).copy()
            for tap in itertools.product(*(range(k) for k in w.shape[:nsp])):
                idx = tuple(pos[a] * stride[a] + tap[a] * dilation[a] for a in range(nsp))
                acc += xp[(n, *idx)] @ w[tap]
            y[(n, *pos)] = acc
    return y


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
    kx, kw, kb = jax.random.split(KEY, 3)
    hw = case["hw"]
    k = case["k"]
    assert isinstance(hw, tuple) and isinstance(k, tuple)
    x = jax.random.normal(kx, (2, *hw, 3))
    params = ConvParams(jax.random.normal(kw, (*k, 3, 4)), jax.random.normal(kb, (4,)))
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
    kx, kw, kb = jax.random.split(KEY, 3)
    x = jax.random.normal(kx, (3, 9, 2))
    params = ConvParams(jax.random.normal(kw, (3, 2, 5)), jax.random.normal(kb, (5,)))
    y = conv1d(params, x, stride=stride, padding=padding, dilation=dilation)
    ref = conv_reference(np.asarray(x), np.asarray(params.w), np.asarray(params.b), (stride,), padding, (dilation,))
    assert y.shape == ref.shape
    np.testing.assert_allclose(np.asarray(y), ref, rtol=1e-5, atol=1e-4)


def test_conv_one_example_equals_batch_of_one() -> None:
    params = init_conv2d(KEY, 3, 4, 3)
    x = jax.random.normal(KEY, (5, 5, 3))
    np.testing.assert_allclose(conv2d(params, x, stride=2), conv2d(params, x[None], stride=2)[0], rtol=1e-6)
    p1 = init_conv1d(KEY, 3, 4, 2)
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
    with pytest.raises(ValueError, match="init_conv2d: argument 'kernel_size'"):
        init_conv2d(KEY, 1, 1, (3, 0))


def test_conv_shape_errors_raise_before_xla() -> None:
    params = init_conv2d(KEY, 3, 4, 3)
    with pytest.raises(ValueError, match=r"conv2d: expected an input with 3 channels.*got shape \(2, 8, 8, 5\)"):
        jax.jit(conv2d)(params, jnp.ones((2, 8, 8, 5)))
    with pytest.raises(ValueError, match=r"conv2d: expected an input of rank 4 \(NHWC\).*got shape \(8, 3\)"):
        conv2d(params, jnp.ones((8, 3)))
    with pytest.raises(ValueError, match=r"conv2d: the kernel \(3, 3\).*larger than the input's spatial size "
                                         r"\(2, 8\).*\(1, 2, 8, 3\)"):
        conv2d(params, jnp.ones((1, 2, 8, 3)), padding="VALID")
    with pytest.raises(ValueError, match=r"conv2d: the kernel \(3, 3\) \(dilated extent 5"):
        conv2d(params, jnp.ones((1, 4, 8, 3)), padding="VALID", dilation=2)
    with pytest.raises(ValueError, match="conv2d: argument 'padding'"):
        conv2d(params, jnp.ones((1, 4, 8, 3)), padding="same")  # type: ignore[arg-type]  # deliberately wrong
    with pytest.raises(ValueError, match="conv2d: argument 'stride'"):
        conv2d(params, jnp.ones((1, 4, 8, 3)), stride=0)
    with pytest.raises(ValueError, match=r"conv1d: kernel w must have rank 3 \(WIO\)"):
        conv1d(params, jnp.ones((4, 3)))


def test_conv_layers_init_shapes_and_errors() -> None:
    layer = Conv2D(8, 3, stride=2)
    params, state, out = layer.init(KEY, (-1, 9, 7, 2))
    assert out == (-1, 5, 4, 8) and state == () and params.w.shape == (3, 3, 2, 8)
    y, _ = layer.apply(params, state, jnp.ones((2, 9, 7, 2)), train=False)
    assert y.shape == (2, 5, 4, 8)
    _, _, out = Conv2D(8, (3, 2), padding="VALID", dilation=(2, 1)).init(KEY, (4, 9, 7, 2))
    assert out == (4, 5, 6, 8)
    _, _, out = Conv1D(6, 4, padding="VALID").init(KEY, (-1, 10, 3))
    assert out == (-1, 7, 6)
    with pytest.raises(ValueError, match=r"Conv2D\(8, \(3, 3\)\): expected an input_shape of rank 4 .*got \(-1, 9, 2\)"):
        layer.init(KEY, (-1, 9, 2))
    with pytest.raises(ValueError, match=r"Conv2D\(8, \(5, 5\)\): the kernel \(5, 5\).*\(-1, 4, 9, 2\)"):
        Conv2D(8, 5, padding="VALID").init(KEY, (-1, 4, 9, 2))
    with pytest.raises(ValueError, match=r"Conv2D\(8, \(3, 3\)\): expected an input with 2 channels.*\(2, 9, 7, 3\)"):
        layer.apply(params, state, jnp.ones((2, 9, 7, 3)), train=False)
    with pytest.raises(ValueError, match=r"Conv2D\(8, \(3, 3\)\): expected an input of rank 4"):
        layer.apply(params, state, jnp.ones((9, 7, 2)), train=False)
    with pytest.raises(ValueError, match="Conv2D: argument 'kernel_size'"):
        Conv2D(8, (3, 3, 3))


def test_conv_under_jit_grad_and_ensemble_vmap() -> None:
    x = jax.random.normal(KEY, (2, 6, 6, 3))
    params = init_conv2d(KEY, 3, 4, 3)

    def loss(p: ConvParams, xx: jax.Array) -> jax.Array:
        return jnp.sum(conv2d(p, xx, padding="VALID") ** 2)

    g = jax.jit(jax.grad(loss))(params, x)
    # d/dw sum(y^2) = sum over positions of 2 y x_patch (float64 reference).
    y = conv_reference(np.asarray(x), np.asarray(params.w), np.asarray(params.b), (1, 1), "VALID", (1, 1))
    xn = np.asarray(x, np.float64)
    gw = np.zeros((3, 3, 3, 4))
    for u, v in itertools.product(range(3), range(3)):
        gw[u, v] = 2 * np.einsum("nhwc,nhwo->co", xn[:, u:u + 4, v:v + 4], y)
    np.testing.assert_allclose(g.w, gw, rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(g.b, 2 * y.sum((0, 1, 2)), rtol=1e-4, atol=1e-3)

    stacked = jax.vmap(lambda k: init_conv2d(k, 3, 4, 3))(jax.random.split(KEY, 3))
    ys = jax.jit(jax.vmap(lambda p: conv2d(p, x, stride=2)))(stacked)
    assert ys.shape == (3, 2, 3, 3, 4)
    for i in range(3):
        np.testing.assert_allclose(ys[i], conv2d(ConvParams(stacked.w[i], stacked.b[i]), x, stride=2), rtol=1e-5,
                                   atol=1e-5)
    # vmap over examples of the one-example form equals the batched call.
    np.testing.assert_allclose(jax.vmap(lambda xi: conv2d(params, xi))(x), conv2d(params, x), rtol=1e-5, atol=1e-5)
    p1 = init_conv1d(KEY, 3, 2, 3)
    np.testing.assert_allclose(jax.jit(conv1d)(p1, x[0]), conv1d(p1, x[0]), rtol=1e-6)
