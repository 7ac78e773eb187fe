"""Weight initializers: keep the signal's variance constant from layer to layer.

Every public function here is a *factory* returning an :class:`~functrain.typing.Initializer`,
``init(key, shape, dtype=float32) -> Array``, the same call signature as ``jax.nn.initializers``::

    w = glorot_normal()(key, (784, 512))

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
import sys
from collections.abc import Callable, Sequence
from typing import Any, Literal

import jax
import jax.numpy as jnp

from functrain import _tree
from functrain.typing import Array, DTypeLike, Initializer, PRNGKey, PyTree

__all__ = [
    "compute_fans",
    "constant",
    "default_is_bias",
    "default_is_weight",
    "gaussian",
    "glorot_normal",
    "glorot_uniform",
    "he_normal",
    "he_uniform",
    "kaiming_normal",
    "kaiming_uniform",
    "lecun_normal",
    "lecun_uniform",
    "ones",
    "orthogonal",
    "reinitialize",
    "standard_normal",
    "truncated_normal",
    "uniform",
    "variance_scaling",
    "xavier_normal",
    "xavier_uniform",
    "zeros",
]

Mode = Literal["fan_in", "fan_out", "fan_avg"]
Distribution = Literal["normal", "truncated_normal", "uniform"]

_MODES = ("fan_in", "fan_out", "fan_avg")
_DISTRIBUTIONS = ("normal", "truncated_normal", "uniform")

# Standard deviation of a standard normal truncated to [-2, 2]:
# sqrt(1 - 4 phi(2) / (Phi(2) - Phi(-2))) with phi, Phi the standard normal pdf and cdf.
_TRUNC_STD = math.sqrt(1.0 - 4.0 * math.exp(-2.0) / math.sqrt(2.0 * math.pi) / math.erf(2.0 / math.sqrt(2.0)))


def _shape(shape: Sequence[int], who: str) -> tuple[int, ...]:
    try:
        out = tuple(int(d) for d in shape)
    except TypeError as e:
        raise TypeError(f"{who}: argument 'shape' must be a sequence of ints, got {shape!r}") from e
    if any(d < 0 for d in out):
        raise ValueError(f"{who}: argument 'shape' must have non-negative dimensions, got {out}")
    return out


def _float_dtype(dtype: DTypeLike, who: str) -> jnp.dtype[Any]:
    dt = jnp.dtype(dtype)
    if not jnp.issubdtype(dt, jnp.floating):
        raise ValueError(f"{who}: argument 'dtype' must be a floating dtype, got {dt}")
    return dt


def _positive(value: float, name: str, who: str) -> float:
    v = float(value)
    if not (v > 0.0 and math.isfinite(v)):
        raise ValueError(f"{who}: argument '{name}' must be a finite number > 0, got {value!r}")
    return v


def _sampling_dtype(dt: jnp.dtype[Any]) -> jnp.dtype[Any]:
    # Draw low-precision dtypes (bfloat16, float16) in float32, then round once.
    return jnp.dtype(jnp.promote_types(dt, jnp.float32))


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
        ValueError: if ``shape`` has rank 0 (a scalar has no fans).
    """
    s = _shape(shape, "compute_fans")
    if len(s) == 0:
        raise ValueError(
            "compute_fans: argument 'shape' must have rank >= 1 to define fans, got a rank-0 shape ()"
        )
    if len(s) == 1:
        return s[0], s[0]
    receptive = math.prod(s[:-2])
    return receptive * s[-2], receptive * s[-1]


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
        ValueError: non-positive ``scale``, unknown ``mode`` or ``distribution``.
    """
    who = "variance_scaling"
    scale = _positive(scale, "scale", who)
    if mode not in _MODES:
        raise ValueError(f"{who}: argument 'mode' must be one of {_MODES}, got {mode!r}")
    if distribution not in _DISTRIBUTIONS:
        raise ValueError(
            f"{who}: argument 'distribution' must be one of {_DISTRIBUTIONS}, got {distribution!r}"
        )

    def init(key: PRNGKey, shape: Sequence[int], dtype: DTypeLike = jnp.float32) -> Array:
        s = _shape(shape, who)
        dt = _float_dtype(dtype, who)
        fan_in, fan_out = compute_fans(s)
        n = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2.0}[mode]
        variance = scale / max(1.0, float(n))
        sdt = _sampling_dtype(dt)
        if distribution == "normal":
            x = math.sqrt(variance) * jax.random.normal(key, s, sdt)
        elif distribution == "truncated_normal":
            x = (math.sqrt(variance) / _TRUNC_STD) * jax.random.truncated_normal(key, -2.0, 2.0, s, sdt)
        else:
            limit = math.sqrt(3.0 * variance)
            x = jax.random.uniform(key, s, sdt, -limit, limit)
        return x.astype(dt)

    return init


def uniform(scale: float = 0.05) -> Initializer:
    """``U(-scale, scale)``: symmetric uniform (unlike ``jax.nn.initializers.uniform``'s ``[0, scale)``).

    Variance ``scale^2 / 3``.

    Raises:
        ValueError: if ``scale <= 0``.
    """
    scale = _positive(scale, "scale", "uniform")

    def init(key: PRNGKey, shape: Sequence[int], dtype: DTypeLike = jnp.float32) -> Array:
        dt = _float_dtype(dtype, "uniform")
        s = _shape(shape, "uniform")
        return jax.random.uniform(key, s, _sampling_dtype(dt), -scale, scale).astype(dt)

    return init


def standard_normal() -> Initializer:
    """``N(0, 1)`` regardless of the fans.

    The baseline the lesson warns against: a layer with ``n`` inputs multiplies the signal's standard
    deviation by ``sqrt(n)``, so activations explode (or saturate) with depth.
    """

    def init(key: PRNGKey, shape: Sequence[int], dtype: DTypeLike = jnp.float32) -> Array:
        dt = _float_dtype(dtype, "standard_normal")
        s = _shape(shape, "standard_normal")
        return jax.random.normal(key, s, _sampling_dtype(dt)).astype(dt)

    return init


def gaussian() -> Initializer:
    """``N(0, 1/n_in)``: the lesson's ``gaussian`` initialization (untruncated).

    Keeps the variance of a unit-variance input unchanged through a linear layer.
    """
    return variance_scaling(1.0, "fan_in", "normal")


def lecun_normal() -> Initializer:
    """LeCun normal: ``N(0, 1/n_in)`` (LeCun et al. 1998); suited to tanh and SELU."""
    return variance_scaling(1.0, "fan_in", "normal")


def lecun_uniform() -> Initializer:
    """LeCun uniform: ``U(-a, a)``, ``a = sqrt(3 / n_in)`` (variance ``1/n_in``)."""
    return variance_scaling(1.0, "fan_in", "uniform")


def glorot_normal() -> Initializer:
    """Glorot/Xavier normal: ``N(0, 2/(n_in + n_out))`` (Glorot & Bengio 2010); suited to tanh."""
    return variance_scaling(1.0, "fan_avg", "normal")


def glorot_uniform() -> Initializer:
    """Glorot/Xavier uniform: ``U(-a, a)``, ``a = sqrt(6 / (n_in + n_out))``."""
    return variance_scaling(1.0, "fan_avg", "uniform")


def he_normal() -> Initializer:
    """He/Kaiming normal: ``N(0, 2/n_in)`` (He et al. 2015); suited to ReLU."""
    return variance_scaling(2.0, "fan_in", "normal")


def he_uniform() -> Initializer:
    """He/Kaiming uniform: ``U(-a, a)``, ``a = sqrt(6 / n_in)`` (variance ``2/n_in``)."""
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

    Raises:
        ValueError: if ``stddev <= 0``.
    """
    stddev = _positive(stddev, "stddev", "truncated_normal")

    def init(key: PRNGKey, shape: Sequence[int], dtype: DTypeLike = jnp.float32) -> Array:
        dt = _float_dtype(dtype, "truncated_normal")
        s = _shape(shape, "truncated_normal")
        x = jax.random.truncated_normal(key, -2.0, 2.0, s, _sampling_dtype(dt))
        return ((stddev / _TRUNC_STD) * x).astype(dt)

    return init


def orthogonal(gain: float = 1.0) -> Initializer:
    """A (semi-)orthogonal matrix scaled by ``gain`` (Saxe et al. 2014).

    The kernel is viewed as a matrix of shape ``(prod(shape[:-1]), shape[-1])`` (for HWIO conv
    kernels: flattened receptive field x input channels by output channels). A Gaussian matrix is
    QR-decomposed with the sign of ``diag(R)`` folded into ``Q`` (a uniform draw from the orthogonal
    group). Tall matrices get orthonormal columns (``W^T W = gain^2 I``), wide ones orthonormal rows
    (``W W^T = gain^2 I``).

    Raises:
        ValueError: if ``gain <= 0`` or the shape has rank < 2.
    """
    gain = _positive(gain, "gain", "orthogonal")

    def init(key: PRNGKey, shape: Sequence[int], dtype: DTypeLike = jnp.float32) -> Array:
        dt = _float_dtype(dtype, "orthogonal")
        s = _shape(shape, "orthogonal")
        if len(s) < 2:
            raise ValueError(f"orthogonal: argument 'shape' must have rank >= 2, got {s}")
        rows, cols = math.prod(s[:-1]), s[-1]
        big, small = max(rows, cols), min(rows, cols)
        a = jax.random.normal(key, (big, small), _sampling_dtype(dt))
        q, r = jnp.linalg.qr(a)
        d = jnp.diagonal(r)
        q = q * jnp.where(d < 0, -1.0, 1.0).astype(q.dtype)
        if rows < cols:
            q = q.T
        return (gain * q).reshape(s).astype(dt)

    return init


def constant(value: float) -> Initializer:
    """Every entry equal to ``value``."""
    v = float(value)

    def init(key: PRNGKey, shape: Sequence[int], dtype: DTypeLike = jnp.float32) -> Array:
        del key
        return jnp.full(_shape(shape, "constant"), v, jnp.dtype(dtype))

    return init


def zeros() -> Initializer:
    """All zeros (the usual bias initializer)."""
    return constant(0.0)


def ones() -> Initializer:
    """All ones (the usual normalization-scale initializer)."""
    return constant(1.0)


def default_is_weight(leaf: Any) -> bool:
    """Default weight rule for :func:`reinitialize`: a floating array with ``ndim >= 2``."""
    return _tree.is_float_array(leaf) and leaf.ndim >= 2


def default_is_bias(leaf: Any) -> bool:
    """Default bias rule for :func:`reinitialize`: a floating array with ``ndim == 1``."""
    return _tree.is_float_array(leaf) and leaf.ndim == 1


def _equinox_layer_types() -> tuple[type, ...]:
    """``(eqx.nn.Linear, eqx.nn.Conv)`` if equinox is already imported (a tree can only hold
    equinox modules then), else ``()``; keeps ``import functrain`` from importing equinox."""
    eqx = sys.modules.get("equinox")
    if eqx is None:
        return ()
    return (eqx.nn.Linear, eqx.nn.Conv)


def _reinitialize_equinox_layer(layer: Any, key: PRNGKey, weight_init: Initializer,
                                bias_init: Initializer, is_weight: Callable[[Any], bool],
                                is_bias: Callable[[Any], bool]) -> Any:
    """Re-draw an ``eqx.nn.Linear`` / ``eqx.nn.Conv`` in functrain's layout, then transpose.

    Equinox stores a linear weight as ``(out, in)`` and a conv kernel as ``(out, in, *spatial)``;
    drawing those shapes directly would swap the fans. The kernel is drawn as ``(in, out)`` /
    HWIO ``(*spatial, in, out)`` (so :func:`compute_fans` sees the right fans) and transposed.
    """
    import equinox as eqx

    w_key, b_key = jax.random.split(key)
    weight = layer.weight
    if is_weight(weight):
        n_spatial = weight.ndim - 2
        drawn_shape = (*weight.shape[2:], weight.shape[1], weight.shape[0])
        drawn = weight_init(w_key, drawn_shape, weight.dtype)
        new_weight = jnp.transpose(drawn, (n_spatial + 1, n_spatial, *range(n_spatial)))
        layer = eqx.tree_at(lambda m: m.weight, layer, new_weight)
    bias = layer.bias
    if bias is not None and is_bias(jnp.ravel(bias)):
        layer = eqx.tree_at(lambda m: m.bias, layer, bias_init(b_key, bias.shape, bias.dtype))
    return layer


def reinitialize(
    tree: PyTree,
    key: PRNGKey,
    *,
    weight_init: Initializer,
    bias_init: Initializer | None = None,
    is_weight: Callable[[Any], bool] = default_is_weight,
    is_bias: Callable[[Any], bool] = default_is_bias,
) -> PyTree:
    """Return a copy of ``tree`` with every weight re-drawn and every bias re-set.

    Works on any pytree: dicts, NamedTuples, functrain layer parameters and ``equinox.Module`` s
    (``eqx.nn.MLP`` ...). A leaf for which ``is_weight`` holds is replaced by
    ``weight_init(k, leaf.shape, leaf.dtype)``; a leaf for which ``is_bias`` holds by
    ``bias_init(k, ...)``; every other leaf (integer arrays, scalars, functions, Python values) is kept
    as it is. Each leaf gets its own key, ``fold_in(key, leaf_position)``, so equal shapes still get
    independent draws and the result is a deterministic function of ``key``.

    Fans assume functrain's layouts, dense ``(in, out)`` and conv HWIO. Equinox's ``eqx.nn.Linear``
    (``(out, in)``) and ``eqx.nn.Conv`` (``(out, in, *spatial)``, bias ``(out, 1, ...)``) layers are
    recognized and handled as units: the kernel is drawn in functrain's layout and transposed, so
    ``he_normal`` gives ``N(0, 2/n_in)`` there too, and the bias is re-set (when ``is_bias`` holds
    for it flattened). For other layouts pass a custom ``weight_init``.

    Args:
        tree: the parameters.
        key: PRNG key.
        weight_init: initializer for weights.
        bias_init: initializer for biases; defaults to :func:`zeros`.
        is_weight: predicate selecting weights (default: floating arrays with ``ndim >= 2``).
        is_bias: predicate selecting biases (default: floating arrays with ``ndim == 1``).

    Returns:
        A pytree with ``tree``'s structure.
    """
    b_init = zeros() if bias_init is None else bias_init
    eqx_layers = _equinox_layer_types()
    leaves, treedef = jax.tree_util.tree_flatten(
        tree, is_leaf=(lambda x: isinstance(x, eqx_layers)) if eqx_layers else None)
    out = []
    for position, leaf in enumerate(leaves):
        k = jax.random.fold_in(key, position)
        if eqx_layers and isinstance(leaf, eqx_layers):
            out.append(_reinitialize_equinox_layer(leaf, k, weight_init, b_init, is_weight, is_bias))
        elif is_weight(leaf):
            out.append(weight_init(k, leaf.shape, leaf.dtype))
        elif is_bias(leaf):
            out.append(b_init(k, leaf.shape, leaf.dtype))
        else:
            out.append(leaf)
    return _tree.tree_unflatten(treedef, out)
