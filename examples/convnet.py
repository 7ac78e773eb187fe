"""The lesson's convolutional network on the 8x8 digits, built with functrain's combinators.

    Conv2D 32 3x3 -> ReLU -> MaxPool 2 -> Conv2D 64 3x3 -> ReLU -> MaxPool 2 -> Flatten -> Dropout -> Dense 10

Trains with plain minibatch SGD in a jitted step (dropout active, its key split per step) and reports
the test accuracy in evaluation mode (dropout off, no key needed).

    python examples/convnet.py            # 400 steps
    python examples/convnet.py --quick    # a few steps, for smoke tests
"""

from __future__ import annotations

import argparse
from typing import Any

import jax
import jax.numpy as jnp

from functrain.data.datasets import load_digits
from functrain.layers import Conv2D, Dense, Dropout, Flatten, Layer, MaxPool, Relu, log_softmax, serial
from functrain.typing import Array, PRNGKey


def build_model(dropout_rate: float = 0.5) -> Layer:
    """The lesson's network; ``SAME`` padding keeps 8x8 digits at 8 -> 4 -> 2 pixels."""
    return serial(
        Conv2D(32, (3, 3)), Relu, MaxPool(2),
        Conv2D(64, (3, 3)), Relu, MaxPool(2),
        Flatten, Dropout(dropout_rate), Dense(10),
    )


def main(argv: list[str] | None = None) -> None:
    """Train the network on the digits and print shapes, losses and the test accuracy."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a handful of steps (smoke test)")
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    steps = 5 if args.quick else args.steps

    digits = load_digits(as_images=True)
    x, y = jnp.asarray(digits.x) / 16.0, jnp.asarray(digits.y)
    x_train, y_train, x_test, y_test = x[:1500], y[:1500], x[1500:], y[1500:]

    model = build_model()
    k_init, k_train = jax.random.split(jax.random.key(args.seed))
    params, state, out_shape = model.init(k_init, (-1, *x.shape[1:]))
    n_params = sum(leaf.size for leaf in jax.tree_util.tree_leaves(params))
    print(f"input {tuple(x_train.shape)} -> output {out_shape}; {n_params} parameters")

    @jax.jit
    def evaluate(p: Any, s: Any) -> tuple[Array, Array]:
        logits, _ = model.apply(p, s, x_test, train=False)  # evaluation mode: deterministic, no key
        return logits, jnp.mean(jnp.argmax(logits, axis=-1) == y_test)

    logits, accuracy = evaluate(params, state)
    print(f"forward pass on the test set: logits {tuple(logits.shape)}, accuracy {float(accuracy):.3f}")

    def loss_fn(p: Any, s: Any, xb: Array, yb: Array, key: PRNGKey) -> tuple[Array, Any]:
        out, new_s = model.apply(p, s, xb, key=key, train=True)
        return -jnp.mean(jnp.take_along_axis(log_softmax(out), yb[:, None], axis=1)), new_s

    @jax.jit
    def step(p: Any, s: Any, key: PRNGKey) -> tuple[Any, Any, Array]:
        k_batch, k_drop = jax.random.split(key)
        idx = jax.random.randint(k_batch, (args.batch_size,), 0, x_train.shape[0])
        (loss, s), grads = jax.value_and_grad(loss_fn, has_aux=True)(p, s, x_train[idx], y_train[idx], k_drop)
        return jax.tree_util.tree_map(lambda w, g: w - args.lr * g, p, grads), s, loss

    for i, key in enumerate(jax.random.split(k_train, steps)):
        params, state, loss = step(params, state, key)
        if i == 0 or (i + 1) % max(1, steps // 5) == 0:
            print(f"step {i + 1:4d}  loss {float(loss):.4f}")

    _, accuracy = evaluate(params, state)
    print(f"test accuracy {float(accuracy):.3f} on {x_test.shape[0]} digits")


if __name__ == "__main__":
    main()
