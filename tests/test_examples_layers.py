"""The architecture examples (convnet, ResNet, Inception) build, run and print their comparison.

Fast: each network's shapes and parameter counts, through ``init`` only (``jax.eval_shape``), and
the structure the comparisons rely on (the plain and residual CNNs have the same parameters).
Slow: each script in ``--quick`` mode end to end (the default runs, with their verdicts, are in
tests/test_examples.py).
"""

from __future__ import annotations

import math
from typing import Any

import jax
import pytest
from _examples import examples_on_path, load_example, run_example, verdicts
from _typed import eval_shape


def _shapes(layer: Any, input_shape: tuple[int, ...]) -> tuple[tuple[int, ...], int, Any]:
    """Output shape, parameter count and parameter structure of ``layer.init`` (no compute)."""
    out: dict[str, tuple[int, ...]] = {}

    def init(key: jax.Array) -> Any:
        params, _, shape = layer.init(key, input_shape)
        out["shape"] = tuple(shape)
        return params

    params = eval_shape(init, jax.random.key(0))
    count = sum(math.prod(leaf.shape) for leaf in jax.tree_util.tree_leaves(params))
    return out["shape"], count, jax.tree_util.tree_structure(params)


@pytest.mark.parametrize(("name", "n_params"), [("convnet", 21386), ("resnet", 7178), ("inception", 9274)])
def test_model_shapes(name: str, n_params: int) -> None:
    with examples_on_path():
        module = load_example(name)
    shape, count, _ = _shapes(module.build_model(), (-1, 8, 8, 1))
    assert (shape, count) == ((-1, 10), n_params)


def test_mlp_baseline_and_the_shared_budget() -> None:
    with examples_on_path():
        convnet = load_example("convnet")
    shape, count, _ = _shapes(convnet.mlp_baseline(), (-1, 8, 8, 1))
    assert (shape, count) == ((-1, 10), 64 * 128 + 128 + 128 * 10 + 10)
    assert (convnet.LR, convnet.EPOCHS, convnet.SEEDS, convnet.BATCH) == (3e-3, 10, 3, 32)


def test_plain_and_residual_cnns_differ_only_by_the_shortcut() -> None:
    with examples_on_path():
        resnet = load_example("resnet")
    plain = _shapes(resnet.build_model(residual=False), (-1, 8, 8, 1))
    residual = _shapes(resnet.build_model(residual=True), (-1, 8, 8, 1))
    assert plain[:2] == residual[:2] == ((-1, 10), 7178)
    # 1 stem + 2 per block convolutions, each 3x3x8 -> 8 except the stem (3x3x1 -> 8), plus the classifier
    assert 3 * 3 * 1 * 8 + 8 + 2 * resnet.BLOCKS * (3 * 3 * 8 * 8 + 8) + 8 * 10 + 10 == 7178


def test_inception_block_concatenates_its_branches() -> None:
    with examples_on_path():
        inception = load_example("inception")
    shape, _, _ = _shapes(inception.inception_block(8, 8, 16, 4, 8, 8), (-1, 8, 8, 16))
    assert shape == (-1, 8, 8, 8 + 16 + 8 + 8)


@pytest.mark.slow  # compiles two small training programs; 10-40 s each
@pytest.mark.parametrize("name", ["convnet", "resnet", "inception"])
def test_example_quick_run(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    run_example(name, ["--quick"])
    out = capsys.readouterr().out
    assert "every model maps input (-1, 8, 8, 1) -> output (-1, 10)" in out
    assert "test accuracy on 450 digits" in out  # the split of every example
    assert "MLP 64-128-10 (baseline)" in out or "plain CNN" in out
    assert len(verdicts(out)) == 1
    if name == "inception":
        assert "first inception block: (-1, 8, 8, 16) -> (-1, 8, 8, 40)" in out
