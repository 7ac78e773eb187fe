"""Downloading data sets once: mirrors, SHA-256 checks, atomic writes, progress (urllib only).

:func:`download_file` fetches one file from the first mirror that serves it with the expected
SHA-256 checksum; :func:`fetch_mnist` fetches the four IDX files of MNIST or Fashion-MNIST into a
directory, which :func:`functrain.data.load_mnist` then reads.

Every file is streamed into a temporary file next to its destination (``.<name>.<random>.part``),
hashed on the way, and renamed onto the destination only once its checksum is right (an atomic
``os.replace``): an interrupted or corrupted download leaves nothing behind, and a file present at
the destination is always complete. A file already present with the right checksum is not
downloaded again. A failing mirror (unreachable, an HTTP error, a wrong checksum) is followed by
the next one; when every mirror fails, one :class:`DownloadError` line names each URL tried and
why it failed.

Without a directory, files go to the cache directory ``$FUNCTRAIN_DATA`` if set, else
``$XDG_CACHE_HOME/functrain/datasets`` (``~/.cache/functrain/datasets`` when ``XDG_CACHE_HOME`` is
unset), one sub-directory per data set (``mnist``, ``fashion-mnist``).

Example:
    >>> sorted(ft.data.MNIST_FILES), len(ft.data.MNIST_FILES["fashion"])  # official checksums
    (['fashion', 'mnist'], 4)
    >>> ft.data.MIRRORS["mnist"][0]  # tried first
    'https://ossci-datasets.s3.amazonaws.com/mnist/'
"""

from __future__ import annotations

import hashlib
import http.client
import os
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Literal, cast

from functrain import _tree, _validate
from functrain.data._files import StrPath, as_path

__all__ = ["MIRRORS", "MNIST_FILES", "DownloadError", "cache_directory", "download_file", "fetch_mnist"]

MNIST_FILES: dict[str, dict[str, str]] = {
    "mnist": {
        "train-images-idx3-ubyte.gz": "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
        "train-labels-idx1-ubyte.gz": "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
        "t10k-images-idx3-ubyte.gz": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
        "t10k-labels-idx1-ubyte.gz": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
    },
    "fashion": {
        "train-images-idx3-ubyte.gz": "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
        "train-labels-idx1-ubyte.gz": "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
        "t10k-images-idx3-ubyte.gz": "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
        "t10k-labels-idx1-ubyte.gz": "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
    },
}
"""The SHA-256 checksums of the official gzip-compressed IDX files, by data set and file name."""

MIRRORS: dict[str, tuple[str, ...]] = {
    "mnist": ("https://ossci-datasets.s3.amazonaws.com/mnist/",
              "https://storage.googleapis.com/cvdf-datasets/mnist/",
              "http://yann.lecun.com/exdb/mnist/"),
    "fashion": ("https://fashion-mnist.s3.eu-central-1.amazonaws.com/",
                "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
                "https://storage.googleapis.com/tensorflow/tf-keras-datasets/"),
}
"""Base URLs of the files, by data set, tried in order."""
_KINDS: tuple[Literal["mnist", "fashion"], ...] = ("mnist", "fashion")
_SUBDIRECTORY = {"mnist": "mnist", "fashion": "fashion-mnist"}
_CHUNK = 1 << 16


class DownloadError(OSError):
    """No mirror delivered a file with the expected checksum; the message names each URL tried.

    Example:
        >>> import pathlib, tempfile
        >>> with tempfile.TemporaryDirectory() as d:
        ...     try:
        ...         ft.data.download_file([pathlib.Path(d, "missing.gz").as_uri()],
        ...                               pathlib.Path(d, "x.gz"), "0" * 64, progress=False)
        ...     except ft.data.DownloadError as e:
        ...         print(isinstance(e, OSError), str(e).split(";")[0])
        True download_file: could not download x.gz from any mirror
    """


def cache_directory() -> Path:
    """The default data directory: ``$FUNCTRAIN_DATA``, else ``$XDG_CACHE_HOME/functrain/datasets``.

    ``XDG_CACHE_HOME`` defaults to ``~/.cache``. Nothing is created.

    Example:
        >>> import os, unittest.mock
        >>> env = {k: v for k, v in os.environ.items() if k != "FUNCTRAIN_DATA"}
        >>> with unittest.mock.patch.dict(os.environ, env | {"XDG_CACHE_HOME": "/cache"}, clear=True):
        ...     print(ft.data.cache_directory())
        /cache/functrain/datasets
    """
    if os.environ.get("FUNCTRAIN_DATA"):
        return Path(os.environ["FUNCTRAIN_DATA"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path("~/.cache").expanduser())
    return Path(base).expanduser() / "functrain" / "datasets"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _check_sha256(value: object, who: str, name: str, detail: str = "") -> str:
    expectation = "a SHA-256 checksum (64 hexadecimal digits)"
    if not isinstance(value, str):
        _validate.fail(who, name, expectation, value, error=TypeError, detail=detail)
    if len(value) != 64 or any(c not in "0123456789abcdefABCDEF" for c in value):
        _validate.fail(who, name, expectation, value, detail=detail)
    return value.lower()


def _check_urls(urls: object, who: str, name: str) -> list[str]:
    expectation = "a non-empty sequence of URL strings"
    if isinstance(urls, str) or not _tree.is_sequence(urls):
        _validate.fail(who, name, expectation, urls, error=TypeError)
    out: list[object] = list(urls)
    if not out:
        _validate.fail(who, name, expectation, out)
    for i, url in enumerate(out):
        if not isinstance(url, str):
            _validate.fail(who, f"{name}[{i}]", "a URL string", url, error=TypeError)
    return [str(url) for url in out]


class _Progress:
    """``\\r``-updated progress on standard error, at most ~10 updates a second."""

    def __init__(self, name: str, total: int | None, show: bool) -> None:
        self.name, self.total, self.show, self.last = name, total, show, 0.0

    def update(self, done: int, final: bool = False) -> None:
        now = time.monotonic()
        if not self.show or (not final and now - self.last < 0.1):
            return
        self.last = now
        text = f"{done / 1e6:.1f} MB"
        if self.total:
            text = f"{100 * done / self.total:3.0f}% ({text} of {self.total / 1e6:.1f} MB)"
        sys.stderr.write(f"\rdownloading {self.name}: {text}" + ("\n" if final else ""))
        sys.stderr.flush()


def _stream(url: str, out: IO[bytes], name: str, timeout: float, progress: bool) -> str:
    """Copy ``url`` into ``out``; return the SHA-256 of what came."""
    digest = hashlib.sha256()
    request = urllib.request.Request(url, headers={"User-Agent": "functrain"})
    with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 (URLs are the caller's)
        length = response.headers.get("Content-Length")
        bar = _Progress(name, int(length) if length and length.isdigit() else None, progress)
        done = 0
        for chunk in iter(lambda: response.read(_CHUNK), b""):
            out.write(chunk)
            digest.update(chunk)
            done += len(chunk)
            bar.update(done)
        bar.update(done, final=True)
    return digest.hexdigest()


def _reason(error: BaseException) -> str:
    if isinstance(error, urllib.error.HTTPError):
        return f"HTTP {error.code}"
    if isinstance(error, urllib.error.URLError):
        return str(error.reason)
    return str(error) or type(error).__name__


def download_file(urls: Sequence[str], path: StrPath, sha256: str, *, timeout: float = 30.0,
                  progress: bool = True) -> Path:
    """Download one file from the first of ``urls`` that serves it with checksum ``sha256``.

    The file is written atomically (see the module docstring); a file already at ``path`` with the
    right checksum is kept and nothing is downloaded. Parent directories are created.

    Args:
        urls: the mirrors' URLs of the file, tried in order (``http``, ``https`` or ``file``).
        path: the destination file.
        sha256: the expected SHA-256 checksum (64 hexadecimal digits).
        timeout: seconds to wait for a server before trying the next mirror (``> 0``).
        progress: show the progress on standard error.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        DownloadError: no mirror delivered the file with the right checksum (one line naming each
            URL tried and why it failed: unreachable, HTTP status, checksum mismatch).
        TypeError, ValueError: bad arguments.

    Example:
        >>> import hashlib, pathlib, tempfile
        >>> with tempfile.TemporaryDirectory() as d:
        ...     source = pathlib.Path(d, "source.bin")
        ...     _ = source.write_bytes(b"IDX bytes")
        ...     checksum = hashlib.sha256(b"IDX bytes").hexdigest()
        ...     path = ft.data.download_file([source.as_uri()], pathlib.Path(d, "out", "data.bin"),
        ...                                  checksum, progress=False)
        ...     path.read_bytes()
        b'IDX bytes'
    """
    who = "download_file"
    mirrors = _check_urls(urls, who, "urls")
    target = as_path(path, who)
    expected = _check_sha256(sha256, who, "sha256")
    _validate.check_number(timeout, who, "timeout", low=0.0, low_open=True, finite=True)
    show = _validate.check_bool(progress, who, "progress")
    if target.is_file() and _sha256(target) == expected:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    failures: list[str] = []
    for url in mirrors:
        fd, temp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
        try:
            with os.fdopen(fd, "wb") as out:
                got = _stream(url, out, target.name, float(timeout), show)
                out.flush()
                os.fsync(out.fileno())
            if got != expected:
                failures.append(f"{url} (checksum mismatch: expected {expected[:12]}..., got {got[:12]}...)")
                continue
            os.replace(temp, target)
            return target
        except (OSError, ValueError, http.client.HTTPException) as e:  # URLError, timeouts: OSError
            failures.append(f"{url} ({_reason(e)})")
        finally:
            if os.path.exists(temp):
                os.unlink(temp)
    raise DownloadError(f"{who}: could not download {target.name} from any mirror; tried "
                        + "; ".join(failures))


def fetch_mnist(directory: StrPath | None, *, kind: Literal["mnist", "fashion"] = "mnist",
                mirrors: Sequence[str] | None = None, checksums: Mapping[str, str] | None = None,
                timeout: float = 30.0, progress: bool = True) -> Path:
    """Make sure the four IDX files of MNIST (or Fashion-MNIST) are in a directory; return it.

    Fetches ``train-images-idx3-ubyte.gz``, ``train-labels-idx1-ubyte.gz``,
    ``t10k-images-idx3-ubyte.gz`` and ``t10k-labels-idx1-ubyte.gz`` with :func:`download_file`
    (each verified by SHA-256, written atomically, skipped when already there and intact), trying
    the mirrors in order. Read them with ``functrain.data.load_mnist(directory)``.

    Args:
        directory: where the files go; ``None`` for the cache directory
            (:func:`cache_directory` ``/ "mnist"`` or ``/ "fashion-mnist"``). Required, so that
            a download never happens by accident.
        kind: ``"mnist"`` (LeCun et al. 1998) or ``"fashion"`` (Fashion-MNIST, Xiao et al. 2017).
        mirrors: base URLs, each followed by a file name (default: the known mirrors of ``kind``).
        checksums: file name -> SHA-256, for the four files (default: :data:`MNIST_FILES` of
            ``kind``, the official files).
        timeout: seconds to wait for a server.
        progress: show the progress on standard error.

    Returns:
        The directory holding the four files.

    Raises:
        DownloadError: a file that no mirror delivered intact (the message names the URLs tried).
        TypeError, ValueError: bad arguments.

    Example:
        >>> import gzip, hashlib, pathlib, tempfile
        >>> with tempfile.TemporaryDirectory() as d:
        ...     names = list(ft.data.MNIST_FILES["mnist"])
        ...     for name in names:  # a local "mirror" of tiny (invalid) files, with their checksums
        ...         _ = pathlib.Path(d, name).write_bytes(gzip.compress(name.encode()))
        ...     sums = {n: hashlib.sha256(pathlib.Path(d, n).read_bytes()).hexdigest() for n in names}
        ...     out = ft.data.fetch_mnist(pathlib.Path(d, "mnist"), mirrors=[pathlib.Path(d).as_uri() + "/"],
        ...                               checksums=sums, progress=False)
        ...     sorted(p.name for p in out.iterdir())[:2]
        ['t10k-images-idx3-ubyte.gz', 't10k-labels-idx1-ubyte.gz']
    """
    who = "fetch_mnist"
    kind = _validate.check_choice(kind, _KINDS, who, "kind")
    target = cache_directory() / _SUBDIRECTORY[kind] if directory is None else as_path(directory, who, "directory")
    bases = _check_urls(MIRRORS[kind] if mirrors is None else mirrors, who, "mirrors")
    official = MNIST_FILES[kind]
    expectation = f"a mapping from each of {sorted(official)} to its SHA-256"
    if checksums is not None and not isinstance(cast(object, checksums), Mapping):
        _validate.fail(who, "checksums", expectation, checksums, error=TypeError)
    sums = dict(official if checksums is None else checksums)
    if set(sums) != set(official):
        _validate.fail(who, "checksums", expectation, checksums)
    for name in official:
        _check_sha256(sums[name], who, "checksums", detail=f"for {name}")
    _validate.check_number(timeout, who, "timeout", low=0.0, low_open=True, finite=True)
    _validate.check_bool(progress, who, "progress")
    for name, checksum in sums.items():
        download_file([base.rstrip("/") + "/" + name for base in bases], target / name, checksum,
                      timeout=timeout, progress=progress)
    return target
