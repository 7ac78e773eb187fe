"""The layer examples run end to end (``main(["--quick"])``) and print what they promise."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def _load(name: str) -> ModuleType:
    if str(EXAMPLES) not in sys.path:  # resnet.py and inception.py import convnet.py beside them
        sys.path.insert(0, str(EXAMPLES))
    spec = importlib.util.spec_from_file_location(f"_functrain_example_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
@pytest.mark.parametrize("name", ["convnet", "resnet", "inception"])
def test_example_quick_run(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    module = _load(name)
    module.main(["--quick"])
    out = capsys.readouterr().out
    assert "-> output (-1, 10)" in out
    assert "logits (297, 10)" in out
    assert "test accuracy" in out and "on 297 digits" in out
    losses = [float(line.split("loss")[1]) for line in out.splitlines() if line.startswith("step")]
    assert losses and all(0.0 < loss < 10.0 for loss in losses)
    assert "test accuracy" in out

