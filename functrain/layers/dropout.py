"""Dropout (Srivastava et al., "Dropout: A Simple Way to Prevent Neural Networks from Overfitting",
JMLR 2014), in its *inverted* form.

In training each unit is zeroed independently with probability ``rate`` (the probability of
DROPPING, as in PyTorch and Keras -- not stax's keep-probability) and the kept units are scaled by
``1 / (1 - rate)``, so ``E[dropout(x)] = x`` and evaluation is the identity.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Float

from functrain.layers._util import check_fraction, check_input_shape, is_concrete
from functrain.layers.base import Layer
from functrain.typing import Array, PRNGKey, PyTree, Shape

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
        train: ``False`` returns ``x`` unchanged (evaluation mode). Must be a Python bool.

    Returns:
        Same shape and dtype as ``x``. Identity when ``train`` is false or ``rate == 0``.

    Raises:
        ValueError: ``rate`` outside ``[0, 1)``, or ``train=True`` without a key.
    """
    return _apply_dropout(key, x, rate, train, "dropout")


def _apply_dropout(key: PRNGKey | None, x: Array, rate: float | Array, train: bool, who: str) -> Array:
    check_fraction(rate, "rate", who, closed_right=False)
    if not isinstance(train, bool):
        raise TypeError(f"{who}: argument 'train' must be a Python bool, got {type(train).__name__}")
    if not train:
        return x
    if key is None:
        raise ValueError(f"{who}: train=True draws a random mask and needs a PRNG key; pass key=... "
                         "(or train=False for evaluation)")
    if is_concrete(rate) and float(rate) == 0.0:
        return x
    keep = 1.0 - rate
    mask = jax.random.bernoulli(key, keep, x.shape)
    return jnp.where(mask, x * (1.0 / keep), jnp.zeros((), x.dtype)).astype(x.dtype)


def Dropout(rate: float | Array) -> Layer:  # noqa: N802 (layer constructor)
    """Inverted :func:`dropout` as a composable layer (``params = state = ()``).

    ``apply(..., train=True)`` needs a ``key``; ``train=False`` is the identity.

    Args:
        rate: probability of DROPPING each unit, in ``[0, 1)``: a Python float (validated) or a
            scalar array; a traced array is used as is, so a model built inside a vmapped run
            can sweep dropout rates in one compiled program (``Dropout(hparams["rate"])``).

    Returns:
        The layer.

    Raises:
        ValueError: ``rate`` outside ``[0, 1)``; at ``apply``, ``train=True`` with ``key=None``.
    """
    if isinstance(rate, bool) or not isinstance(rate, (int, float, jax.Array, np.ndarray)):
        raise TypeError(f"Dropout: argument 'rate' must be a float in [0, 1), got {rate!r}")
    if isinstance(rate, (jax.Array, np.ndarray)) and np.ndim(rate) != 0:
        raise ValueError(f"Dropout: argument 'rate' must be a scalar, got shape {np.shape(rate)}")
    check_fraction(rate, "rate", "Dropout", closed_right=False)
    name = f"Dropout({rate})" if isinstance(rate, (int, float)) else "Dropout(<array rate>)"

    def init(key: PRNGKey, input_shape: Sequence[int]) -> tuple[PyTree, PyTree, Shape]:
        del key
        return (), (), check_input_shape(input_shape, name, min_rank=1)

    def apply(
        params: PyTree, state: PyTree, x: Array, *, key: PRNGKey | None = None, train: bool
    ) -> tuple[Array, PyTree]:
        del params
        return _apply_dropout(key, x, rate, train, name), state

    return Layer(init, apply)
