"""functrain.compilation_cache: where the cache goes, how to disable it, and that it is reused."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from functrain import compilation_cache

_PROGRAM = """
import sys, time
import jax, jax.numpy as jnp
from functrain import compilation_cache
print(compilation_cache.enable())
f = jax.jit(lambda x: jnp.sin(x) @ jnp.cos(x).T + jnp.tanh(x).sum())
f(jnp.ones((37, 41))).block_until_ready()
"""


def test_default_directory_follows_the_environment(tmp_path: Path) -> None:
    assert compilation_cache.default_directory({"FUNCTRAIN_CACHE": str(tmp_path)}) == str(tmp_path)
    for off in ("off", "OFF", "0", "no", "false"):
        assert compilation_cache.default_directory({"FUNCTRAIN_CACHE": off}) is None
    assert compilation_cache.default_directory({"XDG_CACHE_HOME": "/x"}) == "/x/functrain/jax"
    home = compilation_cache.default_directory({})
    assert home == str(Path.home() / ".cache" / "functrain" / "jax")


def test_enable_refuses_a_non_path_and_survives_an_unwritable_directory(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="enable: argument 'directory' must be a path or None, got 3"):
        compilation_cache.enable(3)  # type: ignore[arg-type]  # the wrong type on purpose
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    assert compilation_cache.enable(blocker / "cache") is None
    assert compilation_cache.enable(environ={"FUNCTRAIN_CACHE": "off"}) is None


@pytest.mark.slow
def test_a_second_process_reuses_the_compiled_program(tmp_path: Path) -> None:
    env = {**os.environ, "FUNCTRAIN_CACHE": str(tmp_path / "cache")}
    written: list[list[Path]] = []
    for _ in range(2):
        out = subprocess.run([sys.executable, "-c", _PROGRAM], env=env, capture_output=True,
                             text=True, check=True)
        assert out.stdout.strip() == str(tmp_path / "cache")
        written.append(sorted(p for p in (tmp_path / "cache").rglob("*") if p.is_file()))
    assert written[0], "the first run wrote no cache entry"
    assert written[1] == written[0], "the second run compiled again instead of reusing the cache"
    off = subprocess.run([sys.executable, "-c", _PROGRAM],
                         env={**env, "FUNCTRAIN_CACHE": "off"}, capture_output=True, text=True,
                         check=True)
    assert off.stdout.strip() == "None"
