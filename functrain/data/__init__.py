"""Data utilities: scaling fitted on training data, splitting and batching, dataset loaders.

``functrain.data`` re-exports everything public from its four modules:

* :mod:`functrain.data.scaling` -- ``fit_min_max``/``min_max_scale`` and
  ``fit_standardize``/``standardize`` (fit -> statistics NamedTuple -> transform), with inverses;
* :mod:`functrain.data.batching` -- ``train_test_split``, ``batches``, ``num_batches``;
* :mod:`functrain.data.datasets` -- ``Dataset``/``TrainTest`` records, ``load_digits``,
  ``load_mnist``, ``load_npz``, ``split_dataset``;
* :mod:`functrain.data.idx` -- ``read_idx``, the IDX file format of MNIST.
"""

from functrain.data.augment import cutmix, mixup
from functrain.data.batching import batches, num_batches, train_test_split
from functrain.data.datasets import (
    Dataset,
    TrainTest,
    load_digits,
    load_mnist,
    load_npz,
    split_dataset,
)
from functrain.data.download import (
    MIRRORS,
    MNIST_FILES,
    DownloadError,
    cache_directory,
    download_file,
    fetch_mnist,
)
from functrain.data.idx import read_idx
from functrain.data.scaling import (
    MinMaxStats,
    StandardizeStats,
    fit_min_max,
    fit_standardize,
    inverse_min_max_scale,
    inverse_standardize,
    min_max_scale,
    standardize,
)

__all__ = [
    "MIRRORS",
    "MNIST_FILES",
    "Dataset",
    "DownloadError",
    "MinMaxStats",
    "StandardizeStats",
    "TrainTest",
    "batches",
    "cache_directory",
    "cutmix",
    "download_file",
    "fetch_mnist",
    "fit_min_max",
    "fit_standardize",
    "inverse_min_max_scale",
    "inverse_standardize",
    "load_digits",
    "load_mnist",
    "load_npz",
    "min_max_scale",
    "mixup",
    "num_batches",
    "read_idx",
    "split_dataset",
    "standardize",
    "train_test_split",
]
