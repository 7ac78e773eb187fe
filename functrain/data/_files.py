"""Reading data files defensively: paths, ``.npz`` archives, errors that name the file.

Private to :mod:`functrain.data`. Every malformed file becomes one ``ValueError`` that names the
file and says what is wrong (never a bare ``zlib.error``, ``BadZipFile``, ``EOFError`` or NumPy's
advice to load pickled data); a missing path stays a ``FileNotFoundError`` and a directory an
``IsADirectoryError``, both naming the path. Array sizes declared in a header are checked against
the bytes actually stored before anything is allocated, so a hostile header cannot ask for
terabytes.
"""

from __future__ import annotations

import errno
import math
import os
import zipfile
import zlib
from pathlib import Path
from typing import IO, Any, cast

import numpy as np

from functrain import _validate

StrPath = str | os.PathLike[str]

# Errors of a damaged compressed stream or archive (decompressors and zipfile raise all of these).
try:
    import lzma

    _stream_errors: tuple[type[Exception], ...] = (zlib.error, EOFError, zipfile.BadZipFile,
                                                   lzma.LZMAError)
except ImportError:  # pragma: no cover - Python built without lzma
    _stream_errors = (zlib.error, EOFError, zipfile.BadZipFile)
STREAM_ERRORS = _stream_errors

# ... and what else zipfile and NumPy's .npy reader raise for a malformed archive or member.
_ARCHIVE_ERRORS: tuple[type[Exception], ...] = (*STREAM_ERRORS, ValueError, NotImplementedError,
                                                RuntimeError, OSError)

DEFLATE_MAX_RATIO = 1032  # deflate expands its input at most ~1032-fold
_ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06")  # a local file header; an empty archive
_NPY_MAGIC = b"\x93NUMPY"


def as_path(path: object, who: str, name: str = "path") -> Path:
    """``path`` (a ``str`` or an ``os.PathLike``) as a :class:`~pathlib.Path`, else ``TypeError``.

    The argument check of every loader of :mod:`functrain.data` that takes a path.
    """
    if not isinstance(path, (str, os.PathLike)):
        _validate.fail(who, name, "a path (a str or an os.PathLike such as pathlib.Path)", path,
                       error=TypeError)
    return Path(cast("str | os.PathLike[str]", path))


def check_file(path: Path, who: str) -> int:
    """The size in bytes of the regular file ``path``.

    Raises:
        FileNotFoundError: nothing exists at ``path``.
        IsADirectoryError: ``path`` is a directory.
        ValueError: ``path`` is something else that is not a regular file (a device, a pipe).
    """
    if not path.exists():
        raise FileNotFoundError(f"{who}: file not found: {path}")
    if path.is_dir():
        raise IsADirectoryError(f"{who}: {path} is a directory, not a file")
    if not path.is_file():
        raise ValueError(f"{who}: {path} is not a regular file (a device, pipe or socket?)")
    return path.stat().st_size


# ----------------------------------------------------------------------------------------------
# .npz archives


def npz_members(path: Path, who: str) -> dict[str, zipfile.ZipInfo]:
    """The arrays of the ``.npz`` archive ``path``, by key (member name without ``.npy``).

    Raises:
        FileNotFoundError, IsADirectoryError: see :func:`check_file`.
        ValueError: the file is not a zip archive (a text file, a pickle, a single ``.npy``
            array) or its zip structure is damaged.
    """
    check_file(path, who)
    with open(path, "rb") as f:
        head = f.read(len(_NPY_MAGIC))
    if head.startswith(_NPY_MAGIC):
        raise ValueError(f"{who}: {path} is a .npy file holding a single array, not an .npz "
                         "archive of x and y (write one with np.savez(path, x=x, y=y))")
    if not head.startswith(_ZIP_MAGICS):
        what = "empty" if not head else "not a zip archive"
        raise ValueError(f"{who}: {path} is not a readable .npz file: it is {what} (an .npz "
                         "file is the zip archive written by np.savez or np.savez_compressed)")
    try:
        with zipfile.ZipFile(path) as archive:
            infos = archive.infolist()
    except _ARCHIVE_ERRORS as e:
        if isinstance(e, OSError) and not _bad_offset(e):
            raise
        raise ValueError(f"{who}: {path} is not a readable .npz file: its zip structure is "
                         "damaged (truncated or corrupted)") from e
    return {info.filename.removesuffix(".npy"): info for info in infos}


def read_npz_array(path: Path, info: zipfile.ZipInfo, who: str) -> np.ndarray[Any, Any]:
    """The array stored in member ``info`` of the ``.npz`` archive ``path``.

    The ``.npy`` header is read first; its shape and dtype must account for exactly the bytes the
    member holds, and arrays of Python objects (pickled data) are refused without being read.

    Raises:
        ValueError: the member is not a ``.npy`` array, holds pickled objects, is truncated or
            corrupted (bad CRC, damaged compressed data); the message names file and member.
    """
    where = f"{who}: {path}: member '{info.filename}'"
    ratio = {zipfile.ZIP_STORED: 1, zipfile.ZIP_DEFLATED: DEFLATE_MAX_RATIO}.get(info.compress_type)
    if info.compress_size > path.stat().st_size or (
            ratio is not None and info.file_size > ratio * info.compress_size):
        raise ValueError(f"{where} is malformed: its zip entry declares {info.file_size} bytes "
                         f"stored in {info.compress_size}, more than the file can hold")
    try:
        with zipfile.ZipFile(path) as archive:
            with archive.open(info) as member:
                _check_npy_header(member, info, where)
            with archive.open(info) as member:
                return np.lib.format.read_array(member, allow_pickle=False)
    except _ARCHIVE_ERRORS as e:
        if str(e).startswith(where) or (isinstance(e, OSError) and not _bad_offset(e)):
            raise
        raise ValueError(f"{where} could not be read: {_damage(e)}") from e


def _check_npy_header(member: IO[bytes], info: zipfile.ZipInfo, where: str) -> None:
    try:
        version = np.lib.format.read_magic(member)
    except ValueError as e:
        raise ValueError(f"{where} is not a .npy array (it does not start with the .npy "
                         "signature)") from e
    try:
        if version == (1, 0):
            shape, _, dtype = np.lib.format.read_array_header_1_0(member)
        elif version == (2, 0):
            shape, _, dtype = np.lib.format.read_array_header_2_0(member)
        else:
            raise ValueError(f"{where} uses .npy format version {version[0]}.{version[1]}; only "
                             "1.0 and 2.0 (what np.savez writes for numeric arrays) are read")
    except Exception as e:  # NumPy's header parser raises ValueError, SyntaxError, TokenError...
        if str(e).startswith(where):
            raise
        raise ValueError(f"{where} has a malformed .npy header") from e
    if dtype.hasobject:
        raise ValueError(f"{where} holds Python objects (pickled data), which are never loaded: "
                         "unpickling can run arbitrary code; store numeric arrays")
    if any(n < 0 for n in shape):
        raise ValueError(f"{where} has a malformed .npy header: negative dimensions in shape "
                         f"{tuple(shape)}")
    needed = math.prod(shape) * dtype.itemsize
    stored = info.file_size - member.tell()
    if needed != stored:
        raise ValueError(f"{where} is malformed: its header declares shape {tuple(shape)} of "
                         f"{dtype}, which needs {needed} bytes, but it holds {stored}")


def _bad_offset(e: OSError) -> bool:
    """Whether ``e`` comes from seeking to an impossible offset read in a damaged archive."""
    return e.errno == errno.EINVAL


def _damage(e: Exception) -> str:
    """What a decompression or archive error means, in words (no library jargon)."""
    if isinstance(e, zipfile.BadZipFile):
        if "CRC" in str(e):
            return "its data fails the checksum (the file is corrupted)"
        return "its zip entry is damaged (the file is corrupted)"
    if isinstance(e, (EOFError, ValueError)):
        return "its data ends early (the file is truncated or corrupted)"
    if isinstance(e, (NotImplementedError, RuntimeError)):
        return "it is encrypted or uses an unsupported compression method"
    if isinstance(e, OSError):
        return "its zip structure points outside the file (the file is corrupted)"
    return "its compressed data is corrupted"
