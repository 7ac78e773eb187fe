"""Gradient clipping: by global norm, by value, per block (norm or RMS) and adaptive (unit-wise).

All are stateless transformations (state :class:`~functrain.optim.EmptyState`), meant to come
first in a :func:`~functrain.optim.chain`, before the optimizer's rescaling. Norms use the
magnitude ``|g|``, so complex gradients are clipped as optax clips them; :func:`clip_by_value`
refuses complex gradients (a complex number has no order to clip by).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax.numpy as jnp

from functrain import _validate
from functrain._tree import tree_global_norm, tree_leaves_with_path, tree_map
from functrain.optim._hyper import abs_sq, like
from functrain.optim.base import (
    EmptyState,
    GradientTransformation,
    init_empty_state,
    require_params,
)
from functrain.typing import Array, PyTree

__all__ = [
    "adaptive_grad_clip",
    "clip_by_block_norm",
    "clip_by_block_rms",
    "clip_by_global_norm",
    "clip_by_value",
    "unitwise_norm",
]


def clip_by_global_norm(max_norm: float | Array) -> GradientTransformation[EmptyState]:
    r"""Rescale the updates so that their global norm is at most ``theta``.

    .. math::

        g \leftarrow g \ \text{if}\ \|g\| \le \theta, \quad\text{else}\quad
        g \leftarrow g \, \theta / \|g\|, \qquad \|g\| = \sqrt{\textstyle\sum_{\text{leaves}}
        \sum_i g_i^2}

    so the output norm is ``min(||g||, theta)`` and the direction is unchanged (Pascanu, Mikolov
    & Bengio, "On the difficulty of training recurrent neural networks", ICML 2013). Same as
    ``optax.clip_by_global_norm``.

    Args:
        max_norm: ``theta > 0``: a number or a (possibly traced) scalar array.

    Returns:
        A :class:`~functrain.optim.GradientTransformation` with
        :class:`~functrain.optim.EmptyState`.

    Raises:
        TypeError: ``max_norm`` is not a number or scalar array.
        ValueError: a concrete ``max_norm <= 0``.

    Example:
        >>> tx = ft.optim.clip_by_global_norm(1.0)
        >>> u, _ = tx.update({"a": jnp.asarray([3.0]), "b": jnp.asarray([4.0])}, tx.init(None))
        >>> round(float(u["a"][0]), 4), round(float(u["b"][0]), 4)
        (0.6, 0.8)
    """
    _validate.check_hyperparameter(max_norm, "clip_by_global_norm", "max_norm", low=0.0,
                                   low_open=True, schedule_ok=False)

    def update(
        updates: PyTree, state: EmptyState, params: PyTree | None = None, **extra_args: Any
    ) -> tuple[PyTree, EmptyState]:
        del params, extra_args
        norm = tree_global_norm(updates)
        keep = norm <= max_norm

        def clip(g: Array) -> Array:
            return jnp.where(keep, g, (g / norm.astype(g.dtype)) * like(max_norm, g))

        return tree_map(clip, updates), state

    return GradientTransformation(init_empty_state, update)


def clip_by_value(
    *,
    min_value: float | Array | None = None,
    max_value: float | Array | None = None,
    max_delta: float | Array | None = None,
) -> GradientTransformation[EmptyState]:
    """Clip every coordinate of the updates into an interval (stateless).

    Either ``max_delta`` alone, clipping into ``[-max_delta, max_delta]`` (``optax.clip``), or
    ``min_value`` and/or ``max_value``: ``g <- min(max(g, min_value), max_value)``.

    Args:
        min_value: lower bound (``None``: no lower bound).
        max_value: upper bound (``None``: no upper bound).
        max_delta: ``> 0``, symmetric bound; excludes ``min_value``/``max_value``.

    Returns:
        A :class:`~functrain.optim.GradientTransformation` with
        :class:`~functrain.optim.EmptyState`.

    Raises:
        TypeError: a bound is not a number or scalar array; at update, a complex leaf.
        ValueError: no bound, ``max_delta`` together with ``min_value``/``max_value``, a concrete
            ``max_delta <= 0``, or concrete ``min_value > max_value``.

    Example:
        >>> tx = ft.optim.clip_by_value(max_delta=1.0)
        >>> u, _ = tx.update({"w": jnp.asarray([-3.0, 0.5, 2.0])}, tx.init(None))
        >>> u["w"].tolist()
        [-1.0, 0.5, 1.0]
    """
    fn = "clip_by_value"
    if max_delta is not None:
        for name, bound in (("min_value", min_value), ("max_value", max_value)):
            if bound is not None:
                _validate.fail(fn, name, "None when max_delta is given", bound)
        _validate.check_hyperparameter(max_delta, fn, "max_delta", low=0.0, low_open=True,
                                       schedule_ok=False)
        lo: float | Array | None = -max_delta
        hi: float | Array | None = max_delta
    else:
        if min_value is None and max_value is None:
            _validate.fail(fn, "max_delta", "a bound when min_value and max_value are None",
                           max_delta)
        low = None
        if min_value is not None:
            _validate.check_hyperparameter(min_value, fn, "min_value", schedule_ok=False)
            low = float(min_value) if isinstance(min_value, (int, float)) else None
        if max_value is not None:
            _validate.check_hyperparameter(max_value, fn, "max_value", low=low,
                                           schedule_ok=False)
        lo, hi = min_value, max_value

    def update(
        updates: PyTree, state: EmptyState, params: PyTree | None = None, **extra_args: Any
    ) -> tuple[PyTree, EmptyState]:
        del params, extra_args
        for path, g in tree_leaves_with_path(updates):
            if jnp.iscomplexobj(g):
                _validate.fail(fn, f"updates{path}", "real (complex values have no order to clip "
                               "by; clip by norm instead, e.g. clip_by_block_norm)", g,
                               error=TypeError)
        return tree_map(lambda g: jnp.clip(g, lo, hi), updates), state

    return GradientTransformation(init_empty_state, update)


def clip_by_block_norm(max_norm: float | Array) -> GradientTransformation[EmptyState]:
    r"""Clip each leaf (block) separately to L2 norm at most ``theta``.

    ``g_b <- g_b / max(1, ||g_b|| / theta)`` for every leaf ``b``: a block whose norm is at most
    ``theta`` is unchanged, a larger one is rescaled to norm ``theta`` (per-layer clipping; cf.
    McMahan et al., "Learning Differentially Private Recurrent Language Models", ICLR 2018).

    Args:
        max_norm: ``theta > 0``: a number or a (possibly traced) scalar array.

    Returns:
        A :class:`~functrain.optim.GradientTransformation` with
        :class:`~functrain.optim.EmptyState`.

    Raises:
        TypeError: ``max_norm`` is not a number or scalar array.
        ValueError: a concrete ``max_norm <= 0``.

    Example:
        >>> tx = ft.optim.clip_by_block_norm(1.0)
        >>> g = {"big": jnp.asarray([3.0, 4.0]), "small": jnp.asarray([0.3, 0.4])}
        >>> u, _ = tx.update(g, tx.init(None))
        >>> [round(x, 4) for x in u["big"].tolist()], [round(x, 4) for x in u["small"].tolist()]
        ([0.6, 0.8], [0.3, 0.4])
    """
    _validate.check_hyperparameter(max_norm, "clip_by_block_norm", "max_norm", low=0.0,
                                   low_open=True, schedule_ok=False)

    return _per_leaf(lambda g: jnp.sqrt(jnp.sum(abs_sq(g))), max_norm)


def clip_by_block_rms(max_rms: float | Array) -> GradientTransformation[EmptyState]:
    r"""Clip each leaf (block) separately to root mean square at most ``theta``.

    ``g_b <- g_b / max(1, rms(g_b) / theta)`` with ``rms(g_b) = sqrt(mean(g_b^2))`` over the
    entries of leaf ``b``: unlike :func:`clip_by_block_norm`, the bound does not grow with the
    size of the leaf. Same as ``optax.clip_by_block_rms``.

    Args:
        max_rms: ``theta > 0``: a number or a (possibly traced) scalar array.

    Returns:
        A :class:`~functrain.optim.GradientTransformation` with
        :class:`~functrain.optim.EmptyState`.

    Raises:
        TypeError: ``max_rms`` is not a number or scalar array.
        ValueError: a concrete ``max_rms <= 0``.

    Example:
        >>> tx = ft.optim.clip_by_block_rms(1.0)
        >>> g = {"big": jnp.asarray([3.0, -3.0]), "small": jnp.asarray([0.3, 0.4])}
        >>> u, _ = tx.update(g, tx.init(None))
        >>> u["big"].tolist(), [round(x, 4) for x in u["small"].tolist()]
        ([1.0, -1.0], [0.3, 0.4])
    """
    _validate.check_hyperparameter(max_rms, "clip_by_block_rms", "max_rms", low=0.0,
                                   low_open=True, schedule_ok=False)

    return _per_leaf(lambda g: jnp.sqrt(jnp.mean(abs_sq(g))), max_rms)


def _per_leaf(statistic: Callable[[Array], Array], bound: float | Array) -> GradientTransformation[EmptyState]:
    """Rescale each leaf ``g`` by ``1 / max(1, statistic(g) / bound)`` (block norm, block RMS)."""

    def clip(g: Array) -> Array:
        value = statistic(g)
        return g / jnp.maximum(1.0, value / like(bound, value))

    def update(
        updates: PyTree, state: EmptyState, params: PyTree | None = None, **extra_args: Any
    ) -> tuple[PyTree, EmptyState]:
        del params, extra_args
        return tree_map(clip, updates), state

    return GradientTransformation(init_empty_state, update)


def unitwise_norm(x: Array) -> Array:
    """L2 norm of each unit (output neuron / filter) of a parameter, broadcast to its shape.

    Scalars and vectors (after squeezing): the whole array; ``ndim`` 2 or 3 (dense ``(in, out)``):
    over axis 0; ``ndim`` 4 (conv HWIO): over axes 0-2; ``ndim`` 5 (conv3d DHWIO): over axes
    0-3. Same convention as ``optax.unitwise_norm``.

    Args:
        x: an array of ndim <= 5.

    Returns:
        An array of ``x``'s shape holding, at each entry, the norm of its unit.

    Raises:
        ValueError: ``x.ndim > 5`` (and not a squeezable vector).

    Example:
        >>> w = jnp.asarray([[3.0, 0.0], [4.0, 1.0]])  # dense (in, out): units are columns
        >>> ft.optim.unitwise_norm(w).tolist()
        [[5.0, 1.0], [5.0, 1.0]]
    """
    if jnp.squeeze(x).ndim <= 1:
        sq = jnp.sum(abs_sq(x), keepdims=True)
    elif x.ndim in (2, 3):
        sq = jnp.sum(abs_sq(x), axis=0, keepdims=True)
    elif x.ndim == 4:
        sq = jnp.sum(abs_sq(x), axis=(0, 1, 2), keepdims=True)
    elif x.ndim == 5:
        sq = jnp.sum(abs_sq(x), axis=(0, 1, 2, 3), keepdims=True)
    else:
        _validate.fail("unitwise_norm", "x", "an array with ndim <= 5", x)
    return jnp.broadcast_to(jnp.sqrt(sq), x.shape)


def adaptive_grad_clip(
    clipping: float | Array, eps: float = 1e-3
) -> GradientTransformation[EmptyState]:
    r"""Adaptive gradient clipping (AGC), unit-wise, as in NFNets.

    For each unit ``i`` (output neuron or filter, see :func:`unitwise_norm`):

    .. math::

        G_i \leftarrow G_i \ \text{if}\ \|G_i\| < \lambda \max(\|W_i\|, \epsilon),
        \quad\text{else}\quad
        G_i \leftarrow \lambda \frac{\max(\|W_i\|, \epsilon)}{\|G_i\|} G_i

    (Brock, De, Smith & Simonyan, "High-Performance Large-Scale Image Recognition Without
    Normalization", ICML 2021, eq. 3). Needs ``params`` in ``update``. Same as
    ``optax.adaptive_grad_clip``.

    Args:
        clipping: ``lambda > 0``, the largest allowed ratio of update norm to parameter norm.
        eps: ``epsilon >= 0``, so that zero-initialized units can still move.

    Returns:
        A :class:`~functrain.optim.GradientTransformation` with
        :class:`~functrain.optim.EmptyState`.

    Raises:
        TypeError: a hyperparameter of the wrong type; at update, ``params`` missing or of a
            different tree structure than the updates.
        ValueError: a concrete ``clipping <= 0`` or ``eps < 0``; a leaf with ndim > 5.

    Example:
        >>> tx = ft.optim.adaptive_grad_clip(0.1)
        >>> params = {"w": jnp.ones((4, 1))}  # one unit of norm 2: updates clipped to norm 0.2
        >>> u, _ = tx.update({"w": jnp.full((4, 1), 10.0)}, tx.init(params), params)
        >>> round(float(jnp.linalg.norm(u["w"])), 4)
        0.2
    """
    fn = "adaptive_grad_clip"
    _validate.check_hyperparameter(clipping, fn, "clipping", low=0.0, low_open=True,
                                   schedule_ok=False)
    _validate.check_hyperparameter(eps, fn, "eps", low=0.0, schedule_ok=False)

    def clip(g: Array, p: Array) -> Array:
        g_norm = unitwise_norm(g)
        max_norm = clipping * jnp.maximum(unitwise_norm(p), eps)
        clipped = g * (max_norm / jnp.maximum(g_norm, 1e-6))
        return jnp.where(g_norm < max_norm, g, clipped)

    def update(
        updates: PyTree, state: EmptyState, params: PyTree | None = None, **extra_args: Any
    ) -> tuple[PyTree, EmptyState]:
        del extra_args
        return tree_map(clip, updates, require_params(fn, updates, params)), state

    return GradientTransformation(init_empty_state, update)
