"""The data of the trick experiments: train / validation / test parts, scaled to [0, 1].

``load_data`` reads the embedded digits, MNIST or Fashion-MNIST (downloaded once into the data
cache directory, see :func:`functrain.data.load_mnist`) or an ``.npz`` file. ``prepare_splits``
holds out a test part (80/20, by a fixed key; MNIST keeps its own test set), then 20% of the
training part for validation (early stopping watches it), and min-max scales all three with
statistics of the remaining training part only: per feature (pixel) by default, or one range for
all of them (``per_feature=False``, what convolutions want). The arrays stay flat; images keep
their shape in ``Splits.image_shape``. ``label_noise`` replaces an exact fraction of the training
and validation labels by other classes, by a fixed key (:func:`noisy_labels`); the test labels stay
clean, so the test numbers measure how well a network learned the true classes from noisy data.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from functrain._validate import check_fraction, fail
from functrain.data import Dataset, TrainTest, fit_min_max, load_digits, load_npz, min_max_scale, split_dataset
from functrain.typing import Array, PRNGKey

__all__ = ["DATA_KEY", "DATA_SOURCES", "DEFAULT_LABEL_NOISE", "MAX_CLASSES", "NOISE_KEY", "Splits", "check_data",
           "load_data", "noisy_labels", "prepare_splits"]

DATA_KEY = 0
"""Seed of the fixed key that splits the data (test part, then validation part)."""

DATA_SOURCES = ("digits", "mnist", "fashion-mnist")
"""The data sets by name (anything else is the path of an ``.npz`` file)."""

DEFAULT_LABEL_NOISE = 0.3
"""The label noise of ``functrain tricks`` (``--label-noise``): 30% of the training and validation labels wrong."""

NOISE_KEY = 0x6E6F6973
"""Folded into the data key for the label noise (so the test and validation splits do not change)."""

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


def noisy_labels(key: PRNGKey, labels: np.ndarray[Any, Any], fraction: float,
                 num_classes: int) -> np.ndarray[Any, Any]:
    """``labels`` with exactly ``round(fraction * n)`` of them replaced by another class, at random.

    The examples to change are a uniformly random subset of that size; each gets a class drawn
    uniformly from the ``num_classes - 1`` others (``(y + u) mod C`` with ``u`` uniform in
    ``[1, C)``), so exactly that fraction of the labels is wrong: symmetric label noise (e.g.
    Zhang et al. 2017, "Understanding deep learning requires rethinking generalization").

    Args:
        key: the PRNG key (the same key gives the same labels).
        labels: ``(n,)`` integer labels in ``[0, num_classes)``.
        fraction: the fraction of labels to replace, in ``[0, 1]``.
        num_classes: ``C >= 2``.

    Returns:
        A new ``(n,)`` array of the same dtype (``labels`` is not modified).

    Raises:
        ValueError: ``fraction`` outside ``[0, 1]`` or fewer than two classes.

    Example:
        >>> from functrain.experiments.tricks.splits import noisy_labels
        >>> y = np.arange(10) % 3
        >>> noisy = noisy_labels(jax.random.key(0), y, 0.3, 3)
        >>> int((noisy != y).sum()), bool(((0 <= noisy) & (noisy < 3)).all())
        (3, True)
    """
    who = "noisy_labels"
    check_fraction(fraction, who, "fraction", closed_right=True)
    if num_classes < 2:
        fail(who, "num_classes", "an int >= 2 (another class to change a label to)", num_classes)
    y = np.asarray(labels)
    n_wrong = int(round(fraction * y.shape[0]))
    pick_key, class_key = jax.random.split(key)
    chosen = np.asarray(jax.random.permutation(pick_key, y.shape[0]))[:n_wrong]
    shift = np.asarray(jax.random.randint(class_key, (n_wrong,), 1, num_classes))
    out = y.copy()
    out[chosen] = (y[chosen] + shift) % num_classes
    return out


def prepare_splits(data: Dataset | TrainTest, *, test_fraction: float = 0.2,
                   val_fraction: float = 0.2, key: PRNGKey | None = None, per_feature: bool = True,
                   label_noise: float = 0.0) -> Splits:
    """Split (80/20 test, then 20% of the training part for validation) and scale to [0, 1].

    A :class:`Dataset` is split into train and test by ``key`` (default ``key(DATA_KEY)``); a
    :class:`TrainTest` keeps its test part. The validation part is carved from the training part
    with a second fixed key; the min-max statistics are fitted on the remaining training part,
    per feature, or over all features at once with ``per_feature=False``. With ``label_noise =
    f > 0``, exactly ``round(f * n)`` of the training labels and of the validation labels are
    replaced by other classes (:func:`noisy_labels`, keys folded from ``key`` with
    :data:`NOISE_KEY`: the splits themselves do not change); the test labels stay clean.

    Raises:
        ValueError: a part would be empty, the data has fewer than two classes, or it fails
            :func:`check_data`; or the features span more than float32's range (their
            ``max - min`` overflows, so they cannot be scaled); or ``label_noise`` is outside
            ``[0, 1)``.
    """
    check_data(data)
    check_fraction(label_noise, "prepare_splits", "label_noise")
    k = jax.random.key(DATA_KEY) if key is None else key
    test_key, val_key = jax.random.split(k)
    tt = split_dataset(test_key, data, test_fraction=test_fraction) if isinstance(data, Dataset) else data
    train_val = split_dataset(val_key, tt.train, test_fraction=val_fraction)
    train, val, test = train_val.train, train_val.test, tt.test
    if tt.train.num_classes < 2:
        fail("prepare_splits", "data", "data with at least two classes", int(tt.train.num_classes),
             detail="counted in the training part")

    def flat(x: Array) -> Array:
        return jnp.asarray(x).reshape(x.shape[0], -1)

    stats = fit_min_max(flat(train.x), axis=0 if per_feature else (0, 1))
    if not bool(jnp.all(jnp.isfinite(stats.data_max - stats.data_min))):
        raise ValueError(f"prepare_splits: the features of {tt.train.name} span more than float32's range "
                         "(max - min overflows to infinity), so they cannot be scaled to [0, 1]")

    def scaled(x: Array) -> np.ndarray[Any, Any]:
        return np.asarray(min_max_scale(stats, flat(x)), np.float32)

    y_train, y_val, classes = np.asarray(train.y), np.asarray(val.y), int(tt.train.num_classes)
    if label_noise > 0:
        train_noise, val_noise = jax.random.split(jax.random.fold_in(k, NOISE_KEY))
        y_train = noisy_labels(train_noise, y_train, label_noise, classes)
        y_val = noisy_labels(val_noise, y_val, label_noise, classes)
    return Splits(scaled(train.x), y_train, scaled(val.x), y_val, scaled(test.x), np.asarray(test.y), classes,
                  tt.train.name, _image_shape(np.shape(train.x)))
