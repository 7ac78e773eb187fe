"""TrainState and init_train_state: pytree behaviour, optimizer init, jit and vmap, bad input."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from functrain import optim
from functrain.train import TrainState, init_train_state


def test_init_train_state_fields_and_optimizer_state() -> None:
    params = {"w": jnp.ones((2, 3)), "b": jnp.zeros(3)}
    state = init_train_state(params, (), optim.adam(1e-3))
    assert int(state.step) == 0 and state.step.dtype == jnp.int32
    assert state.params is params and state.model_state == ()
    ref = optax.adam(1e-3).init(params)
    ours = jax.tree_util.tree_leaves(state.opt_state)
    # Same moment buffers as optax (zeros with the params' shapes).
    assert sorted(x.shape for x in ours) == sorted(x.shape for x in jax.tree_util.tree_leaves(ref))


def test_train_state_is_a_pytree_under_jit_and_vmap() -> None:
    params = {"w": jnp.ones((2,))}
    state = init_train_state(params, {"bn": jnp.zeros(2)}, optim.sgd(0.1))
    out = jax.jit(lambda s: s._replace(step=s.step + 1))(state)
    assert isinstance(out, TrainState) and int(out.step) == 1
    stacked = jax.vmap(lambda p: init_train_state({"w": p}, (), optim.sgd(0.1)))(jnp.ones((4, 2)))
    assert stacked.step.shape == (4,) and stacked.params["w"].shape == (4, 2)
    np.testing.assert_array_equal(jax.tree_util.tree_leaves(state)[0], 0)


def test_init_train_state_rejects_non_optimizer() -> None:
    with pytest.raises(TypeError, match="init_train_state: argument 'optimizer'"):
        init_train_state({}, (), 0.1)  # type: ignore[arg-type]  # deliberate misuse
