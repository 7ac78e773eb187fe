"""Downloads against a real local HTTP server (http.server in a thread) serving small IDX files
written by the test, with their checksums passed in: success (and no second download), a corrupted
file (checksum error, nothing left behind), an unreachable / failing / silent mirror followed by a
good one, every mirror unreachable (one line naming them), the cache directory, errors."""

from __future__ import annotations

import gzip
import hashlib
import re
import socket
import threading
from collections.abc import Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pytest

from functrain.data import MNIST_FILES, DownloadError, cache_directory, download_file, fetch_mnist, load_mnist

STYLE = re.compile(r"^[\w.]+: argument '[\w.\[\]']+' must be .+, got .+$", re.S)
NAMES = list(MNIST_FILES["mnist"])


class Server(NamedTuple):
    url: str
    root: Path
    requests: list[str]


class _Handler(SimpleHTTPRequestHandler):
    requests: list[str]

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the base class's name)
        self.requests.append(self.path)  # recorded instead of printed


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    root = tmp_path / "served"
    root.mkdir()
    requests: list[str] = []
    handler = type("Handler", (_Handler,), {"requests": requests})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), partial(handler, directory=str(root)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield Server(f"http://127.0.0.1:{httpd.server_address[1]}/", root, requests)
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


def _idx(array: np.ndarray) -> bytes:
    sizes = b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    return bytes([0, 0, 0x08, array.ndim]) + sizes + array.tobytes()


def write_mnist(root: Path) -> dict[str, str]:
    """Tiny MNIST-format files (gzip), as the official names; returns their SHA-256 sums."""
    rng = np.random.default_rng(0)
    for part, n in (("train", 12), ("t10k", 4)):
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = (np.arange(n) % 10).astype(np.uint8)
        (root / f"{part}-images-idx3-ubyte.gz").write_bytes(gzip.compress(_idx(images)))
        (root / f"{part}-labels-idx1-ubyte.gz").write_bytes(gzip.compress(_idx(labels)))
    return {name: hashlib.sha256((root / name).read_bytes()).hexdigest() for name in NAMES}


def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/"  # nothing listens there any more: connection refused


def test_fetch_then_load_and_no_second_download(server: Server, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    sums = write_mnist(server.root)
    target = tmp_path / "data"
    assert fetch_mnist(target, mirrors=[server.url], checksums=sums, progress=True) == target
    for name in NAMES:
        assert (target / name).read_bytes() == (server.root / name).read_bytes()
    err = capsys.readouterr().err
    assert "downloading train-images-idx3-ubyte.gz" in err and "100%" in err
    assert sorted(server.requests) == sorted(f"/{n}" for n in NAMES)
    mnist = load_mnist(target, as_images=True)  # the reader the later wiring will call
    assert mnist.train.x.shape == (12, 28, 28, 1) and mnist.test.y.tolist() == [0, 1, 2, 3]
    fetch_mnist(target, mirrors=[server.url], checksums=sums, progress=True)
    assert len(server.requests) == 4 and capsys.readouterr().err == ""  # present and intact: kept
    assert sorted(p.name for p in target.iterdir()) == sorted(NAMES)


def test_a_corrupted_download_leaves_nothing_behind(server: Server, tmp_path: Path) -> None:
    sums = write_mnist(server.root)
    (server.root / NAMES[0]).write_bytes(b"not what was promised")
    target = tmp_path / "data"
    with pytest.raises(DownloadError) as info:
        fetch_mnist(target, mirrors=[server.url], checksums=sums, progress=False)
    text = str(info.value)
    assert "checksum mismatch" in text and f"{server.url}{NAMES[0]}" in text and "\n" not in text
    assert list(target.iterdir()) == []  # no partial file, no corrupted file


@pytest.mark.parametrize("bad", ["unreachable", "missing", "corrupted", "silent"])
def test_a_failing_mirror_is_followed_by_the_next(bad: str, server: Server, tmp_path: Path) -> None:
    sums = write_mnist(server.root)
    listener = socket.socket()  # "silent": accepts connections (backlog) and never answers
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    try:
        first = {"unreachable": closed_port_url(), "missing": server.url + "nothing-here/",
                 "silent": f"http://127.0.0.1:{listener.getsockname()[1]}/"}.get(bad, server.url + "bad/")
        if bad == "corrupted":
            (server.root / "bad").mkdir()
            for name in NAMES:
                (server.root / "bad" / name).write_bytes(b"garbage")
        path = download_file([first + NAMES[1], server.url + NAMES[1]], tmp_path / NAMES[1], sums[NAMES[1]],
                             progress=False, timeout=0.5)
    finally:
        listener.close()
    assert path.read_bytes() == (server.root / NAMES[1]).read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["served", NAMES[1]])


def test_offline_is_one_line_naming_every_mirror(tmp_path: Path) -> None:
    mirrors = [closed_port_url(), closed_port_url()]
    with pytest.raises(DownloadError) as info:
        fetch_mnist(tmp_path / "data", mirrors=mirrors, checksums={n: "0" * 64 for n in NAMES},
                    progress=False, timeout=2)
    text = str(info.value)
    assert "\n" not in text and text.startswith("download_file: could not download")
    for mirror in mirrors:
        assert f"{mirror}{NAMES[0]} (" in text
    assert isinstance(info.value, OSError)
    assert list((tmp_path / "data").iterdir()) == []


def test_a_damaged_file_on_disk_is_downloaded_again(server: Server, tmp_path: Path) -> None:
    sums = write_mnist(server.root)
    target = tmp_path / NAMES[3]
    target.write_bytes(b"truncated")
    download_file([server.url + NAMES[3]], target, sums[NAMES[3]], progress=False)
    assert target.read_bytes() == (server.root / NAMES[3]).read_bytes() and len(server.requests) == 1


def test_the_cache_directory(server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FUNCTRAIN_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_directory() == tmp_path / "xdg" / "functrain" / "datasets"
    sums = write_mnist(server.root)
    out = fetch_mnist(None, kind="mnist", mirrors=[server.url], checksums=sums, progress=False)
    assert out == tmp_path / "xdg" / "functrain" / "datasets" / "mnist" and len(list(out.iterdir())) == 4
    monkeypatch.setenv("FUNCTRAIN_DATA", str(tmp_path / "mine"))
    assert cache_directory() == tmp_path / "mine"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.delenv("FUNCTRAIN_DATA")
    assert cache_directory() == Path.home() / ".cache" / "functrain" / "datasets"


def test_the_official_checksums_and_mirrors_are_complete() -> None:
    from functrain.data import MIRRORS

    for kind in ("mnist", "fashion"):
        assert sorted(MNIST_FILES[kind]) == sorted(NAMES)
        assert all(re.fullmatch(r"[0-9a-f]{64}", s) for s in MNIST_FILES[kind].values())
        assert len(MIRRORS[kind]) >= 2 and all(m.endswith("/") for m in MIRRORS[kind])
    assert MNIST_FILES["mnist"]["train-images-idx3-ubyte.gz"].startswith("440fcabf73cc546f")


def _any(value: object) -> Any:
    return value


@pytest.mark.parametrize(("call", "error", "name"), [
    (lambda: download_file([], "x", "0" * 64), ValueError, "urls"),
    (lambda: download_file(_any("http://a/x"), "x", "0" * 64), TypeError, "urls"),
    (lambda: download_file([_any(3)], "x", "0" * 64), TypeError, "urls[0]"),
    (lambda: download_file(["http://a/x"], _any(3), "0" * 64), TypeError, "path"),
    (lambda: download_file(["http://a/x"], "x", "abc"), ValueError, "sha256"),
    (lambda: download_file(["http://a/x"], "x", "0" * 64, timeout=0), ValueError, "timeout"),
    (lambda: download_file(["http://a/x"], "x", "0" * 64, progress=_any("no")), TypeError, "progress"),
    (lambda: fetch_mnist("d", kind=_any("kmnist")), ValueError, "kind"),
    (lambda: fetch_mnist("d", checksums={"a": "0" * 64}), ValueError, "checksums"),
    (lambda: fetch_mnist("d", checksums=_any(["0" * 64])), TypeError, "checksums"),
    (lambda: fetch_mnist("d", checksums={n: "0" for n in NAMES}), ValueError, "checksums"),
    (lambda: fetch_mnist(_any(5)), TypeError, "directory"),
])
def test_errors(call: object, error: type[Exception], name: str) -> None:
    with pytest.raises(error) as info:
        call()  # type: ignore[operator]  # a lambda from the table
    text = str(info.value)
    assert f"argument '{name}'" in text and STYLE.match(text), text
