"""The layer examples (convnet, ResNet, Inception) build, run and learn the digits.

Fast: each network's shapes, through ``init`` only. Slow: each script trained for enough steps
that, with its seed, the loss falls and the test accuracy is far above chance (0.1).
"""

from __future__ import annotations

import math
from typing import Any

import jax
import pytest
from _examples import examples_on_path, load_example, run_example

# name -> training steps; with the scripts' seeds the test accuracy reaches about 0.75 at these
LEARNING = {"convnet": 150, "resnet": 60, "inception": 300}


def _shapes(layer: Any, input_shape: tuple[int, ...]) -> tuple[tuple[int, ...], int]:
    """The output shape and parameter count of ``layer.init`` (traced by ``jax.eval_shape``: no compute)."""
    out: dict[str, tuple[int, ...]] = {}

    def init(key: jax.Array) -> Any:
        params, _, shape = layer.init(key, input_shape)
        out["shape"] = tuple(shape)
        return params

    params = jax.eval_shape(init, jax.random.key(0))
    return out["shape"], sum(math.prod(leaf.shape) for leaf in jax.tree_util.tree_leaves(params))


@pytest.mark.parametrize(("name", "n_params"), [("convnet", 21386), ("resnet", 24490), ("inception", 9274)])
def test_model_shapes(name: str, n_params: int) -> None:
    with examples_on_path():
        module = load_example(name)
    assert _shapes(module.build_model(), (-1, 8, 8, 1)) == ((-1, 10), n_params)


def test_inception_block_concatenates_its_branches() -> None:
    with examples_on_path():
        inception = load_example("inception")
    shape, _ = _shapes(inception.inception_block(8, 8, 16, 4, 8, 8), (-1, 8, 8, 16))
    assert shape == (-1, 8, 8, 8 + 16 + 8 + 8)


@pytest.mark.slow  # compiles a training step; 10-30 s each
@pytest.mark.parametrize("name", sorted(LEARNING))
def test_example_learns(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    run_example(name, ["--steps", str(LEARNING[name])])
    out = capsys.readouterr().out
    assert "-> output (-1, 10)" in out
    assert "logits (297, 10)" in out
    losses = [float(line.split("loss")[1]) for line in out.splitlines() if line.startswith("step")]
    assert len(losses) >= 5 and losses[-1] < losses[0] - 0.5, losses  # the loss falls (from ~2.3-2.6)
    (accuracy_line,) = [line for line in out.splitlines() if line.startswith("test accuracy")]
    assert accuracy_line.endswith("on 297 digits")
    assert float(accuracy_line.split()[2]) > 0.5  # chance is 0.1


@pytest.mark.slow
def test_quick_mode_runs_three_steps(capsys: pytest.CaptureFixture[str]) -> None:
    run_example("convnet", ["--quick"])
    out = capsys.readouterr().out
    assert [line.split()[1] for line in out.splitlines() if line.startswith("step")] == ["1", "2", "3"]
