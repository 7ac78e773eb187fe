"""A small ResNet (residual blocks with batch normalization) on the 8x8 digits.

    stem:   Conv2D 16 3x3 -> BatchNorm -> ReLU
    blocks: [x + (Conv 3x3 -> BN -> ReLU -> Conv 3x3 -> BN)(x)] -> ReLU, twice at 16 channels, then
            once at 32 channels with stride 2 (the shortcut gets a learned strided 1x1 projection)
    head:   GlobalAvgPool -> Dense 10

He et al., "Deep Residual Learning for Image Recognition" (CVPR 2016). The batch-norm running
statistics are model state: they thread through ``serial`` and are returned by every training step.

    python examples/resnet.py            # 300 steps
    python examples/resnet.py --quick    # a few steps, for smoke tests
"""

from __future__ import annotations

import argparse
from typing import Any

import jax
import jax.numpy as jnp

from functrain.data.datasets import load_digits
from functrain.initializers import he_normal
from functrain.layers import BatchNorm, Conv2D, Dense, GlobalAvgPool, Layer, Relu, Residual, log_softmax, serial
from functrain.typing import Array, PRNGKey


def residual_block(channels: int, stride: int = 1) -> Layer:
    """``ReLU(P x + BN(Conv(ReLU(BN(Conv(x))))))``, He-initialized (the convolutions feed ReLUs)."""
    body = serial(
        Conv2D(channels, 3, stride=stride, w_init=he_normal()), BatchNorm(), Relu,
        Conv2D(channels, 3, w_init=he_normal()), BatchNorm(),
    )
    return serial(Residual(body), Relu)


def build_model() -> Layer:
    """Stem, three residual blocks, global average pooling and a linear classifier."""
    return serial(
        Conv2D(16, 3, w_init=he_normal()), BatchNorm(), Relu,
        residual_block(16), residual_block(16), residual_block(32, stride=2),
        GlobalAvgPool, Dense(10),
    )


def main(argv: list[str] | None = None) -> None:
    """Train the ResNet on the digits and print shapes, losses and the test accuracy."""
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

    @jax.jit
    def evaluate(p: Any, s: Any) -> tuple[Array, Array]:
        logits, _ = model.apply(p, s, x_test, train=False)  # evaluation mode: deterministic, no key
        return logits, jnp.mean(jnp.argmax(logits, axis=-1) == y_test)

    logits, accuracy = evaluate(params, state)
    print(f"forward pass on the test set: logits {tuple(logits.shape)}, accuracy {float(accuracy):.3f}")

    def loss_fn(p: Any, s: Any, xb: Array, yb: Array) -> tuple[Array, Any]:
        out, new_s = model.apply(p, s, xb, train=True)  # no dropout: no key needed
        return -jnp.mean(jnp.take_along_axis(log_softmax(out), yb[:, None], axis=1)), new_s

    @jax.jit
    def step(p: Any, s: Any, key: PRNGKey) -> tuple[Any, Any, Array]:
        idx = jax.random.randint(key, (args.batch_size,), 0, x_train.shape[0])
        (loss, s), grads = jax.value_and_grad(loss_fn, has_aux=True)(p, s, x_train[idx], y_train[idx])
        return jax.tree_util.tree_map(lambda w, g: w - args.lr * g, p, grads), s, loss

    for i, key in enumerate(jax.random.split(k_train, steps)):
        params, state, loss = step(params, state, key)
        if i == 0 or (i + 1) % max(1, steps // 5) == 0:
            print(f"step {i + 1:4d}  loss {float(loss):.4f}")

    # Evaluation mode normalizes with the running statistics accumulated during training.
    _, accuracy = evaluate(params, state)
    print(f"test accuracy {float(accuracy):.3f} on {x_test.shape[0]} digits")


if __name__ == "__main__":
    main()
