"""The lesson's convolutional network on the 8x8 digits, against an MLP with the same budget.

    Conv2D 32 3x3 -> ReLU -> MaxPool 2 -> Conv2D 64 3x3 -> ReLU -> MaxPool 2 -> Flatten -> Dropout -> Dense 10

Built with functrain's combinators (``serial`` of ``Layer`` values). A convolution applies the same
small filter at every position, so it needs fewer examples to learn a stroke wherever it appears;
an MLP 64-128-10 has to learn each position separately. Both train with the budget shared by the
three architecture examples (``convnet.py``, ``resnet.py``, ``inception.py``): Adam with a cosine
decay from 3e-3 to 0 over 10 epochs of batches of 32 on the 1347 training digits, 3 seeds trained
at once (``jax.vmap``), scored on the 450 test digits (the split of every example). By the last
epoch every network has converged (its accuracy no longer moves), so the comparison is of
architectures, not of training speed.

    python examples/convnet.py [--quick] [--seeds N] [--epochs N]
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import numpy as np
from _common import fit_run, jit, load_split, mean_std, parse_args, parser, verdict

from functrain import optim, train
from functrain.layers import Conv2D, Dense, Dropout, Flatten, Layer, MaxPool, Relu, serial
from functrain.optim import schedules
from functrain.typing import Array

LR, EPOCHS, SEEDS, BATCH = 3e-3, 10, 3, 32  # the shared budget of the architecture examples


def build_model(dropout_rate: float | Array = 0.5) -> Layer:
    """The lesson's network; ``SAME`` padding keeps 8x8 digits at 8 -> 4 -> 2 pixels."""
    return serial(
        Conv2D(32, (3, 3)), Relu, MaxPool(2),
        Conv2D(64, (3, 3)), Relu, MaxPool(2),
        Flatten, Dropout(dropout_rate), Dense(10),
    )


def mlp_baseline() -> Layer:
    """An MLP 64-128-10 on the flattened image: the reference of the architecture examples."""
    return serial(Flatten, Dense(128), Relu, Dense(10))


def train_models(models: dict[str, Layer], argv: list[str] | None, *, doc: str, claim: str,
                 preface: Callable[[], None] | None = None) -> dict[str, np.ndarray[Any, Any]]:
    """Train each model with the shared budget over seeds; print a table and the verdict.

    Shared by this example, ``resnet.py`` and ``inception.py``. The verdict compares the second
    model (treated) with the first (baseline) by their final test accuracy. ``preface`` runs once
    the arguments are parsed. Returns model name -> test accuracy per epoch, ``(seeds, epochs)``.
    """
    args = parse_args(parser(doc, seeds=SEEDS, epochs=EPOCHS, out=False), argv)
    n_seeds, epochs = (2, 1) if args.quick else (args.seeds, args.epochs)
    if preface is not None:
        preface()
    split = load_split(as_images=True, train_size=256 if args.quick else None)
    steps = epochs * (split.train[0].shape[0] // BATCH)
    opt = optim.adam(schedules.cosine_decay(LR, steps))
    keys = jax.random.split(jax.random.key(1), n_seeds)
    print(f"Adam, cosine decay {LR:g} -> 0 over {epochs} epochs of batches of {BATCH} on {split.train[0].shape[0]} "
          f"digits, {n_seeds} seeds; test accuracy on {split.test[0].shape[0]} digits (mean ± std)")
    print(f"{'model':<36}{'parameters':<12}{'test acc, epoch 1':<20}{'train loss, last':<20}{'test acc, last'}")
    accuracy: dict[str, np.ndarray[Any, Any]] = {}
    shapes: set[tuple[int, ...]] = set()
    for name, model in models.items():
        step = train.make_train_step(train.classifier_loss(model.apply, train=True), opt)
        eval_step = train.make_eval_step(train.classifier_loss(model.apply, train=False))

        def run(key: Array, model: Layer = model, step: train.TrainStep = step,
                eval_step: train.EvalStep = eval_step) -> train.EpochMetrics:
            k_init, k_fit = jax.random.split(key)
            params, state, _ = model.init(k_init, (-1, 8, 8, 1))
            return fit_run(step, train.init_train_state(params, state, opt), split.train, k_fit, epochs=epochs,
                           batch_size=BATCH, eval_step=eval_step, val_data=split.test, eval_batch_size=512)[1]

        params, _, out_shape = model.init(jax.random.key(0), (-1, 8, 8, 1))
        shapes.add(tuple(out_shape))
        n_params = sum(leaf.size for leaf in jax.tree_util.tree_leaves(params))
        m = jax.device_get(jit(jax.vmap(run))(keys))
        acc = np.asarray(m.val["accuracy"])
        accuracy[name] = acc
        print(f"{name:<36}{n_params:<12}{mean_std(acc[:, 0]):<20}{mean_std(m.train['loss'][:, -1], 4):<20}"
              f"{mean_std(acc[:, -1])}")
    print(f"every model maps input {(-1, 8, 8, 1)} -> output {' or '.join(map(str, sorted(shapes)))}")
    baseline, treated = list(accuracy.values())[:2]
    print(verdict(baseline[:, -1], treated[:, -1], claim=claim).line)
    return accuracy


def main(argv: list[str] | None = None) -> None:
    """Train the lesson's convnet and the MLP baseline; print the table and the verdict."""
    train_models({"MLP 64-128-10 (baseline)": mlp_baseline(), "lesson's convnet (dropout 0.5)": build_model()},
                 argv, doc=__doc__ or "", claim="the convnet beats an MLP on the digit images")


if __name__ == "__main__":
    main()
