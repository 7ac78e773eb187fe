"""A small Inception-style network on the 8x8 digits: parallel branches joined on the channel axis.

Each Inception block (Szegedy et al., "Going Deeper with Convolutions", CVPR 2015) runs four
branches on the same input -- a 1x1 convolution; 1x1 then 3x3; 1x1 then 5x5; 3x3 max pooling then
1x1 -- and concatenates their channels: ``serial(parallel(b1, b2, b3, b4), Concatenate)``.

    python examples/inception.py            # 300 steps
    python examples/inception.py --quick    # a few steps, for smoke tests
"""

from __future__ import annotations

import argparse
from typing import Any

import jax
import jax.numpy as jnp

from functrain.data.datasets import load_digits
from functrain.initializers import he_normal
from functrain.layers import (
    Concatenate,
    Conv2D,
    Dense,
    GlobalAvgPool,
    Layer,
    MaxPool,
    Relu,
    log_softmax,
    parallel,
    serial,
)
from functrain.typing import Array, PRNGKey


def conv_relu(channels: int, size: int) -> Layer:
    """A ``SAME`` convolution followed by ReLU, He-initialized (``N(0, 2/n_in)``, suited to ReLU)."""
    return serial(Conv2D(channels, size, w_init=he_normal()), Relu)


def inception_block(c1: int, c3_reduce: int, c3: int, c5_reduce: int, c5: int, pool_proj: int) -> Layer:
    """Four branches on one input, concatenated: ``c1 + c3 + c5 + pool_proj`` output channels."""
    return serial(
        parallel(
            conv_relu(c1, 1),
            serial(conv_relu(c3_reduce, 1), conv_relu(c3, 3)),
            serial(conv_relu(c5_reduce, 1), conv_relu(c5, 5)),
            serial(MaxPool(3, stride=1, padding="SAME"), conv_relu(pool_proj, 1)),
        ),
        Concatenate,
    )


def build_model() -> Layer:
    """Stem, two Inception blocks around a pooling step, global average pooling, a classifier."""
    return serial(
        conv_relu(16, 3),
        inception_block(8, 8, 16, 4, 8, 8),    # 8 + 16 + 8 + 8 = 40 channels at 8x8
        MaxPool(2),
        inception_block(16, 16, 24, 4, 8, 8),  # 16 + 24 + 8 + 8 = 56 channels at 4x4
        GlobalAvgPool, Dense(10),
    )


def main(argv: list[str] | None = None) -> None:
    """Train the network on the digits and print shapes, losses and the test accuracy."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a handful of steps (smoke test)")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    steps = 3 if args.quick else args.steps

    digits = load_digits(as_images=True)
    x, y = jnp.asarray(digits.x) / 16.0, jnp.asarray(digits.y)
    x_train, y_train, x_test, y_test = x[:1500], y[:1500], x[1500:], y[1500:]

    model = build_model()
    k_init, k_train = jax.random.split(jax.random.key(args.seed))
    params, state, out_shape = model.init(k_init, (-1, 8, 8, 1))
    n_params = sum(leaf.size for leaf in jax.tree_util.tree_leaves(params))
    print(f"input (-1, 8, 8, 1) -> output {out_shape}; {n_params} parameters")
    block = inception_block(8, 8, 16, 4, 8, 8)
    _, _, block_shape = block.init(k_init, (-1, 8, 8, 16))
    print(f"first inception block: (-1, 8, 8, 16) -> {block_shape}")

    @jax.jit
    def evaluate(p: Any) -> tuple[Array, Array]:
        logits, _ = model.apply(p, state, x_test, train=False)
        return logits, jnp.mean(jnp.argmax(logits, axis=-1) == y_test)

    logits, accuracy = evaluate(params)
    print(f"forward pass on the test set: logits {tuple(logits.shape)}, accuracy {float(accuracy):.3f}")

    def loss_fn(p: Any, xb: Array, yb: Array) -> Array:
        out, _ = model.apply(p, state, xb, train=True)  # no batch norm or dropout: state stays ()
        return -jnp.mean(jnp.take_along_axis(log_softmax(out), yb[:, None], axis=1))

    @jax.jit
    def step(p: Any, key: PRNGKey) -> tuple[Any, Array]:
        idx = jax.random.randint(key, (args.batch_size,), 0, x_train.shape[0])
        loss, grads = jax.value_and_grad(loss_fn)(p, x_train[idx], y_train[idx])
        return jax.tree_util.tree_map(lambda w, g: w - args.lr * g, p, grads), loss

    for i, key in enumerate(jax.random.split(k_train, steps)):
        params, loss = step(params, key)
        if i == 0 or (i + 1) % max(1, steps // 5) == 0:
            print(f"step {i + 1:4d}  loss {float(loss):.4f}")

    _, accuracy = evaluate(params)
    print(f"test accuracy {float(accuracy):.3f} on {x_test.shape[0]} digits")


if __name__ == "__main__":
    main()
