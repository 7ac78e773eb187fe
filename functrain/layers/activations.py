"""Activation functions: elementwise nonlinearities and the (log-)softmax.

Thin, typed wrappers over ``jax.nn`` / ``jax.numpy``; each compiles to the same primitives as the
``jax.nn`` function, so they add no overhead. All work on arrays of any shape.

As composable layers (``params = state = ()``): :data:`Relu`, :data:`Tanh`, :data:`Sigmoid`,
:data:`Gelu`, :data:`Softmax`, :data:`LogSoftmax` are ready-made values; :func:`LeakyRelu` and
:func:`Elu` take their hyperparameter; :func:`Elementwise` wraps any shape-preserving function.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
from jaxtyping import Float

from functrain.layers.base import Layer, _stateless
from functrain.typing import Array

__all__ = [
    "Elementwise",
    "Elu",
    "Gelu",
    "LeakyRelu",
    "LogSoftmax",
    "Relu",
    "Sigmoid",
    "Softmax",
    "Tanh",
    "elu",
    "gelu",
    "leaky_relu",
    "log_softmax",
    "relu",
    "sigmoid",
    "softmax",
    "tanh",
]


def relu(x: Float[Array, "..."]) -> Float[Array, "..."]:
    """Rectified linear unit, ``max(x, 0)`` (Nair & Hinton 2010).

    Args:
        x: array of any shape.

    Returns:
        ``max(x, 0)`` elementwise, same shape and dtype.
    """
    return jax.nn.relu(x)


def leaky_relu(x: Float[Array, "..."], negative_slope: float = 0.01) -> Float[Array, "..."]:
    """Leaky ReLU, ``x if x >= 0 else negative_slope * x`` (Maas et al. 2013).

    Args:
        x: array of any shape.
        negative_slope: slope for negative inputs (default 0.01, as in PyTorch and ``jax.nn``).

    Returns:
        Same shape and dtype as ``x``.
    """
    return jax.nn.leaky_relu(x, negative_slope)


def elu(x: Float[Array, "..."], alpha: float = 1.0) -> Float[Array, "..."]:
    """Exponential linear unit, ``x if x > 0 else alpha * (exp(x) - 1)`` (Clevert et al. 2016).

    Args:
        x: array of any shape.
        alpha: saturation value for large negative inputs is ``-alpha`` (default 1).

    Returns:
        Same shape and dtype as ``x``.
    """
    return jax.nn.elu(x, alpha)


def gelu(x: Float[Array, "..."], approximate: bool = False) -> Float[Array, "..."]:
    """Gaussian error linear unit, ``x * Phi(x)`` (Hendrycks & Gimpel 2016).

    ``Phi`` is the standard normal CDF, so the exact form is ``x/2 * (1 + erf(x / sqrt(2)))``
    (the default here, and PyTorch's). With ``approximate=True``:
    ``x/2 * (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))`` (``jax.nn.gelu``'s default).

    Args:
        x: array of any shape.
        approximate: use the tanh approximation.

    Returns:
        Same shape and dtype as ``x``.
    """
    return jax.nn.gelu(x, approximate=approximate)


def tanh(x: Float[Array, "..."]) -> Float[Array, "..."]:
    """Hyperbolic tangent, ``(e^x - e^-x) / (e^x + e^-x)``, range ``(-1, 1)``.

    Args:
        x: array of any shape.

    Returns:
        Same shape and dtype as ``x``.
    """
    return jnp.tanh(x)


def sigmoid(x: Float[Array, "..."]) -> Float[Array, "..."]:
    """Logistic sigmoid, ``1 / (1 + exp(-x))``, range ``(0, 1)``.

    Args:
        x: array of any shape.

    Returns:
        Same shape and dtype as ``x``.
    """
    return jax.nn.sigmoid(x)


def softmax(x: Float[Array, "..."], axis: int = -1) -> Float[Array, "..."]:
    """Softmax along ``axis``: ``exp(x_i - max x) / sum_j exp(x_j - max x)`` (stable form).

    Args:
        x: array of any shape, e.g. logits ``(batch, classes)``.
        axis: the axis that sums to one (default: last).

    Returns:
        Probabilities, same shape and dtype as ``x``.
    """
    return jax.nn.softmax(x, axis=axis)


def log_softmax(x: Float[Array, "..."], axis: int = -1) -> Float[Array, "..."]:
    """Log-softmax along ``axis``: ``x_i - max x - log sum_j exp(x_j - max x)`` (stable form).

    Args:
        x: array of any shape, e.g. logits ``(batch, classes)``.
        axis: the normalized axis (default: last).

    Returns:
        Log-probabilities, same shape and dtype as ``x``.
    """
    return jax.nn.log_softmax(x, axis=axis)


def Elementwise(fn: Callable[[Array], Array], name: str | None = None) -> Layer:  # noqa: N802 (layer constructor)
    """A parameter-free layer applying ``fn`` to the whole batch: ``y = fn(x)``.

    Args:
        fn: a shape-preserving function of an array (e.g. ``functools.partial(leaky_relu,
            negative_slope=0.2)``).
        name: name used in error messages (default: ``fn``'s name).

    Returns:
        A :class:`~functrain.layers.Layer` with ``params = state = ()``; the output shape is the input shape.
    """
    if not callable(fn):
        raise TypeError(f"Elementwise: argument 'fn' must be callable, got {fn!r}")
    label = name if name is not None else f"Elementwise({getattr(fn, '__name__', repr(fn))})"
    return _stateless(label, fn)


Relu: Layer = _stateless("Relu", relu)
"""Layer applying :func:`relu`."""

Tanh: Layer = _stateless("Tanh", tanh)
"""Layer applying :func:`tanh`."""

Sigmoid: Layer = _stateless("Sigmoid", sigmoid)
"""Layer applying :func:`sigmoid`."""

Gelu: Layer = _stateless("Gelu", gelu)
"""Layer applying the exact :func:`gelu` ``x Phi(x)``."""

Softmax: Layer = _stateless("Softmax", softmax)
"""Layer applying :func:`softmax` over the last axis."""

LogSoftmax: Layer = _stateless("LogSoftmax", log_softmax)
"""Layer applying :func:`log_softmax` over the last axis."""


def LeakyRelu(negative_slope: float = 0.01) -> Layer:  # noqa: N802 (layer constructor)
    """Layer applying :func:`leaky_relu` with the given ``negative_slope`` (default 0.01).

    Raises:
        TypeError: if ``negative_slope`` is not a number.
    """
    slope = _number(negative_slope, "negative_slope", "LeakyRelu")
    return _stateless(f"LeakyRelu({slope})", lambda x: leaky_relu(x, slope))


def Elu(alpha: float = 1.0) -> Layer:  # noqa: N802 (layer constructor)
    """Layer applying :func:`elu` with the given ``alpha`` (default 1).

    Raises:
        TypeError: if ``alpha`` is not a number.
    """
    a = _number(alpha, "alpha", "Elu")
    return _stateless(f"Elu({a})", lambda x: elu(x, a))


def _number(value: float, name: str, who: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{who}: argument '{name}' must be a number, got {value!r}")
    return float(value)
