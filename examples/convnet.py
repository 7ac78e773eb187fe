"""The lesson's convolutional network on the 8x8 digits, built with functrain's combinators.

    Conv2D 32 3x3 -> ReLU -> MaxPool 2 -> Conv2D 64 3x3 -> ReLU -> MaxPool 2 -> Flatten -> Dropout -> Dense 10

Trains with functrain's SGD (``make_train_step`` + ``optim.sgd``) in a jitted step (dropout active, its key split per step) and reports
the test accuracy in evaluation mode (dropout off, no key needed).

    python examples/convnet.py            # 400 steps
    python examples/convnet.py --quick    # a few steps, for smoke tests
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
from _common import parser  # examples/_common.py, next to this file

from functrain import optim, train
from functrain.data.datasets import load_digits
from functrain.layers import Conv2D, Dense, Dropout, Flatten, Layer, MaxPool, Relu, serial
from functrain.typing import Array


def build_model(dropout_rate: float | Array = 0.5) -> Layer:
    """The lesson's network; ``SAME`` padding keeps 8x8 digits at 8 -> 4 -> 2 pixels.

    ``dropout_rate`` may be a traced scalar (a sweep over rates in one program, ``dropout.py``).
    """
    return serial(
        Conv2D(32, (3, 3)), Relu, MaxPool(2),
        Conv2D(64, (3, 3)), Relu, MaxPool(2),
        Flatten, Dropout(dropout_rate), Dense(10),
    )


def train_on_digits(model: Layer, argv: list[str] | None, *, steps: int, lr: float, doc: str,
                    preface: Callable[[], None] | None = None) -> None:
    """Train ``model`` on the 8x8 digits with functrain's SGD step; print shapes, losses, accuracy.

    Shared by this example, ``resnet.py`` and ``inception.py``: 1500 digits for training, the rest
    for testing; ``train.classifier_loss`` in training mode for the steps (dropout on, batch
    statistics), in evaluation mode for the test set (deterministic, no key needed). ``preface``
    runs once the arguments are parsed (a script's own first lines).
    """
    p = parser(doc, out=False)
    p.add_argument("--steps", type=int, default=steps)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=lr)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    n_steps = 3 if args.quick else args.steps
    if preface is not None:
        preface()

    digits = load_digits(as_images=True)
    x, y = jnp.asarray(digits.x) / 16.0, jnp.asarray(digits.y)
    x_train, y_train, x_test, y_test = x[:1500], y[:1500], x[1500:], y[1500:]

    k_init, k_train = jax.random.split(jax.random.key(args.seed))
    params, model_state, out_shape = model.init(k_init, (-1, *x.shape[1:]))
    n_params = sum(leaf.size for leaf in jax.tree_util.tree_leaves(params))
    print(f"input {(-1, *x.shape[1:])} -> output {out_shape}; {n_params} parameters")

    logits, _ = jax.jit(lambda p, s: model.apply(p, s, x_test, train=False))(params, model_state)
    print(f"forward pass on the test set: logits {tuple(logits.shape)}")

    opt = optim.sgd(args.lr)
    state = train.init_train_state(params, model_state, opt)
    step = jax.jit(train.make_train_step(train.classifier_loss(model.apply, train=True), opt))
    eval_step = train.make_eval_step(train.classifier_loss(model.apply, train=False))
    for i, key in enumerate(jax.random.split(k_train, n_steps)):
        k_batch, k_step = jax.random.split(key)
        idx = jax.random.randint(k_batch, (args.batch_size,), 0, x_train.shape[0])
        state, metrics = step(state, (x_train[idx], y_train[idx]), k_step)
        if i == 0 or (i + 1) % max(1, n_steps // 5) == 0:
            print(f"step {i + 1:4d}  loss {float(metrics['loss']):.4f}")

    accuracy = train.evaluate(eval_step, state, (x_test, y_test), batch_size=x_test.shape[0])["accuracy"]
    print(f"test accuracy {float(accuracy):.3f} on {x_test.shape[0]} digits")


def main(argv: list[str] | None = None) -> None:
    """Train the network on the digits and print shapes, losses and the test accuracy."""
    train_on_digits(build_model(), argv, steps=400, lr=0.05, doc=__doc__ or "")

if __name__ == "__main__":
    main()
