"""Dropout (Srivastava et al., "Dropout: A Simple Way to Prevent Neural Networks from Overfitting",
JMLR 2014), in its *inverted* form.

In training each unit is zeroed independently with probability ``rate`` (the probability of
DROPPING, as in PyTorch and Keras -- not stax's keep-probability) and the kept units are scaled by
``1 / (1 - rate)``, so ``E[dropout(x)] = x`` and evaluation is the identity.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jax.numpy as jnp
from jaxtyping import Float

from functrain import _random, _validate
from functrain.layers._geometry import check_input_shape
from functrain.layers.base import Layer
from functrain.typing import Array, PRNGKey, Shape

__all__ = ["Dropout", "dropout"]


def dropout(
    key: PRNGKey | None,
    x: Float[Array, "..."],
    *,
    rate: float | Array,
    train: bool,
) -> Float[Array, "..."]:
    """Inverted dropout: ``y = m * x / (1 - rate)`` with ``m ~ Bernoulli(1 - rate)`` per element.

    Args:
        key: PRNG key for the mask; may be ``None`` only when ``train`` is false.
        x: array of any shape.
        rate: probability of dropping each unit, in ``[0, 1)``. A Python float (or concrete array)
            is validated; a traced array (e.g. a ``vmap``-ed sweep over rates) is used as is.
        train: ``False`` returns ``x`` unchanged (evaluation mode). Must be a bool.

    Returns:
        Same shape and dtype as ``x``. Identity when ``train`` is false or ``rate == 0``.

    Raises:
        TypeError: ``rate`` is not a number or ``train`` not a bool.
        ValueError: ``rate`` outside ``[0, 1)``, or ``train=True`` without a key.

    Example:
        >>> y = ft.layers.dropout(jax.random.key(0), jnp.ones(10_000), rate=0.25, train=True)
        >>> sorted({round(v, 4) for v in y.tolist()})  # 0 (dropped) or 1 / (1 - 0.25) (kept)
        [0.0, 1.3333]
        >>> abs(float((y == 0).mean()) - 0.25) < 0.02
        True
        >>> ft.layers.dropout(None, jnp.ones(3), rate=0.25, train=False).tolist()  # evaluation
        [1.0, 1.0, 1.0]
    """
    return _apply_dropout(key, x, rate, train, "dropout")


def _apply_dropout(key: PRNGKey | None, x: Array, rate: float | Array, train: bool, who: str) -> Array:
    _validate.check_fraction(rate, who, "rate")
    if not _validate.check_bool(train, who, "train"):
        return x
    if key is None:
        _validate.fail(who, "key", "a PRNG key when train=True (a random mask is drawn; pass "
                       "train=False for evaluation)", key)
    if _validate.concrete_float(rate, who, "rate") == 0.0:
        return x
    keep = 1.0 - rate
    mask = _random.bernoulli(key, keep, x.shape)
    return jnp.where(mask, x * (1.0 / keep), jnp.zeros((), x.dtype)).astype(x.dtype)


def Dropout(rate: float | Array) -> Layer[tuple[()], tuple[()]]:  # noqa: N802 (layer constructor)
    """Inverted :func:`dropout` as a composable layer (``params = state = ()``).

    ``apply(..., train=True)`` needs a ``key``; ``train=False`` is the identity.

    Args:
        rate: probability of DROPPING each unit, in ``[0, 1)``: a Python float (validated) or a
            scalar array; a traced array is used as is, so a model built inside a vmapped run
            can sweep dropout rates in one compiled program (``Dropout(hparams["rate"])``).

    Returns:
        The layer.

    Raises:
        TypeError: ``rate`` is not a number or a scalar array.
        ValueError: ``rate`` outside ``[0, 1)``; at ``apply``, ``train=True`` with ``key=None``.

    Example:
        >>> layer = ft.layers.Dropout(0.5)
        >>> x = jnp.ones((4, 10))
        >>> y, _ = layer.apply((), (), x, key=jax.random.key(0), train=True)
        >>> sorted(set(y.ravel().tolist()))
        [0.0, 2.0]
        >>> bool((layer.apply((), (), x, train=False)[0] == x).all())
        True
    """
    return stochastic_layer("Dropout", rate, _apply_dropout)


def stochastic_layer(who: str, rate: float | Array,
                     drop: Callable[[PRNGKey | None, Array, float | Array, bool, str], Array],
                     ) -> Layer[tuple[()], tuple[()]]:
    """A parameter-free layer applying ``drop(key, x, rate, train, who)`` (dropout, drop-path)."""
    _validate.check_fraction(rate, who, "rate")

    def init(key: PRNGKey, input_shape: Sequence[int]) -> tuple[tuple[()], tuple[()], Shape]:
        del key
        return (), (), check_input_shape(input_shape, who, min_rank=1)

    def apply(
        params: tuple[()], state: tuple[()], x: Array, *, key: PRNGKey | None = None, train: bool
    ) -> tuple[Array, tuple[()]]:
        del params
        return drop(key, x, rate, train, who), state

    return Layer(init, apply)
