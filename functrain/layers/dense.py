"""Fully connected (dense, affine) layers: ``y = x W + b``.

Default initialization: weights ``glorot_uniform`` -- ``U(-a, a)`` with
``a = sqrt(6 / (n_in + n_out))`` (Glorot & Bengio 2010), which keeps the signal's variance roughly
constant both forwards and backwards for any roughly linear-at-zero activation (tanh, the output
layer); biases ``zeros``. For deep ReLU stacks pass ``w_init=initializers.he_normal()``
(``N(0, 2/n_in)``, He et al. 2015), since ReLU zeroes half of its inputs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jaxtyping import Float

from functrain.initializers import glorot_uniform, zeros
from functrain.layers._util import check_count, check_input_shape, fmt
from functrain.layers.base import Layer
from functrain.typing import Array, DTypeLike, Initializer, PRNGKey, PyTree, Shape

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
        dtype: parameter dtype (default float32).

    Returns:
        ``DenseParams(w (n_in, n_out), b (n_out,))``.

    Raises:
        ValueError: if a feature count is not a positive int.
    """
    check_count(in_features, "in_features", "init_dense")
    check_count(out_features, "out_features", "init_dense")
    k_w, k_b = jax.random.split(key)
    return DenseParams(
        w=w_init(k_w, (in_features, out_features), dtype),
        b=b_init(k_b, (out_features,), dtype),
    )


def _check_dense(params: DenseParams, x_shape: tuple[int, ...], who: str) -> None:
    """Validate ``params`` and an input shape for :func:`dense`, naming ``who`` in errors."""
    w, b = params
    if w.ndim != 2:
        raise ValueError(f"{who}: kernel w must have rank 2 (in_features, out_features), got shape {fmt(w.shape)}")
    if b.shape != (w.shape[1],):
        raise ValueError(f"{who}: bias b must have shape {fmt((w.shape[1],))} to match kernel {fmt(w.shape)}, "
                         f"got {fmt(b.shape)}")
    if len(x_shape) < 1 or x_shape[-1] != w.shape[0]:
        raise ValueError(
            f"{who}: expected input with {w.shape[0]} features in its last axis, shape (..., {w.shape[0]}), "
            f"got shape {fmt(x_shape)}"
        )


def dense(params: DenseParams, x: Float[Array, "*batch in_features"]) -> Float[Array, "*batch out_features"]:
    """Affine map ``y = x W + b`` over the last axis.

    Works on one example ``(n_in,)`` or any batch ``(..., n_in)``; compiles to one ``dot_general``
    and an add.

    Args:
        params: ``DenseParams(w (n_in, n_out), b (n_out,))``.
        x: input, shape ``(..., n_in)``.

    Returns:
        ``x @ w + b``, shape ``(..., n_out)``.

    Raises:
        ValueError: if ``x.shape[-1] != n_in`` or the parameters have inconsistent shapes
            (checked at trace time, before XLA sees the program).
    """
    return _apply_dense(params, x, "dense")


def _apply_dense(params: DenseParams, x: Array, who: str) -> Array:
    """:func:`dense` with errors naming ``who`` (a layer's name)."""
    _check_dense(params, tuple(x.shape), who)
    w, b = params
    return jnp.matmul(x, w) + b


def Dense(  # noqa: N802 (layer constructor)
    out_features: int,
    *,
    w_init: Initializer = glorot_uniform(),
    b_init: Initializer = zeros(),
) -> Layer:
    """A dense layer ``y = x W + b`` as a composable :class:`~functrain.layers.Layer`.

    ``init(key, (N, ..., n_in))`` returns ``(DenseParams, (), (N, ..., out_features))``.

    Args:
        out_features: number of output features.
        w_init: kernel initializer, shape ``(n_in, out_features)``; default ``glorot_uniform()``.
        b_init: bias initializer; default ``zeros()``.

    Returns:
        The layer.

    Raises:
        ValueError: ``out_features`` not a positive int; at ``init``/``apply``, an input whose last
            axis does not match (the message names the layer and both shapes).
    """
    name = f"Dense({out_features})"
    check_count(out_features, "out_features", "Dense")

    def init(key: PRNGKey, input_shape: Sequence[int]) -> tuple[PyTree, PyTree, Shape]:
        shape = check_input_shape(input_shape, name, min_rank=2, layout="(N, ..., features)")
        params = init_dense(key, shape[-1], out_features, w_init=w_init, b_init=b_init)
        return params, (), shape[:-1] + (out_features,)

    def apply(
        params: PyTree, state: PyTree, x: Array, *, key: PRNGKey | None = None, train: bool
    ) -> tuple[Array, PyTree]:
        del key, train
        return _apply_dense(params, x, name), state

    return Layer(init, apply)
