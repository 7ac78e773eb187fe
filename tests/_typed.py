"""Typed signatures for the JAX calls that pyright sees as partially Unknown, for the tests.

``jax.jit`` and ``jax.eval_shape`` annotate their function argument as a bare ``Callable``, so
``pyright --strict`` reports every use (and what ``jax.jit(f)(...)`` returns is Unknown). Each
wrapper calls the JAX function unchanged; the tests that are ``pyright --strict`` clean call these.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

import jax

P = ParamSpec("P")
R = TypeVar("R")


def jit(fn: Callable[P, R], **options: Any) -> Callable[P, R]:
    """``jax.jit(fn, **options)`` with ``fn``'s signature."""
    return jax.jit(fn, **options)  # pyright: ignore[reportUnknownMemberType]  # fun: a bare Callable


def eval_shape(fn: Callable[..., Any], *args: Any) -> Any:
    """``jax.eval_shape(fn, *args)``: the tree of ``jax.ShapeDtypeStruct`` that ``fn`` returns."""
    return jax.eval_shape(fn, *args)  # pyright: ignore[reportUnknownMemberType]  # fun: a bare Callable
