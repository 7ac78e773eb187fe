"""Dropout: the lesson's experiment, rates 0, 0.2, 0.5 and 0.8 on the convolutional net, on digits.

The network is the lesson's (built by ``examples/convnet.py``)::

    Conv2D 32 3x3 -> ReLU -> MaxPool 2 -> Conv2D 64 3x3 -> ReLU -> MaxPool 2 -> Flatten -> Dropout -> Dense 10

trained on the 8x8 digits as ``(n, 8, 8, 1)`` images with Adam. During training (``train=True``)
each unit before the last layer is dropped with probability ``rate`` and the kept ones are scaled
by ``1 / (1 - rate)`` (inverted dropout); evaluation (``train=False``) uses every unit. Every rate
starts from the same weights (dropout has no parameters; one set per seed, drawn once), and the
seeds of one rate train together under ``jax.vmap``. ``Dropout(rate)`` takes a Python float
(checked when the layer is built), so each rate is its own compiled program; the functional
``layers.dropout(key, x, rate=..., train=True)`` also accepts a traced rate for a vmapped sweep.

    python examples/dropout.py [--quick] [--out DIR] [--seeds N] [--epochs N]
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import jax
import numpy as np
from convnet import build_model  # examples/convnet.py, next to this file
from matplotlib.figure import Figure

from functrain import data, optim, plotting, train
from functrain.typing import Array, PyTree

RATES = (0.0, 0.2, 0.5, 0.8)


def main(argv: list[str] | None = None) -> None:
    """Train the convnet with each dropout rate over several seeds; print and plot the curves."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny run (smoke test)")
    parser.add_argument("--out", type=Path, default=Path("examples/out"), help="directory for the PNG")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=15)
    args = parser.parse_args(argv)
    n_seeds, epochs = (2, 2) if args.quick else (args.seeds, args.epochs)

    digits = data.load_digits(as_images=True)
    split = data.split_dataset(jax.random.key(0), digits, test_fraction=0.25)
    if args.quick:  # a few hundred images keep the smoke test fast
        split = split._replace(train=split.train._replace(x=split.train.x[:256], y=split.train.y[:256]))
    mm = data.fit_min_max(split.train.x, axis=(0, 1, 2))  # one min and max for the grey channel
    train_xy = (data.min_max_scale(mm, split.train.x), split.train.y)
    test_xy = (data.min_max_scale(mm, split.test.x), split.test.y)
    opt = optim.adam(1e-3)
    init_keys, fit_keys = jax.random.split(jax.random.key(1), (2, n_seeds))
    initial = jax.jit(jax.vmap(lambda k: build_model(0.0).init(k, (-1, 8, 8, 1))[:2]))(init_keys)

    accuracy: dict[str, np.ndarray[Any, Any]] = {}
    loss: dict[str, np.ndarray[Any, Any]] = {}
    print(f"Lesson's convnet on digits, Adam lr=1e-3, {epochs} epochs, {n_seeds} seeds (mean ± std)")
    print(f"{'dropout rate':<14}{'train loss, last':<20}{'test acc, epoch 1':<20}{'test acc, last':<18}"
          "best test acc")
    for rate in RATES:
        model = build_model(rate)
        step = train.make_train_step(train.classifier_loss(model.apply, train=True), opt)
        eval_step = train.make_eval_step(train.classifier_loss(model.apply, train=False))

        def run(start: tuple[PyTree, PyTree], key: Array, step: train.TrainStep = step,
                eval_step: train.EvalStep = eval_step) -> train.EpochMetrics:
            fit_state = train.init_fit_state(train.init_train_state(*start, opt))
            _, metrics = train.fit_scan(step, fit_state, train_xy, key, epochs=epochs, batch_size=32,
                                        eval_step=eval_step, val_data=test_xy, eval_batch_size=512)
            return metrics

        metrics = jax.jit(jax.vmap(run))(initial, fit_keys)
        label = f"rate {rate}"
        acc, tl = np.asarray(metrics.val["accuracy"]), np.asarray(metrics.train["loss"])
        accuracy[label], loss[label] = acc, tl
        best = acc.max(axis=1)
        print(f"{rate:<14}{tl[:, -1].mean():<20.4f}{f'{acc[:, 0].mean():.3f} ± {acc[:, 0].std():.3f}':<20}"
              f"{f'{acc[:, -1].mean():.3f} ± {acc[:, -1].std():.3f}':<18}{best.mean():.3f} ± {best.std():.3f}")

    args.out.mkdir(parents=True, exist_ok=True)
    fig = Figure(figsize=(11.0, 4.4), layout="constrained")
    left, right = fig.subplots(1, 2)
    plotting.plot_curves(accuracy, title="Test accuracy (dropout off at evaluation)", ylabel="test accuracy",
                         ax=left)
    plotting.plot_curves(loss, title="Training loss (with dropout active)", ylabel="cross-entropy loss",
                         log_y=True, ax=right, path=args.out / "dropout.png")


if __name__ == "__main__":
    main()
