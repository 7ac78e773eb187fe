"""A small Inception-style network on the 8x8 digits: parallel branches joined on the channel axis.

Each Inception block (Szegedy et al., "Going Deeper with Convolutions", CVPR 2015) runs four
branches on the same input -- a 1x1 convolution; 1x1 then 3x3; 1x1 then 5x5; 3x3 max pooling then
1x1 -- and concatenates their channels: ``serial(parallel(b1, b2, b3, b4), Concatenate)``.

    python examples/inception.py            # 300 steps
    python examples/inception.py --quick    # a few steps, for smoke tests
"""

from __future__ import annotations

import jax
from convnet import train_on_digits  # examples/convnet.py, next to this file

from functrain.initializers import he_normal
from functrain.layers import (
    Concatenate,
    Conv2D,
    Dense,
    GlobalAvgPool,
    Layer,
    MaxPool,
    Relu,
    parallel,
    serial,
)


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
    def first_block() -> None:
        _, _, block_shape = inception_block(8, 8, 16, 4, 8, 8).init(jax.random.key(0), (-1, 8, 8, 16))
        print(f"first inception block: (-1, 8, 8, 16) -> {block_shape}")

    train_on_digits(build_model(), argv, steps=300, lr=0.1, doc=__doc__ or "", preface=first_block)

if __name__ == "__main__":
    main()
