"""Float64 references for the convolution tests: the direct definitions, and the stock ``lax`` op.

Shared by tests/test_layers_conv.py and tests/test_layers_conv_gradients.py.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from functrain.layers import ConvParams, PaddingLike


def normal(seed: int, shape: tuple[int, ...]) -> jax.Array:
    """Test inputs from NumPy (a jax.random draw compiles a program per shape, ~0.5 s each)."""
    return jnp.asarray(np.random.default_rng(seed).standard_normal(shape), jnp.float32)


def axis_pads(size: int, k: int, s: int, d: int, padding: PaddingLike, axis: int) -> tuple[int, int]:
    """``(low, high)`` padding of one spatial axis (``"SAME"`` puts the extra element at the end)."""
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
    pads = [axis_pads(x.shape[1 + a], w.shape[a], stride[a], dilation[a], padding, a) for a in range(nsp)]
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


DN = {1: ("NWC", "WIO", "NWC"), 2: ("NHWC", "HWIO", "NHWC")}


def lax_conv(p: ConvParams, x: jax.Array, stride: Sequence[int], padding: PaddingLike,
             dilation: Sequence[int]) -> jax.Array:
    """The stock lax convolution (default gradients) as the reference."""
    nsp = p.w.ndim - 2
    pads = padding if isinstance(padding, str) else (
        [(padding, padding)] * nsp if isinstance(padding, int) else list(padding))
    return jax.lax.conv_general_dilated(x, p.w, tuple(stride), pads, rhs_dilation=tuple(dilation),
                                        dimension_numbers=DN[nsp]) + p.b


def grad_reference(x: np.ndarray, w: np.ndarray, r: np.ndarray, stride: Sequence[int], padding: PaddingLike,
                   dilation: Sequence[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """float64 gradients of ``sum(conv(x, w) + b) * r)`` w.r.t. x, w, b by the direct definition."""
    x = np.asarray(x, np.float64)
    w = np.asarray(w, np.float64)
    r = np.asarray(r, np.float64)
    nsp = w.ndim - 2
    pads = [axis_pads(x.shape[1 + a], w.shape[a], stride[a], dilation[a], padding, a) for a in range(nsp)]
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
