"""Typed signatures for the few JAX transformations that pyright sees as partially Unknown.

``jax.jit``, ``jax.value_and_grad``, ``jax.vjp``, ``jax.eval_shape``, ``jax.device_put``,
``lax.map`` and ``lax.reduce_window`` annotate their function or value arguments as a bare
``Callable`` or leave them unannotated, so ``pyright --strict`` reports every use. Each wrapper
here calls the JAX function unchanged (same object returned, same behavior) and is the one place
that boundary is crossed; everything else in functrain calls these.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, ParamSpec, TypeVar, cast

import functools

import jax
from jax import lax

from functrain._validate import is_traced
from functrain.typing import Array, ArrayLike, DTypeLike, PyTree

__all__ = ["TRAINING_COMPILER_OPTIONS", "broadcasted_iota", "compile_ahead", "cond", "custom_jvp",
           "device_put", "dot_general", "eval_shape", "jit", "jit_training", "lax_map", "optimization_barrier",
           "platform_dependent", "reduce_window", "value_and_grad", "vjp"]

P = ParamSpec("P")
R = TypeVar("R")
X = TypeVar("X")


def jit(fn: Callable[P, R], **options: Any) -> Callable[P, R]:
    """``jax.jit(fn, **options)`` (``static_argnums``, ``donate_argnums``, shardings ...)."""
    return jax.jit(fn, **options)  # pyright: ignore[reportUnknownMemberType]  # fun: bare Callable


TRAINING_COMPILER_OPTIONS: dict[str, Any] = {
    # XLA:CPU's copy insertion, without region analysis, copies a loop-carried parameter that is
    # read by the backward pass and updated in place by the optimizer in the same iteration
    # (every hidden layer's kernel, once per step). Region analysis proves the copy unnecessary.
    # Numerics unchanged; ignored by the other backends. See ``functrain.train.compiler_options``.
    "xla_cpu_copy_insertion_use_region_analysis": True,
}
"""XLA options of the programs functrain compiles itself (epochs, runs, seeds, sweeps)."""


def jit_training(fn: Callable[P, R], **options: Any) -> Callable[P, R]:
    """:func:`jit` with :data:`TRAINING_COMPILER_OPTIONS` (a training program functrain compiles).

    Compiler options are only allowed on a top-level ``jax.jit``: called under a trace (inside
    a user's ``jit``, ``vmap`` or ``scan``), the function is the plain :func:`jit` and inlines.
    """
    top_level = jit(fn, compiler_options=dict(TRAINING_COMPILER_OPTIONS), **options)
    nested = jit(fn, **options)

    @functools.wraps(fn)
    def call(*args: P.args, **kwargs: P.kwargs) -> R:
        traced = any(is_traced(leaf) for leaf in jax.tree_util.tree_leaves((args, kwargs)))
        return (nested if traced else top_level)(*args, **kwargs)

    return call


def compile_ahead(fn: Callable[..., Any], *args: Any, compiler_options: dict[str, Any] | None = None,
                  ) -> tuple[Callable[..., Any], PyTree]:
    """``jax.jit(fn).lower(*args)``, compiled with :data:`TRAINING_COMPILER_OPTIONS` updated by
    ``compiler_options``: the compiled program and the lowered ``out_info`` (a tree of
    ``jax.ShapeDtypeStruct``)."""
    lowered = jax.jit(fn).lower(*args)  # pyright: ignore[reportUnknownMemberType]  # fun: bare Callable
    compiled = lowered.compile(  # pyright: ignore[reportUnknownMemberType]  # device_assignment: Unknown
        compiler_options={**TRAINING_COMPILER_OPTIONS, **(compiler_options or {})})
    return compiled, lowered.out_info


def value_and_grad(fn: Callable[..., Any], *, has_aux: bool = False,
                   argnums: int | Sequence[int] = 0) -> Callable[..., tuple[Any, Any]]:
    """``jax.value_and_grad(fn, argnums=argnums, has_aux=has_aux)``."""
    return jax.value_and_grad(  # pyright: ignore[reportUnknownMemberType]  # fun: bare Callable
        fn, argnums=argnums, has_aux=has_aux)


def vjp(fn: Callable[..., Any], *primals: Any) -> tuple[Any, Callable[..., tuple[Any, ...]]]:
    """``jax.vjp(fn, *primals)``: ``(fn(*primals), vjp_fn)``."""
    return cast("tuple[Any, Callable[..., tuple[Any, ...]]]",
                jax.vjp(fn, *primals))  # pyright: ignore[reportUnknownMemberType]  # fun: bare Callable


def eval_shape(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> PyTree:
    """``jax.eval_shape``: the tree of ``jax.ShapeDtypeStruct`` that ``fn(*args, **kwargs)`` returns."""
    return jax.eval_shape(fn, *args, **kwargs)  # pyright: ignore[reportUnknownMemberType]  # fun: bare Callable


def device_put(tree: PyTree, placement: Any) -> PyTree:
    """``jax.device_put(tree, placement)`` (a device or a sharding)."""
    return jax.device_put(tree, placement)  # pyright: ignore[reportUnknownMemberType]  # x: unannotated


def lax_map(fn: Callable[[X], R], xs: X, *, batch_size: int | None = None) -> R:
    """``lax.map(fn, xs, batch_size=batch_size)``: ``fn`` over the leading axis of ``xs``."""
    return cast(R, lax.map(fn, xs, batch_size=batch_size))  # pyright: ignore[reportUnknownMemberType]  # f: unannotated


def cond(pred: Array | bool, true_fun: Callable[..., R], false_fun: Callable[..., R],
         *operands: Any) -> R:
    """``lax.cond(pred, true_fun, false_fun, *operands)``."""
    return cast(R, lax.cond(  # pyright: ignore[reportUnknownMemberType]  # pred, operands: Unknown
        pred, true_fun, false_fun, *operands))


def custom_jvp(*, nondiff_argnums: tuple[int, ...]) -> Callable[[Callable[..., R]], jax.custom_jvp[R]]:
    """``functools.partial(jax.custom_jvp, nondiff_argnums=...)``, a decorator keeping ``fn``'s
    return type (``custom_jvp[R]``; the plain partial is ``custom_jvp[Unknown]``)."""
    return functools.partial(jax.custom_jvp, nondiff_argnums=nondiff_argnums)


def platform_dependent(*args: Array, cpu: Callable[..., R], default: Callable[..., R]) -> R:
    """``lax.platform_dependent(*args, cpu=cpu, default=default)``."""
    return cast(R, lax.platform_dependent(*args, cpu=cpu, default=default))  # returns Unknown | Any


def dot_general(lhs: Array, rhs: Array,
                dimension_numbers: tuple[tuple[Sequence[int], Sequence[int]],
                                         tuple[Sequence[int], Sequence[int]]]) -> Array:
    """``lax.dot_general(lhs, rhs, dimension_numbers)``."""
    return lax.dot_general(  # pyright: ignore[reportUnknownMemberType]  # precision: Unknown
        lhs, rhs, dimension_numbers)


def optimization_barrier(x: Array) -> Array:
    """``lax.optimization_barrier(x)`` on one array."""
    y: Array = lax.optimization_barrier(x)  # type: ignore[no-untyped-call]  # unannotated in jax
    return y


def broadcasted_iota(dtype: DTypeLike, shape: Sequence[int], dimension: int) -> Array:
    """``lax.broadcasted_iota(dtype, shape, dimension)``."""
    return lax.broadcasted_iota(  # pyright: ignore[reportUnknownMemberType]  # sharding: Unknown
        dtype, shape, dimension)


def reduce_window(x: Array, init: ArrayLike, op: Callable[[Array, Array], Array],
                  window: Sequence[int], strides: Sequence[int],
                  padding: str | Sequence[tuple[int, int]]) -> Array:
    """``lax.reduce_window(x, init, op, window, strides, padding)`` on one array."""
    y: Array = lax.reduce_window(  # pyright: ignore[reportUnknownMemberType]  # computation: bare Callable
        x, init, op, window, strides, padding)
    return y
