"""Datasets as typed records: scikit-learn's embedded digits, MNIST-format files, ``.npz`` files.

Every loader returns :class:`Dataset` records (``x`` float32 features, ``y`` int32 labels,
``num_classes``, ``name``), with raw, *unscaled* values: scale them with
:mod:`functrain.data.scaling` fitted on the training part. The digits ship inside scikit-learn;
MNIST-format files and ``.npz`` files are read from the paths you give (the IDX file format itself
is read by :func:`functrain.data.idx.read_idx`); only ``load_mnist(..., download=True)`` downloads
(:mod:`functrain.data.download`).

Loaders fail loudly and change nothing silently: a malformed or damaged file is one ``ValueError``
naming the file and what is wrong, and values are checked as stored, before the float32/int32
casts (non-finite or float32-overflowing features, complex features, labels outside
``[0, 2**31 - 1)`` are refused, with the count and the first bad index).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, NamedTuple, cast

import jax.numpy as jnp
import numpy as np
from jaxtyping import Float, Int

from functrain import _validate
from functrain.data import _values
from functrain.data._files import StrPath, as_path, npz_members, read_npz_array
from functrain.data.batching import split_arrays
from functrain.data.idx import read_idx
from functrain.typing import Array, PRNGKey

__all__ = [
    "Dataset",
    "TrainTest",
    "load_digits",
    "load_mnist",
    "load_npz",
    "split_dataset",
]

def _check_name(name: object, who: str, *, optional: bool = False) -> None:
    if not (isinstance(name, str) or (optional and name is None)):
        _validate.fail(who, "name", "a str or None" if optional else "a str", name,
                       error=TypeError)


class Dataset(NamedTuple):
    """A labelled classification dataset (a host-side record).

    Pass ``x`` and ``y`` to jitted functions, not the record itself (``name`` is a string).

    Attributes:
        x: features, float32: ``(n, d)`` flat, or ``(n, h, w, c)`` images (NHWC) where the loader
            was asked for images.
        y: integer class labels in ``[0, num_classes)``, int32, shape ``(n,)``.
        num_classes: the number of classes.
        name: a short name for tables and plots (``"digits"``, ``"mnist"``, the file's stem ...).

    Example:
        >>> ds = ft.data.Dataset(x=jnp.zeros((4, 3)), y=jnp.array([0, 1, 2, 1]), num_classes=3,
        ...                      name="toy")
        >>> ds.num_examples, ds.x.shape, ds.num_classes
        (4, (4, 3), 3)
    """

    x: Float[Array, "n *features"]
    y: Int[Array, " n"]
    num_classes: int
    name: str

    @property
    def num_examples(self) -> int:
        """The number of examples ``n``."""
        return int(self.x.shape[0])


class TrainTest(NamedTuple):
    """A dataset already split into a training and a test part.

    Attributes:
        train: the training part.
        test: the test part (same ``num_classes`` and ``name``).

    Example:
        >>> ds = ft.data.Dataset(jnp.zeros((10, 2)), jnp.arange(10) % 2, 2, "toy")
        >>> parts = ft.data.split_dataset(jax.random.key(0), ds, test_fraction=0.2)
        >>> isinstance(parts, ft.data.TrainTest), parts.train.num_examples, parts.test.num_examples
        (True, 8, 2)
    """

    train: Dataset
    test: Dataset


def _num_classes(*ys: np.ndarray[Any, Any]) -> int:
    return 1 + max((int(y.max()) for y in ys if y.size), default=-1)


def _make(x: np.ndarray[Any, Any], y: np.ndarray[Any, Any], num_classes: int, name: str) -> Dataset:
    return Dataset(jnp.asarray(x, jnp.float32), jnp.asarray(y, jnp.int32), num_classes, name)


def split_dataset(key: PRNGKey, dataset: Dataset, *, test_fraction: float = 0.2) -> TrainTest:
    """Randomly split a :class:`Dataset` into train and test parts (see ``train_test_split``).

    Args:
        key: PRNG key of the permutation.
        dataset: the dataset to split.
        test_fraction: fraction of examples in the test part, in ``(0, 1)``.

    Returns:
        :class:`TrainTest` with the same ``num_classes`` and ``name`` in both parts.

    Raises:
        TypeError: ``dataset`` is not a :class:`Dataset`, ``key`` not a PRNG key, or
            ``test_fraction`` not a number.
        ValueError: as ``train_test_split`` (bad fraction, an empty part).

    Example:
        >>> ds = ft.data.Dataset(jnp.zeros((5, 2)), jnp.array([0, 1, 0, 1, 1]), 2, "toy")
        >>> train, test = ft.data.split_dataset(jax.random.key(0), ds, test_fraction=0.4)
        >>> train.x.shape, test.x.shape, test.name
        ((3, 2), (2, 2), 'toy')
    """
    who = "split_dataset"
    if not isinstance(cast(object, dataset), Dataset):  # the static type is not enforced
        _validate.fail(who, "dataset", "a functrain.data.Dataset", dataset, error=TypeError)
    (x_tr, y_tr), (x_te, y_te) = split_arrays(key, (dataset.x, dataset.y), test_fraction, who)
    return TrainTest(dataset._replace(x=x_tr, y=y_tr), dataset._replace(x=x_te, y=y_te))


# --------------------------------------------------------------------------- digits

def load_digits(*, as_images: bool = False) -> Dataset:
    """scikit-learn's embedded handwritten digits (1797 8x8 images of 0-9, UCI ML repository).

    No download: the data ships inside scikit-learn (``pip install functrain[examples]``).
    Pixel values are raw grey levels, integers ``0..16`` stored as float32.

    Args:
        as_images: return ``x`` as NHWC images ``(1797, 8, 8, 1)`` instead of flat ``(1797, 64)``.

    Returns:
        ``Dataset(x, y, num_classes=10, name="digits")``.

    Raises:
        TypeError: ``as_images`` is not a bool.
        ImportError: if scikit-learn is not installed, saying how to install it.

    Example:
        >>> digits = ft.data.load_digits()
        >>> digits.x.shape, digits.x.dtype, digits.y.dtype, digits.num_classes, digits.name
        ((1797, 64), dtype('float32'), dtype('int32'), 10, 'digits')
        >>> ft.data.load_digits(as_images=True).x.shape
        (1797, 8, 8, 1)
    """
    as_images = _validate.check_bool(as_images, "load_digits", "as_images")
    try:
        from sklearn.datasets import load_digits as sk_load_digits
    except ImportError as e:
        raise ImportError(
            "functrain.data.load_digits needs scikit-learn, which is an optional dependency: "
            "pip install 'functrain[examples]'"
        ) from e
    x, y = sk_load_digits(return_X_y=True)
    x = np.asarray(x, np.float32)
    if as_images:
        x = x.reshape(-1, 8, 8, 1)
    return _make(x, np.asarray(y), 10, "digits")


# --------------------------------------------------------------------------- MNIST

def _find_idx(directory: Path, prefix: str, kind: str, rank: int) -> Path:
    stems = [f"{prefix}-{kind}-idx{rank}-ubyte", f"{prefix}-{kind}.idx{rank}-ubyte"]
    candidates = [directory / (s + ext) for s in stems for ext in ("", ".gz")]
    for c in candidates:
        if c.is_file():
            return c
    raise FileNotFoundError(
        f"load_mnist: no {prefix} {kind} file in {directory}; looked for "
        + ", ".join(c.name for c in candidates)
    )


def _read_mnist_pair(directory: Path, prefix: str) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    who = "load_mnist"
    img_path = _find_idx(directory, prefix, "images", 3)
    lbl_path = _find_idx(directory, prefix, "labels", 1)
    images = _read_idx_checked(img_path, 0x0803, 3, "images")
    targets = _read_idx_checked(lbl_path, 0x0801, 1, "labels")
    if images.shape[0] == 0:
        raise ValueError(f"{who}: {img_path} holds no images (its header declares shape "
                         f"{images.shape})")
    if images.shape[1] == 0 or images.shape[2] == 0:
        raise ValueError(f"{who}: {img_path} holds images of {images.shape[1]}x{images.shape[2]} "
                         "pixels (no pixels)")
    if images.shape[0] != targets.shape[0]:
        raise ValueError(
            f"{who}: {img_path.name} has {images.shape[0]} images but {lbl_path.name} has "
            f"{targets.shape[0]} labels"
        )
    return images, targets


def _read_idx_checked(path: Path, magic: int, rank: int, what: str) -> np.ndarray[Any, Any]:
    arr = read_idx(path)
    if arr.ndim != rank or arr.dtype != np.uint8:
        raise ValueError(
            f"load_mnist: {path} is not an MNIST {what} file: expected magic number 0x{magic:08x} "
            f"(uint8, {rank}-D), got a {arr.ndim}-D {arr.dtype} IDX array"
        )
    return arr


def load_mnist(directory: StrPath | None = None, *, download: bool = False, as_images: bool = False,
               name: str = "mnist", mirrors: Sequence[str] | None = None,
               checksums: Mapping[str, str] | None = None) -> TrainTest:
    """Load MNIST-format IDX files (MNIST, Fashion-MNIST, KMNIST ...) from ``directory``.

    Reads ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte`` and
    ``t10k-labels-idx1-ubyte`` (also with a ``.`` before ``idx``, and each either raw or with a
    ``.gz`` suffix and gzip-compressed). Pixel values are raw, ``0..255`` as float32.

    Nothing is downloaded unless ``download=True``: then the four official gzip files of MNIST
    (or of Fashion-MNIST when ``name`` starts with ``"fashion"``) are fetched first, when not
    already there intact, by :func:`~functrain.data.fetch_mnist` (SHA-256 checked, written
    atomically, the next mirror tried on failure).

    Args:
        directory: the folder holding the four files; ``None`` for the data cache directory
            (:func:`~functrain.data.cache_directory` ``/ "mnist"``, or ``/ "fashion-mnist"`` for
            a name starting with ``"fashion"``), where ``download=True`` puts them.
        download: fetch the files that are missing (or damaged) first.
        as_images: give ``x`` as NHWC images ``(n, rows, cols, 1)`` instead of flat
            ``(n, rows * cols)``.
        name: the datasets' name; with ``download`` (or ``directory=None``) a name starting
            with ``"fashion"`` means Fashion-MNIST, any other MNIST.
        mirrors: with ``download``: base URLs to try (default: the known mirrors).
        checksums: with ``download``: file name -> SHA-256 of the four files (default: the
            official ones).

    Returns:
        :class:`TrainTest`; ``num_classes`` is ``1 + the largest label`` of both parts (10 for MNIST).

    Raises:
        FileNotFoundError: the directory or one of the files is missing (the message lists the
            names looked for).
        functrain.data.DownloadError: with ``download``, a file no mirror delivered intact (one
            line naming the URLs tried).
        NotADirectoryError: ``directory`` is a file.
        ValueError: naming the file: a malformed file (see :func:`~functrain.data.read_idx`: a
            damaged gzip stream, a bad magic number, a header that does not match the data), an
            images file that is not uint8 3-D or a labels file not uint8 1-D, no images, images
            of zero rows or columns, or image and label counts that differ.
        TypeError: ``directory`` is not a path or ``None``, ``download`` or ``as_images`` not a
            bool, or ``name`` not a str.

    Example:
        >>> import pathlib, tempfile
        >>> def idx(a):  # IDX bytes of a uint8 array: 0x0000, type code 0x08, rank, sizes, data
        ...     sizes = b"".join(int(n).to_bytes(4, "big") for n in a.shape)
        ...     return bytes([0, 0, 0x08, a.ndim]) + sizes + a.tobytes()
        >>> with tempfile.TemporaryDirectory() as d:
        ...     for part, n in (("train", 6), ("t10k", 2)):
        ...         images, labels = np.zeros((n, 4, 4), np.uint8), np.arange(n, dtype=np.uint8) % 3
        ...         _ = pathlib.Path(d, f"{part}-images-idx3-ubyte").write_bytes(idx(images))
        ...         _ = pathlib.Path(d, f"{part}-labels-idx1-ubyte").write_bytes(idx(labels))
        ...     mnist = ft.data.load_mnist(d, as_images=True)
        >>> mnist.train.x.shape, mnist.test.x.shape, mnist.train.num_classes
        ((6, 4, 4, 1), (2, 4, 4, 1), 3)
    """
    who = "load_mnist"
    if directory is not None:
        as_path(directory, who, "directory")
    download = _validate.check_bool(download, who, "download")
    as_images = _validate.check_bool(as_images, who, "as_images")
    _check_name(name, who)
    d = _mnist_directory(directory, name, download, mirrors, checksums)
    if not d.is_dir():
        if d.exists():
            raise NotADirectoryError(f"{who}: {d} is not a directory (give the folder holding the "
                                     "four MNIST files)")
        raise FileNotFoundError(f"{who}: directory not found: {d}")
    parts = [_read_mnist_pair(d, prefix) for prefix in ("train", "t10k")]
    num_classes = _num_classes(*(y for _, y in parts))
    out: list[Dataset] = []
    for images, labels in parts:
        x = images.astype(np.float32)
        x = x[..., None] if as_images else x.reshape(x.shape[0], -1)
        out.append(_make(x, labels, num_classes, name))
    return TrainTest(out[0], out[1])


def _mnist_directory(directory: StrPath | None, name: str, download: bool, mirrors: Sequence[str] | None,
                     checksums: Mapping[str, str] | None) -> Path:
    """Where :func:`load_mnist` reads: ``directory`` or the cache, after downloading if asked."""
    from functrain.data.download import cache_directory, fetch_mnist

    kind: Literal["mnist", "fashion"] = "fashion" if name.lower().startswith("fashion") else "mnist"
    if download:
        return fetch_mnist(directory, kind=kind, mirrors=mirrors, checksums=checksums)
    if directory is None:
        return cache_directory() / ("fashion-mnist" if kind == "fashion" else "mnist")
    return as_path(directory, "load_mnist", "directory")


# --------------------------------------------------------------------------- npz

_SPLIT_KEYS = ("x_train", "y_train", "x_test", "y_test")


def load_npz(path: StrPath, *, name: str | None = None) -> Dataset | TrainTest:
    """Load your own data from a NumPy ``.npz`` file (as written by ``np.savez``).

    The file holds either

    * ``x`` and ``y``: one :class:`Dataset` is returned (split it with :func:`split_dataset`), or
    * ``x_train``, ``y_train``, ``x_test`` and ``y_test``: a :class:`TrainTest` is returned.

    ``x`` is a real numeric array ``(n, ...)`` with at least one feature per example, converted to
    float32 (shape kept). ``y`` holds class labels ``(n,)`` in ``[0, 2**31 - 1)``: integers (or
    bools), or floats that are all whole numbers (as tools that store everything as float64
    write them), converted to int32. ``num_classes`` is ``1 + the largest label``. Other arrays
    in the file are not read.

    Nothing is changed silently on the way in: every check runs on the values as stored, before
    any cast. NaN or infinite features, float64 features beyond float32's range (which would
    become ``inf``), complex features (whose imaginary part a cast would drop), non-whole float
    labels and labels out of range (``2**31`` would wrap to ``-2**31`` in int32) are refused, and
    the message says how many values are bad and where the first one is. Arrays of Python objects
    are never loaded (unpickling can run arbitrary code).

    Args:
        path: the ``.npz`` file.
        name: the dataset's name; defaults to the file's stem.

    Returns:
        A :class:`Dataset` or a :class:`TrainTest`, depending on the keys.

    Raises:
        FileNotFoundError: the file does not exist.
        IsADirectoryError: ``path`` is a directory.
        ValueError: naming the file: it is not an ``.npz`` archive (a text file, a pickle, a
            single ``.npy`` array), or a damaged one (truncated, failed checksum, corrupted
            compressed data, an array header that does not match its data); missing or
            ambiguous keys; an array of Python objects; ``x`` non-numeric, complex, without
            examples or features, with NaN/infinite values or values beyond float32's range;
            ``y`` not 1-D, non-integer (floats that are not whole numbers) or out of range;
            ``x``/``y`` lengths or ``x_train``/``x_test`` example shapes that differ.
        TypeError: ``path`` is not a path or ``name`` not a str.

    Example:
        >>> import pathlib, tempfile
        >>> with tempfile.TemporaryDirectory() as d:
        ...     path = pathlib.Path(d, "mine.npz")
        ...     np.savez(path, x=np.ones((4, 3)), y=np.array([0, 2, 1, 2]))
        ...     mine = ft.data.load_npz(path)
        ...     np.savez(path, x=np.array([[1.0, np.nan]]), y=np.array([0]))
        ...     try:
        ...         ft.data.load_npz(path)
        ...     except ValueError as e:
        ...         print(str(e).split(": ", 2)[2])
        'x' must hold finite numbers, got 1 NaN or infinite value
        (the first at index (0, 1): nan)
        >>> type(mine).__name__, mine.x.shape, mine.num_classes, mine.name
        ('Dataset', (4, 3), 3, 'mine')
    """
    who = "load_npz"
    p = as_path(path, who)
    _check_name(name, who, optional=True)
    members = npz_members(p, who)
    keys = set(members)
    has_xy = {"x", "y"} <= keys
    has_split = set(_SPLIT_KEYS) <= keys
    if has_xy == has_split:
        why = "both" if has_xy else "neither"
        raise ValueError(
            f"{who}: {p} must hold either arrays 'x' and 'y', or 'x_train', 'y_train', 'x_test' and "
            f"'y_test' ({why} found); it has {sorted(keys)}"
        )
    label = p.stem if name is None else name

    def part(xk: str, yk: str) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
        x = _values.features(read_npz_array(p, members[xk], who), f"{who}: {p}: '{xk}'")
        y = _values.labels(read_npz_array(p, members[yk], who), who, f"{who}: {p}: '{yk}'", yk)
        if x.shape[0] != y.shape[0]:
            raise ValueError(
                f"{who}: {p}: '{xk}' has {x.shape[0]} examples but '{yk}' has {y.shape[0]} labels"
            )
        return x, y

    if has_xy:
        x, y = part("x", "y")
        return _make(x, y, _num_classes(y), label)
    (x_tr, y_tr), (x_te, y_te) = part("x_train", "y_train"), part("x_test", "y_test")
    if x_tr.shape[1:] != x_te.shape[1:]:
        raise ValueError(
            f"{who}: {p}: 'x_train' examples have shape {x_tr.shape[1:]} but 'x_test' examples "
            f"have shape {x_te.shape[1:]}"
        )
    num_classes = _num_classes(y_tr, y_te)
    return TrainTest(_make(x_tr, y_tr, num_classes, label), _make(x_te, y_te, num_classes, label))
