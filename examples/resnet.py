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

from convnet import train_on_digits  # examples/convnet.py, next to this file

from functrain.initializers import he_normal
from functrain.layers import BatchNorm, Conv2D, Dense, GlobalAvgPool, Layer, Relu, Residual, serial


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
    """Train the network on the digits and print shapes, losses and the test accuracy."""
    train_on_digits(build_model(), argv, steps=300, lr=0.1, doc=__doc__ or "")

if __name__ == "__main__":
    main()
