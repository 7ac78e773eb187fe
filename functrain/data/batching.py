"""Splitting data into train/test parts and iterating over minibatches (host side).

``data`` is any pytree of arrays that share their leading (sample) axis, typically ``(x, y)``::

    (x_tr, y_tr), (x_te, y_te) = train_test_split(key, x, y, test_fraction=0.2)
    for xb, yb in batches((x_tr, y_tr), 128, key=epoch_key):
        state, metrics = step(state, (xb, yb), step_key)

Shuffling is a random permutation drawn from an explicit key, so an epoch's order is a
deterministic function of its key. For whole epochs compiled into one ``lax.scan``, see
``functrain.train.train_epoch``.

Example:
    >>> x, y = np.arange(20.0).reshape(10, 2), np.arange(10)
    >>> (x_tr, y_tr), (x_te, y_te) = ft.data.train_test_split(jax.random.key(0), x, y,
    ...                                                       test_fraction=0.2)
    >>> [tuple(b.shape) for b, _ in ft.data.batches((x_tr, y_tr), 3, key=jax.random.key(1))]
    [(3, 2), (3, 2), (2, 2)]
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import TypeVar

import jax
import jax.numpy as jnp
import numpy as np

from functrain import _tree, _validate
from functrain.typing import Array, ArrayLike, PRNGKey

__all__ = ["batches", "num_batches", "train_test_split"]

T = TypeVar("T")


def _check_key(key: object, who: str, name: str = "key") -> None:
    """``TypeError`` unless ``key`` is one PRNG key (typed ``key<impl>[]`` or raw ``uint32[2]``)."""
    if _tree.is_array(key):
        if jnp.issubdtype(key.dtype, jax.dtypes.prng_key) and key.ndim == 0:
            return
        if key.dtype == np.uint32 and key.shape == (2,):
            return
    _validate.fail(who, name, "a PRNG key (jax.random.key(seed) or jax.random.PRNGKey(seed))",
                   key, error=TypeError)


def num_batches(n: int, batch_size: int, *, drop_last: bool = False) -> int:
    """The number of minibatches of ``batch_size`` in ``n`` examples.

    Args:
        n: number of examples (>= 0).
        batch_size: examples per batch (>= 1).
        drop_last: drop a final, smaller batch (``floor``) instead of keeping it (``ceil``).

    Returns:
        ``n // batch_size`` if ``drop_last`` else ``ceil(n / batch_size)``.

    Raises:
        TypeError: ``n`` or ``batch_size`` is not an int (NumPy integers are accepted), or
            ``drop_last`` not a bool.
        ValueError: ``n < 0`` or ``batch_size < 1``.

    Example:
        >>> ft.data.num_batches(10, 4), ft.data.num_batches(10, 4, drop_last=True)
        (3, 2)
    """
    who = "num_batches"
    n = _validate.check_int(n, who, "n", low=0)
    batch_size = _validate.check_int(batch_size, who, "batch_size", low=1)
    drop_last = _validate.check_bool(drop_last, who, "drop_last")
    return n // batch_size if drop_last else math.ceil(n / batch_size)


def batches(
    data: T,
    batch_size: int,
    *,
    key: PRNGKey | None = None,
    drop_last: bool = False,
) -> Iterator[T]:
    """Iterate over minibatches of ``data``, shuffled when a ``key`` is given.

    Each batch has ``data``'s structure with every leaf sliced along its leading axis (NumPy leaves
    stay NumPy, JAX leaves stay JAX). Without ``key`` the order is the data's own order. The
    arguments are checked when ``batches`` is called, not when the first batch is drawn.

    Args:
        data: a pytree of arrays with a common leading axis of length ``n``, e.g. ``(x, y)``.
        batch_size: examples per batch (>= 1; may exceed ``n``: one smaller batch).
        key: PRNG key of a random permutation of the examples (new key each epoch), or ``None``.
        drop_last: drop the final batch if it has fewer than ``batch_size`` examples (keeps every
            batch the same shape, so a jitted step compiles once).

    Yields:
        :func:`num_batches` ``(n, batch_size, drop_last=drop_last)`` batches.

    Raises:
        TypeError: ``batch_size`` not an int, a leaf of ``data`` not an array, ``key`` not a PRNG
            key, or ``drop_last`` not a bool.
        ValueError: ``batch_size < 1``, no arrays, scalar leaves, or leaves of different lengths.

    Example:
        >>> x, y = np.arange(10.0).reshape(5, 2), np.arange(5)
        >>> [yb.tolist() for _, yb in ft.data.batches((x, y), 2)]
        [[0, 1], [2, 3], [4]]
        >>> shuffled = ft.data.batches((x, y), 2, key=jax.random.key(0), drop_last=True)
        >>> [yb.shape for _, yb in shuffled]
        [(2,), (2,)]
    """
    who = "batches"
    batch_size = _validate.check_int(batch_size, who, "batch_size", low=1)
    n = _validate.check_leading_length(data, who, "data", allow_empty=True)
    drop_last = _validate.check_bool(drop_last, who, "drop_last")
    if key is not None:
        _check_key(key, who)
    order = np.asarray(jax.random.permutation(key, n)) if key is not None else np.arange(n)
    stop = num_batches(n, batch_size, drop_last=drop_last) * batch_size
    return (_tree.tree_map(lambda leaf: leaf[order[i:min(i + batch_size, n)]], data)
            for i in range(0, min(stop, n), batch_size))


def _as_arrays(arrays: tuple[object, ...], who: str) -> tuple[Array, ...]:
    out: list[Array] = []
    for position, a in enumerate(arrays):
        try:
            out.append(jnp.asarray(a))
        except TypeError:
            _validate.fail(who, f"arrays[{position}]", "an array", a, error=TypeError)
    return tuple(out)


def split_arrays(key: PRNGKey, arrays: tuple[ArrayLike, ...], test_fraction: float,
                 who: str) -> tuple[tuple[Array, ...], tuple[Array, ...]]:
    """:func:`train_test_split`'s work, checked and reported in the name of ``who``."""
    _check_key(key, who)
    if not arrays:
        _validate.fail(who, "arrays", "at least one array", arrays)
    fraction = _validate.check_number(test_fraction, who, "test_fraction", low=0.0, high=1.0,
                                      low_open=True, high_open=True)
    if fraction is None:
        _validate.fail(who, "test_fraction", "a concrete (not traced) number in (0, 1)",
                       test_fraction, error=TypeError)
    arrs = _as_arrays(arrays, who)
    n = _validate.check_leading_length(arrs, who, "arrays")
    n_test = math.ceil(fraction * n)
    if not 0 < n_test < n:
        _validate.fail(who, "test_fraction", f"a fraction that leaves both parts non-empty (it "
                       f"puts {n_test} of the {n} examples in the test part)", test_fraction)
    perm = jax.random.permutation(key, n)
    test_idx, train_idx = perm[:n_test], perm[n_test:]
    return tuple(a[train_idx] for a in arrs), tuple(a[test_idx] for a in arrs)


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
        TypeError: ``key`` is not a PRNG key, an array is not an array, or ``test_fraction`` is
            not a number.
        ValueError: no arrays, arrays of different lengths or scalars, ``test_fraction`` outside
            ``(0, 1)``, or a split that would leave either part empty.

    Example:
        >>> x, y = np.zeros((10, 3)), np.arange(10)
        >>> (x_tr, y_tr), (x_te, y_te) = ft.data.train_test_split(jax.random.key(0), x, y,
        ...                                                       test_fraction=0.3)
        >>> x_tr.shape, x_te.shape, sorted(y_tr.tolist() + y_te.tolist()) == list(range(10))
        ((7, 3), (3, 3), True)
    """
    return split_arrays(key, arrays, test_fraction, "train_test_split")
