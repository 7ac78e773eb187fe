"""The stubs in typings/ never make a real name of the stubbed package an error (issue 15).

This file is type-checked with the rest of tests/ (mypy --strict, pyright --strict, both with the
repository's ``typings`` stub path) and run: it uses names of optax, chex and scikit-learn that the
stubs do not spell out (``optax.inject_hyperparams``, ``optax.masked``, ``optax.MultiSteps``,
``optax.apply_if_finite``, ``optax.contrib.reduce_on_plateau``, ``optax.tree_utils``), which must type-check
and behave as the real packages do.
"""

from __future__ import annotations

import chex
import jax.numpy as jnp
import numpy as np
import optax
import optax.tree_utils
from optax.contrib import reduce_on_plateau


def test_optax_names_outside_the_stub_typecheck_and_run() -> None:
    params = {"w": jnp.ones(3), "b": jnp.zeros(1)}
    grads = {"w": jnp.full(3, 2.0), "b": jnp.ones(1)}
    opt = optax.inject_hyperparams(optax.sgd)(learning_rate=0.1)
    state = opt.init(params)
    updates, state = opt.update(grads, state, params)
    np.testing.assert_allclose(np.asarray(updates["w"]), -0.2)
    assert float(state.hyperparams["learning_rate"]) == np.float32(0.1)
    masked = optax.masked(optax.sgd(1.0), {"w": True, "b": False})
    upd, _ = masked.update(grads, masked.init(params), params)
    np.testing.assert_allclose(np.asarray(upd["b"]), 1.0)  # masked-out leaves pass through
    multi = optax.MultiSteps(optax.sgd(1.0), every_k_schedule=2)
    first, _ = multi.update(grads, multi.init(params), params)
    np.testing.assert_allclose(np.asarray(first["w"]), 0.0)  # accumulating: no step yet
    safe = optax.apply_if_finite(optax.sgd(1.0), max_consecutive_errors=2)
    bad = {"w": jnp.full(3, jnp.nan), "b": jnp.ones(1)}
    skipped, safe_state = safe.update(bad, safe.init(params), params)
    assert int(safe_state.notfinite_count) == 1
    np.testing.assert_allclose(np.asarray(skipped["w"]), 0.0)
    plateau = reduce_on_plateau(patience=1)
    assert float(plateau.init(params).scale) == 1.0
    assert float(optax.tree_utils.tree_l2_norm(grads)) == np.float32(np.sqrt(13.0))


def test_chex_names_outside_the_stub_typecheck_and_run() -> None:
    chex.assert_type(jnp.ones(2), float)
    dims = chex.Dimensions(B=2, F=3)
    assert dims["BF"] == (2, 3)
