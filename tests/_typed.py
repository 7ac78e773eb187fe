"""Typed signatures for the JAX calls that pyright sees as partially Unknown, for the tests.

``jax.jit`` and ``jax.eval_shape`` annotate their function argument as a bare ``Callable``, so
``pyright --strict`` reports every use (and what ``jax.jit(f)(...)`` returns is Unknown). Each
wrapper calls the JAX function unchanged; the tests that are ``pyright --strict`` clean call these.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar, overload

import jax

P = ParamSpec("P")
R = TypeVar("R")


def jit(fn: Callable[P, R], **options: Any) -> Callable[P, R]:
    """``jax.jit(fn, **options)`` with ``fn``'s signature."""
    return jax.jit(fn, **options)  # pyright: ignore[reportUnknownMemberType]  # fun: a bare Callable


def eval_shape(fn: Callable[..., Any], *args: Any) -> Any:
    """``jax.eval_shape(fn, *args)``: the tree of ``jax.ShapeDtypeStruct`` that ``fn`` returns."""
    return jax.eval_shape(fn, *args)  # pyright: ignore[reportUnknownMemberType]  # fun: a bare Callable


# ``grad``, ``value_and_grad`` and ``vmap`` take ``lambda``s in many tests: the overloads for one to
# three positional parameters type them as ``Any`` (so a lambda's parameters are not Unknown); a
# ``def`` with more parameters keeps its own signature (the last overload).
Argnums = int | tuple[int, ...]


@overload
def grad(fn: Callable[[Any], Any], argnums: Argnums = 0, *, has_aux: bool = False,
         **options: Any) -> Callable[[Any], Any]: ...
@overload
def grad(fn: Callable[[Any, Any], Any], argnums: Argnums = 0, *, has_aux: bool = False,
         **options: Any) -> Callable[[Any, Any], Any]: ...
@overload
def grad(fn: Callable[[Any, Any, Any], Any], argnums: Argnums = 0, *, has_aux: bool = False,
         **options: Any) -> Callable[[Any, Any, Any], Any]: ...
@overload
def grad(fn: Callable[P, Any], argnums: Argnums = 0, *, has_aux: bool = False,
         **options: Any) -> Callable[P, Any]: ...
def grad(fn: Callable[..., Any], argnums: Argnums = 0, *, has_aux: bool = False,
         **options: Any) -> Callable[..., Any]:
    """``jax.grad(fn, argnums=argnums, has_aux=has_aux, **options)``."""
    return jax.grad(  # pyright: ignore[reportUnknownMemberType, reportUnknownVariableType]  # fun: a bare Callable
        fn, argnums=argnums, has_aux=has_aux, **options)


@overload
def value_and_grad(fn: Callable[[Any], Any], argnums: Argnums = 0, *, has_aux: bool = False,
                   **options: Any) -> Callable[[Any], tuple[Any, Any]]: ...
@overload
def value_and_grad(fn: Callable[[Any, Any], Any], argnums: Argnums = 0, *, has_aux: bool = False,
                   **options: Any) -> Callable[[Any, Any], tuple[Any, Any]]: ...
@overload
def value_and_grad(fn: Callable[P, Any], argnums: Argnums = 0, *, has_aux: bool = False,
                   **options: Any) -> Callable[P, tuple[Any, Any]]: ...
def value_and_grad(fn: Callable[..., Any], argnums: Argnums = 0, *, has_aux: bool = False,
                   **options: Any) -> Callable[..., tuple[Any, Any]]:
    """``jax.value_and_grad(fn, argnums=argnums, has_aux=has_aux, **options)``."""
    return jax.value_and_grad(  # pyright: ignore[reportUnknownMemberType, reportUnknownVariableType]  # fun: a bare Callable
        fn, argnums=argnums, has_aux=has_aux, **options)


@overload
def vmap(fn: Callable[[Any], Any], in_axes: Any = 0, out_axes: Any = 0,
         **options: Any) -> Callable[[Any], Any]: ...
@overload
def vmap(fn: Callable[[Any, Any], Any], in_axes: Any = 0, out_axes: Any = 0,
         **options: Any) -> Callable[[Any, Any], Any]: ...
@overload
def vmap(fn: Callable[[Any, Any, Any], Any], in_axes: Any = 0, out_axes: Any = 0,
         **options: Any) -> Callable[[Any, Any, Any], Any]: ...
@overload
def vmap(fn: Callable[P, Any], in_axes: Any = 0, out_axes: Any = 0,
         **options: Any) -> Callable[P, Any]: ...
def vmap(fn: Callable[..., Any], in_axes: Any = 0, out_axes: Any = 0,
         **options: Any) -> Callable[..., Any]:
    """``jax.vmap(fn, in_axes=in_axes, out_axes=out_axes, **options)`` (``axis_name`` ...)."""
    return jax.vmap(fn, in_axes=in_axes, out_axes=out_axes, **options)


def make_jaxpr(fn: Callable[..., Any], **options: Any) -> Callable[..., Any]:
    """``jax.make_jaxpr(fn, **options)``: calling it returns the ``ClosedJaxpr``."""
    return jax.make_jaxpr(fn, **options)  # pyright: ignore[reportUnknownMemberType, reportUnknownVariableType]  # fun: a bare Callable


def jvp(fn: Callable[..., Any], primals: tuple[Any, ...], tangents: tuple[Any, ...]) -> tuple[Any, Any]:
    """``jax.jvp(fn, primals, tangents)``: ``(fn(*primals), tangent out)``."""
    return jax.jvp(fn, primals, tangents)  # pyright: ignore[reportUnknownMemberType, reportUnknownVariableType]  # fun: a bare Callable


def hessian(fn: Callable[..., Any], argnums: Argnums = 0) -> Callable[..., Any]:
    """``jax.hessian(fn, argnums=argnums)``."""
    return jax.hessian(fn, argnums=argnums)  # pyright: ignore[reportUnknownMemberType, reportUnknownVariableType]  # fun: a bare Callable
