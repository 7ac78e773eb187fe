"""Reduce the learning rate on a plateau, as a pure state machine plus a gradient transformation.

Two pieces cooperate:

* :func:`reduce_on_plateau` watches a per-epoch metric and keeps a ``scale`` (starting at 1).
* :func:`scale_by_plateau` is a :class:`~functrain.optim.GradientTransformation` that multiplies
  the updates by the ``scale`` stored in *its own* state. Put it last in the optimizer chain,
  ``chain(adam(lr), scale_by_plateau())``: scaling the final update by ``s`` is exactly scaling
  the learning rate by ``s`` (for SGD, momentum, Adam and decoupled weight decay alike).

After each epoch, :func:`set_plateau_scale` writes the new scale into the optimizer state::

    ps = plateau.update(ps, val_loss)
    state = state._replace(opt_state=set_plateau_scale(state.opt_state, ps.scale))

All of it is arrays and ``jnp.where``, so it works under ``jax.jit`` (epochs in ``lax.scan``) and
``jax.vmap`` (each run reduces on its own); :func:`functrain.train.fit` does these steps for you.

Rule (PyTorch's ``ReduceLROnPlateau`` with Keras' patience count): after each epoch with value ``v``

1. ``improved = v < best - min_delta`` (``mode="min"``; ``v > best + min_delta`` for ``"max"``);
   if improved, ``best = v`` and ``bad_epochs = 0``, else ``bad_epochs += 1``;
2. during a cooldown (``cooldown_left > 0``) ``cooldown_left -= 1`` and ``bad_epochs = 0``;
3. if ``bad_epochs >= patience``: ``scale = max(scale * factor, min_scale)``,
   ``cooldown_left = cooldown``, ``bad_epochs = 0``.

So with ``cooldown = 0`` the scale drops at the ``patience``-th consecutive non-improving epoch,
and after a drop the next drop needs ``cooldown + patience`` more non-improving epochs.
A NaN value never improves.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

import jax.numpy as jnp

from functrain import _tree
from functrain.optim.base import GradientTransformation
from functrain.train._checks import int_arg, number_arg
from functrain.typing import Array, ArrayLike, PyTree

__all__ = [
    "ReduceOnPlateau",
    "ReduceOnPlateauState",
    "ScaleByPlateauState",
    "get_plateau_scale",
    "reduce_on_plateau",
    "scale_by_plateau",
    "set_plateau_scale",
]


class ReduceOnPlateauState(NamedTuple):
    """State of :func:`reduce_on_plateau`.

    Attributes:
        scale: float32, the current learning-rate multiplier (1 at the start).
        best_value: float32, the best monitored value so far (``+inf``/``-inf`` at the start).
        bad_epochs: int32, consecutive epochs without improvement (outside cooldown).
        cooldown_left: int32, epochs of cooldown remaining.
    """

    scale: Array
    best_value: Array
    bad_epochs: Array
    cooldown_left: Array


class ScaleByPlateauState(NamedTuple):
    """State of :func:`scale_by_plateau`: the multiplier applied to every update."""

    scale: Array


@dataclass(frozen=True)
class ReduceOnPlateau:
    """Configuration plus the pure ``init``/``update`` of reduce-on-plateau (hashable)."""

    factor: float
    patience: int
    min_delta: float
    mode: Literal["min", "max"]
    cooldown: int
    min_scale: float

    def init(self) -> ReduceOnPlateauState:
        """The initial state: scale 1, no best value yet, no cooldown."""
        inf = jnp.inf if self.mode == "min" else -jnp.inf
        return ReduceOnPlateauState(
            scale=jnp.ones((), jnp.float32),
            best_value=jnp.asarray(inf, jnp.float32),
            bad_epochs=jnp.zeros((), jnp.int32),
            cooldown_left=jnp.zeros((), jnp.int32),
        )

    def update(self, state: ReduceOnPlateauState, value: ArrayLike) -> ReduceOnPlateauState:
        """Observe one epoch's monitored ``value`` (see the module docstring for the rule).

        Args:
            state: the current state.
            value: the monitored scalar (may be traced).

        Returns:
            The new state; ``new.scale`` is the multiplier to use from now on.

        Raises:
            ValueError: if ``value`` is not a scalar.
        """
        v = jnp.asarray(value)
        if v.shape != ():
            raise ValueError(f"reduce_on_plateau.update: argument 'value' must be a scalar, got shape {v.shape}")
        v = v.astype(jnp.float32)
        if self.mode == "min":
            better = v < state.best_value - self.min_delta
        else:
            better = v > state.best_value + self.min_delta
        best = jnp.where(better, v, state.best_value)
        bad = jnp.where(better, 0, state.bad_epochs + 1)
        in_cooldown = state.cooldown_left > 0
        cooldown_left = jnp.where(in_cooldown, state.cooldown_left - 1, 0)
        bad = jnp.where(in_cooldown, 0, bad)
        reduce = bad >= self.patience
        scale = jnp.where(reduce, jnp.maximum(state.scale * self.factor, self.min_scale), state.scale)
        return ReduceOnPlateauState(
            scale=scale.astype(jnp.float32),
            best_value=best,
            bad_epochs=jnp.where(reduce, 0, bad).astype(jnp.int32),
            cooldown_left=jnp.where(reduce, self.cooldown, cooldown_left).astype(jnp.int32),
        )


def reduce_on_plateau(
    factor: float = 0.1,
    patience: int = 10,
    min_delta: float = 0.0,
    mode: Literal["min", "max"] = "min",
    cooldown: int = 0,
    min_scale: float = 0.0,
) -> ReduceOnPlateau:
    """Multiply the learning rate by ``factor`` after ``patience`` epochs without improvement.

    The classic "divide the learning rate by 10 when the validation loss stalls" schedule
    (e.g. He et al., "Deep Residual Learning", 2016; PyTorch ``ReduceLROnPlateau``). The exact
    rule is in the module docstring; the scale acts through :func:`scale_by_plateau`.

    Args:
        factor: the multiplier applied at each reduction, in ``(0, 1)``.
        patience: non-improving epochs before a reduction (>= 1).
        min_delta: the minimum absolute change that counts as an improvement (>= 0).
        mode: ``"min"`` (lower is better) or ``"max"``.
        cooldown: epochs after a reduction during which bad epochs are not counted (>= 0).
        min_scale: the scale never goes below this (>= 0).

    Returns:
        A :class:`ReduceOnPlateau` with ``init`` and ``update``.

    Raises:
        TypeError: for non-int ``patience``/``cooldown`` or non-number floats.
        ValueError: for values out of range or an unknown ``mode``.
    """
    who = "reduce_on_plateau"
    number_arg(factor, "factor", who, low=0.0, high=1.0, low_open=True, high_open=True)
    patience = int_arg(patience, "patience", who, low=1)
    number_arg(min_delta, "min_delta", who, low=0.0)
    if mode not in ("min", "max"):
        raise ValueError(f"{who}: argument 'mode' must be 'min' or 'max', got {mode!r}")
    cooldown = int_arg(cooldown, "cooldown", who, low=0)
    number_arg(min_scale, "min_scale", who, low=0.0, high=1.0)
    return ReduceOnPlateau(factor=float(factor), patience=patience, min_delta=float(min_delta),
                           mode=mode, cooldown=cooldown, min_scale=float(min_scale))


def scale_by_plateau() -> GradientTransformation[ScaleByPlateauState]:
    """Multiply the updates by the plateau scale held in this transformation's state.

    ``updates -> scale * updates`` with ``scale`` from :class:`ScaleByPlateauState` (1 after
    ``init``). The scale only changes through :func:`set_plateau_scale`; use it last in a chain.

    Returns:
        A gradient transformation.
    """

    def init(params: PyTree) -> ScaleByPlateauState:
        del params
        return ScaleByPlateauState(scale=jnp.ones((), jnp.float32))

    def update(updates: PyTree, state: ScaleByPlateauState,
               params: PyTree | None = None) -> tuple[PyTree, ScaleByPlateauState]:
        del params
        return _tree.tree_scale(updates, state.scale), state

    return GradientTransformation(init, update)


def _is_plateau_state(x: Any) -> bool:
    return isinstance(x, ScaleByPlateauState)


def _plateau_states(opt_state: PyTree) -> list[ScaleByPlateauState]:
    return [x for x in _tree.tree_leaves(opt_state, is_leaf=_is_plateau_state) if _is_plateau_state(x)]


def get_plateau_scale(opt_state: PyTree) -> Array:
    """The scale held by the :func:`scale_by_plateau` state inside an optimizer state.

    Raises:
        ValueError: if ``opt_state`` holds no (or more than one) :class:`ScaleByPlateauState`.
    """
    found = _plateau_states(opt_state)
    if len(found) != 1:
        raise ValueError(_missing_message("get_plateau_scale", len(found)))
    return found[0].scale


def set_plateau_scale(opt_state: PyTree, scale: ArrayLike) -> PyTree:
    """Write ``scale`` into the :func:`scale_by_plateau` state inside an optimizer state.

    Works for any nesting (functrain or optax ``chain`` states). Pure and jit/vmap-safe.

    Args:
        opt_state: an optimizer state whose transformation includes ``scale_by_plateau()``.
        scale: the new scale (e.g. ``ReduceOnPlateauState.scale``).

    Returns:
        The optimizer state with the new scale.

    Raises:
        ValueError: if ``opt_state`` holds no (or more than one) :class:`ScaleByPlateauState`.
    """
    n = len(_plateau_states(opt_state))
    if n != 1:
        raise ValueError(_missing_message("set_plateau_scale", n))
    new = ScaleByPlateauState(scale=jnp.asarray(scale, jnp.float32))
    return _tree.tree_map(lambda x: new if _is_plateau_state(x) else x, opt_state,
                          is_leaf=_is_plateau_state)


def _missing_message(who: str, n: int) -> str:
    if n == 0:
        return (f"{who}: the optimizer state holds no ScaleByPlateauState; add "
                "functrain.train.scale_by_plateau() at the end of the optimizer chain, e.g. "
                "chain(adam(lr), scale_by_plateau()), so the plateau scale can act on the updates")
    return f"{who}: the optimizer state holds {n} ScaleByPlateauState entries; use exactly one"
