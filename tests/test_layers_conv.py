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
from functrain.layers import PaddingLike

KEY = jax.random.key(0)


def _normal(seed: int, shape: tuple[int, ...]) -> jax.Array:
    """Test inputs from NumPy (a jax.random draw compiles a program per shape, ~0.5 s each)."""
    return jnp.asarray(np.random.default_rng(seed).standard_normal(shape), jnp.float32)


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
    hw = case["hw"]
    k = case["k"]
    assert isinstance(hw, tuple) and isinstance(k, tuple)
    x = _normal(0, (2, *hw, 3))
    params = ConvParams(_normal(1, (*k, 3, 4)), _normal(2, (4,)))
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
    x = _normal(0, (3, 9, 2))
    params = ConvParams(_normal(1, (3, 2, 5)), _normal(2, (5,)))
    y = conv1d(params, x, stride=stride, padding=padding, dilation=dilation)
    ref = conv_reference(np.asarray(x), np.asarray(params.w), np.asarray(params.b), (stride,), padding, (dilation,))
    assert y.shape == ref.shape
    np.testing.assert_allclose(np.asarray(y), ref, rtol=1e-5, atol=1e-4)


def test_conv_one_example_equals_batch_of_one() -> None:
    params = ConvParams(_normal(1, (3, 3, 3, 4)), _normal(2, (4,)))
    x = _normal(0, (5, 5, 3))
    np.testing.assert_allclose(conv2d(params, x, stride=2), conv2d(params, x[None], stride=2)[0], rtol=1e-6)
    p1 = ConvParams(_normal(3, (2, 3, 4)), _normal(4, (4,)))
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
        jax.jit(conv2d)(params, jnp.ones((2, 8, 8, 5)))  # raised while tracing, before XLA
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
    x = _normal(0, (2, 6, 6, 3))
    params = ConvParams(_normal(1, (3, 3, 3, 4)), _normal(2, (4,)))

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

    stacked = jax.jit(jax.vmap(lambda k: init_conv2d(k, 3, 4, 3)))(jax.random.split(KEY, 3))
    ys = jax.jit(jax.vmap(lambda p: conv2d(p, x, stride=2)))(stacked)
    assert ys.shape == (3, 2, 3, 3, 4)
    for i in range(3):
        ref = conv_reference(np.asarray(x), np.asarray(stacked.w[i]), np.asarray(stacked.b[i]), (2, 2), "SAME",
                             (1, 1))
        np.testing.assert_allclose(ys[i], ref, rtol=1e-5, atol=1e-5)
    # vmap over examples of the one-example form equals the batched call.
    np.testing.assert_allclose(jax.jit(jax.vmap(lambda xi: conv2d(params, xi)))(x), conv2d(params, x), rtol=1e-5,
                               atol=1e-5)
    p1 = ConvParams(_normal(3, (3, 3, 2)), _normal(4, (2,)))
    np.testing.assert_allclose(jax.jit(conv1d)(p1, x[0]), conv1d(p1, x[0]), rtol=1e-6)


def test_shape_checks_add_nothing_to_the_traced_program() -> None:
    """The chex checks run at trace time only: the program is the convolution and the bias add."""
    from functrain.layers import _conv_jvp

    params = ConvParams(jnp.ones((3, 3, 2, 4)), jnp.zeros(4))
    x = jnp.ones((2, 6, 6, 2))
    ours = jax.make_jaxpr(lambda p, z: conv2d(p, z, stride=2))(params, x)
    bare = jax.make_jaxpr(lambda p, z: _conv_jvp.conv(z, p.w, (2, 2), "SAME", (1, 1), 2) + p.b)(params, x)
    assert [e.primitive for e in ours.eqns] == [e.primitive for e in bare.eqns]


# ---------------------------------------------- gradients (CPU patches-based kernel gradient, jax#12868)

_DN = {1: ("NWC", "WIO", "NWC"), 2: ("NHWC", "HWIO", "NHWC")}


def _lax_conv(p: ConvParams, x: jax.Array, stride: Sequence[int], padding: PaddingLike,
              dilation: Sequence[int]) -> jax.Array:
    """The stock lax convolution (default gradients) as the reference."""
    nsp = p.w.ndim - 2
    pads = padding if isinstance(padding, str) else (
        [(padding, padding)] * nsp if isinstance(padding, int) else list(padding))
    return jax.lax.conv_general_dilated(x, p.w, tuple(stride), pads, rhs_dilation=tuple(dilation),
                                        dimension_numbers=_DN[nsp]) + p.b


def grad_reference(x: np.ndarray, w: np.ndarray, r: np.ndarray, stride: Sequence[int], padding: PaddingLike,
                   dilation: Sequence[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """float64 gradients of ``sum(conv(x, w) + b) * r)`` w.r.t. x, w, b by the direct definition."""
    x = np.asarray(x, np.float64)
    w = np.asarray(w, np.float64)
    r = np.asarray(r, np.float64)
    nsp = w.ndim - 2
    pads = [_pads(x.shape[1 + a], w.shape[a], stride[a], dilation[a], padding, a) for a in range(nsp)]
    xp = np.pad(x, [(0, 0)] + pads + [(0, 0)])
    gxp = np.zeros_like(xp)
    gw = np.zeros_like(w)
    for n in range(x.shape[0]):
        for pos in itertools.product(*(range(o) for o in r.shape[1:-1])):
            for tap in itertools.product(*(range(k) for k in w.shape[:nsp])):
                idx = tuple(pos[a] * stride[a] + tap[a] * dilation[a] for a in range(nsp))
                gw[tap] += np.outer(xp[(n, *idx)], r[(n, *pos)])
                gxp[(n, *idx)] += w[tap] @ r[(n, *pos)]
    crop = (slice(None),) + tuple(slice(lo, lo + x.shape[1 + a]) for a, (lo, _) in enumerate(pads))
    return gxp[crop], gw, r.reshape(-1, r.shape[-1]).sum(0)


GRAD_CASES = [  # (spatial, input spatial shape, kernel, stride, padding, dilation)
    (2, (7, 6), (3, 3), 1, "SAME", 1),
    (2, (7, 6), (3, 2), 2, "SAME", 1),
    (2, (7, 8), (3, 3), (2, 1), "VALID", (1, 2)),
    (2, (6, 6), (3, 3), 1, 1, 2),
    (2, (5, 6), (2, 3), 2, ((1, 0), (2, 1)), 1),
    (2, (8, 7), (3, 3), 3, "SAME", (2, 1)),
    (1, (9,), (3,), 1, "SAME", 1),
    (1, (9,), (3,), 2, "VALID", 1),
    (1, (10,), (3,), 1, ((2, 1),), 2),
    (1, (11,), (4,), 3, "SAME", 1),
]


def _grad_case(spatial: int, size: tuple[int, ...], k: tuple[int, ...], stride: int | tuple[int, ...],
               padding: PaddingLike, dilation: int | tuple[int, ...], batched: bool = True
               ) -> tuple[ConvParams, jax.Array, jax.Array, tuple[int, ...], tuple[int, ...]]:
    seed = spatial * 100 + sum(size)
    x = _normal(seed, (2, *size, 3))
    params = ConvParams(_normal(seed + 1, (*k, 3, 4)), _normal(seed + 2, (4,)))
    s = (stride,) * spatial if isinstance(stride, int) else stride
    d = (dilation,) * spatial if isinstance(dilation, int) else dilation
    out = jax.eval_shape(lambda: _lax_conv(params, x, s, padding, d))
    r = _normal(seed + 3, out.shape)
    return params, x, r, s, d


@pytest.mark.parametrize("case", GRAD_CASES)
def test_conv_gradients_match_lax_and_float64(case: tuple[object, ...]) -> None:
    spatial, size, k, stride, padding, dilation = case
    assert isinstance(spatial, int) and isinstance(size, tuple) and isinstance(k, tuple)
    params, x, r, s, d = _grad_case(spatial, size, k, stride, padding, dilation)  # type: ignore[arg-type]  # case tuple values are objects
    op = conv2d if spatial == 2 else conv1d

    def loss(p: ConvParams, xx: jax.Array) -> jax.Array:
        return jnp.sum(op(p, xx, stride=s, padding=padding, dilation=d) * r)  # type: ignore[arg-type]  # as above

    def loss_lax(p: ConvParams, xx: jax.Array) -> jax.Array:
        return jnp.sum(_lax_conv(p, xx, s, padding, d) * r)  # type: ignore[arg-type]  # as above

    gp, gx = jax.jit(jax.grad(loss, argnums=(0, 1)))(params, x)
    rp, rx = jax.jit(jax.grad(loss_lax, argnums=(0, 1)))(params, x)
    np.testing.assert_allclose(gp.w, rp.w, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(gp.b, rp.b, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(gx, rx, rtol=1e-5, atol=1e-5)
    fx, fw, fb = grad_reference(np.asarray(x), np.asarray(params.w), np.asarray(r), s, padding, d)  # type: ignore[arg-type]  # as above
    np.testing.assert_allclose(gp.w, fw, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(gp.b, fb, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(gx, fx, rtol=1e-4, atol=1e-4)
    if padding != "SAME":
        return
    # One example (no batch axis) gives the per-example gradients.
    g0 = jax.jit(jax.grad(lambda p: jnp.sum(op(p, x[0], stride=s, padding=padding, dilation=d) * r[0])))(params)
    r0 = jax.jit(jax.grad(lambda p: jnp.sum(_lax_conv(p, x[:1], s, padding, d) * r[:1])))(params)
    np.testing.assert_allclose(g0.w, r0.w, rtol=1e-5, atol=1e-5)


def test_conv_kernel_gradient_uses_patches_on_cpu() -> None:
    if jax.default_backend() != "cpu":
        pytest.skip("the patches-based kernel gradient is CPU-only")
    x = jnp.ones((2, 6, 6, 3))
    params = init_conv2d(KEY, 3, 4, 3)

    def grad_text(f: object) -> str:
        return str(jax.jit(jax.grad(f)).lower(params).as_text())  # type: ignore[arg-type]  # f is a loss of params

    ours = grad_text(lambda p: jnp.sum(conv2d(p, x) ** 2))
    stock = grad_text(lambda p: jnp.sum(_lax_conv(p, x, (1, 1), "SAME", (1, 1)) ** 2))
    # The stock kernel gradient is a backward-filter convolution; ours is an einsum of the patches.
    assert "dot_general" in ours and "dot_general" not in stock


def test_conv_gradients_under_vmap_over_kernels() -> None:
    params, x, r, s, d = _grad_case(2, (7, 6), (3, 3), 2, "SAME", 1)
    stacked = ConvParams(jnp.stack([params.w, 2 * params.w, -params.w]), jnp.stack([params.b] * 3))

    def loss(p: ConvParams, xx: jax.Array) -> jax.Array:
        return jnp.sum(conv2d(p, xx, stride=s) * r)

    g = jax.jit(jax.vmap(jax.grad(loss, argnums=(0, 1)), in_axes=(0, None)))(stacked, x)
    # Ensemble members also with their own inputs (both operands batched).
    xs = jnp.stack([x, x + 1.0, 2 * x])
    gb = jax.jit(jax.vmap(jax.grad(loss, argnums=(0, 1))))(stacked, xs)
    ref = jax.jit(jax.grad(lambda p, xx: jnp.sum(_lax_conv(p, xx, s, "SAME", d) * r), argnums=(0, 1)))
    for i in range(3):
        p_i = ConvParams(stacked.w[i], stacked.b[i])
        rp, rx = ref(p_i, x)
        np.testing.assert_allclose(g[0].w[i], rp.w, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(g[0].b[i], rp.b, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(g[1][i], rx, rtol=1e-5, atol=1e-5)
        rp, rx = ref(p_i, xs[i])
        np.testing.assert_allclose(gb[0].w[i], rp.w, rtol=1e-5, atol=1e-4)
        np.testing.assert_allclose(gb[1][i], rx, rtol=1e-5, atol=1e-5)


def test_conv_gradients_inside_scan_match_python_loop() -> None:
    x = _normal(0, (4, 2, 6, 6, 2))  # 4 steps of a batch of 2
    p0 = ConvParams(_normal(1, (3, 3, 2, 3)) * 0.3, jnp.zeros(3))

    def step(p: ConvParams, xx: jax.Array, conv: object) -> ConvParams:
        g = jax.grad(lambda q: jnp.mean(jnp.tanh(conv(q, xx)) ** 2))(p)  # type: ignore[operator]  # conv is a conv fn
        return ConvParams(p.w - 0.5 * g.w, p.b - 0.5 * g.b)

    def ours(p: ConvParams, xx: jax.Array) -> jax.Array:
        return conv2d(p, xx, stride=2, padding="VALID", dilation=1)

    def stock(p: ConvParams, xx: jax.Array) -> jax.Array:
        return _lax_conv(p, xx, (2, 2), "VALID", (1, 1))

    scanned, _ = jax.jit(lambda p: jax.lax.scan(lambda c, xx: (step(c, xx, ours), None), p, x))(p0)
    stock_step = jax.jit(lambda p, xx: step(p, xx, stock))
    ref = p0
    for t in range(4):
        ref = stock_step(ref, x[t])
    assert float(jnp.max(jnp.abs(ref.w - p0.w))) > 1e-3  # the steps moved the kernel
    np.testing.assert_allclose(scanned.w, ref.w, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(scanned.b, ref.b, rtol=1e-5, atol=1e-6)


def test_conv_forward_mode_and_second_order() -> None:
    params, x, r, s, d = _grad_case(1, (9,), (3,), 2, "VALID", 1)

    def f(w: jax.Array) -> jax.Array:
        return jnp.sum(jnp.tanh(conv1d(ConvParams(w, params.b), x, stride=s, padding="VALID")) * r)

    def f_lax(w: jax.Array) -> jax.Array:
        return jnp.sum(jnp.tanh(_lax_conv(ConvParams(w, params.b), x, s, "VALID", d)) * r)

    dw = _normal(7, params.w.shape)
    _, t = jax.jit(lambda w, v: jax.jvp(f, (w,), (v,)))(params.w, dw)
    _, t_ref = jax.jit(lambda w, v: jax.jvp(f_lax, (w,), (v,)))(params.w, dw)
    np.testing.assert_allclose(t, t_ref, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(jax.jit(jax.hessian(f))(params.w), jax.jit(jax.hessian(f_lax))(params.w),
                               rtol=1e-4, atol=1e-5)
