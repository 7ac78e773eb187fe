"""Dense-layer gradients: the CPU rule of ``functrain.layers._dense_gemm`` against stock ``jnp.matmul``.

On the CPU the kernel gradient of a narrow layer (``n_out <= 32`` and ``n_out < n_in``) is the
GEMM ``(g^T x)^T`` instead of XLA's batch-contracting ``x^T g``, and the forward product of a small
kernel with a wide output (an input layer) is ``dot(x^T, w)`` contracting the first axes. These tests compare
``jax.grad`` through functrain's dense layers with ``jax.grad`` of the plain ``x @ w + b`` and
with float64 hand computation, over narrow and wide shapes, inputs with extra leading axes, and
under ``jit``, ``vmap``, ``lax.scan``, forward mode and second order; they also pin which shapes
take the rule and that the compiled training step computes it as the narrow GEMM.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _typed import grad, hessian, jit, jvp, lower, make_jaxpr, vmap

from functrain.layers import Dense, DenseParams, dense, serial
from functrain._tree import tree_map
from functrain.layers import _dense_gemm

KEY = jax.random.key(0)


def _normal(seed: int, shape: tuple[int, ...], dtype: Any = jnp.float32) -> jax.Array:
    return jax.random.normal(jax.random.key(seed), shape, dtype)


def _stock(p: DenseParams, x: jax.Array) -> jax.Array:
    y: jax.Array = x @ p.w + p.b
    return y


def _penalty_grad(layer: Callable[[DenseParams, jax.Array], jax.Array], p: DenseParams, x: jax.Array) -> Any:
    """The parameter gradient of an input-gradient penalty ``|d sum(layer(p, x)) / dx|^2``
    (second order through both tangents of the dense rule)."""
    def inner(q: DenseParams, xx: jax.Array) -> jax.Array:
        return jnp.sum(layer(q, xx))

    return jit(grad(lambda q: jnp.sum(grad(inner, argnums=1)(q, x) ** 2)))(p)


CASES = [  # (input shape, n_out): narrow (the rule) and wide (stock) layers
    ((8, 64), 10),
    ((5, 33), 1),
    ((7, 40), 32),
    ((3, 4, 24), 3),  # extra leading axis, flattened into the batch
    ((6, 16), 16),  # n_out == n_in: stock
    ((6, 16), 48),  # wide: stock
    ((9, 128), 33),  # just over NARROW_MAX: stock
    ((64, 64), 512),  # small kernel, wide output: the forward rule
    ((2, 32, 64), 512),  # the same with a leading axis (64 rows)
    ((32, 128), 512),  # the largest kernel of the forward rule (65,536 entries)
    ((16, 64), 512),  # too few rows: stock
    ((64, 256), 512),  # kernel over 65,536 entries: stock
]


@pytest.mark.parametrize(("x_shape", "n_out"), CASES)
def test_dense_gradients_match_stock_and_float64(x_shape: tuple[int, ...], n_out: int) -> None:
    n_in = x_shape[-1]
    seed = sum(x_shape) + n_out
    x = _normal(seed, x_shape)
    p = DenseParams(_normal(seed + 1, (n_in, n_out)) / np.sqrt(n_in), _normal(seed + 2, (n_out,)))  # O(1) outputs
    r = _normal(seed + 3, (*x_shape[:-1], n_out))
    expect_rule = n_out <= _dense_gemm.NARROW_MAX and n_out < n_in
    assert _dense_gemm.narrow(x_shape, (n_in, n_out)) == expect_rule
    rows = int(np.prod(x_shape[:-1]))
    expect_panel = rows >= 32 and n_out >= 512 and n_in * n_out <= 65536
    assert _dense_gemm.small_panel(x_shape, (n_in, n_out)) == expect_panel
    np.testing.assert_allclose(jit(dense)(p, x), _stock(p, x), rtol=1e-5, atol=1e-5)

    def loss(q: DenseParams, xx: jax.Array) -> jax.Array:
        return jnp.sum(jnp.tanh(dense(q, xx)) * r)

    def loss_stock(q: DenseParams, xx: jax.Array) -> jax.Array:
        return jnp.sum(jnp.tanh(_stock(q, xx)) * r)

    gp, gx = jit(grad(loss, argnums=(0, 1)))(p, x)
    rp, rx = jit(grad(loss_stock, argnums=(0, 1)))(p, x)
    for got, ref in ((gp.w, rp.w), (gp.b, rp.b), (gx, rx)):  # float32 sums: rounding at the scale of ref
        np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-6 * max(1.0, float(jnp.max(jnp.abs(ref)))))
    # float64 by hand: g_y = r (1 - tanh^2), g_w = x^T g_y, g_b = sum g_y, g_x = g_y w^T
    x64, w64, b64 = (np.asarray(a, np.float64) for a in (x, p.w, p.b))
    gy = np.asarray(r, np.float64) * (1 - np.tanh(x64 @ w64 + b64) ** 2)
    x2, gy2 = x64.reshape(-1, n_in), gy.reshape(-1, n_out)
    np.testing.assert_allclose(gp.w, x2.T @ gy2, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(gp.b, gy2.sum(0), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(gx, gy @ w64.T, rtol=1e-4, atol=1e-5)


def test_dense_gradients_in_float64_equal_stock() -> None:
    with jax.enable_x64(True):
        x = _normal(1, (12, 50), jnp.float64)
        p = DenseParams(_normal(2, (50, 7), jnp.float64), _normal(3, (7,), jnp.float64))
        r = _normal(4, (12, 7), jnp.float64)
        g = jit(grad(lambda q: jnp.sum(jnp.sin(dense(q, x)) * r)))(p)
        ref = jit(grad(lambda q: jnp.sum(jnp.sin(_stock(q, x)) * r)))(p)
        assert g.w.dtype == jnp.float64
        np.testing.assert_allclose(g.w, ref.w, rtol=1e-12, atol=1e-13)
        np.testing.assert_allclose(g.b, ref.b, rtol=1e-12, atol=1e-13)


def test_dense_one_example_and_bfloat16_take_the_plain_matmul_or_match() -> None:
    p = DenseParams(_normal(5, (20, 4)), _normal(6, (4,)))
    x1 = _normal(7, (20,))
    assert not _dense_gemm.narrow(x1.shape, p.w.shape)  # one example: no batch to transpose
    g = grad(lambda q: jnp.sum(dense(q, x1) ** 2))(p)
    ref = grad(lambda q: jnp.sum(_stock(q, x1) ** 2))(p)
    np.testing.assert_allclose(g.w, ref.w, rtol=1e-6)
    pb = DenseParams(p.w.astype(jnp.bfloat16), p.b.astype(jnp.bfloat16))
    xb = _normal(8, (6, 20)).astype(jnp.bfloat16)
    gb = jit(grad(lambda q: jnp.sum(dense(q, xb).astype(jnp.float32) ** 2)))(pb)
    rb = jit(grad(lambda q: jnp.sum(_stock(q, xb).astype(jnp.float32) ** 2)))(pb)
    assert gb.w.dtype == jnp.bfloat16
    np.testing.assert_allclose(np.asarray(gb.w, np.float32), np.asarray(rb.w, np.float32), rtol=2e-2, atol=2e-2)


def test_dense_gradients_under_vmap_over_kernels() -> None:
    """Per-seed kernels (``vmap`` over parameters and inputs, as ``run_seeds`` does)."""
    ws, bs = _normal(10, (3, 30, 5)), _normal(11, (3, 5))
    xs = _normal(12, (3, 8, 30))

    def g_of(apply: Callable[[DenseParams, jax.Array], jax.Array]) -> Any:
        def one(w: jax.Array, b: jax.Array, x: jax.Array) -> Any:
            return grad(lambda q: jnp.sum(jnp.tanh(apply(q, x)) ** 2))(DenseParams(w, b))

        return jit(vmap(one))(ws, bs, xs)

    got, ref = g_of(dense), g_of(_stock)
    np.testing.assert_allclose(got.w, ref.w, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got.b, ref.b, rtol=1e-5, atol=1e-6)


def test_dense_training_scan_matches_stock_and_python_loop() -> None:
    """A scanned SGD run of a narrow MLP head equals the stock model's run."""
    model = serial(Dense(24), Dense(3))
    params = model.init(KEY, (-1, 40))[0]
    xs, ys = _normal(20, (4, 16, 40)), _normal(21, (4, 16, 3))

    def ours(p: Any, x: jax.Array) -> jax.Array:
        y: jax.Array = model.apply(p, ((), ()), x, train=True)[0]
        return y

    def stock(p: Any, x: jax.Array) -> jax.Array:
        return _stock(p[1], _stock(p[0], x))

    def train(apply: Callable[[Any, jax.Array], jax.Array]) -> Any:
        def step(q: Any, batch: tuple[jax.Array, jax.Array]) -> tuple[Any, None]:
            g = grad(lambda r: jnp.mean((apply(r, batch[0]) - batch[1]) ** 2))(q)
            return tree_map(lambda a, b: a - 0.1 * b, q, g), None

        def run(p: Any) -> Any:
            return jax.lax.scan(step, p, (xs, ys))[0]

        return jit(run)(params)

    got, ref = train(ours), train(stock)
    moved = got[1].w - params[1].w
    assert float(jnp.max(jnp.abs(moved))) > 1e-3  # it trained
    for a, b in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(ref), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_dense_forward_mode_and_second_order() -> None:
    x = _normal(30, (6, 20))
    p = DenseParams(_normal(31, (20, 4)), _normal(32, (4,)))
    t = DenseParams(_normal(33, (20, 4)), _normal(34, (4,)))
    tx = _normal(35, (6, 20))

    def f(apply: Callable[[DenseParams, jax.Array], jax.Array]) -> Callable[[DenseParams, jax.Array], jax.Array]:
        return lambda q, xx: jnp.tanh(apply(q, xx))

    y, dy = jvp(f(dense), (p, x), (t, tx))
    ry, rdy = jvp(f(_stock), (p, x), (t, tx))
    np.testing.assert_allclose(y, ry, rtol=1e-6)
    np.testing.assert_allclose(dy, rdy, rtol=1e-5, atol=1e-6)

    def scalar(apply: Callable[[DenseParams, jax.Array], jax.Array]) -> Callable[[jax.Array], jax.Array]:
        return lambda w: jnp.sum(f(apply)(DenseParams(w, p.b), x) ** 2)

    h = jit(hessian(scalar(dense)))(p.w)
    rh = jit(hessian(scalar(_stock)))(p.w)
    np.testing.assert_allclose(h, rh, rtol=1e-4, atol=1e-5)
    # the gradient of an input-gradient penalty (second order through both tangents)
    g, rg = _penalty_grad(f(dense), p, x), _penalty_grad(f(_stock), p, x)
    np.testing.assert_allclose(g.w, rg.w, rtol=1e-4, atol=1e-5)


def test_narrow_kernel_gradient_is_the_transposed_gemm_on_cpu() -> None:
    """Compiled, the kernel gradient of a narrow layer is a dot whose output is ``(n_out, n_in)``
    (the long axis last); the stock program's is ``(n_in, n_out)``."""
    if jax.default_backend() != "cpu":
        pytest.skip("the CPU rule only")
    x = _normal(40, (64, 96))
    p = DenseParams(_normal(41, (96, 10)), jnp.zeros(10))

    def dots(apply: Callable[[DenseParams, jax.Array], jax.Array]) -> list[str]:
        text = str(lower(grad(lambda q: jnp.sum(jnp.tanh(apply(q, x)))), p).compile().as_text())
        return re.findall(r"= f32\[(\d+,\d+)\]\{1,0\} (?:dot|fusion)\([^\n]*(?:dot|ynn)", text)

    assert "10,96" in dots(dense) and "10,96" not in dots(_stock)
    assert "96,10" not in dots(dense)


def test_wide_layers_are_the_plain_matmul() -> None:
    """Shapes the rule does not cover trace to exactly the stock program (no custom rule)."""
    x = _normal(50, (8, 16))
    p = DenseParams(_normal(51, (16, 64)), jnp.zeros(64))

    def program(q: DenseParams) -> str:
        def loss(r: DenseParams) -> jax.Array:
            return jnp.sum(dense(r, x) ** 2)

        return str(make_jaxpr(grad(loss))(q))

    assert "custom_jvp" not in program(p) and "optimization_barrier" not in program(p)
    assert "optimization_barrier" in program(DenseParams(_normal(52, (16, 4)), jnp.zeros(4)))


def test_small_panel_rule_shapes() -> None:
    sp = _dense_gemm.small_panel
    assert sp((64, 64), (64, 512)) and sp((128, 32), (32, 512)) and sp((32, 64), (64, 1024))
    assert sp((4, 16, 64), (64, 512))  # leading axes count as rows
    assert not sp((64,), (64, 512))  # one example
    assert not sp((31, 64), (64, 1024))  # too few rows
    assert not sp((64, 64), (64, 256))  # output under 512
    assert not sp((64, 256), (256, 512))  # kernel over 65,536 entries
    assert not sp((32, 16), (16, 512))  # under 2**21 multiply-adds
    assert not (_dense_gemm.narrow((64, 64), (64, 512)))


def test_small_panel_forward_is_the_first_axis_contraction_on_cpu() -> None:
    """Compiled, the forward product of a small-kernel, wide-output layer contracts the first
    axes of ``x^T`` and ``w``; the stock program contracts ``x``'s last axis. The kernel
    gradient stays the stock batch contraction."""
    if jax.default_backend() != "cpu":
        pytest.skip("the CPU rule only")
    x = _normal(60, (64, 64))
    p = DenseParams(_normal(61, (64, 512)), jnp.zeros(512))

    def text(fn: Callable[[DenseParams], Any]) -> str:
        return str(lower(fn, p).compile().as_text())

    def fwd(apply: Callable[[DenseParams, jax.Array], jax.Array]) -> Callable[[DenseParams], jax.Array]:
        return lambda q: apply(q, x)

    first_axes = r"f32\[64,512\]\{1,0\} dot\([^\n]*lhs_contracting_dims=\{0\}, rhs_contracting_dims=\{0\}"
    assert re.search(first_axes, text(fwd(dense)))
    assert not re.search(first_axes, text(fwd(_stock)))
    # the kernel gradient is the same batch contraction in both programs
    kernel_grad = r"f32\[64,512\]\{1,0\} dot\([^\n]*lhs_contracting_dims=\{0\}"

    def g(apply: Callable[[DenseParams, jax.Array], jax.Array]) -> Callable[[DenseParams], Any]:
        return grad(lambda q: jnp.sum(jnp.tanh(apply(q, x))))

    assert len(re.findall(kernel_grad, text(g(dense)))) == len(re.findall(kernel_grad, text(g(_stock)))) + 1


def test_small_panel_transformations_match_stock() -> None:
    """The forward rule under ``vmap`` over kernels, forward mode, a Hessian-vector product, the
    gradient of an input-gradient penalty and float64."""
    x = _normal(70, (64, 64))
    p = DenseParams(_normal(71, (64, 512)) * 0.1, _normal(72, (512,)))
    assert _dense_gemm.small_panel(x.shape, p.w.shape)
    t = DenseParams(_normal(73, (64, 512)), _normal(74, (512,)))

    def f(apply: Callable[[DenseParams, jax.Array], jax.Array]) -> Callable[[DenseParams, jax.Array], jax.Array]:
        return lambda q, xx: jnp.tanh(apply(q, xx))

    y, dy = jvp(f(dense), (p, x), (t, x))
    ry, rdy = jvp(f(_stock), (p, x), (t, x))
    np.testing.assert_allclose(y, ry, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(dy, rdy, rtol=1e-4, atol=1e-5)

    def hvp(apply: Callable[[DenseParams, jax.Array], jax.Array]) -> Any:
        def loss(q: DenseParams) -> jax.Array:
            return jnp.sum(f(apply)(q, x) ** 2)

        def hv(q: DenseParams, v: DenseParams) -> Any:
            return jvp(grad(loss), (q,), (v,))[1]

        return jit(hv)(p, t)

    got, ref = hvp(dense), hvp(_stock)
    np.testing.assert_allclose(got.w, ref.w, rtol=1e-4, atol=1e-3)

    g, rg = _penalty_grad(f(dense), p, x), _penalty_grad(f(_stock), p, x)
    np.testing.assert_allclose(g.w, rg.w, rtol=1e-4, atol=1e-4)

    ws = jnp.stack([p.w, t.w, p.w * 0.5])
    xs = jnp.stack([x, x * 2.0, -x])

    def per_seed(apply: Callable[[DenseParams, jax.Array], jax.Array]) -> Any:
        def one(w: jax.Array, xx: jax.Array) -> Any:
            q = DenseParams(w, p.b)
            return apply(q, xx), grad(lambda r: jnp.sum(jnp.tanh(apply(r, xx)) ** 2))(q)

        return jit(vmap(one))(ws, xs)

    (yv, gv), (ryv, rgv) = per_seed(dense), per_seed(_stock)
    np.testing.assert_allclose(yv, ryv, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(gv.w, rgv.w, rtol=1e-4, atol=1e-4)

    with jax.enable_x64(True):
        x64 = _normal(75, (32, 64), jnp.float64)
        p64 = DenseParams(_normal(76, (64, 1024), jnp.float64), _normal(77, (1024,), jnp.float64))
        assert _dense_gemm.small_panel(x64.shape, p64.w.shape)
        y64 = jit(dense)(p64, x64)
        assert y64.dtype == jnp.float64
        np.testing.assert_allclose(y64, np.asarray(x64) @ np.asarray(p64.w) + np.asarray(p64.b),
                                   rtol=1e-12, atol=1e-12)
        g64 = jit(grad(lambda q: jnp.sum(jnp.sin(dense(q, x64)))))(p64)
        r64 = jit(grad(lambda q: jnp.sum(jnp.sin(_stock(q, x64)))))(p64)
        np.testing.assert_allclose(g64.w, r64.w, rtol=1e-11, atol=1e-12)
