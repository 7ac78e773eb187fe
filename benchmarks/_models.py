"""The benchmark models, written once per framework from one set of initial parameter values.

Every contender starts from the *same numbers*: :func:`init_leaves` draws the kernels with
``functrain.initializers.glorot_uniform`` and zero biases (functrain's ``Dense``/``Conv2D``
defaults) in the canonical layout (dense kernels ``(in, out)``, conv kernels HWIO), and each
framework's model is built from those arrays (transposed to OIHW / ``(out, in)`` for equinox and
PyTorch, and with the flatten order permuted from HWC to CHW). :func:`check_parity` then checks
that all forward passes agree, so the contenders provably compute the same function.

* ``mlp``: 64-512-512-10 with ReLU (digits).
* ``convnet`` (the lesson's network, MNIST shape 28x28x1): Conv2D 32 3x3 (VALID) + ReLU,
  MaxPool 2x2, Conv2D 64 3x3 (VALID) + ReLU, MaxPool 2x2, Flatten (5*5*64 = 1600), Dropout 0.5,
  Dense 10.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from functrain.initializers import glorot_uniform

Array = jax.Array
Leaves = list[np.ndarray[Any, np.dtype[np.float32]]]


@dataclass(frozen=True)
class ModelSpec:
    """A model, described once for every framework.

    Attributes:
        name: ``"mlp"`` or ``"convnet"``.
        example_shape: shape of one example, channels-last (``(64,)`` or ``(28, 28, 1)``).
        leaf_shapes: canonical parameter shapes ``[w1, b1, w2, b2, ...]``.
        dropout: whether the model has dropout (then training steps need keys).
        channels_first: whether equinox/PyTorch take NCHW inputs (convnets).
        functrain_model: builds the functrain ``Layer``.
        jax_apply: hand-written forward pass ``apply(params, x, key, train) -> logits`` with
            ``params`` a tuple of ``(w, b)`` pairs.
        eqx_model: builds the equinox module from the leaves; called as
            ``model(example, key=..., inference=...)`` on one channels-first example.
        torch_model: builds the ``torch.nn.Module`` from the leaves.
    """

    name: str
    example_shape: tuple[int, ...]
    leaf_shapes: tuple[tuple[int, ...], ...]
    dropout: bool
    channels_first: bool
    functrain_model: Callable[[], Any]
    jax_apply: Callable[[Any, Array, Array | None, bool], Array]
    eqx_model: Callable[[Leaves], Any]
    torch_model: Callable[[Leaves], Any]


def init_leaves(key: Array, shapes: Sequence[tuple[int, ...]]) -> Leaves:
    """Glorot-uniform kernels and zero biases for the canonical ``[w1, b1, w2, b2, ...]`` shapes."""
    init = glorot_uniform()
    out: Leaves = []
    for i, shape in enumerate(shapes):
        if len(shape) == 1:
            out.append(np.zeros(shape, np.float32))
        else:
            out.append(np.asarray(init(jax.random.fold_in(key, i), shape, jnp.float32)))
    return out


def pairs(leaves: Sequence[Any]) -> tuple[tuple[Any, Any], ...]:
    """``[w1, b1, w2, b2 ...]`` -> ``((w1, b1), (w2, b2), ...)`` as JAX arrays."""
    arrs = [jnp.asarray(a) for a in leaves]
    return tuple((arrs[i], arrs[i + 1]) for i in range(0, len(arrs), 2))


# --------------------------------------------------------------------------------------- MLP

MLP_SIZES = (64, 512, 512, 10)


def _mlp_shapes() -> tuple[tuple[int, ...], ...]:
    shapes: list[tuple[int, ...]] = []
    for a, b in zip(MLP_SIZES[:-1], MLP_SIZES[1:]):
        shapes += [(a, b), (b,)]
    return tuple(shapes)


def _mlp_functrain() -> Any:
    from functrain import layers as L

    return L.serial(L.Dense(512), L.Relu, L.Dense(512), L.Relu, L.Dense(10))


def _mlp_jax(params: Any, x: Array, key: Array | None, train: bool) -> Array:
    del key, train
    n = len(params)
    for i, (w, b) in enumerate(params):
        x = jnp.matmul(x, w) + b
        if i < n - 1:
            x = jax.nn.relu(x)
    return x


class EqxMLP(eqx.Module):
    """The MLP in equinox (one example at a time; ``jax.vmap`` adds the batch axis)."""

    layers: tuple[eqx.nn.Linear, ...]

    def __call__(self, x: Array, *, key: Array | None = None, inference: bool = False) -> Array:
        """Logits of one example ``x`` of shape ``(64,)``."""
        del key, inference
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = jax.nn.relu(x)
        return x


def _eqx_linear(w: np.ndarray[Any, Any], b: np.ndarray[Any, Any]) -> eqx.nn.Linear:
    lin = eqx.nn.Linear(w.shape[0], w.shape[1], key=jax.random.key(0))
    out: eqx.nn.Linear = eqx.tree_at(lambda m: (m.weight, m.bias), lin, (jnp.asarray(w.T), jnp.asarray(b)))
    return out


def _mlp_eqx(leaves: Leaves) -> EqxMLP:
    return EqxMLP(tuple(_eqx_linear(leaves[i], leaves[i + 1]) for i in range(0, len(leaves), 2)))


def _torch_linear(w: np.ndarray[Any, Any], b: np.ndarray[Any, Any]) -> Any:
    import torch

    lin = torch.nn.Linear(w.shape[0], w.shape[1])
    with torch.no_grad():
        lin.weight.copy_(torch.from_numpy(np.ascontiguousarray(w.T)))
        lin.bias.copy_(torch.from_numpy(b))
    return lin


def _mlp_torch(leaves: Leaves) -> Any:
    import torch

    mods: list[Any] = []
    for i in range(0, len(leaves), 2):
        mods.append(_torch_linear(leaves[i], leaves[i + 1]))
        if i + 2 < len(leaves):
            mods.append(torch.nn.ReLU())
    return torch.nn.Sequential(*mods)


MLP = ModelSpec(
    name="mlp",
    example_shape=(64,),
    leaf_shapes=_mlp_shapes(),
    dropout=False,
    channels_first=False,
    functrain_model=_mlp_functrain,
    jax_apply=_mlp_jax,
    eqx_model=_mlp_eqx,
    torch_model=_mlp_torch,
)


# ----------------------------------------------------------------------------------- convnet

CONV_SHAPES: tuple[tuple[int, ...], ...] = (
    (3, 3, 1, 32), (32,),
    (3, 3, 32, 64), (64,),
    (5 * 5 * 64, 10), (10,),
)
DROPOUT_RATE = 0.5


def _conv_functrain() -> Any:
    from functrain import layers as L

    return L.serial(
        L.Conv2D(32, (3, 3), padding="VALID"), L.Relu, L.MaxPool((2, 2)),
        L.Conv2D(64, (3, 3), padding="VALID"), L.Relu, L.MaxPool((2, 2)),
        L.Flatten, L.Dropout(DROPOUT_RATE), L.Dense(10),
    )


def _max_pool_nhwc(x: Array) -> Array:
    y: Array = lax.reduce_window(x, -jnp.inf, lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "VALID")
    return y


def _conv_nhwc(x: Array, w: Array, b: Array) -> Array:
    y = lax.conv_general_dilated(x, w, (1, 1), "VALID", dimension_numbers=("NHWC", "HWIO", "NHWC"))
    return y + b


def _conv_jax(params: Any, x: Array, key: Array | None, train: bool) -> Array:
    (w1, b1), (w2, b2), (w3, b3) = params
    x = _max_pool_nhwc(jax.nn.relu(_conv_nhwc(x, w1, b1)))
    x = _max_pool_nhwc(jax.nn.relu(_conv_nhwc(x, w2, b2)))
    x = x.reshape(x.shape[0], -1)
    if train:
        assert key is not None
        keep = jax.random.bernoulli(key, 1.0 - DROPOUT_RATE, x.shape)
        x = jnp.where(keep, x / (1.0 - DROPOUT_RATE), 0.0)
    logits: Array = jnp.matmul(x, w3) + b3
    return logits


def _dense_hwc_to_chw(w: np.ndarray[Any, Any], hwc: tuple[int, int, int]) -> np.ndarray[Any, Any]:
    """Permute a dense kernel's input rows from HWC-flatten order to CHW-flatten order."""
    h, wd, c = hwc
    return np.ascontiguousarray(w.reshape(h, wd, c, -1).transpose(2, 0, 1, 3).reshape(h * wd * c, -1))


class EqxConvNet(eqx.Module):
    """The lesson's convnet in equinox, on one CHW example."""

    conv1: eqx.nn.Conv2d
    conv2: eqx.nn.Conv2d
    pool: eqx.nn.MaxPool2d
    dropout: eqx.nn.Dropout
    linear: eqx.nn.Linear

    def __call__(self, x: Array, *, key: Array | None = None, inference: bool = False) -> Array:
        """Logits of one example ``x`` of shape ``(1, 28, 28)``."""
        x = self.pool(jax.nn.relu(self.conv1(x)))
        x = self.pool(jax.nn.relu(self.conv2(x)))
        x = self.dropout(x.reshape(-1), key=key, inference=inference)
        return self.linear(x)


def _eqx_conv(w: np.ndarray[Any, Any], b: np.ndarray[Any, Any]) -> eqx.nn.Conv2d:
    kh, kw, cin, cout = w.shape
    conv = eqx.nn.Conv2d(cin, cout, (kh, kw), key=jax.random.key(0))
    out: eqx.nn.Conv2d = eqx.tree_at(lambda m: (m.weight, m.bias), conv,
                                     (jnp.asarray(w.transpose(3, 2, 0, 1)), jnp.asarray(b.reshape(cout, 1, 1))))
    return out


def _conv_eqx(leaves: Leaves) -> EqxConvNet:
    return EqxConvNet(
        conv1=_eqx_conv(leaves[0], leaves[1]),
        conv2=_eqx_conv(leaves[2], leaves[3]),
        pool=eqx.nn.MaxPool2d(2, 2),
        dropout=eqx.nn.Dropout(DROPOUT_RATE),
        linear=_eqx_linear(_dense_hwc_to_chw(leaves[4], (5, 5, 64)), leaves[5]),
    )


def _torch_conv(w: np.ndarray[Any, Any], b: np.ndarray[Any, Any]) -> Any:
    import torch

    kh, kw, cin, cout = w.shape
    conv = torch.nn.Conv2d(cin, cout, (kh, kw))
    with torch.no_grad():
        conv.weight.copy_(torch.from_numpy(np.ascontiguousarray(w.transpose(3, 2, 0, 1))))
        assert conv.bias is not None
        conv.bias.copy_(torch.from_numpy(b))
    return conv


def _conv_torch(leaves: Leaves) -> Any:
    import torch

    nn = torch.nn
    return nn.Sequential(
        _torch_conv(leaves[0], leaves[1]), nn.ReLU(), nn.MaxPool2d(2),
        _torch_conv(leaves[2], leaves[3]), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Dropout(DROPOUT_RATE),
        _torch_linear(_dense_hwc_to_chw(leaves[4], (5, 5, 64)), leaves[5]),
    )


CONVNET = ModelSpec(
    name="convnet",
    example_shape=(28, 28, 1),
    leaf_shapes=CONV_SHAPES,
    dropout=True,
    channels_first=True,
    functrain_model=_conv_functrain,
    jax_apply=_conv_jax,
    eqx_model=_conv_eqx,
    torch_model=_conv_torch,
)


# -------------------------------------------------------------------------------------- data

def digits(n_multiple: int = 64) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    """scikit-learn's embedded digits, pixels scaled to [0, 1], trimmed to a multiple of the batch.

    Returns:
        ``x`` float32 ``(1792, 64)`` and ``y`` int32 ``(1792,)``: the first ``1797 // 64 * 64``
        examples, so that every contender runs exactly 28 full batches per epoch.
    """
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    n = (len(x) // n_multiple) * n_multiple
    return (x[:n] / 16.0).astype(np.float32), y[:n].astype(np.int32)


def synthetic_images(n: int, shape: tuple[int, ...], seed: int = 0) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    """``n`` uniform-[0, 1) images of ``shape`` (channels-last) with random labels 0..9."""
    rng = np.random.default_rng(seed)
    return rng.random((n, *shape), dtype=np.float32), rng.integers(0, 10, n).astype(np.int32)


def channels_first(x: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """NHWC -> NCHW (a contiguous copy)."""
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))
