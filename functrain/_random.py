"""``bernoulli``: ``jax.random.bernoulli`` bit for bit, with a Threefry that fuses on the CPU.

On the CPU, JAX lowers its Threefry-2x32 hash as a rolled 5-iteration loop (to keep compile
times short), so every dropout mask is computed as a ``while`` loop writing two ``uint32`` arrays
per round. Written out as the 20 rounds of plain integer ops here, XLA fuses the hash, the
uniform float conversion and the comparison into one loop over the mask: the lesson convnet's
dropout (64 x 1600 mask) took ~0.4 ms of the rolled loop per step on a 2-core x86 CPU, about 5%
of the training step.

Same numbers: the counters (``iota`` over the flattened shape, the high word zero), the 20
rounds with the key schedule, ``bits = out_1 ^ out_2``, the 23-bit mantissa float in ``[0, 1)``
and ``u < p`` are JAX's own definitions (``jax_threefry_partitionable`` mode, JAX's default).
Keys of another PRNG implementation, the non-partitionable mode, masks of ``2**32`` elements or
more, and every backend but the CPU (``lax.platform_dependent``) use ``jax.random.bernoulli``
itself. ``tests/test_random.py`` checks equality bit for bit.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from functrain import _jax
from functrain.typing import Array, PRNGKey

__all__ = ["bernoulli", "threefry2x32", "threefry_key"]

_ROTATIONS = ((13, 15, 26, 6), (17, 29, 16, 24))
_PARITY = 0x1BD11BDA


def _rotl(x: Array, d: int) -> Array:
    return lax.shift_left(x, np.uint32(d)) | lax.shift_right_logical(x, np.uint32(32 - d))


def threefry2x32(k0: Array, k1: Array, x0: Array, x1: Array) -> tuple[Array, Array]:
    """The Threefry-2x32 hash (20 rounds) of counters ``(x0, x1)`` under key ``(k0, k1)``.

    Example:
        >>> import numpy as np
        >>> u = lambda v: jnp.asarray(np.uint32(v))
        >>> [hex(int(v)) for v in threefry2x32(u(0x13198a2e), u(0x03707344), u(0x243f6a88), u(0x85a308d3))]
        ['0xc4923a9c', '0x483df7a0']
    """
    ks = (k0, k1, k0 ^ k1 ^ np.uint32(_PARITY))
    a, b = x0 + ks[0], x1 + ks[1]
    for i in range(5):
        for r in _ROTATIONS[i % 2]:
            a = a + b
            b = a ^ _rotl(b, r)
        a = a + ks[(i + 1) % 3]
        b = b + ks[(i + 2) % 3] + np.uint32(i + 1)
    return a, b


def _config(name: str) -> object:
    """A JAX configuration value (typed ``object``: ``jax.config``'s attributes are untyped)."""
    value: object = getattr(jax.config, name)
    return value


def threefry_key(key: PRNGKey) -> Array | None:
    """The ``uint32[2]`` data of a Threefry key, or ``None`` for another implementation.

    Example:
        >>> threefry_key(jax.random.key(0)).tolist(), threefry_key(jax.random.key(0, impl="rbg"))
        ([0, 0], None)
    """
    if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        if "threefry" not in str(jax.random.key_impl(key)):
            return None
        return jax.random.key_data(key)
    if key.dtype == jnp.uint32 and key.shape == (2,) and "threefry" in str(_config("jax_default_prng_impl")):
        return key
    return None


def _uniform_below(data: Array, p: Array, shape: tuple[int, ...]) -> Array:
    """``uniform(key, shape) < p`` as ``jax.random.bernoulli`` computes it (float32)."""
    hi = jnp.zeros(shape, jnp.uint32)
    lo = lax.iota(jnp.uint32, math.prod(shape)).reshape(shape)
    a, b = threefry2x32(data[0], data[1], hi, lo)
    float_bits = lax.shift_right_logical(a ^ b, np.uint32(32 - 23)) | np.uint32(0x3F800000)
    u = lax.bitcast_convert_type(float_bits, jnp.float32) - jnp.float32(1.0)
    below: Array = u < p
    return below


def bernoulli(key: PRNGKey, p: float | Array, shape: tuple[int, ...]) -> Array:
    """``jax.random.bernoulli(key, p, shape)`` with a float32 ``p``, the same booleans bit for bit.

    Example:
        >>> key = jax.random.key(0)
        >>> bool(jnp.all(bernoulli(key, 0.3, (4, 5)) == jax.random.bernoulli(key, 0.3, (4, 5))))
        True
    """
    pf = jnp.asarray(p, jnp.float32)
    data = threefry_key(key)
    if data is None or not _config("jax_threefry_partitionable") or math.prod(shape) >= 2**32:
        return jax.random.bernoulli(key, pf, shape)

    def cpu(d: Array, q: Array) -> Array:
        return _uniform_below(d, q, shape)

    def stock(d: Array, q: Array) -> Array:
        del d
        return jax.random.bernoulli(key, q, shape)

    return _jax.platform_dependent(data, pf, cpu=cpu, default=stock)
