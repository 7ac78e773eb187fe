"""Many runs in one compiled program: seeds and hyperparameter sweeps with ``jax.vmap``.

A *run* is a pure function ``train_fn(key) -> results`` (or ``train_fn(key, hparams) -> results``
for sweeps) that does everything: initialize the model, train every epoch inside ``lax.scan``
(for example with :func:`~functrain.train.fit_scan`), and return whatever should be kept: final
metrics, the per-epoch history, even the parameters. Because the whole run is one pure function,
``jax.vmap`` turns N runs into one XLA program whose matrix products are batched over runs, which
is much faster than N separate runs on any accelerator (and on a CPU for small models).

Everything a run uses works inside: layers with batch norm and dropout, optimizers with schedules
and clipping, early stopping (each run stops on its own; its state freezes via ``jnp.where``),
reduce-on-plateau and weight averaging. Hyperparameters enter as traced arrays, so a grid over
learning rates, momenta, weight decays or dropout rates (``Dropout(hparams["rate"])`` built inside
the run) needs no recompilation.

Memory grows linearly with the number of simultaneous runs. ``chunk_size`` bounds it: runs are
then computed ``chunk_size`` at a time with ``lax.map`` over chunks of vmapped runs (a remainder
chunk is handled too).

What holds across chunk sizes: every run computes the same function of its key, but a batch of
another size is another XLA program, which may order floating-point operations differently (how a
reduction is split, how a matrix product is tiled). So chunked and unchunked results agree up to
floating-point rounding, not bit for bit: a single float32 computation differs by a few ulps
(e.g. ~3e-8 on values near 1), and a training run can amplify such differences step after step
(Adam turns round-off in nearly-zero gradients into learning-rate-sized steps). Results are
bitwise reproducible for the same keys, the same ``chunk_size`` and the same device: rerunning
gives identical values. Integer results computed without floats (counters, the keys' own bits)
are identical across chunk sizes; integers derived from floats (an argmax, an early-stopping
epoch) can flip on a near tie.

Example:
    >>> def run(key):
    ...     return {"norm": jnp.linalg.norm(jax.random.normal(key, (64,)))}
    >>> keys = jax.random.split(jax.random.key(0), 6)
    >>> whole = ft.train.run_seeds(run, keys).results["norm"]
    >>> chunked = ft.train.run_seeds(run, keys, chunk_size=4).results["norm"]
    >>> bool(jnp.allclose(whole, chunked, rtol=1e-6))  # equal up to float rounding
    True
    >>> again = ft.train.run_seeds(run, keys, chunk_size=4).results["norm"]
    >>> bool(jnp.all(again == chunked))  # the same chunk size: bitwise the same
    True
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Generic, NamedTuple, TypeVar

import jax
import jax.numpy as jnp
import numpy as np

from functrain import _jax, _tree, _validate
from functrain.typing import Array, PRNGKey, PyTree

__all__ = ["RunResults", "Stats", "grid", "run_seeds", "summarize", "sweep"]

R = TypeVar("R")
H = TypeVar("H")


class Stats(NamedTuple):
    """Summary statistics of one result over the seed axis (population std, ``ddof=0``).

    Example:
        >>> stats = ft.train.summarize({"acc": jnp.array([0.5, 0.7, 0.9])})["acc"]
        >>> isinstance(stats, ft.train.Stats), [round(float(v), 4) for v in stats]
        (True, [0.7, 0.1633, 0.5, 0.9])
    """

    mean: Array
    std: Array
    min: Array
    max: Array


class RunResults(NamedTuple, Generic[R]):
    """The stacked results of many runs and their summary over seeds.

    Attributes:
        results: ``train_fn``'s output with leading axes ``(n_seeds,)`` for :func:`run_seeds`
            or ``(n_configs, n_seeds)`` for :func:`sweep`.
        summary: the same tree with every floating/integer array leaf replaced by
            :class:`Stats` over the seed axis (leading axis ``(n_configs,)`` for sweeps); other
            leaves become ``None``.

    Example:
        >>> runs = ft.train.run_seeds(lambda key: {"x": jax.random.normal(key, (2,))},
        ...                           jax.random.split(jax.random.key(0), 5))
        >>> isinstance(runs, ft.train.RunResults), runs.results["x"].shape, runs.summary["x"].mean.shape
        (True, (5, 2), (2,))
    """

    results: R
    summary: PyTree


def _check_keys(keys: object, who: str) -> Array:
    """The keys as a JAX array (NumPy raw keys accepted), at least one of them."""
    if isinstance(keys, np.ndarray):
        keys = jnp.asarray(keys)
    n = _validate.check_keys(keys, who)
    if not isinstance(keys, jax.Array) or n < 1:  # (check_keys refuses non-arrays already)
        _validate.fail(who, "keys", "at least one PRNG key", keys)
    return keys


def _check_run_args(train_fn: object, keys: object, chunk_size: object, jit: object,
                    who: str) -> tuple[Array, int | None]:
    _validate.check_callable(train_fn, who, "train_fn", "a function (a whole training run)")
    checked = _check_keys(keys, who)
    chunk = None if chunk_size is None else _validate.check_int(chunk_size, who, "chunk_size", low=1)
    _validate.check_bool(jit, who, "jit")
    return checked, chunk


def _batched(fn: Callable[[Any], R], xs: PyTree, n: int, chunk_size: int | None) -> R:
    """``vmap(fn)(xs)``, or in chunks of ``chunk_size`` runs with ``lax.map``."""
    if chunk_size is None or chunk_size >= n:
        return jax.vmap(fn)(xs)
    out: R = _jax.lax_map(fn, xs, batch_size=chunk_size)
    return out


def _stats(x: Array, axis: int) -> Stats:
    xf = x.astype(jnp.promote_types(x.dtype, jnp.float32))
    return Stats(jnp.mean(xf, axis), jnp.std(xf, axis), jnp.min(x, axis), jnp.max(x, axis))


def summarize(results: PyTree, *, axis: int = 0) -> PyTree:
    """Mean, std, min and max of every numeric array leaf of ``results`` over ``axis``.

    Args:
        results: a pytree of stacked results (e.g. ``run_seeds(...).results``).
        axis: the seed axis.

    Returns:
        The same tree with each numeric array leaf replaced by a :class:`Stats`; non-numeric
        leaves (and PRNG keys) become ``None``.

    Example:
        >>> summary = ft.train.summarize({"loss": jnp.array([[1.0, 2.0], [3.0, 4.0]])})
        >>> summary["loss"].mean.tolist(), summary["loss"].max.tolist()
        ([2.0, 3.0], [3.0, 4.0])
    """
    axis = _validate.check_int(axis, "summarize", "axis", low=0)

    def one(x: Any) -> Stats | None:
        if _tree.is_array(x) and x.ndim > axis and (
                jnp.issubdtype(x.dtype, jnp.number) or x.dtype == jnp.bool_):
            return _stats(jnp.asarray(x), axis)
        return None

    return _tree.tree_map(one, results)


def run_seeds(train_fn: Callable[[PRNGKey], R], keys: Array, *,
              chunk_size: int | None = None, jit: bool = True) -> RunResults[R]:
    """Run ``train_fn`` once per key, all runs vmapped into one compiled program.

    ``run_seeds(train_fn, keys).results`` equals ``[train_fn(k) for k in keys]`` stacked (up to
    floating-point reassociation; see the module docstring for what holds across chunk sizes).
    Without ``chunk_size`` the compiled program is ``jax.jit(jax.vmap(train_fn))`` (bitwise the
    same results) plus the summary's few reductions over the seed axis: it runs at the speed of
    a hand-compiled ``jit(vmap(train_fn))`` (see the README's benchmark).

    Args:
        train_fn: a whole training run, ``key -> results`` (pure; any pytree of arrays out).
        keys: ``(n_seeds,)`` typed keys, e.g. ``jax.random.split(jax.random.key(0), 8)``, or
            raw ``(n_seeds, 2)`` uint32 keys.
        chunk_size: at most this many runs at once (``lax.map`` over vmapped chunks); ``None``
            runs all at once. Results agree with the unchunked ones up to float rounding, and are
            bitwise reproducible for a given chunk size.
        jit: compile the batched program with ``jax.jit`` (disable when calling from inside
            an outer jit). The compiled program is cached per ``train_fn`` object (and key
            shape, chunk size): define ``train_fn`` once and call ``run_seeds`` again with new
            keys without recompiling; a new lambda or closure per call recompiles.

    Returns:
        :class:`RunResults` with results stacked along a leading seed axis and their summary.

    Raises:
        TypeError: ``train_fn`` not callable, ``keys`` not PRNG keys, a non-int ``chunk_size``.
        ValueError: no keys, malformed keys or ``chunk_size < 1``.

    Example:
        >>> def run(key):  # a whole "training run": here, the mean of 4 random draws
        ...     return {"score": jnp.mean(jax.random.uniform(key, (4,)))}
        >>> keys = jax.random.split(jax.random.key(0), 6)
        >>> runs = ft.train.run_seeds(run, keys, chunk_size=4)  # 4 runs at a time
        >>> runs.results["score"].shape
        (6,)
        >>> bool(jnp.allclose(runs.results["score"][2], run(keys[2])["score"]))
        True
    """
    checked, chunk = _check_run_args(train_fn, keys, chunk_size, jit, "run_seeds")
    return (_run_seeds_jit if jit else _run_seeds_impl)(train_fn, checked, chunk)


def _run_seeds_impl(train_fn: Callable[[PRNGKey], R], keys: Array, chunk: int | None) -> RunResults[R]:
    results = _batched(train_fn, keys, keys.shape[0], chunk)
    return RunResults(results, summarize(results))  # inside the one compiled program


# One jitted function with ``train_fn`` static: calling run_seeds again with the same train_fn
# (and key shape) reuses the compiled program instead of tracing a fresh closure.
_run_seeds_jit = _jax.jit_training(_run_seeds_impl, static_argnums=(0, 2))


def grid(**axes: Sequence[float] | Array) -> dict[str, Array]:
    """The Cartesian product of hyperparameter values, as a dict of equal-length 1-d arrays.

    ``grid(lr=[0.1, 0.01], wd=[0.0, 1e-4])`` gives ``{"lr": [0.1, 0.1, 0.01, 0.01],
    "wd": [0.0, 1e-4, 0.0, 1e-4]}`` (first name varies slowest), ready for :func:`sweep`.

    Raises:
        ValueError: no axes, or an axis with no values or more than one dimension.

    Example:
        >>> g = ft.train.grid(lr=[0.1, 0.01], wd=[0.0, 1e-4])
        >>> [round(float(v), 4) for v in g["lr"]], [round(float(v), 4) for v in g["wd"]]
        ([0.1, 0.1, 0.01, 0.01], [0.0, 0.0001, 0.0, 0.0001])
    """
    if not axes:
        _validate.fail("grid", "axes", "at least one named axis, e.g. grid(lr=[0.1, 0.01])", axes)
    values: dict[str, Array] = {}
    for name, v in axes.items():
        a = jnp.asarray(v)
        if a.ndim != 1 or a.shape[0] == 0:
            _validate.fail("grid", name, "a non-empty 1-d sequence of values", a)
        values[name] = a
    mesh: list[Array] = jnp.meshgrid(*values.values(), indexing="ij")
    return {name: m.reshape(-1) for name, m in zip(values, mesh)}


def sweep(train_fn: Callable[[PRNGKey, H], R], keys: Array, hyperparams: H, *,
          chunk_size: int | None = None, jit: bool = True) -> RunResults[R]:
    """Run every hyperparameter configuration with every seed, in one compiled program.

    ``hyperparams`` is a pytree of arrays sharing a leading configuration axis ``G`` (for example
    from :func:`grid`, or ``{"lr": jnp.array([...])}``); configuration ``g`` is the tree's slice
    ``g``. Result ``[g, s]`` equals ``train_fn(keys[s], hyperparams[g])``: the seeds are shared
    across configurations (common random numbers make configurations comparable).

    Args:
        train_fn: ``(key, hparams) -> results``, with ``hparams`` one configuration (a tree of
            scalars, traced inside the sweep).
        keys: ``(n_seeds,)`` keys as for :func:`run_seeds`.
        hyperparams: a pytree of arrays with a common leading length ``G``.
        chunk_size: at most this many runs (of the ``G * n_seeds``) at once.
        jit: compile with ``jax.jit``.

    Returns:
        :class:`RunResults` with leading axes ``(G, n_seeds)``; the summary is over seeds, per
        configuration (leading axis ``G``).

    Raises:
        TypeError: as :func:`run_seeds`, or ``hyperparams`` holding non-arrays.
        ValueError: malformed keys, an empty grid, or leaves with different leading lengths.

    Example:
        >>> def run(key, hp):  # a "training run" with a learning rate
        ...     return hp["lr"] * jax.random.uniform(key)
        >>> keys = jax.random.split(jax.random.key(0), 3)
        >>> runs = ft.train.sweep(run, keys, ft.train.grid(lr=[1.0, 2.0]))
        >>> runs.results.shape, bool(jnp.allclose(runs.results[1], 2 * runs.results[0]))
        ((2, 3), True)
    """
    who = "sweep"
    checked, chunk = _check_run_args(train_fn, keys, chunk_size, jit, who)
    _validate.check_leading_length(hyperparams, who, "hyperparams")
    return (_sweep_jit if jit else _sweep_impl)(train_fn, checked, hyperparams, chunk)


def _sweep_impl(train_fn: Callable[[PRNGKey, H], R], keys: Array, hyperparams: H,
                chunk: int | None) -> RunResults[R]:
    n_seeds = keys.shape[0]
    n_configs = _tree.tree_leaves(hyperparams)[0].shape[0]
    # Flatten (config, seed) pairs into one run axis, then restore (G, S).
    hp_rep = _tree.tree_map(lambda x: jnp.repeat(jnp.asarray(x), n_seeds, axis=0), hyperparams)
    k_rep = jnp.tile(keys, (n_configs,) + (1,) * (keys.ndim - 1))
    flat = _batched(lambda a: train_fn(a[0], a[1]), (k_rep, hp_rep), n_configs * n_seeds, chunk)
    out: R = _tree.tree_map(lambda x: x.reshape((n_configs, n_seeds) + x.shape[1:]), flat)
    return RunResults(out, summarize(out, axis=1))


_sweep_jit = _jax.jit_training(_sweep_impl, static_argnums=(0, 3))


