"""The training state: everything a training step reads and writes, in one immutable record."""

from __future__ import annotations

from typing import Any, Generic, NamedTuple, TypeVar, overload

import jax.numpy as jnp

from functrain import _validate
from functrain.optim.base import GradientTransformation, TransformationLike
from functrain.typing import Array

__all__ = ["TrainState", "init_train_state"]

P = TypeVar("P")
M = TypeVar("M")
O = TypeVar("O")
S = TypeVar("S")


class TrainState(NamedTuple, Generic[P, M, O]):
    """The state of a training run, a pytree (so it can be jitted, vmapped and checkpointed).

    Attributes:
        step: int32 scalar, the number of optimizer updates applied so far.
        params: the trainable parameters (any pytree of arrays: functrain params, the array part
            of an equinox module from ``eqx.partition`` ...).
        model_state: non-trainable model state such as batch-norm running statistics (``()`` or
            ``None`` for stateless models).
        opt_state: the optimizer state, ``optimizer.init(params)``.

    Example:
        >>> state = ft.train.TrainState(jnp.zeros((), jnp.int32), {"w": jnp.ones(2)}, (), ())
        >>> state = jax.jit(lambda s: s._replace(step=s.step + 1))(state)
        >>> int(state.step), len(jax.tree_util.tree_leaves(state))
        (1, 2)
    """

    step: Array
    params: P
    model_state: M
    opt_state: O


TS = TypeVar("TS", bound=TrainState[Any, Any, Any])
"""A train state type: the epoch and run functions return the type they are given."""


@overload
def init_train_state(params: P, model_state: M,
                     optimizer: GradientTransformation[S]) -> TrainState[P, M, S]: ...
@overload
def init_train_state(params: P, model_state: M, optimizer: TransformationLike) -> TrainState[P, M, Any]: ...
def init_train_state(params: P, model_state: M, optimizer: TransformationLike) -> TrainState[P, M, Any]:
    """Start a training run: step 0 and a freshly initialized optimizer state.

    Args:
        params: the trainable parameters (any pytree of arrays).
        model_state: the non-trainable model state (batch-norm statistics, or ``()``).
        optimizer: a gradient transformation (functrain, or optax: anything with optax's
            ``init``/``update`` pair).

    Returns:
        ``TrainState(step=0, params, model_state, optimizer.init(params))``: a
        ``TrainState[P, M, S]`` for params of type ``P``, a model state of type ``M`` and a
        ``GradientTransformation[S]`` (the optimizer state's type is kept; an optax
        transformation gives ``S = Any``).

    Raises:
        TypeError: if ``optimizer`` is not a gradient transformation (no ``init``/``update``).

    Example:
        >>> state = ft.train.init_train_state({"w": jnp.ones(3)}, (), ft.optim.sgd(0.1, momentum=0.9))
        >>> int(state.step), state.step.dtype
        (0, dtype('int32'))
    """
    _validate.check_transformation(optimizer, "init_train_state", "optimizer")
    return TrainState(jnp.zeros((), jnp.int32), params, model_state, optimizer.init(params))
