"""Dataset loaders: embedded digits, MNIST-format IDX files and .npz files written by the tests."""

from __future__ import annotations

import gzip
import re
import struct
import sys
from collections.abc import Callable
from pathlib import Path

import jax
import numpy as np
import pytest

from functrain.data import (
    Dataset,
    TrainTest,
    load_digits,
    load_mnist,
    load_npz,
    read_idx,
    split_dataset,
)

RNG = np.random.default_rng(0)
STYLE = re.compile(r"^[\w.]+: argument '[\w.\[\]']+' must be .+, got .+$", re.S)


# ------------------------------------------------------------------------------- digits

def test_load_digits_matches_scikit_learn() -> None:
    from sklearn.datasets import load_digits as sk_load_digits

    ds = load_digits()
    x_ref, y_ref = sk_load_digits(return_X_y=True)
    assert isinstance(ds, Dataset)
    assert (ds.num_classes, ds.name, ds.num_examples) == (10, "digits", 1797)
    assert ds.x.shape == (1797, 64) and ds.x.dtype == np.float32
    assert ds.y.shape == (1797,) and ds.y.dtype == np.int32
    np.testing.assert_array_equal(ds.x, x_ref)
    np.testing.assert_array_equal(ds.y, y_ref)
    assert float(ds.x.min()) == 0.0 and float(ds.x.max()) == 16.0
    assert sorted(set(np.asarray(ds.y).tolist())) == list(range(10))
    images = load_digits(as_images=True)
    assert images.x.shape == (1797, 8, 8, 1)
    np.testing.assert_array_equal(images.x[5, :, :, 0], x_ref[5].reshape(8, 8))


def test_load_digits_without_scikit_learn_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "sklearn", None)
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    with pytest.raises(ImportError, match=r"load_digits needs scikit-learn.*pip install 'functrain\[examples\]'"):
        load_digits()


def test_split_dataset_keeps_metadata() -> None:
    ds = Dataset(jax.numpy.arange(20.0).reshape(10, 2), jax.numpy.arange(10) % 3, 3, "toy")
    tt = split_dataset(jax.random.key(0), ds, test_fraction=0.3)
    assert isinstance(tt, TrainTest)
    assert (tt.train.num_examples, tt.test.num_examples) == (7, 3)
    assert (tt.test.num_classes, tt.test.name) == (3, "toy")
    np.testing.assert_array_equal(tt.test.x[:, 0] / 2, np.asarray(jax.random.permutation(jax.random.key(0), 10))[:3])


def _message(exc: type[Exception], fn: Callable[..., object], *args: object,
             **kwargs: object) -> str:
    """Call ``fn``, expect ``exc`` with a message in the library's one style, return it."""
    with pytest.raises(exc) as info:
        fn(*args, **kwargs)
    text = str(info.value)
    assert STYLE.match(text), text
    return text


def test_arguments_are_checked_in_the_one_style(tmp_path: Path) -> None:
    ds = Dataset(jax.numpy.zeros((4, 2)), jax.numpy.arange(4) % 2, 2, "toy")
    assert "'as_images' must be a bool, got 'yes'" in _message(TypeError, load_digits, as_images="yes")
    assert "'dataset' must be a functrain.data.Dataset" in _message(
        TypeError, split_dataset, jax.random.key(0), (ds.x, ds.y))
    assert _message(ValueError, split_dataset, jax.random.key(0), ds, test_fraction=1.5).startswith(
        "split_dataset: argument 'test_fraction' must be in (0, 1)")
    assert "split_dataset: argument 'test_fraction' must be a fraction that leaves both parts" in (
        _message(ValueError, split_dataset, jax.random.key(0), ds, test_fraction=0.99))
    assert "split_dataset: argument 'key' must be a PRNG key" in _message(
        TypeError, split_dataset, 0, ds)
    assert "read_idx: argument 'path' must be a path" in _message(TypeError, read_idx, 3)
    assert "load_mnist: argument 'directory' must be a path" in _message(TypeError, load_mnist, 3)
    assert "load_mnist: argument 'as_images' must be a bool" in _message(
        TypeError, load_mnist, tmp_path, as_images=1)
    assert "load_mnist: argument 'name' must be a str, got 3" in _message(
        TypeError, load_mnist, tmp_path, name=3)
    assert "load_npz: argument 'name' must be a str or None, got 3" in _message(
        TypeError, load_npz, tmp_path / "a.npz", name=3)
    assert "load_npz: argument 'path' must be a path" in _message(TypeError, load_npz, b"a.npz")


# ------------------------------------------------------------------------------- IDX files

def _idx_bytes(arr: np.ndarray, code: int) -> bytes:
    """An independent IDX writer: magic (0, 0, type code, ndim), big-endian dims, big-endian data."""
    big = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}[code]
    header = struct.pack(">BBBB", 0, 0, code, arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape)
    return header + arr.astype(big).tobytes()


def _write(path: Path, payload: bytes, *, gz: bool = False) -> Path:
    path.write_bytes(gzip.compress(payload) if gz else payload)
    return path


@pytest.mark.parametrize("code", [0x08, 0x09, 0x0B, 0x0C, 0x0D, 0x0E])
def test_read_idx_round_trips_every_type(tmp_path: Path, code: int) -> None:
    arr = RNG.integers(-100, 100, size=(3, 4, 2))
    if code == 0x08:
        arr = np.abs(arr)
    got = read_idx(_write(tmp_path / "a.idx", _idx_bytes(arr, code)))
    np.testing.assert_array_equal(got, arr)
    assert got.shape == (3, 4, 2)
    zipped = read_idx(_write(tmp_path / "a.idx.gz", _idx_bytes(arr, code), gz=True))
    np.testing.assert_array_equal(zipped, arr)


def _mnist_dir(root: Path, *, gz: bool, n_train: int = 5, n_test: int = 3,
               sep: str = "-") -> tuple[Path, dict[str, np.ndarray]]:
    arrays = {
        "train-images": RNG.integers(0, 256, size=(n_train, 4, 3), dtype=np.uint8),
        "train-labels": RNG.integers(0, 10, size=n_train, dtype=np.uint8),
        "t10k-images": RNG.integers(0, 256, size=(n_test, 4, 3), dtype=np.uint8),
        "t10k-labels": np.array([9] + [0] * (n_test - 1), np.uint8),
    }
    for stem, a in arrays.items():
        rank = 3 if "images" in stem else 1
        name = f"{stem}{sep}idx{rank}-ubyte" + (".gz" if gz else "")
        _write(root / name, _idx_bytes(a, 0x08), gz=gz)
    return root, arrays


@pytest.mark.parametrize(("gz", "sep"), [(False, "-"), (True, "-"), (False, ".")])
def test_load_mnist_reads_idx_files(tmp_path: Path, gz: bool, sep: str) -> None:
    root, a = _mnist_dir(tmp_path, gz=gz, sep=sep)
    tt = load_mnist(root)
    assert isinstance(tt, TrainTest)
    assert tt.train.x.shape == (5, 12) and tt.train.x.dtype == np.float32
    assert tt.test.x.shape == (3, 12) and tt.test.y.dtype == np.int32
    np.testing.assert_array_equal(tt.train.x, a["train-images"].reshape(5, 12))
    np.testing.assert_array_equal(tt.train.y, a["train-labels"])
    np.testing.assert_array_equal(tt.test.y, a["t10k-labels"])
    assert tt.train.num_classes == tt.test.num_classes == 10
    assert tt.train.name == "mnist"
    images = load_mnist(root, as_images=True, name="fashion")
    assert images.test.x.shape == (3, 4, 3, 1) and images.test.name == "fashion"
    np.testing.assert_array_equal(images.test.x[..., 0], a["t10k-images"])


def test_load_mnist_reports_missing_files(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"load_mnist: directory not found: .*nowhere"):
        load_mnist(tmp_path / "nowhere")
    root, _ = _mnist_dir(tmp_path, gz=False)
    (root / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(FileNotFoundError,
                       match=r"load_mnist: no t10k labels file in .*looked for t10k-labels-idx1-ubyte, "
                             r"t10k-labels-idx1-ubyte.gz"):
        load_mnist(root)
    with pytest.raises(FileNotFoundError, match=r"read_idx: file not found: .*missing"):
        read_idx(tmp_path / "missing")


def test_load_mnist_reports_malformed_files(tmp_path: Path) -> None:
    root, a = _mnist_dir(tmp_path, gz=False)
    images = root / "train-images-idx3-ubyte"
    good = images.read_bytes()

    images.write_bytes(b"\x12\x34" + good[2:])
    with pytest.raises(ValueError, match=r"read_idx: .*train-images-idx3-ubyte has bad magic number 0x12340803"):
        load_mnist(root)
    images.write_bytes(good[:-7])
    with pytest.raises(ValueError, match=r"train-images-idx3-ubyte is truncated: shape \(5, 4, 3\) of uint8 "
                                         r"needs 60 data bytes, found 53"):
        load_mnist(root)
    images.write_bytes(good + b"\0")
    with pytest.raises(ValueError, match=r"is longer than its header says"):
        load_mnist(root)
    images.write_bytes(good[:9])
    with pytest.raises(ValueError, match=r"is truncated: its header declares 3 dimensions"):
        load_mnist(root)
    images.write_bytes(good[:2])
    with pytest.raises(ValueError, match=r"is truncated: 2 bytes"):
        load_mnist(root)
    images.write_bytes(_idx_bytes(a["train-labels"], 0x08))  # a labels file in the images' place
    with pytest.raises(ValueError, match=r"not an MNIST images file: expected magic number 0x00000803"):
        load_mnist(root)
    images.write_bytes(_idx_bytes(np.zeros((4, 4, 3), np.uint8), 0x08))
    with pytest.raises(ValueError, match=r"load_mnist: train-images-idx3-ubyte has 4 images but "
                                         r"train-labels-idx1-ubyte has 5 labels"):
        load_mnist(root)
    images.write_bytes(b"\x1f\x8b" + b"not really gzip")
    with pytest.raises(ValueError, match=r"train-images-idx3-ubyte is not a valid gzip file"):
        load_mnist(root)


# ------------------------------------------------------------------------------- npz files

def test_load_npz_single_dataset(tmp_path: Path) -> None:
    x = RNG.normal(size=(6, 2, 3))
    y = np.array([0, 2, 1, 2, 0, 4])
    np.savez(tmp_path / "mine.npz", x=x, y=y)
    ds = load_npz(tmp_path / "mine.npz")
    assert isinstance(ds, Dataset)
    assert (ds.name, ds.num_classes, ds.x.shape) == ("mine", 5, (6, 2, 3))
    assert ds.x.dtype == np.float32 and ds.y.dtype == np.int32
    np.testing.assert_allclose(ds.x, x.astype(np.float32))
    np.testing.assert_array_equal(ds.y, y)


def test_load_npz_train_test(tmp_path: Path) -> None:
    np.savez_compressed(tmp_path / "split.npz", x_train=np.ones((4, 3), np.uint8),
                        y_train=np.array([0, 1, 1, 0]), x_test=np.zeros((2, 3)),
                        y_test=np.array([2, 0], np.int8))
    tt = load_npz(str(tmp_path / "split.npz"), name="custom")
    assert isinstance(tt, TrainTest)
    assert tt.train.x.shape == (4, 3) and tt.test.x.shape == (2, 3)
    assert tt.train.num_classes == tt.test.num_classes == 3
    assert tt.train.name == "custom"


def test_load_npz_reports_bad_files(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"load_npz: file not found: .*absent.npz"):
        load_npz(tmp_path / "absent.npz")
    text = tmp_path / "text.npz"
    text.write_text("hello")
    with pytest.raises(ValueError, match=r"load_npz: .*text.npz is not a readable .npz file: it is not a zip"):
        load_npz(text)
    np.save(tmp_path / "single.npy", np.zeros(3))
    with pytest.raises(ValueError, match=r"single.npy is a .npy file holding a single array, not an .npz"):
        load_npz(tmp_path / "single.npy")
    cases: dict[str, tuple[dict[str, np.ndarray], str]] = {
        "keys": ({"a": np.zeros(2)}, r"must hold either arrays 'x' and 'y'.*neither found.*\['a'\]"),
        "both": ({"x": np.zeros((2, 1)), "y": np.zeros(2, int), "x_train": np.zeros(1),
                  "y_train": np.zeros(1), "x_test": np.zeros(1), "y_test": np.zeros(1)}, r"both found"),
        "float_y": ({"x": np.zeros((2, 1)), "y": np.array([0.0, 1.5])},
                    r"'y' must hold whole-number class labels, got 1 non-whole or non-finite value "
                    r"\(the first at index 1: 1.5\)"),
        "str_y": ({"x": np.zeros((2, 1)), "y": np.array(["a", "b"])}, r"'y' must hold integer class labels"),
        "neg_y": ({"x": np.zeros((2, 1)), "y": np.array([0, -1])},
                  r"'y' must be class labels in \[0, 2147483647\), got 1 out of range \(the first at index 1: -1\)"),
        "2d_y": ({"x": np.zeros((2, 1)), "y": np.zeros((2, 1), int)}, r"'y' must be a 1-D array"),
        "lengths": ({"x": np.zeros((3, 1)), "y": np.zeros(2, int)}, r"'x' has 3 examples but 'y' has 2"),
        "str_x": ({"x": np.array(["a", "b"]), "y": np.zeros(2, int)}, r"'x' must be a numeric array"),
        "empty": ({"x": np.zeros((0, 2)), "y": np.zeros(0, int)}, r"'x' has no examples"),
        "features": ({"x_train": np.zeros((2, 3)), "y_train": np.zeros(2, int),
                      "x_test": np.zeros((2, 4)), "y_test": np.zeros(2, int)},
                     r"'x_train' examples have shape \(3,\) but 'x_test' examples have shape \(4,\)"),
    }
    for stem, (arrays, pattern) in cases.items():
        path = tmp_path / f"{stem}.npz"
        np.savez(path, allow_pickle=False, **arrays)
        with pytest.raises(ValueError, match=rf"load_npz: .*{stem}.npz.*{pattern}"):
            load_npz(path)
    np.savez(tmp_path / "objects.npz", x=np.array([object(), object()]), y=np.zeros(2, int))
    with pytest.raises(ValueError, match=r"objects.npz: member 'x.npy' holds Python objects \(pickled data\)"):
        load_npz(tmp_path / "objects.npz")
