"""Training: state, pure steps, epochs in ``lax.scan``, ``fit``, early stopping, plateau, averaging, checkpoints.

Typical use::

    from functrain import train, optim, layers

    model = layers.serial(layers.Dense(128), layers.Relu, layers.Dense(10))
    params, model_state, _ = model.init(key, (-1, 64))
    opt = optim.adam(1e-3)
    state = train.init_train_state(params, model_state, opt)
    step = train.make_train_step(train.classifier_loss(model.apply, train=True), opt)
    eval_step = train.make_eval_step(train.classifier_loss(model.apply, train=False))
    state, history = train.fit(step, state, (x, y), key, epochs=20, batch_size=64,
                               eval_step=eval_step, val_data=(x_val, y_val),
                               early_stopping=train.early_stopping(5))
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
from functrain.train.loop import (
    EpochMetrics,
    FitState,
    History,
    evaluate,
    final_train_state,
    fit,
    fit_epoch,
    fit_scan,
    init_fit_state,
    train_epoch,
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
from functrain.train.seeds import RunResults, Stats, grid, run_seeds, summarize, sweep
from functrain.train.state import TrainState, init_train_state
from functrain.train.step import EvalStep, TrainStep, classifier_loss, make_eval_step, make_train_step

__all__ = [
    "CheckpointError",
    "EarlyStopping",
    "EarlyStoppingState",
    "EpochMetrics",
    "EvalStep",
    "FitState",
    "History",
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
    "make_eval_step",
    "make_train_step",
    "masked_update",
    "recompute_batch_norm_stats",
    "reduce_on_plateau",
    "run_seeds",
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
