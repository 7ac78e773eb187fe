"""Gradient centralization: remove each output unit's mean gradient (Yong et al. 2020).

:func:`centralize` projects the gradient of every weight (a leaf with ``ndim >= 2``) onto the
hyperplane of zero-mean weight vectors, one per output unit; biases and normalization parameters
pass unchanged.
"""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp

from functrain import _validate
from functrain._tree import is_kernel, tree_map
from functrain.optim.base import EmptyState, GradientTransformation, init_empty_state
from functrain.typing import Array, PyTree

__all__ = ["centralize"]


def centralize(output_axis: int = -1) -> GradientTransformation[EmptyState]:
    r"""Gradient centralization: subtract from each output unit's gradient its mean.

    For a weight leaf ``W`` (floating, ``ndim >= 2``) and each output unit ``i`` (an index along
    ``output_axis``), with ``w_i`` the unit's weight vector (all the other axes, fan-in):

    .. math::

        \nabla_{w_i} \leftarrow \nabla_{w_i} - \operatorname{mean}(\nabla_{w_i})

    so the weight vectors' means stay where they started (a constraint on the weights that
    regularizes and smooths the loss; Yong et al., "Gradient Centralization: A New Optimization
    Technique for Deep Neural Networks", ECCV 2020). Other leaves (biases, normalization
    parameters) are unchanged. functrain's layouts put the output unit last (dense ``(in, out)``,
    conv HWIO), hence ``output_axis=-1``; ``optax.centralize`` assumes PyTorch's layouts
    (``(out, in)``, OIHW) and equals ``centralize(output_axis=0)``. Put it first in a chain, on
    the raw gradients.

    Args:
        output_axis: the axis of the output units in every weight leaf.

    Returns:
        A :class:`~functrain.optim.GradientTransformation` with
        :class:`~functrain.optim.EmptyState`.

    Raises:
        TypeError: ``output_axis`` is not an int.

    Example:
        >>> tx = ft.optim.centralize()
        >>> g = {"w": jnp.asarray([[1.0, 2.0], [3.0, 6.0]]), "b": jnp.asarray([1.0, 3.0])}
        >>> u, _ = tx.update(g, tx.init(g))  # dense (in, out): columns are units
        >>> u["w"].tolist(), u["b"].tolist()
        ([[-1.0, -2.0], [1.0, 2.0]], [1.0, 3.0])
    """
    axis = _validate.check_int(output_axis, "centralize", "output_axis")

    def centered(g: Array) -> Array:
        if not is_kernel(g):
            return g
        unit = axis % g.ndim
        return g - jnp.mean(g, axis=tuple(a for a in range(g.ndim) if a != unit), keepdims=True)

    def update(
        updates: PyTree, state: EmptyState, params: PyTree | None = None, **extra_args: Any
    ) -> tuple[PyTree, EmptyState]:
        del params, extra_args
        return tree_map(centered, updates), state

    return GradientTransformation(init_empty_state, update)
