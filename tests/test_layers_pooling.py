"""Pooling and flatten against NumPy loops; shape errors; jit/grad/vmap."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _typed import eval_shape, grad, jit, jvp, lower, reduce_window, vjp

from functrain._tree import is_tuple
from functrain.layers import (
    AvgPool,
    Flatten,
    GlobalAvgPool,
    MaxPool,
    avg_pool,
    flatten,
    global_avg_pool,
    max_pool,
)

KEY = jax.random.key(0)


def _normal(seed: int, shape: tuple[int, ...]) -> jax.Array:
    """Test inputs from NumPy (a jax.random draw compiles a program per shape, ~0.5 s each)."""
    return jnp.asarray(np.random.default_rng(seed).standard_normal(shape), jnp.float32)


def pool_reference(x: np.ndarray, window: Sequence[int], stride: Sequence[int], padding: str,
                   kind: str) -> np.ndarray:
    """Loop over windows of (N, *spatial, C); SAME pads (total // 2 before); avg counts real cells only."""
    x = np.asarray(x, np.float64)
    k = len(window)
    pads: list[tuple[int, int]] = []
    for a in range(k):
        n = x.shape[1 + a]
        if padding == "SAME":
            out = -(-n // stride[a])
            total = max((out - 1) * stride[a] + window[a] - n, 0)
            pads.append((total // 2, total - total // 2))
        else:
            pads.append((0, 0))
    valid = np.pad(np.ones(x.shape[1:-1]), pads)
    xp = np.pad(x, [(0, 0)] + pads + [(0, 0)])
    outs = [(xp.shape[1 + a] - window[a]) // stride[a] + 1 for a in range(k)]
    y = np.zeros((x.shape[0], *outs, x.shape[-1]))
    for n in range(x.shape[0]):
        for pos in itertools.product(*(range(o) for o in outs)):
            sl = tuple(slice(pos[a] * stride[a], pos[a] * stride[a] + window[a]) for a in range(k))
            cells = xp[n][sl].reshape(-1, x.shape[-1])
            mask = valid[sl].reshape(-1) > 0
            cells = cells[mask]
            y[(n, *pos)] = cells.max(0) if kind == "max" else cells.mean(0)
    return y


CASES = [((2, 2), None, "VALID"), ((3, 3), (2, 2), "VALID"), ((3, 3), (2, 2), "SAME"), ((2, 3), (1, 2), "SAME"),
         ((3, 3), (1, 1), "SAME")]


@pytest.mark.parametrize(("window", "stride", "padding"), CASES)
@pytest.mark.parametrize("kind", ["max", "avg"])
def test_pool2d_matches_numpy(window: tuple[int, int], stride: tuple[int, int] | None, padding: str,
                              kind: str) -> None:
    x = _normal(0, (2, 7, 6, 3))
    fn = max_pool if kind == "max" else avg_pool
    y = fn(x, window, stride=stride, padding=padding)  # type: ignore[arg-type]  # padding is a valid literal
    ref = pool_reference(np.asarray(x), window, stride or window, padding, kind)
    assert y.shape == ref.shape
    np.testing.assert_allclose(np.asarray(y), ref, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kind", ["max", "avg"])
def test_pool1d_and_one_example(kind: str) -> None:
    x = _normal(0, (2, 9, 4))
    fn = max_pool if kind == "max" else avg_pool
    y = fn(x, (3,), stride=2, padding="SAME")
    np.testing.assert_allclose(y, pool_reference(np.asarray(x), (3,), (2,), "SAME", kind), rtol=1e-5, atol=1e-6)
    # One example (no batch axis) equals the batched result.
    img = _normal(0, (6, 6, 2))
    np.testing.assert_allclose(fn(img, 2), fn(img[None], 2)[0], rtol=1e-6)


def test_pool_explicit_padding() -> None:
    x = _normal(0, (1, 4, 4, 1))
    y = max_pool(x, 2, padding=((1, 1), (1, 1)))
    xp = np.pad(np.asarray(x)[0, :, :, 0], 1, constant_values=-np.inf)
    ref = xp.reshape(3, 2, 3, 2).max((1, 3))
    np.testing.assert_allclose(y[0, :, :, 0], ref, rtol=1e-6)
    a = avg_pool(x, 2, padding=1)
    ones = np.pad(np.ones((4, 4)), 1)
    ref_avg = (np.pad(np.asarray(x)[0, :, :, 0], 1).reshape(3, 2, 3, 2).sum((1, 3))
               / ones.reshape(3, 2, 3, 2).sum((1, 3)))
    np.testing.assert_allclose(a[0, :, :, 0], ref_avg, rtol=1e-5)


def test_global_avg_pool_and_flatten() -> None:
    x = _normal(0, (2, 3, 4, 5))
    np.testing.assert_allclose(global_avg_pool(x), np.asarray(x, np.float64).mean((1, 2)), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(global_avg_pool(x[0], batch_dims=0), np.asarray(x[0]).mean((0, 1)), rtol=1e-5)
    assert flatten(x).shape == (2, 60)
    np.testing.assert_array_equal(flatten(x), np.asarray(x).reshape(2, -1))
    assert flatten(x, batch_dims=0).shape == (120,)
    assert flatten(x, batch_dims=2).shape == (2, 3, 20)
    with pytest.raises(ValueError, match=r"^global_avg_pool: argument 'x' must be an array of rank >= 3 "
                                         r"\(\*batch, \*spatial, C\) for batch_dims=1, got an array of shape \(2, 3\)"):
        global_avg_pool(jnp.ones((2, 3)))
    with pytest.raises(ValueError, match=r"^flatten: argument 'batch_dims' must be an int >= 0, got -1$"):
        flatten(x, batch_dims=-1)
    with pytest.raises(ValueError, match=r"^flatten: argument 'x' must be an array of rank >= 5 for batch_dims=5"):
        flatten(x, batch_dims=5)


def _max_pool_5(x: jax.Array) -> jax.Array:
    return max_pool(x, 5)


def test_pool_shape_errors() -> None:
    with pytest.raises(ValueError, match=r"^max_pool: argument 'x' must be an array whose spatial sizes fit the "
                                         r"window \(5, 5\).*got a traced array of shape \(1, 4, 4, 2\).*spatial "
                                         r"size \(4, 4\) is too small"):
        jit(_max_pool_5)(jnp.ones((1, 4, 4, 2)))
    with pytest.raises(ValueError, match=r"^avg_pool: argument 'x' must be an array of rank 3 or 4 \(N, H, W, C\) "
                                         r"or \(H, W, C\) for one example, got an array of shape \(4, 2\)"):
        avg_pool(jnp.ones((4, 2)), 2)
    with pytest.raises(ValueError, match=r"^max_pool: argument 'window' must be an int or a sequence of 2 ints, "
                                         r"each >= 1, got tuple \(2, 0\)$"):
        max_pool(jnp.ones((1, 4, 4, 2)), (2, 0))
    with pytest.raises(TypeError, match=r"^max_pool: argument 'stride' must be an int or a sequence of 2 ints"):
        max_pool(jnp.ones((1, 4, 4, 2)), 2, stride="2")  # type: ignore[arg-type]  # deliberately wrong
    with pytest.raises(ValueError, match=r"^avg_pool: argument 'padding' must be 'SAME', 'VALID'.*got 'valid'$"):
        avg_pool(jnp.ones((1, 4, 4, 2)), 2, padding="valid")  # type: ignore[arg-type]  # deliberately wrong


def test_pool_layers() -> None:
    params, state, out = MaxPool(2).init(KEY, (-1, 7, 6, 3))
    assert (params, state, out) == ((), (), (-1, 3, 3, 3))
    _, _, out = AvgPool((3, 3), stride=(2, 2), padding="SAME").init(KEY, (5, 7, 6, 3))
    assert out == (5, 4, 3, 3)
    _, _, out = MaxPool((2,)).init(KEY, (-1, 9, 4))
    assert out == (-1, 4, 4)
    x = _normal(0, (2, 7, 6, 3))
    y, _ = AvgPool(2, 1).apply((), (), x, train=False)
    np.testing.assert_allclose(y, avg_pool(x, 2, stride=1), rtol=1e-6)
    assert GlobalAvgPool.init(KEY, (-1, 7, 6, 3))[2] == (-1, 3)
    assert Flatten.init(KEY, (-1, 7, 6, 3))[2] == (-1, 126)
    assert Flatten.apply((), (), x, train=False)[0].shape == (2, 126)
    with pytest.raises(ValueError, match=r"^MaxPool: argument 'input_shape' must be a shape whose spatial sizes "
                                         r"fit the window \(4, 4\).*got tuple \(-1, 3, 6, 3\)"):
        MaxPool(4).init(KEY, (-1, 3, 6, 3))
    with pytest.raises(ValueError, match=r"^MaxPool: argument 'input_shape' must be a shape of rank 4 "
                                         r"\(N, H, W, C\)"):
        MaxPool(2).init(KEY, (-1, 6, 3))
    with pytest.raises(ValueError, match=r"^MaxPool: argument 'x' must be an array of rank 4 \(N, H, W, C\), got "
                                         r"an array of shape \(7, 6, 3\)"):
        MaxPool(2).apply((), (), x[0], train=False)
    with pytest.raises(ValueError, match=r"^GlobalAvgPool: argument 'input_shape' must be a shape of rank >= 3"):
        GlobalAvgPool.init(KEY, (-1, 6))
    with pytest.raises(ValueError, match=r"^AvgPool: argument 'window' must be an int or a non-empty sequence"):
        AvgPool(())


def test_pool_jit_grad_vmap() -> None:
    x = _normal(0, (2, 4, 4, 3))
    def max_loss(z: jax.Array) -> jax.Array:
        return jnp.sum(max_pool(z, 2))

    def avg_loss(z: jax.Array) -> jax.Array:
        return jnp.sum(avg_pool(z, 2))

    g = jit(grad(max_loss))(x)
    # The gradient of a max pool routes 1 to each window's argmax.
    ref = np.zeros((2, 4, 4, 3))
    xn = np.asarray(x)
    for n, i, j, c in itertools.product(range(2), range(2), range(2), range(3)):
        win = xn[n, 2 * i:2 * i + 2, 2 * j:2 * j + 2, c]
        u, v = np.unravel_index(np.argmax(win), (2, 2))
        ref[n, 2 * i + u, 2 * j + v, c] = 1.0
    np.testing.assert_array_equal(np.asarray(g), ref)
    g = jit(grad(avg_loss))(x)
    np.testing.assert_allclose(g, 0.25, rtol=1e-6)
    stack = _normal(1, (3, 2, 4, 4, 3))
    sn = np.asarray(stack, np.float64)

    def pooled(z: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
        return avg_pool(z, 2), global_avg_pool(z), flatten(z)

    a, gap, flat = jit(jax.vmap(pooled))(stack)
    np.testing.assert_allclose(a, sn.reshape(3, 2, 2, 2, 2, 2, 3).mean((3, 5)), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(gap, sn.mean((2, 3)), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(flat, np.asarray(stack).reshape(3, 2, 48))


# ------------------------------- the CPU tiled path (stride == window) against stock lax.reduce_window


def stock_pool(kind: str, x: jax.Array, window: Sequence[int], stride: Sequence[int],
               padding: str | Sequence[tuple[int, int]]) -> jax.Array:
    """Pooling as plain ``lax.reduce_window`` calls (JAX's default gradients): the reference."""
    k = len(window)
    lead = x.ndim - k - 1
    dims, steps = (1,) * lead + tuple(window) + (1,), (1,) * lead + tuple(stride) + (1,)
    pads = padding if isinstance(padding, str) else ((0, 0),) * lead + tuple(padding) + ((0, 0),)
    if kind == "max":
        return reduce_window(x, -jnp.inf, jax.lax.max, dims, steps, pads)
    summed = reduce_window(x, 0.0, jax.lax.add, dims, steps, pads)
    counts = reduce_window(jnp.ones_like(x), 0.0, jax.lax.add, dims, steps, pads)
    return summed / counts


TILED_CASES = [  # (input spatial shape, window, stride, padding); stride None = window (tiled on CPU)
    ((7, 5), (2, 2), None, "VALID"),  # odd sizes: the last row/column is dropped
    ((7, 8), (3, 3), None, "SAME"),  # padded to 9 x 9
    ((6, 7), (2, 3), None, ((1, 0), (2, 1))),  # explicit, asymmetric
    ((5, 6), (3, 2), None, ((1, 1), (1, 1))),
    ((9,), (3,), None, "SAME"),  # 1-D
    ((10,), (4,), None, "VALID"),  # 1-D, not divisible
    ((7, 6), (3, 3), (2, 2), "SAME"),  # window != stride: stock reduce_window
    ((6, 5), (2, 2), (1, 1), "VALID"),  # overlapping windows
]


def _pool_fns(case: tuple[object, ...], kind: str) -> tuple[Callable[[jax.Array], jax.Array],
                                                              Callable[[jax.Array], jax.Array]]:
    """functrain's pooling and the stock reference for one case."""
    _, window, stride, padding = case
    assert is_tuple(window)
    strides = window if stride is None else stride
    assert is_tuple(strides)
    fn = max_pool if kind == "max" else avg_pool

    def ours(z: jax.Array) -> jax.Array:
        return fn(z, window, stride=stride, padding=padding)  # type: ignore[arg-type]  # case tuple values are objects

    def stock(z: jax.Array) -> jax.Array:
        return stock_pool(kind, z, window, strides, padding)  # type: ignore[arg-type]  # as above

    return ours, stock


@pytest.mark.parametrize("case", TILED_CASES)
@pytest.mark.parametrize("kind", ["max", "avg"])
def test_pool_values_and_gradients_match_lax(case: tuple[object, ...], kind: str) -> None:
    size = case[0]
    assert is_tuple(size)
    x = _normal(len(size) * 10 + sum(size), (2, *size, 3))  # continuous values: no ties
    ours, stock = _pool_fns(case, kind)
    r = _normal(1, eval_shape(stock, x).shape)

    def run(pool: Callable[[jax.Array], jax.Array]) -> tuple[jax.Array, jax.Array, jax.Array]:
        def loss(z: jax.Array, rr: jax.Array) -> jax.Array:
            return jnp.sum(jnp.tanh(pool(z)) * rr)

        # The batched gradient, and (vmap over examples) the one-example form's.
        return pool(x), grad(loss)(x, r), jax.vmap(grad(loss))(x, r)

    (y, g, g_vmap), (y_ref, g_ref, _) = jit(lambda: run(ours))(), jit(lambda: run(stock))()
    assert y.shape == y_ref.shape
    np.testing.assert_allclose(y, y_ref, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(g, g_ref, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(g_vmap, g_ref, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("case", [TILED_CASES[1], TILED_CASES[2]])
@pytest.mark.parametrize("kind", ["max", "avg"])
def test_pool_forward_mode_and_second_order_match_lax(case: tuple[object, ...], kind: str) -> None:
    size = case[0]
    assert is_tuple(size)
    x, t = _normal(7, (2, *size, 3)), _normal(8, (2, *size, 3))
    ours, stock = _pool_fns(case, kind)
    r = _normal(9, eval_shape(stock, x).shape)

    def run(pool: Callable[[jax.Array], jax.Array]) -> tuple[jax.Array, jax.Array]:
        def loss(u: jax.Array) -> jax.Array:
            return jnp.sum(jnp.tanh(pool(u)) * r)

        return jvp(pool, (x,), (t,))[1], jvp(grad(loss), (x,), (t,))[1]  # jvp, Hessian-vector product

    (jv, hvp), (jv_ref, hvp_ref) = jit(lambda: run(ours))(), jit(lambda: run(stock))()
    np.testing.assert_allclose(jv, jv_ref, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(hvp, hvp_ref, rtol=1e-5, atol=1e-6)


def first_max_gradient(x: np.ndarray, window: tuple[int, int], g: np.ndarray) -> np.ndarray:
    """The documented tie rule: each window's gradient goes to its first maximal element (row-major)."""
    out = np.zeros_like(x, dtype=np.float64)
    kh, kw = window
    for n, i, j, c in itertools.product(*(range(d) for d in g.shape)):
        win = x[n, i * kh:(i + 1) * kh, j * kw:(j + 1) * kw, c]
        u, v = np.unravel_index(np.argmax(win), window)  # argmax: the first occurrence
        out[n, i * kh + u, j * kw + v, c] += g[n, i, j, c]
    return out


@pytest.mark.parametrize("window", [(2, 2), (3, 2)])
def test_max_pool_gradient_with_ties_goes_to_the_first_maximum(window: tuple[int, int]) -> None:
    rng = np.random.default_rng(3)
    x = jnp.asarray(rng.integers(-1, 2, (2, 6, 6, 3)), jnp.float32)  # three values: ties everywhere
    x = x.at[0, :2, :2, 0].set(0.0)  # a whole window of zeros, as after a ReLU
    g = _normal(4, (2, 6 // window[0], 6 // window[1], 3))
    def ours(z: jax.Array) -> jax.Array:
        return max_pool(z, window)

    def stock(z: jax.Array) -> jax.Array:
        return stock_pool("max", z, window, window, "VALID")

    got = jit(vjp(ours, x)[1])(g)[0]
    np.testing.assert_array_equal(np.asarray(got), first_max_gradient(np.asarray(x), window, np.asarray(g)))
    if jax.default_backend() == "cpu":  # XLA:CPU's select_and_scatter picks the same element
        ref = jit(vjp(stock, x)[1])(g)[0]
        np.testing.assert_array_equal(np.asarray(got), np.asarray(ref))


def test_max_pool_tie_rule_in_bfloat16_with_a_large_window() -> None:
    """Window positions above 256 are not exact in bfloat16: the rule keeps them in float32."""
    x = jnp.asarray(np.random.default_rng(4).integers(0, 2, (1, 34, 34, 2)), jnp.bfloat16)
    g = _normal(5, (1, 2, 2, 2))
    def pool(z: jax.Array) -> jax.Array:
        return max_pool(z, 17)

    got = jit(vjp(pool, x)[1])(g.astype(jnp.bfloat16))[0]
    ref = first_max_gradient(np.asarray(x, np.float32), (17, 17), np.asarray(g.astype(jnp.bfloat16), np.float32))
    assert got.dtype == jnp.bfloat16
    np.testing.assert_array_equal(np.asarray(got, np.float32), ref)


def test_pool_gradients_in_float64_equal_lax() -> None:
    with jax.enable_x64(True):
        x = jnp.asarray(np.random.default_rng(5).standard_normal((2, 7, 8, 3)), jnp.float64)
        for kind, fn in (("max", max_pool), ("avg", avg_pool)):
            def loss(z: jax.Array, f: Callable[..., jax.Array] = fn) -> jax.Array:
                return jnp.sum(jnp.sin(f(z, (2, 3), padding="SAME")))

            def loss_ref(z: jax.Array, k: str = kind) -> jax.Array:
                return jnp.sum(jnp.sin(stock_pool(k, z, (2, 3), (2, 3), "SAME")))

            g = jit(grad(loss))(x)
            g_ref = jit(grad(loss_ref))(x)
            assert g.dtype == jnp.float64
            np.testing.assert_allclose(g, g_ref, rtol=1e-13, atol=1e-13)


def test_tiled_max_pool_gradient_has_no_select_and_scatter_on_cpu() -> None:
    if jax.default_backend() != "cpu":
        pytest.skip("the tiled path is CPU-only")
    x = jnp.ones((2, 8, 8, 3))

    def program(stride: int) -> str:
        def loss(z: jax.Array) -> jax.Array:
            return jnp.sum(max_pool(z, 2, stride=stride))

        return str(lower(grad(loss), x).as_text())

    assert "stablehlo.select_and_scatter" not in program(2)
    assert "stablehlo.select_and_scatter" in program(1)  # overlapping windows keep the stock gradient


def test_integer_max_pool_matches_lax() -> None:
    x = jnp.asarray(np.random.default_rng(6).integers(-50, 50, (2, 5, 7, 3)), jnp.int32)
    y = max_pool(x, 2, padding="SAME")
    ref = reduce_window(x, np.iinfo(np.int32).min, jax.lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "SAME")
    assert y.dtype == jnp.int32
    np.testing.assert_array_equal(np.asarray(y), np.asarray(ref))
