"""What one run of the trick experiments is: :class:`RunConfig`, its tables of names, its builders.

A run is an MLP ``Dense -> [BatchNorm] -> ReLU -> [Dropout]`` per hidden layer, then
``Dense(num_classes)``, trained with softmax cross-entropy. The command-line names of its kernel
initializers, optimizers and learning-rate schedules are the keys of three tables
(:data:`INITIALIZERS`, :data:`OPTIMIZERS`, :data:`SCHEDULES`) whose values build the object, so a
new choice is one table entry. :func:`trick_rows` defines the rows of ``functrain tricks``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

from functrain import initializers, layers, optim
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
    "OPTIMIZERS",
    "SCHEDULES",
    "OptimizerSpec",
    "RunConfig",
    "build_model",
    "build_optimizer",
    "build_schedule",
    "check_config",
    "trick_rows",
]


MAX_EPOCHS = 1_000_000
"""The most epochs (and the largest early-stopping patience) a run may have (one million)."""

MAX_WIDTH = 65_536
"""The widest hidden layer a run may have (a ``MAX_WIDTH x MAX_WIDTH`` kernel is 16 GiB of float32)."""

MAX_SEEDS = 10_000
"""The most seeds the commands train at once (each is a whole model, all held in memory)."""

MAX_SEED = 2**32 - 1
"""The largest base seed: ``jax.random.key(seed)`` keeps 32 bits of it (``2**32`` gives seed 0's key)."""


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


OPTIMIZERS: dict[str, OptimizerSpec] = {
    "sgd": OptimizerSpec(lambda lr, c: optim.sgd(lr), 0.1),
    "momentum": OptimizerSpec(lambda lr, c: optim.momentum(lr, c.momentum), 0.1),
    "nesterov": OptimizerSpec(lambda lr, c: optim.momentum(lr, c.momentum, nesterov=True), 0.1),
    "adagrad": OptimizerSpec(lambda lr, c: optim.adagrad(lr), 1e-2),
    "rmsprop": OptimizerSpec(lambda lr, c: optim.rmsprop(lr), 1e-3),
    "adam": OptimizerSpec(lambda lr, c: optim.adam(lr), 1e-3),
    "adamw": OptimizerSpec(lambda lr, c: optim.adamw(lr, weight_decay=c.weight_decay), 1e-3),
    "normalized_sgd": OptimizerSpec(lambda lr, c: optim.normalized_sgd(lr), 0.1),
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
    if not isinstance(config.hidden, (tuple, list)) or not config.hidden:
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


def build_model(config: RunConfig, num_classes: int) -> layers.Layer:
    """The MLP of ``config``: per hidden width ``Dense -> [BatchNorm] -> ReLU -> [Dropout]``."""
    init = INITIALIZERS[config.init]()
    parts: list[layers.Layer] = []
    for width in config.hidden:
        parts.append(layers.Dense(width, w_init=init))
        if config.batch_norm:
            parts.append(layers.BatchNorm())
        parts.append(layers.Relu)
        if config.dropout > 0:
            parts.append(layers.Dropout(config.dropout))
    parts.append(layers.Dense(num_classes, w_init=init))
    return layers.serial(*parts)


def build_schedule(config: RunConfig, steps_per_epoch: int) -> ScalarOrSchedule:
    """The learning rate (schedule) of ``config`` for ``epochs * steps_per_epoch`` steps (see :data:`SCHEDULES`)."""
    return SCHEDULES[config.schedule](config, steps_per_epoch)


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


def trick_rows(*, epochs: int, hidden: tuple[int, ...] = (256, 256, 256),
               batch_size: int = 64) -> list[tuple[str, RunConfig]]:
    """The rows of the trick table: each adds one trick to the previous row's configuration.

    Standard hyperparameters, fixed in advance (none tuned per row): plain SGD with learning rate
    0.1; He-normal init ``N(0, 2/n_in)`` for the ReLU network (He et al. 2015); batch norm after
    each hidden ``Dense``; dropout 0.2 after each hidden ReLU; momentum 0.9 at the same learning
    rate; Adam at its default 1e-3 (Kingma & Ba 2015) replacing SGD; global-norm clipping at
    ``theta = 1`` (the lesson's value); cosine decay of the learning rate to 0 over the run;
    L2 weight decay ``1e-4`` on the kernels; early stopping with patience 5 on the validation
    loss, keeping the best epoch. The ensemble row (added by ``run_tricks``) averages the
    last row's models.
    """
    c = RunConfig(hidden=hidden, init="standard_normal", optimizer="sgd", learning_rate=0.1,
                  epochs=epochs, batch_size=batch_size)
    rows = [("baseline: SGD, N(0,1) init", c)]
    changes: tuple[tuple[str, dict[str, Any]], ...] = (
        ("+ He init N(0, 2/n_in)", {"init": "he"}),
        ("+ batch norm", {"batch_norm": True}),
        ("+ dropout 0.2", {"dropout": 0.2}),
        ("+ momentum 0.9", {"optimizer": "momentum"}),
        ("+ Adam lr 1e-3 (instead of SGD)", {"optimizer": "adam", "learning_rate": 1e-3}),
        ("+ gradient clipping (norm 1)", {"clip": 1.0}),
        ("+ cosine lr decay", {"schedule": "cosine"}),
        ("+ weight decay 1e-4 (L2)", {"weight_decay": 1e-4}),
        ("+ early stopping (patience 5)", {"early_stopping": 5}),
    )
    for label, change in changes:
        c = c._replace(**change)
        rows.append((label, c))
    return rows
