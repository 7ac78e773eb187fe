"""Residual connections: a deep plain CNN against the same network with shortcuts, on the 8x8 digits.

    stem:   Conv2D 8 3x3, stride 2 (8x8 -> 4x4) -> ReLU
    blocks: 6 x  body = Conv 3x3 -> ReLU -> Conv 3x3      (13 convolutions in all)
            plain:    x -> ReLU(body(x))
            residual: x -> ReLU(x + body(x))             (``serial(Residual(body), Relu)``)
    head:   GlobalAvgPool -> Dense 10

He et al., "Deep Residual Learning for Image Recognition" (CVPR 2016). The two networks have the
same layers and the same parameters; only the shortcut differs. With the library's default
initialization (``glorot_uniform``) each ReLU layer of the plain net halves the signal's variance,
so after 13 convolutions the gradient reaching the first layers is tiny and training crawls; the
residual block passes ``x`` on unchanged and adds the body's correction, so the signal and the
gradient reach every layer at full strength. No batch norm in either network, so the comparison
isolates the shortcut. Both train with the budget shared by the architecture examples (Adam, cosine
decay from 3e-3 over 10 epochs, 3 seeds; see ``convnet.py``). What it shows: the residual net
converges to ~0.93 while the plain one is still at ~0.6 when the budget runs out.

    python examples/resnet.py [--quick] [--seeds N] [--epochs N]
"""

from __future__ import annotations

from convnet import train_models  # examples/convnet.py, next to this file

from functrain.layers import Conv2D, Dense, GlobalAvgPool, Layer, Relu, Residual, serial

BLOCKS, CHANNELS = 6, 8


def body(channels: int) -> Layer:
    """``Conv 3x3 -> ReLU -> Conv 3x3`` (``SAME`` padding: the shape is kept, so ``x + body(x)`` fits)."""
    return serial(Conv2D(channels, 3), Relu, Conv2D(channels, 3))


def residual_block(channels: int) -> Layer:
    """``ReLU(x + body(x))``: the shortcut is the identity (``Residual`` adds a projection when shapes differ)."""
    return serial(Residual(body(channels)), Relu)


def build_model(residual: bool = True, blocks: int = BLOCKS, channels: int = CHANNELS) -> Layer:
    """Stem, ``blocks`` plain or residual blocks, global average pooling and a linear classifier."""

    def plain_block(c: int) -> Layer:
        return serial(body(c), Relu)

    block = residual_block if residual else plain_block
    return serial(Conv2D(channels, 3, stride=2), Relu, *[block(channels) for _ in range(blocks)],
                  GlobalAvgPool, Dense(10))


def main(argv: list[str] | None = None) -> None:
    """Train the plain and the residual network; print the table and the verdict."""
    train_models({f"plain CNN ({2 * BLOCKS + 1} conv layers)": build_model(residual=False),
                  f"residual CNN ({2 * BLOCKS + 1} conv layers)": build_model(residual=True)},
                 argv, doc=__doc__ or "", claim="residual connections train a deep CNN that the plain one cannot")


if __name__ == "__main__":
    main()
