"""The learning-rate range test (Smith, "Cyclical Learning Rates for Training Neural Networks",
2015/2017; the "lr finder" of fastai), in one compiled program.

Train from the given weights for ``steps`` steps while the learning rate grows exponentially from
``min_lr`` to ``max_lr``, ``lr_t = min_lr (max_lr / min_lr)^(t / (steps - 1))``, and record the loss
of every batch, smoothed by a debiased exponential moving average (fastai's)::

    avg_t = beta avg_{t-1} + (1 - beta) loss_t,    smoothed_t = avg_t / (1 - beta^(t + 1)).

The test stops once the smoothed loss exceeds ``diverge_factor`` times the best smoothed loss so
far (or is not finite): the step that crossed is the last recorded, later entries are NaN. Under
``jit`` nothing really stops -- the scan runs all steps and masks the rest -- so many range tests
(seeds, candidate ranges) run side by side under ``jax.vmap``, each stopping on its own.

Suggestions, both computed inside the program (so they vmap too):

* ``suggestion``: the learning rate where the smoothed loss falls fastest on its way down: with
  a window of ``k`` steps, the ``i`` minimizing the slope
  ``(smoothed_{i+k} - smoothed_i) / (log lr_{i+k} - log lr_i)`` over the windows that end by the
  lowest smoothed loss, skipping the first ``skip_start`` and the last ``skip_end`` recorded
  steps, and the learning rate in the window's middle, ``lr_{i + k // 2}``. This is fastai's
  "steep" rule (``k = 1``) made robust: the slope over one step of a noisy curve picks noise, and
  a drop after a spike at a too-high learning rate is a recovery, not a descent;
* ``min_loss_suggestion``: a tenth of the learning rate at the lowest smoothed loss (fastai's
  "minimum / 10" rule).

The learning rate is data: :func:`lr_find` passes the schedule ``lr_t`` to your optimizer factory
(every functrain optimizer, and optax's, takes a schedule), so ``min_lr``/``max_lr`` may be traced.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax import lax
from jax.typing import ArrayLike

from functrain import _jax, _tree, _validate
from functrain.optim.base import TransformationLike
from functrain.train.state import init_train_state
from functrain.train.step import make_train_step
from functrain.typing import Array, LossFn, PRNGKey, PyTree, Schedule

__all__ = ["LRFindResult", "lr_find"]


class LRFindResult(NamedTuple):
    """The curves and suggestions of :func:`lr_find` (with a leading axis per vmapped test).

    Attributes:
        lrs: ``(steps,)`` the learning rate of each step.
        losses: ``(steps,)`` the smoothed (debiased EMA) loss; NaN after the test stopped.
        raw_losses: ``(steps,)`` each batch's loss; NaN after the test stopped.
        suggestion: the learning rate of the steepest descent of the smoothed loss (NaN if too few
            steps were recorded).
        min_loss_suggestion: a tenth of the learning rate at the lowest smoothed loss.
        steps_run: int32, the number of recorded steps (``steps`` if it never diverged).

    Example:
        >>> r = ft.train.LRFindResult(jnp.array([0.1, 1.0]), jnp.array([1.0, 0.5]),
        ...                           jnp.array([1.0, 0.4]), jnp.array(0.1), jnp.array(0.1),
        ...                           jnp.array(2))
        >>> int(r.steps_run), r.lrs.shape
        (2, (2,))
    """

    lrs: Array
    losses: Array
    raw_losses: Array
    suggestion: Array
    min_loss_suggestion: Array
    steps_run: Array


def _exponential(min_lr: float | Array, max_lr: float | Array, steps: int) -> Schedule:
    def schedule(step: ArrayLike) -> Array:
        t = jnp.asarray(step, jnp.float32) / (steps - 1)
        low, high = jnp.asarray(min_lr, jnp.float32), jnp.asarray(max_lr, jnp.float32)
        return low * (high / low) ** t

    return schedule


def _batch_indices(key: PRNGKey, n: int, batch_size: int, steps: int) -> Array:
    """``(steps, batch_size)`` indices: shuffled epochs back to back, last partial batches dropped."""
    per_epoch = n // batch_size
    epochs = math.ceil(steps / per_epoch)
    def permutation(k: PRNGKey) -> Array:
        return jax.random.permutation(k, n)[: per_epoch * batch_size]

    perms = jax.vmap(permutation)(jax.random.split(key, epochs))
    return perms.reshape(epochs * per_epoch, batch_size)[:steps]


def _smooth(raw: Array, beta: float | Array, factor: float | None) -> tuple[Array, Array]:
    """Debiased EMA of ``raw`` and the mask of recorded steps (up to and including divergence)."""

    def body(carry: tuple[Array, Array, Array], xs: tuple[Array, Array]) -> tuple[Any, Any]:
        avg, best, stopped = carry
        loss, t = xs
        avg = beta * avg + (1 - beta) * loss
        smooth = avg / (1 - beta ** (t + 1))
        best = jnp.minimum(best, smooth)
        diverged = ~jnp.isfinite(smooth)
        if factor is not None:
            diverged = diverged | (smooth > factor * best)
        return (avg, best, stopped | diverged), (smooth, ~stopped)

    init = (jnp.zeros((), jnp.float32), jnp.asarray(jnp.inf, jnp.float32), jnp.zeros((), bool))
    steps = jnp.arange(raw.shape[0], dtype=jnp.float32)
    _, (smooth, recorded) = lax.scan(body, init, (raw.astype(jnp.float32), steps))
    return smooth, recorded


def _suggest(lrs: Array, smooth: Array, recorded: Array, skip_start: int, skip_end: int,
             window: int) -> tuple[Array, Array, Array]:
    n_run = jnp.sum(recorded).astype(jnp.int32)
    lowest = jnp.argmin(jnp.where(recorded & jnp.isfinite(smooth), smooth, jnp.inf))
    i = jnp.arange(lrs.shape[0] - window)
    slope = (smooth[window:] - smooth[:-window]) / (jnp.log(lrs[window:]) - jnp.log(lrs[:-window]))
    usable = ((i >= skip_start) & (i + window < n_run - skip_end) & (i + window <= lowest)
              & jnp.isfinite(slope))
    steepest = jnp.argmin(jnp.where(usable, slope, jnp.inf))
    suggestion = jnp.where(jnp.any(usable), lrs[steepest + window // 2], jnp.nan)
    return suggestion, lrs[lowest] / 10.0, n_run


def lr_find(loss_fn: LossFn, optimizer: Callable[[Schedule], TransformationLike], params: PyTree,
            model_state: PyTree, data: PyTree, key: PRNGKey, *, min_lr: float | Array = 1e-7,
            max_lr: float | Array = 10.0, steps: int = 100, batch_size: int = 32,
            smoothing: float | Array = 0.98, diverge_factor: float | None = 4.0,
            skip_start: int = 10, skip_end: int = 5, window: int | None = None) -> LRFindResult:
    """Run the learning-rate range test from ``params``; vmapped over a batch of keys if given one.

    See the module docstring for the schedule, the smoothing, the stopping rule and the
    suggestions. Batches are drawn from shuffled epochs of ``data`` (as
    :func:`~functrain.train.train_epoch` draws them), the step is
    :func:`~functrain.train.make_train_step` ``(loss_fn, optimizer(schedule))``, and ``params``
    are not changed (the range test is a throw-away run). With a batch of ``n`` keys the ``n``
    tests (seeds of the batch order and of the loss's randomness, same starting weights) run
    vmapped in one compiled program and every field of the result gets a leading axis ``n``; to
    start each seed from its own weights, ``jax.vmap`` this function over ``params`` yourself.

    Args:
        loss_fn: ``loss_fn(params, model_state, batch, key) -> (loss, (model_state, metrics))``,
            in training mode (e.g. ``classifier_loss(model.apply, train=True)``).
        optimizer: a factory ``schedule -> optimizer``, e.g. ``ft.optim.sgd`` or
            ``lambda lr: ft.optim.sgd(lr, momentum=0.9)``.
        params: the starting parameters.
        model_state: the starting model state (``()`` if none).
        data: a pytree of arrays with a common leading length (e.g. ``(x, y)``).
        key: one PRNG key, or a batch of keys (one test per key, vmapped).
        min_lr: ``> 0``, the first learning rate; may be traced.
        max_lr: ``> min_lr``, the last learning rate; may be traced.
        steps: ``>= skip_start + skip_end + window + 1`` steps (fastai: 100).
        batch_size: examples per step, at most the number of examples.
        smoothing: ``beta`` of the moving average, in ``[0, 1)``.
        diverge_factor: ``> 1``: stop once the smoothed loss exceeds this times the best;
            ``None`` never stops (only non-finite losses do).
        skip_start: the first steps left out of the steepest-descent suggestion.
        skip_end: the last recorded steps left out of it.
        window: ``k >= 1``, the steps over which the slope is measured; default
            ``max(1, steps // 20)``.

    Returns:
        An :class:`LRFindResult`.

    Raises:
        TypeError: ``loss_fn`` or ``optimizer`` not callable, ``optimizer`` not returning a
            gradient transformation, or a bad key.
        ValueError: a learning-rate range, step count, batch size or factor out of range.

    Example:
        >>> def loss_fn(params, model_state, batch, key):  # least squares, y = 2 x
        ...     x, y = batch
        ...     return jnp.mean((x * params - y) ** 2), (model_state, {})
        >>> x = jnp.linspace(-1.0, 1.0, 64)
        >>> result = ft.train.lr_find(loss_fn, ft.optim.sgd, jnp.zeros(()), (), (x, 2 * x),
        ...                           jax.random.split(jax.random.key(0), 4), min_lr=1e-3,
        ...                           max_lr=1e2, steps=40, batch_size=16, smoothing=0.9)
        >>> result.losses.shape, result.suggestion.shape  # 4 seeds in one program
        ((4, 40), (4,))
        >>> bool(jnp.all(result.steps_run < 40))  # each stopped when its loss blew up
        True
        >>> bool(jnp.all((result.suggestion > 0.01) & (result.suggestion < 10)))
        True
    """
    who = "lr_find"
    _validate.check_callable(loss_fn, who, "loss_fn")
    _validate.check_callable(optimizer, who, "optimizer",
                             "a function learning_rate -> gradient transformation (e.g. ft.optim.sgd)")
    low = _validate.check_number(min_lr, who, "min_lr", low=0.0, low_open=True, finite=True)
    high = _validate.check_number(max_lr, who, "max_lr", low=0.0, low_open=True, finite=True)
    if low is not None and high is not None and high <= low:
        _validate.fail(who, "max_lr", f"a number > min_lr ({low:g})", max_lr)
    start = _validate.check_int(skip_start, who, "skip_start", low=0)
    end = _validate.check_int(skip_end, who, "skip_end", low=0)
    span = None if window is None else _validate.check_int(window, who, "window", low=1)
    n_steps = _validate.check_int(steps, who, "steps", low=start + end + (span or 1) + 1)
    span = max(1, n_steps // 20) if span is None else span
    if n_steps < start + end + span + 1:
        _validate.fail(who, "steps", f"an int >= skip_start + skip_end + window + 1 "
                       f"({start + end + span + 1})", steps)
    n = _validate.check_leading_length(data, who, "data")
    bs = _validate.check_batch_size(batch_size, n, who)
    _validate.check_number(smoothing, who, "smoothing", low=0.0, high=1.0, high_open=True)
    factor = None if diverge_factor is None else _validate.check_number(
        diverge_factor, who, "diverge_factor", low=1.0, low_open=True, finite=True)
    _validate.check_transformation(optimizer(_exponential(min_lr, max_lr, n_steps)), who,
                                   "optimizer(schedule)")
    config = _Config(loss_fn, optimizer, n_steps, bs, factor, start, end, span)
    batched = _is_key_batch(key)
    if not batched:
        _validate.check_key(key, who)
    args = (params, model_state, data, key, min_lr, max_lr, smoothing)
    try:
        hash(config)
    except TypeError:  # an unhashable loss function or factory: compiled for this call only
        result: LRFindResult = _jax.jit_training(partial(_many_tests if batched else _one_test, config))(*args)
        return result
    result = _COMPILED[batched](config, *args)
    return result


class _Config(NamedTuple):
    """The static part of a range test (hashable: the compiled program is cached on it)."""

    loss_fn: LossFn
    optimizer: Callable[[Schedule], TransformationLike]
    steps: int
    batch_size: int
    factor: float | None
    skip_start: int
    skip_end: int
    window: int


def _one_test(config: _Config, params: PyTree, model_state: PyTree, data: PyTree, key: PRNGKey,
                min_lr: float | Array, max_lr: float | Array, smoothing: float | Array) -> LRFindResult:
    """One range test, compiled once per configuration (values, data and keys are arguments)."""
    schedule = _exponential(min_lr, max_lr, config.steps)
    opt = config.optimizer(schedule)
    step = make_train_step(config.loss_fn, opt, grad_norm=False)
    k_data, k_steps = jax.random.split(key)
    n = jax.tree_util.tree_leaves(data)[0].shape[0]
    indices = _batch_indices(k_data, n, config.batch_size, config.steps)

    def body(state: Any, xs: tuple[Array, PRNGKey]) -> tuple[Any, Array]:
        idx, k_step = xs
        batch = _tree.tree_map(lambda leaf: jnp.asarray(leaf)[idx], data)
        state, metrics = step(state, batch, k_step)
        return state, metrics["loss"]

    state = init_train_state(params, model_state, opt)
    _, raw = lax.scan(body, state, (indices, jax.random.split(k_steps, config.steps)))
    lrs = schedule(jnp.arange(config.steps))
    smooth, recorded = _smooth(raw, smoothing, config.factor)
    suggestion, by_min, n_run = _suggest(lrs, smooth, recorded, config.skip_start, config.skip_end,
                                         config.window)
    nan = jnp.asarray(jnp.nan, jnp.float32)
    return LRFindResult(lrs, jnp.where(recorded, smooth, nan),
                        jnp.where(recorded, raw.astype(jnp.float32), nan), suggestion, by_min, n_run)


def _many_tests(config: _Config, params: PyTree, model_state: PyTree, data: PyTree, keys: PRNGKey,
                min_lr: float | Array, max_lr: float | Array, smoothing: float | Array) -> LRFindResult:
    """One range test per key, vmapped in one compiled program."""
    def one(key: PRNGKey) -> LRFindResult:
        return _one_test(config, params, model_state, data, key, min_lr, max_lr, smoothing)

    result: LRFindResult = jax.vmap(one)(keys)
    return result


# Compiled once per configuration (and shapes): equal loss functions and factories hit the cache.
_COMPILED = {False: _jax.jit_training(_one_test, static_argnums=0),
             True: _jax.jit_training(_many_tests, static_argnums=0)}


def _is_key_batch(key: object) -> bool:
    if not isinstance(key, jax.Array):
        return False
    if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        return key.ndim == 1
    return key.dtype == jnp.uint32 and key.ndim == 2
