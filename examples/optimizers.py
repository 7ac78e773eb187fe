"""Optimizers compared: SGD, momentum, Nesterov, Adagrad, RMSProp, Adam and normalized SGD on one network.

Every optimizer trains the same MLP from the same initial weights: one set per seed, drawn once
and passed to each optimizer's training program, which ``jax.vmap`` runs for all seeds at once.
The update rules::

    SGD             w <- w - eta g
    momentum        v <- gamma v + g,  w <- w - eta v                    (gamma = 0.9)
    Nesterov        w <- w - eta (gamma v + g), with v as above
    normalized SGD  w <- w - eta g / ||g||                               (direction only)
    Adagrad         G <- G + g^2,  w <- w - eta g / sqrt(G)
    RMSProp         s <- rho s + (1 - rho) g^2,  w <- w - eta g / sqrt(s)
    Adam            RMSProp's scaling of a momentum average, with bias corrections

The learning rates are typical for each method (the adaptive ones take much smaller steps).

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
