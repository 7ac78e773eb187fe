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

from functrain import _tree, _validate
from functrain.optim.base import GradientTransformation
from functrain.typing import Array, ArrayLike, PyTree

_MODES: tuple[Literal["min", "max"], ...] = ("min", "max")

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

    Example:
        >>> rule = ft.train.reduce_on_plateau(factor=0.5, patience=1)
        >>> state = rule.init()
        >>> for loss in [1.0, 1.0, 0.5]:
        ...     state = rule.update(state, loss)
        >>> float(state.scale), float(state.best_value), int(state.bad_epochs)
        (0.5, 0.5, 0)
    """

    scale: Array
    best_value: Array
    bad_epochs: Array
    cooldown_left: Array


class ScaleByPlateauState(NamedTuple):
    """State of :func:`scale_by_plateau`: the multiplier applied to every update.

    Its :attr:`learning_rate_scale` marks it as a learning-rate scale for
    :func:`functrain.optim.current_learning_rate`, which multiplies it in.

    Example:
        >>> opt = ft.optim.chain(ft.optim.sgd(1.0), ft.train.scale_by_plateau())
        >>> opt_state = opt.init({"w": jnp.zeros(2)})
        >>> isinstance(opt_state[-1], ft.train.ScaleByPlateauState), float(opt_state[-1].scale)
        (True, 1.0)
        >>> float(opt_state[-1].learning_rate_scale)
        1.0
    """

    scale: Array

    @property
    def learning_rate_scale(self) -> Array:
        """The factor on the learning rate: ``scale`` (scaling the update scales the rate)."""
        return self.scale


@dataclass(frozen=True)
class ReduceOnPlateau:
    """Configuration plus the pure ``init``/``update`` of reduce-on-plateau (hashable).

    Build it with :func:`reduce_on_plateau`. Hashable, so it can be a static argument of
    ``jax.jit`` (and a field of :class:`~functrain.train.FitOptions`).

    Example:
        >>> rule = ft.train.reduce_on_plateau(factor=0.1, patience=2)
        >>> scales = jax.lax.scan(lambda s, v: (rule.update(s, v),) * 2, rule.init(),
        ...                       jnp.array([1.0, 1.0, 1.0, 0.5]))[1].scale
        >>> [round(s, 4) for s in scales.tolist()]
        [1.0, 1.0, 0.1, 0.1]
    """

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
            _validate.fail("ReduceOnPlateau.update", "value", "a scalar", v)
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
        patience: non-improving epochs before a reduction, in ``[1, 2**31 - 1]`` (the state
            counts epochs in int32).
        min_delta: the minimum absolute change that counts as an improvement (>= 0).
        mode: ``"min"`` (lower is better) or ``"max"``.
        cooldown: epochs after a reduction during which bad epochs are not counted, in
            ``[0, 2**31 - 1]``.
        min_scale: the scale never goes below this (>= 0).

    Returns:
        A :class:`ReduceOnPlateau` with ``init`` and ``update``.

    Raises:
        TypeError: for non-int ``patience``/``cooldown`` or non-number floats.
        ValueError: for values out of range or an unknown ``mode``.

    Example:
        >>> opt = ft.optim.chain(ft.optim.adam(1e-3), ft.train.scale_by_plateau())
        >>> rule = ft.train.reduce_on_plateau(factor=0.5, patience=3)
        >>> rule.factor, rule.patience, rule.init().scale.tolist()
        (0.5, 3, 1.0)
    """
    who = "reduce_on_plateau"
    return ReduceOnPlateau(
        factor=_concrete(factor, who, "factor", low=0.0, high=1.0, low_open=True, high_open=True),
        patience=_validate.check_int(patience, who, "patience", low=1, high=_validate.INT32_MAX),
        min_delta=_concrete(min_delta, who, "min_delta", low=0.0),
        mode=_validate.check_choice(mode, _MODES, who, "mode"),
        cooldown=_validate.check_int(cooldown, who, "cooldown", low=0, high=_validate.INT32_MAX),
        min_scale=_concrete(min_scale, who, "min_scale", low=0.0, high=1.0),
    )


def _concrete(value: object, who: str, name: str, *, low: float, high: float | None = None,
              low_open: bool = False, high_open: bool = False) -> float:
    """A concrete finite number in the range (the rule is static configuration: no tracers)."""
    v = _validate.check_number(value, who, name, low=low, high=high, low_open=low_open,
                               high_open=high_open, finite=True)
    if v is None:
        _validate.fail(who, name, "a concrete (not traced) number", value, error=TypeError)
    return v


def scale_by_plateau() -> GradientTransformation[ScaleByPlateauState]:
    """Multiply the updates by the plateau scale held in this transformation's state.

    ``updates -> scale * updates`` with ``scale`` from :class:`ScaleByPlateauState` (1 after
    ``init``). The scale only changes through :func:`set_plateau_scale`; use it last in a chain.

    Returns:
        A gradient transformation.

    Example:
        >>> opt = ft.optim.chain(ft.optim.sgd(1.0), ft.train.scale_by_plateau())
        >>> opt_state = ft.train.set_plateau_scale(opt.init(jnp.zeros(2)), 0.1)
        >>> updates, _ = opt.update(jnp.ones(2), opt_state)
        >>> [round(float(u), 4) for u in updates]
        [-0.1, -0.1]
    """

    def init(params: PyTree) -> ScaleByPlateauState:
        del params
        return ScaleByPlateauState(scale=jnp.ones((), jnp.float32))

    def update(updates: PyTree, state: ScaleByPlateauState, params: PyTree | None = None,
               **extra_args: Any) -> tuple[PyTree, ScaleByPlateauState]:
        del params, extra_args
        return _tree.tree_scale(updates, state.scale), state

    return GradientTransformation(init, update)


def _is_plateau_state(x: Any) -> bool:
    return isinstance(x, ScaleByPlateauState)


def _plateau_states(opt_state: PyTree) -> list[ScaleByPlateauState]:
    return [x for x in _tree.tree_leaves(opt_state, is_leaf=_is_plateau_state) if _is_plateau_state(x)]


def get_plateau_scale(opt_state: PyTree) -> Array:
    """The scale held by the :func:`scale_by_plateau` state inside an optimizer state.

    Args:
        opt_state: an optimizer state whose transformation includes ``scale_by_plateau()``.

    Returns:
        The float32 scalar scale.

    Raises:
        ValueError: if ``opt_state`` holds no (or more than one) :class:`ScaleByPlateauState`.

    Example:
        >>> opt = ft.optim.chain(ft.optim.adam(1e-3), ft.train.scale_by_plateau())
        >>> float(ft.train.get_plateau_scale(opt.init({"w": jnp.zeros(2)})))
        1.0
    """
    check_plateau_state(opt_state, "get_plateau_scale")
    return _plateau_states(opt_state)[0].scale


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

    Example:
        >>> opt = ft.optim.chain(ft.optim.adam(1e-3), ft.train.scale_by_plateau())
        >>> opt_state = ft.train.set_plateau_scale(opt.init({"w": jnp.zeros(2)}), 0.25)
        >>> float(ft.train.get_plateau_scale(opt_state))
        0.25
    """
    check_plateau_state(opt_state, "set_plateau_scale")
    new = ScaleByPlateauState(scale=jnp.asarray(scale, jnp.float32))
    return _tree.tree_map(lambda x: new if _is_plateau_state(x) else x, opt_state,
                          is_leaf=_is_plateau_state)


def check_plateau_state(opt_state: PyTree, who: str, name: str = "opt_state") -> None:
    """``ValueError`` unless ``opt_state`` holds exactly one :class:`ScaleByPlateauState`.

    (Not in ``__all__``: shared with :func:`functrain.train.init_fit_state`, which names its own
    argument.)
    """
    n = len(_plateau_states(opt_state))
    if n != 1:
        raise ValueError(
            f"{who}: argument '{name}' must be the state of an optimizer with exactly one "
            "scale_by_plateau() (add functrain.train.scale_by_plateau() at the end of the "
            "optimizer chain, e.g. chain(adam(lr), scale_by_plateau()), so the plateau scale can "
            f"act on the updates), got a state with {n} ScaleByPlateauState")
