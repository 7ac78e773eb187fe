"""layers.summary: names, output shapes and parameter counts per layer (against closed forms and
against the real init), nested combinators indented, own counts summing to the total, model state
apart, nothing allocated (jax.eval_shape), the printed table, custom layers, errors."""

from __future__ import annotations

import math
import re

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import pytest

from functrain import layers as L
from functrain.layers import Summary, SummaryRow, print_summary, summary
from functrain.typing import PyTree, Shape

STYLE = re.compile(r"^[\w.]+: argument '[\w.\[\]']+' must be .+, got .+$", re.S)


def _any(value: object) -> Any:
    """A deliberately wrong argument, past the type checker."""
    return value


def _size(tree: object) -> int:
    return sum(math.prod(leaf.shape) for leaf in jax.tree_util.tree_leaves(tree))


def _resnet() -> L.Layer:
    block = L.serial(L.Residual(L.serial(L.Conv2D(8, 3, stride=2), L.BatchNorm(), L.Relu,
                                         L.Conv2D(8, 3), L.BatchNorm(), L.DropPath(0.1))), L.Relu)
    inception = L.serial(L.parallel(L.Conv2D(2, 1), L.serial(L.Conv2D(2, 1), L.Conv2D(3, 3))), L.Concatenate)
    return L.serial(L.Conv2D(4, 3), L.BatchNorm(), L.Relu, block, inception, L.GlobalAvgPool, L.Dropout(0.2),
                    L.Dense(10))


def test_rows_shapes_and_counts_of_a_nested_model() -> None:
    model = _resnet()
    s = summary(model, (-1, 8, 8, 1))
    params, state, out = model.init(jax.random.key(0), (-1, 8, 8, 1))
    assert (s.total_params, s.total_state) == (_size(params), _size(state))  # the real init
    assert sum(r.params for r in s.rows) == s.total_params and sum(r.state for r in s.rows) == s.total_state
    assert s.rows[0] == SummaryRow(0, "serial", out, 0, 0)
    got = [(r.depth, r.name, r.output_shape, r.params, r.state) for r in s.rows]
    assert got == [
        (0, "serial", (-1, 10), 0, 0),
        (1, "Conv2D", (-1, 8, 8, 4), 3 * 3 * 1 * 4 + 4, 0),
        (1, "BatchNorm", (-1, 8, 8, 4), 8, 8),
        (1, "Relu", (-1, 8, 8, 4), 0, 0),
        (1, "serial", (-1, 4, 4, 8), 0, 0),
        (2, "Residual", (-1, 4, 4, 8), 4 * 8 + 8, 0),  # its own: the strided 1x1 projection
        (3, "serial", (-1, 4, 4, 8), 0, 0),
        (4, "Conv2D", (-1, 4, 4, 8), 3 * 3 * 4 * 8 + 8, 0),
        (4, "BatchNorm", (-1, 4, 4, 8), 16, 16),
        (4, "Relu", (-1, 4, 4, 8), 0, 0),
        (4, "Conv2D", (-1, 4, 4, 8), 3 * 3 * 8 * 8 + 8, 0),
        (4, "BatchNorm", (-1, 4, 4, 8), 16, 16),
        (4, "DropPath", (-1, 4, 4, 8), 0, 0),
        (2, "Relu", (-1, 4, 4, 8), 0, 0),
        (1, "serial", (-1, 4, 4, 5), 0, 0),
        (2, "parallel", ((-1, 4, 4, 2), (-1, 4, 4, 3)), 0, 0),
        (3, "Conv2D", (-1, 4, 4, 2), 8 * 2 + 2, 0),
        (3, "serial", (-1, 4, 4, 3), 0, 0),
        (4, "Conv2D", (-1, 4, 4, 2), 8 * 2 + 2, 0),
        (4, "Conv2D", (-1, 4, 4, 3), 3 * 3 * 2 * 3 + 3, 0),
        (2, "Concatenate", (-1, 4, 4, 5), 0, 0),
        (1, "GlobalAvgPool", (-1, 5), 0, 0),
        (1, "Dropout", (-1, 5), 0, 0),
        (1, "Dense", (-1, 10), 5 * 10 + 10, 0),
    ]
    y, _ = model.apply(params, state, jnp.ones((2, 8, 8, 1)), train=False)
    assert y.shape == (2, 10)


def test_names_of_every_ready_made_layer() -> None:
    cases = {"Dense": L.Dense(2), "Conv1D": L.Conv1D(2, 3), "MaxPool": L.MaxPool(2), "AvgPool": L.AvgPool(2),
             "Flatten": L.Flatten, "Tanh": L.Tanh, "Gelu": L.Gelu, "LeakyRelu": L.LeakyRelu(0.1),
             "LayerNorm": L.LayerNorm(), "WeightNormDense": L.WeightNormDense(2), "Identity": L.Identity}
    for name, layer in cases.items():
        shape = {"Conv1D": (-1, 6, 3), "MaxPool": (-1, 6, 6, 3), "AvgPool": (-1, 6, 6, 3)}.get(name, (-1, 4))
        assert summary(layer, shape).rows[0].name == name


def test_nothing_is_allocated() -> None:
    big = L.serial(L.Dense(100_000), L.Dense(100_000))  # 10^10 parameters: 40 GB if allocated
    s = summary(big, (-1, 1000))
    assert s.total_params == 1000 * 100_000 + 100_000 + 100_000 ** 2 + 100_000
    assert "Total params: 10,100,200,000" in s.table()


def init(key: jax.Array, input_shape: Sequence[int]) -> tuple[PyTree, PyTree, Shape]:
    """A hand-written layer's init (module level): the summary calls it ``Layer``."""
    return jnp.ones(3), (), tuple(input_shape)


def apply(params: PyTree, state: PyTree, x: jax.Array, *, key: jax.Array | None = None,
          train: bool) -> tuple[jax.Array, PyTree]:
    return x, state


def Wrapped(layer: L.Layer) -> L.Layer:  # noqa: N802 (a layer constructor functrain does not know)
    def init(key: jax.Array, input_shape: Sequence[int]) -> tuple[PyTree, PyTree, Shape]:
        return layer.init(key, input_shape)

    return L.Layer(init, layer.apply)


def test_custom_layers_show_as_one_row() -> None:
    s = summary(L.serial(L.Layer(init, apply), Wrapped(L.Dense(4))), (-1, 4))
    assert [(r.depth, r.name, r.params) for r in s.rows] == [(0, "serial", 0), (1, "Layer", 3),
                                                            (1, "Wrapped", 20)]


def test_table_and_print_summary(capsys: pytest.CaptureFixture[str]) -> None:
    s = print_summary(L.serial(L.Dense(3), L.BatchNorm()), (-1, 4))
    printed = capsys.readouterr().out
    assert isinstance(s, Summary) and printed.strip() == str(s) == s.table()
    lines = printed.splitlines()
    assert lines[0].split() == ["Layer", "Output", "shape", "Params", "State"]
    assert lines[3].split() == ["Dense", "(-1,", "3)", "15", "0"] and lines[3].startswith("  Dense")
    assert lines[-2:] == ["Total params: 21", "Model state (not trained): 6"]


@pytest.mark.parametrize(("call", "error", "name"), [
    (lambda: summary(_any(L.Dense), (-1, 4)), TypeError, "model"),
    (lambda: summary(_any(L.parallel(L.Dense(2))), (-1, 4)), TypeError, "model"),
    (lambda: summary(L.Dense(2), _any("shape")), TypeError, "input_shape"),
])
def test_errors(call: object, error: type[Exception], name: str) -> None:
    with pytest.raises(error) as info:
        call()  # type: ignore[operator]  # a lambda from the table
    assert f"argument '{name}'" in str(info.value) and STYLE.match(str(info.value)), str(info.value)


def test_a_shape_the_model_rejects_gets_the_layer_error() -> None:
    with pytest.raises(ValueError, match="Conv2D"):
        summary(L.serial(L.Conv2D(2, 3)), (-1, 4))
