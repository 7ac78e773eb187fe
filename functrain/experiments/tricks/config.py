"""What one run of the trick experiments is: :class:`RunConfig`, its tables of names, its builders.

A run trains one of the :data:`MODELS` (an MLP, the lesson's convnet, or a small ResNet; built by
:mod:`~functrain.experiments.tricks.models`) with softmax cross-entropy. The command-line names of
its kernel initializers, optimizers and learning-rate schedules are the keys of three tables
(:data:`INITIALIZERS`, :data:`OPTIMIZERS`, :data:`SCHEDULES`) whose values build the object, so a
new choice is one table entry. The rows of ``functrain tricks`` are in
:mod:`~functrain.experiments.tricks.rows`.

Example:
    >>> from functrain.experiments.tricks import config
    >>> c = config.RunConfig()
    >>> c.optimizer, c.hidden, c.epochs
    ('adam', (256, 256, 256), 20)
    >>> sorted(config.OPTIMIZERS)[:4]
    ['adagrad', 'adam', 'adamw', 'momentum']
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple, cast

from functrain import initializers, optim
from functrain._validate import check_bool, check_choice, check_int, check_number, fail
from functrain.optim import TransformationLike
from functrain.optim import schedules as sched
from functrain.typing import Initializer, ScalarOrSchedule

__all__ = [
    "INITIALIZERS",
    "MAX_EPOCHS",
    "MAX_SEED",
    "MAX_SEEDS",
    "MAX_WIDTH",
    "MODELS",
    "OPTIMIZERS",
    "SCHEDULES",
    "OptimizerSpec",
    "RunConfig",
    "build_optimizer",
    "build_schedule",
    "check_config",
]


MAX_EPOCHS = 1_000_000
"""The most epochs (and the largest early-stopping patience) a run may have (one million)."""

MAX_WIDTH = 65_536
"""The widest hidden layer a run may have (a ``MAX_WIDTH x MAX_WIDTH`` kernel is 16 GiB of float32)."""

MAX_SEEDS = 10_000
"""The most seeds the commands train at once (each is a whole model, all held in memory)."""

MAX_SEED = 2**32 - 1
"""The largest base seed: ``jax.random.key(seed)`` keeps 32 bits of it (``2**32`` gives seed 0's key)."""

MODELS = ("mlp", "cnn", "resnet")
"""The networks a run can train (see :func:`~functrain.experiments.tricks.models.build_model`)."""


class RunConfig(NamedTuple):
    """One training configuration (a row of the trick table, or ``functrain train``'s flags).

    Attributes:
        hidden: widths of the hidden layers, each in ``[1, MAX_WIDTH]``.
        init: kernel initializer, a key of :data:`INITIALIZERS`.
        batch_norm: batch normalization after every hidden ``Dense`` (Ioffe & Szegedy 2015).
        dropout: dropout rate (probability of dropping a unit) after every hidden ReLU, in [0, 1).
        optimizer: a key of :data:`OPTIMIZERS`.
        learning_rate: the base (peak) learning rate, > 0.
        momentum: ``gamma`` of the momentum/Nesterov optimizers, in [0, 1).
        schedule: a key of :data:`SCHEDULES`.
        decay_rate: the per-epoch factor of the ``exponential`` schedule, in (0, 1].
        clip: the global-norm clipping threshold ``theta`` (> 0), or ``None``.
        weight_decay: ``lambda >= 0``: decoupled decay for ``adamw``, an L2 penalty
            ``lambda/2 * ||W||^2`` on the kernels in the loss for every other optimizer.
        early_stopping: patience (epochs without a lower validation loss) in
            ``[1, MAX_EPOCHS]``, or ``None``.
        epochs: (maximum) number of epochs, in ``[1, MAX_EPOCHS]``.
        batch_size: examples per step, >= 1 and at most the training examples (checked by
            ``make_run``: nothing is clamped).
        model: a key of :data:`MODELS`: ``"mlp"`` (``hidden`` are the layer widths), ``"cnn"``
            (the lesson's convnet; ``hidden`` are the channels of its conv blocks) or
            ``"resnet"`` (a small ResNet; ``hidden`` are the channels of its residual blocks).
        label_smoothing: ``eps`` in [0, 1): targets ``(1 - eps) one_hot(y) + eps / C``
            (Szegedy et al. 2016); 0 for none.
        mixup: ``alpha >= 0`` of mixup (Zhang et al. 2018): each batch is mixed with a shuffled
            copy of itself by a weight drawn from ``Beta(alpha, alpha)``; 0 for none.
        warmup: the fraction in [0, 1) of the steps with a linear warmup from 0 in front of the
            schedule (Goyal et al. 2017; the schedule keeps the global step); 0 for none.
        drop_path: the rate in [0, 1) of drop-path (stochastic depth, Huang et al. 2016) at the
            end of every residual branch (``model="resnet"`` only); 0 for none.
        sam: ``rho >= 0`` of sharpness-aware minimization (Foret et al. 2021; two forward and
            backward passes per step); 0 for plain steps.
        ema: the per-step decay in [0, 1) of an exponential moving average of the weights,
            which is the model evaluated at the end (Polyak & Juditsky 1992); 0 for none.
        zero_init_bn: start the scale of the last batch norm of every residual branch at 0
            (Goyal et al. 2017), so each block starts as the identity (``model="resnet"`` with
            ``batch_norm`` only).
    """

    hidden: tuple[int, ...] = (256, 256, 256)
    init: str = "he"
    batch_norm: bool = False
    dropout: float = 0.0
    optimizer: str = "adam"
    learning_rate: float = 1e-3
    momentum: float = 0.9
    schedule: str = "constant"
    decay_rate: float = 0.98
    clip: float | None = None
    weight_decay: float = 0.0
    early_stopping: int | None = None
    epochs: int = 20
    batch_size: int = 64
    model: str = "mlp"
    label_smoothing: float = 0.0
    mixup: float = 0.0
    warmup: float = 0.0
    drop_path: float = 0.0
    sam: float = 0.0
    ema: float = 0.0
    zero_init_bn: bool = False


INITIALIZERS: dict[str, Callable[[], Initializer]] = {
    "standard_normal": initializers.standard_normal,
    "gaussian": initializers.gaussian,
    "lecun": initializers.lecun_normal,
    "xavier": initializers.glorot_normal,
    "glorot": initializers.glorot_normal,
    "he": initializers.he_normal,
    "kaiming": initializers.he_normal,
    "orthogonal": initializers.orthogonal,
    "uniform": initializers.uniform,
}
"""Kernel initializers by command-line name (biases are always zero)."""


class OptimizerSpec(NamedTuple):
    """An entry of :data:`OPTIMIZERS`.

    Attributes:
        build: ``(learning_rate, config) -> optimizer`` (reads ``momentum``/``weight_decay``).
        default_lr: the learning rate ``functrain train`` uses when ``--lr`` is not given.
    """

    build: Callable[[ScalarOrSchedule, RunConfig], TransformationLike]
    default_lr: float


def _spec(build: Callable[[ScalarOrSchedule, RunConfig], TransformationLike], default_lr: float) -> OptimizerSpec:
    """``OptimizerSpec(build, default_lr)`` (a plain call: pyright infers the lambdas' parameters)."""
    return OptimizerSpec(build, default_lr)


OPTIMIZERS: dict[str, OptimizerSpec] = {
    "sgd": _spec(lambda lr, c: optim.sgd(lr), 0.1),
    "momentum": _spec(lambda lr, c: optim.momentum(lr, c.momentum), 0.1),
    "nesterov": _spec(lambda lr, c: optim.momentum(lr, c.momentum, nesterov=True), 0.1),
    "adagrad": _spec(lambda lr, c: optim.adagrad(lr), 1e-2),
    "rmsprop": _spec(lambda lr, c: optim.rmsprop(lr), 1e-3),
    "adam": _spec(lambda lr, c: optim.adam(lr), 1e-3),
    "adamw": _spec(lambda lr, c: optim.adamw(lr, weight_decay=c.weight_decay), 1e-3),
    "normalized_sgd": _spec(lambda lr, c: optim.normalized_sgd(lr), 0.1),
}
"""Optimizers by command-line name: how to build each, and its default learning rate."""


def _total_steps(c: RunConfig, steps_per_epoch: int) -> int:
    return max(c.epochs * steps_per_epoch, 2)


SCHEDULES: dict[str, Callable[[RunConfig, int], ScalarOrSchedule]] = {
    "constant": lambda c, spe: c.learning_rate,
    "exponential": lambda c, spe: sched.exponential_decay(c.learning_rate, c.decay_rate, spe, staircase=True),
    "cosine": lambda c, spe: sched.cosine_decay(c.learning_rate, _total_steps(c, spe)),
    "warmup_cosine": lambda c, spe: sched.warmup_cosine_decay(
        0.0, c.learning_rate, max(_total_steps(c, spe) // 10, 1), _total_steps(c, spe)),
    "one_cycle": lambda c, spe: sched.one_cycle(_total_steps(c, spe), c.learning_rate),
}
"""Learning-rate schedules by command-line name: ``(config, steps_per_epoch) -> learning rate``.

``constant``: ``eta``; ``exponential``: ``eta * decay_rate^epoch`` (the lesson's "x0.98 after each
epoch", staircase); ``cosine``: cosine decay from ``eta`` to 0 over the run (Loshchilov & Hutter
2017); ``warmup_cosine``: linear warmup over the first 10% of the steps, then cosine;
``one_cycle``: the 1cycle policy peaking at ``eta`` (Smith & Topin 2017).
"""


def check_config(config: RunConfig) -> None:
    """Validate every field of a :class:`RunConfig`.

    Raises:
        TypeError: a field of the wrong kind (e.g. a string where a number goes).
        ValueError: a field with a bad value; both name the field in the one message style,
            ``RunConfig: argument 'field' must be <expectation>, got <value>``.
    """
    who = "RunConfig"
    if not isinstance(cast(object, config.hidden), (tuple, list)) or not config.hidden:  # not enforced
        fail(who, "hidden", "a tuple of one or more positive layer widths", config.hidden)
    for i, width in enumerate(config.hidden):
        check_int(width, who, f"hidden[{i}]", low=1, high=MAX_WIDTH)
    check_choice(config.init, tuple(INITIALIZERS), who, "init")
    check_choice(config.optimizer, tuple(OPTIMIZERS), who, "optimizer")
    check_choice(config.schedule, tuple(SCHEDULES), who, "schedule")
    check_bool(config.batch_norm, who, "batch_norm")
    check_number(config.learning_rate, who, "learning_rate", low=0.0, low_open=True, finite=True)
    check_number(config.momentum, who, "momentum", low=0.0, high=1.0, high_open=True)
    check_number(config.decay_rate, who, "decay_rate", low=0.0, high=1.0, low_open=True)
    check_number(config.dropout, who, "dropout", low=0.0, high=1.0, high_open=True)
    if config.clip is not None:
        check_number(config.clip, who, "clip", low=0.0, low_open=True, finite=True)
    check_number(config.weight_decay, who, "weight_decay", low=0.0, finite=True)
    if config.early_stopping is not None:
        check_int(config.early_stopping, who, "early_stopping", low=1, high=MAX_EPOCHS)
    check_int(config.epochs, who, "epochs", low=1, high=MAX_EPOCHS)
    check_int(config.batch_size, who, "batch_size", low=1)  # at most the training examples: make_run
    check_choice(config.model, MODELS, who, "model")
    check_number(config.label_smoothing, who, "label_smoothing", low=0.0, high=1.0, high_open=True)
    check_number(config.mixup, who, "mixup", low=0.0, finite=True)
    check_number(config.warmup, who, "warmup", low=0.0, high=1.0, high_open=True)
    check_number(config.drop_path, who, "drop_path", low=0.0, high=1.0, high_open=True)
    if config.drop_path > 0 and config.model != "resnet":
        fail(who, "drop_path", "0 unless model is 'resnet' (drop-path drops residual branches)", config.drop_path)
    check_number(config.sam, who, "sam", low=0.0, finite=True)
    check_number(config.ema, who, "ema", low=0.0, high=1.0, high_open=True)
    check_bool(config.zero_init_bn, who, "zero_init_bn")
    if config.zero_init_bn and not (config.model == "resnet" and config.batch_norm):
        fail(who, "zero_init_bn", "False unless model is 'resnet' with batch_norm (it zeroes the scale of the "
             "last batch norm of each residual branch)", config.zero_init_bn)


def build_schedule(config: RunConfig, steps_per_epoch: int) -> ScalarOrSchedule:
    """The learning rate (schedule) of ``config`` for ``epochs * steps_per_epoch`` steps (see :data:`SCHEDULES`).

    With ``config.warmup = f > 0``, the first ``w = max(1, round(f * steps))`` steps ramp linearly
    from 0 to the schedule's value at step ``w`` (``with_warmup(..., shift=False)``: the schedule
    keeps the global step, so a decay still ends with the run).
    """
    schedule = SCHEDULES[config.schedule](config, steps_per_epoch)
    if config.warmup <= 0:
        return schedule
    steps = _total_steps(config, steps_per_epoch)
    return sched.with_warmup(schedule, max(1, round(config.warmup * steps)), shift=False)


def build_optimizer(config: RunConfig, learning_rate: ScalarOrSchedule) -> TransformationLike:
    """The optimizer of ``config``, preceded by global-norm clipping when ``config.clip`` is set.

    Raises:
        ValueError: an optimizer name that is not a key of :data:`OPTIMIZERS`.
    """
    name = check_choice(config.optimizer, tuple(OPTIMIZERS), "build_optimizer", "config.optimizer")
    opt = OPTIMIZERS[name].build(learning_rate, config)
    if config.clip is None:
        return opt
    return optim.chain(optim.clip_by_global_norm(config.clip), opt)
