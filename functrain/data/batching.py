"""Splitting data into train/test parts and iterating over minibatches (host side).

``data`` is any pytree of arrays that share their leading (sample) axis, typically ``(x, y)``::

    (x_tr, y_tr), (x_te, y_te) = train_test_split(key, x, y, test_fraction=0.2)
    for xb, yb in batches((x_tr, y_tr), 128, key=epoch_key):
        state, metrics = step(state, (xb, yb), step_key)

Shuffling is a random permutation drawn from an explicit key, so an epoch's order is a
deterministic function of its key. For whole epochs compiled into one ``lax.scan``, see
``functrain.train.train_epoch``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import TypeVar

import jax
import jax.numpy as jnp
import numpy as np

from functrain import _tree
from functrain.typing import Array, ArrayLike, PRNGKey

__all__ = ["batches", "num_batches", "train_test_split"]

T = TypeVar("T")


def _check_batch_size(batch_size: int, who: str) -> int:
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)):
        raise TypeError(f"{who}: argument 'batch_size' must be an int, got {batch_size!r}")
    if batch_size <= 0:
        raise ValueError(f"{who}: argument 'batch_size' must be > 0, got {batch_size}")
    return int(batch_size)


def num_batches(n: int, batch_size: int, *, drop_last: bool = False) -> int:
    """The number of minibatches of ``batch_size`` in ``n`` examples.

    Args:
        n: number of examples (>= 0).
        batch_size: examples per batch (> 0).
        drop_last: drop a final, smaller batch (``floor``) instead of keeping it (``ceil``).

    Returns:
        ``n // batch_size`` if ``drop_last`` else ``ceil(n / batch_size)``.

    Raises:
        ValueError: ``n < 0`` or ``batch_size <= 0``.
    """
    batch_size = _check_batch_size(batch_size, "num_batches")
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
        raise ValueError(f"num_batches: argument 'n' must be an int >= 0, got {n!r}")
    return int(n) // batch_size if drop_last else math.ceil(int(n) / batch_size)


def _leading_length(data: object, who: str) -> int:
    pairs = _tree.tree_leaves_with_path(data)
    if not pairs:
        raise ValueError(f"{who}: argument 'data' has no arrays")
    lengths: dict[str, int] = {}
    for path, leaf in pairs:
        shape = np.shape(leaf)
        if len(shape) == 0:
            raise ValueError(
                f"{who}: every array in 'data' needs a leading sample axis, but leaf "
                f"{path or '<root>'} is a scalar"
            )
        lengths[path or "<root>"] = int(shape[0])
    if len(set(lengths.values())) > 1:
        raise ValueError(
            f"{who}: the arrays in 'data' must have the same number of examples (leading axis), "
            f"got {lengths}"
        )
    return next(iter(lengths.values()))


def batches(
    data: T,
    batch_size: int,
    *,
    key: PRNGKey | None = None,
    drop_last: bool = False,
) -> Iterator[T]:
    """Iterate over minibatches of ``data``, shuffled when a ``key`` is given.

    Each batch has ``data``'s structure with every leaf sliced along its leading axis (NumPy leaves
    stay NumPy, JAX leaves stay JAX). Without ``key`` the order is the data's own order.

    Args:
        data: a pytree of arrays with a common leading axis of length ``n``, e.g. ``(x, y)``.
        batch_size: examples per batch (> 0).
        key: PRNG key of a random permutation of the examples (new key each epoch), or ``None``.
        drop_last: drop the final batch if it has fewer than ``batch_size`` examples (keeps every
            batch the same shape, so a jitted step compiles once).

    Yields:
        :func:`num_batches` ``(n, batch_size, drop_last=drop_last)`` batches.

    Raises:
        ValueError: ``batch_size <= 0``, no arrays, scalar leaves, or leaves of different lengths.
    """
    who = "batches"
    batch_size = _check_batch_size(batch_size, who)
    n = _leading_length(data, who)
    order = np.asarray(jax.random.permutation(key, n)) if key is not None else np.arange(n)
    stop = num_batches(n, batch_size, drop_last=drop_last) * batch_size
    return (_tree.tree_map(lambda leaf: leaf[order[i:min(i + batch_size, n)]], data)
            for i in range(0, min(stop, n), batch_size))


def train_test_split(
    key: PRNGKey, *arrays: ArrayLike, test_fraction: float = 0.2
) -> tuple[tuple[Array, ...], tuple[Array, ...]]:
    """Randomly split arrays that share a leading axis into a train and a test part.

    The examples are permuted with ``jax.random.permutation(key, n)``; the first
    ``ceil(test_fraction * n)`` go to the test part, the rest to the train part, the same rows of
    every array.

    Args:
        key: PRNG key of the permutation.
        *arrays: one or more arrays of shape ``(n, ...)``, e.g. ``x`` and ``y``.
        test_fraction: fraction of examples in the test part, in ``(0, 1)``.

    Returns:
        ``(train, test)``: two tuples with one array per input, e.g.
        ``(x_train, y_train), (x_test, y_test)``.

    Raises:
        ValueError: no arrays, arrays of different lengths, ``test_fraction`` outside ``(0, 1)``,
            or a split that would leave either part empty.
    """
    who = "train_test_split"
    if not arrays:
        raise ValueError(f"{who}: pass at least one array to split")
    fraction = float(test_fraction)
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"{who}: argument 'test_fraction' must be in (0, 1), got {test_fraction!r}")
    arrs = tuple(jnp.asarray(a) for a in arrays)
    for position, a in enumerate(arrs):
        if a.ndim == 0:
            raise ValueError(f"{who}: array {position} is a scalar; arrays need a leading sample axis")
    lengths = [int(a.shape[0]) for a in arrs]
    if len(set(lengths)) > 1:
        raise ValueError(f"{who}: arrays must have the same number of examples, got lengths {lengths}")
    n = lengths[0]
    n_test = math.ceil(fraction * n)
    if not 0 < n_test < n:
        raise ValueError(
            f"{who}: test_fraction={fraction} of {n} examples gives {n_test} test examples; "
            "both parts must be non-empty"
        )
    perm = jax.random.permutation(key, n)
    test_idx, train_idx = perm[:n_test], perm[n_test:]
    return tuple(a[train_idx] for a in arrs), tuple(a[test_idx] for a in arrs)
