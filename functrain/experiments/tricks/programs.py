"""Runs that differ only in hyperparameters share one compiled program: the values travel as data.

XLA compiling dominates a short run on a CPU. A run's programs (start, train some epochs, finish)
depend on its *structure* -- the network's layers, the optimizer family, which tricks are on, early
stopping, the shapes -- but not on the numbers: the learning rate (any schedule, warmup included,
as a table of one value per step), momentum, dropout and drop-path rates, the clipping threshold,
weight decay, label smoothing, mixup's alpha, SAM's rho and the EMA decay are arguments of the
compiled program, and so is the data. :func:`group_rows` puts the runs whose structures agree once
these values are set aside into one :class:`Structure`; a trick used by some runs of a group is
present in all of them, at the value that leaves the computation unchanged for the others:

======================  ================  =================================================
trick (``DATA_TRICKS``)  neutral value     why it computes the same
======================  ================  =================================================
``dropout``              rate 0            the mask keeps every unit, scaled by 1/(1 - 0)
``drop_path``            rate 0            every branch kept, scaled by 1
``momentum``             gamma 0           ``v = g + 0 v``: plain SGD
``clip``                 theta = inf       ``||g|| <= inf``: the gradient passes unchanged
``weight_decay``         0                 ``loss + 0 * ||W||^2 / 2``
``label_smoothing``      eps 0             targets ``one_hot(y)``
``ema``                  decay 0, not used the raw weights are evaluated
``bn_last_scale``        1                 the batch norm's default initial scale
======================  ================  =================================================

(The same as long as the numbers are finite: a diverged run's infinities may turn into NaN one
step earlier.) Mixup, SAM and early stopping change the computation itself, so they are part of
the structure. The initializer only affects the start program, which is compiled per initializer.

Example:
    >>> from functrain.experiments.tricks import programs, rows
    >>> configs = [config for _, config in rows.trick_rows(epochs=2)]
    >>> [group.members for group in programs.group_rows(configs)]  # 10 rows, 4 compiled structures
    [(0, 1), (2, 3, 4), (5, 6, 7, 8), (9,)]
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from functrain import _tree, data, layers, losses, optim
from functrain.experiments.tricks.config import INITIALIZERS, OPTIMIZERS, RunConfig, build_schedule
from functrain.experiments.tricks.models import Rates, build_model
from functrain.experiments.tricks.splits import Splits
from functrain.optim import GradientTransformation, TransformationLike
from functrain.train import (
    EpochMetrics,
    FitOptions,
    FitState,
    TrainState,
    classifier_loss,
    early_stopping,
    ema_update,
    evaluate,
    final_train_state,
    fit_scan,
    init_fit_state,
    init_train_state,
    make_eval_step,
    make_sam_train_step,
    make_train_step,
)
from functrain.typing import Array, LossFn, PRNGKey, PyTree

__all__ = ["DATA_TRICKS", "EVAL_BATCH", "Data", "EmaParamsState", "Group", "Hyper", "Layout", "Parts", "Structure",
           "device_data", "group_rows", "hyper_of", "layout_of", "loss_for", "make_programs", "structure_of"]

Hyper = dict[str, Any]
"""A run's values: ``"lr"`` (one learning rate per step) and one scalar per data trick present."""

EVAL_BATCH = 1000
"""Examples per evaluation batch (validation and test sets are evaluated in batches of this many)."""

DATA_TRICKS: dict[str, tuple[float, Callable[[RunConfig], float | None]]] = {
    "dropout": (0.0, lambda c: c.dropout if c.dropout > 0 else None),
    "drop_path": (0.0, lambda c: c.drop_path if c.drop_path > 0 else None),
    "momentum": (0.0, lambda c: c.momentum if c.optimizer in ("momentum", "nesterov") else None),
    "clip": (math.inf, lambda c: c.clip),
    "weight_decay": (0.0, lambda c: c.weight_decay if c.weight_decay > 0 else None),
    "label_smoothing": (0.0, lambda c: c.label_smoothing if c.label_smoothing > 0 else None),
    "ema": (0.0, lambda c: c.ema if c.ema > 0 else None),
    "bn_last_scale": (1.0, lambda c: 0.0 if c.zero_init_bn else None),
}
"""The tricks carried as data: name -> (neutral value, the configuration's value or ``None`` if off)."""

_FAMILY = {"sgd": "sgd", "momentum": "sgd"}  # plain SGD is momentum 0


class Structure(NamedTuple):
    """What a compiled program depends on (hashable): runs with equal structures share programs.

    Attributes:
        template: the configuration with every data trick at its neutral value, the learning rate
            and schedule blanked, the initializer left out and the optimizer named by its family.
        tricks: the data tricks present (a value for each is an argument of the programs).
    """

    template: RunConfig
    tricks: frozenset[str]


class Group(NamedTuple):
    """Runs that share one :class:`Structure`: their positions in the list given to :func:`group_rows`."""

    structure: Structure
    members: tuple[int, ...]


class Layout(NamedTuple):
    """The static facts about the data a program is compiled for."""

    features: int
    image_shape: tuple[int, ...] | None
    num_classes: int
    n_train: int
    n_val: int
    n_test: int


class Data(NamedTuple):
    """The training, validation and test arrays, arguments of the compiled programs."""

    train: tuple[Array, Array]
    val: tuple[Array, Array]
    test: tuple[Array, Array]


def layout_of(splits: Splits) -> Layout:
    """The :class:`Layout` of ``splits``."""
    return Layout(int(splits.x_train.shape[1]), splits.image_shape, splits.num_classes, len(splits.x_train),
                  len(splits.x_val), len(splits.x_test))


def device_data(splits: Splits) -> Data:
    """``splits`` as device arrays (made once, passed to every call)."""
    def pair(x: np.ndarray[Any, Any], y: np.ndarray[Any, Any]) -> tuple[Array, Array]:
        return jnp.asarray(x), jnp.asarray(y)

    return Data(pair(splits.x_train, splits.y_train), pair(splits.x_val, splits.y_val),
                pair(splits.x_test, splits.y_test))


def _template(config: RunConfig) -> RunConfig:
    return config._replace(
        init="", learning_rate=1.0, schedule="constant", decay_rate=1.0, warmup=0.0,
        optimizer=_FAMILY.get(config.optimizer, config.optimizer), momentum=0.0, dropout=0.0, drop_path=0.0,
        clip=None, weight_decay=0.0, label_smoothing=0.0, ema=0.0, zero_init_bn=False,
        mixup=1.0 if config.mixup > 0 else 0.0, sam=1.0 if config.sam > 0 else 0.0)


def _tricks_of(config: RunConfig) -> frozenset[str]:
    return frozenset(name for name, (_, value) in DATA_TRICKS.items() if value(config) is not None)


def structure_of(config: RunConfig) -> Structure:
    """The structure of one run alone (only its own tricks present)."""
    return Structure(_template(config), _tricks_of(config))


def group_rows(configs: Sequence[RunConfig]) -> list[Group]:
    """Group runs by structure, in order of first appearance; a group's tricks are the union of its runs'."""
    members: dict[RunConfig, list[int]] = {}
    for i, config in enumerate(configs):
        members.setdefault(_template(config), []).append(i)
    groups: list[Group] = []
    for template, idx in members.items():
        tricks = frozenset[str]().union(*(_tricks_of(configs[i]) for i in idx))
        groups.append(Group(Structure(template, tricks), tuple(idx)))
    return groups


def _steps(config: RunConfig, layout: Layout) -> tuple[int, int]:
    spe = layout.n_train // config.batch_size
    return spe, config.epochs * spe


def hyper_of(config: RunConfig, structure: Structure, layout: Layout) -> Hyper:
    """The values of ``config`` for the programs of ``structure`` (neutral ones for tricks it does not use).

    ``"lr"`` holds the learning rate of every step, ``build_schedule`` evaluated on the host.
    """
    spe, total = _steps(config, layout)
    schedule = build_schedule(config, spe)
    steps = jnp.arange(total, dtype=jnp.int32)
    lr = jax.vmap(schedule)(steps) if callable(schedule) else jnp.full((total,), schedule)
    return {"lr": jnp.asarray(lr, jnp.float32), **_values(config, structure)}


def _values(config: RunConfig, structure: Structure) -> Hyper:
    """The scalar values of ``config`` for the data tricks of ``structure``, mixup's alpha and SAM's rho."""
    values: Hyper = {}
    for name in sorted(structure.tricks):
        neutral, value = DATA_TRICKS[name]
        got = value(config)
        values[name] = jnp.asarray(neutral if got is None else got, jnp.float32)
    if structure.template.mixup:
        values["mixup"] = jnp.asarray(config.mixup, jnp.float32)
    if structure.template.sam:
        values["sam"] = jnp.asarray(config.sam, jnp.float32)
    return values


def loss_for(config: RunConfig, model: layers.Layer, num_classes: int) -> LossFn:
    """The training loss of ``config`` for ``model``: cross-entropy (with label smoothing and mixup
    when the configuration has them) plus the L2 penalty of its weight decay (but for ``adamw``)."""
    structure = structure_of(config)
    values = _values(config, structure)
    l2 = values["weight_decay"] if "weight_decay" in structure.tricks and config.optimizer != "adamw" else 0.0
    loss: LossFn = _loss(structure, values, model, l2, num_classes)
    return loss


# --------------------------------------------------------------------------------------------
# The pieces, built inside the traced programs from the structure and the (traced) values


class EmaParamsState(NamedTuple):
    """State of the EMA of the weights kept in the optimizer state (the last member of its chain)."""

    average: PyTree


def _ema_of_params(decay: Array) -> GradientTransformation[EmaParamsState]:
    """Leaves the updates as they are and keeps ``avg' = decay avg + (1 - decay) (params + updates)``."""

    def init(params: PyTree) -> EmaParamsState:
        return EmaParamsState(_tree.tree_map(jnp.asarray, params))

    def update(updates: PyTree, state: EmaParamsState, params: PyTree | None = None,
               **extra_args: Any) -> tuple[PyTree, EmaParamsState]:
        del extra_args
        if params is None:
            raise ValueError("tricks EMA: update needs 'params' (make_train_step passes them), got None")
        return updates, EmaParamsState(ema_update(state.average, optim.apply_updates(params, updates), decay))

    return GradientTransformation(init, update)


def _optimizer(structure: Structure, hyper: Hyper) -> TransformationLike:
    t, tricks = structure.template, structure.tricks
    table = hyper["lr"]
    last = table.shape[0] - 1

    def lr(step: Any) -> Array:
        value: Array = table[jnp.clip(jnp.asarray(step), 0, last)]
        return value

    name = "momentum" if t.optimizer == "sgd" and "momentum" in tricks else t.optimizer
    values: Any = t._replace(momentum=hyper.get("momentum", t.momentum),
                             weight_decay=hyper.get("weight_decay", 0.0))  # traced values in the fields
    opt: TransformationLike = OPTIMIZERS[name].build(lr, values)
    if "clip" in tricks:
        opt = optim.chain(optim.clip_by_global_norm(hyper["clip"]), opt)
    if "ema" in tricks:
        opt = optim.chain(opt, _ema_of_params(hyper["ema"]))
    return opt


def _model(structure: Structure, hyper: Hyper, layout: Layout) -> layers.Layer:
    rates: Rates = {name: hyper[name] for name in ("dropout", "drop_path", "bn_last_scale") if name in structure.tricks}
    return build_model(structure.template, layout.num_classes, layout.image_shape, rates=rates)


def _loss(structure: Structure, hyper: Hyper, model: layers.Layer, l2: Any, num_classes: int) -> Any:
    """The training loss: ``classifier_loss``, or soft-target cross-entropy with smoothing/mixup.

    Label smoothing is computed here (``(1 - eps) t + eps / C``, as ``optax.smooth_labels``); a
    ``label_smoothing`` argument of :func:`functrain.losses.softmax_cross_entropy` would replace it.
    """
    mixup, smoothing = bool(structure.template.mixup), "label_smoothing" in structure.tricks
    if not (mixup or smoothing):
        return classifier_loss(model.apply, train=True, weight_decay=l2)

    def loss_fn(params: PyTree, model_state: PyTree, batch: Any, key: PRNGKey) -> tuple[Array, Any]:
        x, y = batch
        if mixup:  # its own stream: the model keeps the key a plain run gives it
            x, targets = data.mixup(jax.random.fold_in(key, 0x6D6978), (x, y), hyper["mixup"],
                                    num_classes=num_classes)
        else:
            targets = jax.nn.one_hot(y, num_classes)
        if smoothing:
            eps = hyper["label_smoothing"]
            targets = (1.0 - eps) * targets + eps / num_classes
        logits, new_state = model.apply(params, model_state, x, key=key, train=True)
        loss = losses.softmax_cross_entropy(logits, targets) + l2 * losses.l2_penalty(params)
        return loss, (new_state, {"accuracy": losses.accuracy(logits, y)})

    return loss_fn


def _train_step(loss_fn: Any, opt: TransformationLike, sam: Array | None) -> Any:
    """The plain or the SAM step (both without the opt-in gradient-norm metric)."""
    if sam is None:
        return make_train_step(loss_fn, opt)
    return make_sam_train_step(loss_fn, opt, rho=sam)


class _Built(NamedTuple):
    model: layers.Layer
    optimizer: TransformationLike
    step: Any
    eval_step: Any
    options: FitOptions


def _build(structure: Structure, hyper: Hyper, layout: Layout) -> _Built:
    t = structure.template
    model = _model(structure, hyper, layout)
    opt = _optimizer(structure, hyper)
    l2 = hyper["weight_decay"] if "weight_decay" in structure.tricks and t.optimizer != "adamw" else 0.0
    step = _train_step(_loss(structure, hyper, model, l2, layout.num_classes), opt,
                       hyper["sam"] if t.sam else None)
    eval_step = make_eval_step(classifier_loss(model.apply, train=False))
    stopper = None if t.early_stopping is None else early_stopping(t.early_stopping)
    options = FitOptions(batch_size=t.batch_size, eval_step=eval_step, eval_batch_size=min(layout.n_val, EVAL_BATCH),
                         early_stopping=stopper)
    return _Built(model, opt, step, eval_step, options)


def _ema_average(opt_state: PyTree) -> PyTree:
    found = [s for s in jax.tree_util.tree_leaves(opt_state, is_leaf=lambda s: isinstance(s, EmaParamsState))
             if isinstance(s, EmaParamsState)]
    return found[-1].average


class Parts(NamedTuple):
    """The three pure pieces of a run of one structure; values and data are arguments.

    Attributes:
        start: ``(hyper, data, key) -> (fit_state at epoch 0, training key)``.
        train: ``(hyper, data, fit_state, training key, epochs) -> (fit_state, metrics)``
            (``epochs`` static).
        finish: ``(hyper, data, fit_state) -> (kept train state, test metrics)``.
        model: ``hyper -> network`` (for inference any values do).
    """

    start: Callable[[Hyper, Data, PRNGKey], tuple[FitState[Any], PRNGKey]]
    train: Callable[[Hyper, Data, FitState[Any], PRNGKey, int], tuple[FitState[Any], EpochMetrics]]
    finish: Callable[[Hyper, Data, FitState[Any]], tuple[TrainState[Any, Any, Any], dict[str, Array]]]
    model: Callable[[Hyper], layers.Layer]


def make_programs(structure: Structure, init: str, layout: Layout) -> Parts:
    """The :class:`Parts` of ``structure`` with the kernel initializer ``init`` (start only)."""
    if init not in INITIALIZERS:
        raise ValueError(f"make_programs: unknown initializer {init!r}")
    with_init = structure._replace(template=structure.template._replace(init=init))

    def start(hyper: Hyper, d: Data, key: PRNGKey) -> tuple[FitState[Any], PRNGKey]:
        b = _build(with_init, hyper, layout)
        init_key, train_key = jax.random.split(key)
        params, model_state, _ = b.model.init(init_key, (-1, layout.features))
        return init_fit_state(init_train_state(params, model_state, b.optimizer), b.options), train_key

    def train(hyper: Hyper, d: Data, fit_state: FitState[Any], key: PRNGKey,
              epochs: int) -> tuple[FitState[Any], EpochMetrics]:
        b = _build(with_init, hyper, layout)
        return fit_scan(b.step, fit_state, d.train, key, b.options, epochs=epochs, val_data=d.val)

    def finish(hyper: Hyper, d: Data, fit_state: FitState[Any]) -> tuple[TrainState[Any, Any, Any], dict[str, Array]]:
        b = _build(with_init, hyper, layout)
        kept = final_train_state(fit_state, b.options)
        if "ema" in structure.tricks:  # evaluate the average of the weights where the run asks for it
            use = hyper["ema"] > 0
            kept = kept._replace(params=_tree.tree_where(use, _ema_average(kept.opt_state), kept.params))
        return kept, evaluate(b.eval_step, kept, d.test, batch_size=min(layout.n_test, EVAL_BATCH))

    def model(hyper: Hyper) -> layers.Layer:
        return _model(with_init, hyper, layout)

    return Parts(start, train, finish, model)
