"""Weight initializers: keep the signal's variance constant from layer to layer.

Every public function here is a *factory* returning an :class:`~functrain.typing.Initializer`,
``init(key, shape, dtype=float32) -> Array``, the same call signature as ``jax.nn.initializers``::

    w = glorot_normal()(key, (784, 512))

Each initializer is a pure function of its key, so the usual JAX transformations apply:

>>> keys = jax.random.split(jax.random.key(0), 5)
>>> jax.vmap(lambda k: ft.initializers.he_normal()(k, (784, 512)))(keys).shape  # 5 seeds at once
(5, 784, 512)

Random values are drawn as a flat vector and reshaped: the same values as drawing the shape
directly (JAX fills a shape's random bits in row-major order), but a conv kernel's draw compiles
several times faster than a rank-4 draw.

Fans follow the usual conventions: a dense kernel is ``(n_in, n_out)``; a convolution kernel is
HWIO, ``(*spatial, c_in, c_out)``, with ``n_in = prod(spatial) * c_in`` and
``n_out = prod(spatial) * c_out`` (see :func:`compute_fans`).

Why it matters (the lesson's argument): a unit summing ``n`` inputs with unit variance through weights
of variance ``sigma^2`` has output variance ``n * sigma^2``. With ``N(0, 1)`` weights the signal's
scale grows by ``sqrt(n)`` per layer and explodes with depth; ``sigma^2 = 1/n_in`` (LeCun),
``2/(n_in + n_out)`` (Glorot/Xavier, forward and backward) or ``2/n_in`` (He, for ReLU, which zeroes
half of its inputs) keeps it constant.

References:
    LeCun et al., "Efficient BackProp" (1998). Glorot & Bengio, "Understanding the difficulty of
    training deep feedforward neural networks" (AISTATS 2010). He et al., "Delving Deep into
    Rectifiers" (ICCV 2015). Saxe et al., "Exact solutions to the nonlinear dynamics of learning in
    deep linear neural networks" (ICLR 2014) for orthogonal initialization.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Sequence
from typing import Any, Literal

import jax
import jax.numpy as jnp

from functrain import _validate
from functrain._reinitialize import default_is_bias, default_is_weight, reinitialize
from functrain.typing import Array, DTypeLike, Initializer, PRNGKey

__all__ = [
    "compute_fans", "constant", "default_is_bias", "default_is_weight", "gaussian", "glorot_normal",
    "glorot_uniform", "he_normal", "he_uniform", "kaiming_normal", "kaiming_uniform", "lecun_normal",
    "lecun_uniform", "ones", "orthogonal", "reinitialize", "standard_normal", "truncated_normal",
    "uniform", "variance_scaling", "xavier_normal", "xavier_uniform", "zeros",
]

Mode = Literal["fan_in", "fan_out", "fan_avg"]
Distribution = Literal["normal", "truncated_normal", "uniform"]

_MODES = ("fan_in", "fan_out", "fan_avg")
_DISTRIBUTIONS = ("normal", "truncated_normal", "uniform")

# Standard deviation of a standard normal truncated to [-2, 2]:
# sqrt(1 - 4 phi(2) / (Phi(2) - Phi(-2))) with phi, Phi the standard normal pdf and cdf.
_TRUNC_STD = math.sqrt(1.0 - 4.0 * math.exp(-2.0) / math.sqrt(2.0 * math.pi) / math.erf(2.0 / math.sqrt(2.0)))


def _shape(shape: Sequence[int], who: str) -> tuple[int, ...]:
    expectation = "a shape (a sequence of ints >= 0)"
    try:
        if isinstance(shape, (str, bytes)) or any(isinstance(d, bool) for d in shape):
            raise TypeError("not a shape")
        out = tuple(operator.index(d) for d in shape)
    except TypeError:
        _validate.fail(who, "shape", expectation, shape, error=TypeError)
    if any(d < 0 for d in out):
        _validate.fail(who, "shape", expectation, out)
    return out


def _float_dtype(dtype: DTypeLike, who: str) -> jnp.dtype[Any]:
    try:
        dt = jnp.dtype(dtype)
    except TypeError:
        _validate.fail(who, "dtype", "a floating dtype (e.g. jnp.float32)", dtype, error=TypeError)
    if not jnp.issubdtype(dt, jnp.floating):
        _validate.fail(who, "dtype", "a floating dtype (e.g. jnp.float32)", str(dt))
    return dt


def _fans(s: tuple[int, ...], who: str) -> tuple[int, int]:
    if len(s) == 0:
        _validate.fail(who, "shape", "a shape of rank >= 1 (a scalar has no fans)", s)
    if len(s) == 1:
        return s[0], s[0]
    receptive = math.prod(s[:-2])
    return receptive * s[-2], receptive * s[-1]


def _initializer(who: str, draw: Callable[[PRNGKey, tuple[int, ...], jnp.dtype[Any]], Array]) -> Initializer:
    """An :class:`Initializer` that checks ``shape`` and ``dtype`` and calls ``draw(key, shape, dt)``.

    Low-precision dtypes (bfloat16, float16) are drawn in float32 and rounded once.
    """

    def init(key: PRNGKey, shape: Sequence[int], dtype: DTypeLike = jnp.float32) -> Array:
        s = _shape(shape, who)
        dt = _float_dtype(dtype, who)
        return draw(key, s, jnp.dtype(jnp.promote_types(dt, jnp.float32))).astype(dt)

    return init


def compute_fans(shape: Sequence[int]) -> tuple[int, int]:
    """Return ``(fan_in, fan_out)`` for a kernel shape.

    * rank 1 ``(n,)``: ``fan_in = fan_out = n``;
    * rank 2 dense ``(n_in, n_out)``: ``(n_in, n_out)``;
    * rank >= 3 conv kernel in HWIO layout ``(*spatial, c_in, c_out)`` (1, 2 or 3 spatial dims):
      ``fan_in = prod(spatial) * c_in``, ``fan_out = prod(spatial) * c_out``.

    Args:
        shape: the kernel shape.

    Returns:
        ``(fan_in, fan_out)`` as Python ints.

    Raises:
        TypeError: ``shape`` is not a sequence of ints.
        ValueError: ``shape`` has rank 0 (a scalar has no fans) or a negative size.

    Example:
        >>> ft.initializers.compute_fans((784, 512))
        (784, 512)
        >>> ft.initializers.compute_fans((3, 3, 32, 64))  # HWIO: 3 * 3 * 32 and 3 * 3 * 64
        (288, 576)
    """
    return _fans(_shape(shape, "compute_fans"), "compute_fans")


def variance_scaling(scale: float = 1.0, mode: Mode = "fan_in",
                     distribution: Distribution = "normal") -> Initializer:
    """Draw weights with variance ``scale / n``, where ``n`` depends on ``mode``.

    ``n = fan_in``, ``fan_out`` or ``(fan_in + fan_out) / 2`` (``fan_avg``); then

    * ``normal``: ``N(0, scale / n)``;
    * ``truncated_normal``: a normal truncated at two standard deviations, rescaled so that the
      variance *after* truncation is exactly ``scale / n``;
    * ``uniform``: ``U(-a, a)`` with ``a = sqrt(3 scale / n)`` (variance ``a^2 / 3 = scale / n``).

    Args:
        scale: positive variance multiplier (1 for LeCun/Glorot, 2 for He).
        mode: ``"fan_in"``, ``"fan_out"`` or ``"fan_avg"``.
        distribution: ``"normal"``, ``"truncated_normal"`` or ``"uniform"``.

    Returns:
        An initializer.

    Raises:
        TypeError: ``scale`` is not a number.
        ValueError: non-positive ``scale``, unknown ``mode`` or ``distribution``.

    Example:
        >>> init = ft.initializers.variance_scaling(2.0, "fan_in", "uniform")  # = he_uniform()
        >>> w = init(jax.random.key(0), (400, 300))
        >>> bool(jnp.abs(w).max() <= (3 * 2.0 / 400) ** 0.5)
        True
    """
    who = "variance_scaling"
    scale = _validate.check_positive(scale, who, "scale")
    _validate.check_choice(mode, _MODES, who, "mode")
    _validate.check_choice(distribution, _DISTRIBUTIONS, who, "distribution")

    def draw(key: PRNGKey, s: tuple[int, ...], sdt: jnp.dtype[Any]) -> Array:
        fan_in, fan_out = _fans(s, who)
        n = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2.0}[mode]
        variance = scale / max(1.0, float(n))
        flat = (math.prod(s),)
        if distribution == "normal":
            x = math.sqrt(variance) * jax.random.normal(key, flat, sdt)
        elif distribution == "truncated_normal":
            x = (math.sqrt(variance) / _TRUNC_STD) * jax.random.truncated_normal(key, -2.0, 2.0, flat, sdt)
        else:
            limit = math.sqrt(3.0 * variance)
            x = jax.random.uniform(key, flat, sdt, -limit, limit)
        return x.reshape(s)

    return _initializer(who, draw)


def uniform(scale: float = 0.05) -> Initializer:
    """``U(-scale, scale)``: symmetric uniform (unlike ``jax.nn.initializers.uniform``'s ``[0, scale)``).

    Variance ``scale^2 / 3``.

    Args:
        scale: the half-width, ``> 0``.

    Returns:
        An initializer.

    Raises:
        TypeError: ``scale`` is not a number.
        ValueError: ``scale <= 0``.

    Example:
        >>> w = ft.initializers.uniform(0.1)(jax.random.key(0), (100, 100))
        >>> bool(w.min() < 0 < w.max()), bool(jnp.abs(w).max() <= 0.1)
        (True, True)
    """
    scale = _validate.check_positive(scale, "uniform", "scale")

    def draw(key: PRNGKey, s: tuple[int, ...], sdt: jnp.dtype[Any]) -> Array:
        return jax.random.uniform(key, (math.prod(s),), sdt, -scale, scale).reshape(s)

    return _initializer("uniform", draw)


def standard_normal() -> Initializer:
    """``N(0, 1)`` regardless of the fans.

    The baseline the lesson warns against: a layer with ``n`` inputs multiplies the signal's standard
    deviation by ``sqrt(n)``, so activations explode (or saturate) with depth.

    Example:
        >>> w = ft.initializers.standard_normal()(jax.random.key(0), (500, 500))
        >>> round(float(w.std()), 1)
        1.0
    """

    def draw(key: PRNGKey, s: tuple[int, ...], sdt: jnp.dtype[Any]) -> Array:
        return jax.random.normal(key, (math.prod(s),), sdt).reshape(s)

    return _initializer("standard_normal", draw)


def gaussian() -> Initializer:
    """``N(0, 1/n_in)``: the lesson's ``gaussian`` initialization (untruncated).

    Keeps the variance of a unit-variance input unchanged through a linear layer.

    Example:
        >>> w = ft.initializers.gaussian()(jax.random.key(0), (400, 300))
        >>> round(float(w.var() * 400), 1)  # variance 1 / n_in
        1.0
    """
    return variance_scaling(1.0, "fan_in", "normal")


def lecun_normal() -> Initializer:
    """LeCun normal: ``N(0, 1/n_in)`` (LeCun et al. 1998); suited to tanh and SELU.

    Example:
        >>> w = ft.initializers.lecun_normal()(jax.random.key(0), (400, 300))
        >>> round(float(w.var() * 400), 1)
        1.0
    """
    return variance_scaling(1.0, "fan_in", "normal")


def lecun_uniform() -> Initializer:
    """LeCun uniform: ``U(-a, a)``, ``a = sqrt(3 / n_in)`` (variance ``1/n_in``).

    Example:
        >>> w = ft.initializers.lecun_uniform()(jax.random.key(0), (300, 200))
        >>> bool(jnp.abs(w).max() <= (3 / 300) ** 0.5)
        True
    """
    return variance_scaling(1.0, "fan_in", "uniform")


def glorot_normal() -> Initializer:
    """Glorot/Xavier normal: ``N(0, 2/(n_in + n_out))`` (Glorot & Bengio 2010); suited to tanh.

    ``xavier_normal`` is the same function.

    Example:
        >>> w = ft.initializers.glorot_normal()(jax.random.key(0), (400, 600))
        >>> round(float(w.var() * (400 + 600) / 2), 1)
        1.0
        >>> ft.initializers.xavier_normal is ft.initializers.glorot_normal
        True
    """
    return variance_scaling(1.0, "fan_avg", "normal")


def glorot_uniform() -> Initializer:
    """Glorot/Xavier uniform: ``U(-a, a)``, ``a = sqrt(6 / (n_in + n_out))``.

    ``xavier_uniform`` is the same function; it is the layers' default kernel initializer.

    Example:
        >>> w = ft.initializers.xavier_uniform()(jax.random.key(0), (3, 3, 16, 32))  # HWIO
        >>> bool(jnp.abs(w).max() <= (6 / (9 * 16 + 9 * 32)) ** 0.5)
        True
    """
    return variance_scaling(1.0, "fan_avg", "uniform")


def he_normal() -> Initializer:
    """He/Kaiming normal: ``N(0, 2/n_in)`` (He et al. 2015); suited to ReLU.

    ``kaiming_normal`` is the same function.

    Example:
        >>> w = ft.initializers.kaiming_normal()(jax.random.key(0), (512, 256))
        >>> round(float(w.var() * 512 / 2), 1)  # variance 2 / n_in
        1.0
    """
    return variance_scaling(2.0, "fan_in", "normal")


def he_uniform() -> Initializer:
    """He/Kaiming uniform: ``U(-a, a)``, ``a = sqrt(6 / n_in)`` (variance ``2/n_in``).

    ``kaiming_uniform`` is the same function.

    Example:
        >>> w = ft.initializers.kaiming_uniform()(jax.random.key(0), (3, 3, 8, 16))  # n_in = 72
        >>> bool(jnp.abs(w).max() <= (6 / 72) ** 0.5)
        True
    """
    return variance_scaling(2.0, "fan_in", "uniform")


xavier_normal = glorot_normal
xavier_uniform = glorot_uniform
kaiming_normal = he_normal
kaiming_uniform = he_uniform


def truncated_normal(stddev: float = 1e-2) -> Initializer:
    """A zero-mean normal truncated at two standard deviations, with standard deviation ``stddev``.

    The underlying normal ``N(0, (stddev / c)^2)`` is truncated to ``[-2 stddev / c, 2 stddev / c]``
    where ``c ~= 0.87962566`` is the standard deviation of a standard normal truncated to
    ``[-2, 2]``; so the values drawn have standard deviation exactly ``stddev`` after truncation.

    Args:
        stddev: the standard deviation after truncation, ``> 0``.

    Returns:
        An initializer.

    Raises:
        TypeError: ``stddev`` is not a number.
        ValueError: ``stddev <= 0``.

    Example:
        >>> w = ft.initializers.truncated_normal(0.5)(jax.random.key(0), (400, 500))
        >>> round(float(w.std()), 2), bool(jnp.abs(w).max() <= 2 * 0.5 / 0.8796)
        (0.5, True)
    """
    stddev = _validate.check_positive(stddev, "truncated_normal", "stddev")

    def draw(key: PRNGKey, s: tuple[int, ...], sdt: jnp.dtype[Any]) -> Array:
        x = jax.random.truncated_normal(key, -2.0, 2.0, (math.prod(s),), sdt)
        return ((stddev / _TRUNC_STD) * x).reshape(s)

    return _initializer("truncated_normal", draw)


def orthogonal(gain: float = 1.0) -> Initializer:
    """A (semi-)orthogonal matrix scaled by ``gain`` (Saxe et al. 2014).

    The kernel is viewed as a matrix of shape ``(prod(shape[:-1]), shape[-1])`` (for HWIO conv
    kernels: flattened receptive field x input channels by output channels). A Gaussian matrix is
    QR-decomposed with the sign of ``diag(R)`` folded into ``Q`` (a uniform draw from the orthogonal
    group). Tall matrices get orthonormal columns (``W^T W = gain^2 I``), wide ones orthonormal rows
    (``W W^T = gain^2 I``).

    Args:
        gain: the scale, ``> 0``.

    Returns:
        An initializer.

    Raises:
        TypeError: ``gain`` is not a number.
        ValueError: ``gain <= 0``, or (when called) a shape of rank < 2.

    Example:
        >>> w = ft.initializers.orthogonal(gain=2.0)(jax.random.key(0), (6, 4))
        >>> bool(jnp.allclose(w.T @ w, 4.0 * jnp.eye(4), atol=1e-5))
        True
    """
    gain = _validate.check_positive(gain, "orthogonal", "gain")

    def draw(key: PRNGKey, s: tuple[int, ...], sdt: jnp.dtype[Any]) -> Array:
        if len(s) < 2:
            _validate.fail("orthogonal", "shape", "a shape of rank >= 2", s)
        rows, cols = math.prod(s[:-1]), s[-1]
        q, r = jnp.linalg.qr(jax.random.normal(key, (max(rows, cols), min(rows, cols)), sdt))
        q = q * jnp.where(r.diagonal() < 0, -1.0, 1.0).astype(q.dtype)
        return (gain * (q.T if rows < cols else q)).reshape(s)

    return _initializer("orthogonal", draw)


def constant(value: float) -> Initializer:
    """Every entry equal to ``value``.

    Args:
        value: the fill value (a number; NaN is refused).

    Returns:
        An initializer (it ignores its key).

    Raises:
        TypeError: ``value`` is not a number.
        ValueError: ``value`` is NaN.

    Example:
        >>> ft.initializers.constant(0.5)(jax.random.key(0), (2, 2)).tolist()
        [[0.5, 0.5], [0.5, 0.5]]
    """
    v = _validate.check_number(value, "constant", "value")
    fill: float | Array = value if v is None else v  # a traced value (inside jit) is used as is

    def init(key: PRNGKey, shape: Sequence[int], dtype: DTypeLike = jnp.float32) -> Array:
        del key
        return jnp.full(_shape(shape, "constant"), fill, jnp.dtype(dtype))

    return init


def zeros() -> Initializer:
    """All zeros (the usual bias initializer).

    Example:
        >>> ft.initializers.zeros()(jax.random.key(0), (3,)).tolist()
        [0.0, 0.0, 0.0]
    """
    return constant(0.0)


def ones() -> Initializer:
    """All ones (the usual normalization-scale initializer).

    Example:
        >>> ft.initializers.ones()(jax.random.key(0), (2,), jnp.bfloat16).dtype
        dtype(bfloat16)
    """
    return constant(1.0)
