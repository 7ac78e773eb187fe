"""Optimizers compared: from SGD, momentum and Adam to NAdam, RAdam, Lion, LAMB, LARS and Lookahead.

Every optimizer trains the same MLP from the same initial weights with the same budget (epochs,
batch size): one set of weights per seed, drawn once and passed to each optimizer's training
program, which ``jax.vmap`` runs for all seeds at once. The update rules::

    SGD             w <- w - eta g
    momentum        v <- gamma v + g,  w <- w - eta v                    (gamma = 0.9)
    Nesterov        w <- w - eta (gamma v + g), with v as above
    normalized SGD  w <- w - eta g / ||g||                               (direction only)
    Adagrad         G <- G + g^2,  w <- w - eta g / sqrt(G)
    RMSProp         s <- rho s + (1 - rho) g^2,  w <- w - eta g / sqrt(s)
    Adam            RMSProp's scaling of a momentum average, with bias corrections
    NAdam           Adam with a Nesterov (look-ahead) momentum average
    RAdam           momentum SGD while Adam's variance estimate is unreliable, then Adam, rectified
    AMSGrad         Adam whose denominator is the running maximum (never shrinks)
    Adamax          Adam with the infinity norm max(b2 u, |g|) in place of sqrt(v)
    AdaBelief       Adam with the variance of g - m (the "belief") in place of g^2
    Lion            w <- w - eta sign(b1 m + (1 - b1) g): every coordinate moves by eta
    LAMB            Adam's step rescaled per layer to eta ||w|| (the trust ratio)
    LARS            momentum SGD whose per-layer step is eta * 0.001 ||w|| / ||g|| g
    Lookahead       5 fast Adam steps, then the slow weights move halfway to the fast ones

The learning rates are typical for each method (the adaptive ones take much smaller steps, Lion's
are 3-10x smaller than Adam's, LAMB's and LARS' are relative to the weights' norms); no weight
decay anywhere. For Lookahead the evaluated params are the training loop's (the fast weights,
synchronized with the slow ones every 5 steps).

    python examples/optimizers.py [--quick] [--out DIR] [--seeds N] [--epochs N]
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np
from _common import fit_run, load_split, parser  # examples/_common.py, next to this file

from functrain import layers, optim, plotting, train
from functrain.typing import Array, PyTree

OPTIMIZERS: dict[str, optim.TransformationLike] = {
    "SGD lr=0.05": optim.sgd(0.05),
    "momentum 0.9 lr=0.05": optim.momentum(0.05, 0.9),
    "Nesterov 0.9 lr=0.05": optim.momentum(0.05, 0.9, nesterov=True),
    "normalized SGD lr=0.05": optim.normalized_sgd(0.05),
    "Adagrad lr=0.05": optim.adagrad(0.05),
    "RMSProp lr=1e-3": optim.rmsprop(1e-3),
    "Adam lr=1e-3": optim.adam(1e-3),
    "NAdam lr=1e-3": optim.nadam(1e-3),
    "RAdam lr=1e-3": optim.radam(1e-3),
    "AMSGrad lr=1e-3": optim.amsgrad(1e-3),
    "Adamax lr=2e-3": optim.adamax(2e-3),
    "AdaBelief lr=1e-3": optim.adabelief(1e-3),
    "Lion lr=3e-4": optim.lion(3e-4, weight_decay=0.0),
    "LAMB lr=1e-2": optim.lamb(1e-2),
    "LARS lr=1": optim.lars(1.0),
    "Lookahead(Adam) k=5": optim.lookahead(optim.adam(1e-3), 5, 0.5),
}


def main(argv: list[str] | None = None) -> None:
    """Train the MLP with every optimizer; print a table and plot the curves."""
    args = parser(__doc__, seeds=3, epochs=20).parse_args(argv)
    n_seeds, epochs = (2, 2) if args.quick else (args.seeds, args.epochs)

    train_xy, test_xy, _ = load_split()
    model = layers.serial(layers.Dense(64), layers.Relu, layers.Dense(64), layers.Relu, layers.Dense(10))
    eval_step = train.make_eval_step(train.classifier_loss(model.apply, train=False))
    init_keys, fit_keys = jax.random.split(jax.random.key(1), (2, n_seeds))
    initial = jax.jit(jax.vmap(lambda k: model.init(k, (-1, 64))[:2]))(init_keys)  # (params, state) per seed

    loss: dict[str, np.ndarray[Any, Any]] = {}
    accuracy: dict[str, np.ndarray[Any, Any]] = {}
    print(f"MLP 64-64 on digits, batch 32, {epochs} epochs, {n_seeds} seeds (mean ± std)")
    print(f"{'optimizer':<26}{'train loss, epoch 1':<22}{'train loss, last':<20}{'test accuracy, last'}")
    for name, opt in OPTIMIZERS.items():
        step = train.make_train_step(train.classifier_loss(model.apply, train=True), opt)

        def run(start: tuple[PyTree, PyTree], key: Array, opt: optim.TransformationLike = opt,
                step: train.TrainStep = step) -> train.EpochMetrics:
            _, metrics = fit_run(step, train.init_train_state(*start, opt), train_xy, key, epochs=epochs,
                                 eval_step=eval_step, val_data=test_xy, eval_batch_size=512)
            return metrics

        metrics = jax.jit(jax.vmap(run))(initial, fit_keys)
        loss[name], accuracy[name] = np.asarray(metrics.train["loss"]), np.asarray(metrics.val["accuracy"])
        tl, acc = loss[name], accuracy[name]
        print(f"{name:<26}{f'{tl[:, 0].mean():.4f} ± {tl[:, 0].std():.4f}':<22}"
              f"{f'{tl[:, -1].mean():.4f} ± {tl[:, -1].std():.4f}':<20}"
              f"{acc[:, -1].mean():.3f} ± {acc[:, -1].std():.3f}")

    args.out.mkdir(parents=True, exist_ok=True)
    _, (left, right) = plotting.panels(1, 2, width=5.5, height=4.6)
    plotting.plot_curves(loss, title="Training loss", ylabel="cross-entropy loss", log_y=True, ax=left)
    plotting.plot_curves(accuracy, title="Test accuracy", ylabel="test accuracy", ax=right,
                         path=args.out / "optimizers.png")


if __name__ == "__main__":
    main()
