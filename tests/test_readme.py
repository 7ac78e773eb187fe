"""The README's tour runs as written, and its set-up commands are the ones CI uses."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"


def _python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.DOTALL)


@pytest.mark.slow
def test_readme_tour_runs(capsys: pytest.CaptureFixture[str]) -> None:
    blocks = _python_blocks()
    assert len(blocks) >= 5
    namespace: dict[str, object] = {"__name__": "readme_tour"}
    exec(compile("\n".join(blocks), str(README), "exec"), namespace)  # noqa: S102 - our own README
    out = capsys.readouterr().out
    assert "accuracy" in out
    history = namespace["history"]
    assert len(getattr(history, "epoch")) >= 1


def test_readme_has_the_two_commands_at_the_top() -> None:
    text = README.read_text()
    commands = re.findall(r"```bash\n(.*?)```", text, flags=re.DOTALL)
    assert len(commands) >= 2
    first, second = commands[0].strip(), commands[1].strip()
    assert first.endswith("functrain tricks") and "pip install" in first
    assert "pytest" in second and 'pip install -e ".[dev]"' in second
    ci = (README.parent / ".ci" / "run").read_text()
    assert "test-command" in ci and "set -euo pipefail" in ci
