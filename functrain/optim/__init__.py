"""Optimizers as gradient transformations (optax calling convention).

``tx = ft.optim.adam(1e-3); state = tx.init(params); updates, state = tx.update(grads, state,
params); params = ft.optim.apply_updates(params, updates)``. Building blocks compose with
:func:`chain` (optax transformations too); every hyperparameter is a number, a (traced) array or
a schedule from :mod:`functrain.optim.schedules`. States are typed ``NamedTuple`` records; the
ones that count updates hold an int32 ``step``.

Modules, one concept family each: :mod:`~functrain.optim.base` (the transformation type,
:func:`chain`, :func:`apply_updates`, :func:`scale_by_learning_rate`), :mod:`~functrain.optim.sgd`
(SGD, momentum, normalized SGD), :mod:`~functrain.optim.adaptive` (Adagrad, RMSProp),
:mod:`~functrain.optim.adam` (Adam, AMSGrad, AdamW), :mod:`~functrain.optim.weight_decay`,
:mod:`~functrain.optim.clipping`, :mod:`~functrain.optim.guards` (skipping non-finite steps,
gradient accumulation) and :mod:`~functrain.optim.schedules`.

Example:
    >>> tx = ft.optim.chain(ft.optim.clip_by_global_norm(1.0),
    ...                     ft.optim.adamw(ft.optim.schedules.cosine_decay(1e-2, 100)))
    >>> params = {"w": jnp.ones((3, 2)), "b": jnp.zeros(2)}
    >>> state = tx.init(params)
    >>> grads = jax.tree_util.tree_map(jnp.ones_like, params)
    >>> updates, state = jax.jit(tx.update)(grads, state, params)
    >>> params = ft.optim.apply_updates(params, updates)
    >>> round(float(params["b"][0]), 4), int(state[1][0].step)
    (-0.01, 1)
"""

from functrain.optim import schedules
from functrain.optim.adam import (
    ScaleByAdamState,
    ScaleByAmsgradState,
    adam,
    adamw,
    scale_by_adam,
    scale_by_amsgrad,
)
from functrain.optim.adaptive import (
    ScaleByAdagradState,
    ScaleByRmsState,
    adagrad,
    rmsprop,
    scale_by_adagrad,
    scale_by_rms,
)
from functrain.optim.base import (
    EmptyState,
    GradientTransformation,
    InitFn,
    ScaleByLearningRateState,
    TransformationLike,
    UpdateFn,
    apply_updates,
    chain,
    identity,
    init_empty_state,
    scale,
    scale_by_learning_rate,
)
from functrain.optim.clipping import (
    adaptive_grad_clip,
    clip_by_block_norm,
    clip_by_global_norm,
    clip_by_value,
    unitwise_norm,
)
from functrain.optim.guards import (
    AccumulateGradientsState,
    SkipNonfiniteState,
    accumulate_gradients,
    all_finite,
    skip_nonfinite,
)
from functrain.optim.sgd import (
    TraceState,
    momentum,
    normalize_by_global_norm,
    normalized_sgd,
    sgd,
    trace,
)
from functrain.optim.weight_decay import (
    AddDecayedWeightsState,
    DecayMask,
    add_decayed_weights,
    default_decay_mask,
)

__all__ = [
    "AccumulateGradientsState",
    "AddDecayedWeightsState",
    "DecayMask",
    "EmptyState",
    "GradientTransformation",
    "InitFn",
    "ScaleByAdagradState",
    "ScaleByAdamState",
    "ScaleByAmsgradState",
    "ScaleByLearningRateState",
    "ScaleByRmsState",
    "SkipNonfiniteState",
    "TraceState",
    "TransformationLike",
    "UpdateFn",
    "accumulate_gradients",
    "adagrad",
    "adam",
    "adamw",
    "adaptive_grad_clip",
    "add_decayed_weights",
    "all_finite",
    "apply_updates",
    "chain",
    "clip_by_block_norm",
    "clip_by_global_norm",
    "clip_by_value",
    "default_decay_mask",
    "identity",
    "init_empty_state",
    "momentum",
    "normalize_by_global_norm",
    "normalized_sgd",
    "rmsprop",
    "scale",
    "scale_by_adagrad",
    "scale_by_adam",
    "scale_by_amsgrad",
    "scale_by_learning_rate",
    "scale_by_rms",
    "schedules",
    "sgd",
    "skip_nonfinite",
    "trace",
    "unitwise_norm",
]
