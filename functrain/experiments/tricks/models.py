"""The networks of the trick experiments: an MLP, the lesson's convnet and a small ResNet.

:func:`build_model` builds the network of a :class:`~functrain.experiments.tricks.config.RunConfig`.
Inputs always arrive flat, ``(batch, features)``; the convolutional networks first reshape them
to images ``(batch, H, W, C)`` (the data's ``image_shape``). The rates of dropout and drop-path and
the initial scale of the last batch norm of each residual branch may be given as (traced) arrays,
so that runs differing only in them share one compiled program
(:mod:`~functrain.experiments.tricks.programs`): a layer is present when its value is given, or,
without one, when the configuration asks for it.

* ``mlp``: per width of ``hidden``, ``Dense -> [BatchNorm] -> ReLU -> [Dropout]``; then ``Dense``.
* ``cnn`` (the lesson's convnet): per width of ``hidden`` (default 32, 64), ``Conv2D 3x3 ->
  [BatchNorm] -> ReLU -> MaxPool 2``; then ``Flatten -> [Dropout] -> Dense``. Convolutions are
  ``VALID`` as in the lesson for images of 16 pixels or more (28x28 MNIST: 26, 13, 11, 5), ``SAME``
  for smaller ones (8x8 digits: 8, 4, 2).
* ``resnet``: a stem ``Conv2D 3x3 -> [BatchNorm] -> ReLU`` of ``hidden[0]`` channels, then per
  width a basic residual block ``ReLU(P x + [DropPath](BN(Conv(ReLU(BN(Conv(x)))))))`` (He et al.
  2016; ``P`` a 1x1 projection when the width changes), global average pooling, ``[Dropout] ->
  Dense``. Zero-init residual BN (Goyal et al. 2017) starts the last batch norm's scale of every
  branch at 0, so each block starts as the identity.

Example:
    >>> from functrain.experiments.tricks import models
    >>> models.padding_for((8, 8, 1)), models.padding_for((28, 28, 1))  # small images keep their size
    ('SAME', 'VALID')
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal

import jax
import jax.numpy as jnp

from functrain import _jax, layers
from functrain.experiments.tricks.config import INITIALIZERS, RunConfig
from functrain.typing import Array, Initializer, PRNGKey, PyTree, Shape

__all__ = ["Rates", "build_model", "check_model", "padding_for"]

Rates = dict[str, float | Array]
"""Values of the tricks that are data: ``"dropout"``, ``"drop_path"``, ``"bn_last_scale"``."""

_SMALL_IMAGE = 16


def padding_for(image_shape: Sequence[int]) -> Literal["SAME", "VALID"]:
    """``"VALID"`` (the lesson's) for images of at least 16 pixels a side, else ``"SAME"``."""
    return "VALID" if min(image_shape[:2]) >= _SMALL_IMAGE else "SAME"


def Reshape(image_shape: tuple[int, ...]) -> layers.Layer:  # noqa: N802 (layer constructor)
    """``(batch, prod(image_shape)) -> (batch, *image_shape)``."""

    def init(key: PRNGKey, shape: Sequence[int]) -> tuple[PyTree, PyTree, Shape]:
        del key
        if len(shape) != 2 or shape[1] != math.prod(image_shape):
            raise ValueError(f"Reshape: the input must be (batch, {math.prod(image_shape)}) to become images of "
                             f"shape {image_shape}, got {tuple(shape)}")
        return (), (), (shape[0], *image_shape)

    def apply(params: PyTree, state: PyTree, x: Array, *, key: PRNGKey | None = None,
              train: bool) -> tuple[Array, PyTree]:
        del params, key, train
        return jnp.asarray(x).reshape(x.shape[0], *image_shape), state

    return layers.Layer(init, apply)


def _filled(value: float | Array) -> Initializer:
    """An initializer filling with ``value`` (a Python float or a traced scalar)."""

    def init(key: PRNGKey, shape: Sequence[int], dtype: Any = jnp.float32) -> Array:
        del key
        return jnp.full(tuple(shape), value, dtype)

    return init


def _present(rates: Rates | None, name: str, configured: float) -> float | Array | None:
    """The value of a data trick: given in ``rates``, or the configuration's if it is on."""
    if rates is not None and name in rates:
        return rates[name]
    return configured if configured > 0 else None


def _mlp(config: RunConfig, num_classes: int, init: Initializer, dropout: float | Array | None) -> list[Any]:
    parts: list[Any] = []
    for width in config.hidden:
        parts.append(layers.Dense(width, w_init=init))
        if config.batch_norm:
            parts.append(layers.BatchNorm())
        parts.append(layers.Relu)
        if dropout is not None:
            parts.append(layers.Dropout(dropout))
    return [*parts, layers.Dense(num_classes, w_init=init)]


def _cnn(config: RunConfig, num_classes: int, init: Initializer, dropout: float | Array | None,
         image_shape: tuple[int, ...]) -> list[Any]:
    pad = padding_for(image_shape)
    parts: list[Any] = [Reshape(image_shape)]
    for channels in config.hidden:
        parts.append(layers.Conv2D(channels, (3, 3), padding=pad, w_init=init))
        if config.batch_norm:
            parts.append(layers.BatchNorm())
        parts += [layers.Relu, layers.MaxPool(2)]
    parts.append(layers.Flatten)
    if dropout is not None:
        parts.append(layers.Dropout(dropout))
    return [*parts, layers.Dense(num_classes, w_init=init)]


def _block(channels: int, config: RunConfig, init: Initializer, drop_path: float | Array | None,
           last_scale: float | Array | None) -> layers.Layer:
    def bn(scale: float | Array | None = None) -> list[layers.Layer]:
        if not config.batch_norm:
            return []
        return [layers.BatchNorm() if scale is None else layers.BatchNorm(scale_init=_filled(scale))]

    body = [layers.Conv2D(channels, 3, w_init=init), *bn(), layers.Relu,
            layers.Conv2D(channels, 3, w_init=init), *bn(last_scale)]
    if drop_path is not None:
        body.append(layers.DropPath(drop_path))
    return layers.serial(layers.Residual(layers.serial(*body)), layers.Relu)


def _resnet(config: RunConfig, num_classes: int, init: Initializer, rates: Rates | None,
            image_shape: tuple[int, ...]) -> list[Any]:
    drop_path = _present(rates, "drop_path", config.drop_path)
    last_scale = rates.get("bn_last_scale") if rates is not None else None
    if last_scale is None and config.zero_init_bn:
        last_scale = 0.0
    parts: list[Any] = [Reshape(image_shape), layers.Conv2D(config.hidden[0], 3, w_init=init)]
    if config.batch_norm:
        parts.append(layers.BatchNorm())
    parts.append(layers.Relu)
    parts += [_block(c, config, init, drop_path, last_scale) for c in config.hidden]
    parts.append(layers.GlobalAvgPool)
    dropout = _present(rates, "dropout", config.dropout)
    if dropout is not None:
        parts.append(layers.Dropout(dropout))
    return [*parts, layers.Dense(num_classes, w_init=init)]


def build_model(config: RunConfig, num_classes: int, image_shape: Sequence[int] | None = None, *,
                rates: Rates | None = None) -> layers.Layer:
    """The network of ``config`` (see the module docstring), taking flat inputs.

    Args:
        config: the run's configuration (``model``, ``hidden``, ``init``, ``batch_norm``, and the
            rates when ``rates`` does not give them).
        num_classes: the outputs of the last ``Dense``.
        image_shape: ``(H, W, C)`` of the images (needed by ``cnn`` and ``resnet``).
        rates: values of the data tricks (traced arrays in shared programs): a layer is added for
            every name given here, even at rate 0 (then it computes the identity).

    Raises:
        ValueError: a convolutional model without ``image_shape``.
    """
    init = INITIALIZERS[config.init]()
    if config.model == "mlp":
        parts = _mlp(config, num_classes, init, _present(rates, "dropout", config.dropout))
    else:
        if image_shape is None or len(image_shape) != 3:
            raise ValueError(f"build_model: model {config.model!r} needs images: data with an image shape "
                             f"(H, W, C), got {image_shape}")
        shape = tuple(int(n) for n in image_shape)
        if config.model == "cnn":
            parts = _cnn(config, num_classes, init, _present(rates, "dropout", config.dropout), shape)
        else:
            parts = _resnet(config, num_classes, init, rates, shape)
    return layers.serial(*parts)


def check_model(config: RunConfig, num_classes: int, features: int, image_shape: Sequence[int] | None) -> None:
    """Refuse a network that cannot take the data (e.g. more conv blocks than the image has pixels).

    Traced only (``jax.eval_shape``): nothing is allocated.

    Raises:
        ValueError: naming the problem (the layer's own error).
    """
    model = build_model(config, num_classes, image_shape)

    def init(key: PRNGKey) -> tuple[PyTree, PyTree]:
        return model.init(key, (-1, features))[:2]

    _jax.eval_shape(init, jax.random.key(0))
