"""Malformed and hostile data files fail loudly and lose nothing (issue 12, cases 1, 9 and 16).

Every case writes a small file, loads it, and checks for one clear error that names the file and
says what is wrong: a ``ValueError`` for bad content (never a bare ``zlib.error``, ``EOFError``,
``BadZipFile``, ``MemoryError`` or NumPy's advice to load pickled data), ``FileNotFoundError``
for a missing path and ``IsADirectoryError``/``NotADirectoryError`` for the wrong kind of path.
Values are checked as stored, before any cast, so nothing is changed silently on the way in.
"""

from __future__ import annotations

import gzip
import io
import pickle
import re
import struct
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from functrain.data import Dataset, TrainTest, load_mnist, load_npz, read_idx

RNG = np.random.default_rng(12)


def _idx(arr: np.ndarray) -> bytes:
    """IDX bytes of a uint8 array: 0x0000, type code 0x08, rank, big-endian sizes, data."""
    return struct.pack(">BBBB", 0, 0, 0x08, arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape) + (
        arr.astype(np.uint8).tobytes())


def _mnist(root: Path, n_train: int = 4, *, gz: bool = False, rows: int = 3) -> Path:
    for part, n in (("train", n_train), ("t10k", 2)):
        images = RNG.integers(0, 256, size=(n, rows, 3)).astype(np.uint8)
        labels = RNG.integers(0, 10, size=n).astype(np.uint8)
        for kind, arr, rank in (("images", images, 3), ("labels", labels, 1)):
            payload = _idx(arr)
            name = f"{part}-{kind}-idx{rank}-ubyte" + (".gz" if gz else "")
            (root / name).write_bytes(gzip.compress(payload) if gz else payload)
    return root


def _npz(path: Path, **arrays: np.ndarray) -> Path:
    np.savez(path, allow_pickle=False, **arrays)
    return path


def _value_error(fn: Callable[[Path], object], path: Path, pattern: str) -> str:
    """``fn(path)`` raises one ValueError naming ``path`` and matching ``pattern``; its message."""
    with pytest.raises(ValueError) as info:
        fn(path)
    text = str(info.value)
    assert type(info.value) is ValueError, repr(info.value)
    assert str(path) in text, text
    assert re.search(pattern, text), text
    assert "allow_pickle" not in text and "pickle.load" not in text, text
    return text


# ---------------------------------------------------------------------------------------------
# Case 16: .npz values that a float32 cast would change silently


def test_case_16_npz_nan_and_inf_are_refused_with_count_and_first_index(tmp_path: Path) -> None:
    x = np.zeros((4, 3))
    x[1, 2], x[3, 0], x[3, 1] = np.nan, np.inf, -np.inf
    path = _npz(tmp_path / "nan.npz", x=x, y=np.zeros(4, int))
    _value_error(load_npz, path, r"^load_npz: .*nan.npz: 'x' must hold finite numbers, got 3 NaN "
                 r"or infinite values \(the first at index \(1, 2\): nan\)$")
    one = _npz(tmp_path / "inf.npz", x=np.array([[1.0], [np.inf]], np.float32), y=np.zeros(2, int))
    _value_error(load_npz, one, r"'x' must hold finite numbers, got 1 NaN or infinite value "
                 r"\(the first at index \(1, 0\): inf\)")


def test_case_16_npz_values_overflowing_float32_are_refused(tmp_path: Path) -> None:
    x = np.ones((3, 2))
    x[0, 1], x[2, 0] = 1e39, -5e38
    path = _npz(tmp_path / "big.npz", x=x, y=np.zeros(3, int))
    _value_error(load_npz, path, r"'x' must hold values that fit float32 "
                 r"\(\|v\| <= 3.4028235e\+38\), got 2 values beyond that range "
                 r"\(the first at index \(0, 1\): 1e\+39\)")
    fits = _npz(tmp_path / "fits.npz", x=np.array([[3.4e38], [-3.4e38]]), y=np.zeros(2, int))
    ds = load_npz(fits)
    assert isinstance(ds, Dataset) and bool(np.isfinite(np.asarray(ds.x)).all())


def test_case_16_npz_complex_values_are_refused(tmp_path: Path) -> None:
    x = np.ones((2, 3), np.complex64)
    x[1, 1] = 1 + 2j
    path = _npz(tmp_path / "complex.npz", x=x, y=np.zeros(2, int))
    _value_error(load_npz, path, r"'x' must hold real numbers, got dtype complex64: 1 value with "
                 r"a nonzero imaginary part \(the first at index \(1, 1\): \(1\+2j\)\); "
                 r"store np.real")
    real = _npz(tmp_path / "real.npz", x=np.ones((2, 3), np.complex128), y=np.zeros(2, int))
    _value_error(load_npz, real, r"'x' must hold real numbers, got dtype complex128: only zero "
                 r"imaginary parts")


@pytest.mark.parametrize("shape", [(3, 0), (3, 2, 0)])
def test_case_16_npz_zero_features_are_refused(tmp_path: Path, shape: tuple[int, ...]) -> None:
    path = _npz(tmp_path / "empty_features.npz", x=np.zeros(shape), y=np.zeros(3, int))
    _value_error(load_npz, path, rf"'x' has no features: each example has shape "
                 rf"{re.escape(str(shape[1:]))}")


def test_case_16_text_file_as_npz_is_not_an_archive(tmp_path: Path) -> None:
    text = tmp_path / "notes.npz"
    text.write_text("x,y\n1,0\n")
    _value_error(load_npz, text, r"notes.npz is not a readable .npz file: it is not a zip archive")
    pickled = tmp_path / "pickled.npz"
    pickled.write_bytes(pickle.dumps({"x": [[1.0]], "y": [0]}))
    _value_error(load_npz, pickled, r"pickled.npz is not a readable .npz file: it is not a zip")
    empty = tmp_path / "empty.npz"
    empty.write_bytes(b"")
    _value_error(load_npz, empty, r"empty.npz is not a readable .npz file: it is empty")


def test_case_16_pickled_npz_members_stay_refused_without_unsafe_advice(tmp_path: Path) -> None:
    path = tmp_path / "objects.npz"
    np.savez(path, x=np.array([object(), object()]), y=np.zeros(2, int))
    _value_error(load_npz, path, r"member 'x.npy' holds Python objects \(pickled data\), which are "
                 r"never loaded")


# ---------------------------------------------------------------------------------------------
# Case 16: damaged files


def test_case_16_corrupted_gzip(tmp_path: Path) -> None:
    root = _mnist(tmp_path, gz=True)
    images = root / "train-images-idx3-ubyte.gz"
    good = images.read_bytes()
    bad = bytearray(good)
    bad[10] = 0x07  # the first deflate block: final, of the reserved type 3 (zlib.error)
    images.write_bytes(bytes(bad))
    _value_error(load_mnist, root, r"train-images-idx3-ubyte.gz is not a valid gzip file: its "
                 r"compressed data is corrupted")
    images.write_bytes(good[:-12])
    _value_error(load_mnist, root, r"is not a valid gzip file: its compressed data is truncated")
    images.write_bytes(good[:-4] + b"\0\0\0\0")  # a wrong length in the trailer
    _value_error(load_mnist, root, r"is not a valid gzip file: its compressed data is corrupted")


def test_case_16_mnist_file_with_zero_examples(tmp_path: Path) -> None:
    root = _mnist(tmp_path, n_train=0)
    _value_error(load_mnist, root, r"^load_mnist: .*train-images-idx3-ubyte holds no images \(its "
                 r"header declares shape \(0, 3, 3\)\)$")
    _mnist(root, rows=0)
    _value_error(load_mnist, root, r"train-images-idx3-ubyte holds images of 0x3 pixels")


def test_case_16_idx_header_with_huge_dimensions(tmp_path: Path) -> None:
    path = tmp_path / "huge-idx3-ubyte"
    path.write_bytes(struct.pack(">BBBB3I", 0, 0, 0x08, 3, 2**31, 2**31, 2**31) + bytes(5))
    needed = 2**93
    _value_error(read_idx, path, rf"huge-idx3-ubyte is truncated: shape \(2147483648, 2147483648, "
                 rf"2147483648\) of uint8 needs {needed} data bytes, found 5 "
                 r"\(the file has 21 bytes\)")
    zipped = tmp_path / "huge-idx3-ubyte.gz"
    zipped.write_bytes(gzip.compress(path.read_bytes()))
    _value_error(read_idx, zipped, r"is truncated: shape \(2147483648, 2147483648, "
                 rf"2147483648\) of uint8 needs {needed} data bytes, but it can hold at most \d+ "
                 r"\(the file has \d+ bytes, gzip-compressed\)")
    wide = tmp_path / "wide-idx2-ubyte"  # int64 products would overflow to a negative count
    wide.write_bytes(struct.pack(">BBBB2I", 0, 0, 0x0E, 2, 2**32 - 1, 2**32 - 1))
    _value_error(read_idx, wide, rf"needs {(2**32 - 1) ** 2 * 8} data bytes, found 0")


def test_case_16_damaged_npz_archives(tmp_path: Path) -> None:
    x, y = RNG.normal(size=(30, 8)), RNG.integers(0, 3, 30)
    good = _npz(tmp_path / "good.npz", x=x, y=y).read_bytes()
    compressed = tmp_path / "compressed.npz"
    np.savez_compressed(compressed, x=x, y=y)
    cases = {
        "truncated": (good[: len(good) // 2], r"is not a readable .npz file: its zip structure "
                      r"is damaged"),
        "deflate": (_corrupt_member(compressed.read_bytes()), r"member 'x.npy' could not be read: "
                    r"its compressed data is corrupted"),
        "crc": (_flip(good, good.index(b"x.npy") + 200), r"member 'x.npy' could not be read: its "
                r"data fails the checksum"),
        "not_npy": (_zip(x=b"just some bytes", y=_npy(y)), r"member 'x.npy' is not a .npy array"),
        "huge_header": (_zip(x=_npy_header((10**12, 8)) + bytes(64), y=_npy(y)),
                        r"member 'x.npy' is malformed: its header declares shape \(1000000000000, "
                        r"8\) of float64, which needs 64000000000000 bytes, but it holds 64"),
        "bad_header": (_zip(x=b"\x93NUMPY\x01\x00\x04\x00{'a'", y=_npy(y)),
                       r"member 'x.npy' has a malformed .npy header"),
        "npy": (_npy(x), r"is a .npy file holding a single array, not an .npz archive"),
        "sizes": (_declare_size(good, 2**31), r"member 'x.npy' is malformed: its zip entry "
                  rf"declares {2**31} bytes stored in \d+, more than the file can hold"),
    }
    for stem, (payload, pattern) in cases.items():
        path = tmp_path / f"{stem}.npz"
        path.write_bytes(payload)
        _value_error(load_npz, path, pattern)


def _declare_size(data: bytes, size: int) -> bytes:
    """The archive with the uncompressed size of its first member in the central directory set."""
    at = data.index(b"PK\x01\x02") + 24  # the central directory entry's uncompressed size field
    return data[:at] + size.to_bytes(4, "little") + data[at + 4:]


def _flip(data: bytes, at: int) -> bytes:
    out = bytearray(data)
    out[at] ^= 0xFF
    return bytes(out)


def _corrupt_member(data: bytes) -> bytes:
    """The archive with the deflate stream of its first member made invalid (reserved type 3)."""
    assert data[:4] == b"PK\x03\x04" and data[8:10] == b"\x08\x00"  # a local header, deflated
    name, extra = int.from_bytes(data[26:28], "little"), int.from_bytes(data[28:30], "little")
    start = 30 + name + extra  # the header's 30 bytes, the member's name, an extra field
    out = bytearray(data)
    out[start] = 0x07
    return bytes(out)


def _npy(arr: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, arr)
    return buffer.getvalue()


def _npy_header(shape: tuple[int, ...]) -> bytes:
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {"descr": "<f8", "fortran_order": False,
                                                  "shape": shape})
    return buffer.getvalue()


def _zip(**members: bytes) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for key, payload in members.items():
            archive.writestr(f"{key}.npy", payload)
    return buffer.getvalue()


def test_case_16_wrong_kinds_of_paths(tmp_path: Path) -> None:
    with pytest.raises(IsADirectoryError, match=rf"load_npz: {re.escape(str(tmp_path))} is a "
                       "directory, not a file"):
        load_npz(tmp_path)
    with pytest.raises(IsADirectoryError, match=r"read_idx: .* is a directory, not a file"):
        read_idx(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"load_npz: file not found: .*absent.npz"):
        load_npz(tmp_path / "absent.npz")
    with pytest.raises(FileNotFoundError, match=r"read_idx: file not found: .*absent-idx1-ubyte"):
        read_idx(tmp_path / "absent-idx1-ubyte")
    a_file = _npz(tmp_path / "a.npz", x=np.zeros((1, 1)), y=np.zeros(1, int))
    with pytest.raises(NotADirectoryError, match=r"load_mnist: .*a.npz is not a directory"):
        load_mnist(a_file)


def test_case_16_gz_name_without_gzip_signature_says_so(tmp_path: Path) -> None:
    path = tmp_path / "labels-idx1-ubyte.gz"
    path.write_bytes(b"\x1f\x00" + gzip.compress(_idx(np.zeros(3, np.uint8)))[2:])
    _value_error(read_idx, path, r"has bad magic number .*the name ends in .gz but the file does "
                 r"not start with the gzip signature 1f 8b")


@pytest.mark.parametrize("kind", ["npz", "npz_compressed", "idx", "idx_gz"])
def test_case_16_randomly_damaged_files_fail_cleanly(tmp_path: Path, kind: str) -> None:
    """Truncated or flipped bytes anywhere: a clean load or one ValueError naming the file."""
    rng = np.random.default_rng(16)
    source = tmp_path / "source"
    loader: Callable[[Path], object]
    if kind.startswith("npz"):
        save = np.savez_compressed if kind == "npz_compressed" else np.savez
        save(source, x=rng.normal(size=(12, 4)), y=rng.integers(0, 3, 12))
        good, loader = source.with_suffix(".npz").read_bytes(), load_npz
    else:
        payload = _idx(rng.integers(0, 256, size=(6, 4, 4)))
        good, loader = (gzip.compress(payload) if kind == "idx_gz" else payload), read_idx
    path = tmp_path / f"damaged.{kind}"
    failures = 0
    for trial in range(150):
        data = bytearray(good)
        if trial % 3 == 0:
            data = data[: int(rng.integers(0, len(data)))]
        else:
            for at in rng.integers(0, len(data), size=int(rng.integers(1, 4))):
                data[at] = int(rng.integers(0, 256))
        path.write_bytes(bytes(data))
        try:
            loaded = loader(path)
        except ValueError as e:
            failures += 1
            assert type(e) is ValueError and str(path) in str(e), repr(e)
            assert "allow_pickle" not in str(e), str(e)
        else:
            assert isinstance(loaded, (Dataset, TrainTest, np.ndarray))
    assert failures >= 50  # most damage is detected (flipped pixels of a raw IDX file are not)


# ---------------------------------------------------------------------------------------------
# Case 1 (loaders): labels are range-checked before the int32 cast


@pytest.mark.parametrize(("labels", "count", "index", "value"), [
    (np.array([0, 2**31, 1]), 1, 1, 2**31),          # int32 would wrap it to -2**31
    (np.array([0, 1, 2**32 + 1]), 1, 2, 2**32 + 1),  # int32 would wrap it to 1
    (np.array([-1, 0, -3]), 2, 0, -1),
    (np.array([0, 2**63, 2**64 - 1], np.uint64), 2, 1, 2**63),
    (np.array([1, 2**31 - 1], np.int64), 1, 1, 2**31 - 1),  # num_classes would not fit int32
])
def test_case_1_npz_labels_out_of_range_are_refused_before_the_cast(
        tmp_path: Path, labels: np.ndarray, count: int, index: int, value: int) -> None:
    path = _npz(tmp_path / "labels.npz", x=np.zeros((3, 2)), y=labels)
    _value_error(load_npz, path, rf"^load_npz: .*labels.npz: 'y' must be class labels in "
                 rf"\[0, 2147483647\), got {count} out of range \(the first at index {index}: "
                 rf"{value}\)$")


def test_case_1_npz_largest_label_that_fits_int32_is_kept_exactly(tmp_path: Path) -> None:
    path = _npz(tmp_path / "wide.npz", x=np.zeros((2, 1)), y=np.array([0, 2**31 - 2], np.uint64))
    ds = load_npz(path)
    assert isinstance(ds, Dataset)
    assert np.asarray(ds.y).tolist() == [0, 2**31 - 2] and ds.num_classes == 2**31 - 1


def test_case_1_npz_float_labels_only_when_whole_numbers(tmp_path: Path) -> None:
    ds = load_npz(_npz(tmp_path / "whole.npz", x=np.zeros((3, 1)), y=np.array([0.0, 2.0, 1.0])))
    assert isinstance(ds, Dataset)
    assert ds.y.dtype == np.int32 and np.asarray(ds.y).tolist() == [0, 2, 1] and ds.num_classes == 3
    cases = {
        "half": (np.array([0.0, 1.5, 2.5]), r"got 2 non-whole or non-finite values \(the first at "
                 r"index 1: 1.5\)"),
        "nan": (np.array([0.0, np.nan, 1.0], np.float32), r"got 1 non-whole or non-finite value "
                r"\(the first at index 1: nan\)"),
        "wrap": (np.array([0.0, 1.0, 2.0**31]), r"must be class labels in \[0, 2147483647\), got 1 "
                 r"out of range \(the first at index 2: 2147483648.0\)"),
        "negative": (np.array([0.0, -1.0, 1.0]),
                     r"got 1 out of range \(the first at index 1: -1.0\)"),
    }
    for stem, (labels, pattern) in cases.items():
        path = _npz(tmp_path / f"{stem}.npz", x=np.zeros((3, 1)), y=labels)
        _value_error(load_npz, path, rf"{stem}.npz: 'y' .*{pattern}")


# ---------------------------------------------------------------------------------------------
# Case 9 (loaders): a data file that would train on garbage is refused when loading


@pytest.mark.parametrize(("key", "value", "pattern"), [
    ("x_test", np.nan, r"'x_test' must hold finite numbers, got 1 NaN or infinite value"),
    ("x_train", -np.inf, r"'x_train' must hold finite numbers, got 1 NaN or infinite value"),
    ("x_train", 1e300, r"'x_train' must hold values that fit float32 .*, got 1 value beyond that "
                       r"range"),
])
def test_case_9_npz_with_garbage_values_is_refused_when_loading(
        tmp_path: Path, key: str, value: float, pattern: str) -> None:
    arrays = {"x_train": np.ones((4, 2)), "y_train": np.array([0, 1, 0, 1]),
              "x_test": np.ones((2, 2)), "y_test": np.array([1, 0])}
    arrays[key][-1, -1] = value
    path = _npz(tmp_path / "split.npz", **arrays)
    last = arrays[key].shape[0] - 1
    _value_error(load_npz, path, rf"^load_npz: .*split.npz: {pattern} \(the first at index "
                 rf"\({last}, 1\): ")
