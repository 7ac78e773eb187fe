"""Hyperparameter schedules: ``step -> float32 scalar``, pure and jit-safe.

Each factory returns a :class:`~functrain.typing.Schedule`, usable as the learning rate (or any
other schedulable hyperparameter) of every functrain optimizer, and of optax's. Values match the
corresponding ``optax`` schedules. Initial/peak/end values may be (traced) arrays, so ``jax.vmap``
over a vector of peak learning rates works; step counts must be concrete Python ints.

``exponential_decay(0.1, 0.98, transition_steps=steps_per_epoch, staircase=True)`` is the classic
"multiply the learning rate by 0.98 after each epoch".

Modules: :mod:`~functrain.optim.schedules.decay` (constant, exponential, piecewise constant,
polynomial / linear, cosine), :mod:`~functrain.optim.schedules.composite` (joined schedules, warmup
then cosine or inverse square root decay, the cosine 1cycle),
:mod:`~functrain.optim.schedules.interpolate` (piecewise linear / cosine ramps, the linear 1cycle)
and :mod:`~functrain.optim.schedules.restarts` (SGDR, cosine annealing with warm restarts).

Example:
    >>> lr = ft.optim.schedules.warmup_cosine_decay(0.0, 0.1, warmup_steps=10, decay_steps=100)
    >>> tx = ft.optim.adam(lr)  # the optimizer counts the steps and evaluates lr at each
    >>> state = tx.init({"w": jnp.zeros(2)})
    >>> int(state[1].step), round(float(lr(10)), 4)
    (0, 0.1)
"""

from functrain.optim.schedules.composite import (
    inverse_sqrt,
    join,
    one_cycle,
    warmup_cosine_decay,
)
from functrain.optim.schedules.decay import (
    constant,
    cosine_decay,
    exponential_decay,
    linear_schedule,
    linear_warmup,
    piecewise_constant,
    polynomial,
)
from functrain.optim.schedules.interpolate import linear_one_cycle, piecewise_interpolate
from functrain.optim.schedules.restarts import sgdr
from functrain.optim.schedules.warmup import with_warmup

__all__ = [
    "constant",
    "cosine_decay",
    "exponential_decay",
    "inverse_sqrt",
    "join",
    "linear_one_cycle",
    "linear_schedule",
    "linear_warmup",
    "one_cycle",
    "piecewise_constant",
    "piecewise_interpolate",
    "polynomial",
    "sgdr",
    "warmup_cosine_decay",
    "with_warmup",
]
