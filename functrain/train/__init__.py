"""Training: state, pure steps, epochs in ``lax.scan``, ``fit``, early stopping, plateau, averaging, checkpoints.

One concept per module:

* ``state`` -- :class:`TrainState` and :func:`init_train_state`;
* ``step`` -- :func:`make_train_step`, :func:`make_eval_step` and the
  :class:`TrainStep`/:class:`EvalStep` protocols;
* ``classifier`` -- :func:`classifier_loss` (a :class:`ClassifierLoss`: cross-entropy with optional
  label smoothing, L2 penalty, accuracy);
* ``epoch`` -- :func:`train_epoch` (one shuffled epoch in ``lax.scan``), :func:`evaluate` and the
  :func:`compiler_options` they are compiled with;
* ``run`` -- a whole run as a pure function: :class:`FitOptions`, :class:`FitState`,
  :func:`init_fit_state`, :func:`fit_epoch`, :func:`fit_scan`, :func:`final_train_state`;
* ``fit`` -- the host-side driver :func:`fit` (progress, checkpoints) and its :class:`History`;
* ``early_stopping``, ``plateau`` -- pure state machines (:func:`early_stopping`,
  :func:`reduce_on_plateau` with :func:`scale_by_plateau`);
* ``averaging`` -- EMA, SWA (with batch-norm recomputation) and ensembles;
* ``checkpoint`` -- atomic, checksummed, bitwise checkpoints of any pytree;
* ``seeds`` -- many runs in one program (:func:`run_seeds`, :func:`sweep`, :func:`grid`);
* ``distributed`` -- data parallelism with ``jax.sharding``.

Example:
    >>> model = ft.serial(ft.layers.Dense(16), ft.layers.Relu, ft.layers.Dense(3))
    >>> params, model_state, _ = model.init(jax.random.key(0), (-1, 4))
    >>> opt = ft.optim.adam(1e-2)
    >>> state = ft.train.init_train_state(params, model_state, opt)
    >>> step = ft.train.make_train_step(ft.train.classifier_loss(model.apply, train=True), opt)
    >>> eval_step = ft.train.make_eval_step(ft.train.classifier_loss(model.apply, train=False))
    >>> x = jax.random.normal(jax.random.key(1), (32, 4))
    >>> y = jnp.argmax(x[:, :3], axis=1)
    >>> state, history = ft.train.fit(step, state, (x, y), jax.random.key(2), epochs=3, batch_size=8,
    ...                               eval_step=eval_step, val_data=(x, y),
    ...                               early_stopping=ft.train.early_stopping(5), progress=False)
    >>> history.epoch.tolist(), sorted(history.val)
    ([0, 1, 2], ['accuracy', 'loss'])
"""

from functrain.train.averaging import (
    SWAState,
    ema_update,
    ensemble_predict,
    recompute_batch_norm_stats,
    swa_init,
    swa_update,
)
from functrain.train.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from functrain.train.early_stopping import EarlyStopping, EarlyStoppingState, early_stopping, masked_update
from functrain.train.epoch import compiler_options, evaluate, train_epoch
from functrain.train.fit import FitInterrupted, History, fit
from functrain.train.lr_find import LRFindResult, lr_find
from functrain.train.run import (
    EpochMetrics,
    FitOptions,
    FitState,
    final_train_state,
    fit_epoch,
    fit_scan,
    init_fit_state,
)
from functrain.train.plateau import (
    ReduceOnPlateau,
    ReduceOnPlateauState,
    ScaleByPlateauState,
    get_plateau_scale,
    reduce_on_plateau,
    scale_by_plateau,
    set_plateau_scale,
)
from functrain.train import distributed, seeds
from functrain.train.sam import make_sam_train_step, sam_perturbation
from functrain.train.seeds import RunResults, Stats, grid, run_seeds, summarize, sweep
from functrain.train.state import TrainState, init_train_state
from functrain.train.classifier import ClassifierLoss, classifier_loss
from functrain.train.step import EvalStep, TrainStep, make_eval_step, make_train_step

__all__ = [
    "CheckpointError",
    "ClassifierLoss",
    "EarlyStopping",
    "EarlyStoppingState",
    "EpochMetrics",
    "EvalStep",
    "FitInterrupted",
    "FitOptions",
    "FitState",
    "History",
    "LRFindResult",
    "ReduceOnPlateau",
    "ReduceOnPlateauState",
    "RunResults",
    "SWAState",
    "ScaleByPlateauState",
    "Stats",
    "TrainState",
    "TrainStep",
    "classifier_loss",
    "distributed",
    "early_stopping",
    "ema_update",
    "compiler_options",
    "ensemble_predict",
    "evaluate",
    "final_train_state",
    "fit",
    "fit_epoch",
    "fit_scan",
    "get_plateau_scale",
    "grid",
    "init_fit_state",
    "init_train_state",
    "load_checkpoint",
    "lr_find",
    "make_eval_step",
    "make_sam_train_step",
    "make_train_step",
    "masked_update",
    "recompute_batch_norm_stats",
    "reduce_on_plateau",
    "run_seeds",
    "sam_perturbation",
    "save_checkpoint",
    "scale_by_plateau",
    "seeds",
    "set_plateau_scale",
    "summarize",
    "swa_init",
    "swa_update",
    "sweep",
    "train_epoch",
]
