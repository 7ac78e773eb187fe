"""Misuses of functrain.data and functrain.diagnostics that mypy must reject (tests/test_typing.py)."""

import jax
import jax.numpy as jnp

from functrain import data, initializers
from functrain.data import Dataset, TrainTest
from functrain.diagnostics import SignalPropagation, signal_propagation

key = jax.random.key(0)
x = jnp.ones((10, 3))
y = jnp.zeros(10, jnp.int32)
mm = data.fit_min_max(x, (-1.0, 1.0))
st = data.fit_standardize(x)

# Statistics come first, data second.
data.min_max_scale(x, mm)  # expect-error

# Min-max statistics are not standardization statistics.
data.standardize(mm, x)  # expect-error

# A range is a pair, not a triple.
data.fit_min_max(x, feature_range=(0.0, 1.0, 2.0))  # expect-error

# The shuffling key of batches is keyword-only.
data.batches((x, y), 4, key)  # expect-error

# test_fraction is a number.
data.train_test_split(key, x, y, test_fraction="0.2")  # expect-error

# load_mnist returns train and test parts, not one Dataset.
one: Dataset = data.load_mnist("mnist/")  # expect-error

# load_npz may return a single Dataset: narrow before using .train.
data.load_npz("mine.npz").train  # expect-error

# as_images is keyword-only.
data.load_digits(True)  # expect-error

# A record's derived size is read-only.
data.load_digits().num_examples = 3  # expect-error

# signal_propagation wants an initializer, not the factory that makes one.
signal_propagation(initializers.he_normal, jax.nn.relu, 5, 8, key)  # expect-error

# Correct use type-checks.
loaded = data.load_npz("mine.npz")
parts = loaded if isinstance(loaded, TrainTest) else data.split_dataset(key, loaded)
train: Dataset = parts.train
x_scaled = data.standardize(st, data.min_max_scale(mm, x))
(x_tr, y_tr), (x_te, y_te) = data.train_test_split(key, x, y, test_fraction=0.25)
for xb, yb in data.batches((x_tr, y_tr), 4, key=key, drop_last=True):
    pass
sp: SignalPropagation = signal_propagation(initializers.he_normal(), jax.nn.relu, 5, 8, key)
