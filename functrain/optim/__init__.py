"""Optimizers as gradient transformations (optax calling convention)."""

from functrain.optim.base import GradientTransformation, InitFn, UpdateFn

__all__ = ["GradientTransformation", "InitFn", "UpdateFn"]
