"""Dropout: the lesson's experiment, rates 0, 0.2, 0.5 and 0.8 on the convolutional net, on digits.

The network is the lesson's (built by ``examples/convnet.py``)::

    Conv2D 32 3x3 -> ReLU -> MaxPool 2 -> Conv2D 64 3x3 -> ReLU -> MaxPool 2 -> Flatten -> Dropout -> Dense 10

trained on the 8x8 digits as ``(n, 8, 8, 1)`` images with Adam. During training (``train=True``)
each unit before the last layer is dropped with probability ``rate`` and the kept ones are scaled
by ``1 / (1 - rate)`` (inverted dropout); evaluation (``train=False``) uses every unit. Every rate
starts from the same weights (dropout has no parameters; one set per seed, drawn once).
``Dropout(rate)`` also accepts a traced rate, so the rate is data: one compiled program trains
every rate and every seed at once (``jax.vmap`` over rates of ``jax.vmap`` over seeds).

    python examples/dropout.py [--quick] [--out DIR] [--seeds N] [--epochs N]
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from _common import fit_run, load_split, parser  # examples/_common.py, next to this file
from convnet import build_model  # examples/convnet.py, next to this file

from functrain import optim, plotting, train
from functrain.typing import Array, PyTree

RATES = (0.0, 0.2, 0.5, 0.8)


def main(argv: list[str] | None = None) -> None:
    """Train the convnet with each dropout rate over several seeds; print and plot the curves."""
    args = parser(__doc__, seeds=3, epochs=15).parse_args(argv)
    n_seeds, epochs = (2, 2) if args.quick else (args.seeds, args.epochs)

    # one min and max for the grey channel; a few hundred images keep the smoke test fast
    train_xy, test_xy, _ = load_split(as_images=True, feature_range=(0.0, 1.0),
                                      train_size=256 if args.quick else None)
    opt = optim.adam(1e-3)
    init_keys, fit_keys = jax.random.split(jax.random.key(1), (2, n_seeds))
    initial = jax.jit(jax.vmap(lambda k: build_model(0.0).init(k, (-1, 8, 8, 1))[:2]))(init_keys)

    accuracy: dict[str, np.ndarray[Any, Any]] = {}
    loss: dict[str, np.ndarray[Any, Any]] = {}
    print(f"Lesson's convnet on digits, Adam lr=1e-3, {epochs} epochs, {n_seeds} seeds (mean ± std)")
    print(f"{'dropout rate':<14}{'train loss, last':<20}{'test acc, epoch 1':<20}{'test acc, last':<18}"
          "best test acc")

    def run(start: tuple[PyTree, PyTree], key: Array, rate: Array) -> train.EpochMetrics:
        """One seed at one dropout rate (a traced scalar)."""
        model = build_model(rate)
        step = train.make_train_step(train.classifier_loss(model.apply, train=True), opt)
        eval_step = train.make_eval_step(train.classifier_loss(model.apply, train=False))
        _, metrics = fit_run(step, train.init_train_state(*start, opt), train_xy, key, epochs=epochs,
                             eval_step=eval_step, val_data=test_xy, eval_batch_size=512)
        return metrics

    every_seed = jax.vmap(run, in_axes=(0, 0, None))
    every_rate = jax.jit(jax.vmap(every_seed, in_axes=(None, None, 0)))  # axes (rate, seed, epoch)
    sweep = every_rate(initial, fit_keys, jnp.asarray(RATES))
    for r, rate in enumerate(RATES):
        label = f"rate {rate}"
        acc, tl = np.asarray(sweep.val["accuracy"][r]), np.asarray(sweep.train["loss"][r])
        accuracy[label], loss[label] = acc, tl
        best = acc.max(axis=1)
        print(f"{rate:<14}{tl[:, -1].mean():<20.4f}{f'{acc[:, 0].mean():.3f} ± {acc[:, 0].std():.3f}':<20}"
              f"{f'{acc[:, -1].mean():.3f} ± {acc[:, -1].std():.3f}':<18}{best.mean():.3f} ± {best.std():.3f}")

    args.out.mkdir(parents=True, exist_ok=True)
    _, (left, right) = plotting.panels(1, 2, width=5.5)
    plotting.plot_curves(accuracy, title="Test accuracy (dropout off at evaluation)", ylabel="test accuracy",
                         ax=left)
    plotting.plot_curves(loss, title="Training loss (with dropout active)", ylabel="cross-entropy loss",
                         log_y=True, ax=right, path=args.out / "dropout.png")


if __name__ == "__main__":
    main()
