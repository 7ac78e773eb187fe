"""Guards and gradient accumulation: wrappers around another transformation.

* :func:`skip_nonfinite` -- a step whose gradients contain NaN or inf is skipped: zero updates,
  the inner state kept bit for bit, and the skip counted; with ``max_consecutive`` a run that
  keeps producing them is declared diverged (:func:`has_diverged`) and frozen.
* :func:`accumulate_gradients` -- average ``k`` micro-batch gradients, then one inner step
  (a larger effective batch without the memory; ``k`` may follow a schedule; cf.
  ``optax.MultiSteps``).

Both are plain :class:`~functrain.optim.GradientTransformation` values that work under
``jax.jit`` and ``jax.vmap`` (the choice is made with ``jnp.where`` / ``lax.cond``, never in
Python).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, NamedTuple, TypeVar

import jax.numpy as jnp

from functrain import _jax, _validate
from functrain._tree import tree_leaves, tree_map, tree_where
from functrain.optim._extra_args import forward_extra_args
from functrain.optim._hyper import increment, zero_step
from functrain.optim.base import GradientTransformation
from functrain.typing import Array, ArrayLike, DType, PyTree

__all__ = [
    "AccumulateGradientsState",
    "SkipNonfiniteState",
    "accumulate_gradients",
    "all_finite",
    "has_diverged",
    "skip_nonfinite",
    "skipped_updates",
]

S = TypeVar("S")


def all_finite(tree: PyTree) -> Array:
    """Boolean scalar: whether every entry of every leaf of ``tree`` is finite (no NaN/inf).

    Args:
        tree: a pytree of arrays.

    Returns:
        A boolean scalar array (``True`` for a tree without leaves).

    Example:
        >>> bool(ft.optim.all_finite({"a": jnp.ones(2), "b": jnp.asarray([1.0, jnp.nan])}))
        False
    """
    leaves = tree_leaves(tree)
    if not leaves:
        return jnp.asarray(True)
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in leaves]))


class SkipNonfiniteState(NamedTuple, Generic[S]):
    """State of :func:`skip_nonfinite`.

    Attributes:
        inner_state: the wrapped transformation's state (unchanged by a skipped step).
        skipped_steps: int32 scalar, the number of steps not applied (NaN/inf gradients, and every
            step once diverged).
        total_steps: int32 scalar, the number of calls to ``update``.
        consecutive_skips: int32 scalar, the number of consecutive steps with NaN/inf gradients
            up to now (0 after a finite one).
        diverged: boolean scalar, whether ``max_consecutive`` consecutive steps had NaN/inf
            gradients at some point (then it stays ``True``); always ``False`` without a limit.

    Example:
        >>> state = ft.optim.skip_nonfinite(ft.optim.sgd(0.1)).init({"w": jnp.ones(2)})
        >>> int(state.skipped_steps), int(state.total_steps), bool(state.diverged)
        (0, 0, False)
    """

    inner_state: S
    skipped_steps: Array
    total_steps: Array
    consecutive_skips: Array
    diverged: Array


def skip_nonfinite(
    inner: GradientTransformation[S], max_consecutive: int | None = None
) -> GradientTransformation[SkipNonfiniteState[S]]:
    """Skip steps whose incoming updates contain NaN or inf; optionally stop after ``N`` in a row.

    If every entry of the incoming updates is finite, this is ``inner``. Otherwise the output
    updates are zeros (so :func:`~functrain.optim.apply_updates` leaves the params bit-identical),
    the inner state is kept bit-identical, and ``skipped_steps`` is incremented; ``total_steps``
    counts every call and ``consecutive_skips`` the current run of non-finite steps. The
    selection uses ``jnp.where``, so it works under ``jit`` and ``vmap`` (each vmapped run skips
    on its own). Without ``max_consecutive``, the same as ``optax.apply_if_finite`` with no limit.

    With ``max_consecutive=N``, the ``N``-th consecutive non-finite step sets ``diverged`` (read it
    with :func:`has_diverged`), and from then on every step is skipped, finite or not: the run is
    frozen at its last good parameters, as an early-stopped one, and a training loop can stop it
    and report the divergence. (``optax.apply_if_finite`` instead applies the non-finite updates
    after ``N`` skips.)

    Args:
        inner: the transformation to guard.
        max_consecutive: ``N >= 1``, the number of consecutive non-finite steps after which the
            run counts as diverged, or ``None`` for no limit.

    Returns:
        A :class:`~functrain.optim.GradientTransformation` with :class:`SkipNonfiniteState`.

    Raises:
        TypeError: ``inner`` is not a gradient transformation or ``max_consecutive`` not an int.
        ValueError: ``max_consecutive < 1``.

    Example:
        >>> tx = ft.optim.skip_nonfinite(ft.optim.sgd(0.1))
        >>> params = {"w": jnp.ones(2)}
        >>> u, state = tx.update({"w": jnp.asarray([1.0, jnp.inf])}, tx.init(params), params)
        >>> u["w"].tolist(), int(state.skipped_steps), int(state.total_steps)
        ([0.0, 0.0], 1, 1)
    """
    fn = "skip_nonfinite"
    _validate.check_transformation(inner, fn, "inner")
    limit = None if max_consecutive is None else _validate.check_int(
        max_consecutive, fn, "max_consecutive", low=1)
    inner_update = forward_extra_args(inner.update)

    def init(params: PyTree) -> SkipNonfiniteState[S]:
        return SkipNonfiniteState(inner.init(params), zero_step(), zero_step(), zero_step(),
                                  jnp.asarray(False))

    def update(
        updates: PyTree, state: SkipNonfiniteState[S], params: PyTree | None = None,
        **extra_args: Any,
    ) -> tuple[PyTree, SkipNonfiniteState[S]]:
        finite = all_finite(updates)
        ok = jnp.logical_and(finite, jnp.logical_not(state.diverged))
        new_updates, new_inner = inner_update(updates, state.inner_state, params, **extra_args)
        out = tree_map(lambda u: jnp.where(ok, u, jnp.zeros_like(u)), new_updates)
        kept: S = tree_where(ok, new_inner, state.inner_state)
        skipped = jnp.where(ok, state.skipped_steps, increment(state.skipped_steps))
        consecutive = jnp.where(finite, jnp.zeros_like(state.consecutive_skips),
                                increment(state.consecutive_skips))
        diverged = state.diverged
        if limit is not None:
            diverged = jnp.logical_or(diverged, consecutive >= limit)
        return out, SkipNonfiniteState(kept, skipped, increment(state.total_steps), consecutive,
                                       diverged)

    return GradientTransformation(init, update)


def has_diverged(opt_state: Any) -> Array:
    """Whether a :func:`skip_nonfinite` guard anywhere in ``opt_state`` has declared divergence.

    Looks through the whole optimizer state (chains, wrappers, optax states) for
    :class:`SkipNonfiniteState` nodes and ORs their ``diverged`` flags, so a training loop need not
    know where the guard sits. Batched states (``jax.vmap`` over runs) give one flag per run.

    Args:
        opt_state: an optimizer state.

    Returns:
        A boolean array: a scalar, or one flag per run for a batched state (``False`` when there
        is no guard).

    Example:
        >>> tx = ft.optim.chain(ft.optim.clip_by_global_norm(1.0),
        ...                     ft.optim.skip_nonfinite(ft.optim.adam(0.1), max_consecutive=2))
        >>> params = {"w": jnp.ones(2)}
        >>> state = tx.init(params)
        >>> for _ in range(2):
        ...     _, state = tx.update({"w": jnp.full(2, jnp.nan)}, state, params)
        >>> unguarded = ft.optim.adam(0.1).init(params)
        >>> bool(ft.optim.has_diverged(state)), bool(ft.optim.has_diverged(unguarded))
        (True, False)
    """
    def is_guard(x: Any) -> bool:
        return isinstance(x, SkipNonfiniteState)

    nodes = [x for x in tree_leaves(opt_state, is_leaf=is_guard) if is_guard(x)]
    flag = jnp.asarray(False)
    for node in nodes:
        flag = jnp.logical_or(flag, node.diverged)
    return flag


def _is_counting_guard(x: Any) -> bool:
    """A :class:`SkipNonfiniteState`, or optax's ``ApplyIfFiniteState`` (recognized by its fields)."""
    return isinstance(x, SkipNonfiniteState) or all(
        hasattr(x, f) for f in ("notfinite_count", "last_finite", "total_notfinite", "inner_state"))


def skipped_updates(opt_state: Any) -> Array:
    """The number of updates skipped so far by the non-finite guards in ``opt_state``.

    Looks through the whole optimizer state, as :func:`has_diverged` does, and adds up the
    ``skipped_steps`` counters of every :class:`SkipNonfiniteState` found (and the
    ``total_notfinite`` counters of ``optax.apply_if_finite`` states); one guard, the usual case:
    its count. A training loop reads it before and after an epoch to count the epoch's skipped
    updates (what :func:`functrain.train.fit` reports). Read-only: nothing is changed.

    Args:
        opt_state: an optimizer state.

    Returns:
        An int32 array: a scalar, or one count per run for a batched state (``0`` when there is
        no guard).

    Example:
        >>> tx = ft.optim.chain(ft.optim.clip_by_global_norm(1.0),
        ...                     ft.optim.skip_nonfinite(ft.optim.sgd(0.1)))
        >>> params = {"w": jnp.ones(2)}
        >>> state = tx.init(params)
        >>> for g in (jnp.full(2, jnp.nan), jnp.ones(2), jnp.full(2, jnp.inf)):
        ...     _, state = tx.update({"w": g}, state, params)
        >>> int(ft.optim.skipped_updates(state)), int(ft.optim.skipped_updates(ft.optim.sgd(0.1).init(params)))
        (2, 0)
    """
    total = jnp.zeros((), jnp.int32)
    for node in tree_leaves(opt_state, is_leaf=_is_counting_guard):
        if isinstance(node, SkipNonfiniteState):
            total = total + jnp.asarray(node.skipped_steps, jnp.int32)
        elif _is_counting_guard(node):
            total = total + jnp.asarray(node.total_notfinite, jnp.int32)
    return total


def _accumulator_dtype(x: Array) -> DType:
    """float32 at least for floating leaves (so bf16 gradients are averaged accurately)."""
    if jnp.issubdtype(x.dtype, jnp.floating):
        return jnp.promote_types(x.dtype, jnp.float32)
    return x.dtype


class AccumulateGradientsState(NamedTuple, Generic[S]):
    """State of :func:`accumulate_gradients`.

    Attributes:
        micro_step: int32 scalar in ``[0, k)``, the number of micro-batches accumulated since
            the last inner step.
        grad_mean: running mean of those micro-batch gradients (float32 at least).
        inner_state: the wrapped transformation's state (changes only on inner steps).
        step: int32 scalar, the number of inner steps taken (the argument of an ``every_k``
            schedule).

    Example:
        >>> tx = ft.optim.accumulate_gradients(ft.optim.sgd(0.1), every_k=2)
        >>> state = tx.init({"w": jnp.ones(2, jnp.bfloat16)})
        >>> int(state.micro_step), state.grad_mean["w"].dtype
        (0, dtype('float32'))
    """

    micro_step: Array
    grad_mean: PyTree
    inner_state: S
    step: Array


def accumulate_gradients(
    inner: GradientTransformation[S], every_k: int | Callable[[Array], ArrayLike]
) -> GradientTransformation[AccumulateGradientsState[S]]:
    r"""Average ``every_k`` micro-batch gradients, then take one step of ``inner``.

    On calls ``1 .. k-1`` of each cycle the output updates are zeros and the gradients are
    accumulated as a running mean, ``gbar_n = gbar_{n-1} + (g_n - gbar_{n-1}) / n``; on call
    ``k`` the output is ``inner.update(gbar_k)`` and the accumulator restarts. With equal-sized
    micro-batches this is the step of a ``k`` times larger batch (gradient accumulation; same
    semantics as ``optax.MultiSteps(inner, every_k)``, as a plain transformation). The inner
    step runs under ``lax.cond``, so only every ``k``-th call pays for it (under ``vmap`` both
    branches run). The inner state keeps the dtypes ``inner.init(params)`` gave it: with
    gradients wider than the params (float32 gradients of bfloat16/float16 params, or bfloat16
    and float16 mixed), a new inner state that came out wider is cast back, as
    ``optax.MultiSteps`` does; the updates have the dtype the plain inner transformation gives.
    The running mean is kept in at least float32, and complex for complex gradients (optax's
    default float32 accumulator drops their imaginary part; ``accumulator_dtype=jnp.complex64``
    there gives the same results as here).

    ``every_k`` may be a schedule of the number of inner steps taken so far, ``k_s =
    every_k(s)``: a batch size that grows during training (Smith et al., "Don't Decay the
    Learning Rate, Increase the Batch Size", ICLR 2018), as ``optax.MultiSteps``'
    ``every_k_schedule``. Values below 1 count as 1.

    Args:
        inner: the transformation that receives the averaged gradients.
        every_k: ``k >= 1``, the number of micro-batches per step, or a function of the inner
            step count (an int32 scalar) returning it.

    Returns:
        A :class:`~functrain.optim.GradientTransformation` with :class:`AccumulateGradientsState`.

    Raises:
        TypeError: ``inner`` is not a gradient transformation or ``every_k`` is neither an int
            nor a function.
        ValueError: ``every_k < 1``.

    Example:
        >>> tx = ft.optim.accumulate_gradients(ft.optim.sgd(1.0), every_k=2)
        >>> state = tx.init({"w": jnp.zeros(1)})
        >>> u1, state = tx.update({"w": jnp.asarray([1.0])}, state)
        >>> u2, state = tx.update({"w": jnp.asarray([3.0])}, state)
        >>> u1["w"].tolist(), u2["w"].tolist()  # nothing, then minus the mean of 1 and 3
        ([0.0], [-2.0])
        >>> growing = ft.optim.accumulate_gradients(ft.optim.sgd(1.0), lambda s: 1 + s)
        >>> state = growing.init({"w": jnp.zeros(1)})
        >>> emitted = []
        >>> for _ in range(6):  # inner steps after 1, then 2, then 3 micro-batches
        ...     u, state = growing.update({"w": jnp.ones(1)}, state)
        ...     emitted.append(bool(u["w"][0] != 0))
        >>> emitted, int(state.step)
        ([True, False, True, False, False, True], 3)
    """
    fn = "accumulate_gradients"
    _validate.check_transformation(inner, fn, "inner")
    k_of: Callable[[Array], ArrayLike]
    if callable(every_k):
        k_of = every_k
    else:
        k_const = _validate.check_int(every_k, fn, "every_k", low=1)
        k_of = lambda s: k_const  # noqa: E731
    inner_update = forward_extra_args(inner.update)

    def init(params: PyTree) -> AccumulateGradientsState[S]:
        mean = tree_map(lambda p: jnp.zeros(jnp.shape(p), _accumulator_dtype(jnp.asarray(p))),
                        params)
        return AccumulateGradientsState(zero_step(), mean, inner.init(params), zero_step())

    def update(
        updates: PyTree, state: AccumulateGradientsState[S], params: PyTree | None = None,
        **extra_args: Any,
    ) -> tuple[PyTree, AccumulateGradientsState[S]]:
        _validate.check_same_structure(state.grad_mean, updates, fn, "updates",
                                       "state.grad_mean (the params given to init)")
        n = state.micro_step
        mean = tree_map(lambda g, a: a + (g - a) / (n + 1), updates, state.grad_mean)
        emit = n >= jnp.maximum(jnp.asarray(k_of(state.step)), 1) - 1
        grads = tree_map(lambda a, g: a.astype(g.dtype), mean, updates)

        def step() -> tuple[PyTree, S]:
            out, new_inner = inner_update(grads, state.inner_state, params, **extra_args)
            # Gradients wider than the params (f32 on bf16/f16) widen an inner state such as
            # adam's moments; keep its dtypes, so both branches agree (as optax.MultiSteps).
            kept: S = tree_map(lambda n, o: n if n.dtype == o.dtype else n.astype(o.dtype),
                               new_inner, state.inner_state)
            return out, kept

        def wait() -> tuple[PyTree, S]:
            shapes = _jax.eval_shape(step)[0]
            return tree_map(lambda s: jnp.zeros(s.shape, s.dtype), shapes), state.inner_state

        out, inner_state = _jax.cond(emit, step, wait)
        new_mean = tree_map(lambda a: jnp.where(emit, jnp.zeros_like(a), a), mean)
        micro = jnp.where(emit, jnp.zeros_like(n), n + 1)
        taken = jnp.where(emit, increment(state.step), state.step)
        return out, AccumulateGradientsState(micro, new_mean, inner_state, taken)

    return GradientTransformation(init, update)
