"""Every ``>>>`` example in functrain's docstrings runs, and every public name has one.

The examples are found with :class:`doctest.DocTestFinder` in every module of the package (private
ones included) and run with ``ELLIPSIS`` and ``NORMALIZE_WHITESPACE``. As the package docstring
says, examples may assume ``import jax``, ``import jax.numpy as jnp``, ``import numpy as np`` and
``import functrain as ft``.

The coverage rule (issue 11): every function and class named in the ``__all__`` of a public module
(no ``_`` in its dotted path) has an example in its own docstring; every other public name (a type
alias such as ``PyTree``, a layer value such as ``Relu``, a constant) appears in an example of the
docstring of a public module that exports it.
"""

from __future__ import annotations

import doctest
import importlib
import inspect
import pkgutil
import re
from types import ModuleType
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import functrain

# Applications built on the library (the `functrain` command) are not its API.
_NOT_API = ("functrain.cli", "functrain.__main__", "functrain.experiments")


def _modules() -> list[ModuleType]:
    names = ["functrain"] + [m.name for m in pkgutil.walk_packages(functrain.__path__, "functrain.")]
    return [importlib.import_module(n) for n in sorted(names) if n != "functrain.__main__"]


MODULES = _modules()
PUBLIC = [m for m in MODULES
          if not any(p.startswith("_") for p in m.__name__.split("."))
          and not m.__name__.startswith(_NOT_API)]
_FINDER = doctest.DocTestFinder(exclude_empty=True)
EXAMPLES = [t for m in MODULES for t in _FINDER.find(m, m.__name__) if t.examples]
_FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE


def _globs() -> dict[str, Any]:
    return {"jax": jax, "jnp": jnp, "np": np, "ft": functrain}


@pytest.mark.parametrize("test", EXAMPLES, ids=[t.name for t in EXAMPLES])
def test_docstring_example_runs(test: doctest.DocTest) -> None:
    test.globs = {**test.globs, **_globs()}
    runner = doctest.DocTestRunner(optionflags=_FLAGS)
    out: list[str] = []
    runner.run(test, out=out.append, clear_globs=True)
    assert runner.failures == 0, "".join(out)


def _example_text(doc: str | None) -> str:
    """The source lines of the examples in ``doc`` (``>>>`` and ``...`` lines)."""
    if not doc:
        return ""
    return "\n".join(line.strip()[4:] for line in doc.splitlines()
                     if line.strip().startswith((">>> ", "... ")))


def _public_names() -> list[tuple[str, str, Any]]:
    out: list[tuple[str, str, Any]] = []
    for m in PUBLIC:
        for name in getattr(m, "__all__", []):
            obj = getattr(m, name)
            if inspect.ismodule(obj) or name == "__version__":
                continue
            out.append((m.__name__, name, obj))
    return out


NAMES = _public_names()


def _own(obj: Any) -> bool:
    """A function or class defined by functrain (so it carries its own docstring)."""
    return ((inspect.isfunction(obj) or inspect.isclass(obj))
            and getattr(obj, "__module__", "").startswith("functrain"))


@pytest.mark.parametrize(("module", "name"), [(m, n) for m, n, _ in NAMES],
                         ids=[f"{m}.{n}" for m, n, _ in NAMES])
def test_public_name_has_an_example(module: str, name: str) -> None:
    obj = getattr(importlib.import_module(module), name)
    if _own(obj):
        assert ">>>" in (obj.__doc__ or ""), f"{module}.{name} has no >>> example in its docstring"
        return
    # A type alias, a layer value or a constant: shown in an example of an exporting module.
    exporters = [m for m in PUBLIC if name in getattr(m, "__all__", [])]
    pattern = re.compile(rf"\b{re.escape(name)}\b")
    assert any(pattern.search(_example_text(m.__doc__)) for m in exporters), (
        f"{module}.{name} is not a functrain function or class; an example in the docstring of "
        f"one of {[m.__name__ for m in exporters]} must use it")


def test_example_count_is_reported() -> None:
    """The doctests exist in bulk (a guard against the finder silently finding nothing)."""
    n = sum(len(t.examples) for t in EXAMPLES)
    assert len(EXAMPLES) >= len({id(o) for _, _, o in NAMES if _own(o)}), (len(EXAMPLES), n)
