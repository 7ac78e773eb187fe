"""Preventing overfitting: early stopping, weight decay (L2 penalty vs AdamW) and model averaging.

A wide MLP (256-256, ReLU) trained with Adam on only ``--train-size`` digits memorizes them: the
training loss goes to zero while the validation loss turns back up after about 20 epochs. Every
remedy of the lesson is applied to that setting:

* early stopping -- ``train.early_stopping(patience, restore_best=True)`` watches the validation
  loss and keeps the parameters (and model state) of the best epoch;
* weight decay -- as an L2 penalty added to the loss (``classifier_loss(weight_decay=...)``, which
  Adam then rescales per weight) or decoupled from the gradient (``optim.adamw``, Loshchilov &
  Hutter 2019);
* averaging -- an exponential moving average of the weights (``ema_update``), stochastic weight
  averaging of the second half of training (``swa_update``) and an ensemble of the seeds
  (``ensemble_predict`` averages their predicted probabilities). The same network with batch
  norm shows why SWA needs ``recompute_batch_norm_stats``: the running statistics collected
  along the way do not belong to the averaged weights.

Baseline, L2 and AdamW are three configurations of one ``sweep`` (the weight-decay coefficients
are traced hyperparameters), so all configurations and seeds train in one compiled program. Each
run tracks early stopping, the EMA and SWA in its own epoch loop (``lax.scan`` over
``train_epoch``): the early-stopping state machine records the best epoch while training goes on,
so its restored parameters are exactly those ``fit(..., early_stopping=...)`` would return.

    python examples/overfitting.py [--quick] [--out DIR] [--seeds N] [--epochs N] [--train-size N]
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from _common import parser  # examples/_common.py, next to this file
from jax import lax

from functrain import data, layers, losses, optim, plotting, train
from functrain.train.seeds import sweep
from functrain.typing import Array, PyTree


class RunOutput(NamedTuple):
    """What one run keeps: final, best-epoch and averaged weights, and the per-epoch validation metrics."""

    final: tuple[PyTree, PyTree]
    best: tuple[PyTree, PyTree]
    best_epoch: Array
    ema: PyTree
    swa: PyTree
    val: dict[str, Array]


Scores = tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]


def make_run(model: layers.Layer, *, lr: float, epochs: int, patience: int, train_xy: tuple[Array, Array],
             val_xy: tuple[Array, Array]) -> Callable[[Array, dict[str, Array]], RunOutput]:
    """One training run of ``model`` as a function of its key and its (traced) decay coefficients."""
    stopper = train.early_stopping(patience, restore_best=True)
    eval_step = train.make_eval_step(train.classifier_loss(model.apply, train=False))

    def run(key: Array, hp: dict[str, Array]) -> RunOutput:
        """One run with L2 coefficient ``hp["l2"]`` and decoupled decay ``hp["decay"]`` (traced)."""
        opt = optim.adamw(lr, weight_decay=hp["decay"])
        loss_fn = train.classifier_loss(model.apply, train=True, weight_decay=hp["l2"])
        step = train.make_train_step(loss_fn, opt)
        k_init, k_fit = jax.random.split(key)
        params, model_state, _ = model.init(k_init, (-1, 64))
        start = (train.init_train_state(params, model_state, opt), stopper.init((params, model_state)),
                 params, train.swa_init(params))

        def epoch(carry: Any, e: Array) -> tuple[Any, dict[str, Array]]:
            state, es, ema, swa = carry
            state, _ = train.train_epoch(step, state, train_xy, jax.random.fold_in(k_fit, e), batch_size=32)
            val = train.evaluate(eval_step, state, val_xy, batch_size=512)
            es = stopper.update(es, val["loss"], (state.params, state.model_state))
            ema = train.ema_update(ema, state.params, 0.9)
            swa = train.swa_update(swa, state.params, e, start_epoch=epochs // 2)
            return (state, es, ema, swa), val

        (state, es, ema, swa), val = lax.scan(epoch, start, jnp.arange(epochs))
        final = (state.params, state.model_state)
        return RunOutput(final, stopper.restore(es, final), es.best_epoch, ema, swa.average, val)

    return run


def per_config(tree: PyTree, g: int) -> PyTree:
    """The runs of configuration ``g`` (the leading sweep axis)."""
    return jax.tree_util.tree_map(lambda a: a[g], tree)


def test_scores(model: layers.Layer, params: PyTree, state: PyTree, test: tuple[Array, Array]) -> Scores:
    """Test accuracy and cross-entropy of each seed's model (leading seed axis)."""
    x_test, y_test = test
    logits = jax.vmap(lambda p, s: model.apply(p, s, x_test, train=False)[0])(params, state)
    acc = jax.vmap(losses.accuracy, in_axes=(0, None))(logits, y_test)
    nll = jax.vmap(losses.softmax_cross_entropy, in_axes=(0, None))(logits, y_test)
    return np.asarray(acc), np.asarray(nll)


def score_rows(out: RunOutput, out_bn: RunOutput, models: tuple[layers.Layer, layers.Layer], configs: list[str],
               *, epochs: int, patience: int, train_x: Array, test: tuple[Array, Array]) -> dict[str, Scores]:
    """Every remedy's test scores: the configurations, early stopping, EMA, SWA, the ensemble, batch norm."""
    mlp, bn_mlp = models
    base: RunOutput = per_config(out, 0)
    bn: RunOutput = per_config(out_bn, 0)
    rows = {"no regularization (last epoch)": test_scores(mlp, *base.final, test)}
    stop = np.minimum(np.asarray(base.best_epoch) + 1 + patience, epochs)
    rows[f"early stopping (best epoch restored; ran {stop.mean():.0f} epochs)"] = test_scores(mlp, *base.best, test)
    for g, name in enumerate(configs):
        if g > 0:
            config: RunOutput = per_config(out, g)
            rows[name] = test_scores(mlp, *config.final, test)
    rows["EMA of the weights (decay 0.9 per epoch)"] = test_scores(mlp, base.ema, base.final[1], test)
    rows[f"SWA of epochs {epochs // 2 + 1}..{epochs}"] = test_scores(mlp, base.swa, base.final[1], test)
    x_test, y_test = test
    final_params, final_state = base.final
    probs = train.ensemble_predict(mlp.apply, final_params, final_state, x_test)
    rows[f"ensemble of the {stop.size} seeds (ensemble_predict)"] = (
        np.asarray([losses.accuracy(probs, y_test)]),
        np.asarray([-jnp.mean(jnp.log(probs[jnp.arange(y_test.shape[0]), y_test]))]))
    rows["with batch norm (last epoch)"] = test_scores(bn_mlp, *bn.final, test)
    rows["with batch norm + SWA, last epoch's BN statistics"] = test_scores(bn_mlp, bn.swa, bn.final[1], test)
    recomputed = jax.vmap(lambda p, s: train.recompute_batch_norm_stats(bn_mlp.apply, p, s, train_x,
                                                                        batch_size=32))(bn.swa, bn.final[1])
    rows["with batch norm + SWA, recompute_batch_norm_stats"] = test_scores(bn_mlp, bn.swa, recomputed, test)
    return rows


def load_data(train_size: int) -> tuple[tuple[Array, Array], tuple[Array, Array], tuple[Array, Array]]:
    """``train_size`` training digits, and validation and test parts (20% of the digits each), in [-1, 1]."""
    split = data.split_dataset(jax.random.key(0), data.load_digits(), test_fraction=0.4)
    val_test = data.split_dataset(jax.random.key(1), split.test, test_fraction=0.5)
    x_train, y_train = split.train.x[:train_size], split.train.y[:train_size]
    mm = data.fit_min_max(x_train, feature_range=(-1.0, 1.0))
    return ((data.min_max_scale(mm, x_train), y_train), (data.min_max_scale(mm, val_test.train.x), val_test.train.y),
            (data.min_max_scale(mm, val_test.test.x), val_test.test.y))


def main(argv: list[str] | None = None) -> None:
    """Train the overfitting MLP with every remedy and print the test accuracy of each."""
    p = parser(__doc__, seeds=4, epochs=150)
    p.add_argument("--train-size", type=int, default=200, help="training examples (few, to overfit)")
    p.add_argument("--patience", type=int, default=10)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--l2", type=float, default=1e-3, help="L2 coefficient added to the loss")
    p.add_argument("--decay", type=float, default=2.0, help="AdamW's decoupled weight decay")
    args = p.parse_args(argv)
    configs = {  # name -> (L2 coefficient in the loss, AdamW's decoupled weight decay)
        "no regularization": (0.0, 0.0),
        f"L2 penalty {args.l2:g} in the loss": (args.l2, 0.0),
        f"decoupled weight decay {args.decay:g} (AdamW)": (0.0, args.decay),
    }
    n_seeds, epochs, patience = (2, 4, 2) if args.quick else (args.seeds, args.epochs, args.patience)
    train_xy, val_xy, test_xy = load_data(args.train_size)

    mlp = layers.serial(layers.Dense(256), layers.Relu, layers.Dense(256), layers.Relu, layers.Dense(10))
    bn_mlp = layers.serial(layers.Dense(256), layers.BatchNorm(), layers.Relu,
                           layers.Dense(256), layers.BatchNorm(), layers.Relu, layers.Dense(10))
    setting = {"lr": args.lr, "epochs": epochs, "patience": patience, "train_xy": train_xy, "val_xy": val_xy}
    keys = jax.random.split(jax.random.key(2), n_seeds)
    hparams = {"l2": jnp.array([c[0] for c in configs.values()]),
               "decay": jnp.array([c[1] for c in configs.values()])}
    out: RunOutput = sweep(make_run(mlp, **setting), keys, hparams).results  # leading axes (config, seed)
    no_decay = {"l2": jnp.zeros(1), "decay": jnp.zeros(1)}
    out_bn: RunOutput = sweep(make_run(bn_mlp, **setting), keys, no_decay).results
    rows = score_rows(out, out_bn, (mlp, bn_mlp), list(configs), epochs=epochs, patience=patience,
                      train_x=train_xy[0], test=test_xy)

    print(f"MLP 256-256, Adam lr={args.lr:g}, {train_xy[0].shape[0]} training digits, "
          f"{epochs} epochs, {n_seeds} seeds (mean ± std)")
    print(f"{'method':<58}{'test accuracy':<18}{'test loss'}")
    for name, (acc, nll) in rows.items():
        spread = f" ± {acc.std():.3f}" if acc.size > 1 else ""
        print(f"{name:<58}{f'{acc.mean():.3f}{spread}':<18}{nll.mean():.4f}")

    args.out.mkdir(parents=True, exist_ok=True)
    _, (left, right) = plotting.panels(1, 2, width=5.5)
    plotting.plot_curves({name: per_config(out, g).val["loss"] for g, name in enumerate(configs)},
                         title="Validation loss: overfitting after the minimum", ylabel="validation loss",
                         log_y=True, ax=left)
    plotting.plot_curves({name: per_config(out, g).val["accuracy"] for g, name in enumerate(configs)},
                         title=f"Validation accuracy ({train_xy[0].shape[0]} training digits)",
                         ylabel="validation accuracy", ax=right, path=args.out / "overfitting.png")


if __name__ == "__main__":
    main()
