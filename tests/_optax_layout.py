"""Comparing functrain's optimizer states with optax's: the learning rate that functrain's
``ScaleByLearningRateState`` records (for ``current_learning_rate``) has no optax counterpart."""

from __future__ import annotations

from typing import Any

import functrain.optim as fo
from functrain import _tree


def is_rate(x: object) -> bool:
    """Whether ``x`` is a ``ScaleByLearningRateState`` (a leaf for :func:`optax_layout`)."""
    return isinstance(x, fo.ScaleByLearningRateState)


def optax_layout(state: Any) -> Any:
    """``state`` without the recorded learning rates (each ``ScaleByLearningRateState`` becomes its
    step count): only the buffers optax also keeps are compared."""
    def without_rate(x: Any) -> Any:
        return x.step if is_rate(x) else x

    return _tree.tree_map(without_rate, state, is_leaf=is_rate)
