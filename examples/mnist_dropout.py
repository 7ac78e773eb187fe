"""The lesson notebook's dropout experiment on real MNIST: rates 0, 0.2, 0.5, 0.8, 5 epochs, batch 64, Adam.

The network is the lesson's convolutional net (``examples/convnet.py``)::

    Conv2D 32 3x3 -> ReLU -> MaxPool 2 -> Conv2D 64 3x3 -> ReLU -> MaxPool 2 -> Flatten -> Dropout -> Dense 10

on the 28x28 MNIST images (pixels scaled to [0, 1]), trained with Adam (lr 1e-3) in batches of 64
for 5 epochs, once per dropout rate, every rate and seed in one compiled program (the rate is a
traced scalar, ``jax.vmap`` over rates of ``jax.vmap`` over seeds). The test accuracy after each
epoch is printed per rate (evaluation: dropout off).

MNIST is downloaded once (``data.fetch_mnist``: four IDX files from a list of mirrors, each checked
by SHA-256) into ``--data-dir`` (default: functrain's cache directory, see
``data.cache_directory()``). ``--data fashion`` runs Fashion-MNIST instead. With ``--quick``, or
when the download fails (no network), the script runs on the 8x8 digits that ship with
scikit-learn and says so.

    python examples/mnist_dropout.py [--quick] [--out DIR] [--seeds N] [--epochs N]
                                     [--data mnist|fashion|digits] [--data-dir DIR] [--batch-size N]
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from _common import XY, fit_run, jit, load_split, parser  # examples/_common.py, next to this file
from convnet import build_model  # examples/convnet.py, next to this file

from functrain import data, optim, plotting, train
from functrain.typing import Array, PyTree

RATES = (0.0, 0.2, 0.5, 0.8)


def load_images(kind: str, directory: Path | None, *, quick: bool) -> tuple[XY, XY, str]:
    """``(train, test, name)``: MNIST-format images scaled to [0, 1], or the digits as a fallback."""
    if not quick and kind != "digits":
        try:
            folder = data.fetch_mnist(directory, kind="fashion" if kind == "fashion" else "mnist")
            images = data.load_mnist(folder, as_images=True, name=kind)
            return ((images.train.x / 255.0, images.train.y), (images.test.x / 255.0, images.test.y),
                    "Fashion-MNIST" if kind == "fashion" else "MNIST")
        except data.DownloadError as e:
            print(f"could not download {kind} ({e}); running on the 8x8 digits instead")
    split = load_split(as_images=True, feature_range=(0.0, 1.0), train_size=256 if quick else None)
    return split.train, split.test, "digits (8x8)"


def main(argv: list[str] | None = None) -> None:
    """Train the convnet with each dropout rate; print the per-epoch test accuracy per rate."""
    p = parser(__doc__, seeds=1, epochs=5)
    p.add_argument("--data", choices=("mnist", "fashion", "digits"), default="mnist")
    p.add_argument("--data-dir", type=Path, default=None, help="where the IDX files are (downloaded once)")
    p.add_argument("--batch-size", type=int, default=64)
    args = p.parse_args(argv)
    n_seeds, epochs = (1, 2) if args.quick else (args.seeds, args.epochs)

    train_xy, test_xy, name = load_images(args.data, args.data_dir, quick=args.quick)
    shape = (-1, *train_xy[0].shape[1:])
    opt = optim.adam(1e-3)
    init_keys, fit_keys = jax.random.split(jax.random.key(1), (2, n_seeds))

    def init(key: Array) -> tuple[PyTree, PyTree]:
        return build_model(0.0).init(key, shape)[:2]

    initial = jit(jax.vmap(init))(init_keys)

    def run(start: tuple[PyTree, PyTree], key: Array, rate: Array) -> train.EpochMetrics:
        """One seed at one dropout rate (a traced scalar)."""
        model = build_model(rate)
        step = train.make_train_step(train.classifier_loss(model.apply, train=True), opt)
        eval_step = train.make_eval_step(train.classifier_loss(model.apply, train=False))
        _, metrics = fit_run(step, train.init_train_state(*start, opt), train_xy, key, epochs=epochs,
                             batch_size=args.batch_size, eval_step=eval_step, val_data=test_xy,
                             eval_batch_size=500)
        return metrics

    every_seed = jax.vmap(run, in_axes=(0, 0, None))
    every_rate = jit(jax.vmap(every_seed, in_axes=(None, None, 0)))  # axes (rate, seed, epoch)
    print(f"Lesson's convnet on {name} ({len(train_xy[1])} training images), Adam lr=1e-3, batch "
          f"{args.batch_size}, {epochs} epochs, {n_seeds} seed(s)")
    sweep = every_rate(initial, fit_keys, jnp.asarray(RATES))
    print(f"{'dropout rate':<14}" + "".join(f"{f'epoch {e + 1}':<10}" for e in range(epochs)) + "train loss, last")
    curves: dict[str, np.ndarray[Any, Any]] = {}
    for r, rate in enumerate(RATES):
        acc = np.asarray(sweep.val["accuracy"][r])  # (seeds, epochs)
        curves[f"rate {rate}"] = acc
        loss = float(np.asarray(sweep.train["loss"][r])[:, -1].mean())
        print(f"{rate:<14}" + "".join(f"{acc[:, e].mean():<10.4f}" for e in range(epochs)) + f"{loss:.4f}")
    best = max(RATES, key=lambda rate: float(curves[f"rate {rate}"][:, -1].mean()))
    print(f"best final test accuracy: dropout rate {best}")

    args.out.mkdir(parents=True, exist_ok=True)
    plotting.plot_curves(curves, title=f"Dropout on {name}: test accuracy", ylabel="test accuracy",
                         path=args.out / "mnist_dropout.png")


if __name__ == "__main__":
    main()
