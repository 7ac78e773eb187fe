"""The learning-rate range test (Smith 2015, fastai's lr finder), many seeds in one program.

``train.lr_find`` trains the MLP from one set of initial weights while the learning rate grows
exponentially from ``1e-4`` to ``100`` over 100 steps, records the smoothed loss, and stops each
test once its loss exceeds 4 times its best. With a batch of keys the tests (here: seeds of the
batch order) run vmapped in one compiled program. It suggests a learning rate where the smoothed
loss falls fastest, and a tenth of the one at the minimum (fastai's two rules). The script then
checks the suggestion the honest way: SGD at fixed learning rates from a grid, a few epochs each
(again one program, the rates vmapped), and where the suggestion sits against the best of them.

    python examples/lr_find.py [--quick] [--out DIR] [--seeds N] [--epochs N] [--optimizer sgd|momentum|adam]
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from _common import jit, load_split, parser  # examples/_common.py, next to this file

from functrain import layers, optim, plotting, train
from functrain.typing import Array, Schedule

OPTIMIZERS: dict[str, Callable[[Schedule | Array], optim.GradientTransformation[Any]]] = {
    "sgd": optim.sgd,
    "momentum": lambda lr: optim.sgd(lr, momentum=0.9),
    "adam": optim.adam,
}
GRID = (0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0)


def build_model() -> layers.Layer:
    """The lesson's MLP on the 64 digit pixels."""
    return layers.serial(layers.Dense(64), layers.Relu, layers.Dense(10))


def main(argv: list[str] | None = None) -> None:
    """Run the range test over seeds, print the suggestions, check them against a grid, plot."""
    p = parser(__doc__, seeds=8, epochs=3)
    p.add_argument("--optimizer", choices=sorted(OPTIMIZERS), default="sgd")
    args = p.parse_args(argv)
    n_seeds, epochs, steps = (2, 1, 40) if args.quick else (args.seeds, args.epochs, 100)
    make_opt = OPTIMIZERS[args.optimizer]

    train_xy, _, _ = load_split()
    model = build_model()
    layers.print_summary(model, (-1, 64))
    params, model_state, _ = model.init(jax.random.key(1), (-1, 64))
    loss_fn = train.classifier_loss(model.apply, train=True)
    keys = jax.random.split(jax.random.key(2), n_seeds)
    found = train.lr_find(loss_fn, make_opt, params, model_state, train_xy, keys, min_lr=1e-4,
                          max_lr=100.0, steps=steps, batch_size=32)
    steep, by_min = np.asarray(found.suggestion), np.asarray(found.min_loss_suggestion)
    print(f"\nrange test, {args.optimizer}, 1e-4 .. 100 over {steps} steps, {n_seeds} seeds in one program")
    print(f"{'seed':<6}{'steps run':<11}{'steepest descent':<18}minimum / 10")
    for i in range(n_seeds):
        print(f"{i:<6}{int(found.steps_run[i]):<11}{steep[i]:<18.3g}{by_min[i]:.3g}")
    suggestion = float(np.nanmedian(steep))
    print(f"suggested learning rate (median over seeds): {suggestion:.3g} (minimum / 10 rule: "
          f"{float(np.nanmedian(by_min)):.3g})")

    def final_loss(lr: Array) -> Array:
        """SGD (or the chosen optimizer) at one fixed rate for a few epochs: the training loss."""
        opt = make_opt(lr)
        step = train.make_train_step(loss_fn, opt, grad_norm=False)
        state = train.init_train_state(params, model_state, opt)
        for k in jax.random.split(jax.random.key(3), epochs):
            state, _ = train.train_epoch(step, state, train_xy, k, batch_size=32)
        eval_step = train.make_eval_step(train.classifier_loss(model.apply, train=False))
        return train.evaluate(eval_step, state, train_xy, batch_size=512)["loss"]

    losses = np.asarray(jit(jax.vmap(final_loss))(jnp.asarray(GRID)))
    best = GRID[int(np.nanargmin(losses))]
    print(f"\nfixed rates, {epochs} epochs each (one program): training loss per learning rate")
    print("  ".join(f"{lr:g}: {loss:.3f}" for lr, loss in zip(GRID, losses)))
    ratio = suggestion / best
    verdict = "within a factor of 10" if 0.1 < ratio < 10 else "NOT within a factor of 10"
    print(f"best fixed rate {best:g}; the suggestion {suggestion:.3g} is {verdict} of it")

    args.out.mkdir(parents=True, exist_ok=True)
    plotting.plot_lr_find(found, title=f"Range test: {args.optimizer} on the digits MLP ({n_seeds} seeds)",
                          path=args.out / "lr_find.png")


if __name__ == "__main__":
    main()
