"""Host-side checks of class labels at the entry of :func:`~functrain.train.fit` and :func:`~functrain.train.train_epoch`.

A label outside ``[0, num_classes)`` never raises inside a compiled step: at best the loss is NaN,
at worst (a negative label wrapping around) training silently uses the wrong class. So the
drivers check the labels once, on the host, before anything is compiled:

* the labels are the second element of ``(x, y)`` data (a tuple or list of two, e.g. a
  ``Dataset``) when it is an integer array; other data structures are not checked;
* every label must be ``>= 0``;
* every label must be ``< num_classes`` when the number of classes is known: given explicitly
  (``num_classes=``), or found from the model when the train step was built by
  :func:`~functrain.train.make_train_step` from a loss that carries the model's ``apply``
  (``classifier_loss``): the last axis of the model's output for one example, computed
  abstractly with ``jax.eval_shape`` (nothing runs, nothing is compiled).

Traced data (inside ``jax.jit``) cannot be inspected and is not checked.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import numpy as np

from functrain import _jax, _tree, _validate
from functrain.typing import PyTree


def label_array(data: PyTree) -> Any | None:
    """The integer labels ``y`` of ``(x, y)`` data, or ``None`` (other structures, float targets)."""
    if not _tree.is_node_sequence(data) or len(data) != 2:
        return None
    y: object = data[1]
    dtype = getattr(y, "dtype", None)
    if dtype is None or not hasattr(y, "shape") or not np.issubdtype(dtype, np.integer):
        return None
    return y


def _loss_of(step: object) -> object:
    """The loss function a train step was built from (``step.loss_fn``), if it says so."""
    for obj in (step, getattr(step, "__wrapped__", None)):
        loss = getattr(obj, "loss_fn", None)
        if loss is not None:
            return loss
    return None


@functools.lru_cache(maxsize=32)
def _output_size(apply: Any, treedef: Any, specs: tuple[Any, ...]) -> int | None:
    params, model_state, x = _tree.tree_unflatten(treedef, list(specs))

    def forward(p: PyTree, s: PyTree, xb: PyTree) -> Any:
        return apply(p, s, xb, key=jax.random.key(0), train=False)

    try:
        out = _jax.eval_shape(forward, params, model_state, x)
    except Exception:  # best effort: a model that cannot run abstractly is simply not inspected
        return None
    logits: object = out[0] if _tree.is_tuple(out) and out else None
    shape = getattr(logits, "shape", None)
    if shape is None or len(shape) < 1 or int(shape[-1]) < 1:
        return None
    return int(shape[-1])


def infer_num_classes(step: object, state: object, data: PyTree) -> int | None:
    """The model's number of outputs when ``step.loss_fn.apply`` exists, else ``None``.

    Relies only on attributes read with ``getattr``: ``loss_fn`` on the step (``make_train_step``
    keeps it) and ``apply`` on the loss (``classifier_loss`` keeps it); the state's ``params``
    and ``model_state``. Any failure means "unknown".
    """
    apply = getattr(_loss_of(step), "apply", None)
    if not callable(apply) or not _tree.is_node_sequence(data) or len(data) != 2:
        return None
    params, model_state = getattr(state, "params", None), getattr(state, "model_state", None)
    try:  # the shapes of one example: abstract values only, nothing is computed
        def first_example(p: PyTree, s: PyTree, xb: PyTree) -> PyTree:
            return p, s, _tree.tree_map(lambda a: a[:1], xb)

        specs = _jax.eval_shape(first_example, params, model_state, data[0])
        leaves, treedef = _tree.tree_flatten(specs)
        return _output_size(apply, treedef, tuple(leaves))
    except Exception:  # best effort (unhashable or unusual leaves): not inspected
        return None


def check_data_labels(data: PyTree, num_classes: int | None, who: str, name: str,
                      source: str = "") -> None:
    """``ValueError`` for labels of ``(x, y)`` data outside ``[0, num_classes)`` (see the module).

    Args:
        data: the data; only ``(x, y)`` with integer concrete ``y`` is checked.
        num_classes: the number of classes, or ``None`` (then only ``>= 0`` is checked).
        who: the public function.
        name: the data argument's name (``"train_data"``); the labels are ``name[1]``.
        source: where ``num_classes`` came from, added to the message.
    """
    y = label_array(data)
    if y is None or _validate.is_traced(y):
        return
    try:
        _validate.check_labels(y, num_classes, who, f"{name}[1]")
    except ValueError as error:
        if not source:
            raise
        raise ValueError(f"{error}; {source}") from None


def check_entry_labels(who: str, step: object, state: object, named: list[tuple[PyTree, str]],
                       num_classes: object, enabled: object) -> None:
    """The label checks of a driver's entry (``fit``, ``train_epoch``), on every named dataset.

    Args:
        who: the public function.
        step: its train step (to find the number of classes from the model).
        state: its train state.
        named: ``[(data, argument name), ...]``; the first one is used to find the classes.
        num_classes: the user's ``num_classes`` argument (an int >= 1 or ``None``).
        enabled: the user's ``check_labels`` argument.
    """
    n = None if num_classes is None else _validate.check_int(
        num_classes, who, "num_classes", low=1, high=_validate.INT32_MAX)
    if not _validate.check_bool(enabled, who, "check_labels"):
        return
    labels = [label_array(data) for data, _ in named]
    if all(y is None or _validate.is_traced(y) for y in labels):
        return
    source = ""
    if n is None:
        n = infer_num_classes(step, state, named[0][0])
        if n is not None:
            source = (f"{n} classes is the size of the model's output (pass num_classes= to "
                      "set it, or check_labels=False to skip the check)")
    for data, name in named:
        check_data_labels(data, n, who, name, source)
