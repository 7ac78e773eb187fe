"""Shared data for the ``fit`` tests: a small synthetic classification problem, a copy of it
with one poisoned (NaN) example, and where that example lands in an epoch."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from functrain.typing import Array, PRNGKey


def fit_data(n: int, seed: int = 0) -> tuple[Array, Array]:
    """``n`` examples of 8 features, labels 0..3 from a fixed linear rule (host RNG: nothing to compile)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 8)).astype(np.float32)
    w = np.random.default_rng(100).normal(size=(8, 4))
    return jnp.asarray(x), jnp.asarray(np.argmax(x @ w, axis=1).astype(np.int32))


def poisoned(n: int, bad: int) -> tuple[Array, Array]:
    """:func:`fit_data` with a NaN in example ``bad``."""
    x, y = fit_data(n)
    return x.at[bad, 3].set(jnp.nan), y


def used_in_epoch(key: PRNGKey, n: int, bs: int, bad: int, epoch: int) -> int | None:
    """The step of ``epoch`` that uses example ``bad`` (fit's documented shuffle schedule), or None."""
    perm_key, _ = jax.random.split(jax.random.fold_in(key, epoch))
    perm = np.asarray(jax.random.permutation(perm_key, n))
    pos = int(np.flatnonzero(perm == bad)[0])
    return pos // bs if pos < (n // bs) * bs else None
