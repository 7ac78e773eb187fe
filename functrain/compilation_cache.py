"""JAX's persistent compilation cache, for programs that compile the same training code every run.

A short training run on a CPU spends most of its time in XLA compiling; the compiled programs can be
kept on disk and reused by the next process that compiles the same program (same code, shapes,
dtypes, JAX version and machine). :func:`enable` turns that on; the ``functrain`` command and the
examples call it at start-up, so their second run skips compilation.

Where: ``$FUNCTRAIN_CACHE`` if set, else ``$XDG_CACHE_HOME/functrain/jax`` (default
``~/.cache/functrain/jax``). ``FUNCTRAIN_CACHE=off`` (or ``0``, ``no``, ``false``) disables it.
Deleting the directory is always safe: the cache only decides where compiled programs come from,
never what they compute. The library itself never turns the cache on behind a user's back: only
applications call :func:`enable`.

Example:
    >>> import tempfile
    >>> from functrain import compilation_cache
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     compilation_cache.default_directory({"FUNCTRAIN_CACHE": tmp}) == tmp
    True
    >>> compilation_cache.default_directory({compilation_cache.ENV_VAR: "off"}) is None
    True
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import cast
from pathlib import Path

import jax

from functrain import _validate

__all__ = ["ENV_VAR", "default_directory", "enable"]

ENV_VAR = "FUNCTRAIN_CACHE"
"""The environment variable that relocates (a directory) or disables (``off``) the cache."""

_OFF = ("off", "0", "no", "false")


def default_directory(environ: Mapping[str, str] | None = None) -> str | None:
    """The cache directory the environment asks for, or ``None`` when the cache is disabled.

    Args:
        environ: the environment to read (default ``os.environ``).

    Returns:
        ``$FUNCTRAIN_CACHE`` when set to a path, ``None`` when set to ``off``/``0``/``no``/``false``,
        else ``$XDG_CACHE_HOME/functrain/jax`` (``~/.cache/functrain/jax`` without XDG).

    Example:
        >>> from functrain import compilation_cache
        >>> compilation_cache.default_directory({"XDG_CACHE_HOME": "/data/cache"})
        '/data/cache/functrain/jax'
    """
    env = os.environ if environ is None else environ
    setting = env.get(ENV_VAR, "").strip()
    if setting.lower() in _OFF:
        return None
    if setting:
        return setting
    base = env.get("XDG_CACHE_HOME", "").strip() or str(Path.home() / ".cache")
    return str(Path(base) / "functrain" / "jax")


def enable(directory: str | os.PathLike[str] | None = None, *,
           environ: Mapping[str, str] | None = None) -> Path | None:
    """Turn on JAX's persistent compilation cache for this process.

    Every compiled program is cached, however quick its compilation (a training run compiles a
    few large programs and many tiny ones; both are worth keeping).

    Args:
        directory: where to keep the compiled programs; ``None`` asks the environment
            (:func:`default_directory`), which may disable the cache.
        environ: the environment to ask (default ``os.environ``).

    Returns:
        The cache directory, or ``None`` when the cache is disabled or the directory cannot be
        created (the program then runs without a cache: a cache is never a reason to fail).

    Raises:
        TypeError: ``directory`` is not a path.

    Call it once at start-up, before anything is compiled: JAX reads the setting when it first
    compiles.

    Example:
        >>> from functrain import compilation_cache
        >>> compilation_cache.enable(environ={"FUNCTRAIN_CACHE": "off"}) is None
        True
    """
    if directory is not None and not isinstance(cast(object, directory), (str, os.PathLike)):
        _validate.fail("enable", "directory", "a path or None", directory, error=TypeError)
    chosen = default_directory(environ) if directory is None else os.fspath(directory)
    if chosen is None:
        return None
    path = Path(chosen).expanduser()
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    update = cast(Callable[[str, object], None],
                  jax.config.update)  # pyright: ignore[reportUnknownMemberType]  # untyped in jax
    update("jax_compilation_cache_dir", str(path))
    update("jax_persistent_cache_min_compile_time_secs", 0.0)
    update("jax_persistent_cache_min_entry_size_bytes", 0)
    return path
