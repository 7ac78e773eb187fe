"""Stochastic depth, a.k.a. drop-path (Huang et al., "Deep Networks with Stochastic Depth", ECCV
2016): in training, drop a residual branch's whole output for some examples.

Put :func:`DropPath` at the end of a residual branch, ``Residual(serial(..., DropPath(0.1)))``: for
each example independently, with probability ``rate`` the branch contributes nothing (the block is
the identity for that example); otherwise its output is scaled by ``1 / (1 - rate)``, so the
expected output is unchanged and evaluation (``train=False``) is the identity -- the per-example,
inverted form used by timm and the vision transformers (Huang et al. drop the branch for the whole
batch and rescale at test time instead).
"""

from __future__ import annotations

import jax.numpy as jnp
from jaxtyping import Float

from functrain import _random, _validate
from functrain.layers.base import Layer
from functrain.layers.dropout import stochastic_layer
from functrain.typing import Array, PRNGKey

__all__ = ["DropPath", "drop_path"]


def drop_path(
    key: PRNGKey | None,
    x: Float[Array, "batch ..."],
    *,
    rate: float | Array,
    train: bool,
) -> Float[Array, "batch ..."]:
    """Drop whole examples: ``y_i = m_i x_i / (1 - rate)``, ``m_i ~ Bernoulli(1 - rate)`` per example.

    One mask entry per example (axis 0), broadcast over all its other axes, so an example's branch
    output is either kept entirely (and scaled) or zeroed entirely. ``E[y] = x``.

    Args:
        key: PRNG key for the mask; may be ``None`` only when ``train`` is false.
        x: a batch, shape ``(batch, ...)`` (axis 0 indexes the examples).
        rate: probability of dropping an example's branch, in ``[0, 1)``. A concrete value is
            validated; a traced array (a sweep over rates) is used as is.
        train: ``False`` returns ``x`` unchanged. Must be a bool.

    Returns:
        Same shape and dtype as ``x``. Identity when ``train`` is false or ``rate == 0``.

    Raises:
        TypeError: ``rate`` is not a number or ``train`` not a bool.
        ValueError: ``rate`` outside ``[0, 1)``, ``x`` of rank 0, or ``train=True`` without a key.

    Example:
        >>> x = jnp.ones((6, 2, 2))
        >>> y = ft.layers.drop_path(jax.random.key(0), x, rate=0.5, train=True)
        >>> [sorted(set(v.ravel().tolist())) for v in y]  # each example: all 0 or all 2
        [[0.0], [0.0], [2.0], [2.0], [0.0], [2.0]]
        >>> bool((ft.layers.drop_path(None, x, rate=0.5, train=False) == x).all())  # evaluation
        True
    """
    return _apply_drop_path(key, x, rate, train, "drop_path")


def _apply_drop_path(key: PRNGKey | None, x: Array, rate: float | Array, train: bool,
                     who: str) -> Array:
    _validate.check_fraction(rate, who, "rate")
    if not hasattr(x, "shape"):
        _validate.fail(who, "x", "an array", x, error=TypeError)
    if x.ndim < 1:
        _validate.fail(who, "x", "an array with a leading example axis (rank >= 1)", x)
    if not _validate.check_bool(train, who, "train"):
        return x
    if key is None:
        _validate.fail(who, "key", "a PRNG key when train=True (a random mask is drawn; pass "
                       "train=False for evaluation)", key)
    if _validate.concrete_float(rate, who, "rate") == 0.0:
        return x
    keep = 1.0 - jnp.asarray(rate, jnp.float32)
    mask = _random.bernoulli(key, keep, (x.shape[0],) + (1,) * (x.ndim - 1))
    return jnp.where(mask, x / keep.astype(x.dtype), jnp.zeros((), x.dtype)).astype(x.dtype)


def DropPath(rate: float | Array) -> Layer[tuple[()], tuple[()]]:  # noqa: N802 (layer constructor)
    """Stochastic depth (:func:`drop_path`) as a layer, for the end of a residual branch.

    ``params = state = ()``; ``apply(..., train=True)`` needs a ``key``; ``train=False`` is the
    identity. Use it inside the branch, not around the block:
    ``Residual(serial(Conv2D(c, 3), BatchNorm(), Relu, Conv2D(c, 3), BatchNorm(), DropPath(0.1)))``
    computes ``y = x + drop_path(f(x))``.

    Args:
        rate: probability of dropping the branch for an example, in ``[0, 1)``: a Python float
            (validated) or a scalar array; a traced array is used as is (a sweep over rates in one
            program). Huang et al. grow it linearly with depth, up to 0.5 for the last block.

    Returns:
        The layer.

    Raises:
        TypeError: ``rate`` is not a number or a scalar array.
        ValueError: ``rate`` outside ``[0, 1)``; at ``apply``, ``train=True`` with ``key=None``.

    Example:
        >>> block = ft.layers.Residual(ft.layers.serial(ft.layers.Dense(4), ft.layers.DropPath(0.5)))
        >>> params, state, _ = block.init(jax.random.key(0), (-1, 4))
        >>> x = jnp.ones((8, 4))
        >>> y, _ = block.apply(params, state, x, key=jax.random.key(1), train=True)
        >>> int(jnp.all(y == x, axis=1).sum())  # examples whose branch was dropped: y = x
        3
    """
    return stochastic_layer("DropPath", rate, _apply_drop_path)
