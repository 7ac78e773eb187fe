"""The IDX file format, in which MNIST and its relatives (Fashion-MNIST, KMNIST ...) ship.

:func:`read_idx` reads one file into a NumPy array; :func:`functrain.data.load_mnist` reads the
four files of a data set into :class:`~functrain.data.Dataset` records.
"""

from __future__ import annotations

import gzip
import math
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from functrain.data._files import (
    DEFLATE_MAX_RATIO,
    STREAM_ERRORS,
    StrPath,
    as_path,
    check_file,
)

__all__ = ["read_idx"]

# IDX type codes (third magic byte) -> big-endian NumPy dtype.
_IDX_DTYPES: dict[int, str] = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4",
                               0x0E: ">f8"}
_GZIP_MAGIC = b"\x1f\x8b"
_CHUNK = 1 << 26  # read at most 64 MiB at a time, so memory follows the bytes actually present
_GZIP_ERRORS: tuple[type[Exception], ...] = (*STREAM_ERRORS, gzip.BadGzipFile)


class _Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


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
        IsADirectoryError: ``path`` is a directory.
        ValueError: the file is not valid IDX, naming the file and the problem: a damaged gzip
            stream (corrupted or truncated), a bad magic number or unknown type code, a header
            whose dimensions need more (or fewer) data bytes than the file holds (the message
            gives the declared shape, the bytes needed and the file's size), trailing bytes.
            Nothing larger than the data actually present is allocated, whatever the header says.

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
    size = check_file(p, who)
    with open(p, "rb") as raw:
        gz = raw.read(2) == _GZIP_MAGIC
        raw.seek(0)
        if not gz:
            return _parse(raw, p, size, gz=False)
        try:
            with gzip.GzipFile(fileobj=raw, mode="rb") as stream:
                try:
                    return _parse(stream, p, size, gz=True)
                except ValueError:  # garbage content may come from a corrupted stream: say so
                    while stream.read(1 << 20):
                        pass
                    raise
        except _GZIP_ERRORS as e:
            problem = "truncated" if isinstance(e, EOFError) else "corrupted"
            raise ValueError(f"{who}: {p} is not a valid gzip file: its compressed data is "
                             f"{problem}") from e


def _read(f: _Readable, n: int) -> bytes:
    """Up to ``n`` bytes of ``f`` (fewer at the end of the file), read in bounded chunks."""
    parts: list[bytes] = []
    while n > 0:
        chunk = f.read(min(n, _CHUNK))
        if not chunk:
            break
        parts.append(chunk)
        n -= len(chunk)
    return b"".join(parts)


def _parse(f: _Readable, p: Path, size: int, *, gz: bool) -> np.ndarray[Any, Any]:
    """The IDX array of the (decompressed) stream ``f`` of the file ``p`` of ``size`` bytes."""
    who = "read_idx"
    head = _read(f, 4)
    if len(head) < 4:
        raise ValueError(f"{who}: {p} is truncated: {len(head)} bytes, too short for an IDX header")
    if head[0] != 0 or head[1] != 0 or head[2] not in _IDX_DTYPES:
        raise ValueError(
            f"{who}: {p} has bad magic number 0x{int.from_bytes(head, 'big'):08x}; an IDX file "
            "starts with 0x0000 then a type code in {0x08, 0x09, 0x0b, 0x0c, 0x0d, 0x0e}"
            + ("; the name ends in .gz but the file does not start with the gzip signature 1f 8b"
               if p.suffix == ".gz" and not gz else "")
        )
    ndim = head[3]
    dims = _read(f, 4 * ndim)
    if len(dims) < 4 * ndim:
        raise ValueError(f"{who}: {p} is truncated: its header declares {ndim} dimensions but the "
                         f"file has only {4 + len(dims)} bytes")
    shape = tuple(int.from_bytes(dims[4 * i: 4 * i + 4], "big") for i in range(ndim))
    dtype = np.dtype(_IDX_DTYPES[head[2]])
    needed = math.prod(shape) * dtype.itemsize  # Python ints: no overflow, however large

    def error(problem: str, found: str) -> ValueError:
        return ValueError(f"{who}: {p} {problem}: shape {shape} of {dtype.name} needs {needed} "
                          f"data bytes, {found} (the file has {size} bytes"
                          f"{', gzip-compressed' if gz else ''})")

    if gz and needed > size * DEFLATE_MAX_RATIO:
        raise error("is truncated", f"but it can hold at most {size * DEFLATE_MAX_RATIO}")
    present = size - 4 - len(dims)  # the data bytes of a raw file
    if not gz and needed != present:
        raise error("is truncated" if present < needed else "is longer than its header says",
                    f"found {present}")
    data = _read(f, needed)
    if len(data) < needed:
        raise error("is truncated", f"found {len(data)}")
    if f.read(1):
        raise error("is longer than its header says", "found more")
    arr = np.frombuffer(data, dtype=dtype, count=needed // dtype.itemsize)
    return arr.reshape(shape).astype(dtype.newbyteorder("="))
