"""Typed signatures for the JAX calls that pyright sees as partially Unknown, for the tests.

``jax.jit``, ``jax.eval_shape``, ``jax.grad``, ``jax.value_and_grad``, ``jax.make_jaxpr``, ``jax.vjp``,
``jax.jvp`` and ``lax.reduce_window`` annotate their function argument as a bare ``Callable``, so
``pyright --strict`` reports every use (and what ``jax.jit(f)(...)`` returns is Unknown). Each
wrapper calls the JAX function unchanged; the tests that are ``pyright --strict`` clean call these.
``lower`` is ``jax.jit(fn).lower(...)`` (the typed ``jit`` keeps only the call signature);
``devices``, ``jaxprs_in_params`` and the ``eqx_*`` functions (equinox imported when first used)
cover the other partly unannotated calls the tests make.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any, Concatenate, ParamSpec, TypeVar, cast

import jax
import jax.extend.core as jax_core
import jax.numpy as jnp

P = ParamSpec("P")
R = TypeVar("R")


def jit(fn: Callable[P, R], **options: Any) -> Callable[P, R]:
    """``jax.jit(fn, **options)`` with ``fn``'s signature."""
    return jax.jit(fn, **options)  # pyright: ignore[reportUnknownMemberType]  # fun: a bare Callable


def eval_shape(fn: Callable[..., Any], *args: Any) -> Any:
    """``jax.eval_shape(fn, *args)``: the tree of ``jax.ShapeDtypeStruct`` that ``fn`` returns."""
    return jax.eval_shape(fn, *args)  # pyright: ignore[reportUnknownMemberType]  # fun: a bare Callable


# ``grad``, ``value_and_grad`` and ``vmap`` take ``lambda``s in many tests: the first parameter of
# ``fn`` is typed ``Any`` (so a one-parameter lambda's parameter is not Unknown; a lambda of more
# parameters is a typed ``def`` instead), the others keep ``fn``'s own types.
Argnums = int | tuple[int, ...]


def grad(fn: Callable[Concatenate[Any, P], Any], argnums: Argnums = 0, *, has_aux: bool = False,
         **options: Any) -> Callable[Concatenate[Any, P], Any]:
    """``jax.grad(fn, argnums=argnums, has_aux=has_aux, **options)``."""
    return jax.grad(  # pyright: ignore[reportUnknownMemberType, reportUnknownVariableType]  # fun: a bare Callable
        fn, argnums=argnums, has_aux=has_aux, **options)


def value_and_grad(fn: Callable[Concatenate[Any, P], Any], argnums: Argnums = 0, *, has_aux: bool = False,
                   **options: Any) -> Callable[Concatenate[Any, P], tuple[Any, Any]]:
    """``jax.value_and_grad(fn, argnums=argnums, has_aux=has_aux, **options)``."""
    return jax.value_and_grad(  # pyright: ignore[reportUnknownMemberType, reportUnknownVariableType]  # fun: a bare Callable
        fn, argnums=argnums, has_aux=has_aux, **options)


def vmap(fn: Callable[Concatenate[Any, P], Any], in_axes: Any = 0, out_axes: Any = 0,
         **options: Any) -> Callable[Concatenate[Any, P], Any]:
    """``jax.vmap(fn, in_axes=in_axes, out_axes=out_axes, **options)`` (``axis_name`` ...)."""
    return jax.vmap(fn, in_axes=in_axes, out_axes=out_axes, **options)


def lower(fn: Callable[Concatenate[Any, P], Any], *args: Any, **options: Any) -> Any:
    """``jax.jit(fn, **options).lower(*args)``: the ``Lowered`` program (``.as_text()``, ``.compile()``)."""
    return jax.jit(fn, **options).lower(*args)  # pyright: ignore[reportUnknownMemberType]  # fun: a bare Callable


def make_jaxpr(fn: Callable[..., Any], **options: Any) -> Callable[..., Any]:
    """``jax.make_jaxpr(fn, **options)``: calling it returns the ``ClosedJaxpr``."""
    return jax.make_jaxpr(fn, **options)  # pyright: ignore[reportUnknownMemberType, reportUnknownVariableType]  # fun: a bare Callable


def jvp(fn: Callable[..., Any], primals: tuple[Any, ...], tangents: tuple[Any, ...]) -> tuple[Any, Any]:
    """``jax.jvp(fn, primals, tangents)``: ``(fn(*primals), tangent out)``."""
    return jax.jvp(fn, primals, tangents)  # pyright: ignore[reportUnknownMemberType, reportUnknownVariableType]  # fun: a bare Callable


def hessian(fn: Callable[..., Any], argnums: Argnums = 0) -> Callable[..., Any]:
    """``jax.hessian(fn, argnums=argnums)``."""
    return jax.hessian(fn, argnums=argnums)  # pyright: ignore[reportUnknownMemberType, reportUnknownVariableType]  # fun: a bare Callable


def devices(backend: str | None = None) -> list[Any]:
    """``jax.devices(backend)`` (a list of ``jax.Device``, a name pyright does not see as a class)."""
    return cast("list[Any]", jax.devices(backend))  # pyright: ignore[reportUnknownMemberType]  # list[Device]


def norm(x: Any, ord: int | str | None = None, axis: int | tuple[int, ...] | None = None) -> jax.Array:
    """``jnp.linalg.norm(x, ord, axis)`` (pyright sees the jitted function's result as Unknown)."""
    return cast(jax.Array, jnp.linalg.norm(x, ord, axis))


def vjp(fn: Callable[..., Any], *primals: Any) -> tuple[Any, Callable[..., tuple[Any, ...]]]:
    """``jax.vjp(fn, *primals)``: ``(fn(*primals), vjp_fn)``."""
    return cast("tuple[Any, Callable[..., tuple[Any, ...]]]",
                jax.vjp(fn, *primals))  # pyright: ignore[reportUnknownMemberType]  # fun: a bare Callable


def reduce_window(x: jax.Array, init: Any, op: Callable[[jax.Array, jax.Array], jax.Array],
                  window: Sequence[int], strides: Sequence[int],
                  padding: str | Sequence[tuple[int, int]]) -> jax.Array:
    """``lax.reduce_window(x, init, op, window, strides, padding)`` on one array."""
    y: jax.Array = jax.lax.reduce_window(  # pyright: ignore[reportUnknownMemberType]  # computation: bare Callable
        x, init, op, window, strides, padding)
    return y


def jaxprs_in_params(params: Any) -> Iterator[Any]:
    """``jax.extend.core.jaxprs_in_params(params)``: the jaxprs nested in an equation's params."""
    found: Iterator[Any] = jax_core.jaxprs_in_params(  # pyright: ignore[reportUnknownMemberType]  # params: unannotated
        params)
    return found


def eqx_filter(tree: Any, filter_spec: Any) -> Any:
    """``equinox.filter(tree, filter_spec)`` (equinox imported here, when first used)."""
    import equinox as eqx

    return eqx.filter(  # pyright: ignore[reportUnknownMemberType, reportUnknownVariableType]  # pytree: unannotated
        tree, filter_spec)


def eqx_partition(tree: Any, filter_spec: Any) -> tuple[Any, Any]:
    """``equinox.partition(tree, filter_spec)``: ``(the selected leaves, the rest)``."""
    import equinox as eqx

    selected, rest = eqx.partition(  # pyright: ignore[reportUnknownMemberType, reportUnknownVariableType]  # Unknown
        tree, filter_spec)
    return selected, rest  # pyright: ignore[reportUnknownVariableType]  # as above


def eqx_combine(*trees: Any) -> Any:
    """``equinox.combine(*trees)``."""
    import equinox as eqx

    return eqx.combine(*trees)  # pyright: ignore[reportUnknownMemberType]  # pytrees: unannotated


def eqx_filter_eval_shape(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """``equinox.filter_eval_shape(fn, *args, **kwargs)``."""
    import equinox as eqx

    return eqx.filter_eval_shape(  # pyright: ignore[reportUnknownMemberType, reportUnknownVariableType]  # Unknown
        fn, *args, **kwargs)
