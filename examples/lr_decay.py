"""Learning-rate decay: constant vs x0.98 per epoch vs cosine vs one-cycle, on the same network.

A schedule maps the step number to a learning rate; every functrain optimizer accepts one in
place of a number (``optim.sgd(schedule)``). Compared, for ``E`` epochs of ``S`` steps:

* constant ``eta``;
* the lesson's exponential decay, ``eta * 0.98^epoch``: ``exponential_decay(eta, 0.98, S,
  staircase=True)`` multiplies by 0.98 after every epoch;
* cosine decay from ``eta`` to 0 over ``E * S`` steps (Loshchilov & Hutter 2017);
* one-cycle: up from ``eta / 25`` to ``eta`` over the first 30% of the steps, then down to almost 0
  (Smith & Topin 2017).

The idea: a large step size early makes fast progress, a small one late lets the weights settle.
Every schedule starts from the same weights (one set per seed), seeds vmapped; ``plot_schedule``
draws the four schedules. On the small, easy digits set the four end close together (compare
the spread over seeds before reading much into the differences); one-cycle's warm-up is slow at
first, and the schedules that reach ~0 stop improving the training loss early.

    python examples/lr_decay.py [--quick] [--out DIR] [--seeds N] [--epochs N] [--lr LR]
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np
from _common import fit_run, load_split, parser  # examples/_common.py, next to this file

from functrain import layers, optim, plotting, train
from functrain.optim import schedules
from functrain.typing import Array, PyTree, Schedule


def main(argv: list[str] | None = None) -> None:
    """Train with each schedule; print the table, plot the schedules and the curves."""
    p = parser(__doc__, seeds=3, epochs=30)
    p.add_argument("--lr", type=float, default=0.1, help="initial (one-cycle: peak) learning rate")
    args = p.parse_args(argv)
    n_seeds, epochs = (2, 2) if args.quick else (args.seeds, args.epochs)

    train_xy, test_xy, _ = load_split()
    batch_size = 32
    steps_per_epoch = train_xy[0].shape[0] // batch_size  # fit_scan drops the last partial batch
    total = epochs * steps_per_epoch
    lr = args.lr
    schedule_set: dict[str, Schedule] = {
        f"constant {lr:g}": schedules.constant(lr),
        "x0.98 per epoch": schedules.exponential_decay(lr, 0.98, steps_per_epoch, staircase=True),
        "cosine decay": schedules.cosine_decay(lr, total),
        "one-cycle": schedules.one_cycle(total, lr),
    }

    model = layers.serial(layers.Dense(64), layers.Relu, layers.Dense(64), layers.Relu, layers.Dense(10))
    eval_step = train.make_eval_step(train.classifier_loss(model.apply, train=False))
    init_keys, fit_keys = jax.random.split(jax.random.key(1), (2, n_seeds))
    initial = jax.jit(jax.vmap(lambda k: model.init(k, (-1, 64))[:2]))(init_keys)  # (params, state) per seed

    loss: dict[str, np.ndarray[Any, Any]] = {}
    accuracy: dict[str, np.ndarray[Any, Any]] = {}
    print(f"MLP 64-64, SGD, {epochs} epochs of {steps_per_epoch} steps, {n_seeds} seeds (mean ± std)")
    print(f"{'schedule':<18}{'final lr':<12}{'train loss, last':<22}{'test acc, last':<18}{'best test acc'}")
    for name, schedule in schedule_set.items():
        opt = optim.sgd(schedule)
        step = train.make_train_step(train.classifier_loss(model.apply, train=True), opt)

        def run(start: tuple[PyTree, PyTree], key: Array, opt: optim.TransformationLike = opt,
                step: train.TrainStep = step) -> train.EpochMetrics:
            _, metrics = fit_run(step, train.init_train_state(*start, opt), train_xy, key, epochs=epochs,
                                 batch_size=batch_size, eval_step=eval_step, val_data=test_xy, eval_batch_size=512)
            return metrics

        metrics = jax.jit(jax.vmap(run))(initial, fit_keys)
        loss[name], accuracy[name] = np.asarray(metrics.train["loss"]), np.asarray(metrics.val["accuracy"])
        tl, acc, best = loss[name], accuracy[name], accuracy[name].max(axis=1)
        print(f"{name:<18}{float(schedule(total - 1)):<12.3g}"
              f"{f'{tl[:, -1].mean():.4f} ± {tl[:, -1].std():.4f}':<22}"
              f"{f'{acc[:, -1].mean():.3f} ± {acc[:, -1].std():.3f}':<18}{best.mean():.3f} ± {best.std():.3f}")

    args.out.mkdir(parents=True, exist_ok=True)
    plotting.plot_schedule(schedule_set, total,
                           title=f"Learning-rate schedules ({epochs} epochs x {steps_per_epoch} steps)",
                           path=args.out / "lr_decay_schedules.png")
    _, (left, right) = plotting.panels(1, 2, width=5.5)
    plotting.plot_curves(loss, title="Training loss under each schedule", ylabel="cross-entropy loss (epoch mean)",
                         log_y=True, ax=left)
    plotting.plot_curves(accuracy, title="Test accuracy under each schedule", ylabel="test accuracy", ax=right,
                         path=args.out / "lr_decay_curves.png")


if __name__ == "__main__":
    main()
