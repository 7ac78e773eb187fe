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
* :data:`ArrayLike`, :data:`DTypeLike` -- what JAX accepts as an array or a dtype (from
  ``jax.typing``); :data:`DType`, :data:`Shape`, :data:`Scalar`, :data:`Metrics` -- a dtype
  object, a concrete shape, a scalar value, named scalar metrics.

Example:
    >>> from functrain.typing import (Array, ArrayLike, DType, DTypeLike, Metrics, PRNGKey,
    ...                               PyTree, Scalar, ScalarOrSchedule, Shape)
    >>> def init_params(key: PRNGKey, shape: Shape, dtype: DTypeLike = jnp.float32) -> PyTree:
    ...     return {"w": jax.random.normal(key, shape, dtype), "b": jnp.zeros(shape[-1], dtype)}
    >>> def scaled(x: ArrayLike, factor: Scalar) -> Array:
    ...     return jnp.asarray(x) * factor
    >>> def norms(params: PyTree) -> Metrics:
    ...     return {name: jnp.linalg.norm(leaf) for name, leaf in params.items()}
    >>> params = init_params(jax.random.key(0), (2, 3))
    >>> dtype: DType = scaled(params["w"], 2.0).dtype
    >>> params["w"].shape, dtype, float(norms(params)["b"])
    ((2, 3), dtype('float32'), 0.0)
    >>> learning_rate: ScalarOrSchedule = ft.optim.schedules.constant(0.1)  # or 0.1, or an array
    >>> round(float(learning_rate(7)), 4)
    0.1
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

    Example:
        >>> from functrain.typing import Initializer
        >>> inits: list[Initializer] = [ft.initializers.he_normal(),      # functrain's
        ...                             jax.nn.initializers.he_normal()]  # and JAX's
        >>> [init(jax.random.key(0), (3, 4), jnp.float32).shape for init in inits]
        [(3, 4), (3, 4)]
    """

    def __call__(self, key: PRNGKey, shape: Sequence[int], dtype: DTypeLike = ..., /) -> Array:
        """Draw an array of ``shape`` and ``dtype`` from the initializer's distribution."""
        ...


class Schedule(Protocol):
    """A hyperparameter schedule: ``step -> scalar array``. Pure and jit-safe in ``step``.

    Example:
        >>> from functrain.typing import Array, ArrayLike, Schedule
        >>> def halve_every_10(step: ArrayLike) -> Array:
        ...     return 0.1 * 0.5 ** (jnp.asarray(step) // 10)
        >>> schedule: Schedule = halve_every_10  # as are ft.optim.schedules' functions
        >>> round(float(schedule(25)), 4), round(float(jax.jit(schedule)(5)), 4)
        (0.025, 0.1)
    """

    def __call__(self, step: ArrayLike, /) -> Array:
        """Return the value of the hyperparameter at integer step ``step``."""
        ...


ScalarOrSchedule: TypeAlias = float | Array | Schedule
"""A hyperparameter given as a constant (Python float or, possibly traced, array) or a schedule."""


class LossFn(Protocol):
    """A loss function ``(params, model_state, batch, key) -> (loss, (new_model_state, metrics))``.

    ``loss`` is a scalar array; ``metrics`` maps names to scalar arrays (for example accuracy).

    Example:
        >>> from functrain.typing import LossFn
        >>> def linear_loss(params, model_state, batch, key):
        ...     x, y = batch
        ...     loss = ft.losses.mean_squared_error(x @ params, y)
        ...     return loss, (model_state, {"mse": loss})
        >>> loss_fn: LossFn = linear_loss  # what ft.train.make_train_step expects
        >>> batch = (jnp.ones((4, 2)), jnp.full((4, 1), 2.0))
        >>> loss, (_, metrics) = loss_fn(jnp.ones((2, 1)), (), batch, jax.random.key(0))
        >>> float(loss), sorted(metrics)
        (0.0, ['mse'])
    """

    def __call__(
        self, params: PyTree, model_state: PyTree, batch: PyTree, key: PRNGKey, /
    ) -> tuple[Array, tuple[PyTree, Metrics]]:
        """Compute the loss of ``params`` on ``batch``."""
        ...
