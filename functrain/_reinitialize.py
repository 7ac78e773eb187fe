"""Re-initialize the weights and biases of any pytree (re-exported by :mod:`functrain.initializers`).

:func:`reinitialize` walks a pytree -- dicts, NamedTuples, functrain layer parameters, equinox
modules -- and re-draws each leaf that the weight rule selects with an initializer (and re-sets each
bias). It lives apart from the initializers themselves (the distributions) because it is a tree
operation with its own concerns: equinox's ``(out, in)`` / ``(out, in, *spatial)`` kernel layouts,
whose fans differ from functrain's ``(in, out)`` / HWIO, and normalization layers, whose 1-d scales
are not biases (they are reset to ones, not zeros). Layer types are recognized through
``sys.modules`` (a tree can only hold them once their module is imported), so this module imports
neither :mod:`functrain.layers` (that would point the imports upward) nor equinox.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from functrain import _tree, _validate
from functrain.typing import Array, DTypeLike, Initializer, PRNGKey, PyTree

__all__ = ["default_is_bias", "default_is_weight", "reinitialize"]


def _zeros(key: PRNGKey, shape: Any, dtype: DTypeLike = jnp.float32) -> Array:
    """The default bias initializer (``initializers.zeros()``, without importing it)."""
    del key
    return jnp.zeros(tuple(shape), dtype)


def default_is_weight(leaf: Any) -> bool:
    """Default weight rule for :func:`reinitialize`: a floating/complex array with ``ndim >= 2``.

    The library's one kernel rule (:func:`functrain._tree.is_kernel`): dense kernels and HWIO conv
    kernels qualify; biases, normalization scales and scalars do not.

    Example:
        >>> ft.initializers.default_is_weight(jnp.ones((3, 4))), ft.initializers.default_is_weight(jnp.ones(4))
        (True, False)
    """
    return _tree.is_kernel(leaf)


def default_is_bias(leaf: Any) -> bool:
    """Default bias rule for :func:`reinitialize`: a floating/complex array with ``ndim == 1``.

    :func:`reinitialize` applies it outside normalization layers only: their scales (1-d too)
    are recognized by type and reset to ones.

    Example:
        >>> ft.initializers.default_is_bias(jnp.ones(4)), ft.initializers.default_is_bias(jnp.ones(4, int))
        (True, False)
    """
    return _tree.is_vector(leaf)


def _equinox_types(*names: str) -> tuple[type, ...]:
    """The ``eqx.nn`` classes ``names`` if equinox is already imported (a tree can only hold
    equinox modules then), else ``()``; keeps ``import functrain`` from importing equinox."""
    eqx = sys.modules.get("equinox")
    if eqx is None:
        return ()
    return tuple(getattr(eqx.nn, name) for name in names if hasattr(eqx.nn, name))


def _functrain_types(module: str, *names: str) -> tuple[type, ...]:
    """Classes of a functrain layers module, without importing it (the imports point upward)."""
    mod = sys.modules.get(module)
    return () if mod is None else tuple(getattr(mod, name) for name in names)


def _reinitialize_equinox_layer(layer: Any, key: PRNGKey, weight_init: Initializer,
                                bias_init: Initializer, is_weight: Callable[[Any], bool],
                                is_bias: Callable[[Any], bool]) -> Any:
    """Re-draw an ``eqx.nn.Linear`` / ``eqx.nn.Conv`` in functrain's layout, then transpose.

    Equinox stores a linear weight as ``(out, in)`` and a conv kernel as ``(out, in, *spatial)``;
    drawing those shapes directly would swap the fans. The kernel is drawn as ``(in, out)`` /
    HWIO ``(*spatial, in, out)`` (so :func:`compute_fans` sees the right fans) and transposed.
    """
    w_key, b_key = jax.random.split(key)
    weight = layer.weight
    if is_weight(weight):
        n_spatial = weight.ndim - 2
        drawn_shape = (*weight.shape[2:], weight.shape[1], weight.shape[0])
        drawn = weight_init(w_key, drawn_shape, weight.dtype)
        new_weight = jnp.transpose(drawn, (n_spatial + 1, n_spatial, *range(n_spatial)))
        layer = _replace_field(layer, "weight", new_weight)
    bias = layer.bias
    if bias is not None and is_bias(jnp.ravel(bias)):
        layer = _replace_field(layer, "bias", bias_init(b_key, bias.shape, bias.dtype))
    return layer


def _replace_field(layer: Any, field: str, value: Array) -> Any:
    """``eqx.tree_at`` replacing the array ``layer.<field>`` by ``value``."""
    import equinox as eqx

    def where(module: Any) -> Any:
        return getattr(module, field)

    # equinox annotates tree_at with jaxtyping's PyTree, which pyright resolves to Unknown.
    return eqx.tree_at(where, layer, value)  # pyright: ignore[reportUnknownMemberType]


def _reset_equinox_norm(layer: Any) -> Any:
    """An equinox normalization layer with ``weight = 1`` and ``bias = 0`` (its initial values;
    ``None`` fields, and the running statistics of ``eqx.nn.BatchNorm``, are kept)."""
    if getattr(layer, "weight", None) is not None:
        layer = _replace_field(layer, "weight", jnp.ones_like(layer.weight))
    if getattr(layer, "bias", None) is not None:
        layer = _replace_field(layer, "bias", jnp.zeros_like(layer.bias))
    return layer


def _reset_functrain_norm(record: Any) -> Any:
    """A functrain normalization record at its initial values: ``scale = 1, bias = 0``
    (``BatchNormParams``, ``LayerNormParams``), running ``mean = 0, var = 1`` (``BatchNormState``)."""
    if hasattr(record, "scale"):
        return record._replace(scale=jnp.ones_like(record.scale), bias=jnp.zeros_like(record.bias))
    return record._replace(mean=jnp.zeros_like(record.mean), var=jnp.ones_like(record.var))


def _reinitialize_weight_norm(record: Any, key: PRNGKey, position: int, weight_init: Initializer,
                              bias_init: Initializer, is_weight: Callable[[Any], bool],
                              is_bias: Callable[[Any], bool]) -> Any:
    """``WeightNormParams(v, g, b)``: ``v`` re-drawn, ``g = ||v||`` per output unit (the kernel
    ``g v / ||v||`` then equals ``v``, as ``init_weight_norm`` sets it), ``b`` re-set. The keys
    are those the leaves would get on their own (``fold_in(key, position)`` for ``v``,
    ``position + 2`` for ``b``)."""
    v, g, b = record
    if is_weight(v):
        v = weight_init(jax.random.fold_in(key, position), v.shape, v.dtype)
        g = jnp.sqrt(jnp.sum(jnp.square(v), axis=tuple(range(v.ndim - 1)))).astype(g.dtype)
    if is_bias(b):
        b = bias_init(jax.random.fold_in(key, position + 2), b.shape, b.dtype)
    return type(record)(v, g, b)


def reinitialize(
    tree: PyTree,
    key: PRNGKey,
    *,
    weight_init: Initializer,
    bias_init: Initializer | None = None,
    is_weight: Callable[[Any], bool] = default_is_weight,
    is_bias: Callable[[Any], bool] = default_is_bias,
) -> PyTree:
    """Return a copy of ``tree`` with every weight re-drawn and every bias re-set.

    Works on any pytree: dicts, NamedTuples, functrain layer parameters and ``equinox.Module`` s
    (``eqx.nn.MLP`` ...). A leaf for which ``is_weight`` holds is replaced by
    ``weight_init(k, leaf.shape, leaf.dtype)``; a leaf for which ``is_bias`` holds by
    ``bias_init(k, ...)``; every other leaf (integer arrays, scalars, functions, Python values) is kept
    as it is. Each leaf gets its own key, ``fold_in(key, leaf_position)``, so equal shapes still get
    independent draws and the result is a deterministic function of ``key``.

    Fans assume functrain's layouts, dense ``(in, out)`` and conv HWIO. Equinox's ``eqx.nn.Linear``
    (``(out, in)``) and ``eqx.nn.Conv`` (``(out, in, *spatial)``, bias ``(out, 1, ...)``) layers are
    recognized and handled as units: the kernel is drawn in functrain's layout and transposed, so
    ``he_normal`` gives ``N(0, 2/n_in)`` there too, and the bias is re-set (when ``is_bias`` holds
    for it flattened). For other layouts pass a custom ``weight_init``.

    Normalization layers are recognized by type and reset to their initial values, whatever the
    rules say: their 1-d scales are not biases, and zeroing them (as the default bias rule would)
    makes every normalized unit output its offset, the same for every input. functrain's
    ``BatchNormParams`` and ``LayerNormParams`` get ``scale = 1, bias = 0`` and ``BatchNormState``
    its initial running statistics ``mean = 0, var = 1``; equinox's ``eqx.nn.LayerNorm``,
    ``BatchNorm``, ``GroupNorm`` and ``RMSNorm`` get ``weight = 1, bias = 0`` (the running
    statistics of ``eqx.nn.BatchNorm`` live in its ``eqx.nn.State``, not touched). In
    ``WeightNormParams(v, g, b)`` the direction ``v`` is re-drawn (if ``is_weight`` holds), the
    length set to ``g = ||v||`` per output unit, so the kernel ``g v / ||v||`` equals ``v`` as
    ``init_weight_norm`` sets it, and ``b`` re-set (if ``is_bias`` holds).

    Args:
        tree: the parameters.
        key: PRNG key.
        weight_init: initializer for weights.
        bias_init: initializer for biases; defaults to :func:`zeros`.
        is_weight: predicate selecting weights (default: floating or complex arrays with ``ndim >= 2``).
        is_bias: predicate selecting biases (default: floating or complex arrays with ``ndim == 1``
            outside the normalization layers above).

    Returns:
        A pytree with ``tree``'s structure.

    Raises:
        TypeError: an initializer or a rule is not callable.

    Example:
        >>> params = {"w": jnp.zeros((64, 32)), "b": jnp.ones(32), "step": jnp.array(3)}
        >>> new = ft.initializers.reinitialize(params, jax.random.key(0),
        ...                                    weight_init=ft.initializers.he_normal())
        >>> round(float(new["w"].var() * 64 / 2), 1), float(new["b"].sum()), int(new["step"])
        (1.0, 0.0, 3)
        >>> model = ft.layers.serial(ft.layers.Dense(4), ft.layers.BatchNorm())
        >>> params, _, _ = model.init(jax.random.key(0), (-1, 3))
        >>> new = ft.initializers.reinitialize(params, jax.random.key(1),
        ...                                    weight_init=ft.initializers.he_normal())
        >>> new[1].scale.tolist(), new[1].bias.tolist()  # normalization: ones and zeros
        ([1.0, 1.0, 1.0, 1.0], [0.0, 0.0, 0.0, 0.0])
    """
    who = "reinitialize"
    _validate.check_callable(weight_init, who, "weight_init", "an initializer (e.g. he_normal())")
    if bias_init is not None:
        _validate.check_callable(bias_init, who, "bias_init", "an initializer (e.g. zeros())")
    _validate.check_callable(is_weight, who, "is_weight", "a predicate of a leaf")
    _validate.check_callable(is_bias, who, "is_bias", "a predicate of a leaf")
    b_init: Initializer = _zeros if bias_init is None else bias_init
    eqx_layers = _equinox_types("Linear", "Conv")
    eqx_norms = _equinox_types("LayerNorm", "GroupNorm", "BatchNorm", "RMSNorm")
    norms = _functrain_types("functrain.layers.normalization", "BatchNormParams",
                             "LayerNormParams", "BatchNormState")
    weight_norms = _functrain_types("functrain.layers.weight_norm", "WeightNormParams")
    units = eqx_layers + eqx_norms + norms + weight_norms
    leaves, treedef = _tree.tree_flatten(
        tree, is_leaf=(lambda x: isinstance(x, units)) if units else None)
    out: list[Any] = []
    position = 0  # the leaf's position in the plain flattening (an eqx Linear/Conv counts once)
    for leaf in leaves:
        k = jax.random.fold_in(key, position)
        if isinstance(leaf, eqx_layers):
            out.append(_reinitialize_equinox_layer(leaf, k, weight_init, b_init, is_weight, is_bias))
        elif isinstance(leaf, eqx_norms):
            out.append(_reset_equinox_norm(leaf))
        elif isinstance(leaf, norms):
            out.append(_reset_functrain_norm(leaf))
        elif isinstance(leaf, weight_norms):
            out.append(_reinitialize_weight_norm(leaf, key, position, weight_init, b_init,
                                                 is_weight, is_bias))
        elif is_weight(leaf):
            out.append(weight_init(k, leaf.shape, leaf.dtype))
        elif is_bias(leaf):
            out.append(b_init(k, leaf.shape, leaf.dtype))
        else:
            out.append(leaf)
        position += 1 if isinstance(leaf, eqx_layers) else len(jax.tree_util.tree_leaves(leaf))
    return _tree.tree_unflatten(treedef, out)
