"""Type checking is a test: the package, tests and examples are ``mypy --strict`` clean, and
misuses of the public API (files in ``tests/typing/``) are reported by mypy on the marked lines."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from mypy import api

ROOT = Path(__file__).resolve().parent.parent
MISUSE_DIR = ROOT / "tests" / "typing"
MARK = "# expect-error"


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
    return sorted(p for p in MISUSE_DIR.glob("*.py") if not p.name.startswith("_"))


def test_misuse_files_exist() -> None:
    assert len(_misuse_files()) >= 1


@pytest.mark.slow
def test_mypy_reports_each_misuse() -> None:
    files = _misuse_files()
    out, _ = _run_mypy(*(str(f) for f in files))
    errors: dict[tuple[str, int], list[str]] = {}
    for line in out.splitlines():
        m = re.match(r"^(.*?\.py):(\d+): error: (.*)$", line)
        if m:
            errors.setdefault((Path(m.group(1)).name, int(m.group(2))), []).append(m.group(3))
    problems = []
    for f in files:
        lines = f.read_text().splitlines()
        expected = {i + 1 for i, text in enumerate(lines) if MARK in text}
        assert expected, f"{f.name} marks no line with '{MARK}'"
        got = {ln for (name, ln) in errors if name == f.name}
        for ln in sorted(expected - got):
            problems.append(f"{f.name}:{ln}: mypy accepted a misuse: {lines[ln - 1].strip()}")
        for ln in sorted(got - expected):
            problems.append(f"{f.name}:{ln}: unexpected error {errors[(f.name, ln)]}")
    assert not problems, "\n".join(problems) + "\n\nmypy output:\n" + out
