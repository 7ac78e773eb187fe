"""Test-suite configuration: JAX's persistent compilation cache for a fast inner loop.

Most of the suite's time is XLA compiling thousands of small programs. The compiled programs are
kept in a persistent cache (``$FUNCTRAIN_TEST_CACHE``, default ``~/.cache/functrain/jax-tests``), so a
second ``pytest -m "not slow"`` skips the compilations (measured on 2 cores: 166 s cold, 52 s warm).
Set ``FUNCTRAIN_TEST_CACHE=off`` to compile everything afresh. The cache only changes where compiled
programs come from, never what runs: tracing (and so every trace-count test) happens as usual.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import jax


def _enable_compilation_cache_for_tests() -> None:
    setting = os.environ.get("FUNCTRAIN_TEST_CACHE", "")
    if setting.lower() in ("off", "0", "no", "false"):
        return
    directory = Path(setting) if setting else Path.home() / ".cache" / "functrain" / "jax-tests"
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError:
        return  # a read-only home: run without the cache
    update: Callable[[str, object], None] = jax.config.update  # pyright: ignore[reportUnknownMemberType, reportUnknownVariableType]  # untyped in jax
    update("jax_compilation_cache_dir", str(directory))
    update("jax_persistent_cache_min_compile_time_secs", 0.0)
    update("jax_persistent_cache_min_entry_size_bytes", 0)


_enable_compilation_cache_for_tests()
