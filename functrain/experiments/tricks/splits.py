"""The data of the trick experiments: train / validation / test parts, scaled to [0, 1].

``load_data`` reads the embedded digits, MNIST or Fashion-MNIST (downloaded once into the data
cache directory, see :func:`functrain.data.load_mnist`) or an ``.npz`` file. ``prepare_splits``
holds out a test part (80/20, by a fixed key; MNIST keeps its own test set), then 20% of the
training part for validation (early stopping watches it), and min-max scales all three with
statistics of the remaining training part only: per feature (pixel) by default, or one range for
all of them (``per_feature=False``, what convolutions want). The arrays stay flat; images keep
their shape in ``Splits.image_shape``.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from functrain._validate import fail
from functrain.data import Dataset, TrainTest, fit_min_max, load_digits, load_npz, min_max_scale, split_dataset
from functrain.typing import Array, PRNGKey

__all__ = ["DATA_KEY", "DATA_SOURCES", "MAX_CLASSES", "Splits", "check_data", "load_data", "prepare_splits"]

DATA_KEY = 0
"""Seed of the fixed key that splits the data (test part, then validation part)."""

DATA_SOURCES = ("digits", "mnist", "fashion-mnist")
"""The data sets by name (anything else is the path of an ``.npz`` file)."""

MAX_CLASSES = 100_000
"""The most classes a run may have (the network has one output per class ``0..max label``)."""


class Splits(NamedTuple):
    """Train / validation / test arrays (host NumPy, flat features scaled to [0, 1]).

    The min-max statistics are fitted on ``x_train`` only and applied to all three parts.
    ``image_shape`` is ``(H, W, C)`` when the examples are images (``None`` otherwise): the
    convolutional models reshape the flat features to it.
    """

    x_train: np.ndarray[Any, Any]
    y_train: np.ndarray[Any, Any]
    x_val: np.ndarray[Any, Any]
    y_val: np.ndarray[Any, Any]
    x_test: np.ndarray[Any, Any]
    y_test: np.ndarray[Any, Any]
    num_classes: int
    name: str
    image_shape: tuple[int, ...] | None = None


def load_data(source: str, *, as_images: bool = False) -> Dataset | TrainTest:
    """A data set of :data:`DATA_SOURCES` by name, or the path of a ``.npz`` file.

    ``"digits"`` is scikit-learn's embedded digits; ``"mnist"`` and ``"fashion-mnist"`` are
    downloaded on first use into the data cache directory (``$FUNCTRAIN_DATA``, else
    ``~/.cache/functrain/datasets``; :func:`functrain.data.load_mnist` with ``download=True``).

    Args:
        source: a name of :data:`DATA_SOURCES`, or a path.
        as_images: give the named data sets as images ``(n, H, W, 1)`` (an ``.npz`` file's
            ``x`` is taken as it is).

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: the file is not a readable ``.npz`` of ``x``/``y`` (see ``load_npz``).
        functrain.data.DownloadError: MNIST could not be downloaded (one line naming the URLs).
    """
    if source == "digits":
        return load_digits(as_images=as_images)
    if source in ("mnist", "fashion-mnist"):
        from functrain.data import load_mnist

        return load_mnist(None, download=True, as_images=as_images, name=source)
    return load_npz(source)


def _first_bad(bad: np.ndarray[Any, Any]) -> int:
    return int(np.flatnonzero(bad.reshape(bad.shape[0], -1).any(axis=1))[0])


def check_data(data: Dataset | TrainTest) -> None:
    """Refuse data a run would train on silently wrong: non-finite features, bad labels.

    Checked: every feature is finite (NaN or infinity, e.g. a value beyond float32's range
    +-3.4e38 that became infinity, would turn every loss into NaN: the run would report
    "diverged" instead of naming the data); every label is ``>= 0`` (a label of ``2**31`` or
    more wraps around to a negative int32); at most :data:`MAX_CLASSES` classes.

    Raises:
        ValueError: naming the part (``x``, ``x_train`` ...), the count and the first example.
    """
    parts = [("x", "y", data)] if isinstance(data, Dataset) else [("x_train", "y_train", data.train),
                                                                  ("x_test", "y_test", data.test)]
    for xk, yk, part in parts:
        x, y = np.asarray(part.x), np.asarray(part.y)
        bad = ~np.isfinite(x)
        if bad.any():
            raise ValueError(f"'{xk}' of {part.name} holds {_these(int(bad.sum()), 'value')} NaN or infinite "
                             "(float32 overflows to infinity beyond +-3.4e38), the first in example "
                             f"{_first_bad(bad)}")
        if y.size and int(y.min()) < 0:
            raise ValueError(f"'{yk}' of {part.name} holds {_these(int((y < 0).sum()), 'label')} negative after "
                             "the cast to int32 (labels of 2**31 or more wrap around), the first in example "
                             f"{_first_bad(y < 0)}; labels must be in [0, {MAX_CLASSES})")
        if part.num_classes > MAX_CLASSES:
            raise ValueError(f"'{yk}' of {part.name} has a largest label of {part.num_classes - 1}: labels "
                             f"must be in [0, {MAX_CLASSES}) (one network output per class)")


def _these(n: int, noun: str) -> str:
    """``"1 value that is"`` / ``"3 values that are"``."""
    return f"{n} {noun} that is" if n == 1 else f"{n} {noun}s that are"


def _image_shape(shape: tuple[int, ...]) -> tuple[int, ...] | None:
    """``(H, W, C)`` of image data of shape ``(n, H, W[, C])``; ``None`` for flat features."""
    if len(shape) == 3:
        return (int(shape[1]), int(shape[2]), 1)
    if len(shape) == 4:
        return tuple(int(n) for n in shape[1:])
    return None


def prepare_splits(data: Dataset | TrainTest, *, test_fraction: float = 0.2,
                   val_fraction: float = 0.2, key: PRNGKey | None = None, per_feature: bool = True) -> Splits:
    """Split (80/20 test, then 20% of the training part for validation) and scale to [0, 1].

    A :class:`Dataset` is split into train and test by ``key`` (default ``key(DATA_KEY)``); a
    :class:`TrainTest` keeps its test part. The validation part is carved from the training part
    with a second fixed key; the min-max statistics are fitted on the remaining training part,
    per feature, or over all features at once with ``per_feature=False``.

    Raises:
        ValueError: a part would be empty, the data has fewer than two classes, or it fails
            :func:`check_data`; or the features span more than float32's range (their
            ``max - min`` overflows, so they cannot be scaled).
    """
    check_data(data)
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

    stats = fit_min_max(flat(train.x), axis=0 if per_feature else (0, 1))
    if not bool(jnp.all(jnp.isfinite(stats.data_max - stats.data_min))):
        raise ValueError(f"prepare_splits: the features of {tt.train.name} span more than float32's range "
                         "(max - min overflows to infinity), so they cannot be scaled to [0, 1]")

    def scaled(x: Array) -> np.ndarray[Any, Any]:
        return np.asarray(min_max_scale(stats, flat(x)), np.float32)

    return Splits(scaled(train.x), np.asarray(train.y), scaled(val.x), np.asarray(val.y),
                  scaled(test.x), np.asarray(test.y), int(tt.train.num_classes), tt.train.name,
                  _image_shape(np.shape(train.x)))
