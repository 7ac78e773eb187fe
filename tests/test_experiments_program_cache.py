"""The tricks engine's on-disk programs: a second process neither traces nor compiles, same numbers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _cli import toy_splits
from _typed import eval_shape

from functrain import _jax
from functrain.experiments import tricks
from functrain.experiments.tricks import chunks, program_cache


@pytest.fixture
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Programs kept under ``tmp_path`` (as if JAX's persistent cache were on there)."""
    where = tmp_path / program_cache.SUBDIRECTORY
    monkeypatch.setattr(program_cache, "directory", lambda: where)
    return where


class _Builds:
    """Counts the programs traced and compiled (``functrain._jax.compile_ahead`` calls)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.n = 0
        original = _jax.compile_ahead

        def counted(*args: Any, **kwargs: Any) -> Any:
            self.n += 1
            return original(*args, **kwargs)

        monkeypatch.setattr(_jax, "compile_ahead", counted)


def _double(v: jax.Array) -> jax.Array:
    return 2.0 * v + 1.0


def test_a_kept_program_is_loaded_not_rebuilt(cache_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    x, builds = jnp.arange(5.0), _Builds(monkeypatch)
    program, shapes = program_cache.compiled(("double", 1), _double, (x,))
    assert builds.n == 1 and len(list(cache_dir.glob("*.program"))) == 1
    again, shapes_again = program_cache.compiled(("double", 1), _double, (x,))
    assert builds.n == 1  # loaded from disk: no trace, no compile
    np.testing.assert_array_equal(again(x), program(x))
    np.testing.assert_array_equal(again(x + 3.0), _double(x + 3.0))
    assert shapes_again == shapes and (shapes.shape, shapes.dtype) == ((5,), jnp.float32)
    # Another description or other shapes: another program.
    program_cache.compiled(("double", 2), _double, (x,))
    program_cache.compiled(("double", 1), _double, (x[:3],))
    assert builds.n == 3 and len(list(cache_dir.glob("*.program"))) == 3


@pytest.mark.parametrize("damage", ["flip", "truncate", "empty", "garbage"])
def test_a_damaged_entry_is_rebuilt_and_replaced(cache_dir: Path, damage: str,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    x, builds = jnp.arange(4.0), _Builds(monkeypatch)
    program_cache.compiled("d", _double, (x,))
    (path,) = cache_dir.glob("*.program")
    blob = path.read_bytes()
    damaged = {"flip": blob[:100] + bytes([blob[100] ^ 1]) + blob[101:], "truncate": blob[: len(blob) // 2],
               "empty": b"", "garbage": b"x" * 40}[damage]
    path.write_bytes(damaged)
    program, _ = program_cache.compiled("d", _double, (x,))
    assert builds.n == 2  # the damaged entry was a miss
    np.testing.assert_array_equal(program(x), _double(x))
    assert len(path.read_bytes()) > 40  # replaced by a good entry
    loaded, _ = program_cache.compiled("d", _double, (x,))
    np.testing.assert_array_equal(loaded(x), _double(x))
    assert builds.n == 2


def test_an_entry_that_cannot_run_is_rebuilt_at_its_first_call(cache_dir: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """Should XLA load a kept executable that then fails to run, the first call compiles afresh,
    replaces the entry and returns the right numbers."""
    x, builds = jnp.arange(3.0), _Builds(monkeypatch)
    program_cache.compiled("d", _double, (x,))

    def broken(*args: Any) -> Any:
        raise jax.errors.JaxRuntimeError("NOT_FOUND: Function fusion not found")

    good = program_cache._load  # pyright: ignore[reportPrivateUsage]  # the loader under test
    monkeypatch.setattr(program_cache, "_load", lambda path: (broken, good(path)[1]))  # type: ignore[index]
    program, _ = program_cache.compiled("d", _double, (x,))
    np.testing.assert_array_equal(program(x), _double(x))
    np.testing.assert_array_equal(program(x + 1), _double(x + 1))
    assert builds.n == 2
    monkeypatch.setattr(program_cache, "_load", good)
    loaded, _ = program_cache.compiled("d", _double, (x,))
    np.testing.assert_array_equal(loaded(x), _double(x))
    assert builds.n == 2


def test_a_program_in_jaxs_own_cache_is_still_kept_runnable(cache_dir: Path, tmp_path: Path) -> None:
    """The build compiles afresh even when JAX's persistent cache holds the program: XLA:CPU
    cannot re-serialize an executable loaded from that cache (the kept copy would not run)."""
    import subprocess
    import sys
    import textwrap

    script = textwrap.dedent(f"""
        import jax, jax.numpy as jnp
        jax.config.update("jax_compilation_cache_dir", {str(tmp_path / "jax")!r})
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
        jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
        from functrain.experiments.tricks import program_cache
        x = jnp.arange(4.0)
        program, _ = program_cache.compiled("triple", lambda v: 3.0 * v + 2.0, (x,))
        print(program(x).tolist())
    """)
    for _ in range(3):  # compile; JAX's cache holds it, ours too; both load
        out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
        assert out.strip() == "[2.0, 5.0, 8.0, 11.0]"
    (entry,) = (tmp_path / "jax" / program_cache.SUBDIRECTORY).glob("*.program")
    entry.unlink()  # ours is gone, JAX's is not: the program is compiled afresh and kept runnable
    for _ in range(2):
        out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
        assert out.strip() == "[2.0, 5.0, 8.0, 11.0]"


def test_without_a_cache_directory_nothing_is_kept(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(program_cache, "directory", lambda: None)
    x, builds = jnp.ones(2), _Builds(monkeypatch)
    for _ in range(2):
        program_cache.compiled("d", _double, (x,))
    assert builds.n == 2 and not any(tmp_path.iterdir())


def test_the_name_covers_shapes_types_options_source_host_and_flags(monkeypatch: pytest.MonkeyPatch) -> None:
    x = jnp.ones((2, 3))
    base = program_cache.program_key("p", (x,), None)
    assert base == program_cache.program_key("p", (x + 1,), None)  # values do not count
    assert base == program_cache.program_key("p", (eval_shape(lambda: x),), None)  # a jax.ShapeDtypeStruct
    others = [
        program_cache.program_key("q", (x,), None),
        program_cache.program_key("p", (x.T,), None),
        program_cache.program_key("p", (x.astype(jnp.int32),), None),
        program_cache.program_key("p", ((x,),), None),  # another tree structure
        program_cache.program_key("p", (x, 1.0), None),
        program_cache.program_key("p", (x,), {"xla_backend_optimization_level": 0}),
        program_cache.program_key("p", (jax.random.split(jax.random.key(0), 2),), None),
    ]
    monkeypatch.setattr(program_cache, "_source_digest", lambda: "edited")
    others.append(program_cache.program_key("p", (x,), None))
    monkeypatch.undo()
    monkeypatch.setattr(program_cache, "_host", lambda: ("x86_64", "", "another CPU's features"))
    others.append(program_cache.program_key("p", (x,), None))
    monkeypatch.undo()
    monkeypatch.setenv("XLA_FLAGS", "--xla_cpu_enable_fast_math=true")
    others.append(program_cache.program_key("p", (x,), None))
    assert len({base, *others}) == len(others) + 1
    # A weak-typed Python scalar and a float32 array trace to different programs.
    assert program_cache.program_key("p", (1.0,), None) != program_cache.program_key("p", (jnp.float32(1),), None)


def test_a_second_compile_of_a_tricks_row_loads_every_program(cache_dir: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """``compile_chunked`` twice (as two ``functrain tricks`` runs): the second traces and compiles
    nothing, and its run gives the first run's numbers bit for bit."""
    splits = toy_splits()
    config = tricks.RunConfig(hidden=(8,), batch_norm=True, dropout=0.2, epochs=3, batch_size=16)
    keys = jax.random.split(jax.random.key(3), 2)
    first = chunks.run_chunked(chunks.compile_chunked(config, splits, keys, chunk_epochs=2), keys)
    kept = sorted(cache_dir.glob("*.program"))
    assert len(kept) == 4  # start, train 2 epochs, train the remaining 1, finish
    builds = _Builds(monkeypatch)
    second = chunks.run_chunked(chunks.compile_chunked(config, splits, keys, chunk_epochs=2), keys)
    assert builds.n == 0 and sorted(cache_dir.glob("*.program")) == kept
    for a, b in zip(jax.tree_util.tree_leaves(first), jax.tree_util.tree_leaves(second), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    # Another row (another trick) is another set of programs.
    chunks.compile_chunked(config._replace(dropout=0.0), splits, keys, chunk_epochs=2)
    assert builds.n == 4
