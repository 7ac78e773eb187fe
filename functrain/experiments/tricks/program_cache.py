"""The tricks engine's compiled programs, kept on disk: a second run neither traces nor compiles them.

JAX's persistent compilation cache (:mod:`functrain.compilation_cache`) skips XLA's compilation,
but a second ``functrain tricks`` still traces and lowers every program to find its cache key:
about 0.7 s of the 0.9 s a cached table row took on a 2-core CPU (3.2 s cold). The tricks
engine knows its programs by value -- a :class:`~functrain.experiments.tricks.programs.Structure`,
an initializer, a :class:`~functrain.experiments.tricks.programs.Layout` and the argument shapes --
so it can name a program without tracing it. :func:`compiled` keeps each compiled executable
(``jax.experimental.serialize_executable``) under that name and loads it in the next process.

The name is a SHA-256 of everything the program depends on: the description the caller gives,
the arguments' tree structure, shapes and dtypes, the compiler options, the source of every
``functrain`` module (any edit gives new names), the JAX and jaxlib versions, the backend and its
devices, the host's architecture and CPU features, ``XLA_FLAGS`` and the JAX settings that change
programs (x64, PRNG implementation and partitioning, default matmul precision). A stale entry can therefore not be found; a corrupt or
unreadable one is ignored and replaced. The programs live in ``functrain-programs/`` inside JAX's
cache directory, so they exist only while an application turned that cache on (the ``functrain``
command does; ``FUNCTRAIN_CACHE=off`` or ``--no-cache`` turns both off), and deleting the
directory is always safe.

One XLA caveat shapes the code: an executable that JAX loaded from its own persistent cache cannot
be re-serialized (the copy lacks the compiled kernels). Programs kept here are therefore compiled
afresh, under a compile option of their own, and a kept program that fails at its first call is
compiled again (a cache is never a reason to fail).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import pickle
import platform
from collections.abc import Callable, Sequence
from functools import cache
from pathlib import Path
from typing import Any

import jax
from jax._src import config as jax_config  # the thread-local switch of JAX's persistent cache
from jax.experimental import serialize_executable

import functrain
from functrain import _jax
from functrain.train._atomic import write_atomically

__all__ = ["SUBDIRECTORY", "compiled", "directory", "program_key"]

SUBDIRECTORY = "functrain-programs"
"""Where the programs live, inside JAX's compilation cache directory."""

_SETTINGS = ("jax_enable_x64", "jax_default_prng_impl", "jax_threefry_partitionable",
             "jax_default_matmul_precision", "jax_numpy_dtype_promotion", "jax_numpy_rank_promotion")
_DIGEST = hashlib.sha256().digest_size

Program = tuple[Callable[..., Any], Any]
"""A compiled program and the shapes of its outputs (a tree of ``jax.ShapeDtypeStruct``)."""


def directory() -> Path | None:
    """The programs' directory: inside JAX's cache directory when that cache is on, else ``None``.

    Example:
        >>> directory() is None or directory().name == SUBDIRECTORY
        True
    """
    jax_dir: object = getattr(jax.config, "jax_compilation_cache_dir")
    if not isinstance(jax_dir, str) or not jax_dir:
        return None
    return Path(jax_dir) / SUBDIRECTORY


@cache
def _host() -> tuple[str, str, str]:
    """The machine's architecture and CPU features: XLA:CPU compiles for the host's instruction set,
    so a program kept on a shared disk by another machine must not be found here."""
    flags = ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            flags = next((line for line in f if line.startswith(("flags", "Features"))), "")
    except OSError:
        pass
    return platform.machine(), platform.processor(), hashlib.sha256(flags.encode()).hexdigest()


@cache
def _source_digest() -> str:
    """SHA-256 of every ``functrain`` module's path and source (computed once per process)."""
    root = Path(functrain.__file__).parent
    h = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        h.update(path.relative_to(root).as_posix().encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def _environment() -> tuple[object, ...]:
    found: list[object] = list(getattr(jax, "devices")())  # (the stub's Device is partly untyped)
    devices = tuple((repr(getattr(d, "platform", "")), repr(getattr(d, "device_kind", ""))) for d in found)
    settings = tuple((name, repr(getattr(jax.config, name))) for name in _SETTINGS)
    return (_source_digest(), jax.__version__, importlib.metadata.version("jaxlib"), jax.default_backend(),
            devices, _host(), os.environ.get("XLA_FLAGS", ""), settings)


def _aval(x: Any) -> tuple[tuple[int, ...], str, bool]:
    """Shape, dtype and weak type of an array, a ``jax.ShapeDtypeStruct`` or a Python scalar."""
    if not (hasattr(x, "shape") and hasattr(x, "dtype")):
        x = jax.typeof(x)
    return tuple(x.shape), str(x.dtype), bool(getattr(x, "weak_type", False))


def _avals(args: Sequence[Any]) -> tuple[str, tuple[tuple[tuple[int, ...], str, bool], ...]]:
    leaves, treedef = jax.tree_util.tree_flatten(args)
    return str(treedef), tuple(_aval(x) for x in leaves)


def program_key(description: object, args: Sequence[Any], compiler_options: dict[str, Any] | None) -> str:
    """The name of a program: SHA-256 of its description, arguments' shapes and the environment.

    ``description`` must determine the traced function (given the arguments' shapes) and have a
    deterministic ``repr`` (no memory addresses, no unordered sets).

    Example:
        >>> import jax.numpy as jnp
        >>> a = program_key(("double", 1), (jnp.ones(3),), None)
        >>> a == program_key(("double", 1), (jnp.zeros(3),), None)  # values do not matter
        True
        >>> a == program_key(("double", 1), (jnp.ones(4),), None)  # shapes do
        False
    """
    options = sorted((compiler_options or {}).items())
    text = repr((description, _avals(args), options, _environment()))
    return hashlib.sha256(text.encode()).hexdigest()


def _load(path: Path) -> Program | None:
    try:
        blob = path.read_bytes()
    except OSError:
        return None
    body, digest = blob[:-_DIGEST], blob[-_DIGEST:]
    if len(blob) <= _DIGEST or hashlib.sha256(body).digest() != digest:
        return None
    try:
        serialized, in_tree, out_tree, out_info = pickle.loads(body)  # our own file: checksummed
        load: Callable[..., Callable[..., Any]] = getattr(serialize_executable, "deserialize_and_load")
        program = load(serialized, in_tree, out_tree)
    except Exception:  # noqa: BLE001 (an unreadable entry is a miss: compile again)
        return None
    return program, out_info


def _store(path: Path, program: Any, out_info: Any) -> None:
    try:
        serialized, in_tree, out_tree = serialize_executable.serialize(program)
        body = pickle.dumps((serialized, in_tree, out_tree, out_info), protocol=pickle.HIGHEST_PROTOCOL)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(str(path), (body,))
    except Exception:  # noqa: BLE001 (a cache is never a reason to fail)
        return


# A compile option that does not change the program (no collectives here) but does change JAX's
# persistent-cache key, so a program compiled for this cache never comes from JAX's cache.
_OWN_COMPILE = {"xla_cpu_collective_call_warn_stuck_seconds": 21}


def _fresh(fn: Callable[..., Any], args: Sequence[Any], compiler_options: dict[str, Any] | None) -> Program:
    """``fn`` traced, lowered and compiled by XLA -- never loaded from JAX's persistent cache.

    XLA:CPU cannot re-serialize an executable that JAX loaded from its own cache: the copy lacks
    the compiled kernels and fails when run ("Function ... not found"; jax 0.10.2). So the program
    is compiled with :data:`_OWN_COMPILE` (a key of its own) and not written to JAX's cache (only
    to this one): the minimum compile time for JAX's cache is raised in this thread meanwhile.
    """
    with jax_config.persistent_cache_min_compile_time_secs(float("inf")):
        return _jax.compile_ahead(fn, *args, compiler_options={**(compiler_options or {}), **_OWN_COMPILE})


class _Checked:
    """A loaded program whose first call falls back to ``rebuild()`` (compile and keep again) if
    the executable cannot run."""

    def __init__(self, program: Callable[..., Any], rebuild: Callable[[], Program]) -> None:
        self.program, self.rebuild, self.checked = program, rebuild, False

    def __call__(self, *args: Any) -> Any:
        if self.checked:
            return self.program(*args)
        try:
            out = self.program(*args)
        except jax.errors.JaxRuntimeError:  # a kept executable that this XLA cannot run: a miss
            self.program = self.rebuild()[0]  # (rebuild replaces the kept entry)
            out = self.program(*args)
        self.checked = True
        return out


def compiled(description: object, fn: Callable[..., Any], args: Sequence[Any],
             compiler_options: dict[str, Any] | None = None) -> Program:
    """``fn`` compiled for ``args``: loaded from disk when kept there, else compiled and kept.

    Args:
        description: what determines ``fn`` given the arguments' shapes (see :func:`program_key`).
        fn: the function to compile (traced only on a miss).
        args: the arguments it is compiled for (only their tree structure, shapes and dtypes count).
        compiler_options: XLA options, on top of ``functrain._jax.TRAINING_COMPILER_OPTIONS``.

    Returns:
        ``(program, out_info)``: the compiled program and the shapes of its outputs.

    Example:
        >>> import jax.numpy as jnp
        >>> x = jnp.ones(3)
        >>> program, shapes = compiled(("double", 1), lambda v: 2 * v, (x,))
        >>> program(x).tolist(), shapes.shape
        ([2.0, 2.0, 2.0], (3,))
    """
    where = directory()
    if where is None:
        return _jax.compile_ahead(fn, *args, compiler_options=compiler_options)
    path = where / f"{program_key(description, args, compiler_options)}.program"

    def rebuild() -> Program:
        program, out_info = _fresh(fn, args, compiler_options)
        _store(path, program, out_info)
        return program, out_info

    found = _load(path)
    if found is not None:
        return _Checked(found[0], rebuild), found[1]
    return rebuild()
