"""Datasets as typed records: scikit-learn's embedded digits, MNIST-format IDX files, ``.npz`` files.

Every loader returns :class:`Dataset` records (``x`` float32 features, ``y`` int32 labels,
``num_classes``, ``name``), with raw, *unscaled* values: scale them with
:mod:`functrain.data.scaling` fitted on the training part. Nothing is downloaded: the digits ship
inside scikit-learn, and MNIST-format files and ``.npz`` files are read from the paths you give.
"""

from __future__ import annotations

import gzip
import os
import zipfile
from pathlib import Path
from typing import Any, NamedTuple

import jax.numpy as jnp
import numpy as np
from jaxtyping import Float, Int

from functrain.data.batching import train_test_split
from functrain.typing import Array, PRNGKey

__all__ = [
    "Dataset",
    "TrainTest",
    "load_digits",
    "load_mnist",
    "load_npz",
    "read_idx",
    "split_dataset",
]

StrPath = str | os.PathLike[str]


class Dataset(NamedTuple):
    """A labelled classification dataset (a host-side record).

    Pass ``x`` and ``y`` to jitted functions, not the record itself (``name`` is a string).

    Attributes:
        x: features, float32: ``(n, d)`` flat, or ``(n, h, w, c)`` images (NHWC) where the loader
            was asked for images.
        y: integer class labels in ``[0, num_classes)``, int32, shape ``(n,)``.
        num_classes: the number of classes.
        name: a short name for tables and plots (``"digits"``, ``"mnist"``, the file's stem ...).
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
    """A dataset already split into a training and a test part."""

    train: Dataset
    test: Dataset


def _labels(y: np.ndarray[Any, Any], who: str, what: str) -> np.ndarray[Any, Any]:
    if y.ndim != 1:
        raise ValueError(f"{who}: {what} must be a 1-D array of class labels, got shape {y.shape}")
    if not (np.issubdtype(y.dtype, np.integer) or y.dtype == np.bool_):
        raise ValueError(
            f"{who}: {what} must hold integer class labels, got dtype {y.dtype} "
            "(cast them with y.astype(int) if they are whole numbers)"
        )
    if y.size and int(y.min()) < 0:
        raise ValueError(f"{who}: {what} must hold labels >= 0, got minimum {int(y.min())}")
    return y.astype(np.int32)


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
        ValueError: as ``train_test_split`` (bad fraction, an empty part).
    """
    (x_tr, y_tr), (x_te, y_te) = train_test_split(key, dataset.x, dataset.y,
                                                  test_fraction=test_fraction)
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
        ImportError: if scikit-learn is not installed, saying how to install it.
    """
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


# --------------------------------------------------------------------------- IDX / MNIST

# IDX type codes (third magic byte) -> big-endian NumPy dtype.
_IDX_DTYPES: dict[int, str] = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4",
                               0x0E: ">f8"}


def _read_bytes(path: Path, who: str) -> bytes:
    if not path.is_file():
        raise FileNotFoundError(f"{who}: file not found: {path}")
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":  # gzip magic, whatever the file is called
        try:
            return gzip.decompress(raw)
        except (OSError, EOFError) as e:
            raise ValueError(f"{who}: {path} is not a valid gzip file ({e})") from e
    return raw


def read_idx(path: StrPath) -> np.ndarray[Any, Any]:
    """Read one IDX file (the MNIST format), raw or gzip-compressed, into a NumPy array.

    Format (big-endian): two zero bytes, a type code (``0x08`` uint8, ``0x09`` int8, ``0x0B``
    int16, ``0x0C`` int32, ``0x0D`` float32, ``0x0E`` float64), the number of dimensions ``k``,
    then ``k`` uint32 sizes, then the data in C order. MNIST images are ``0x00000803`` (uint8,
    3-D) and labels ``0x00000801`` (uint8, 1-D).

    Args:
        path: the file; compressed files are recognised by their gzip magic bytes.

    Returns:
        The array, with the file's shape and dtype (native byte order).

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: the file is not valid IDX (bad magic, unknown type code, truncated or with
            trailing bytes), naming the file and the problem.
    """
    who = "read_idx"
    p = Path(path)
    raw = _read_bytes(p, who)
    if len(raw) < 4:
        raise ValueError(f"{who}: {p} is truncated: {len(raw)} bytes, too short for an IDX header")
    zero0, zero1, code, ndim = raw[0], raw[1], raw[2], raw[3]
    if zero0 != 0 or zero1 != 0 or code not in _IDX_DTYPES:
        raise ValueError(
            f"{who}: {p} has bad magic number 0x{int.from_bytes(raw[:4], 'big'):08x}; an IDX file "
            "starts with 0x0000 then a type code in {0x08, 0x09, 0x0b, 0x0c, 0x0d, 0x0e}"
        )
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(
            f"{who}: {p} is truncated: its header declares {ndim} dimensions but the file has "
            f"only {len(raw)} bytes"
        )
    shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    dtype = np.dtype(_IDX_DTYPES[code])
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    got = len(raw) - header
    if got != expected:
        problem = "truncated" if got < expected else "longer than its header says"
        raise ValueError(
            f"{who}: {p} is {problem}: shape {shape} of {dtype.name} needs {expected} data bytes, "
            f"found {got}"
        )
    data = np.frombuffer(raw, dtype=dtype, count=expected // dtype.itemsize, offset=header)
    return data.reshape(shape).astype(dtype.newbyteorder("="))


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
    labels = _read_idx_checked(lbl_path, 0x0801, 1, "labels")
    if images.shape[0] != labels.shape[0]:
        raise ValueError(
            f"{who}: {img_path.name} has {images.shape[0]} images but {lbl_path.name} has "
            f"{labels.shape[0]} labels"
        )
    return images, labels


def _read_idx_checked(path: Path, magic: int, rank: int, what: str) -> np.ndarray[Any, Any]:
    arr = read_idx(path)
    if arr.ndim != rank or arr.dtype != np.uint8:
        raise ValueError(
            f"load_mnist: {path} is not an MNIST {what} file: expected magic number 0x{magic:08x} "
            f"(uint8, {rank}-D), got a {arr.ndim}-D {arr.dtype} IDX array"
        )
    return arr


def load_mnist(directory: StrPath, *, as_images: bool = False, name: str = "mnist") -> TrainTest:
    """Load MNIST-format IDX files (MNIST, Fashion-MNIST, KMNIST ...) from ``directory``.

    Reads ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte`` and
    ``t10k-labels-idx1-ubyte`` (also with a ``.`` before ``idx``, and each either raw or with a
    ``.gz`` suffix and gzip-compressed). Nothing is downloaded. Pixel values are raw, ``0..255``
    as float32.

    Args:
        directory: the folder holding the four files.
        as_images: give ``x`` as NHWC images ``(n, rows, cols, 1)`` instead of flat
            ``(n, rows * cols)``.
        name: the datasets' name.

    Returns:
        :class:`TrainTest`; ``num_classes`` is ``1 + the largest label`` of both parts (10 for MNIST).

    Raises:
        FileNotFoundError: the directory or one of the files is missing (the message lists the
            names looked for).
        ValueError: a malformed file (bad magic number, truncated) or image/label counts that
            differ, naming the file.
    """
    d = Path(directory)
    if not d.is_dir():
        raise FileNotFoundError(f"load_mnist: directory not found: {d}")
    parts = [_read_mnist_pair(d, prefix) for prefix in ("train", "t10k")]
    num_classes = _num_classes(*(y for _, y in parts))
    out = []
    for images, labels in parts:
        x = images.astype(np.float32)
        x = x[..., None] if as_images else x.reshape(x.shape[0], -1)
        out.append(_make(x, labels, num_classes, name))
    return TrainTest(out[0], out[1])


# --------------------------------------------------------------------------- npz

_SPLIT_KEYS = ("x_train", "y_train", "x_test", "y_test")


def load_npz(path: StrPath, *, name: str | None = None) -> Dataset | TrainTest:
    """Load your own data from a NumPy ``.npz`` file (as written by ``np.savez``).

    The file holds either

    * ``x`` and ``y``: one :class:`Dataset` is returned (split it with :func:`split_dataset`), or
    * ``x_train``, ``y_train``, ``x_test`` and ``y_test``: a :class:`TrainTest` is returned.

    ``x`` is any numeric array ``(n, ...)`` (converted to float32, shape kept); ``y`` holds integer
    class labels ``(n,)`` (int32). ``num_classes`` is ``1 + the largest label``. Pickled objects are
    refused (``allow_pickle=False``).

    Args:
        path: the ``.npz`` file.
        name: the dataset's name; defaults to the file's stem.

    Returns:
        A :class:`Dataset` or a :class:`TrainTest`, depending on the keys.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: not an ``.npz`` file, missing or ambiguous keys, non-numeric ``x``, non-integer
            or negative labels, or ``x``/``y`` lengths that differ; the message names the file.
    """
    who = "load_npz"
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{who}: file not found: {p}")
    try:
        loaded = np.load(p, allow_pickle=False)
        if not isinstance(loaded, np.lib.npyio.NpzFile):
            raise ValueError(f"{who}: {p} holds a single array, not an .npz archive of x and y")
        with loaded as f:
            arrays = {k: np.asarray(f[k]) for k in f.files}
    except (zipfile.BadZipFile, OSError, EOFError) as e:
        raise ValueError(f"{who}: {p} is not a readable .npz file ({e})") from e
    except ValueError as e:
        if str(e).startswith(who):
            raise
        raise ValueError(f"{who}: {p} is not a readable .npz file ({e})") from e
    keys = set(arrays)
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
        x, y = arrays[xk], arrays[yk]
        if not (np.issubdtype(x.dtype, np.number) or x.dtype == np.bool_) or x.ndim == 0:
            raise ValueError(
                f"{who}: {p}: '{xk}' must be a numeric array (n, ...), got dtype {x.dtype}, "
                f"shape {x.shape}"
            )
        y = _labels(y, who, f"{p}: '{yk}'")
        if x.shape[0] == 0:
            raise ValueError(f"{who}: {p}: '{xk}' has no examples")
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
