"""The lesson examples run end to end in ``--quick`` mode, print their tables and write their PNGs.

Each example is imported by path (``examples/`` is not a package) and its ``main`` called in-process
with ``["--quick", "--out", DIR]``. ``examples/`` is put on ``sys.path`` as when a script runs, so
``dropout.py`` can import the lesson's network from ``convnet.py``.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

# example -> (strings its printed table must contain, PNG files it must write)
EXPECTED: dict[str, tuple[list[str], list[str]]] = {
    "digits_quickstart": (["epochs run", "best epoch", "test accuracy"], ["digits_quickstart.png"]),
    "value_ranges": (["1e10 + 1e-10 == 1e10 is True", "raw 0..16", "min-max [0, 1]", "min-max [-1, 1]",
                      "standardized", "test acc, last"], ["value_ranges.png"]),
    "initialization": (["forward std", "backward std", "standard_normal N(0,1)", "gaussian N(0,1/n)",
                        "xavier/glorot", "he/kaiming", "tanh", "relu", "test accuracy"],
                       ["initialization_signal_tanh.png", "initialization_signal_relu.png"]),
    "batch_norm": (["no batch norm", "with batch norm", "running statistics", "train=False", "train=True"],
                   ["batch_norm.png"]),
    "dropout": (["dropout rate", "0.0 ", "0.2 ", "0.5 ", "0.8 ", "test acc, last"], ["dropout.png"]),
    "overfitting": (["no regularization", "early stopping", "L2 penalty", "AdamW", "EMA", "SWA",
                     "ensemble of the 2 seeds", "recompute_batch_norm_stats", "test accuracy"],
                    ["overfitting.png"]),
    "optimizers": (["SGD lr=", "momentum 0.9", "Nesterov", "normalized SGD", "Adagrad", "RMSProp", "Adam",
                    "test accuracy"], ["optimizers.png"]),
    "gradient_clipping": (["no clipping (theta = inf)", "clip theta = 10", "clip theta = 1", "test accuracy"],
                          ["gradient_clipping.png"]),
    "lr_decay": (["constant", "x0.98 per epoch", "cosine decay", "one-cycle", "test acc, last"],
                 ["lr_decay_schedules.png", "lr_decay_curves.png"]),
    "multi_seed_sweep": (["4 configurations x 2 seeds = 8 runs", "learning rate", "momentum",
                          "test accuracy (mean ± std)"], ["multi_seed_sweep.png"]),
    "equinox_model": (["re-initialized output layer", "equinox default", "functrain he_normal",
                       "test accuracy"], ["equinox_model.png"]),
}
LAYER_EXAMPLES = {"convnet", "resnet", "inception"}  # tested by tests/test_examples_layers.py


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"_functrain_example_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_every_example_is_tested() -> None:
    scripts = {p.stem for p in EXAMPLES.glob("*.py")}
    assert scripts - LAYER_EXAMPLES == set(EXPECTED), "add new examples to EXPECTED (or remove stale entries)"
    readme = (EXAMPLES / "README.md").read_text()
    for name in scripts:
        assert f"{name}.py" in readme, f"examples/README.md does not describe {name}.py"


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_example_quick_run(name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(EXAMPLES))
    out_dir = tmp_path / "figures"  # not created yet: the example must create it
    _load(name).main(["--quick", "--out", str(out_dir)])
    printed = capsys.readouterr().out
    table, pngs = EXPECTED[name]
    for text in table:
        assert text in printed, f"{name}: {text!r} missing from its output:\n{printed}"
    assert sorted(p.name for p in out_dir.iterdir()) == sorted(pngs)
    for png in pngs:
        content = (out_dir / png).read_bytes()
        assert content.startswith(PNG_MAGIC) and len(content) > 10_000, f"{name}: {png} is not a real PNG"
