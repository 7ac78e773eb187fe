"""The training state: everything a training step reads and writes, in one immutable record."""

from __future__ import annotations

from typing import Any, Generic, NamedTuple, TypeVar

import jax.numpy as jnp

from functrain.optim.base import TransformationLike
from functrain.typing import Array

__all__ = ["TrainState", "init_train_state"]

P = TypeVar("P")
M = TypeVar("M")
O = TypeVar("O")


class TrainState(NamedTuple, Generic[P, M, O]):
    """The state of a training run, a pytree (so it can be jitted, vmapped and checkpointed).

    Attributes:
        step: int32 scalar, the number of optimizer updates applied so far.
        params: the trainable parameters (any pytree of arrays: functrain params, the array part
            of an equinox module from ``eqx.partition`` ...).
        model_state: non-trainable model state such as batch-norm running statistics (``()`` or
            ``None`` for stateless models).
        opt_state: the optimizer state, ``optimizer.init(params)``.
    """

    step: Array
    params: P
    model_state: M
    opt_state: O


def init_train_state(params: P, model_state: M, optimizer: TransformationLike) -> TrainState[P, M, Any]:
    """Start a training run: step 0 and a freshly initialized optimizer state.

    Args:
        params: the trainable parameters (any pytree of arrays).
        model_state: the non-trainable model state (batch-norm statistics, or ``()``).
        optimizer: a gradient transformation (functrain, or optax: anything with optax's
            ``init``/``update`` pair).

    Returns:
        ``TrainState(step=0, params, model_state, optimizer.init(params))``.

    Raises:
        TypeError: if ``optimizer`` is not a gradient transformation (no ``init``/``update``).
    """
    if not (callable(getattr(optimizer, "init", None)) and callable(getattr(optimizer, "update", None))):
        raise TypeError("init_train_state: argument 'optimizer' must be a GradientTransformation "
                        f"(with init and update functions), got {type(optimizer).__name__}")
    return TrainState(jnp.zeros((), jnp.int32), params, model_state, optimizer.init(params))
