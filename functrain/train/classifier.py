"""The classification loss of a functrain model: softmax cross-entropy (optionally with label
smoothing), an L2 penalty, and the accuracy metric, as a hashable, inspectable loss function."""

from __future__ import annotations

import dataclasses
from typing import Generic, Literal, TypeVar, overload

from functrain import _validate
from functrain.layers.base import ApplyFn
from functrain.losses import accuracy, l2_penalty, softmax_cross_entropy
from functrain.typing import Array, Metrics, PRNGKey, PyTree

__all__ = ["ClassifierLoss", "classifier_loss"]

Mode = TypeVar("Mode", bound=bool, covariant=True)


@dataclasses.dataclass(frozen=True, eq=False)
class ClassifierLoss(Generic[Mode]):
    """The loss function :func:`classifier_loss` builds: a :class:`~functrain.typing.LossFn`
    that also says which model it runs and in which mode.

    ``loss_fn(params, model_state, (x, labels), key) -> (loss, (new_model_state, metrics))`` with
    ``loss = softmax_cross_entropy(logits, labels, label_smoothing=label_smoothing) +
    weight_decay * l2_penalty(params)`` and
    ``metrics = {"accuracy": ...}``. The fields let tools inspect it: :func:`make_eval_step`
    refuses ``train=True``, and a driver can run ``apply`` (e.g. to count the classes).
    Immutable and hashable; two are equal when their fields are (a ``weight_decay`` or
    ``label_smoothing`` array compares by identity). Generic in the mode: ``classifier_loss``
    returns a ``ClassifierLoss[Literal[True]]`` for ``train=True`` and a
    ``ClassifierLoss[Literal[False]]`` for ``train=False``, so a type checker refuses a training
    loss given to :func:`make_eval_step`.

    Attributes:
        apply: the model's ``apply(params, state, x, *, key, train) -> (logits, new_state)``.
        train: the mode of the forward pass (``True``: dropout on, batch statistics).
        weight_decay: the L2 coefficient (``0`` for none; may be a traced array).
        label_smoothing: ``eps`` of the smoothed targets ``(1 - eps) one_hot + eps / C``
            (``0`` for none; may be a traced array).

    Example:
        >>> model = ft.serial(ft.layers.Dense(3))
        >>> loss_fn = ft.train.classifier_loss(model.apply, train=True)
        >>> isinstance(loss_fn, ft.train.ClassifierLoss), loss_fn.train, loss_fn.apply is model.apply
        (True, True, True)
        >>> loss_fn == ft.train.classifier_loss(model.apply, train=True), hash(loss_fn) == hash(loss_fn)
        (True, True)
    """

    apply: ApplyFn
    train: Mode
    weight_decay: float | Array = 0.0
    label_smoothing: float | Array = 0.0

    def _key(self) -> tuple[object, ...]:
        return (self.apply, self.train, _by_value(self.weight_decay), _by_value(self.label_smoothing))

    def __eq__(self, other: object) -> bool:
        """Equal fields (an array by identity)."""
        return isinstance(other, ClassifierLoss) and self._key() == other._key()

    def __hash__(self) -> int:
        """The hash of the fields (an array by identity)."""
        return hash(self._key())

    def __repr__(self) -> str:
        """``classifier_loss(<apply>, train=..., weight_decay=..., label_smoothing=...)``."""
        wd, eps = (v if isinstance(v, (int, float)) else "array" for v in (self.weight_decay, self.label_smoothing))
        return (f"classifier_loss({getattr(self.apply, '__qualname__', 'apply')}, "
                f"train={self.train}, weight_decay={wd}, label_smoothing={eps})")

    def __call__(self, params: PyTree, model_state: PyTree, batch: PyTree,
                 key: PRNGKey) -> tuple[Array, tuple[PyTree, Metrics]]:
        """The loss and ``(new_model_state, {"accuracy": ...})`` of ``params`` on ``batch = (x, labels)``."""
        x, labels = batch
        logits, new_state = self.apply(params, model_state, x, key=key, train=self.train)
        eps = self.label_smoothing
        plain = isinstance(eps, (int, float)) and eps == 0
        loss = softmax_cross_entropy(logits, labels) if plain else softmax_cross_entropy(
            logits, labels, label_smoothing=eps)
        wd = self.weight_decay
        if not (isinstance(wd, (int, float)) and wd == 0):
            loss = loss + wd * l2_penalty(params)
        return loss, (new_state, {"accuracy": accuracy(logits, labels)})


@overload
def classifier_loss(apply: ApplyFn, *, train: Literal[True], weight_decay: float | Array = 0.0,
                    label_smoothing: float | Array = 0.0) -> ClassifierLoss[Literal[True]]: ...
@overload
def classifier_loss(apply: ApplyFn, *, train: Literal[False], weight_decay: float | Array = 0.0,
                    label_smoothing: float | Array = 0.0) -> ClassifierLoss[Literal[False]]: ...
@overload
def classifier_loss(apply: ApplyFn, *, train: bool, weight_decay: float | Array = 0.0,
                    label_smoothing: float | Array = 0.0) -> ClassifierLoss[bool]: ...
def classifier_loss(apply: ApplyFn, *, train: bool, weight_decay: float | Array = 0.0,
                    label_smoothing: float | Array = 0.0) -> ClassifierLoss[bool]:
    """A classification loss function for a model with the functrain ``apply`` convention.

    The batch is ``(x, labels)``; the loss is

        ``softmax_cross_entropy(logits, labels, label_smoothing=label_smoothing)
        + weight_decay * l2_penalty(params)``

    (``l2_penalty = 0.5 * sum w^2`` over kernels, so the penalty adds ``weight_decay * w`` to the
    gradient), and the metrics are ``{"accuracy": ...}`` (the loss is added by the steps). A
    label outside ``[0, classes)`` makes the loss and accuracy NaN (see
    :func:`~functrain.losses.softmax_cross_entropy`).

    Args:
        apply: the model's ``apply(params, state, x, *, key, train) -> (logits, new_state)``.
        train: whether the forward pass is in training mode (dropout on, batch statistics).
            Use ``train=True`` for :func:`make_train_step` and ``train=False`` for
            :func:`make_eval_step` (which refuses ``train=True``).
        weight_decay: the L2 coefficient (``0`` for none; may be a traced array).
        label_smoothing: ``eps`` in ``[0, 1]``: train against ``(1 - eps) one_hot + eps / C``
            (Szegedy et al. 2016; ``0``, the default, for plain cross-entropy; may be a traced
            array, e.g. vmapped over a sweep). Usually only the training loss smooths: build the
            evaluation loss with ``label_smoothing=0`` so validation losses stay comparable.

    Returns:
        A :class:`ClassifierLoss` (``ClassifierLoss[Literal[True]]`` for ``train=True``,
        ``ClassifierLoss[Literal[False]]`` for ``train=False``): ``loss_fn(params, model_state, batch, key) -> (loss,
        (model_state, metrics))``, with the fields ``apply``, ``train``, ``weight_decay`` and
        ``label_smoothing``.

    Raises:
        TypeError: if ``apply`` is not callable or ``train`` is not a bool.
        ValueError: if a concrete ``weight_decay`` is negative or a concrete
            ``label_smoothing`` is outside ``[0, 1]``.

    Example:
        >>> model = ft.serial(ft.layers.Dense(3))
        >>> params, model_state, _ = model.init(jax.random.key(0), (-1, 4))
        >>> params = jax.tree_util.tree_map(jnp.zeros_like, params)  # uniform predictions
        >>> loss_fn = ft.train.classifier_loss(model.apply, train=False)
        >>> loss, (_, metrics) = loss_fn(params, model_state, (jnp.ones((2, 4)), jnp.array([0, 2])), None)
        >>> round(float(loss), 4) == round(float(np.log(3)), 4), sorted(metrics)
        (True, ['accuracy'])
        >>> smooth = ft.train.classifier_loss(model.apply, train=True, label_smoothing=0.1)
        >>> loss, _ = smooth(params, model_state, (jnp.ones((2, 4)), jnp.array([0, 2])), None)
        >>> round(float(loss), 4) == round(float(np.log(3)), 4)  # uniform logits: any target gives log 3
        True
    """
    who = "classifier_loss"
    _validate.check_callable(apply, who, "apply")
    _validate.check_bool(train, who, "train")
    _validate.check_number(weight_decay, who, "weight_decay", low=0.0)  # traced values pass
    _validate.check_number(label_smoothing, who, "label_smoothing", low=0.0, high=1.0)
    return ClassifierLoss(apply, train, weight_decay, label_smoothing)


def _by_value(v: float | Array) -> object:
    """A Python number as itself, an array by identity (arrays do not hash)."""
    return v if isinstance(v, (int, float)) else id(v)
