"""One run of the trick experiments as a pure function of a key, and many seeds of it at once.

:func:`make_run` turns a :class:`~functrain.experiments.tricks.config.RunConfig` into
``run(key) -> RunOutput``: initialize, train every epoch inside ``lax.scan`` with validation and
optional early stopping, evaluate the kept model on the test part (built from the shared programs
of :mod:`~functrain.experiments.tricks.programs`, with the run's values bound in). Because it is pure,
:func:`~functrain.train.seeds.run_seeds` trains all seeds as one vmapped, compiled program
(:func:`run_many`). :func:`make_parts` gives the same run as three pieces (start, train some
epochs, finish), which the commands compile once and run in chunks of epochs
(:mod:`~functrain.experiments.tricks.chunks`). Nothing is clamped: a batch size above the
training examples, or more epochs than the int32 step counter allows, is refused.

Example:
    >>> from functrain.experiments.tricks import config, run, splits
    >>> digits = splits.prepare_splits(splits.load_data("digits"))
    >>> run.steps_per_epoch(config.RunConfig(batch_size=64), digits)  # 1149 training digits
    17
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from functrain import _jax, layers
from functrain._validate import INT32_MAX, check_int, fail
from functrain.experiments.tricks.config import RunConfig, check_config
from functrain.experiments.tricks.models import check_model
from functrain.experiments.tricks.programs import device_data, hyper_of, layout_of, make_programs, structure_of
from functrain.experiments.tricks.splits import Splits
from functrain.train import EpochMetrics, FitState, TrainState
from functrain.train.seeds import run_seeds
from functrain.typing import Array, PRNGKey

__all__ = ["CompilerOptions", "RunOutput", "RunParts", "check_run", "checkpoint_like", "compile_seeds", "make_parts",
           "make_run", "max_epochs", "run_many", "run_one", "steps_per_epoch"]

CompilerOptions = dict[str, Any] | None


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
    """Full batches per epoch, ``n_train // batch_size`` (the last partial batch is dropped).

    Raises:
        ValueError: ``config.batch_size`` exceeds the training examples (nothing is clamped: a
            run must train with the batch size it records).
    """
    return len(splits.x_train) // _check_batch_size(config, splits, "steps_per_epoch")


def _check_batch_size(config: RunConfig, splits: Splits, who: str) -> int:
    n = len(splits.x_train)
    batch_size = check_int(config.batch_size, who, "config.batch_size", low=1)
    if batch_size > n:
        fail(who, "config.batch_size", f"an int in [1, {n}] (at most the {n} training examples of "
             f"{splits.name})", batch_size)
    return batch_size


def max_epochs(config: RunConfig, splits: Splits) -> int:
    """The most epochs a run of ``config`` on ``splits`` may have: ``epochs * steps`` fits int32.

    The train state counts steps in an int32 (so do the schedules), so a longer run would wrap
    its step counter; :func:`make_run` refuses it.
    """
    return INT32_MAX // steps_per_epoch(config, splits)


class RunParts(NamedTuple):
    """A run of :func:`make_run` in three pure pieces, so that it can be run in chunks of epochs.

    ``finish(train(start(key)..., epochs))`` is the whole run; ``train`` continues a run from any
    epoch (``fit_scan`` folds the epoch index into the training key), so calling it for
    ``e1``, then ``e2`` epochs computes the same as calling it once for ``e1 + e2``. The run's
    values and data are bound in (the shared programs of
    :mod:`~functrain.experiments.tricks.programs` take them as arguments).

    Attributes:
        model: the network.
        start: ``key -> (fit_state at epoch 0, training key)``.
        train: ``(fit_state, training key, epochs) -> (fit_state, per-epoch metrics)``
            (``epochs`` static).
        finish: ``fit_state -> (kept train state, test metrics)``: the best epoch's parameters
            under early stopping (the average with an EMA of the weights), evaluated on the test
            part.
    """

    model: layers.Layer
    start: Callable[[PRNGKey], tuple[FitState[Any], PRNGKey]]
    train: Callable[[FitState[Any], PRNGKey, int], tuple[FitState[Any], EpochMetrics]]
    finish: Callable[[FitState[Any]], tuple[TrainState[Any, Any, Any], dict[str, Array]]]


def check_run(config: RunConfig, splits: Splits, who: str = "make_run") -> None:
    """Refuse a run that cannot train on ``splits`` as configured (nothing is clamped).

    Raises:
        TypeError, ValueError: an invalid ``config`` (see ``check_config``), a batch size above
            the training examples, more epochs than the int32 step counter allows
            (:func:`max_epochs`), or a network that does not fit the data (e.g. a convnet on data
            without images).
    """
    check_config(config)
    _check_batch_size(config, splits, who)
    spe = steps_per_epoch(config, splits)
    if config.epochs > max_epochs(config, splits):
        fail(who, "config.epochs", f"an int in [1, {max_epochs(config, splits)}] (epochs x {spe} steps per "
             "epoch must fit the int32 step counter)", config.epochs)
    check_model(config, splits.num_classes, int(splits.x_train.shape[1]), splits.image_shape)


def make_parts(config: RunConfig, splits: Splits) -> RunParts:
    """The :class:`RunParts` of ``config`` on ``splits`` (see :func:`make_run`).

    Raises:
        TypeError, ValueError: as :func:`check_run`.
    """
    check_run(config, splits)
    structure = structure_of(config)
    layout = layout_of(splits)
    hyper, data = hyper_of(config, structure, layout), device_data(splits)
    parts = make_programs(structure, config.init, layout)

    def start(key: PRNGKey) -> tuple[FitState[Any], PRNGKey]:
        return parts.start(hyper, data, key)

    def train(fs: FitState[Any], key: PRNGKey, epochs: int) -> tuple[FitState[Any], EpochMetrics]:
        return parts.train(hyper, data, fs, key, epochs)

    def finish(fs: FitState[Any]) -> tuple[TrainState[Any, Any, Any], dict[str, Array]]:
        return parts.finish(hyper, data, fs)

    return RunParts(parts.model(hyper), start, train, finish)


def make_run(config: RunConfig, splits: Splits) -> tuple[Callable[[PRNGKey], RunOutput], layers.Layer]:
    """A whole training run as a pure function ``run(key) -> RunOutput``, and its model.

    ``key`` is split into the initialization key and the training key (shuffling, dropout).
    Every epoch trains on ``splits.x_train`` and is evaluated on the validation part; with
    ``config.early_stopping`` the run stops when the validation loss has not improved for
    ``patience`` epochs and keeps the best epoch's parameters (Prechelt 1998). The kept model is
    evaluated on the test part. :func:`make_parts` gives the same run in pieces (for chunks of
    epochs, see :mod:`~functrain.experiments.tricks.chunks`).

    Raises:
        TypeError, ValueError: as :func:`check_run` (a batch size above the training examples is
            refused, never clamped).
    """
    parts = make_parts(config, splits)

    def run(key: PRNGKey) -> RunOutput:
        fit_state, train_key = parts.start(key)
        fit_state, m = parts.train(fit_state, train_key, config.epochs)
        kept, test = parts.finish(fit_state)
        return RunOutput(
            train_loss=m.train["loss"], train_accuracy=m.train["accuracy"],
            val_loss=m.val["loss"], val_accuracy=m.val["accuracy"],
            active=m.active, finite=m.finite, epochs_run=jnp.sum(m.active.astype(jnp.int32)),
            test_loss=test["loss"], test_accuracy=test["accuracy"], state=kept)

    return run, parts.model


def checkpoint_like(config: RunConfig, splits: Splits, seeds: int = 1) -> TrainState[Any, Any, Any]:
    """The structure, shapes and dtypes of the train state ``functrain train`` checkpoints.

    ``load_checkpoint(path, like=checkpoint_like(config, splits, seeds))`` loads
    ``checkpoint.ckpt`` back (seeds stacked on a leading axis when ``seeds > 1``). Computed by
    ``jax.eval_shape`` (nothing is trained or compiled).

    Args:
        config: the run's configuration (``history.json``'s ``"config"``).
        splits: the run's data (``prepare_splits`` of the same source).
        seeds: the number of seeds the run trained.

    Returns:
        A :class:`~functrain.train.TrainState` of ``jax.ShapeDtypeStruct`` leaves.
    """
    run, _ = make_run(config, splits)
    if seeds > 1:
        out: RunOutput = _jax.eval_shape(jax.vmap(run), jax.random.split(jax.random.key(0), seeds))
    else:
        out = _jax.eval_shape(run, jax.random.key(0))
    return out.state


def ready(out: RunOutput) -> RunOutput:
    """``out`` once computed (JAX dispatches asynchronously; timings must include the work)."""
    for leaf in jax.tree_util.tree_leaves(out):
        if isinstance(leaf, jax.Array):
            leaf.block_until_ready()
    return out


def compile_seeds(run: Callable[[PRNGKey], RunOutput], keys: Array,
                   compiler_options: CompilerOptions) -> Callable[[Array], RunOutput]:
    """``run_seeds`` of ``run`` over keys like ``keys``, compiled with ``compiler_options``."""
    def batched(ks: Array) -> RunOutput:
        return run_seeds(run, ks, jit=False).results

    return _jax.compile_ahead(batched, keys, compiler_options=compiler_options)[0]


def run_many(run: Callable[[PRNGKey], RunOutput], keys: Array, *,
             compiler_options: CompilerOptions = None) -> RunOutput:
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
        return ready(out)
    return ready(compile_seeds(run, keys, compiler_options)(keys))


def run_one(run: Callable[[PRNGKey], RunOutput], key: PRNGKey, *,
            compiler_options: CompilerOptions = None) -> RunOutput:
    """One seed of ``run``, jitted (``compiler_options`` as in :func:`run_many`)."""
    compiled = _jax.compile_ahead(run, key, compiler_options=compiler_options)[0]
    out: RunOutput = compiled(key)
    return ready(out)
