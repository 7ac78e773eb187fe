"""One epoch inside ``lax.scan`` (:func:`train_epoch`) and batched evaluation (:func:`evaluate`).

Both are pure functions of arrays that compile themselves: called with concrete arrays (a Python
loop over epochs), each runs one cached compiled program per step function, ``batch_size`` and
argument shapes and dtypes, so only the first call compiles. Called under a trace (inside the
user's ``jax.jit``, ``jax.vmap``, ``lax.scan`` or ``jax.grad``), they trace inline into the outer
program. :mod:`functrain.train.run` and :mod:`functrain.train.fit` build whole runs on them.

Data is a pytree (usually a tuple ``(x, y)``) of arrays with a common leading length ``n``,
resident on the device. The batch given to the step has the same structure.

Shuffling rule: :func:`train_epoch` with key ``k`` splits ``perm_key, step_key = split(k)``, draws
``perm = permutation(perm_key, n)`` and gives step ``i`` the batch
``perm[i * batch_size:(i + 1) * batch_size]`` and the key ``split(step_key, n_batches)[i]``. The
last partial batch (``n % batch_size`` examples) is dropped, so every step sees a full batch (one
compiled shape); since the permutation changes every epoch, every example is used across epochs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import jax
import jax.numpy as jnp
from jax import lax

from functrain import _jax, _tree, _validate
from functrain.train._labels import check_entry_labels
from functrain.train.state import TS, TrainState
from functrain.train.step import EvalStep, TrainStep
from functrain.typing import Array, Metrics, PRNGKey, PyTree

if TYPE_CHECKING:
    from typing_extensions import TypeIs

__all__ = ["compiler_options", "evaluate", "train_epoch"]


def compiler_options() -> dict[str, Any]:
    """The XLA options functrain compiles its own training programs with (a fresh dict).

    :func:`train_epoch`, :func:`evaluate`, ``fit``, ``run_seeds``, ``sweep`` and ``lr_find``
    compile themselves with these when called outside a trace. Pass them to your own ``jax.jit``
    to get the same program: ``jax.jit(epoch, compiler_options=ft.train.compiler_options())``.

    * ``xla_cpu_copy_insertion_use_region_analysis``: inside a training loop, a hidden layer's
      kernel is read by the backward pass and updated in place by the optimizer in the same
      iteration; without region analysis XLA:CPU's copy insertion cannot prove the reads come
      first and copies the kernel every step. With it, no copy: a scanned epoch of the 64-512-512-10
      MLP (batch 64, Adam) measured 5-6% faster on a 2-core x86 CPU (jax 0.10.2). Numerics and
      compile time are unchanged; other backends ignore the option.

    Example:
        >>> import functools
        >>> sorted(ft.train.compiler_options())
        ['xla_cpu_copy_insertion_use_region_analysis']
        >>> model = ft.serial(ft.layers.Dense(3))
        >>> params, model_state, _ = model.init(jax.random.key(0), (-1, 4))
        >>> opt = ft.optim.sgd(0.1)
        >>> step = ft.train.make_train_step(ft.train.classifier_loss(model.apply, train=True), opt)
        >>> epoch = jax.jit(functools.partial(ft.train.train_epoch, step, batch_size=4),
        ...                 donate_argnums=0, compiler_options=ft.train.compiler_options())
        >>> state = ft.train.init_train_state(params, model_state, opt)
        >>> data = (jnp.ones((8, 4)), jnp.zeros(8, jnp.int32))
        >>> state, metrics = epoch(state, data, jax.random.key(1))
        >>> int(state.step)
        2
    """
    return dict(_jax.TRAINING_COMPILER_OPTIONS)


def batch_indices(key: PRNGKey, n: int, batch_size: int) -> Array:
    """``(n_batches, batch_size)`` example indices of the batches of an epoch with key ``key``.

    The shuffling rule of the module docstring, shared by :func:`train_epoch` and the host-side
    diagnosis of :func:`~functrain.train.fit` (which names the examples of a failing batch).
    """
    n_batches = n // batch_size
    perm_key, _ = jax.random.split(key)
    perm = jax.random.permutation(perm_key, n)[: n_batches * batch_size]
    return perm.reshape(n_batches, batch_size)


def _shuffled_batches(data: PyTree, key: PRNGKey, n: int, batch_size: int) -> tuple[PyTree, Array]:
    """``(batches, step_keys)``: data gathered once by a fresh permutation, shaped ``(n_batches, batch, ...)``."""
    n_batches = n // batch_size
    perm = batch_indices(key, n, batch_size).reshape(-1)
    _, step_key = jax.random.split(key)

    def gather(x: Array) -> Array:
        x = jnp.asarray(x)
        return x.at[perm].get(mode="promise_in_bounds").reshape((n_batches, batch_size) + x.shape[1:])

    return _tree.tree_map(gather, data), jax.random.split(step_key, n_batches)


def scan_steps(step: TrainStep[TS], state: TS, data: PyTree, key: PRNGKey, batch_size: int,
               who: str, data_name: str = "data",
               batch_name: str = "batch_size") -> tuple[TS, dict[str, Array]]:
    """Run one epoch; return the new state and the per-step metrics, each of shape ``(n_batches,)``.

    Shared by :func:`train_epoch` and :func:`~functrain.train.fit_epoch` (which needs the
    per-step losses); ``who``, ``data_name`` and ``batch_name`` name the caller and its
    arguments in errors.
    """
    _validate.check_callable(step, who, "step", "a train step function")
    n = _validate.check_leading_length(data, who, data_name)
    bs = _validate.check_batch_size(batch_size, n, who, batch_name)
    batches, keys = _shuffled_batches(data, key, n, bs)

    # The carry is typed Any: lax.scan itself enforces that the step returns a state of the
    # same structure, shapes and dtypes, i.e. the caller's TS.
    def body(s: Any, xs: tuple[PyTree, Array]) -> tuple[Any, Metrics]:
        batch, k = xs
        return step(s, batch, k)

    new_state, per_step = lax.scan(body, state, (batches, keys))
    return new_state, dict(per_step)


def mean_metrics(per_step: Mapping[str, Array]) -> dict[str, Array]:
    """Each per-step metric averaged over the epoch's steps (axis 0)."""
    return {name: jnp.mean(v, axis=0) for name, v in per_step.items()}


F = TypeVar("F", bound=Callable[..., Any])


class _ByIdentity(Generic[F]):
    """A static ``jax.jit`` argument for a function that is not hashable: equal to itself only.

    The jit cache holds it (and so the function) alive, so an ``id`` is never reused for another.
    """

    __slots__ = ("fn",)

    def __init__(self, fn: F) -> None:
        self.fn = fn

    def __hash__(self) -> int:
        return id(self.fn)

    def __eq__(self, other: object) -> bool:
        return _is_by_identity(other) and other.fn is self.fn


def _is_by_identity(x: object) -> TypeIs[_ByIdentity[Any]]:
    return isinstance(x, _ByIdentity)


def _static(fn: F) -> F | _ByIdentity[F]:
    """``fn`` itself when it is hashable (functions, bound methods, frozen dataclasses), else
    wrapped to compare by identity: the cache key of the compiled program."""
    try:
        hash(fn)
    except TypeError:
        return _ByIdentity(fn)
    return fn


def _unwrap(fn: Any) -> Any:
    return fn.fn if _is_by_identity(fn) else fn


def _traced(*trees: PyTree) -> bool:
    """Whether any leaf is a tracer: the call is inside the user's jit/vmap/scan/grad."""
    return any(_validate.is_traced(leaf) for tree in trees for leaf in _tree.tree_leaves(tree))


def _epoch(step: Any, state: TS, data: PyTree, key: PRNGKey, batch_size: int) -> tuple[TS, dict[str, Array]]:
    new_state, per_step = scan_steps(_unwrap(step), state, data, key, batch_size, "train_epoch")
    return new_state, mean_metrics(per_step)


# One compiled program per (step, batch_size, argument shapes/dtypes): a Python loop over epochs
# compiles once. Not donated: the caller's state stays valid.
_epoch_jit = _jax.jit_training(_epoch, static_argnums=(0, 4))


def train_epoch(
    step: TrainStep[TS],
    state: TS,
    data: PyTree,
    key: PRNGKey,
    *,
    batch_size: int,
    num_classes: int | None = None,
    check_labels: bool = True,
) -> tuple[TS, dict[str, Array]]:
    """One epoch of minibatch training, with all steps inside a single ``lax.scan``.

    The data is shuffled by a permutation drawn from ``key`` and gathered once into
    ``(n_batches, batch_size, ...)`` (so each scan iteration only slices its batch); the last
    partial batch is dropped (see the module docstring for the exact key schedule). Pure: vmap
    it over keys and states, scan or jit it (``batch_size`` and ``step`` static).

    Compiled once: called with concrete arrays, the epoch runs as one cached compiled program per
    ``step`` object, ``batch_size`` and shapes/dtypes of ``state``, ``data`` and ``key``, so a
    Python loop over epochs compiles only at the first one (build ``step`` once, outside the
    loop: a new step function is a new program). Called under a trace (inside your own
    ``jax.jit``, ``jax.vmap``, ``lax.scan`` ...), it traces inline into your program. The
    argument and label checks below always run eagerly, before the compiled program.

    Labels: for ``(x, y)`` data with integer ``y`` given as concrete arrays, the labels are
    checked on the host before the epoch runs: each must be ``>= 0`` and ``< num_classes`` when
    the number of classes is known (``num_classes``, or the size of the model's output when
    ``step`` was built from ``classifier_loss``); an out-of-range label would otherwise give a NaN
    loss or silently train on the wrong class. Under ``jax.jit`` the data is traced and not
    checked (check it once outside).

    Args:
        step: ``step(state, batch, key) -> (state, metrics)``, e.g. from ``make_train_step``.
        state: the training state.
        data: a pytree (usually a tuple) of arrays with a common leading length ``n``.
        key: the PRNG key of this epoch (shuffling and per-step keys).
        batch_size: examples per step, ``1 <= batch_size <= n`` (a static Python or NumPy int).
        num_classes: the number of classes of integer labels ``y`` in ``(x, y)`` data; ``None``:
            found from the model when possible, else only ``y >= 0`` is checked.
        check_labels: check the labels as described above (``False``: integer targets that are
            not class labels, e.g. negative "ignore" markers).

    Returns:
        ``(new_state, metrics)`` with each metric averaged over the epoch's steps.

    Raises:
        ValueError: if the arrays have different leading lengths, ``data`` is empty,
            ``batch_size`` is not in ``[1, n]``, or a label is out of range (the message gives
            how many and the first one's index).
        TypeError: if ``step`` is not callable, ``batch_size`` is not an int or ``data`` holds
            non-arrays.

    Example:
        >>> model = ft.serial(ft.layers.Dense(3))
        >>> params, model_state, _ = model.init(jax.random.key(0), (-1, 4))
        >>> opt = ft.optim.sgd(0.1)
        >>> state = ft.train.init_train_state(params, model_state, opt)
        >>> step = ft.train.make_train_step(ft.train.classifier_loss(model.apply, train=True), opt)
        >>> data = (jnp.ones((10, 4)), jnp.zeros(10, jnp.int32))
        >>> state, metrics = ft.train.train_epoch(step, state, data, jax.random.key(1), batch_size=4)
        >>> int(state.step), sorted(metrics)  # 10 // 4 = 2 full batches; the last 2 examples wait
        (2, ['accuracy', 'loss'])
        >>> bad = (jnp.ones((10, 4)), jnp.full(10, 3, jnp.int32))  # the model has 3 classes
        >>> try:
        ...     ft.train.train_epoch(step, state, bad, jax.random.key(1), batch_size=4, num_classes=3)
        ... except ValueError as error:
        ...     print(error)
        train_epoch: argument 'data[1]' must be class labels in [0, 3), got 10 out of range
        (the first at index 0: 3)
    """
    who = "train_epoch"
    check_entry_labels(who, step, state, [(data, "data")], num_classes, check_labels)
    _validate.check_callable(step, who, "step", "a train step function")
    bs = _validate.check_batch_size(batch_size, _validate.check_leading_length(data, who), who, "batch_size")
    if _traced(state, data, key):
        return _epoch(step, state, data, key, bs)
    result: tuple[TS, dict[str, Array]] = _epoch_jit(_static(step), state, data, key, bs)
    return result


def evaluate(
    eval_step: EvalStep[TS],
    state: TS,
    data: PyTree,
    *,
    batch_size: int,
) -> dict[str, Array]:
    """Evaluate on all of ``data`` in batches, including the last partial batch.

    The ``n // batch_size`` full batches run in one ``lax.map``; the remaining ``r`` examples run
    as one smaller batch (one extra compiled shape). Each metric, a per-batch mean, is combined
    as the example-weighted average ``(batch_size * sum_full + r * tail) / n``, which is the mean
    over all ``n`` examples. ``batch_size`` larger than ``n`` means one batch of ``n``. Pure;
    compiled once like :func:`train_epoch`: with concrete arrays it runs one cached compiled
    program per ``eval_step`` object, ``batch_size`` and argument shapes; under a trace (your own
    ``jax.jit``, ``jax.vmap`` ...) it traces inline.

    Args:
        eval_step: ``eval_step(state, batch) -> metrics``, e.g. from ``make_eval_step``.
        state: the training state to evaluate.
        data: a pytree of arrays with a common leading length ``n``.
        batch_size: examples per evaluation batch (>= 1).

    Returns:
        The metrics averaged over all ``n`` examples.

    Raises:
        ValueError: if the arrays have different leading lengths, ``data`` is empty,
            ``batch_size < 1``, or ``eval_step`` returns other metrics for the last batch.
        TypeError: if ``eval_step`` is not callable or ``batch_size`` is not an int.

    Example:
        >>> def eval_step(state, batch):
        ...     return {"loss": jnp.mean(batch[0])}
        >>> state = ft.train.TrainState(jnp.zeros((), jnp.int32), (), (), ())
        >>> data = (jnp.arange(5.0),)  # batches [0, 1], [2, 3] and the tail [4]
        >>> float(ft.train.evaluate(eval_step, state, data, batch_size=2)["loss"])
        2.0
    """
    who = "evaluate"
    _validate.check_callable(eval_step, who, "eval_step", "an eval step function")
    n = _validate.check_leading_length(data, who)
    bs = min(_validate.check_int(batch_size, who, "batch_size", low=1), n)
    if _traced(state, data):
        return _evaluate(eval_step, state, data, bs)
    result: dict[str, Array] = _evaluate_jit(_static(eval_step), state, data, bs)
    return result


def _evaluate(eval_step: Any, state: TrainState[Any, Any, Any], data: PyTree, bs: int) -> dict[str, Array]:
    """:func:`evaluate`'s program, with ``bs <= n`` checked."""
    who = "evaluate"
    eval_step = _unwrap(eval_step)
    n = _validate.check_leading_length(data, who)
    n_batches, rest = divmod(n, bs)

    def full(x: Array) -> Array:
        x = jnp.asarray(x)
        return x[: n_batches * bs].reshape((n_batches, bs) + x.shape[1:])

    per_batch = _jax.lax_map(lambda b: dict(eval_step(state, b)), _tree.tree_map(full, data))
    totals = {name: jnp.sum(v, axis=0) * bs for name, v in per_batch.items()}
    if rest:
        tail = eval_step(state, _tree.tree_map(lambda x: jnp.asarray(x)[n_batches * bs:], data))
        if set(tail) != set(totals):
            raise ValueError(f"{who}: argument 'eval_step' must be a function returning the "
                             f"same metrics for every batch, got {sorted(tail)} for the last batch and {sorted(totals)} "
                             "for the others")
        totals = {name: totals[name] + tail[name] * rest for name in totals}
    return {name: v / n for name, v in totals.items()}


_evaluate_jit = _jax.jit_training(_evaluate, static_argnums=(0, 3))
