"""``load_mnist(directory=None, download=True)`` against a real local HTTP server (the server and the
tiny IDX files of tests/test_data_download.py): into a directory or the data cache directory,
MNIST or Fashion-MNIST by name, once only, a corrupted download leaving nothing behind, offline as
one line naming the mirrors, and reading the cache without downloading."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from test_data_download import NAMES, Server, closed_port_url, write_mnist
from test_data_download import server as server  # noqa: F401  # the fixture, used by name

from functrain.data import DownloadError, load_mnist


def test_download_into_a_directory_then_read(server: Server, tmp_path: Path) -> None:  # noqa: F811
    sums = write_mnist(server.root)
    target = tmp_path / "data"
    mnist = load_mnist(target, download=True, mirrors=[server.url], checksums=sums, as_images=True)
    assert mnist.train.x.shape == (12, 28, 28, 1) and mnist.test.y.tolist() == [0, 1, 2, 3]
    assert mnist.train.name == "mnist" and mnist.train.num_classes == 10
    assert sorted(p.name for p in target.iterdir()) == sorted(NAMES)
    again = load_mnist(target, download=True, mirrors=[server.url], checksums=sums)
    assert len(server.requests) == 4  # present and intact: nothing downloaded the second time
    np.testing.assert_array_equal(np.asarray(again.train.x).reshape(12, 28, 28),
                                  np.asarray(mnist.train.x)[..., 0])


def test_without_a_directory_the_cache_is_used(server: Server, tmp_path: Path,  # noqa: F811
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FUNCTRAIN_DATA", str(tmp_path / "cache"))
    with pytest.raises(FileNotFoundError, match=r"load_mnist: directory not found: .*cache/fashion-mnist"):
        load_mnist(name="fashion-mnist")  # nothing there yet, and nothing downloaded without download=True
    assert not server.requests
    sums = write_mnist(server.root)
    fashion = load_mnist(download=True, name="fashion-mnist", mirrors=[server.url], checksums=sums)
    assert sorted(p.name for p in (tmp_path / "cache" / "fashion-mnist").iterdir()) == sorted(NAMES)
    assert fashion.train.name == "fashion-mnist" and fashion.train.x.shape == (12, 784)
    assert not (tmp_path / "cache" / "mnist").exists()
    load_mnist(download=True, mirrors=[server.url], checksums=sums)  # MNIST: its own sub-directory
    assert sorted(p.name for p in (tmp_path / "cache" / "mnist").iterdir()) == sorted(NAMES)
    assert load_mnist().test.x.shape == (4, 784)  # read from the cache, no download
    assert len(server.requests) == 8


def test_a_corrupted_download_raises_and_leaves_nothing(server: Server, tmp_path: Path) -> None:  # noqa: F811
    sums = write_mnist(server.root)
    (server.root / NAMES[2]).write_bytes(b"not what was promised")
    with pytest.raises(DownloadError, match="checksum mismatch"):
        load_mnist(tmp_path / "data", download=True, mirrors=[server.url], checksums=sums)
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == sorted(NAMES[:2])  # the intact ones


def test_offline_is_one_line_naming_the_mirrors(tmp_path: Path) -> None:
    mirrors = [closed_port_url(), closed_port_url()]
    with pytest.raises(DownloadError) as info:
        load_mnist(tmp_path / "data", download=True, mirrors=mirrors, checksums={n: "0" * 64 for n in NAMES})
    text = str(info.value)
    assert "\n" not in text and all(f"{m}{NAMES[0]} (" in text for m in mirrors)


def test_bad_arguments() -> None:
    with pytest.raises(TypeError, match=r"^load_mnist: argument 'download' must be a bool, got 1$"):
        load_mnist("d", download=1)  # type: ignore[arg-type]  # the wrong kind on purpose
    with pytest.raises(TypeError, match=r"^load_mnist: argument 'directory' must be a path"):
        load_mnist(3)  # type: ignore[arg-type]  # the wrong kind on purpose
