"""Layers: pure ops over NamedTuple parameters, and composable ``Layer(init, apply)`` values.

Ops (work on one example or a batch; shapes checked by chex at trace time, before XLA)::

    dense(DenseParams(w, b), x)                                  # x @ w + b
    conv1d / conv2d(ConvParams(w, b), x, stride=1, padding="SAME", dilation=1)   # NWC / NHWC, HWIO
    max_pool / avg_pool(x, window, stride=None, padding="VALID"), global_avg_pool(x), flatten(x)
    dropout(key, x, rate=0.5, train=True)                        # inverted; rate = P(drop)
    batch_norm(params, state, x, train=True) -> (y, new_state)   # running mean / unbiased var
    layer_norm(params, x), weight_norm(v, g), weight_norm_dense / weight_norm_conv1d / _conv2d
    relu, leaky_relu, elu, gelu, tanh, sigmoid, softmax, log_softmax

``init_*`` functions build the parameters, taking initializers (defaults: ``glorot_uniform`` kernels,
zero biases, unit normalization scales) and a ``dtype`` (default float32), as the layer constructors
do; ``mixed_precision(model, jnp.bfloat16)`` keeps float32 parameters and runs the model in bfloat16.

Composable layers (stax convention; ``input_shape`` includes a leading batch axis that may be -1).
Constructors such as ``Dense(10)`` take hyperparameters; ``Relu``, ``Tanh``, ``Sigmoid``, ``Gelu``,
``Softmax``, ``LogSoftmax``, ``Flatten``, ``GlobalAvgPool`` and ``Identity`` are ready-made values,
and ``Concatenate`` joins the outputs of ``parallel(...)`` branches:

>>> L = ft.layers
>>> model = L.serial(L.Conv2D(4, 3), L.Relu, L.MaxPool(2), L.Flatten, L.Dropout(0.5), L.Dense(10),
...                  L.LogSoftmax)
>>> params, state, out_shape = model.init(jax.random.key(0), (-1, 8, 8, 1))
>>> log_probs, state = model.apply(params, state, jnp.ones((2, 8, 8, 1)), train=False)  # evaluation
>>> out_shape, log_probs.shape
((-1, 10), (2, 10))
>>> head = L.serial(L.GlobalAvgPool, L.Tanh, L.Sigmoid, L.Gelu, L.Softmax)
>>> head.init(jax.random.key(0), (-1, 8, 8, 4))[2]
(-1, 4)
>>> block = L.serial(L.parallel(L.Conv2D(2, 1), L.Identity), L.Concatenate)
>>> block.init(jax.random.key(0), (-1, 8, 8, 3))[2]
(-1, 8, 8, 5)

Modules: :mod:`~functrain.layers.base` (the ``Layer`` protocol), :mod:`~functrain.layers.dense`,
:mod:`~functrain.layers.conv`, :mod:`~functrain.layers.pooling`,
:mod:`~functrain.layers.normalization` (batch and layer norm), :mod:`~functrain.layers.weight_norm`,
:mod:`~functrain.layers.dropout`, :mod:`~functrain.layers.activations`,
:mod:`~functrain.layers.combinators` (``serial``, ``parallel``, ``Residual``),
:mod:`~functrain.layers.precision` (``mixed_precision``).
"""

from functrain.layers.activations import (
    Elementwise,
    Elu,
    Gelu,
    LeakyRelu,
    LogSoftmax,
    Relu,
    Sigmoid,
    Softmax,
    Tanh,
    elu,
    gelu,
    leaky_relu,
    log_softmax,
    relu,
    sigmoid,
    softmax,
    tanh,
)
from functrain.layers.base import (
    ApplyFn,
    Branches,
    BranchesApplyFn,
    BranchesInitFn,
    InitFn,
    Join,
    JoinApplyFn,
    JoinInitFn,
    Layer,
)
from functrain.layers.combinators import Concatenate, Identity, parallel, serial
from functrain.layers.residual import Residual, ResidualParams, zero_last_batch_norm_scale
from functrain.layers.conv import (
    Conv1D,
    Conv2D,
    ConvParams,
    PaddingLike,
    conv1d,
    conv2d,
    init_conv1d,
    init_conv2d,
)
from functrain.layers.dense import Dense, DenseParams, dense, init_dense
from functrain.layers.dropout import Dropout, dropout
from functrain.layers.drop_path import DropPath, drop_path
from functrain.layers.normalization import (
    BatchNorm,
    BatchNormParams,
    BatchNormState,
    LayerNorm,
    LayerNormParams,
    batch_norm,
    init_batch_norm,
    init_layer_norm,
    layer_norm,
)
from functrain.layers.pooling import (
    AvgPool,
    Flatten,
    GlobalAvgPool,
    MaxPool,
    avg_pool,
    flatten,
    global_avg_pool,
    max_pool,
)
from functrain.layers.precision import mixed_precision
from functrain.layers.summary import Summary, SummaryRow, print_summary, summary
from functrain.layers.weight_norm import (
    WeightNormConv2D,
    WeightNormDense,
    WeightNormParams,
    init_weight_norm,
    weight_norm,
    weight_norm_conv1d,
    weight_norm_conv2d,
    weight_norm_dense,
)

__all__ = [
    "ApplyFn",
    "AvgPool",
    "BatchNorm",
    "BatchNormParams",
    "BatchNormState",
    "Branches",
    "BranchesApplyFn",
    "BranchesInitFn",
    "Concatenate",
    "Conv1D",
    "Conv2D",
    "ConvParams",
    "Dense",
    "DenseParams",
    "DropPath",
    "Dropout",
    "Elementwise",
    "Elu",
    "Flatten",
    "Gelu",
    "GlobalAvgPool",
    "Identity",
    "InitFn",
    "Join",
    "JoinApplyFn",
    "JoinInitFn",
    "Layer",
    "LayerNorm",
    "LayerNormParams",
    "LeakyRelu",
    "LogSoftmax",
    "MaxPool",
    "PaddingLike",
    "Relu",
    "Residual",
    "ResidualParams",
    "Sigmoid",
    "Softmax",
    "Summary",
    "SummaryRow",
    "Tanh",
    "WeightNormConv2D",
    "WeightNormDense",
    "WeightNormParams",
    "avg_pool",
    "batch_norm",
    "conv1d",
    "conv2d",
    "dense",
    "drop_path",
    "dropout",
    "elu",
    "flatten",
    "gelu",
    "global_avg_pool",
    "init_batch_norm",
    "init_conv1d",
    "init_conv2d",
    "init_dense",
    "init_layer_norm",
    "init_weight_norm",
    "layer_norm",
    "leaky_relu",
    "log_softmax",
    "max_pool",
    "mixed_precision",
    "parallel",
    "print_summary",
    "relu",
    "serial",
    "sigmoid",
    "softmax",
    "summary",
    "tanh",
    "weight_norm",
    "weight_norm_conv1d",
    "weight_norm_conv2d",
    "weight_norm_dense",
    "zero_last_batch_norm_scale",
]
