"""The ``functrain`` command's compilation cache (issue 14) and its MNIST data (issue 17).

The cache: turned on at start-up in ``$FUNCTRAIN_CACHE`` (or the user's cache directory), off with
``--no-cache`` or ``FUNCTRAIN_CACHE=off``, and a cache the process already has is kept (checked in
fresh subprocesses, so the test suite's own cache is left alone). MNIST: ``--data mnist`` downloads
through ``load_mnist(download=True)`` -- here from a local HTTP server serving tiny IDX files (the
mirrors and checksums patched in) -- and offline is one error line naming the mirrors.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from _cli import REPO, one_error_line
from test_data_download import NAMES, Server, closed_port_url, write_mnist
from test_data_download import server as server  # noqa: F401  # the fixture, used by name

from functrain.cli import build_parser, enable_cache, main
from functrain.data import download
from functrain.experiments.tricks import commands, lr_range

_PROBE = ("import sys, jax; from functrain.cli import enable_cache; "
          "print(enable_cache('--no-cache' in sys.argv), jax.config.jax_compilation_cache_dir)")


def _probe(environ: dict[str, str], *args: str) -> list[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("FUNCTRAIN_CACHE", "XDG_CACHE_HOME")}
    proc = subprocess.run([sys.executable, "-c", _PROBE, *args], capture_output=True, text=True, cwd=REPO,
                          env={**env, "JAX_PLATFORMS": "cpu", **environ}, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.split()


def test_the_cache_is_on_by_default_and_relocatable(tmp_path: Path) -> None:
    assert _probe({"FUNCTRAIN_CACHE": str(tmp_path / "c")}) == [str(tmp_path / "c")] * 2
    assert (tmp_path / "c").is_dir()
    assert _probe({"XDG_CACHE_HOME": str(tmp_path / "xdg")}) == [str(tmp_path / "xdg" / "functrain" / "jax")] * 2


@pytest.mark.parametrize(("environ", "args"), [({"FUNCTRAIN_CACHE": "off"}, ()), ({}, ("--no-cache",))])
def test_the_cache_can_be_turned_off(environ: dict[str, str], args: tuple[str, ...], tmp_path: Path) -> None:
    assert _probe({"XDG_CACHE_HOME": str(tmp_path), **environ}, *args) == ["None", "None"]
    assert not (tmp_path / "functrain").exists()


def test_a_cache_the_process_has_is_kept() -> None:
    import jax

    existing = getattr(jax.config, "jax_compilation_cache_dir", None)  # the suite's (tests/conftest.py), if on
    if existing is None:
        pytest.skip("the test suite runs without a compilation cache (FUNCTRAIN_TEST_CACHE=off)")
    assert enable_cache(False) == str(existing)
    assert getattr(jax.config, "jax_compilation_cache_dir", None) == existing


def test_the_flags_are_documented_and_parsed() -> None:
    args = vars(build_parser().parse_args(["tricks", "--model", "cnn", "--canon", "--data", "mnist", "--prng",
                                           "unsafe_rbg", "--no-cache"]))
    assert args.pop("command") == "tricks" and args.pop("no_cache") is True
    targs = commands.TricksArgs(**args)
    assert (targs.model, targs.canon, targs.data, targs.prng) == ("cnn", True, "mnist", "unsafe_rbg")
    assert commands.tricks_command_line(targs) == ("functrain tricks --canon --model cnn --data mnist "
                                                   "--prng unsafe_rbg")
    lr = vars(build_parser().parse_args(["lr-find", "--optimizer", "sgd", "--min-lr", "1e-5", "--steps", "50",
                                         "--label-smoothing", "0.1"]))
    lr.pop("command")
    lr.pop("no_cache")
    largs = lr_range.LrFindArgs(**lr)
    assert (largs.min_lr, largs.max_lr, largs.steps, largs.label_smoothing) == (1e-5, 10.0, 50, 0.1)
    assert largs.out == "functrain-lr-find" and largs.seeds is None
    text = " ".join(build_parser().format_help().split())
    assert "persistent cache ($FUNCTRAIN_CACHE" in text and "lr-find" in text


# ----------------------------------------------------------------------------------------------
# --data mnist


@pytest.fixture
def local_mnist(server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Server:  # noqa: F811
    """MNIST's mirrors and checksums pointed at the local server's tiny files; an empty data cache."""
    sums = write_mnist(server.root)
    monkeypatch.setitem(download.MIRRORS, "mnist", (server.url,))
    for name, checksum in sums.items():
        monkeypatch.setitem(download.MNIST_FILES["mnist"], name, checksum)
    monkeypatch.setenv("FUNCTRAIN_DATA", str(tmp_path / "data"))
    return server


@pytest.mark.slow  # trains a tiny run (one compiled program)
def test_train_data_mnist_downloads_once(local_mnist: Server, tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["train", "--data", "mnist", "--quick", "--batch-size", "4", "--epochs", "1", "--out", str(tmp_path / "r")]
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert "downloading train-images-idx3-ubyte.gz" in err
    doc = json.loads((tmp_path / "r" / "history.json").read_text())
    # the 12 training images: 20% held out for validation; MNIST's own 4 test images kept
    assert doc["data"] == {"source": "mnist", "name": "mnist", "n_train": 9, "n_val": 3, "n_test": 4,
                           "features": 784, "num_classes": 10}
    assert sorted(p.name for p in (tmp_path / "data" / "mnist").iterdir()) == sorted(NAMES)
    assert main(argv) == 0  # the second run reads the cache
    assert len(local_mnist.requests) == 4 and "downloading" not in capsys.readouterr().err


def test_train_data_mnist_offline_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    mirrors = (closed_port_url(), closed_port_url())
    monkeypatch.setitem(download.MIRRORS, "mnist", mirrors)
    monkeypatch.setenv("FUNCTRAIN_DATA", str(tmp_path / "data"))
    assert main(["train", "--data", "mnist", "--out", str(tmp_path / "r")]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert line.startswith("functrain: error: --data mnist: download_file: could not download train-images")
    assert all(m in line for m in mirrors)
    assert not (tmp_path / "r").exists()
