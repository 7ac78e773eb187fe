"""Optimizers as gradient transformations (optax calling convention).

``tx = ft.optim.adam(1e-3); state = tx.init(params); updates, state = tx.update(grads, state,
params); params = ft.optim.apply_updates(params, updates)``. Building blocks compose with
:func:`chain` (optax transformations too); every hyperparameter is a number, a (traced) array or
a schedule from :mod:`functrain.optim.schedules`. States are typed ``NamedTuple`` records; the
ones that count updates hold an int32 ``step``.

Modules, one concept family each: :mod:`~functrain.optim.base` (the transformation type,
:func:`chain`, :func:`apply_updates`, :func:`scale_by_learning_rate`), :mod:`~functrain.optim.sgd`
(SGD, momentum, normalized SGD), :mod:`~functrain.optim.adaptive` (Adagrad, RMSProp),
:mod:`~functrain.optim.adam` (Adam, AMSGrad, AdamW), :mod:`~functrain.optim.adam_variants`
(NAdam, RAdam, Adamax), :mod:`~functrain.optim.adabelief`, :mod:`~functrain.optim.lion`,
:mod:`~functrain.optim.layerwise` (trust ratio, LARS, LAMB), :mod:`~functrain.optim.weight_decay`,
:mod:`~functrain.optim.clipping`, :mod:`~functrain.optim.centralization` (gradient
centralization), :mod:`~functrain.optim.noise` (annealed gradient noise),
:mod:`~functrain.optim.ema` (a moving average of the updates), :mod:`~functrain.optim.partition`
(parameter groups: masked, partitioned and frozen leaves), :mod:`~functrain.optim.lookahead`,
:mod:`~functrain.optim.guards` (skipping non-finite steps, a divergence limit, gradient
accumulation), :mod:`~functrain.optim.hyperparams` (:func:`current_learning_rate`, read from a
state) and :mod:`~functrain.optim.schedules`.

Complex parameters work as in optax: second moments, norms and RMS values use the squared
magnitude ``|g|^2 = conj(g) g`` (never ``g**2``), so every optimizer gives optax's results on
``complex64`` parameters (with the gradient conjugated, ``conj(dL/dw)``, the descent direction);
:func:`clip_by_value` refuses complex updates (they have no order).

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
from functrain.optim.adabelief import ScaleByBeliefState, adabelief, scale_by_belief
from functrain.optim.adam import (
    ScaleByAdamState,
    ScaleByAmsgradState,
    adam,
    adamw,
    amsgrad,
    scale_by_adam,
    scale_by_amsgrad,
)
from functrain.optim.adam_variants import (
    ScaleByAdamaxState,
    adamax,
    nadam,
    radam,
    scale_by_adamax,
    scale_by_nadam,
    scale_by_radam,
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
from functrain.optim.centralization import centralize
from functrain.optim.clipping import (
    adaptive_grad_clip,
    clip_by_block_norm,
    clip_by_block_rms,
    clip_by_global_norm,
    clip_by_value,
    unitwise_norm,
)
from functrain.optim.ema import EmaState, ema
from functrain.optim.guards import (
    AccumulateGradientsState,
    SkipNonfiniteState,
    accumulate_gradients,
    all_finite,
    has_diverged,
    skip_nonfinite,
    skipped_updates,
)
from functrain.optim.hyperparams import current_learning_rate
from functrain.optim.layerwise import lamb, lars, scale_by_trust_ratio
from functrain.optim.lion import ScaleByLionState, lion, scale_by_lion
from functrain.optim.lookahead import LookaheadState, lookahead
from functrain.optim.noise import AddNoiseState, add_noise
from functrain.optim.partition import (
    MaskedNode,
    MaskedState,
    PartitionState,
    freeze,
    label_by_path,
    masked,
    partition,
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
    "AddNoiseState",
    "DecayMask",
    "EmaState",
    "EmptyState",
    "GradientTransformation",
    "InitFn",
    "LookaheadState",
    "MaskedNode",
    "MaskedState",
    "PartitionState",
    "ScaleByAdagradState",
    "ScaleByAdamState",
    "ScaleByAdamaxState",
    "ScaleByAmsgradState",
    "ScaleByBeliefState",
    "ScaleByLearningRateState",
    "ScaleByLionState",
    "ScaleByRmsState",
    "SkipNonfiniteState",
    "TraceState",
    "TransformationLike",
    "UpdateFn",
    "accumulate_gradients",
    "adabelief",
    "adagrad",
    "adam",
    "adamax",
    "adamw",
    "adaptive_grad_clip",
    "add_decayed_weights",
    "add_noise",
    "all_finite",
    "amsgrad",
    "apply_updates",
    "centralize",
    "chain",
    "clip_by_block_norm",
    "clip_by_block_rms",
    "clip_by_global_norm",
    "clip_by_value",
    "current_learning_rate",
    "default_decay_mask",
    "ema",
    "freeze",
    "has_diverged",
    "identity",
    "init_empty_state",
    "label_by_path",
    "lamb",
    "lars",
    "lion",
    "lookahead",
    "masked",
    "momentum",
    "nadam",
    "normalize_by_global_norm",
    "normalized_sgd",
    "partition",
    "radam",
    "rmsprop",
    "scale",
    "scale_by_adagrad",
    "scale_by_adam",
    "scale_by_adamax",
    "scale_by_amsgrad",
    "scale_by_belief",
    "scale_by_learning_rate",
    "scale_by_lion",
    "scale_by_nadam",
    "scale_by_radam",
    "scale_by_rms",
    "scale_by_trust_ratio",
    "schedules",
    "sgd",
    "skip_nonfinite",
    "skipped_updates",
    "trace",
    "unitwise_norm",
]
