"""Batch normalization: the same deep ReLU MLP with and without BatchNorm, and its two modes.

Eight hidden layers ``Dense(64) -> [BatchNorm] -> ReLU`` (batch norm after the weights, before the
activation, as in Ioffe & Szegedy 2015) are trained with plain SGD, seeds vmapped with
``run_seeds``. Without batch norm the signal shrinks layer by layer and training starts slowly;
with it every layer sees normalized inputs from the first step.

Batch norm has two modes. In training (``train=True``) it normalizes with the statistics of the
current batch and updates running averages of them (``BatchNormState(mean, var)``, momentum 0.9);
in evaluation (``train=False``) it uses those running statistics, so a prediction does not depend
on which other examples share its batch. The second table evaluates the trained network both ways.

    python examples/batch_norm.py [--quick] [--out DIR] [--seeds N] [--epochs N] [--lr LR]
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from _common import fit_run, load_split, parser  # examples/_common.py, next to this file

from functrain import layers, optim, plotting, train
from functrain.layers import BatchNormState
from functrain.train.seeds import run_seeds
from functrain.typing import Array, PyTree


def deep_mlp(batch_norm: bool, depth: int = 8, width: int = 64) -> layers.Layer:
    """``depth`` hidden layers ``Dense -> [BatchNorm] -> ReLU``, then ``Dense(10)``."""
    block = [layers.Dense(width), layers.BatchNorm(), layers.Relu] if batch_norm else [
        layers.Dense(width), layers.Relu]
    return layers.serial(*block * depth, layers.Dense(10))


def accuracy(model: layers.Layer, params: PyTree, state: PyTree, x: Array, y: Array, *, train: bool,
             batch_size: int) -> float:
    """Accuracy on ``x`` split into batches of ``batch_size`` (vmapped), in the given mode.

    In training mode each batch is normalized with its own statistics (the returned new running
    statistics are discarded); in evaluation mode the batch size makes no difference.
    """
    n = x.shape[0] // batch_size * batch_size
    batches = x[:n].reshape(-1, batch_size, *x.shape[1:])
    logits, _ = jax.vmap(lambda xb: model.apply(params, state, xb, train=train))(batches)
    return float(jnp.mean(jnp.argmax(logits, -1) == y[:n].reshape(-1, batch_size)))


def main(argv: list[str] | None = None) -> None:
    """Train with and without batch norm; compare curves and the two batch-norm modes."""
    p = parser(__doc__, seeds=3, epochs=10)
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--depth", type=int, default=8, help="hidden layers")
    args = p.parse_args(argv)
    n_seeds, epochs, depth = (2, 2, 3) if args.quick else (args.seeds, args.epochs, args.depth)

    split = load_split()
    train_xy, (x_test, y_test) = split.train, split.test
    opt = optim.sgd(args.lr)
    keys = jax.random.split(jax.random.key(1), n_seeds)

    curves: dict[str, np.ndarray[Any, Any]] = {}
    finals: dict[str, Any] = {}
    print(f"{depth} x 64 ReLU MLP, SGD lr={args.lr}, {epochs} epochs, {n_seeds} seeds (mean ± std)")
    print(f"{'model':<18}{'test acc, epoch 1':<20}{'test acc, last':<18}{'train loss, last'}")
    for name, use_bn in [("no batch norm", False), ("with batch norm", True)]:
        model = deep_mlp(use_bn, depth)
        step = train.make_train_step(train.classifier_loss(model.apply, train=True), opt)
        eval_step = train.make_eval_step(train.classifier_loss(model.apply, train=False))

        def run(key: Array, model: layers.Layer = model, step: train.TrainStep = step,
                eval_step: train.EvalStep = eval_step) -> tuple[tuple[PyTree, PyTree], train.EpochMetrics]:
            k_init, k_fit = jax.random.split(key)
            params, model_state, _ = model.init(k_init, (-1, 64))
            state, metrics = fit_run(step, train.init_train_state(params, model_state, opt), train_xy, k_fit,
                                     epochs=epochs, eval_step=eval_step, val_data=(x_test, y_test))
            return (state.params, state.model_state), metrics

        final, metrics = run_seeds(run, keys).results
        acc, loss = np.asarray(metrics.val["accuracy"]), np.asarray(metrics.train["loss"])
        print(f"{name:<18}{f'{acc[:, 0].mean():.3f} ± {acc[:, 0].std():.3f}':<20}"
              f"{f'{acc[:, -1].mean():.3f} ± {acc[:, -1].std():.3f}':<18}{loss[:, -1].mean():.4f}")
        curves[name] = acc
        finals[name] = (model, final)

    # The trained batch-norm network (first seed) in its two modes.
    model, final = finals["with batch norm"]
    params, state = jax.tree_util.tree_map(lambda a: a[0], final)
    first_bn: BatchNormState = state[1]
    print(f"\nfirst BatchNorm layer's running statistics after training: mean in "
          f"[{float(first_bn.mean.min()):.2f}, {float(first_bn.mean.max()):.2f}], "
          f"var in [{float(first_bn.var.min()):.2f}, {float(first_bn.var.max()):.2f}]")
    print(f"{'evaluated with':<52}{'test accuracy'}")
    for label, mode, batch_size in [("train=False: running statistics", False, x_test.shape[0]),
                                    ("train=True: statistics of all test digits at once", True, x_test.shape[0]),
                                    ("train=True: statistics of batches of 4 test digits", True, 4)]:
        mode_accuracy = accuracy(model, params, state, x_test, y_test, train=mode, batch_size=batch_size)
        print(f"{label:<52}{mode_accuracy:.3f}")

    args.out.mkdir(parents=True, exist_ok=True)
    plotting.plot_curves(curves, title=f"Batch normalization ({depth} x 64 ReLU MLP, SGD lr={args.lr})",
                         ylabel="test accuracy", path=args.out / "batch_norm.png")


if __name__ == "__main__":
    main()
