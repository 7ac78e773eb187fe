"""A model summary: each layer's name, output shape and parameter count, as Keras' ``summary()``
and flax's ``tabulate`` show them.

:func:`summary` works from the :class:`~functrain.layers.Layer` value alone. It initializes the
model abstractly (``jax.eval_shape``: shapes and dtypes only, nothing is allocated or computed),
and finds the sub-layers of the combinators (``serial``, ``parallel``, ``Residual``) in the
closures of their ``init`` functions, so a layer needs no name field and ``Layer`` keeps its two
fields. A layer's name is the one its constructor gives it in error messages (``Dense``,
``Conv2D``, ``BatchNorm``, ``Relu`` ...), else the name of its ``init`` function's constructor;
a hand-written ``Layer(init, apply)`` shows as ``Layer``.

The ``Params`` column counts each layer's *own* parameters (a combinator's own are, e.g., a
``Residual``'s projection shortcut; its sub-layers' are on their own rows), so the column sums to
the total. Model state (batch-norm running statistics) is counted apart: it is not trained.
"""

from __future__ import annotations

import inspect
import math
import sys
from collections.abc import Sequence
from typing import Any, NamedTuple, cast

import jax

from functrain import _jax, _tree, _validate
from functrain.layers._geometry import check_input_shape
from functrain.layers.base import Branches, Join, Layer
from functrain.layers.combinators import Concatenate
from functrain.typing import PyTree, Shape

__all__ = ["Summary", "SummaryRow", "print_summary", "summary"]

AnyLayer = Layer | Branches | Join
OutputShape = Shape | tuple[Shape, ...]
_COMBINATORS = ("serial", "parallel", "Residual")


class SummaryRow(NamedTuple):
    """One row of a :class:`Summary`.

    Attributes:
        depth: nesting level (0 for the model itself, 1 for its layers ...).
        name: the layer's name, e.g. ``"Dense"``.
        output_shape: the output shape, batch axis included (a tuple of shapes for a
            ``parallel(...)``).
        params: the number of the layer's own parameters (sub-layers excluded).
        state: the number of the layer's own state entries (e.g. batch-norm statistics).

    Example:
        >>> row = ft.layers.summary(ft.layers.Dense(3), (-1, 4)).rows[0]
        >>> row.name, row.output_shape, row.params
        ('Dense', (-1, 3), 15)
    """

    depth: int
    name: str
    output_shape: OutputShape
    params: int
    state: int


class Summary(NamedTuple):
    """The result of :func:`summary`: rows in model order and the totals; ``str()`` is the table.

    Attributes:
        rows: one :class:`SummaryRow` per layer, depth first (a combinator before its layers).
        total_params: the number of parameters of the whole model.
        total_state: the number of model-state entries (not trained).

    Example:
        >>> s = ft.layers.summary(ft.layers.serial(ft.layers.Dense(8), ft.layers.Relu), (-1, 4))
        >>> s.total_params, [(r.depth, r.name) for r in s.rows]
        (40, [(0, 'serial'), (1, 'Dense'), (1, 'Relu')])
    """

    rows: tuple[SummaryRow, ...]
    total_params: int
    total_state: int

    def table(self) -> str:
        """The summary as a text table (what :func:`print_summary` prints)."""
        header = ["Layer", "Output shape", "Params"] + (["State"] if self.total_state else [])
        body = [["  " * r.depth + r.name, _shape_text(r.output_shape), f"{r.params:,}"]
                + ([f"{r.state:,}"] if self.total_state else []) for r in self.rows]
        widths = [max(len(line[i]) for line in [header, *body]) for i in range(len(header))]

        def line(cells: list[str]) -> str:
            left = [f"{c:<{w}}" for c, w in zip(cells[:2], widths)]
            return "  ".join(left + [f"{c:>{w}}" for c, w in zip(cells[2:], widths[2:])])

        rule = "-" * (sum(widths) + 2 * (len(widths) - 1))
        lines = [line(header), rule, *(line(cells) for cells in body), rule,
                 f"Total params: {self.total_params:,}"]
        if self.total_state:
            lines.append(f"Model state (not trained): {self.total_state:,}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.table()


def _shape_text(shape: OutputShape) -> str:
    if shape and isinstance(shape[0], tuple):
        return ", ".join(str(s) for s in shape if isinstance(s, tuple))  # a tuple of shapes
    return str(tuple(shape))


def _size(tree: PyTree) -> int:
    return sum(math.prod(getattr(leaf, "shape", ())) for leaf in _tree.tree_leaves(tree))


def _nonlocals(fn: object) -> dict[str, object]:
    """The variables a function closes over (``{}`` for other callables, e.g. a partial)."""
    if not inspect.isfunction(fn):
        return {}
    try:
        return dict(inspect.getclosurevars(fn).nonlocals)
    except ValueError:  # an empty cell (a closure variable not assigned yet)
        return {}


def _kind(layer: AnyLayer) -> str:
    """The constructor of ``layer.init`` (``"Dense"`` for ``Dense.<locals>.init``), else its name."""
    parts = str(getattr(layer.init, "__qualname__", type(layer.init).__name__)).split(".")
    if parts[-1] in ("init", "<lambda>") and len(parts) >= 3 and parts[-2] == "<locals>":
        return parts[-3]
    return parts[-1]


def _name(layer: AnyLayer) -> str:
    if layer is Concatenate:
        return "Concatenate"
    own = _nonlocals(layer.init)
    for field in ("who", "name"):
        if isinstance(own.get(field), str):
            return str(own[field])
    kind = _kind(layer)
    return "Layer" if kind in ("init", "<lambda>") else kind.lstrip("_") or "Layer"


def _sublayers(value: object) -> list[AnyLayer]:
    """The layers inside ``value`` (a layer, or tuples/lists of them, e.g. ``serial``'s stages)."""
    if isinstance(value, (Layer, Branches, Join)):
        return [value]
    if _tree.is_node_sequence(value):
        return [layer for item in value for layer in _sublayers(item)]
    return []


def _children(layer: AnyLayer) -> tuple[str, list[AnyLayer]]:
    kind = _kind(layer)
    if kind not in _COMBINATORS:
        return "leaf", []
    own = _nonlocals(layer.init)
    if kind == "Residual" and isinstance(own.get("layer"), Layer):
        return kind, [own["layer"]]  # type: ignore[list-item]  # checked just above
    return kind, [c for name in sorted(own) for c in _sublayers(own[name])]


def _abstract_init(layer: AnyLayer, shape: object) -> tuple[int, int, OutputShape]:
    """``(params, state, output shape)`` of ``layer.init`` on ``shape``, run abstractly."""
    box: list[OutputShape] = []

    def init(key: jax.Array) -> tuple[PyTree, PyTree]:
        params, state, out = layer.init(key, shape)  # type: ignore[arg-type]  # a Join takes shapes
        box.append(out)
        return params, state

    params, state = _jax.eval_shape(init, jax.random.key(0))
    out: Any = box[0]  # one shape, or a tuple of shapes (a parallel(...))
    if out and isinstance(out[0], (tuple, list)):
        return _size(params), _size(state), tuple(tuple(int(d) for d in s) for s in out)
    return _size(params), _size(state), tuple(int(d) for d in out)


def _walk(layer: AnyLayer, shape: object, depth: int, rows: list[SummaryRow]) -> tuple[int, int, OutputShape]:
    """Append the rows of ``layer`` and its sub-layers; return its total params, state and output."""
    params, state, out = _abstract_init(layer, shape)
    position = len(rows)
    rows.append(SummaryRow(depth, _name(layer), out, params, state))
    kind, children = _children(layer)
    sub = _walk_children(kind, children, shape, out, depth + 1, rows)
    if sub is None or sub[0] > params or sub[1] > state:  # an unforeseen layout: show one row
        del rows[position + 1:]
        sub = (0, 0)
    rows[position] = rows[position]._replace(params=params - sub[0], state=state - sub[1])
    return params, state, out


def _walk_children(kind: str, children: list[AnyLayer], shape: object, out: OutputShape,
                   depth: int, rows: list[SummaryRow]) -> tuple[int, int] | None:
    """The sub-layers' rows and summed totals; ``None`` if they do not add up to the layer."""
    params = state = 0
    current = shape
    try:
        for child in children:  # serial: one after the other; parallel, Residual: same input
            p, s, current = _walk(child, current if kind == "serial" else shape, depth, rows)
            params, state = params + p, state + s
    except (TypeError, ValueError):
        return None
    if kind == "serial" and children and current != out:
        return None
    return params, state


def summary(model: Layer, input_shape: Sequence[int]) -> Summary:
    """Summarize ``model`` for inputs of ``input_shape``: per layer, its output shape and parameters.

    Nothing is allocated: the model is initialized with ``jax.eval_shape``. Combinators list their
    layers below them, indented (see the module docstring for names and counts).

    Args:
        model: a :class:`~functrain.layers.Layer` (usually a ``serial(...)``).
        input_shape: the input shape, batch axis included (may be ``-1``), e.g. ``(-1, 28, 28, 1)``.

    Returns:
        A :class:`Summary`; ``print(summary(...))`` (or :func:`print_summary`) shows the table.

    Raises:
        TypeError: ``model`` is not a ``Layer``.
        ValueError: a bad ``input_shape`` (also a shape the model does not accept: the layer's own
            error).

    Example:
        >>> L = ft.layers
        >>> model = L.serial(L.Conv2D(4, 3), L.BatchNorm(), L.Relu,
        ...                  L.Residual(L.serial(L.Conv2D(4, 3), L.Relu)), L.Flatten, L.Dense(10))
        >>> print(ft.layers.summary(model, (-1, 8, 8, 1)))
        Layer         Output shape   Params  State
        ------------------------------------------
        serial        (-1, 10)            0      0
          Conv2D      (-1, 8, 8, 4)      40      0
          BatchNorm   (-1, 8, 8, 4)       8      8
          Relu        (-1, 8, 8, 4)       0      0
          Residual    (-1, 8, 8, 4)       0      0
            serial    (-1, 8, 8, 4)       0      0
              Conv2D  (-1, 8, 8, 4)     148      0
              Relu    (-1, 8, 8, 4)       0      0
          Flatten     (-1, 256)           0      0
          Dense       (-1, 10)        2,570      0
        ------------------------------------------
        Total params: 2,766
        Model state (not trained): 8
    """
    who = "summary"
    if not isinstance(cast(object, model), Layer):  # the static type is not enforced
        _validate.fail(who, "model", "a Layer (e.g. serial(Dense(10), Relu))", model, error=TypeError)
    shape = check_input_shape(input_shape, who)
    rows: list[SummaryRow] = []
    params, state, _ = _walk(model, shape, 0, rows)
    return Summary(tuple(rows), params, state)


def print_summary(model: Layer, input_shape: Sequence[int]) -> Summary:
    """Print the table of :func:`summary` (to standard output) and return the :class:`Summary`.

    Args:
        model: a :class:`~functrain.layers.Layer`.
        input_shape: the input shape, batch axis included.

    Returns:
        The :class:`Summary`.

    Raises:
        TypeError, ValueError: as :func:`summary`.

    Example:
        >>> _ = ft.layers.print_summary(ft.layers.Dense(3), (-1, 4))
        Layer  Output shape  Params
        ---------------------------
        Dense  (-1, 3)           15
        ---------------------------
        Total params: 15
    """
    result = summary(model, input_shape)
    print(result.table(), file=sys.stdout)
    return result
