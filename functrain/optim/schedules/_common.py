"""Helpers shared by the schedule modules: the level type, float32 output, argument checks."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import cast

import jax.numpy as jnp
from jax.typing import ArrayLike

from functrain import _tree, _validate
from functrain.typing import Array

__all__ = ["Value", "check_boundaries", "f32"]

Value = float | Array
"""A schedule's level: a Python number or a (possibly traced) scalar array."""


def f32(x: ArrayLike) -> Array:
    """``x`` as a float32 array (every schedule returns float32 scalars)."""
    return jnp.asarray(x, dtype=jnp.float32)


def check_boundaries(fn: str, name: str, boundaries: Sequence[object], got: object,
                      expectation: str) -> list[int]:
    """Non-negative, strictly increasing int boundaries (``got`` is what the message shows)."""
    out: list[int] = []
    for b in boundaries:
        if _tree.is_bool(b) or not _tree.is_int(b):
            _validate.fail(fn, name, expectation, got, error=TypeError)
        out.append(int(b))
    if any(b < 0 for b in out) or any(b <= a for a, b in zip(out, out[1:])):
        _validate.fail(fn, name, expectation, got)
    return out


def check_boundaries_and_scales(fn: str, boundaries_and_scales: Mapping[int, float] | None
                                ) -> tuple[list[int], list[float]]:
    """The steps and scales of a ``{boundary_step: scale}`` mapping (or ``None``: none): int steps
    strictly increasing from 0 up, concrete scales ``>= 0``."""
    if boundaries_and_scales is not None and not isinstance(cast(object, boundaries_and_scales), Mapping):
        _validate.fail(fn, "boundaries_and_scales", "a mapping {step: scale} or None",
                       boundaries_and_scales, error=TypeError)
    items = list((boundaries_and_scales or {}).items())
    bounds = check_boundaries(fn, "boundaries_and_scales", [b for b, _ in items], boundaries_and_scales,
                              "a mapping whose keys are strictly increasing int steps >= 0")
    scales = [s for _, s in items]
    for b, s in zip(bounds, scales):
        _validate.check_hyperparameter(s, fn, f"boundaries_and_scales[{b}]", low=0.0, schedule_ok=False)
    return bounds, scales
