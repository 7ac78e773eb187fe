"""Fully connected (dense, affine) layers: ``y = x W + b``.

Default initialization: weights ``glorot_uniform`` -- ``U(-a, a)`` with
``a = sqrt(6 / (n_in + n_out))`` (Glorot & Bengio 2010), which keeps the signal's variance roughly
constant both forwards and backwards for any roughly linear-at-zero activation (tanh, the output
layer); biases ``zeros``. For deep ReLU stacks pass ``w_init=initializers.he_normal()``
(``N(0, 2/n_in)``, He et al. 2015), since ReLU zeroes half of its inputs.

Shared within :mod:`functrain.layers` (not exported): :func:`apply_dense`, the body of
:func:`dense` whose errors name the caller (a layer, weight normalization, ``Residual``'s projection).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jaxtyping import Float

from functrain import _validate
from functrain.initializers import glorot_uniform, zeros
from functrain.layers._dense_gemm import matmul
from functrain.layers._geometry import check_input_shape, check_last_axis
from functrain.layers.base import Layer
from functrain.layers.precision import check_dtype, check_init_args
from functrain.typing import Array, DTypeLike, Initializer, PRNGKey, Shape

__all__ = [
    "Dense",
    "DenseParams",
    "dense",
    "init_dense",
]


class DenseParams(NamedTuple):
    """Parameters of a dense layer.

    Attributes:
        w: kernel, shape ``(in_features, out_features)``.
        b: bias, shape ``(out_features,)``.

    Example:
        >>> p = ft.layers.DenseParams(w=jnp.eye(2), b=jnp.array([1.0, -1.0]))
        >>> ft.layers.dense(p, jnp.array([3.0, 4.0])).tolist()
        [4.0, 3.0]
    """

    w: Array
    b: Array


def init_dense(
    key: PRNGKey,
    in_features: int,
    out_features: int,
    *,
    w_init: Initializer = glorot_uniform(),
    b_init: Initializer = zeros(),
    dtype: DTypeLike = jnp.float32,
) -> DenseParams:
    """Initialize a dense layer's parameters.

    Args:
        key: PRNG key (split internally between kernel and bias).
        in_features: number of input features ``n_in``.
        out_features: number of output features ``n_out``.
        w_init: kernel initializer, called with shape ``(n_in, n_out)``; default ``glorot_uniform()``.
        b_init: bias initializer, called with shape ``(n_out,)``; default ``zeros()``.
        dtype: parameter dtype, floating (default float32; float64 needs ``jax.enable_x64``).

    Returns:
        ``DenseParams(w (n_in, n_out), b (n_out,))``.

    Raises:
        TypeError, ValueError: a feature count that is not a positive int, or a ``dtype`` that
            is not a floating dtype JAX can hold.

    Example:
        >>> p = ft.layers.init_dense(jax.random.key(0), 784, 10, w_init=ft.initializers.he_normal())
        >>> p.w.shape, p.b.shape, p.w.dtype
        ((784, 10), (10,), dtype('float32'))
        >>> ft.layers.init_dense(jax.random.key(0), 4, 2, dtype=jnp.bfloat16).w.dtype
        dtype(bfloat16)
    """
    who = "init_dense"
    n_in = _validate.check_int(in_features, who, "in_features", low=1)
    n_out = _validate.check_int(out_features, who, "out_features", low=1)
    dtype = check_init_args(who, dtype, w_init=w_init, b_init=b_init)
    k_w, k_b = jax.random.split(key)
    return DenseParams(w=w_init(k_w, (n_in, n_out), dtype), b=b_init(k_b, (n_out,), dtype))


def dense(params: DenseParams, x: Float[Array, "*batch in_features"]) -> Float[Array, "*batch out_features"]:
    """Affine map ``y = x W + b`` over the last axis.

    Works on one example ``(n_in,)`` or any batch ``(..., n_in)``; compiles to one ``dot_general``
    and an add. On the CPU two shapes take a faster form of the same product (values equal to float
    rounding, every transformation supported): a narrow layer's kernel gradient and a
    small-kernel, wide-output layer's forward product (``functrain/layers/_dense_gemm.py``).

    Args:
        params: ``DenseParams(w (n_in, n_out), b (n_out,))``.
        x: input, shape ``(..., n_in)``.

    Returns:
        ``x @ w + b``, shape ``(..., n_out)``.

    Raises:
        ValueError: ``x.shape[-1] != n_in`` or parameters of inconsistent shapes (chex assertions
            at trace time, before XLA sees the program).

    Example:
        >>> p = ft.layers.init_dense(jax.random.key(0), 5, 3)
        >>> ft.layers.dense(p, jnp.ones((4, 5))).shape
        (4, 3)
        >>> ft.layers.dense(p, jnp.ones(5)).shape  # one example
        (3,)
    """
    return apply_dense(params, x, who="dense")


def apply_dense(params: DenseParams, x: Array, *, who: str) -> Array:
    """:func:`dense` with errors naming ``who``; shared within :mod:`functrain.layers`.

    chex checks (trace time only): the kernel has rank 2, the bias matches its output size, and
    ``x``'s last axis matches its input size.
    """
    w, b = params
    _validate.check_rank(w, 2, who, "params.w", layout="(in_features, out_features)")
    _validate.check_shape(b, (w.shape[1],), who, "params.b")
    check_last_axis(x, w.shape[0], who)
    return matmul(x, w) + b


def Dense(  # noqa: N802 (layer constructor)
    out_features: int,
    *,
    w_init: Initializer = glorot_uniform(),
    b_init: Initializer = zeros(),
    dtype: DTypeLike = jnp.float32,
) -> Layer[DenseParams, tuple[()]]:
    """A dense layer ``y = x W + b`` as a composable :class:`~functrain.layers.Layer`.

    ``init(key, (N, ..., n_in))`` returns ``(DenseParams, (), (N, ..., out_features))``.

    Args:
        out_features: number of output features.
        w_init: kernel initializer, shape ``(n_in, out_features)``; default ``glorot_uniform()``.
        b_init: bias initializer; default ``zeros()``.
        dtype: parameter dtype, floating (default float32; float64 needs ``jax.enable_x64``).

    Returns:
        The layer.

    Raises:
        TypeError, ValueError: ``out_features`` not a positive int or ``dtype`` not floating; at
            ``init``/``apply``, an input whose last axis does not match (the message names the
            layer and both shapes).

    Example:
        >>> layer = ft.layers.Dense(10)
        >>> params, state, out_shape = layer.init(jax.random.key(0), (-1, 784))
        >>> out_shape, params.w.shape
        ((-1, 10), (784, 10))
        >>> y, state = layer.apply(params, state, jnp.ones((32, 784)), train=False)
        >>> y.shape
        (32, 10)
    """
    who = "Dense"
    n_out = _validate.check_int(out_features, who, "out_features", low=1)
    check_init_args(who, dtype, available=False, w_init=w_init, b_init=b_init)

    def init(key: PRNGKey, input_shape: Sequence[int]) -> tuple[DenseParams, tuple[()], Shape]:
        shape = check_input_shape(input_shape, who, min_rank=2, axes="(N, ..., features)")
        params = init_dense(key, shape[-1], n_out, w_init=w_init, b_init=b_init, dtype=check_dtype(dtype, who))
        return params, (), shape[:-1] + (n_out,)

    def apply(
        params: DenseParams, state: tuple[()], x: Array, *, key: PRNGKey | None = None, train: bool
    ) -> tuple[Array, tuple[()]]:
        del key, train
        return apply_dense(params, x, who=who), state

    return Layer(init, apply)
