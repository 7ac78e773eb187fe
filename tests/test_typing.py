"""Type checking is a test: the package, tests and examples are ``mypy --strict`` clean, the
paths in :data:`PYRIGHT_CLEAN` are ``pyright --strict`` clean, and misuses of the public API
(files in ``tests/typing/``) are reported by both mypy and pyright on the marked lines."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from mypy import api

ROOT = Path(__file__).resolve().parent.parent
MISUSE_DIR = ROOT / "tests" / "typing"
MARK = "# expect-error"

PYRIGHT_CLEAN = ["functrain", "examples", "tests"]
"""Paths checked by ``pyright --strict`` (the ``[tool.pyright]`` settings of pyproject.toml; its
``exclude`` leaves out tests/typing, whose misuse files are checked on their own below)."""
PYRIGHT_PENDING: list[str] = []
"""Paths inside :data:`PYRIGHT_CLEAN` that are not clean yet (left out). Shrink this list as they
become clean."""


def _run_mypy(*args: str) -> tuple[str, int]:
    stdout, stderr, status = api.run(
        ["--config-file", str(ROOT / "pyproject.toml"), "--cache-dir", str(ROOT / ".mypy_cache"), *args]
    )
    return stdout + stderr, status


@pytest.mark.slow
def test_mypy_strict_is_clean() -> None:
    out, status = _run_mypy()  # files, strictness and mypy_path come from pyproject.toml
    assert status == 0, out
    assert "Success" in out


def _misuse_files() -> list[Path]:
    """The files of tests/typing: misuses (errors pinned per line) and, named ``*_types.py``,
    positive checks (``assert_type`` lines that both checkers must accept: no error at all)."""
    return sorted(p for p in MISUSE_DIR.glob("*.py") if not p.name.startswith("_"))


def test_misuse_files_exist() -> None:
    assert len(_misuse_files()) >= 1
    assert any(f.name.endswith("_types.py") for f in _misuse_files())


@pytest.mark.slow
def test_mypy_reports_each_misuse() -> None:
    files = _misuse_files()
    out, _ = _run_mypy(*(str(f) for f in files))
    errors: dict[tuple[str, int], list[str]] = {}
    for line in out.splitlines():
        m = re.match(r"^(.*?\.py):(\d+): error: (.*)$", line)
        if m:
            errors.setdefault((Path(m.group(1)).name, int(m.group(2))), []).append(m.group(3))
    problems = _unpinned(files, errors, "mypy")
    assert not problems, "\n".join(problems) + "\n\nmypy output:\n" + out


def _unpinned(files: list[Path], errors: dict[tuple[str, int], list[str]], checker: str) -> list[str]:
    """The marked lines without an error, and the errors on unmarked lines."""
    problems: list[str] = []
    for f in files:
        lines = f.read_text().splitlines()
        expected = {i + 1 for i, text in enumerate(lines) if MARK in text}
        assert expected or f.name.endswith("_types.py"), f"{f.name} marks no line with '{MARK}'"
        assert not (expected and f.name.endswith("_types.py")), f"{f.name} is positive: no '{MARK}'"
        got = {ln for (name, ln) in errors if name == f.name}
        for ln in sorted(expected - got):
            problems.append(f"{f.name}:{ln}: {checker} accepted a misuse: {lines[ln - 1].strip()}")
        for ln in sorted(got - expected):
            problems.append(f"{f.name}:{ln}: unexpected {checker} error {errors[(f.name, ln)]}")
    return problems


def _pyright() -> str:
    """The pyright executable (a dev dependency: next to this Python, or on the PATH)."""
    here = Path(sys.executable).parent / ("pyright.exe" if os.name == "nt" else "pyright")
    found = str(here) if here.exists() else shutil.which("pyright")
    if found is None:
        pytest.skip("the pyright executable is missing (pip install 'functrain[dev]' installs it)")
    return found


def _run_pyright(*args: str, cwd: Path = ROOT) -> tuple[dict[tuple[str, int], list[str]], str]:
    """pyright's errors by ``(file path, line)`` and its whole JSON report."""
    proc = subprocess.run([_pyright(), "--outputjson", "--pythonpath", sys.executable, *args],
                          cwd=cwd, capture_output=True, text=True, timeout=600, check=False)
    try:
        report = json.loads(proc.stdout)
    except json.JSONDecodeError:
        pytest.fail(f"pyright did not report (exit {proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    errors: dict[tuple[str, int], list[str]] = {}
    for d in report["generalDiagnostics"]:
        if d["severity"] == "error":
            errors.setdefault((d["file"], d["range"]["start"]["line"] + 1), []).append(
                f"{d.get('rule', '')}: {d['message']}")
    return errors, proc.stdout


def _pyright_paths(pending_paths: list[str] | None = None) -> list[str]:
    """The files and folders of :data:`PYRIGHT_CLEAN`, without those of :data:`PYRIGHT_PENDING`
    (or of ``pending_paths``)."""
    pending = [ROOT / p for p in (PYRIGHT_PENDING if pending_paths is None else pending_paths)]

    def expand(path: Path) -> list[Path]:
        if path in pending:
            return []
        if any(path in q.parents for q in pending):  # holds a pending path: take its other entries
            return [x for c in sorted(path.iterdir())
                    if (c.is_dir() and c.name != "__pycache__") or c.suffix == ".py" for x in expand(c)]
        return [path]

    paths = [str(p.relative_to(ROOT)) for clean in PYRIGHT_CLEAN for p in expand(ROOT / clean)]
    assert paths, "nothing to check"
    return paths


@pytest.mark.slow
def test_pyright_strict_is_clean() -> None:
    errors, _ = _run_pyright(*_pyright_paths())
    listed = [f"{Path(f).relative_to(ROOT)}:{ln}: {m}" for (f, ln), ms in sorted(errors.items())
              for m in ms]
    assert not listed, f"pyright --strict reports {len(listed)} errors:\n" + "\n".join(listed)


def test_pyright_paths_leave_out_the_pending_ones() -> None:
    assert _pyright_paths([]) == PYRIGHT_CLEAN  # nothing pending: the clean paths as listed
    paths = _pyright_paths(["functrain/experiments"])  # a pending folder inside a clean one
    assert "functrain/train" in paths and "functrain/_tree.py" in paths
    assert not any(p.startswith("functrain/experiments") for p in paths), paths


@pytest.mark.slow
def test_pyright_reports_each_misuse() -> None:
    """As for mypy: pyright --strict (the settings of pyproject.toml) errs on exactly the marked
    lines. pyproject.toml excludes tests/typing/, so a config of our own includes it."""
    files = _misuse_files()
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "pyrightconfig.json"

        def rel(path: Path) -> str:  # pyright wants paths relative to its config
            return os.path.relpath(path, tmp)

        config.write_text(json.dumps({
            "typeCheckingMode": "strict", "pythonVersion": "3.11", "stubPath": rel(ROOT / "typings"),
            "include": [rel(MISUSE_DIR)], "extraPaths": [rel(ROOT)]}))
        by_path, out = _run_pyright("--project", str(config), cwd=Path(tmp))
    errors = {(Path(f).name, ln): ms for (f, ln), ms in by_path.items()}
    problems = _unpinned(files, errors, "pyright")
    assert not problems, "\n".join(problems) + "\n\npyright output:\n" + out
