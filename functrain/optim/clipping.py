"""Gradient clipping: by global norm, by value, per block (leaf) and adaptive (unit-wise).

All are stateless transformations (state :class:`~functrain.optim.EmptyState`), meant to come
first in a :func:`~functrain.optim.chain`, before the optimizer's rescaling.
"""

from __future__ import annotations

import jax.numpy as jnp

from functrain._tree import tree_global_norm, tree_map
from functrain.optim._hyper import check_params, check_scalar, like
from functrain.optim.base import EmptyState, GradientTransformation, init_empty_state
from functrain.typing import Array, PyTree

__all__ = [
    "adaptive_grad_clip",
    "clip_by_block_norm",
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
    """
    check_scalar("clip_by_global_norm", "max_norm", max_norm, low=0.0, low_open=True,
                 schedule_ok=False)

    def update(
        updates: PyTree, state: EmptyState, params: PyTree | None = None
    ) -> tuple[PyTree, EmptyState]:
        del params
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
      TypeError: a bound is not a number or scalar array.
      ValueError: no bound, ``max_delta`` together with ``min_value``/``max_value``, a concrete
        ``max_delta <= 0``, or concrete ``min_value > max_value``.
    """
    fn = "clip_by_value"
    if max_delta is not None:
        if min_value is not None or max_value is not None:
            raise ValueError(
                f"{fn}: expected either max_delta or min_value/max_value, got both "
                f"(max_delta={max_delta!r}, min_value={min_value!r}, max_value={max_value!r})"
            )
        check_scalar(fn, "max_delta", max_delta, low=0.0, low_open=True, schedule_ok=False)
        lo: float | Array | None = -max_delta
        hi: float | Array | None = max_delta
    else:
        if min_value is None and max_value is None:
            raise ValueError(f"{fn}: expected max_delta, min_value or max_value, got none of them")
        if min_value is not None:
            check_scalar(fn, "min_value", min_value, schedule_ok=False)
        if max_value is not None:
            check_scalar(fn, "max_value", max_value, schedule_ok=False)
            if min_value is not None:
                check_scalar(fn, "max_value", max_value, low=_concrete_or(min_value, None),
                             schedule_ok=False)
        lo, hi = min_value, max_value

    def update(
        updates: PyTree, state: EmptyState, params: PyTree | None = None
    ) -> tuple[PyTree, EmptyState]:
        del params
        return tree_map(lambda g: jnp.clip(g, lo, hi), updates), state

    return GradientTransformation(init_empty_state, update)


def _concrete_or(value: float | Array, default: float | None) -> float | None:
    """``float(value)`` for a Python number, else ``default`` (arrays may be traced)."""
    return float(value) if isinstance(value, (int, float)) else default


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
    """
    check_scalar("clip_by_block_norm", "max_norm", max_norm, low=0.0, low_open=True,
                 schedule_ok=False)

    def clip(g: Array) -> Array:
        norm = jnp.sqrt(jnp.sum(g**2))
        return g / jnp.maximum(1.0, norm / like(max_norm, norm))

    def update(
        updates: PyTree, state: EmptyState, params: PyTree | None = None
    ) -> tuple[PyTree, EmptyState]:
        del params
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
    """
    if jnp.squeeze(x).ndim <= 1:
        sq = jnp.sum(x**2, keepdims=True)
    elif x.ndim in (2, 3):
        sq = jnp.sum(x**2, axis=0, keepdims=True)
    elif x.ndim == 4:
        sq = jnp.sum(x**2, axis=(0, 1, 2), keepdims=True)
    elif x.ndim == 5:
        sq = jnp.sum(x**2, axis=(0, 1, 2, 3), keepdims=True)
    else:
        raise ValueError(
            f"unitwise_norm: expected an array with ndim in 1..5, got shape {x.shape}"
        )
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
    """
    fn = "adaptive_grad_clip"
    check_scalar(fn, "clipping", clipping, low=0.0, low_open=True, schedule_ok=False)
    check_scalar(fn, "eps", eps, low=0.0, schedule_ok=False)

    def clip(g: Array, p: Array) -> Array:
        g_norm = unitwise_norm(g)
        max_norm = clipping * jnp.maximum(unitwise_norm(p), eps)
        clipped = g * (max_norm / jnp.maximum(g_norm, 1e-6))
        return jnp.where(g_norm < max_norm, g, clipped)

    def update(
        updates: PyTree, state: EmptyState, params: PyTree | None = None
    ) -> tuple[PyTree, EmptyState]:
        return tree_map(clip, updates, check_params(fn, updates, params)), state

    return GradientTransformation(init_empty_state, update)
