"""Activation functions: elementwise nonlinearities and the (log-)softmax.

Thin, typed wrappers over ``jax.nn`` / ``jax.numpy``; each compiles to the same primitives as the
``jax.nn`` function, so they add no overhead. All work on arrays of any shape.

As composable layers (``params = state = ()``): :data:`Relu`, :data:`Tanh`, :data:`Sigmoid`,
:data:`Gelu`, :data:`Softmax`, :data:`LogSoftmax` are ready-made values; :func:`LeakyRelu` and
:func:`Elu` take their hyperparameter; :func:`Elementwise` wraps any shape-preserving function.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import cast

import jax
import jax.numpy as jnp
from jaxtyping import Float

from functrain import _validate
from functrain.layers.base import Layer, stateless
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

    Example:
        >>> ft.layers.relu(jnp.array([-2.0, 0.0, 3.0])).tolist()
        [0.0, 0.0, 3.0]
    """
    return jax.nn.relu(x)


def leaky_relu(x: Float[Array, "..."], negative_slope: float = 0.01) -> Float[Array, "..."]:
    """Leaky ReLU, ``x if x >= 0 else negative_slope * x`` (Maas et al. 2013).

    Args:
        x: array of any shape.
        negative_slope: slope for negative inputs (default 0.01, as in PyTorch and ``jax.nn``).

    Returns:
        Same shape and dtype as ``x``.

    Example:
        >>> [round(v, 4) for v in ft.layers.leaky_relu(jnp.array([-2.0, 3.0]), 0.1).tolist()]
        [-0.2, 3.0]
    """
    _validate.check_number(negative_slope, "leaky_relu", "negative_slope", finite=True)
    return jax.nn.leaky_relu(x, negative_slope)


def elu(x: Float[Array, "..."], alpha: float = 1.0) -> Float[Array, "..."]:
    """Exponential linear unit, ``x if x > 0 else alpha * (exp(x) - 1)`` (Clevert et al. 2016).

    Args:
        x: array of any shape.
        alpha: saturation value for large negative inputs is ``-alpha`` (default 1).

    Returns:
        Same shape and dtype as ``x``.

    Example:
        >>> [round(v, 4) for v in ft.layers.elu(jnp.array([-1.0, 2.0])).tolist()]  # e^-1 - 1
        [-0.6321, 2.0]
    """
    _validate.check_number(alpha, "elu", "alpha", finite=True)
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

    Example:
        >>> [round(v, 4) for v in ft.layers.gelu(jnp.array([-1.0, 0.0, 1.0])).tolist()]
        [-0.1587, 0.0, 0.8413]
    """
    approximate = _validate.check_bool(approximate, "gelu", "approximate")
    return jax.nn.gelu(x, approximate=approximate)


def tanh(x: Float[Array, "..."]) -> Float[Array, "..."]:
    """Hyperbolic tangent, ``(e^x - e^-x) / (e^x + e^-x)``, range ``(-1, 1)``.

    Args:
        x: array of any shape.

    Returns:
        Same shape and dtype as ``x``.

    Example:
        >>> [round(v, 4) for v in ft.layers.tanh(jnp.array([0.0, 1.0])).tolist()]
        [0.0, 0.7616]
    """
    return jnp.tanh(x)


def sigmoid(x: Float[Array, "..."]) -> Float[Array, "..."]:
    """Logistic sigmoid, ``1 / (1 + exp(-x))``, range ``(0, 1)``.

    Args:
        x: array of any shape.

    Returns:
        Same shape and dtype as ``x``.

    Example:
        >>> ft.layers.sigmoid(jnp.array([0.0])).tolist()
        [0.5]
    """
    return jax.nn.sigmoid(x)


def softmax(x: Float[Array, "..."], axis: int = -1) -> Float[Array, "..."]:
    """Softmax along ``axis``: ``exp(x_i - max x) / sum_j exp(x_j - max x)`` (stable form).

    Args:
        x: array of any shape, e.g. logits ``(batch, classes)``.
        axis: the axis that sums to one (default: last).

    Returns:
        Probabilities, same shape and dtype as ``x``.

    Example:
        >>> p = ft.layers.softmax(jnp.array([[1.0, 1.0, 1.0, 1.0]]))
        >>> p.tolist()
        [[0.25, 0.25, 0.25, 0.25]]
    """
    return jax.nn.softmax(x, axis=_axis(x, axis, "softmax"))


def log_softmax(x: Float[Array, "..."], axis: int = -1) -> Float[Array, "..."]:
    """Log-softmax along ``axis``: ``x_i - max x - log sum_j exp(x_j - max x)`` (stable form).

    Args:
        x: array of any shape, e.g. logits ``(batch, classes)``.
        axis: the normalized axis (default: last).

    Returns:
        Log-probabilities, same shape and dtype as ``x``.

    Example:
        >>> lp = ft.layers.log_softmax(jnp.array([0.0, 0.0]))
        >>> [round(v, 4) for v in lp.tolist()]  # log(1/2)
        [-0.6931, -0.6931]
    """
    return jax.nn.log_softmax(x, axis=_axis(x, axis, "log_softmax"))


def Elementwise(fn: Callable[[Array], Array], name: str | None = None) -> Layer[tuple[()], tuple[()]]:  # noqa: N802 (layer constructor)
    """A parameter-free layer applying ``fn`` to the whole batch: ``y = fn(x)``.

    Args:
        fn: a shape-preserving function of an array (e.g. ``functools.partial(leaky_relu,
            negative_slope=0.2)``).
        name: name used in error messages (default: ``fn``'s name).

    Returns:
        A :class:`~functrain.layers.Layer` with ``params = state = ()``; the output shape is the input shape.

    Raises:
        TypeError: ``fn`` is not callable or ``name`` not a string.

    Example:
        >>> layer = ft.layers.Elementwise(jnp.abs)
        >>> y, _ = layer.apply((), (), jnp.array([[-1.0, 2.0]]), train=False)
        >>> y.tolist()
        [[1.0, 2.0]]
    """
    who = "Elementwise"
    _validate.check_callable(fn, who, "fn", "a function of an array")
    if name is not None and not isinstance(cast(object, name), str):
        _validate.fail(who, "name", "a string or None", name, error=TypeError)
    return stateless(name if name is not None else who, fn)


Relu: Layer[tuple[()], tuple[()]] = stateless("Relu", relu)
"""Layer applying :func:`relu`."""

Tanh: Layer[tuple[()], tuple[()]] = stateless("Tanh", tanh)
"""Layer applying :func:`tanh`."""

Sigmoid: Layer[tuple[()], tuple[()]] = stateless("Sigmoid", sigmoid)
"""Layer applying :func:`sigmoid`."""

Gelu: Layer[tuple[()], tuple[()]] = stateless("Gelu", gelu)
"""Layer applying the exact :func:`gelu` ``x Phi(x)``."""

Softmax: Layer[tuple[()], tuple[()]] = stateless("Softmax", softmax)
"""Layer applying :func:`softmax` over the last axis."""

LogSoftmax: Layer[tuple[()], tuple[()]] = stateless("LogSoftmax", log_softmax)
"""Layer applying :func:`log_softmax` over the last axis."""


def LeakyRelu(negative_slope: float = 0.01) -> Layer[tuple[()], tuple[()]]:  # noqa: N802 (layer constructor)
    """Layer applying :func:`leaky_relu` with the given ``negative_slope``.

    Args:
        negative_slope: slope for negative inputs, a concrete number (default 0.01).

    Returns:
        The layer (``params = state = ()``).

    Raises:
        TypeError: ``negative_slope`` is not a concrete number.
        ValueError: ``negative_slope`` is NaN or infinite.

    Example:
        >>> layer = ft.layers.LeakyRelu(0.2)
        >>> y, _ = layer.apply((), (), jnp.array([[-1.0, 1.0]]), train=False)
        >>> [round(v, 4) for v in y[0].tolist()]
        [-0.2, 1.0]
    """
    slope = _number(negative_slope, "negative_slope", "LeakyRelu")
    return stateless("LeakyRelu", lambda x: leaky_relu(x, slope))


def Elu(alpha: float = 1.0) -> Layer[tuple[()], tuple[()]]:  # noqa: N802 (layer constructor)
    """Layer applying :func:`elu` with the given ``alpha``.

    Args:
        alpha: ``-alpha`` is the saturation value for large negative inputs, a concrete number
            (default 1).

    Returns:
        The layer (``params = state = ()``).

    Raises:
        TypeError: ``alpha`` is not a concrete number.
        ValueError: ``alpha`` is NaN or infinite.

    Example:
        >>> layer = ft.layers.Elu(2.0)
        >>> params, state, out_shape = layer.init(jax.random.key(0), (-1, 5))
        >>> params, state, out_shape
        ((), (), (-1, 5))
    """
    a = _number(alpha, "alpha", "Elu")
    return stateless("Elu", lambda x: elu(x, a))


def _axis(x: Array, axis: object, who: str) -> int:
    """An axis of ``x`` (negative axes count from the end), checked against its rank."""
    ndim = jnp.ndim(x)
    return _validate.check_int(axis, who, "axis", low=-max(ndim, 1), high=max(ndim, 1) - 1)


def _number(value: object, name: str, who: str) -> float:
    """A concrete, finite number (layer hyperparameters are fixed when the layer is built)."""
    v = _validate.check_number(value, who, name, finite=True)
    if v is None:
        _validate.fail(who, name, "a concrete (not traced) finite number", value, error=TypeError)
    return v
