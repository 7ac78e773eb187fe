"""The experiments behind the ``functrain`` command: one configurable MLP run, and the trick table.

A run (:class:`RunConfig`) is an MLP ``Dense -> [BatchNorm] -> ReLU -> [Dropout]`` repeated per
hidden layer, then ``Dense(num_classes)``, trained with softmax cross-entropy by
:func:`~functrain.train.fit_scan` inside one pure function of a PRNG key (:func:`make_run`), so
:func:`~functrain.train.seeds.run_seeds` trains all seeds as one vmapped, compiled program.

:func:`trick_rows` defines the table of ``functrain tricks``: the same network with the classic
tricks added one at a time, cumulatively, each with a standard textbook hyperparameter (no
per-row tuning). :func:`run_tricks` runs it; :func:`format_table`, :func:`markdown_table` and
:func:`plot_tricks` report it. Nothing here is imported by ``import functrain``.
"""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple, TextIO

import jax
import jax.numpy as jnp
import numpy as np

from functrain import initializers, layers, optim
from functrain.data import (
    Dataset,
    TrainTest,
    fit_min_max,
    load_digits,
    load_npz,
    min_max_scale,
    split_dataset,
)
from functrain.optim import GradientTransformation
from functrain.optim import schedules as sched
from functrain.train import (
    TrainState,
    classifier_loss,
    early_stopping,
    ensemble_predict,
    evaluate,
    final_train_state,
    fit_scan,
    init_fit_state,
    init_train_state,
    make_eval_step,
    make_train_step,
)
from functrain.train.seeds import run_seeds
from functrain.typing import Array, Initializer, PRNGKey, ScalarOrSchedule

__all__ = [
    "INITIALIZERS",
    "OPTIMIZERS",
    "SCHEDULES",
    "RunConfig",
    "RunOutput",
    "Splits",
    "TrickResult",
    "build_model",
    "build_optimizer",
    "build_schedule",
    "check_config",
    "checkpoint_like",
    "ensemble_accuracy",
    "format_table",
    "load_data",
    "markdown_report",
    "make_run",
    "markdown_table",
    "plot_run",
    "plot_tricks",
    "prepare_splits",
    "results_json",
    "run_many",
    "run_one",
    "run_tricks",
    "trick_rows",
]

StrPath = str | os.PathLike[str]

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

OPTIMIZERS: tuple[str, ...] = ("sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam", "adamw",
                               "normalized_sgd")
"""Optimizer names accepted by :class:`RunConfig`."""

SCHEDULES: tuple[str, ...] = ("constant", "exponential", "cosine", "warmup_cosine", "one_cycle")
"""Learning-rate schedule names accepted by :class:`RunConfig`."""

DATA_KEY = 0
"""Seed of the fixed key that splits the data (test part, then validation part)."""


class RunConfig(NamedTuple):
    """One training configuration (a row of the trick table, or ``functrain train``'s flags).

    Attributes:
        hidden: widths of the hidden layers.
        init: kernel initializer, a key of :data:`INITIALIZERS`.
        batch_norm: batch normalization after every hidden ``Dense`` (Ioffe & Szegedy 2015).
        dropout: dropout rate (probability of dropping a unit) after every hidden ReLU, in [0, 1).
        optimizer: a name in :data:`OPTIMIZERS`.
        learning_rate: the base (peak) learning rate, > 0.
        momentum: ``gamma`` of the momentum/Nesterov optimizers, in [0, 1).
        schedule: a name in :data:`SCHEDULES`.
        decay_rate: the per-epoch factor of the ``exponential`` schedule, in (0, 1].
        clip: the global-norm clipping threshold ``theta`` (> 0), or ``None``.
        weight_decay: ``lambda >= 0``: decoupled decay for ``adamw``, an L2 penalty
            ``lambda/2 * ||W||^2`` on the kernels in the loss for every other optimizer.
        early_stopping: patience (epochs without a lower validation loss), or ``None``.
        epochs: (maximum) number of epochs.
        batch_size: examples per step.
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


def check_config(config: RunConfig) -> None:
    """Validate every field of a :class:`RunConfig`.

    Raises:
        ValueError: naming the field, the expected values and what came.
    """
    who = "RunConfig"

    def bad(field: str, expected: str, got: object) -> ValueError:
        return ValueError(f"{who}: {field} must be {expected}, got {got!r}")

    if not config.hidden or any(not isinstance(h, int) or h < 1 for h in config.hidden):
        raise bad("hidden", "one or more positive layer widths", config.hidden)
    if config.init not in INITIALIZERS:
        raise bad("init", f"one of {', '.join(INITIALIZERS)}", config.init)
    if config.optimizer not in OPTIMIZERS:
        raise bad("optimizer", f"one of {', '.join(OPTIMIZERS)}", config.optimizer)
    if config.schedule not in SCHEDULES:
        raise bad("schedule", f"one of {', '.join(SCHEDULES)}", config.schedule)
    if not (math.isfinite(config.learning_rate) and config.learning_rate > 0):
        raise bad("learning_rate", "a finite number > 0", config.learning_rate)
    if not 0.0 <= config.momentum < 1.0:
        raise bad("momentum", "in [0, 1)", config.momentum)
    if not 0.0 < config.decay_rate <= 1.0:
        raise bad("decay_rate", "in (0, 1]", config.decay_rate)
    if not 0.0 <= config.dropout < 1.0:
        raise bad("dropout", "in [0, 1)", config.dropout)
    if config.clip is not None and not (math.isfinite(config.clip) and config.clip > 0):
        raise bad("clip", "a finite number > 0 (or None)", config.clip)
    if not (math.isfinite(config.weight_decay) and config.weight_decay >= 0):
        raise bad("weight_decay", "a finite number >= 0", config.weight_decay)
    if config.early_stopping is not None and config.early_stopping < 1:
        raise bad("early_stopping", "a patience >= 1 (or None)", config.early_stopping)
    if config.epochs < 1:
        raise bad("epochs", ">= 1", config.epochs)
    if config.batch_size < 1:
        raise bad("batch_size", ">= 1", config.batch_size)


# ----------------------------------------------------------------------------------------------
# Data


class Splits(NamedTuple):
    """Train / validation / test arrays (host NumPy, flat features scaled to [0, 1]).

    The min-max statistics are fitted on ``x_train`` only and applied to all three parts.
    """

    x_train: np.ndarray[Any, Any]
    y_train: np.ndarray[Any, Any]
    x_val: np.ndarray[Any, Any]
    y_val: np.ndarray[Any, Any]
    x_test: np.ndarray[Any, Any]
    y_test: np.ndarray[Any, Any]
    num_classes: int
    name: str


def load_data(source: str) -> Dataset | TrainTest:
    """``"digits"`` (scikit-learn's embedded digits) or the path of a ``.npz`` file.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: the file is not a readable ``.npz`` of ``x``/``y`` (see ``load_npz``).
    """
    if source == "digits":
        return load_digits()
    return load_npz(source)


def prepare_splits(data: Dataset | TrainTest, *, test_fraction: float = 0.2,
                   val_fraction: float = 0.2, key: PRNGKey | None = None) -> Splits:
    """Split (80/20 test, then 20% of the training part for validation) and scale to [0, 1].

    A :class:`Dataset` is split into train and test by ``key`` (default ``key(DATA_KEY)``); a
    :class:`TrainTest` keeps its test part. The validation part is carved from the training part
    with a second fixed key; the min-max statistics are fitted on the remaining training part.

    Raises:
        ValueError: a part would be empty, or the data has fewer than two classes.
    """
    k = jax.random.key(DATA_KEY) if key is None else key
    test_key, val_key = jax.random.split(k)
    tt = split_dataset(test_key, data, test_fraction=test_fraction) if isinstance(data, Dataset) else data
    train_val = split_dataset(val_key, tt.train, test_fraction=val_fraction)
    train, val, test = train_val.train, train_val.test, tt.test
    if tt.train.num_classes < 2:
        raise ValueError(f"prepare_splits: the data must have at least two classes, got "
                         f"{tt.train.num_classes}")

    def flat(x: Array) -> Array:
        return jnp.reshape(x, (x.shape[0], -1))

    stats = fit_min_max(flat(train.x))

    def scaled(x: Array) -> np.ndarray[Any, Any]:
        return np.asarray(min_max_scale(stats, flat(x)), np.float32)

    return Splits(scaled(train.x), np.asarray(train.y), scaled(val.x), np.asarray(val.y),
                  scaled(test.x), np.asarray(test.y), int(tt.train.num_classes), tt.train.name)


# ----------------------------------------------------------------------------------------------
# Model, schedule, optimizer


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
    """The learning rate (schedule) of ``config`` for a run of ``epochs * steps_per_epoch`` steps.

    ``constant``: ``eta``; ``exponential``: ``eta * decay_rate^epoch`` (the lesson's "x0.98 after
    each epoch", staircase); ``cosine``: cosine decay from ``eta`` to 0 over the run (Loshchilov &
    Hutter 2017); ``warmup_cosine``: linear warmup over the first 10% of steps, then cosine;
    ``one_cycle``: the 1cycle policy peaking at ``eta`` (Smith & Topin 2017).
    """
    lr = config.learning_rate
    total = max(config.epochs * steps_per_epoch, 2)
    if config.schedule == "exponential":
        return sched.exponential_decay(lr, config.decay_rate, steps_per_epoch, staircase=True)
    if config.schedule == "cosine":
        return sched.cosine_decay(lr, total)
    if config.schedule == "warmup_cosine":
        return sched.warmup_cosine_decay(0.0, lr, max(total // 10, 1), total)
    if config.schedule == "one_cycle":
        return sched.one_cycle(total, lr)
    return lr


def build_optimizer(config: RunConfig, learning_rate: ScalarOrSchedule) -> GradientTransformation[Any]:
    """The optimizer of ``config``, preceded by global-norm clipping when ``config.clip`` is set."""
    name = config.optimizer
    opt: GradientTransformation[Any]
    if name == "sgd":
        opt = optim.sgd(learning_rate)
    elif name == "momentum":
        opt = optim.momentum(learning_rate, config.momentum)
    elif name == "nesterov":
        opt = optim.momentum(learning_rate, config.momentum, nesterov=True)
    elif name == "adagrad":
        opt = optim.adagrad(learning_rate)
    elif name == "rmsprop":
        opt = optim.rmsprop(learning_rate)
    elif name == "adam":
        opt = optim.adam(learning_rate)
    elif name == "adamw":
        opt = optim.adamw(learning_rate, weight_decay=config.weight_decay)
    elif name == "normalized_sgd":
        opt = optim.normalized_sgd(learning_rate)
    else:
        raise ValueError(f"build_optimizer: optimizer must be one of {', '.join(OPTIMIZERS)}, got {name!r}")
    if config.clip is not None:
        return optim.chain(optim.clip_by_global_norm(config.clip), opt)
    return opt


# ----------------------------------------------------------------------------------------------
# One run as a pure function of a key


class RunOutput(NamedTuple):
    """What one run returns (``run_seeds`` stacks every field along a leading seed axis).

    Attributes:
        train_loss: ``(epochs,)`` training loss, mean over each epoch's steps.
        train_accuracy: ``(epochs,)`` training accuracy (training mode: dropout on).
        val_loss: ``(epochs,)`` validation loss after each epoch.
        val_accuracy: ``(epochs,)`` validation accuracy after each epoch.
        active: ``(epochs,)`` whether the epoch trained (``False`` after early stopping).
        finite: ``(epochs,)`` whether parameters and optimizer state were finite after the epoch.
        epochs_run: the number of epochs that trained.
        test_loss: test loss of the kept model (the best epoch's under early stopping).
        test_accuracy: test accuracy of the kept model.
        state: the kept :class:`~functrain.train.TrainState`.
    """

    train_loss: Array
    train_accuracy: Array
    val_loss: Array
    val_accuracy: Array
    active: Array
    finite: Array
    epochs_run: Array
    test_loss: Array
    test_accuracy: Array
    state: TrainState[Any, Any, Any]


def steps_per_epoch(config: RunConfig, splits: Splits) -> int:
    """Full batches per epoch (the last partial batch is dropped), at least 1."""
    return max(len(splits.x_train) // min(config.batch_size, len(splits.x_train)), 1)


def make_run(config: RunConfig, splits: Splits) -> tuple[Callable[[PRNGKey], RunOutput], layers.Layer]:
    """A whole training run as a pure function ``run(key) -> RunOutput``, and its model.

    ``key`` is split into the initialization key and the training key (shuffling, dropout).
    Every epoch trains on ``splits.x_train`` and is evaluated on the validation part; with
    ``config.early_stopping`` the run stops when the validation loss has not improved for
    ``patience`` epochs and keeps the best epoch's parameters (Prechelt 1998). The kept model is
    evaluated on the test part.

    Raises:
        ValueError: an invalid ``config`` (see :func:`check_config`).
    """
    check_config(config)
    model = build_model(config, splits.num_classes)
    n_train = len(splits.x_train)
    batch_size = min(config.batch_size, n_train)
    optimizer = build_optimizer(config, build_schedule(config, steps_per_epoch(config, splits)))
    l2 = 0.0 if config.optimizer == "adamw" else config.weight_decay
    step = make_train_step(classifier_loss(model.apply, train=True, weight_decay=l2), optimizer)
    eval_step = make_eval_step(classifier_loss(model.apply, train=False))
    stopper = None if config.early_stopping is None else early_stopping(config.early_stopping)
    train_data = (jnp.asarray(splits.x_train), jnp.asarray(splits.y_train))
    val_data = (jnp.asarray(splits.x_val), jnp.asarray(splits.y_val))
    test_data = (jnp.asarray(splits.x_test), jnp.asarray(splits.y_test))
    features = int(splits.x_train.shape[1])

    def run(key: PRNGKey) -> RunOutput:
        init_key, train_key = jax.random.split(key)
        params, model_state, _ = model.init(init_key, (-1, features))
        fit_state = init_fit_state(init_train_state(params, model_state, optimizer), early_stopping=stopper)
        fit_state, m = fit_scan(step, fit_state, train_data, train_key, epochs=config.epochs,
                                batch_size=batch_size, eval_step=eval_step, val_data=val_data,
                                eval_batch_size=len(splits.x_val), early_stopping=stopper)
        kept = final_train_state(fit_state, stopper)
        test = evaluate(eval_step, kept, test_data, batch_size=len(splits.x_test))
        return RunOutput(
            train_loss=m.train["loss"], train_accuracy=m.train["accuracy"],
            val_loss=m.val["loss"], val_accuracy=m.val["accuracy"],
            active=m.active, finite=m.finite, epochs_run=jnp.sum(m.active.astype(jnp.int32)),
            test_loss=test["loss"], test_accuracy=test["accuracy"], state=kept)

    return run, model


def checkpoint_like(config: RunConfig, splits: Splits, seeds: int = 1) -> TrainState[Any, Any, Any]:
    """The structure, shapes and dtypes of the train state ``functrain train`` checkpoints.

    ``load_checkpoint(path, like=checkpoint_like(config, splits, seeds))`` loads
    ``checkpoint.ckpt`` back (seeds stacked on a leading axis when ``seeds > 1``). Computed by
    ``jax.eval_shape`` (nothing is trained or compiled).

    Args:
        config: the run's configuration (``history.json``'s ``"config"``).
        splits: the run's data (:func:`prepare_splits` of the same source).
        seeds: the number of seeds the run trained.

    Returns:
        A :class:`~functrain.train.TrainState` of ``jax.ShapeDtypeStruct`` leaves.
    """
    run, _ = make_run(config, splits)
    if seeds > 1:
        keys = jax.random.split(jax.random.key(0), seeds)
        out: RunOutput = jax.eval_shape(jax.vmap(run), keys)
    else:
        out = jax.eval_shape(run, jax.random.key(0))
    return out.state


def _ready(out: RunOutput) -> RunOutput:
    """``out`` once computed (JAX dispatches asynchronously; timings must include the work)."""
    for leaf in jax.tree_util.tree_leaves(out):
        if isinstance(leaf, jax.Array):
            leaf.block_until_ready()
    return out


def run_many(run: Callable[[PRNGKey], RunOutput], keys: Array, *,
             compiler_options: dict[str, Any] | None = None) -> RunOutput:
    """All seeds of ``run`` at once with :func:`~functrain.train.seeds.run_seeds`: one program.

    Args:
        run: from :func:`make_run`.
        keys: ``(n_seeds,)`` keys.
        compiler_options: XLA compiler options for the program (e.g.
            ``{"xla_backend_optimization_level": 0}`` compiles about 3x faster and runs slower:
            worth it for tiny smoke-test runs); ``None`` for JAX's defaults.

    Returns:
        The outputs stacked along a leading seed axis (computed: blocks until ready).
    """
    if compiler_options is None:
        out: RunOutput = run_seeds(run, keys).results
    else:
        batched = jax.jit(lambda ks: run_seeds(run, ks, jit=False).results)
        out = batched.lower(keys).compile(compiler_options=compiler_options)(keys)
    return _ready(out)


def run_one(run: Callable[[PRNGKey], RunOutput], key: PRNGKey, *,
            compiler_options: dict[str, Any] | None = None) -> RunOutput:
    """One seed of ``run``, jitted (``compiler_options`` as in :func:`run_many`)."""
    compiled = jax.jit(run).lower(key).compile(compiler_options=compiler_options)
    out: RunOutput = compiled(key)
    return _ready(out)


# ----------------------------------------------------------------------------------------------
# The trick table


def trick_rows(*, epochs: int, hidden: tuple[int, ...] = (256, 256, 256),
               batch_size: int = 64) -> list[tuple[str, RunConfig]]:
    """The rows of the trick table: each adds one trick to the previous row's configuration.

    Standard hyperparameters, fixed in advance (none tuned per row): plain SGD with learning rate
    0.1; He-normal init ``N(0, 2/n_in)`` for the ReLU network (He et al. 2015); batch norm after
    each hidden ``Dense``; dropout 0.2 after each hidden ReLU; momentum 0.9 at the same learning
    rate; Adam at its default 1e-3 (Kingma & Ba 2015) replacing SGD; global-norm clipping at
    ``theta = 1`` (the lesson's value); cosine decay of the learning rate to 0 over the run;
    L2 weight decay ``1e-4`` on the kernels; early stopping with patience 5 on the validation
    loss, keeping the best epoch. The ensemble row (added by :func:`run_tricks`) averages the
    last row's models.
    """
    c = RunConfig(hidden=hidden, init="standard_normal", optimizer="sgd", learning_rate=0.1,
                  epochs=epochs, batch_size=batch_size)
    rows = [("baseline: SGD, N(0,1) init", c)]
    for label, change in (
        ("+ He init N(0, 2/n_in)", {"init": "he"}),
        ("+ batch norm", {"batch_norm": True}),
        ("+ dropout 0.2", {"dropout": 0.2}),
        ("+ momentum 0.9", {"optimizer": "momentum"}),
        ("+ Adam lr 1e-3 (instead of SGD)", {"optimizer": "adam", "learning_rate": 1e-3}),
        ("+ gradient clipping (norm 1)", {"clip": 1.0}),
        ("+ cosine lr decay", {"schedule": "cosine"}),
        ("+ weight decay 1e-4 (L2)", {"weight_decay": 1e-4}),
        ("+ early stopping (patience 5)", {"early_stopping": 5}),
    ):
        c = c._replace(**change)
        rows.append((label, c))
    return rows


class TrickResult(NamedTuple):
    """One row of the trick table, as measured (host values).

    Attributes:
        label: the row's name.
        test_accuracy: ``(seeds,)`` test accuracy per seed (``(1,)`` for the ensemble row).
        epochs_run: ``(seeds,)`` epochs trained per seed.
        train_seconds: wall-clock seconds of running the row's compiled program (for the
            ensemble: of the prediction).
        compile_seconds: wall-clock seconds of building and compiling the program (compiles
            overlap with other rows' training).
        diverged: how many seeds ended with non-finite parameters.
        val_accuracy: ``(seeds, epochs)`` validation accuracy, NaN after early stopping
            (``None`` for the ensemble row).
        val_loss: ``(seeds, epochs)`` validation loss, NaN after early stopping or where not
            finite (``None`` for the ensemble row).
        train_loss: ``(seeds, epochs)`` training loss, NaN after early stopping or where not
            finite (``None`` for the ensemble row).
        ensemble: whether the row is the ensemble of the previous row's models.
    """

    label: str
    test_accuracy: np.ndarray[Any, Any]
    epochs_run: np.ndarray[Any, Any]
    train_seconds: float
    compile_seconds: float
    diverged: int
    val_accuracy: np.ndarray[Any, Any] | None
    val_loss: np.ndarray[Any, Any] | None
    train_loss: np.ndarray[Any, Any] | None
    ensemble: bool = False


def _curve(values: Array, keep: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    arr = np.asarray(values, np.float64)
    return np.where(keep & np.isfinite(arr), arr, np.nan)


def _ensemble_program(model: layers.Layer, state: TrainState[Any, Any, Any],
                      x: np.ndarray[Any, Any]) -> Callable[[np.ndarray[Any, Any]], np.ndarray[Any, Any]]:
    """``x -> averaged class probabilities`` of the stacked models in ``state``, compiled."""
    predict = jax.jit(lambda p, s, inputs: ensemble_predict(model.apply, p, s, inputs))
    program = predict.lower(state.params, state.model_state, jnp.asarray(x)).compile()

    def probabilities(inputs: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        return np.asarray(program(state.params, state.model_state, jnp.asarray(inputs)))

    return probabilities


def _accuracy(probs: np.ndarray[Any, Any], y: np.ndarray[Any, Any]) -> float:
    return float(np.mean(np.argmax(probs, axis=-1) == y))


def ensemble_accuracy(model: layers.Layer, state: TrainState[Any, Any, Any], x: np.ndarray[Any, Any],
                      y: np.ndarray[Any, Any]) -> float:
    """Accuracy of the ensemble of the stacked models in ``state`` (seeds on a leading axis).

    The ensemble predicts ``argmax_c (1/K) sum_k softmax(f_k(x))_c``
    (:func:`~functrain.train.ensemble_predict`, inference mode).

    Args:
        model: the members' architecture.
        state: their train states stacked along a leading ``(K,)`` axis (e.g. ``RunOutput.state``
            from :func:`run_many`).
        x: ``(n, features)`` inputs.
        y: ``(n,)`` labels.

    Returns:
        The fraction of ``x`` the ensemble classifies correctly.
    """
    return _accuracy(_ensemble_program(model, state, x)(x), y)


class _Compiled(NamedTuple):
    program: Callable[[Array], RunOutput]
    model: layers.Layer
    seconds: float


def _compile_row(config: RunConfig, data: Splits, keys: Array,
                 compiler_options: dict[str, Any] | None) -> _Compiled:
    """Build and compile one row's program: ``run_seeds`` of the row's run over ``keys``."""
    t0 = time.perf_counter()
    run, model = make_run(config, data)
    batched = jax.jit(lambda ks: run_seeds(run, ks, jit=False).results)
    program = batched.lower(keys).compile(compiler_options=compiler_options)
    return _Compiled(program, model, time.perf_counter() - t0)


def run_tricks(
    *,
    seeds: int,
    epochs: int,
    hidden: tuple[int, ...] = (256, 256, 256),
    batch_size: int = 64,
    seed: int = 0,
    splits: Splits | None = None,
    log: TextIO | None = sys.stderr,
    compiler_options: dict[str, Any] | None = None,
    compile_workers: int | None = None,
) -> list[TrickResult]:
    """Run every row of :func:`trick_rows` over ``seeds`` seeds (vmapped), plus the ensemble row.

    All rows use the same seed keys (``split(key(seed), seeds)``: the same initial draws and
    batch orders where the configurations allow), the same data splits and the same epochs.
    Each row is one compiled program (``run_seeds`` of its run, all seeds vmapped). Compiling
    takes longer than training these small networks and uses one core, so the programs are
    compiled ahead by ``compile_workers`` threads while earlier rows train; rows still train one
    after the other, in order. Progress goes to ``log``: a line when a row starts and one when it
    ends, with its compile and training times.

    Args:
        seeds: number of seeds per row (>= 1; the ensemble averages that many models).
        epochs: (maximum) epochs per run.
        hidden: hidden-layer widths.
        batch_size: examples per step.
        seed: the base seed of the runs.
        splits: the data (default: the digits, :func:`prepare_splits`).
        log: where progress lines go (``None`` for silence).
        compiler_options: XLA options for every row's program (see :func:`run_many`).
        compile_workers: threads compiling ahead (default: 2, or 1 on a single core).

    Returns:
        One :class:`TrickResult` per row, the ensemble last.
    """
    from concurrent.futures import ThreadPoolExecutor

    data = prepare_splits(load_digits()) if splits is None else splits
    keys = jax.random.split(jax.random.key(seed), seeds)
    rows = trick_rows(epochs=epochs, hidden=hidden, batch_size=batch_size)
    total = len(rows) + 1
    results: list[TrickResult] = []
    last_out: RunOutput | None = None
    last_model: layers.Layer | None = None
    start = time.perf_counter()
    workers = compile_workers if compile_workers is not None else min(2, os.cpu_count() or 1)

    def say(text: str) -> None:
        if log is not None:
            print(text, file=log, flush=True)

    pool = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="functrain-compile")
    try:
        futures = [pool.submit(_compile_row, config, data, keys, compiler_options) for _, config in rows]
        for i, ((label, _), future) in enumerate(zip(rows, futures)):
            say(f"[{i + 1}/{total}] {label}: {seeds} seed{'s' * (seeds != 1)} x {epochs} epochs ...")
            compiled = future.result()
            t0 = time.perf_counter()
            out = _ready(compiled.program(keys))
            seconds = time.perf_counter() - t0
            active = np.asarray(out.active, bool)
            finite = np.asarray(out.finite, bool)
            diverged = int(np.sum(~finite[:, -1]))
            result = TrickResult(
                label=label, test_accuracy=np.asarray(out.test_accuracy, np.float64),
                epochs_run=np.asarray(out.epochs_run, np.int64), train_seconds=seconds,
                compile_seconds=compiled.seconds, diverged=diverged,
                val_accuracy=_curve(out.val_accuracy, active), val_loss=_curve(out.val_loss, active),
                train_loss=_curve(out.train_loss, active))
            results.append(result)
            last_out, last_model = out, compiled.model
            say(f"[{i + 1}/{total}] {label}: test accuracy {_mean_std(result.test_accuracy)}"
                f"{f', {diverged} diverged' if diverged else ''} (train {seconds:.1f} s, compile "
                f"{compiled.seconds:.1f} s; {time.perf_counter() - start:.0f} s so far)")
    finally:
        pool.shutdown(wait=True, cancel_futures=True)

    assert last_out is not None and last_model is not None  # rows is never empty
    label = f"+ ensemble of the {seeds} models above"
    say(f"[{total}/{total}] {label} ...")
    t0 = time.perf_counter()
    program = _ensemble_program(last_model, last_out.state, data.x_test)
    t1 = time.perf_counter()
    acc = _accuracy(program(data.x_test), data.y_test)
    t2 = time.perf_counter()
    results.append(TrickResult(label=label, test_accuracy=np.asarray([acc]),
                               epochs_run=results[-1].epochs_run, train_seconds=t2 - t1,
                               compile_seconds=t1 - t0, diverged=0, val_accuracy=None, val_loss=None,
                               train_loss=None, ensemble=True))
    say(f"[{total}/{total}] {label}: test accuracy {acc:.4f} ({t2 - t0:.1f} s; "
        f"{time.perf_counter() - start:.0f} s in all)")
    return results


# ----------------------------------------------------------------------------------------------
# Reporting


def _mean_std(values: np.ndarray[Any, Any]) -> str:
    if values.size == 1:
        return f"{float(values[0]):.4f}"
    return f"{float(np.mean(values)):.4f} ± {float(np.std(values)):.4f}"


def _cells(r: TrickResult) -> tuple[str, str, str, str, str]:
    acc = _mean_std(r.test_accuracy)
    if r.diverged:
        acc += f" ({r.diverged}/{r.test_accuracy.size} diverged)"
    if r.ensemble:
        acc += " (one ensemble)"
    epochs = f"{float(np.mean(r.epochs_run)):.1f}"
    return r.label, acc, epochs, f"{r.train_seconds:.1f}", f"{r.compile_seconds:.1f}"


HEADER = ("trick (cumulative)", "test accuracy (mean ± std)", "epochs", "train s", "compile s")


def format_table(results: Sequence[TrickResult]) -> str:
    """A plain-text table for the terminal (one line per row)."""
    rows = [HEADER] + [_cells(r) for r in results]
    widths = [max(len(row[j]) for row in rows) for j in range(len(HEADER))]
    lines = []
    for k, row in enumerate(rows):
        lines.append("  ".join(cell.ljust(w) if j == 0 else cell.rjust(w)
                               for j, (cell, w) in enumerate(zip(row, widths))).rstrip())
        if k == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def markdown_table(results: Sequence[TrickResult]) -> str:
    """The table as GitHub Markdown."""
    lines = ["| " + " | ".join(HEADER) + " |", "| --- | ---: | ---: | ---: | ---: |"]
    lines += ["| " + " | ".join(_cells(r)) + " |" for r in results]
    return "\n".join(lines)


def _best_mean(a: np.ndarray[Any, Any]) -> float:
    """The best (largest) per-epoch mean over seeds, ignoring NaN entries (0 if all are NaN)."""
    present = np.isfinite(a)
    n = present.sum(axis=0)
    means = np.where(present, a, 0.0).sum(axis=0) / np.maximum(n, 1)
    return float(np.max(np.where(n > 0, means, 0.0), initial=0.0))


def _clip_loss_axis(ax: Any, curves: Sequence[tuple[TrickResult, np.ndarray[Any, Any] | None]]) -> None:
    """Limit a log-scale loss axis to the rows that did not blow up; name those that did.

    A diverging row's loss can reach 1e30 and would flatten every other curve, so the axis ends
    at twice the largest loss of the rows without a diverged seed, and the rows above it are
    listed in the panel with their largest value.
    """
    finite = [(r, a[np.isfinite(a)]) for r, a in curves if a is not None]
    tame = [v for r, v in finite if r.diverged == 0 and v.size]
    if not tame:
        return
    top = 2.0 * max(float(v.max()) for v in tame)
    low = 0.7 * min(float(v[v > 0].min()) for _, v in finite if (v > 0).any())
    ax.set_ylim(low, top)
    def why(r: TrickResult) -> str:
        n = r.test_accuracy.size
        if not r.diverged:
            return ""
        rest = f" (later epochs: the other {n - r.diverged} alone)" if r.diverged < n else ""
        return f",\n{r.diverged}/{n} seeds diverged to NaN{rest}"

    above = [f"{r.label}: up to {float(v.max()):.1e}{why(r)}" for r, v in finite if v.size and float(v.max()) > top]
    if above:
        ax.text(0.98, 0.97, "above the axis:\n" + "\n".join(above), transform=ax.transAxes, ha="right",
                va="top", fontsize="small", bbox={"facecolor": "white", "alpha": 0.85, "edgecolor": "0.7"})


def _zoom_low(values: Sequence[float]) -> float:
    """A lower axis limit showing the differences between the good rows (multiples of 0.05)."""
    good = [v for v in values if np.isfinite(v) and v >= 0.5]
    if not good:
        return 0.0
    return float(max(0.0, min(0.9, math.floor((min(good) - 0.04) * 20) / 20)))


def plot_tricks(results: Sequence[TrickResult], path: StrPath, *, title: str) -> None:
    """Write the trick figure (four panels, one shared legend) as a PNG.

    Top left: validation accuracy per epoch of every trained row (mean ± std band over seeds;
    the axis is zoomed on the good rows, rows below it are named in the panel). Top right:
    validation loss per epoch (log scale; early stopping watches it). Bottom left: training loss
    per epoch (log scale). Bottom right: test accuracy per row, mean ± std over seeds (the
    ensemble is one number). Curves are drawn by :func:`functrain.plotting.plot_curves`.
    """
    import matplotlib
    from matplotlib.figure import Figure

    from functrain.plotting import plot_curves

    trained = [r for r in results if r.val_accuracy is not None]
    palette = [matplotlib.colors.to_hex(c) for c in matplotlib.colormaps["tab10"].colors]  # type: ignore[attr-defined]  # ListedColormap has .colors
    colors = [palette[i % len(palette)] if not r.ensemble else "#000000" for i, r in enumerate(results)]
    fig = Figure(figsize=(16, 11.5), layout="constrained")
    fig.suptitle(title, fontsize="large")
    (ax_val, ax_vloss), (ax_loss, ax_test) = fig.subplots(2, 2)

    def curves(ax: Any, pick: Callable[[TrickResult], np.ndarray[Any, Any] | None], **kw: Any) -> None:
        ax.set_prop_cycle(color=colors[: len(trained)])
        data = {r.label: v for r in trained if (v := pick(r)) is not None}
        if data:
            plot_curves(data, ax=ax, **kw)
        legend = ax.get_legend()
        if legend is not None:
            legend.remove()

    curves(ax_val, lambda r: r.val_accuracy, title="Validation accuracy per epoch",
           ylabel="validation accuracy")
    curves(ax_vloss, lambda r: r.val_loss, title="Validation loss per epoch (log scale)",
           ylabel="validation loss (cross-entropy)", log_y=True)
    curves(ax_loss, lambda r: r.train_loss, title="Training loss per epoch (log scale)",
           ylabel="training loss (cross-entropy, mean over the epoch)", log_y=True)

    _clip_loss_axis(ax_vloss, [(r, r.val_loss) for r in trained])
    _clip_loss_axis(ax_loss, [(r, r.train_loss) for r in trained])

    best = {r.label: _best_mean(r.val_accuracy) for r in trained if r.val_accuracy is not None}
    low = _zoom_low(list(best.values()) + [float(np.mean(r.test_accuracy)) for r in results])
    ax_val.set_ylim(low, 1.0)
    off = [f"{label}: {value:.2f} at best" for label, value in best.items() if value < low]
    if off:
        ax_val.text(0.98, 0.03, "below the axis:\n" + "\n".join(off), transform=ax_val.transAxes,
                    ha="right", va="bottom", fontsize="small",
                    bbox={"facecolor": "white", "alpha": 0.85, "edgecolor": "0.7"})
    if low > 0:
        ax_val.set_title(f"Validation accuracy per epoch (axis from {low:.2f})")

    names = [r.label for r in results]
    means = np.asarray([float(np.mean(r.test_accuracy)) for r in results])
    stds = np.asarray([float(np.std(r.test_accuracy)) for r in results])
    ypos = np.arange(len(results))[::-1]
    for y, m, sd, c, r in zip(ypos, means, stds, colors, results):
        if m >= low:
            ax_test.errorbar(m, y, xerr=sd if r.test_accuracy.size > 1 else None, fmt="o", color=c,
                             capsize=4, markersize=7)
            note = f"{m:.4f}" + (f" ± {sd:.4f}" if r.test_accuracy.size > 1 else " (one ensemble)")
        else:
            ax_test.plot(low, y, marker="<", color=c, markersize=9, clip_on=False)
            note = f"{m:.4f} (off the axis" + (f"; {r.diverged}/{r.test_accuracy.size} diverged)"
                                               if r.diverged else ")")
        if m < low:
            where: dict[str, Any] = {"xytext": (12, 0), "ha": "left", "va": "center"}
        else:
            where = {"xytext": (0, 8), "ha": "right" if m > low + 0.8 * (1.0 - low) else "center",
                     "va": "bottom"}
        ax_test.annotate(note, (max(m, low), y), textcoords="offset points", fontsize="small",
                         color="0.2", **where)
    ax_test.set_yticks(ypos, names)
    ax_test.set_ylim(-0.7, len(results) - 0.3)
    ax_test.set_xlim(low, 1.0 + (1.0 - low) * 0.02)
    ax_test.set_xlabel("test accuracy (dot: mean over seeds, bar: ± std)")
    ax_test.set_title("Test accuracy of each row" + (f" (axis from {low:.2f})" if low > 0 else ""))
    ax_test.grid(True, axis="x", alpha=0.3)

    handles, labels = ax_val.get_legend_handles_labels()
    seeds = max((r.test_accuracy.size for r in trained), default=1)
    labels = [lab.replace(f" ({seeds} seeds)", "") for lab in labels]
    fig.legend(handles, labels, loc="outside lower center", ncol=4, fontsize="medium",
               title=f"rows, cumulative (curves: mean over {seeds} seeds, band: ± one std; "
                     "early-stopped runs end early)" if seeds > 1 else "rows, cumulative")
    fig.savefig(os.fspath(path), format="png", dpi=100)


def markdown_report(results: Sequence[TrickResult], *, splits: Splits, seeds: int, epochs: int,
                    hidden: tuple[int, ...], batch_size: int, seconds: float, cpu_seconds: float,
                    image: str, machine: str, command: str) -> str:
    """The Markdown file ``functrain tricks`` writes: setup, the table, notes and the figure."""
    net = "-".join(str(w) for w in (splits.x_train.shape[1], *hidden, splits.num_classes))
    return "\n".join([
        "# The training tricks, one at a time",
        "",
        f"Produced by `{command}`, which trained and evaluated every row in {seconds:.0f} s "
        f"({cpu_seconds:.0f} s of CPU time) on {machine}.",
        "",
        f"Data: scikit-learn's embedded handwritten digits ({splits.name}, 8x8 images, 10 classes), "
        "split 80/20 into a training and a test part by a fixed key, then 20% of the training part "
        f"held out for validation: {len(splits.x_train)} train / {len(splits.x_val)} validation / "
        f"{len(splits.x_test)} test examples; pixels min-max scaled to [0, 1] with statistics of the "
        "training examples only.",
        "",
        f"Model: MLP {net} with ReLU, softmax cross-entropy, batches of {batch_size}, up to {epochs} "
        "epochs. Each row adds one trick to the row above (cumulative), with a standard "
        "hyperparameter fixed in advance (no per-row tuning). Every row trains the same "
        f"{seeds} seeds, all at once (`jax.vmap` via `run_seeds`, one compiled program per row). "
        "`train s` is the wall-clock time of running a row's program (all its seeds and epochs, "
        "validation and test included); `compile s` that of building and compiling it, which for "
        "these small networks takes longer: two programs are compiled ahead while earlier rows "
        "train, so the compile times overlap the training and each other.",
        "",
        markdown_table(results),
        "",
        "- Test accuracy: of the model each run keeps (the last epoch's; the best validation "
        "epoch's with early stopping), mean ± population std over seeds.",
        "- Diverged: the parameters were no longer finite at the end (the loss overflowed to NaN); "
        "such a network predicts one class for every input.",
        "- Adam replaces SGD with momentum from its row on (the optimizers are alternatives; the "
        "other tricks accumulate).",
        "- From the weight-decay row on, the training loss in the figure includes the L2 penalty "
        "(lambda/2 ||W||^2), which is why those curves sit higher.",
        f"- The ensemble averages the class probabilities of the {seeds} models of the row above "
        "(`ensemble_predict`: p(y|x) = mean_k softmax(f_k(x))), so it is one number; its epochs "
        "are its members' and its times those of the prediction.",
        "",
        f"![Validation accuracy and training loss per epoch, and test accuracy, of every row]({image})",
        "",
    ])


def results_json(results: Sequence[TrickResult], *, seeds: int, epochs: int, hidden: tuple[int, ...],
                 batch_size: int, seed: int) -> dict[str, Any]:
    """The measured numbers of every row, JSON-ready (NaN curves entries as ``None``)."""

    def curve(a: np.ndarray[Any, Any] | None) -> list[list[float | None]] | None:
        if a is None:
            return None
        return [[float(v) if np.isfinite(v) else None for v in row] for row in a]

    return {
        "settings": {"seeds": seeds, "epochs": epochs, "hidden": list(hidden), "batch_size": batch_size,
                     "seed": seed},
        "rows": [{"trick": r.label, "test_accuracy": [float(v) for v in r.test_accuracy],
                  "epochs_run": [int(v) for v in r.epochs_run], "train_seconds": r.train_seconds,
                  "compile_seconds": r.compile_seconds,
                  "diverged": r.diverged, "ensemble": r.ensemble,
                  "val_accuracy": curve(r.val_accuracy), "val_loss": curve(r.val_loss),
                  "train_loss": curve(r.train_loss)}
                 for r in results],
    }


def plot_run(out: RunOutput, path: StrPath, *, title: str) -> None:
    """The curves of ``functrain train``: loss and accuracy per epoch, training and validation.

    ``out`` holds stacked seeds ``(seeds, epochs)``; epochs after early stopping are left out.
    Uses :func:`functrain.plotting.plot_curves` (mean ± std bands when there are several seeds).
    """
    from matplotlib.figure import Figure

    from functrain.plotting import plot_curves

    active = np.asarray(out.active, bool)
    fig = Figure(figsize=(13, 5.2), layout="constrained")
    fig.suptitle(title)
    ax_loss, ax_acc = fig.subplots(1, 2)
    plot_curves({"training": _curve(out.train_loss, active), "validation": _curve(out.val_loss, active)},
                ax=ax_loss, title="Loss per epoch (log scale)", ylabel="cross-entropy loss", log_y=True)
    plot_curves({"training": _curve(out.train_accuracy, active),
                 "validation": _curve(out.val_accuracy, active)},
                ax=ax_acc, title="Accuracy per epoch", ylabel="accuracy")
    fig.savefig(os.fspath(path), format="png", dpi=100)
