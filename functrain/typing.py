"""Shared type aliases and protocols used across functrain.

These names document intent for readers and give ``mypy --strict`` something precise to check:

* :data:`Array` / :data:`PRNGKey` -- a ``jax.Array`` (a key is a typed or raw key array).
* :data:`PyTree` -- any nested container of arrays (dicts, lists, tuples, NamedTuples,
  ``equinox.Module`` s ...). Pytrees are structurally typed, so this is ``Any`` by necessity.
* :class:`Initializer` -- ``(key, shape, dtype) -> Array``, the call signature of
  ``jax.nn.initializers``; either library's initializers work in the other.
* :class:`Schedule` -- ``step -> scalar`` (learning-rate and other hyperparameter schedules).
* :data:`ScalarOrSchedule` -- a hyperparameter: a Python float, a (possibly traced) array, or a
  schedule.
* :class:`LossFn` -- ``loss_fn(params, model_state, batch, key) -> (loss, (model_state, metrics))``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol, TypeAlias

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike, DTypeLike

__all__ = [
    "Array",
    "ArrayLike",
    "DType",
    "DTypeLike",
    "Initializer",
    "LossFn",
    "Metrics",
    "PRNGKey",
    "PyTree",
    "Scalar",
    "ScalarOrSchedule",
    "Schedule",
    "Shape",
]

Array: TypeAlias = jax.Array
"""A JAX array (concrete or traced)."""

PRNGKey: TypeAlias = jax.Array
"""A PRNG key, from ``jax.random.key`` (typed) or ``jax.random.PRNGKey`` (raw uint32[2])."""

PyTree: TypeAlias = Any
"""Any pytree of arrays. Pytrees are structural, so static typing cannot say more than ``Any``."""

Shape: TypeAlias = tuple[int, ...]
"""A concrete array shape."""

DType: TypeAlias = jnp.dtype[Any]
"""A NumPy/JAX dtype object."""

Scalar: TypeAlias = float | int | Array
"""A scalar value: a Python number or a 0-d (possibly traced) array."""

Metrics: TypeAlias = Mapping[str, Array]
"""Named scalar metrics returned by train and eval steps."""


class Initializer(Protocol):
    """An initializer: ``(key, shape, dtype) -> Array``.

    Same call signature as ``jax.nn.initializers``: any of them can be used where functrain expects
    an :class:`Initializer`, and functrain's initializers work wherever JAX/equinox/flax call
    ``init(key, shape, dtype)``.
    """

    def __call__(self, key: PRNGKey, shape: Sequence[int], dtype: DTypeLike = ..., /) -> Array:
        """Draw an array of ``shape`` and ``dtype`` from the initializer's distribution."""
        ...


class Schedule(Protocol):
    """A hyperparameter schedule: ``step -> scalar array``. Pure and jit-safe in ``step``."""

    def __call__(self, step: ArrayLike, /) -> Array:
        """Return the value of the hyperparameter at integer step ``step``."""
        ...


ScalarOrSchedule: TypeAlias = float | Array | Schedule
"""A hyperparameter given as a constant (Python float or, possibly traced, array) or a schedule."""


class LossFn(Protocol):
    """A loss function ``(params, model_state, batch, key) -> (loss, (new_model_state, metrics))``.

    ``loss`` is a scalar array; ``metrics`` maps names to scalar arrays (for example accuracy).
    """

    def __call__(
        self, params: PyTree, model_state: PyTree, batch: PyTree, key: PRNGKey, /
    ) -> tuple[Array, tuple[PyTree, Metrics]]:
        """Compute the loss of ``params`` on ``batch``."""
        ...
