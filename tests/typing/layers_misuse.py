"""Misuses of the layers API that mypy must reject (checked by tests/test_typing.py)."""

import jax
import jax.numpy as jnp

from functrain import initializers
from functrain.layers import (
    BatchNorm,
    Concatenate,
    Conv2D,
    Dense,
    Layer,
    LeakyRelu,
    MaxPool,
    Relu,
    Residual,
    batch_norm,
    conv2d,
    dropout,
    init_batch_norm,
    init_dense,
    parallel,
    serial,
)
from functrain.typing import Array

key = jax.random.key(0)
x = jnp.ones((2, 3))

# A layer constructor must be called: LeakyRelu is a function, not a Layer.
serial(Dense(3), LeakyRelu)  # expect-error

# apply needs the keyword-only `train` flag.
params, state, _ = Dense(3).init(key, (-1, 3))
Dense(3).apply(params, state, x)  # expect-error

# train and rate of dropout are keyword-only.
dropout(key, x, 0.5, True)  # expect-error

# A join or a fan-out is not a Layer.
bad_layer: Layer = Concatenate  # expect-error
bad_branches: Layer = parallel(Dense(2), Relu)  # expect-error
Residual(parallel(Dense(2)))  # expect-error

# Dense parameters are not convolution parameters (distinct NamedTuples).
conv2d(init_dense(key, 3, 4), x)  # expect-error

# batch_norm returns (y, new_state), not an array.
bn_params, bn_state = init_batch_norm(key, 3)
y_only: Array = batch_norm(bn_params, bn_state, x, train=True)  # expect-error

# input_shape is a sequence of ints, not an int.
Dense(3).init(key, 5)  # expect-error

# Initializers are keyword-only and must be called to get an Initializer.
init_dense(key, 3, 4, initializers.glorot_uniform())  # expect-error
init_dense(key, 3, 4, w_init=initializers.glorot_uniform)  # expect-error

# Padding strings are upper-case literals.
MaxPool(2, padding="same")  # expect-error

# Correct use type-checks.
model: Layer = serial(Conv2D(4, 3), BatchNorm(), Relu, MaxPool(2), parallel(Dense(2), Dense(3)), Concatenate)
p, s, out_shape = model.init(key, (-1, 8, 8, 1))
y, s = model.apply(p, s, jnp.ones((2, 8, 8, 1)), train=False)
logits: Array = y

# A single layer's params and state are its records (Dense(3) is a Layer[DenseParams, tuple[()]]):
# a field that is not there, or one layer's params or state given to another, is an error.
dense_params, dense_state, _ = Dense(3).init(key, (-1, 4))
dense_params.scale  # expect-error
norm_params, norm_state, _ = BatchNorm().init(key, (-1, 4))
Dense(3).apply(norm_params, dense_state, jnp.ones((2, 4)), train=False)  # expect-error
BatchNorm().apply(norm_params, dense_state, jnp.ones((2, 4)), train=False)  # expect-error
Conv2D(2, 3).apply(dense_params, (), jnp.ones((2, 4, 4, 1)), train=False)  # expect-error
