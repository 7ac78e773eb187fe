"""``functrain._random.bernoulli``: ``jax.random.bernoulli`` bit for bit, one fused loop on the CPU."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _typed import jit, lower, vmap

from functrain import _random
from functrain.layers import dropout

SHAPES = [(1,), (7,), (4, 5), (64, 1600), (2, 3, 4, 5), (3, 0)]


def _u32(v: int) -> jax.Array:
    return jnp.asarray(np.uint32(v))


def test_threefry_known_answer() -> None:
    """The Random123 known-answer vector of Threefry-2x32 with 20 rounds."""
    out = _random.threefry2x32(_u32(0x13198A2E), _u32(0x03707344), _u32(0x243F6A88), _u32(0x85A308D3))
    assert [int(v) for v in out] == [0xC4923A9C, 0x483DF7A0]
    zero = _random.threefry2x32(_u32(0), _u32(0), _u32(0), _u32(0))
    assert [int(v) for v in zero] == [0x6B200159, 0x99BA4EFE]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("p", [0.5, 0.3, 0.9, 1e-3, 0.0, 1.0])
def test_bernoulli_equals_jax_bit_for_bit(shape: tuple[int, ...], p: float) -> None:
    for key in (jax.random.key(0), jax.random.key(2**31 - 1), jax.random.fold_in(jax.random.key(5), 9)):
        ours = _random.bernoulli(key, p, shape)
        ref = jax.random.bernoulli(key, p, shape)
        assert ours.shape == ref.shape and ours.dtype == ref.dtype == jnp.bool_
        np.testing.assert_array_equal(ours, ref)


def test_bernoulli_raw_uint32_key_and_traced_p() -> None:
    raw = jax.random.PRNGKey(11)
    np.testing.assert_array_equal(_random.bernoulli(raw, 0.4, (33, 7)), jax.random.bernoulli(raw, 0.4, (33, 7)))

    def both(p: jax.Array) -> tuple[jax.Array, jax.Array]:
        key = jax.random.key(3)
        return _random.bernoulli(key, p, (100,)), jax.random.bernoulli(key, p, (100,))

    ours, ref = jit(both)(jnp.float32(0.25))
    np.testing.assert_array_equal(ours, ref)
    assert 5 < int(jnp.sum(ours)) < 50  # it is random, about a quarter


def test_bernoulli_under_vmap_over_keys_and_rates() -> None:
    keys = jax.random.split(jax.random.key(1), 6)
    rates = jnp.linspace(0.1, 0.9, 6)
    def ours_fn(k: jax.Array, p: jax.Array) -> jax.Array:
        return _random.bernoulli(k, p, (8, 9))

    def ref_fn(k: jax.Array, p: jax.Array) -> jax.Array:
        return jax.random.bernoulli(k, p, (8, 9))

    ours = jit(vmap(ours_fn))(keys, rates)
    ref = jit(vmap(ref_fn))(keys, rates)
    np.testing.assert_array_equal(ours, ref)


def test_other_prng_implementations_fall_back_to_jax() -> None:
    key = jax.random.key(4, impl="rbg")
    np.testing.assert_array_equal(_random.bernoulli(key, 0.5, (16, 3)), jax.random.bernoulli(key, 0.5, (16, 3)))
    assert _random.threefry_key(key) is None
    assert _random.threefry_key(jax.random.key(4)) is not None


def test_dropout_mask_is_one_fused_loop_on_cpu() -> None:
    """On the CPU the mask is computed without JAX's rolled ``while`` loop (which the stock
    bernoulli lowers to); the dropout output is the stock one."""
    if jax.default_backend() != "cpu":
        pytest.skip("the CPU lowering only")
    x = jnp.arange(64 * 50, dtype=jnp.float32).reshape(64, 50)

    def ours(k: jax.Array) -> jax.Array:
        return dropout(k, x, rate=0.5, train=True)

    def stock(k: jax.Array) -> jax.Array:
        keep = jax.random.bernoulli(k, 0.5, x.shape)
        return jnp.where(keep, x * 2.0, 0.0)

    key = jax.random.key(8)
    np.testing.assert_array_equal(jit(ours)(key), jit(stock)(key))
    ours_text = str(lower(ours, key).compile().as_text())
    stock_text = str(lower(stock, key).compile().as_text())
    assert " while(" in stock_text  # the check can fail
    assert " while(" not in ours_text
