"""The IDX file format, in which MNIST and its relatives (Fashion-MNIST, KMNIST ...) ship.

:func:`read_idx` reads one file into a NumPy array; :func:`functrain.data.load_mnist` reads the
four files of a data set into :class:`~functrain.data.Dataset` records.
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path
from typing import Any

import numpy as np

from functrain import _validate

__all__ = ["read_idx"]

StrPath = str | os.PathLike[str]


def as_path(path: object, who: str, name: str = "path") -> Path:
    """``path`` (a ``str`` or an ``os.PathLike``) as a :class:`~pathlib.Path`, else ``TypeError``.

    The argument check of every loader of :mod:`functrain.data` that takes a path (not exported).
    """
    if not isinstance(path, (str, os.PathLike)):
        _validate.fail(who, name, "a path (a str or an os.PathLike such as pathlib.Path)", path,
                       error=TypeError)
    return Path(path)


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
        TypeError: ``path`` is not a ``str`` or an ``os.PathLike``.
        FileNotFoundError: the file does not exist.
        ValueError: the file is not valid IDX (bad magic, unknown type code, truncated or with
            trailing bytes), naming the file and the problem.

    Example:
        >>> import pathlib, tempfile
        >>> header = bytes([0, 0, 0x08, 2]) + (2).to_bytes(4, "big") + (3).to_bytes(4, "big")
        >>> with tempfile.TemporaryDirectory() as d:
        ...     path = pathlib.Path(d, "tiny-idx2-ubyte")
        ...     _ = path.write_bytes(header + bytes(range(6)))  # uint8, shape (2, 3)
        ...     arr = ft.data.read_idx(path)
        >>> arr.dtype, arr.tolist()
        (dtype('uint8'), [[0, 1, 2], [3, 4, 5]])
    """
    who = "read_idx"
    p = as_path(path, who)
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
