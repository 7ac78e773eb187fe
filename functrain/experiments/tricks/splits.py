"""The data of the trick experiments: train / validation / test parts, scaled to [0, 1].

``prepare_splits`` holds out a test part (80/20, by a fixed key), then 20% of the training part for
validation (early stopping watches it), and min-max scales all three with statistics of the
remaining training part only.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from functrain._validate import fail
from functrain.data import Dataset, TrainTest, fit_min_max, load_digits, load_npz, min_max_scale, split_dataset
from functrain.typing import Array, PRNGKey

__all__ = ["DATA_KEY", "Splits", "load_data", "prepare_splits"]

DATA_KEY = 0
"""Seed of the fixed key that splits the data (test part, then validation part)."""


class Splits(NamedTuple):
    """Train / validation / test arrays (host NumPy, flat features scaled to [0, 1]).

    The min-max statistics are fitted on ``x_train`` only and applied to all three parts.
    """

    x_train: np.ndarray[Any, Any]
    y_train: np.ndarray[Any, Any]
    x_val: np.ndarray[Any, Any]
    y_val: np.ndarray[Any, Any]
    x_test: np.ndarray[Any, Any]
    y_test: np.ndarray[Any, Any]
    num_classes: int
    name: str


def load_data(source: str) -> Dataset | TrainTest:
    """``"digits"`` (scikit-learn's embedded digits) or the path of a ``.npz`` file.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: the file is not a readable ``.npz`` of ``x``/``y`` (see ``load_npz``).
    """
    if source == "digits":
        return load_digits()
    return load_npz(source)


def prepare_splits(data: Dataset | TrainTest, *, test_fraction: float = 0.2,
                   val_fraction: float = 0.2, key: PRNGKey | None = None) -> Splits:
    """Split (80/20 test, then 20% of the training part for validation) and scale to [0, 1].

    A :class:`Dataset` is split into train and test by ``key`` (default ``key(DATA_KEY)``); a
    :class:`TrainTest` keeps its test part. The validation part is carved from the training part
    with a second fixed key; the min-max statistics are fitted on the remaining training part.

    Raises:
        ValueError: a part would be empty, or the data has fewer than two classes.
    """
    k = jax.random.key(DATA_KEY) if key is None else key
    test_key, val_key = jax.random.split(k)
    tt = split_dataset(test_key, data, test_fraction=test_fraction) if isinstance(data, Dataset) else data
    train_val = split_dataset(val_key, tt.train, test_fraction=val_fraction)
    train, val, test = train_val.train, train_val.test, tt.test
    if tt.train.num_classes < 2:
        fail("prepare_splits", "data", "data with at least two classes", int(tt.train.num_classes),
             detail="counted in the training part")

    def flat(x: Array) -> Array:
        return jnp.reshape(x, (x.shape[0], -1))

    stats = fit_min_max(flat(train.x))

    def scaled(x: Array) -> np.ndarray[Any, Any]:
        return np.asarray(min_max_scale(stats, flat(x)), np.float32)

    return Splits(scaled(train.x), np.asarray(train.y), scaled(val.x), np.asarray(val.y),
                  scaled(test.x), np.asarray(test.y), int(tt.train.num_classes), tt.train.name)
