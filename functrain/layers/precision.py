"""Parameter dtypes and mixed precision: float32 master parameters, a bfloat16 forward pass.

Every layer constructor and ``init_*`` function takes ``dtype=`` (default float32): the dtype its
parameters are created in (``float64`` needs ``jax.enable_x64``; ``bfloat16`` and ``float16``
train end to end). Batch-norm running statistics are kept in at least float32.

Mixed precision (Micikevicius et al., "Mixed Precision Training", ICLR 2018; the param/compute/
output policy of DeepMind's jmp and of flax's ``param_dtype``/``dtype``) keeps the *master*
parameters in float32 and runs the forward and backward passes in a low-precision compute dtype:
:func:`mixed_precision` wraps a model so that ``apply`` casts the floating parameters and inputs to
``compute_dtype``, runs the model, and casts the output back to ``output_dtype`` (float32), so the
loss is computed in float32. The cast is differentiable and its transpose casts back, so the
gradients, the optimizer state and the updates stay float32: small updates are not rounded away
in bfloat16's 8-bit mantissa. bfloat16 has float32's exponent range and needs no loss scaling;
float16 (5 exponent bits) does, which this wrapper does not do: prefer bfloat16.

Shared within :mod:`functrain.layers` (not exported): :func:`check_dtype`, the one check of a
``dtype`` argument, and :func:`check_init_args` (initializers and ``dtype`` of a constructor).
"""

from __future__ import annotations

from typing import Any, TypeVar, cast

import jax
import jax.numpy as jnp

from functrain import _tree, _validate
from functrain.layers.base import Layer
from functrain.typing import Array, DType, DTypeLike, PRNGKey, PyTree

P = TypeVar("P")
M = TypeVar("M")

__all__ = ["mixed_precision"]

_EXPECTATION = "a floating dtype (e.g. jnp.float32, jnp.bfloat16)"
_INIT_EXAMPLES = {"scale_init": "ones", "b_init": "zeros", "bias_init": "zeros"}  # else he_normal


def check_dtype(dtype: object, who: str, name: str = "dtype", *, available: bool = True) -> DType:
    """``dtype`` as a floating :class:`numpy.dtype`, else an argument error naming ``name``.

    With ``available`` (when arrays are created: the ``init_*`` functions, a layer's ``init``),
    the dtype must also be one JAX can hold now: ``float64`` without ``jax.enable_x64`` would be
    silently created as float32, so it is refused with a hint.
    """
    if dtype is None or isinstance(dtype, bool):
        _validate.fail(who, name, _EXPECTATION, dtype, error=TypeError)
    try:
        dt: DType = jnp.dtype(cast(DTypeLike, dtype))  # anything else: jnp.dtype raises TypeError
    except TypeError:
        _validate.fail(who, name, _EXPECTATION, dtype, error=TypeError)
    if not jnp.issubdtype(dt, jnp.floating):
        _validate.fail(who, name, _EXPECTATION, dt.name)
    if available and jax.dtypes.canonicalize_dtype(dt) != dt:
        _validate.fail(who, name, "a dtype JAX can hold now (float64 needs jax.enable_x64(True) "
                       "or the jax_enable_x64 flag)", dt.name)
    return dt


def check_init_args(who: str, dtype: object, *, available: bool = True, **initializers: object) -> DType:
    """Check a constructor's initializers (callables, in the order given) and its ``dtype``;
    return the dtype (see :func:`check_dtype` for ``available``)."""
    for name, init in initializers.items():
        example = _INIT_EXAMPLES.get(name, "he_normal")
        _validate.check_callable(init, who, name, f"an initializer (e.g. initializers.{example}())")
    return check_dtype(dtype, who, available=available)


def _cast(tree: PyTree, dtype: DType) -> PyTree:
    """Floating leaves of ``tree`` cast to ``dtype``; other leaves (ints, keys) unchanged."""

    def to(leaf: Any) -> Any:
        return jnp.asarray(leaf).astype(dtype) if _tree.is_float_array(leaf) else leaf

    return _tree.tree_map(to, tree)


def _like(new: PyTree, old: PyTree) -> PyTree:
    """``new`` with each floating leaf cast back to the dtype of ``old``'s (the state's carry)."""
    if _tree.tree_structure(new) != _tree.tree_structure(old):
        return new

    def back(n: Any, o: Any) -> Any:
        return n.astype(o.dtype) if _tree.is_float_array(n) and _tree.is_float_array(o) else n

    return _tree.tree_map(back, new, old)


def mixed_precision(layer: Layer[P, M], compute_dtype: DTypeLike = jnp.bfloat16, *,
                    output_dtype: DTypeLike | None = jnp.float32) -> Layer[P, M]:
    """Run ``layer`` in ``compute_dtype`` with parameters kept in their own (master) dtype.

    ``init`` is ``layer.init`` (build the parameters in float32, the default). ``apply(params,
    state, x)`` casts the floating leaves of ``params`` and a floating ``x`` to ``compute_dtype``,
    runs ``layer.apply``, casts a floating output to ``output_dtype`` and the new state back to the
    dtypes of the state given (batch-norm statistics stay float32; normalization layers compute
    their statistics in float32 anyway). Gradients with respect to the master parameters have the
    master dtype, because the transpose of a cast is the cast back. See the module docstring for
    the recipe and why bfloat16 needs no loss scaling.

    Args:
        layer: the model (a :class:`~functrain.layers.Layer`, e.g. a ``serial(...)``).
        compute_dtype: the dtype of the forward pass; default ``bfloat16``.
        output_dtype: the dtype of the output, so the loss is computed in it; default float32;
            ``None`` keeps ``compute_dtype``.

    Returns:
        The wrapped layer, with the same ``init`` and parameter structure.

    Raises:
        TypeError: ``layer`` is not a Layer, or a dtype that is not a dtype.
        ValueError: a dtype that is not floating.

    Example:
        >>> model = ft.layers.mixed_precision(ft.serial(ft.layers.Dense(8), ft.layers.Relu,
        ...                                             ft.layers.Dense(3)), jnp.bfloat16)
        >>> params, state, _ = model.init(jax.random.key(0), (-1, 4))
        >>> params[0].w.dtype  # the master copy
        dtype('float32')
        >>> logits, _ = model.apply(params, state, jnp.ones((2, 4)), train=False)
        >>> logits.dtype  # computed in bfloat16, returned in float32
        dtype('float32')
        >>> loss_fn = ft.train.classifier_loss(model.apply, train=True)
        >>> grads = jax.grad(lambda p: loss_fn(p, state, (jnp.ones((2, 4)), jnp.array([0, 2])), None)[0])(params)
        >>> grads[0].w.dtype
        dtype('float32')
    """
    who = "mixed_precision"
    if not isinstance(cast(object, layer), Layer):  # the static type is not enforced
        _validate.fail(who, "layer", "a Layer (e.g. serial(Dense(10), Relu))", layer, error=TypeError)
    compute = check_dtype(compute_dtype, who, "compute_dtype", available=False)
    output = None if output_dtype is None else check_dtype(output_dtype, who, "output_dtype", available=False)

    def apply(params: P, state: M, x: Array, *, key: PRNGKey | None = None,
              train: bool) -> tuple[Array, M]:
        y, new_state = layer.apply(_cast(params, compute), state, _cast(x, compute), key=key, train=train)
        return (y if output is None else _cast(y, output)), _like(new_state, state)

    return Layer(layer.init, apply)
