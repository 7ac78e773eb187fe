"""The README's tour runs as written and prints plausible numbers; its set-up commands are CI's.

Fast: every name the tour takes from functrain exists. Slow: the tour runs block by block (it
trains on the digits), and each block's objects and printed numbers are checked.
"""

from __future__ import annotations

import ast
import importlib
import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

README = Path(__file__).resolve().parent.parent / "README.md"
NUMBER = r"(-?\d+(?:\.\d+)?(?:e-?\d+)?)"


def _python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.DOTALL)


def _functrain_names(tree: ast.Module) -> dict[str, str]:
    """Local name -> dotted functrain path, from the tour's imports."""
    names: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name.split(".")[0] == "functrain":
                    names[a.asname or a.name] = a.name
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "functrain":
            for a in node.names:
                names[a.asname or a.name] = f"{node.module}.{a.name}"
    return names


def _resolve(path: str) -> object:
    parts = path.split(".")
    obj: object = importlib.import_module(parts[0])
    for i, part in enumerate(parts[1:], start=1):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            obj = importlib.import_module(".".join(parts[: i + 1]))
    return obj


def _chain(node: ast.Attribute) -> list[str] | None:
    parts: list[str] = []
    cur: ast.expr = node
    while isinstance(cur, ast.Attribute):
        parts.append(cur.attr)
        cur = cur.value
    return [cur.id, *reversed(parts)] if isinstance(cur, ast.Name) else None


def test_every_functrain_name_in_the_tour_exists() -> None:
    tree = ast.parse("\n".join(_python_blocks()))
    names = _functrain_names(tree)
    assert {"ft", "layers", "optim", "data", "train", "run_seeds", "distributed"} <= set(names)
    checked = 0
    for node in ast.walk(tree):
        chain = _chain(node) if isinstance(node, ast.Attribute) else None
        if chain and chain[0] in names:
            _resolve(".".join([names[chain[0]], *chain[1:]]))  # raises if the name is gone
            checked += 1
    for path in names.values():
        _resolve(path)
    assert checked >= 30


def _printed(text: str, key: str) -> float:
    """The number printed for ``key`` in a dict of arrays, e.g. ``{'loss': Array(0.11, dtype=float32)}``."""
    match = re.search(rf"'{key}': Array\({NUMBER}", text)
    assert match is not None, text
    return float(match.group(1))


def _run_block(block: str, namespace: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> str:
    exec(compile(block, str(README), "exec"), namespace)  # noqa: S102 - our own README
    return capsys.readouterr().out


@pytest.mark.slow  # trains on the digits: about 15 s
def test_readme_tour_runs_and_prints_plausible_numbers(capsys: pytest.CaptureFixture[str]) -> None:
    blocks = _python_blocks()
    assert len(blocks) == 7
    ns: dict[str, Any] = {"__name__": "readme_tour"}

    _run_block(blocks[0], ns, capsys)  # initializers
    w, k = np.asarray(ns["w"]), np.asarray(ns["k"])
    assert w.shape == (64, 256) and abs(float(w.std()) / math.sqrt(2 / 64) - 1) < 0.1  # He: N(0, 2/n_in)
    assert k.shape == (3, 3, 1, 32) and float(np.abs(k).max()) <= math.sqrt(6 / (9 + 9 * 32))  # Glorot bound

    _run_block(blocks[1], ns, capsys)  # the model
    assert tuple(ns["out_shape"]) == (-1, 10)
    _run_block(blocks[2], ns, capsys)  # the optimizer
    assert callable(ns["opt"].init) and callable(ns["opt"].update)

    printed = _run_block(blocks[3], ns, capsys)  # fit with early stopping, then evaluate on the test part
    history = ns["history"]
    assert 1 <= len(history.epoch) <= 30
    accuracy, loss = _printed(printed, "accuracy"), _printed(printed, "loss")
    assert accuracy > 0.9 and 0.0 < loss < 0.5  # chance is 0.1 and ln(10) = 2.3

    printed = _run_block(blocks[4], ns, capsys)  # 8 seeds at once
    mean, std = (float(v) for v in printed.split())
    assert ns["runs"].results["accuracy"].shape == (8,)
    assert mean > 0.85 and 0.0 <= std < 0.05
    assert mean == pytest.approx(float(np.mean(np.asarray(ns["runs"].results["accuracy"]))), abs=1e-6)

    step_before = int(ns["state"].step)
    _run_block(blocks[6], ns, capsys)  # one data-parallel step
    assert int(ns["state"].step) == step_before + 1
    assert math.isfinite(float(ns["metrics"]["loss"]))


def test_readme_precision_block_runs(capsys: pytest.CaptureFixture[str]) -> None:
    """The precision block (float64 weights, a mixed-precision step) runs after the first block
    alone, and prints the dtypes it promises."""
    blocks = _python_blocks()
    ns: dict[str, Any] = {"__name__": "readme_precision"}
    _run_block(blocks[0], ns, capsys)  # imports and the key
    printed = _run_block(blocks[5], ns, capsys)
    assert printed.split() == ["float64", "float32", "float32"]
    assert int(ns["mp_state"].step) == 1 and math.isfinite(float(ns["mp_metrics"]["loss"]))


def test_readme_has_the_two_commands_at_the_top() -> None:
    text = README.read_text()
    commands = re.findall(r"```bash\n(.*?)```", text, flags=re.DOTALL)
    assert len(commands) >= 2
    first, second = commands[0].strip(), commands[1].strip()
    assert first.endswith("functrain tricks") and "pip install" in first
    assert "pytest" in second and 'pip install -e ".[dev]"' in second
    ci = (README.parent / ".ci" / "run").read_text()
    assert "test-command" in ci and "set -euo pipefail" in ci


def test_every_guarantee_names_tests_that_exist() -> None:
    """Each row of "What functrain guarantees" is backed by tests that exist in tests/."""
    text = README.read_text()
    section = text.split("## What functrain guarantees", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| **")]
    assert len(rows) >= 8, rows
    tests_dir = README.parent / "tests"
    for row in rows:
        refs = re.findall(r"`(test_\w+\.py)::(test_\w+)`", row)
        assert refs, f"a guarantee without a test: {row[:80]}"
        for file, name in refs:
            source = (tests_dir / file).read_text()
            assert re.search(rf"^(?:    )?def {name}\(", source, flags=re.M), f"{file}::{name} does not exist"
