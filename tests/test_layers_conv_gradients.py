"""Convolution gradients: the CPU rules of ``functrain.layers._conv_gemm`` against stock ``lax``.

Every case compares ``jax.grad`` through functrain's convolutions with ``jax.grad`` of the plain
``lax.conv_general_dilated`` (default JAX gradients) and with float64 direct definitions, over odd
sizes, strides, dilations and padding modes; under ``jit``, ``vmap``, ``lax.scan``, forward mode
and second order. On the CPU the convolution and both its gradients are GEMMs over im2col patches
(XLA:CPU runs the stock backward convolutions slowly inside loops, jax-ml/jax#12868); these tests
also pin that.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _conv_reference import grad_reference, lax_conv, normal
from _typed import eval_shape, grad, hessian, jit, jvp, lower, vmap

from functrain import _jax
from functrain._tree import tree_map
from functrain.layers import _conv_gemm

from functrain.layers import (
    Conv2D,
    ConvParams,
    Dense,
    Flatten,
    MaxPool,
    PaddingLike,
    Relu,
    conv1d,
    conv2d,
    init_conv2d,
    serial,
)

KEY = jax.random.key(0)


GradCase = tuple[int, tuple[int, ...], tuple[int, ...], int | tuple[int, ...], PaddingLike, int | tuple[int, ...]]
"""(spatial, input spatial shape, kernel, stride, padding, dilation)."""
Conv = Callable[[ConvParams, jax.Array], jax.Array]

GRAD_CASES: list[GradCase] = [  # (spatial, input spatial shape, kernel, stride, padding, dilation)
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
    (2, (7, 5), (1, 1), 2, "VALID", 1),  # 1x1 kernel, odd sizes, stride leaves a remainder
    (2, (9, 7), (2, 2), 3, "VALID", 1),  # stride larger than the kernel: gaps between windows
    (2, (9, 8), (3, 2), (2, 3), ((2, 0), (0, 3)), (2, 1)),  # one-sided explicit padding
    (2, (5, 5), (3, 3), 2, "SAME", 2),  # dilated, strided SAME
    (2, (4, 5), (3, 3), 1, 2, 1),  # padding wider than needed
]


def _grad_case(spatial: int, size: tuple[int, ...], k: tuple[int, ...], stride: int | tuple[int, ...],
               padding: PaddingLike, dilation: int | tuple[int, ...], batched: bool = True, c_in: int = 3
               ) -> tuple[ConvParams, jax.Array, jax.Array, tuple[int, ...], tuple[int, ...]]:
    """A case's parameters, input, output weights ``r``, strides and dilations. With ``c_in = 3``
    every kernel has fewer than 64 patch rows (the CPU forward ``P^T W``); with ``c_in = 24`` most
    have more (``W^T P``, ``_conv_gemm.gemm_conv(..., transposed=True)``)."""
    seed = spatial * 100 + sum(size) + c_in
    x = normal(seed, (2, *size, c_in))
    params = ConvParams(normal(seed + 1, (*k, c_in, 4)) * (3 / c_in) ** 0.5, normal(seed + 2, (4,)))
    s = (stride,) * spatial if isinstance(stride, int) else stride
    d = (dilation,) * spatial if isinstance(dilation, int) else dilation
    out = eval_shape(lambda: lax_conv(params, x, s, padding, d))
    r = normal(seed + 3, out.shape)
    return params, x, r, s, d


@pytest.mark.parametrize("c_in", [3, 24])
@pytest.mark.parametrize("case", GRAD_CASES)
def test_conv_gradients_match_lax_and_float64(case: GradCase, c_in: int) -> None:
    spatial, size, k, stride, padding, dilation = case
    params, x, r, s, d = _grad_case(spatial, size, k, stride, padding, dilation, c_in=c_in)
    op = conv2d if spatial == 2 else conv1d

    def forward(p: ConvParams, xx: jax.Array) -> jax.Array:
        return op(p, xx, stride=s, padding=padding, dilation=d)

    np.testing.assert_allclose(jit(forward)(params, x), lax_conv(params, x, s, padding, d), rtol=1e-5, atol=1e-5)

    def loss(p: ConvParams, xx: jax.Array) -> jax.Array:
        return jnp.sum(op(p, xx, stride=s, padding=padding, dilation=d) * r)

    def loss_lax(p: ConvParams, xx: jax.Array) -> jax.Array:
        return jnp.sum(lax_conv(p, xx, s, padding, d) * r)

    gp, gx = jit(grad(loss, argnums=(0, 1)))(params, x)
    rp, rx = jit(grad(loss_lax, argnums=(0, 1)))(params, x)
    np.testing.assert_allclose(gp.w, rp.w, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(gp.b, rp.b, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(gx, rx, rtol=1e-5, atol=1e-5)
    fx, fw, fb = grad_reference(np.asarray(x), np.asarray(params.w), np.asarray(r), s, padding, d)
    np.testing.assert_allclose(gp.w, fw, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(gp.b, fb, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(gx, fx, rtol=1e-4, atol=1e-4)
    if padding != "SAME":
        return
    # One example (no batch axis) gives the per-example gradients.
    def loss_one(p: ConvParams) -> jax.Array:
        return jnp.sum(op(p, x[0], stride=s, padding=padding, dilation=d) * r[0])

    def loss_one_lax(p: ConvParams) -> jax.Array:
        return jnp.sum(lax_conv(p, x[:1], s, padding, d) * r[:1])

    g0 = jit(grad(loss_one))(params)
    r0 = jit(grad(loss_one_lax))(params)
    np.testing.assert_allclose(g0.w, r0.w, rtol=1e-5, atol=1e-5)


def test_conv_kernel_gradient_uses_patches_on_cpu() -> None:
    if jax.default_backend() != "cpu":
        pytest.skip("the patches-based kernel gradient is CPU-only")
    x = jnp.ones((2, 6, 6, 3))
    params = init_conv2d(KEY, 3, 4, 3)

    def grad_text(f: Callable[[ConvParams], jax.Array]) -> str:
        return str(lower(grad(f), params).as_text())

    ours = grad_text(lambda p: jnp.sum(conv2d(p, x) ** 2))
    stock = grad_text(lambda p: jnp.sum(lax_conv(p, x, (1, 1), "SAME", (1, 1)) ** 2))
    # The stock kernel gradient is a backward-filter convolution; ours is an einsum of the patches.
    assert "dot_general" in ours and "dot_general" not in stock


def test_conv_gradients_under_vmap_over_kernels() -> None:
    params, x, r, s, d = _grad_case(2, (7, 6), (3, 3), 2, "SAME", 1)
    stacked = ConvParams(jnp.stack([params.w, 2 * params.w, -params.w]), jnp.stack([params.b] * 3))

    def loss(p: ConvParams, xx: jax.Array) -> jax.Array:
        return jnp.sum(conv2d(p, xx, stride=s) * r)

    g = jit(vmap(grad(loss, argnums=(0, 1)), in_axes=(0, None)))(stacked, x)
    # Ensemble members also with their own inputs (both operands batched).
    xs = jnp.stack([x, x + 1.0, 2 * x])
    gb = jit(vmap(grad(loss, argnums=(0, 1))))(stacked, xs)
    def loss_lax(p: ConvParams, xx: jax.Array) -> jax.Array:
        return jnp.sum(lax_conv(p, xx, s, "SAME", d) * r)

    ref = jit(grad(loss_lax, argnums=(0, 1)))
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
    x = normal(0, (4, 2, 6, 6, 2))  # 4 steps of a batch of 2
    p0 = ConvParams(normal(1, (3, 3, 2, 3)) * 0.3, jnp.zeros(3))

    def step(p: ConvParams, xx: jax.Array, conv: Conv) -> ConvParams:
        g = grad(lambda q: jnp.mean(jnp.tanh(conv(q, xx)) ** 2))(p)
        return ConvParams(p.w - 0.5 * g.w, p.b - 0.5 * g.b)

    def ours(p: ConvParams, xx: jax.Array) -> jax.Array:
        return conv2d(p, xx, stride=2, padding="VALID", dilation=1)

    def stock(p: ConvParams, xx: jax.Array) -> jax.Array:
        return lax_conv(p, xx, (2, 2), "VALID", (1, 1))

    def body(c: ConvParams, xx: jax.Array) -> tuple[ConvParams, None]:
        return step(c, xx, ours), None

    def stock_step_fn(p: ConvParams, xx: jax.Array) -> ConvParams:
        return step(p, xx, stock)

    def scanned_fn(p: ConvParams) -> tuple[ConvParams, None]:
        return jax.lax.scan(body, p, x)

    scanned, _ = jit(scanned_fn)(p0)
    stock_step = jit(stock_step_fn)
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
        return jnp.sum(jnp.tanh(lax_conv(ConvParams(w, params.b), x, s, "VALID", d)) * r)

    dw = normal(7, params.w.shape)
    def tangent(w: jax.Array, v: jax.Array) -> tuple[Any, Any]:
        return jvp(f, (w,), (v,))

    def tangent_lax(w: jax.Array, v: jax.Array) -> tuple[Any, Any]:
        return jvp(f_lax, (w,), (v,))

    _, t = jit(tangent)(params.w, dw)
    _, t_ref = jit(tangent_lax)(params.w, dw)
    np.testing.assert_allclose(t, t_ref, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(jit(hessian(f))(params.w), jit(hessian(f_lax))(params.w),
                               rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("wrt", ["x", "w"])
def test_conv_partial_gradients_match_lax(wrt: str) -> None:
    """Differentiating only the input (or only the kernel) skips the other tangent, same numbers."""
    params, x, r, s, d = _grad_case(2, (7, 6), (3, 3), 2, "SAME", 1)

    def ours(p: ConvParams, xx: jax.Array) -> jax.Array:
        return jnp.sum(jnp.tanh(conv2d(p, xx, stride=s)) * r)

    def stock(p: ConvParams, xx: jax.Array) -> jax.Array:
        return jnp.sum(jnp.tanh(lax_conv(p, xx, s, "SAME", d)) * r)

    argnum = 1 if wrt == "x" else 0
    g = jit(grad(ours, argnums=argnum))(params, x)
    ref = jit(grad(stock, argnums=argnum))(params, x)
    for a, b in zip(jax.tree_util.tree_leaves(g), jax.tree_util.tree_leaves(ref), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("c_in", [3, 24])
@pytest.mark.parametrize("case", [GRAD_CASES[1], GRAD_CASES[4], GRAD_CASES[8], GRAD_CASES[12]])
def test_conv_gradients_in_float64_equal_lax(case: GradCase, c_in: int) -> None:
    """In float64 both rules compute the same sums: agreement to ~1e-12 (and with the direct loop)."""
    spatial, size, k, stride, padding, dilation = case
    op = conv2d if spatial == 2 else conv1d
    with jax.enable_x64(True):
        p32, x32, r32, s, d = _grad_case(spatial, size, k, stride, padding, dilation, c_in=c_in)
        params = ConvParams(jnp.asarray(p32.w, jnp.float64), jnp.asarray(p32.b, jnp.float64))
        x, r = jnp.asarray(x32, jnp.float64), jnp.asarray(r32, jnp.float64)

        def loss(p: ConvParams, xx: jax.Array) -> jax.Array:
            return jnp.sum(op(p, xx, stride=s, padding=padding, dilation=d) * r)

        def loss_lax(p: ConvParams, xx: jax.Array) -> jax.Array:
            return jnp.sum(lax_conv(p, xx, s, padding, d) * r)

        def forward(p: ConvParams, xx: jax.Array) -> jax.Array:
            return op(p, xx, stride=s, padding=padding, dilation=d)

        y = jit(forward)(params, x)
        assert y.dtype == jnp.float64
        np.testing.assert_allclose(y, lax_conv(params, x, s, padding, d), rtol=1e-12, atol=1e-12)
        gp, gx = jit(grad(loss, argnums=(0, 1)))(params, x)
        rp, rx = jit(grad(loss_lax, argnums=(0, 1)))(params, x)
        assert gp.w.dtype == gx.dtype == jnp.float64
        np.testing.assert_allclose(gp.w, rp.w, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(gx, rx, rtol=1e-12, atol=1e-12)
        fx, fw, _ = grad_reference(np.asarray(x), np.asarray(params.w), np.asarray(r), s, padding, d)
        np.testing.assert_allclose(gp.w, fw, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(gx, fx, rtol=1e-12, atol=1e-12)


def _conv_dim_labels(program: str) -> list[str]:
    return re.findall(r"convolution\([^\n]*?dim_labels=(\S+?),", program)


def test_conv_training_scan_runs_gemms_not_convolutions_on_cpu() -> None:
    """Inside a scan body (a training epoch) XLA:CPU runs no convolution: the forward pass, the
    input gradient and the kernel gradient are GEMMs (``dot``) over patches.

    The stock program has the non-canonical backward convolutions (kernel ``OI``; batch and
    feature axes swapped) that XLA:CPU runs slowly inside loops.
    """
    if jax.default_backend() != "cpu":
        pytest.skip("the CPU rules only")
    params, x, r, s, d = _grad_case(2, (7, 6), (3, 3), 1, "SAME", 1)
    xs = jnp.stack([x, 2 * x])

    def epoch(conv: Conv) -> str:
        def loss(q: ConvParams, z: jax.Array) -> jax.Array:
            return jnp.sum(jnp.tanh(conv(q, z)) * r)  # nonlinear: the forward value is used

        def body(p: ConvParams, xx: jax.Array) -> tuple[ConvParams, None]:
            g = grad(loss, argnums=(0, 1))(p, xx)
            return ConvParams(p.w - g[0].w + jnp.sum(g[1]), p.b - g[0].b), None

        return str(lower(lambda p: jax.lax.scan(body, p, xs)[0], params).compile().as_text())

    ours = epoch(lambda p, z: conv2d(p, z))
    stock = epoch(lambda p, z: lax_conv(p, z, s, "SAME", d))
    assert "convolution(" not in ours
    assert len(re.findall(r"= f32\[[^\]]*\]\S* dot\(", ours)) == 3  # forward, input and kernel gradients
    assert len(_conv_dim_labels(stock)) == 3 and set(_conv_dim_labels(stock)) != {"b01f_01io->b01f"}


def test_conv_input_gradient_penalty_matches_lax() -> None:
    """Second order through both rules: the gradient (w.r.t. the kernel) of a gradient norm (w.r.t. x)."""
    params, x, r, s, d = _grad_case(2, (6, 5), (3, 2), (2, 1), ((1, 0), (0, 1)), (1, 2))
    pads = ((1, 0), (0, 1))

    def penalty(conv: Conv) -> Callable[[ConvParams], Any]:
        def inner(p: ConvParams, xx: jax.Array) -> jax.Array:
            return jnp.sum(jnp.tanh(conv(p, xx)) * r)

        return jit(grad(lambda p: jnp.sum(grad(inner, argnums=1)(p, x) ** 2)))

    g = penalty(lambda p, z: conv2d(p, z, stride=s, padding=pads, dilation=d))(params)
    ref = penalty(lambda p, z: lax_conv(p, z, s, pads, d))(params)
    np.testing.assert_allclose(g.w, ref.w, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(g.b, ref.b, rtol=1e-4, atol=1e-5)


def test_convnet_training_vmapped_over_seeds_matches_stock_lax() -> None:
    """A scanned SGD run of Conv2D + ReLU + MaxPool + Dense, vmapped over seeds (batched kernels),
    equals the same run of the stock ``lax`` model for each seed."""
    model = serial(Conv2D(3, 3, padding="VALID"), Relu, MaxPool(2), Flatten, Dense(2))
    seeds = vmap(lambda k: model.init(k, (-1, 7, 7, 2))[0])(jax.random.split(KEY, 2))
    xs, ys = normal(1, (3, 4, 7, 7, 2)), normal(2, (3, 4, 2))  # 3 steps of a batch of 4

    def stock(p: Any, x: jax.Array) -> jax.Array:
        conv, dense = p[0], p[4]
        h = jax.nn.relu(lax_conv(conv, x, (1, 1), "VALID", (1, 1)))
        h = _jax.reduce_window(h, -jnp.inf, jax.lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "VALID")
        y: jax.Array = h.reshape(h.shape[0], -1) @ dense.w + dense.b
        return y

    def ours(p: Any, x: jax.Array) -> jax.Array:
        y: jax.Array = model.apply(p, ((),) * 5, x, train=True)[0]
        return y

    def train(apply: Callable[[Any, jax.Array], jax.Array], p: Any) -> Any:
        def step(q: Any, batch: tuple[jax.Array, jax.Array]) -> tuple[Any, None]:
            g = grad(lambda r: jnp.mean((apply(r, batch[0]) - batch[1]) ** 2))(q)
            return tree_map(lambda a, b: a - 0.05 * b, q, g), None

        return jax.lax.scan(step, p, (xs, ys))[0]

    got = jit(vmap(lambda p: train(ours, p)))(seeds)
    for i in range(2):
        p_i = tree_map(lambda a, i=i: a[i], seeds)
        ref = jit(functools.partial(train, stock))(p_i)
        moved = jax.tree_util.tree_leaves(ref)[0] - jax.tree_util.tree_leaves(p_i)[0]
        assert float(jnp.max(jnp.abs(moved))) > 1e-3  # it trained
        for a, b in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(ref), strict=True):
            np.testing.assert_allclose(a[i], b, rtol=1e-5, atol=1e-6)


def test_conv_transposed_forward_in_training_scan_vmap_and_second_order() -> None:
    """The ``W^T P`` forward (at least 64 patch rows): compiled inside a scanned training loop it is
    a dot with output ``(c_out, positions)``; a scanned, seed-vmapped SGD run, forward mode and the
    gradient of an input-gradient penalty equal stock ``lax``."""
    params, x, r, s, d = _grad_case(2, (7, 6), (3, 3), 1, "SAME", 1, c_in=8)
    assert 3 * 3 * 8 >= _conv_gemm.TRANSPOSED_FORWARD_MIN_ROWS > 3 * 3 * 3
    xs = jnp.stack([x, 0.5 * x, -x])

    def ours(p: ConvParams, z: jax.Array) -> jax.Array:
        return conv2d(p, z)

    def stock(p: ConvParams, z: jax.Array) -> jax.Array:
        return lax_conv(p, z, s, "SAME", d)

    def train(conv: Conv, p: ConvParams) -> ConvParams:
        def body(q: ConvParams, xx: jax.Array) -> tuple[ConvParams, None]:
            g = grad(lambda w: jnp.mean(jnp.tanh(conv(w, xx)) * r))(q)
            return ConvParams(q.w - 0.5 * g.w, q.b - 0.5 * g.b), None

        return jax.lax.scan(body, p, xs)[0]

    if jax.default_backend() == "cpu":
        text = str(lower(functools.partial(train, ours), params).compile().as_text())
        # the forward: (c_out, N * 7 * 6) = (4, 84); the stock form would be (84, 4)
        assert re.search(r"= f32\[4,84\]\{1,0\} (?:dot|fusion)\(", text), "no transposed forward GEMM"
    seeds = ConvParams(jnp.stack([params.w, 0.5 * params.w]), jnp.stack([params.b, -params.b]))
    got = jit(vmap(functools.partial(train, ours)))(seeds)
    for i in range(2):
        p_i = ConvParams(seeds.w[i], seeds.b[i])
        ref = jit(functools.partial(train, stock))(p_i)
        assert float(jnp.max(jnp.abs(ref.w - p_i.w))) > 1e-4  # it trained
        np.testing.assert_allclose(got.w[i], ref.w, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(got.b[i], ref.b, rtol=1e-5, atol=1e-5)
    dw = ConvParams(normal(9, params.w.shape), normal(10, params.b.shape))
    def act(conv: Conv) -> Callable[[ConvParams], jax.Array]:
        return lambda p: jnp.tanh(conv(p, x))

    _, t = jvp(act(ours), (params,), (dw,))
    _, t_ref = jvp(act(stock), (params,), (dw,))
    np.testing.assert_allclose(t, t_ref, rtol=1e-4, atol=1e-4)

    def penalty(conv: Conv) -> Any:
        def inner(p: ConvParams, xx: jax.Array) -> jax.Array:
            return jnp.sum(jnp.tanh(conv(p, xx)) * r)

        return jit(grad(lambda p: jnp.sum(grad(inner, argnums=1)(p, x) ** 2)))(params)

    g, g_ref = penalty(ours), penalty(stock)
    np.testing.assert_allclose(g.w, g_ref.w, rtol=1e-4, atol=1e-4)
