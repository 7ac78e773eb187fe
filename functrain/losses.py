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

Integer labels outside their range (a class outside ``[0, C)``, a binary target outside
``{0, 1}``) make the loss of that example NaN, and its gradient too (never a wrap-around to the
last class): a wrong label is loud (a NaN loss, a skipped or NaN step), never a silently wrong
but finite value. The check is a compare and a select per example, so it runs under ``jit`` and
``vmap`` with traced labels at no measurable cost; data loaders check labels eagerly before that.

``reduction`` (a :data:`Reduction`) is ``"mean"`` (default: average over all examples/elements),
``"sum"`` or ``"none"`` (per-example cross-entropy; elementwise binary cross-entropy and squared
error).

Example:
    >>> reduction: ft.losses.Reduction = "sum"
    >>> logits, labels = jnp.zeros((4, 2)), jnp.array([0, 1, 1, 0])
    >>> round(float(ft.losses.softmax_cross_entropy(logits, labels, reduction=reduction)), 4)
    2.7726
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Float, Int

from functrain import _tree, _validate
from functrain.typing import Array, DType, PyTree

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
"""How per-example losses are combined: ``"mean"``, ``"sum"`` or ``"none"`` (kept)."""
_REDUCTIONS: tuple[Reduction, ...] = ("mean", "sum", "none")


def _check_reduction(reduction: object, who: str) -> Reduction:
    return _validate.check_choice(reduction, _REDUCTIONS, who, "reduction")


def _reduce(values: Array, reduction: Reduction) -> Array:
    if reduction == "mean":
        return jnp.mean(values)
    if reduction == "sum":
        return jnp.sum(values)
    return values


def _as_array(x: object, name: str, who: str) -> Array:
    if isinstance(x, (str, bytes)):
        _validate.fail(who, name, "an array", x, error=TypeError)
    try:
        return jnp.asarray(x)
    except TypeError:
        _validate.fail(who, name, "an array", x, error=TypeError)


def _check_floating(x: Array, who: str, name: str) -> None:
    if not jnp.issubdtype(x.dtype, jnp.floating):
        _validate.fail(who, name, "a floating array", x, error=TypeError)


def _check_logits(logits: Array, who: str) -> None:
    if logits.ndim < 1:
        _validate.fail(who, "logits", "an array with a trailing class axis (rank >= 1)", logits)
    _check_floating(logits, who, "logits")


def _check_same_shape(x: Array, shape: tuple[int, ...], who: str, name: str, detail: str) -> None:
    """A chex shape assertion whose message also says where the expected shape comes from."""
    try:
        _validate.check_shape(x, shape, who, name)
    except ValueError as e:
        raise ValueError(f"{e}; {detail}") from None


def _label_kind(logits: Array, labels: Array, who: str) -> Literal["int", "dist"]:
    """Decide whether ``labels`` are integer class indices or distributions over classes."""
    if jnp.issubdtype(labels.dtype, jnp.integer):
        _check_same_shape(labels, logits.shape[:-1], who, "labels",
                          f"integer class labels have the shape logits.shape[:-1] = "
                          f"{tuple(logits.shape[:-1])}")
        return "int"
    if jnp.issubdtype(labels.dtype, jnp.floating):
        _check_same_shape(labels, logits.shape, who, "labels",
                          f"floating (one-hot or soft) labels have the shape of the logits "
                          f"{tuple(logits.shape)}")
        return "dist"
    _validate.fail(who, "labels", "integer class indices or floating one-hot vectors", labels,
                   error=TypeError)


def _nan_unless(valid: Array, dtype: DType) -> Array:
    """``1`` where ``valid``, NaN elsewhere: multiplying a loss by it makes the loss and its
    gradient NaN for invalid examples (a ``where`` would give a NaN loss with a finite gradient)."""
    return jnp.where(valid, jnp.ones((), dtype), jnp.full((), jnp.nan, dtype))


def _in_range(labels: Array, n: int) -> Array:
    """Elementwise ``0 <= labels < n`` for integer labels, with no wrap-around or overflow."""
    valid = labels >= 0
    if n <= int(np.iinfo(labels.dtype).max):  # else every value of the dtype is below n
        valid = valid & (labels < n)
    return valid


def softmax_cross_entropy(
    logits: Float[Array, "*batch classes"],
    labels: Int[Array, "*batch"] | Float[Array, "*batch classes"],
    *,
    reduction: Reduction = "mean",
    label_smoothing: float | Array = 0.0,
) -> Array:
    """Softmax cross-entropy between logits and labels, computed with ``log_softmax``.

    For logits ``z`` and a label distribution ``y`` over ``C`` classes,

        ``loss = -sum_c y_c * log_softmax(z)_c,  log_softmax(z)_c = z_c - logsumexp(z)``.

    Integer labels ``k`` are the one-hot case, ``loss = logsumexp(z) - z_k``. The log-sum-exp is
    shifted by ``max(z)`` so the result is finite for any finite logits (no ``log(0)``). An integer
    label outside ``[0, C)`` (``-1`` included: no wrap-around to the last class) gives that
    example a NaN loss and a NaN gradient, also for traced labels under ``jit`` and ``vmap``.

    Args:
        logits: ``(*batch, classes)`` floating scores.
        labels: ``(*batch,)`` integer class indices, or ``(*batch, classes)`` floating one-hot
            (or soft, rows summing to 1) targets.
        reduction: ``"mean"`` over examples (default), ``"sum"``, or ``"none"`` for the
            ``(*batch,)`` per-example losses.
        label_smoothing: ``eps`` in ``[0, 1]`` (may be traced): the targets become
            ``(1 - eps) y + eps / C`` (Szegedy et al., "Rethinking the Inception Architecture",
            CVPR 2016), the same as ``optax.smooth_labels``; it composes with soft targets such as
            :func:`functrain.data.mixup`'s. Computed as ``(1 - eps) loss_y + eps * mean_c(-log p_c)``
            without building the smoothed targets; ``0`` (default) adds nothing.

    Returns:
        A scalar (``"mean"``/``"sum"``) or the ``(*batch,)`` per-example losses.

    Raises:
        ValueError: if the labels' shape does not fit the logits, ``reduction`` is unknown or a
            concrete ``label_smoothing`` is outside ``[0, 1]``.
        TypeError: if the logits are not floating or the labels neither integer nor floating.

    Example:
        >>> logits = jnp.array([[2.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
        >>> labels = jnp.array([0, 2])
        >>> losses = ft.losses.softmax_cross_entropy(logits, labels, reduction="none")
        >>> [round(float(v), 4) for v in losses]  # log(e^2 + 2) - 2, log(3)
        [0.2395, 1.0986]
        >>> one_hot = jax.nn.one_hot(labels, 3)
        >>> round(float(ft.losses.softmax_cross_entropy(logits, one_hot)), 4)
        0.6691
        >>> round(float(ft.losses.softmax_cross_entropy(logits, labels, label_smoothing=0.1)), 4)
        0.7357
    """
    who = "softmax_cross_entropy"
    reduction = _check_reduction(reduction, who)
    _validate.check_number(label_smoothing, who, "label_smoothing", low=0.0, high=1.0)
    logits = _as_array(logits, "logits", who)
    labels = _as_array(labels, "labels", who)
    _check_logits(logits, who)
    log_p = jax.nn.log_softmax(logits, axis=-1)
    if _label_kind(logits, labels, who) == "int":
        n = int(logits.shape[-1])
        # mode="clip": an in-bounds gather (cheaper than the default NaN fill); the factor below
        # makes out-of-range labels NaN.
        picked = jnp.take_along_axis(log_p, labels[..., None], axis=-1, mode="clip")[..., 0]
        per_example = -picked * _nan_unless(_in_range(labels, n), log_p.dtype)
    else:
        # 0 * log_p is 0 because log_p is finite: no 0 * (-inf) NaN.
        per_example = -jnp.sum(labels.astype(log_p.dtype) * log_p, axis=-1)
    if not (isinstance(label_smoothing, (int, float)) and label_smoothing == 0):
        eps = jnp.asarray(label_smoothing, log_p.dtype)
        per_example = (1 - eps) * per_example - eps * jnp.mean(log_p, axis=-1)
    return _reduce(per_example, reduction)


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
        labels: ``(*shape)`` targets in ``[0, 1]``: integer 0/1 (any other integer gives a NaN
            loss and gradient for that element) or floating (soft targets).
        reduction: ``"mean"`` over all elements (default), ``"sum"``, or ``"none"`` (elementwise).

    Returns:
        A scalar, or the ``(*shape)`` elementwise losses for ``reduction="none"``.

    Raises:
        ValueError: if ``labels`` and ``logits`` shapes differ, or ``reduction`` is unknown.
        TypeError: if the logits are not floating.

    Example:
        >>> logits, labels = jnp.array([0.0, 2.0]), jnp.array([1, 0])
        >>> losses = ft.losses.binary_cross_entropy(logits, labels, reduction="none")
        >>> [round(float(v), 4) for v in losses]  # log(2), 2 + log(1 + e^-2)
        [0.6931, 2.1269]
        >>> round(float(ft.losses.binary_cross_entropy(jnp.array([-1000.0]), jnp.array([1.0]))), 4)
        1000.0
    """
    who = "binary_cross_entropy"
    reduction = _check_reduction(reduction, who)
    logits = _as_array(logits, "logits", who)
    labels = _as_array(labels, "labels", who)
    _check_floating(logits, who, "logits")
    _check_same_shape(labels, tuple(logits.shape), who, "labels",
                      f"one target per logit, the shape of the logits {tuple(logits.shape)}")
    y = labels.astype(logits.dtype)
    losses = jnp.maximum(logits, 0) - logits * y + jnp.log1p(jnp.exp(-jnp.abs(logits)))
    if jnp.issubdtype(labels.dtype, jnp.integer):
        losses = losses * _nan_unless(_in_range(labels, 2), losses.dtype)
    return _reduce(losses, reduction)


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

    Example:
        >>> predictions, targets = jnp.array([1.0, 2.0, 3.0]), jnp.array([1.0, 0.0, 0.0])
        >>> round(float(ft.losses.mean_squared_error(predictions, targets)), 4)  # (0 + 4 + 9) / 3
        4.3333
        >>> ft.losses.mean_squared_error(predictions, targets, reduction="none").tolist()
        [0.0, 4.0, 9.0]
    """
    who = "mean_squared_error"
    reduction = _check_reduction(reduction, who)
    predictions = _as_array(predictions, "predictions", who)
    targets = _as_array(targets, "targets", who)
    _check_same_shape(targets, tuple(predictions.shape), who, "targets",
                      f"the shape of the predictions {tuple(predictions.shape)}")
    return _reduce(jnp.square(predictions - targets), reduction)


def accuracy(
    logits: Float[Array, "*batch classes"],
    labels: Int[Array, "*batch"] | Float[Array, "*batch classes"],
) -> Array:
    """Fraction of examples whose arg-max score is the label, ``mean(argmax(z) == y)``.

    Args:
        logits: ``(*batch, classes)`` floating scores (logits or probabilities: only the argmax
            matters).
        labels: ``(*batch,)`` integer class indices, or ``(*batch, classes)`` one-hot targets
            (their argmax is the class).

    Returns:
        A float32 scalar in ``[0, 1]``; NaN if an integer label lies outside ``[0, C)`` (as for
        :func:`softmax_cross_entropy`: a wrong label is never counted as a plain miss).

    Raises:
        ValueError: if the labels' shape does not fit the logits.
        TypeError: if the logits are not floating, or the labels neither integer nor floating.

    Example:
        >>> logits = jnp.array([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7]])
        >>> round(float(ft.losses.accuracy(logits, jnp.array([1, 1, 1]))), 4)
        0.6667
    """
    who = "accuracy"
    logits = _as_array(logits, "logits", who)
    labels = _as_array(labels, "labels", who)
    _check_logits(logits, who)
    hits = jnp.argmax(logits, axis=-1) == (
        jnp.argmax(labels, axis=-1) if _label_kind(logits, labels, who) == "dist" else labels)
    if jnp.issubdtype(labels.dtype, jnp.integer):
        valid = _in_range(labels, int(logits.shape[-1]))
        return jnp.mean(jnp.where(valid, hits.astype(jnp.float32), jnp.nan))
    return jnp.mean(hits.astype(jnp.float32))


def default_penalty_mask(leaf: Any) -> bool:
    """Default leaf selection for the weight penalties: the kernels (``_tree.is_kernel``).

    A floating (or complex) array with ``ndim >= 2`` (dense and convolution kernels) is penalized;
    biases, batch-norm scales and offsets (1-d) and scalars are not, as is conventional.

    Args:
        leaf: one leaf of a parameter pytree.

    Returns:
        Whether the leaf is penalized.

    Example:
        >>> [ft.losses.default_penalty_mask(leaf) for leaf in (jnp.ones((3, 4)), jnp.ones(4))]
        [True, False]
    """
    return _tree.is_kernel(leaf)


def _selected(params: PyTree, mask: PyTree | Callable[[Any], bool] | None, who: str) -> list[Array]:
    if mask is None:
        mask = default_penalty_mask
    if callable(mask) and jax.tree_util.treedef_is_leaf(_tree.tree_structure(mask)):
        predicate = mask
        return [x for x in _tree.tree_leaves(params) if predicate(x)]
    _validate.check_same_structure(params, mask, who, "mask", "the params")
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
    """Half the squared L2 norm of the selected weights, ``0.5 * sum_i |w_i|^2``.

    The factor ``1/2`` makes the gradient exactly ``w``, so adding ``lam * l2_penalty(params)`` to
    the loss adds ``lam * w`` to the gradient: classic (coupled) weight decay with coefficient
    ``lam`` (Krogh & Hertz, "A Simple Weight Decay Can Improve Generalization", NIPS 1991).

    Args:
        params: any pytree of arrays (functrain params, an equinox module's arrays ...).
        mask: which leaves to penalize: ``None`` (default: :func:`default_penalty_mask`,
            floating or complex leaves with ``ndim >= 2``: kernels, not biases or norm scales),
            a predicate ``leaf -> bool``, or a pytree of Python bools with ``params``' structure.

    Returns:
        A scalar of at least float32 precision (0 when nothing is selected).

    Raises:
        TypeError: if a mask tree does not have ``params``' structure.

    Example:
        >>> params = {"w": jnp.array([[1.0, 2.0], [3.0, 4.0]]), "b": jnp.array([10.0, 10.0])}
        >>> float(ft.losses.l2_penalty(params))  # 0.5 * (1 + 4 + 9 + 16); the bias is skipped
        15.0
        >>> float(ft.losses.l2_penalty(params, mask={"w": False, "b": True}))
        100.0
        >>> jax.grad(ft.losses.l2_penalty)(params)["w"].tolist()  # the gradient is w itself
        [[1.0, 2.0], [3.0, 4.0]]
    """
    leaves = _selected(params, mask, "l2_penalty")
    return 0.5 * _sum_leaves([jnp.sum(jnp.square(jnp.abs(_upcast(w))) if jnp.iscomplexobj(w)
                                      else jnp.square(_upcast(w))) for w in leaves])


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
        TypeError: if a mask tree does not have ``params``' structure.

    Example:
        >>> params = {"w": jnp.array([[1.0, -2.0], [3.0, -4.0]]), "b": jnp.array([10.0, -10.0])}
        >>> float(ft.losses.l1_penalty(params))  # 1 + 2 + 3 + 4; the bias is skipped
        10.0
        >>> float(ft.losses.l1_penalty(params, mask=lambda leaf: True))
        30.0
    """
    leaves = _selected(params, mask, "l1_penalty")
    return _sum_leaves([jnp.sum(jnp.abs(_upcast(w))) for w in leaves])
