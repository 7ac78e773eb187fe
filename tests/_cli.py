"""Helpers shared by the tests of the ``functrain`` command (tests/test_cli*.py) and its experiments."""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path
from typing import Any

import numpy as np

from functrain._tree import tree_map
from functrain.experiments import tricks
from functrain.experiments.tricks.splits import Splits
from functrain.train import load_checkpoint

REPO = Path(__file__).resolve().parents[1]


def png_size(path: Path) -> tuple[int, int]:
    """Width and height of a PNG, checking its signature and IHDR chunk."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return int(width), int(height)


def one_error_line(err: str) -> str:
    """The single line of ``err``, checked to be ``functrain: error: ...`` without a traceback."""
    lines = err.strip().splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got {lines}"
    assert lines[0].startswith("functrain: error: "), lines[0]
    assert "Traceback" not in err
    return lines[0]


def mlp_logits(params: Any, state: Any, x: np.ndarray) -> np.ndarray:
    """The logits of a ``functrain train`` MLP, in float64 NumPy (an independent reference)."""
    # Layers are Dense, [BatchNorm], Relu, [Dropout] per hidden width, then Dense: apply the ReLU
    # after each hidden block (the position of the () entries tells which are activations).
    h = x.astype(np.float64)
    layers = list(zip(params, state))
    for i, (p, s) in enumerate(layers):
        if hasattr(p, "w"):
            h = h @ np.asarray(p.w, np.float64) + np.asarray(p.b, np.float64)
        elif hasattr(p, "scale"):
            mean, var = np.asarray(s.mean, np.float64), np.asarray(s.var, np.float64)
            h = (h - mean) / np.sqrt(var + 1e-5) * np.asarray(p.scale, np.float64) + np.asarray(p.bias, np.float64)
        elif i > 0 and (hasattr(layers[i - 1][0], "w") or hasattr(layers[i - 1][0], "scale")):
            h = np.maximum(h, 0.0)  # the ReLU right after Dense/BatchNorm; a later () is dropout
    return h


def softmax_xent(logits: np.ndarray, y: np.ndarray) -> float:
    z = logits - logits.max(axis=1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    return float(-logp[np.arange(len(y)), y].mean())


def check_train_outputs(out: Path, source: str, seeds: int) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((out / "history.json").read_text())
    assert doc["seeds"] == seeds and len(doc["runs"]) == seeds
    cfg: dict[str, Any] = {**doc["config"], "hidden": tuple(doc["config"]["hidden"])}
    config = tricks.RunConfig(**cfg)
    for run in doc["runs"]:
        assert 1 <= run["epochs_run"] == len(run["epochs"]) <= config.epochs
        assert [e["epoch"] for e in run["epochs"]] == list(range(1, run["epochs_run"] + 1))
        for e in run["epochs"]:
            assert set(e) == {"epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy"}

    # The checkpoint loads back, and its parameters give the reported test numbers (NumPy float64).
    splits = tricks.prepare_splits(tricks.load_data(source))
    state = load_checkpoint(out / "checkpoint.ckpt", like=tricks.checkpoint_like(config, splits, seeds))
    for s, run in enumerate(doc["runs"]):
        def pick(t: Any, s: int = s) -> Any:
            return np.asarray(t)[s] if seeds > 1 else np.asarray(t)

        params = tree_map(pick, state.params)
        model_state = tree_map(pick, state.model_state)
        logits = mlp_logits(params, model_state, splits.x_test)
        accuracy = float((np.argmax(logits, axis=1) == splits.y_test).mean())
        assert abs(accuracy - run["test_accuracy"]) <= 1.0 / len(splits.y_test) + 1e-6
        np.testing.assert_allclose(softmax_xent(logits, splits.y_test), run["test_loss"], rtol=2e-4)
    assert png_size(out / "curves.png")[0] >= 800
    return doc


def env() -> dict[str, str]:
    """The environment of a ``functrain`` subprocess: the CPU, and the test suite's compilation cache
    (``$FUNCTRAIN_TEST_CACHE``, see tests/conftest.py) instead of the user's."""
    setting = os.environ.get("FUNCTRAIN_TEST_CACHE", "")
    cache = setting or str(Path.home() / ".cache" / "functrain" / "jax-tests")
    return {**os.environ, "JAX_PLATFORMS": "cpu", "FUNCTRAIN_CACHE": cache}


def toy_splits(n: int = 50, features: int = 5, classes: int = 3) -> Splits:
    """Random train / validation / test parts of ``n`` / 10 / 12 examples (features in [0, 1))."""
    rng = np.random.default_rng(0)

    def part(m: int) -> tuple[np.ndarray, np.ndarray]:
        return rng.uniform(size=(m, features)).astype(np.float32), rng.integers(0, classes, m)

    (xt, yt), (xv, yv), (xs, ys) = part(n), part(10), part(12)
    return Splits(xt, yt, xv, yv, xs, ys, classes, "toy")

