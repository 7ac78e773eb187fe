"""Batch augmentations that mix examples: mixup and CutMix, pure and traceable.

Both take a batch ``(x, labels)`` and return a batch ``(mixed_x, soft_targets)`` of the same
structure, where the soft targets are one-hot labels mixed with the same weight as the inputs. They
are pure functions of a key (no host round trip), so they run inside a jitted step, a
``lax.scan``-ned epoch and a ``jax.vmap`` over seeds; ``alpha`` may be a traced array (a sweep).
The soft targets go straight into :func:`functrain.losses.softmax_cross_entropy`, which takes
floating label distributions of the logits' shape.

Randomness, for a key ``k``: ``k_weight, k_perm, k_box = jax.random.split(k, 3)``; the weight is
``lam ~ Beta(alpha, alpha)`` drawn with ``k_weight`` (``lam = 1``, no mixing, when ``alpha == 0``);
example ``i`` is mixed with example ``perm[i]`` of the same batch, ``perm =
jax.random.permutation(k_perm, n)`` (the "shuffled batch" of both papers' reference code); CutMix
draws its box with ``k_box``.

Example:
    >>> x, y = jnp.ones((8, 4, 4, 1)), jnp.arange(8) % 3
    >>> mixed_x, targets = ft.data.mixup(jax.random.key(0), (x, y), 0.2, num_classes=3)
    >>> targets.shape, [round(float(s), 4) for s in targets.sum(axis=1)][:2]
    ((8, 3), [1.0, 1.0])
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxtyping import Float, Int

from functrain import _tree, _validate
from functrain.typing import Array, DType, PRNGKey

__all__ = ["cutmix", "mixup"]

Batch = tuple[Array, Array]


def _check_batch(batch: object, who: str, min_rank: int) -> Batch:
    if not (_tree.is_node_sequence(batch) and len(batch) == 2):
        _validate.fail(who, "batch", "a pair (x, labels)", batch, error=TypeError)
    for name, value in (("batch[0]", batch[0]), ("batch[1]", batch[1])):
        if not _tree.is_array(value):
            _validate.fail(who, name, "an array", value, error=TypeError)
    x, labels = jnp.asarray(batch[0]), jnp.asarray(batch[1])
    if not jnp.issubdtype(x.dtype, jnp.floating):
        _validate.fail(who, "batch[0]", "a floating array (cast integer pixels first)", x,
                       error=TypeError)
    if x.ndim < min_rank:
        layout = "(batch, height, width[, channels])" if min_rank == 3 else "(batch, ...)"
        _validate.fail(who, "batch[0]", f"an array of rank >= {min_rank} {layout}", x)
    _validate.check_leading_length((x, labels), who, "batch")
    return x, labels


def _targets(labels: Array, num_classes: int | None, dtype: DType, who: str) -> Array:
    """One-hot targets ``(n, C)`` from integer labels ``(n,)``, or floating targets ``(n, C)`` as given."""
    if num_classes is not None:
        num_classes = _validate.check_int(num_classes, who, "num_classes", low=1)
    if jnp.issubdtype(labels.dtype, jnp.integer):
        if labels.ndim != 1:
            _validate.fail(who, "batch[1]", "integer labels of shape (batch,)", labels)
        if num_classes is None:
            _validate.fail(who, "num_classes", "an int >= 1 when the labels are integer class "
                           "indices (the number of one-hot classes)", num_classes, error=TypeError)
        _validate.check_labels(labels, num_classes, who, "batch[1]")
        return jax.nn.one_hot(labels, num_classes, dtype=dtype)
    expectation = "integer labels (batch,) or floating targets (batch, classes)"
    if not jnp.issubdtype(labels.dtype, jnp.floating):
        _validate.fail(who, "batch[1]", expectation, labels, error=TypeError)
    if labels.ndim != 2:
        _validate.fail(who, "batch[1]", expectation, labels)
    if num_classes is not None and labels.shape[1] != num_classes:
        _validate.fail(who, "num_classes", f"the targets' number of classes ({labels.shape[1]})",
                       num_classes)
    return labels.astype(dtype)


def _weight(key: PRNGKey, alpha: float | Array, who: str) -> Array:
    """``lam ~ Beta(alpha, alpha)``, and exactly ``1`` (no mixing) where ``alpha == 0``."""
    _validate.check_number(alpha, who, "alpha", low=0.0, finite=True)
    a = jnp.asarray(alpha, jnp.float32)
    safe = jnp.where(a > 0, a, 1.0)  # Beta(0, 0) is not a distribution: draw something, discard it
    return jnp.where(a > 0, jax.random.beta(key, safe, safe), 1.0)


def _mix(lam: Array, a: Array, b: Array) -> Array:
    lam = lam.astype(a.dtype)
    return lam * a + (1 - lam) * b


def mixup(
    key: PRNGKey,
    batch: tuple[Float[Array, "batch ..."], Int[Array, " batch"] | Float[Array, "batch classes"]],
    alpha: float | Array,
    *,
    num_classes: int | None = None,
) -> tuple[Float[Array, "batch ..."], Float[Array, "batch classes"]]:
    """Mixup (Zhang et al., "mixup: Beyond Empirical Risk Minimization", ICLR 2018).

    With ``lam ~ Beta(alpha, alpha)`` (one weight per batch) and a random permutation ``perm`` of
    the batch,

        ``x'_i = lam x_i + (1 - lam) x_perm[i]``,  ``t'_i = lam t_i + (1 - lam) t_perm[i]``,

    where ``t`` are the one-hot (or given soft) targets. Train on ``softmax_cross_entropy(logits,
    t')``, which equals ``lam CE(y_i) + (1 - lam) CE(y_perm[i])``.

    Args:
        key: the PRNG key (split into weight, permutation and, unused here, box keys).
        batch: ``(x, labels)``: floating inputs ``(n, ...)`` and integer labels ``(n,)`` or
            floating targets ``(n, classes)``.
        alpha: ``>= 0``, the Beta distribution's parameter (0.2-0.4 for ImageNet in the paper;
            ``0`` disables mixing). May be a traced array.
        num_classes: the number of classes; required for integer labels.

    Returns:
        ``(mixed_x, soft_targets)`` with shapes ``(n, ...)`` (``x``'s dtype) and ``(n, classes)``
        (``x``'s dtype).

    Raises:
        TypeError: ``batch`` is not a pair of arrays, ``x`` is not floating, or integer labels
            without ``num_classes``.
        ValueError: a negative or non-finite concrete ``alpha``, labels out of range, or shapes
            that do not fit.

    Example:
        >>> x = jnp.eye(4)  # example i is the unit vector e_i: the mixture shows who was mixed
        >>> mixed, targets = ft.data.mixup(jax.random.key(1), (x, jnp.arange(4)), 1.0, num_classes=4)
        >>> bool(jnp.allclose(mixed, targets))  # inputs and targets mixed with the same weight
        True
        >>> same, _ = ft.data.mixup(jax.random.key(1), (x, jnp.arange(4)), 0.0, num_classes=4)
        >>> bool((same == x).all())  # alpha = 0: no mixing
        True
    """
    who = "mixup"
    _validate.check_key(key, who)
    x, labels = _check_batch(batch, who, min_rank=1)
    targets = _targets(labels, num_classes, x.dtype, who)
    k_weight, k_perm, _ = jax.random.split(key, 3)
    lam = _weight(k_weight, alpha, who)
    perm = jax.random.permutation(k_perm, x.shape[0])
    return _mix(lam, x, x[perm]), _mix(lam, targets, targets[perm])


def _box_mask(key: PRNGKey, lam: Array, height: int, width: int) -> Array:
    """The ``(height, width)`` boolean mask of the CutMix box for the weight ``lam``."""
    cut = jnp.sqrt(1.0 - lam)
    cut_h = jnp.floor(height * cut).astype(jnp.int32)
    cut_w = jnp.floor(width * cut).astype(jnp.int32)
    k_y, k_x = jax.random.split(key)
    cy = jax.random.randint(k_y, (), 0, height)
    cx = jax.random.randint(k_x, (), 0, width)
    y1, y2 = jnp.clip(cy - cut_h // 2, 0, height), jnp.clip(cy + cut_h // 2, 0, height)
    x1, x2 = jnp.clip(cx - cut_w // 2, 0, width), jnp.clip(cx + cut_w // 2, 0, width)
    rows, cols = jnp.arange(height)[:, None], jnp.arange(width)[None, :]
    return (rows >= y1) & (rows < y2) & (cols >= x1) & (cols < x2)


def cutmix(
    key: PRNGKey,
    batch: tuple[Float[Array, "batch height width *channels"],
                 Int[Array, " batch"] | Float[Array, "batch classes"]],
    alpha: float | Array,
    *,
    num_classes: int | None = None,
) -> tuple[Float[Array, "batch height width *channels"], Float[Array, "batch classes"]]:
    """CutMix (Yun et al., "CutMix: Regularization Strategy to Train Strong Classifiers with
    Localizable Features", ICCV 2019).

    Draws ``lam ~ Beta(alpha, alpha)`` and one box per batch of height ``floor(H sqrt(1 - lam))``
    and width ``floor(W sqrt(1 - lam))`` (each rounded down to even) around a uniform centre,
    clipped to the image; inside the box every image takes the pixels of its partner
    ``perm[i]``. As in the paper's code, the weight is then *adjusted to the actual box area*:

        ``lam' = 1 - box_area / (H W)``,  ``t'_i = lam' t_i + (1 - lam') t_perm[i]``.

    Args:
        key: the PRNG key (split into weight, permutation and box keys).
        batch: ``(x, labels)``: floating images ``(n, H, W)`` or ``(n, H, W, C)`` (NHWC) and
            integer labels ``(n,)`` or floating targets ``(n, classes)``.
        alpha: ``>= 0``, the Beta distribution's parameter (1.0 in the paper; ``0`` disables
            mixing). May be a traced array.
        num_classes: the number of classes; required for integer labels.

    Returns:
        ``(mixed_x, soft_targets)``, shapes ``(n, H, W[, C])`` and ``(n, classes)``.

    Raises:
        TypeError: ``batch`` is not a pair of arrays, ``x`` is not floating, or integer labels
            without ``num_classes``.
        ValueError: images of rank < 3, a negative or non-finite concrete ``alpha``, labels out
            of range, or shapes that do not fit.

    Example:
        >>> x = jnp.stack([jnp.zeros((8, 8, 1)), jnp.ones((8, 8, 1))])  # a black and a white image
        >>> y = jnp.array([0, 1])
        >>> mixed, targets = ft.data.cutmix(jax.random.key(4), (x, y), 1.0, num_classes=2)
        >>> float(mixed[0].mean())  # image 0 got a white 4x3 box from image 1: 12 of 64 pixels
        0.1875
        >>> targets[0].tolist()  # its target: the area-adjusted weight 1 - 12/64
        [0.8125, 0.1875]
    """
    who = "cutmix"
    _validate.check_key(key, who)
    x, labels = _check_batch(batch, who, min_rank=3)
    targets = _targets(labels, num_classes, x.dtype, who)
    k_weight, k_perm, k_box = jax.random.split(key, 3)
    lam = _weight(k_weight, alpha, who)
    perm = jax.random.permutation(k_perm, x.shape[0])
    height, width = x.shape[1], x.shape[2]
    box = _box_mask(k_box, lam, height, width)
    mask = box.reshape((1, height, width) + (1,) * (x.ndim - 3))
    adjusted = 1.0 - jnp.sum(box) / (height * width)
    return jnp.where(mask, x[perm], x), _mix(adjusted, targets, targets[perm])
