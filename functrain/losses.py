"""Loss functions, metrics and weight penalties, numerically stable.

All classification losses take **logits** (unnormalized scores), never probabilities: they work in
log space (``log_softmax``, ``softplus``), so no ``log(0)`` or overflow occurs for any finite
input.

* :func:`softmax_cross_entropy` -- ``-sum_c y_c log softmax(z)_c`` with integer labels or one-hot
  (or soft) label distributions.
* :func:`binary_cross_entropy` -- sigmoid cross-entropy from logits.
* :func:`mean_squared_error` -- ``(prediction - target)^2``.
* :func:`accuracy` -- fraction of argmax predictions equal to the label.
* :func:`l2_penalty`, :func:`l1_penalty` -- weight penalties (weight decay as an explicit loss term).

``reduction`` is ``"mean"`` (default: average over all examples/elements), ``"sum"`` or ``"none"``
(per-example cross-entropy; elementwise binary cross-entropy and squared error).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import jax
import jax.numpy as jnp
from jaxtyping import Float, Int

from functrain import _tree
from functrain.typing import Array, PyTree

__all__ = [
    "Reduction",
    "accuracy",
    "binary_cross_entropy",
    "default_penalty_mask",
    "l1_penalty",
    "l2_penalty",
    "mean_squared_error",
    "softmax_cross_entropy",
]

Reduction = Literal["mean", "sum", "none"]
_REDUCTIONS = ("mean", "sum", "none")


def _reduce(values: Array, reduction: Reduction, who: str) -> Array:
    if reduction == "mean":
        return jnp.mean(values)
    if reduction == "sum":
        return jnp.sum(values)
    if reduction == "none":
        return values
    raise ValueError(f"{who}: argument 'reduction' must be one of {_REDUCTIONS}, got {reduction!r}")


def _as_array(x: Any, name: str, who: str) -> Array:
    try:
        return jnp.asarray(x)
    except TypeError as e:
        raise TypeError(f"{who}: argument '{name}' must be an array, got {type(x).__name__}") from e


def _check_logits(logits: Array, who: str) -> None:
    if logits.ndim < 1:
        raise ValueError(f"{who}: argument 'logits' must have a trailing class axis (ndim >= 1), "
                         f"got shape {logits.shape}")
    if not jnp.issubdtype(logits.dtype, jnp.floating):
        raise TypeError(f"{who}: argument 'logits' must be a floating array, got dtype {logits.dtype}")


def _label_kind(logits: Array, labels: Array, who: str) -> Literal["int", "dist"]:
    """Decide whether ``labels`` are integer class indices or distributions over classes."""
    if jnp.issubdtype(labels.dtype, jnp.integer):
        if labels.shape != logits.shape[:-1]:
            raise ValueError(
                f"{who}: integer 'labels' must have shape logits.shape[:-1] = {logits.shape[:-1]}, "
                f"got {labels.shape}")
        return "int"
    if jnp.issubdtype(labels.dtype, jnp.floating):
        if labels.shape != logits.shape:
            raise ValueError(
                f"{who}: floating (one-hot) 'labels' must have the shape of 'logits' {logits.shape}, "
                f"got {labels.shape}")
        return "dist"
    raise TypeError(f"{who}: argument 'labels' must be integer class indices or floating one-hot "
                    f"vectors, got dtype {labels.dtype}")


def softmax_cross_entropy(
    logits: Float[Array, "*batch classes"],
    labels: Int[Array, "*batch"] | Float[Array, "*batch classes"],
    *,
    reduction: Reduction = "mean",
) -> Array:
    """Softmax cross-entropy between logits and labels, computed with ``log_softmax``.

    For logits ``z`` and a label distribution ``y`` over ``C`` classes,

        ``loss = -sum_c y_c * log_softmax(z)_c,  log_softmax(z)_c = z_c - logsumexp(z)``.

    Integer labels ``k`` are the one-hot case, ``loss = logsumexp(z) - z_k``. The log-sum-exp is
    shifted by ``max(z)`` so the result is finite for any finite logits (no ``log(0)``). Integer
    labels must lie in ``[0, C)``; out-of-range labels cannot be checked on traced values.

    Args:
        logits: ``(*batch, classes)`` floating scores.
        labels: ``(*batch,)`` integer class indices, or ``(*batch, classes)`` floating one-hot
            (or soft, rows summing to 1) targets.
        reduction: ``"mean"`` over examples (default), ``"sum"``, or ``"none"`` for the
            ``(*batch,)`` per-example losses.

    Returns:
        A scalar (``"mean"``/``"sum"``) or the ``(*batch,)`` per-example losses.

    Raises:
        ValueError: if the labels' shape does not fit the logits, or ``reduction`` is unknown.
        TypeError: if the logits are not floating or the labels neither integer nor floating.
    """
    who = "softmax_cross_entropy"
    logits = _as_array(logits, "logits", who)
    labels = _as_array(labels, "labels", who)
    _check_logits(logits, who)
    log_p = jax.nn.log_softmax(logits, axis=-1)
    if _label_kind(logits, labels, who) == "int":
        per_example = -jnp.take_along_axis(log_p, labels[..., None], axis=-1)[..., 0]
    else:
        # 0 * log_p is 0 because log_p is finite: no 0 * (-inf) NaN.
        per_example = -jnp.sum(labels.astype(log_p.dtype) * log_p, axis=-1)
    return _reduce(per_example, reduction, who)


def binary_cross_entropy(
    logits: Float[Array, "*shape"],
    labels: Float[Array, "*shape"] | Int[Array, "*shape"],
    *,
    reduction: Reduction = "mean",
) -> Array:
    """Sigmoid (binary) cross-entropy from logits, in the stable form.

    With ``p = sigmoid(x)`` and a target ``y`` in ``[0, 1]``,
    ``loss = -y log p - (1 - y) log(1 - p)``, computed as

        ``loss = max(x, 0) - x * y + log1p(exp(-|x|))``,

    which never evaluates ``log(0)`` nor overflows ``exp`` (the form used by TensorFlow's
    ``sigmoid_cross_entropy_with_logits``).

    Args:
        logits: ``(*shape)`` floating scores (one per binary target).
        labels: ``(*shape)`` targets in ``[0, 1]`` (integer 0/1 or floating).
        reduction: ``"mean"`` over all elements (default), ``"sum"``, or ``"none"`` (elementwise).

    Returns:
        A scalar, or the ``(*shape)`` elementwise losses for ``reduction="none"``.

    Raises:
        ValueError: if ``labels`` and ``logits`` shapes differ, or ``reduction`` is unknown.
        TypeError: if the logits are not floating.
    """
    who = "binary_cross_entropy"
    logits = _as_array(logits, "logits", who)
    labels = _as_array(labels, "labels", who)
    if not jnp.issubdtype(logits.dtype, jnp.floating):
        raise TypeError(f"{who}: argument 'logits' must be a floating array, got dtype {logits.dtype}")
    if labels.shape != logits.shape:
        raise ValueError(f"{who}: 'labels' must have the shape of 'logits' {logits.shape}, "
                         f"got {labels.shape}")
    y = labels.astype(logits.dtype)
    losses = jnp.maximum(logits, 0) - logits * y + jnp.log1p(jnp.exp(-jnp.abs(logits)))
    return _reduce(losses, reduction, who)


def mean_squared_error(
    predictions: Float[Array, "*shape"],
    targets: Float[Array, "*shape"],
    *,
    reduction: Reduction = "mean",
) -> Array:
    """Squared error ``(prediction - target)^2``, averaged over all elements by default.

    Args:
        predictions: ``(*shape)`` floating predictions.
        targets: ``(*shape)`` targets (same shape).
        reduction: ``"mean"`` over all elements (default), ``"sum"``, or ``"none"`` (elementwise).

    Returns:
        A scalar, or the ``(*shape)`` elementwise squared errors for ``reduction="none"``.

    Raises:
        ValueError: if the shapes differ, or ``reduction`` is unknown.
    """
    who = "mean_squared_error"
    predictions = _as_array(predictions, "predictions", who)
    targets = _as_array(targets, "targets", who)
    if predictions.shape != targets.shape:
        raise ValueError(f"{who}: 'targets' must have the shape of 'predictions' "
                         f"{predictions.shape}, got {targets.shape}")
    return _reduce(jnp.square(predictions - targets), reduction, who)


def accuracy(
    logits: Float[Array, "*batch classes"],
    labels: Int[Array, "*batch"] | Float[Array, "*batch classes"],
) -> Array:
    """Fraction of examples whose arg-max score is the label, ``mean(argmax(z) == y)``.

    Args:
        logits: ``(*batch, classes)`` scores (logits or probabilities: only the argmax matters).
        labels: ``(*batch,)`` integer class indices, or ``(*batch, classes)`` one-hot targets
            (their argmax is the class).

    Returns:
        A float32 scalar in ``[0, 1]``.

    Raises:
        ValueError: if the labels' shape does not fit the logits.
        TypeError: if the labels are neither integer nor floating.
    """
    who = "accuracy"
    logits = _as_array(logits, "logits", who)
    labels = _as_array(labels, "labels", who)
    _check_logits(logits, who)
    if _label_kind(logits, labels, who) == "dist":
        labels = jnp.argmax(labels, axis=-1)
    return jnp.mean((jnp.argmax(logits, axis=-1) == labels).astype(jnp.float32))


def default_penalty_mask(leaf: Any) -> bool:
    """Default leaf selection for the weight penalties: floating arrays with ``ndim >= 2``.

    This picks dense and convolution kernels and leaves out biases, batch-norm scales and
    offsets (1-d), which are conventionally not decayed.
    """
    return _tree.is_float_array(leaf) and leaf.ndim >= 2


def _selected(params: PyTree, mask: PyTree | Callable[[Any], bool] | None, who: str) -> list[Array]:
    if mask is None:
        mask = default_penalty_mask
    if callable(mask) and jax.tree_util.treedef_is_leaf(_tree.tree_structure(mask)):
        predicate = mask
        return [x for x in _tree.tree_leaves(params) if predicate(x)]
    diff = _tree.describe_difference(params, mask)
    if diff is not None:
        raise ValueError(f"{who}: argument 'mask' must have the tree structure of 'params': {diff}")
    return [x for x, m in zip(_tree.tree_leaves(params), _tree.tree_leaves(mask), strict=True)
            if bool(m)]


def _upcast(w: Array) -> Array:
    """Accumulate in at least float32 (bfloat16/float16 sums lose too much precision)."""
    w = jnp.asarray(w)
    return w.astype(jnp.promote_types(w.dtype, jnp.float32))


def _sum_leaves(sums: list[Array]) -> Array:
    total = jnp.zeros((), jnp.float32)
    for s in sums:
        total = total + s
    return total


def l2_penalty(params: PyTree, *, mask: PyTree | Callable[[Any], bool] | None = None) -> Array:
    """Half the squared L2 norm of the selected weights, ``0.5 * sum_i w_i^2``.

    The factor ``1/2`` makes the gradient exactly ``w``, so adding ``lam * l2_penalty(params)`` to
    the loss adds ``lam * w`` to the gradient: classic (coupled) weight decay with coefficient
    ``lam`` (Krogh & Hertz, "A Simple Weight Decay Can Improve Generalization", NIPS 1991).

    Args:
        params: any pytree of arrays (functrain params, an equinox module's arrays ...).
        mask: which leaves to penalize: ``None`` (default: :func:`default_penalty_mask`,
            floating leaves with ``ndim >= 2``, i.e. kernels but not biases or norm scales),
            a predicate ``leaf -> bool``, or a pytree of Python bools with ``params``' structure.

    Returns:
        A scalar of at least float32 precision (0 when nothing is selected).

    Raises:
        ValueError: if a mask tree does not have ``params``' structure.
    """
    leaves = _selected(params, mask, "l2_penalty")
    return 0.5 * _sum_leaves([jnp.sum(jnp.square(_upcast(w))) for w in leaves])


def l1_penalty(params: PyTree, *, mask: PyTree | Callable[[Any], bool] | None = None) -> Array:
    """The L1 norm of the selected weights, ``sum_i |w_i|`` (lasso; Tibshirani 1996).

    Its (sub)gradient is ``sign(w)``: adding ``lam * l1_penalty(params)`` to the loss pushes
    weights towards exactly zero (sparsity).

    Args:
        params: any pytree of arrays.
        mask: which leaves to penalize, as for :func:`l2_penalty` (default: ``ndim >= 2``).

    Returns:
        A scalar of at least float32 precision (0 when nothing is selected).

    Raises:
        ValueError: if a mask tree does not have ``params``' structure.
    """
    leaves = _selected(params, mask, "l1_penalty")
    return _sum_leaves([jnp.sum(jnp.abs(_upcast(w))) for w in leaves])
