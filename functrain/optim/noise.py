"""Annealed gradient noise (Neelakantan et al. 2015).

:func:`add_noise` adds Gaussian noise of variance ``eta / t^gamma`` to the gradients at step ``t``:
large early (exploration, escaping poor regions of deep or recurrent networks), vanishing later.
The PRNG key lives in the state and is split at every step, never drawn from a hidden source.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from functrain import _validate
from functrain._tree import tree_leaves, tree_map, tree_structure, tree_unflatten
from functrain.optim._hyper import increment, like, value_at, zero_step
from functrain.optim.base import GradientTransformation
from functrain.typing import Array, PRNGKey, PyTree, ScalarOrSchedule

__all__ = ["AddNoiseState", "add_noise"]


def _check_key(key: object, who: str, name: str) -> None:
    """A single PRNG key: typed (``jax.random.key``) or raw (``uint32[2]``)."""
    if isinstance(key, jax.Array):
        if jnp.issubdtype(key.dtype, jax.dtypes.prng_key) and key.ndim == 0:
            return
        if key.dtype == jnp.uint32 and key.shape == (2,):
            return
    _validate.fail(who, name, "a PRNG key (jax.random.key(seed), or a raw uint32[2] key)", key,
                   error=TypeError)


class AddNoiseState(NamedTuple):
    """State of :func:`add_noise`.

    Attributes:
        step: int32 scalar, the number of updates done (``t - 1`` for the next one).
        key: the PRNG key the next step's noise is drawn from (split at every step).

    Example:
        >>> state = ft.optim.add_noise(0.01, 0.55, jax.random.key(0)).init({"w": jnp.ones(2)})
        >>> int(state.step), state.key.shape
        (0, ())
    """

    step: Array
    key: PRNGKey


def add_noise(
    eta: ScalarOrSchedule, gamma: float | Array, key: PRNGKey
) -> GradientTransformation[AddNoiseState]:
    r"""Add annealed Gaussian noise to the updates: ``g_t <- g_t + N(0, eta / t^gamma)``.

    .. math::

        \tilde g_t = g_t + \sigma_t \epsilon_t, \qquad \epsilon_t \sim \mathcal N(0, I), \qquad
        \sigma_t^2 = \frac{\eta}{t^\gamma}, \quad t = 1, 2, \dots

    (Neelakantan et al., "Adding Gradient Noise Improves Learning for Very Deep Networks", 2015:
    ``eta`` in {0.01, 0.3, 1.0}, ``gamma = 0.55``.) Put it first in a chain, on the raw gradients.
    Each step splits the state's key in two, keeps one half and splits the other into one key per
    leaf; this is ``optax.add_noise``'s convention, so the noise (and the trajectory) equals
    optax's for the same key. Under ``jax.vmap`` over keys, each run draws its own noise.

    Args:
        eta: ``eta >= 0``, the variance at the first step: a number, a scalar array or a schedule.
        gamma: ``gamma >= 0``, the decay exponent of the variance.
        key: the PRNG key of the noise (``jax.random.key(seed)`` or a raw ``uint32[2]`` key).

    Returns:
        A :class:`~functrain.optim.GradientTransformation` with :class:`AddNoiseState`.

    Raises:
        TypeError: a hyperparameter of the wrong type or ``key`` not a PRNG key.
        ValueError: a negative concrete ``eta`` or ``gamma``.

    Example:
        >>> tx = ft.optim.add_noise(eta=1.0, gamma=0.55, key=jax.random.key(0))
        >>> state = tx.init({"w": jnp.zeros(10_000)})
        >>> u, state = tx.update({"w": jnp.zeros(10_000)}, state)
        >>> round(float(jnp.std(u["w"])), 1), int(state.step)  # sigma_1 = sqrt(eta) = 1
        (1.0, 1)
    """
    fn = "add_noise"
    _validate.check_hyperparameter(eta, fn, "eta", low=0.0)
    _validate.check_hyperparameter(gamma, fn, "gamma", low=0.0, schedule_ok=False)
    _check_key(key, fn, "key")

    def init(params: PyTree) -> AddNoiseState:
        del params
        return AddNoiseState(zero_step(), key)

    def update(
        updates: PyTree, state: AddNoiseState, params: PyTree | None = None, **extra_args: Any
    ) -> tuple[PyTree, AddNoiseState]:
        del params, extra_args
        t = increment(state.step)
        std = jnp.sqrt(value_at(eta, state.step) / t**gamma)
        next_key, sample_key = jax.random.split(state.key)
        leaves = tree_leaves(updates)
        keys = list(jax.random.split(sample_key, len(leaves)))
        draws = [jax.random.normal(k, x.shape, x.dtype) for k, x in zip(keys, leaves)]
        noise = tree_unflatten(tree_structure(updates), draws)
        new = tree_map(lambda g, n: g + like(std, n) * n, updates, noise)
        return new, AddNoiseState(t, next_key)

    return GradientTransformation(init, update)
