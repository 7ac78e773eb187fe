"""TrainState and init_train_state: optimizer state equal to optax's, jit and vmap, bad input."""

from __future__ import annotations

from typing import Any

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from functrain import _tree, optim
from functrain.optim.adam import ScaleByAdamState
from functrain.train import TrainState, init_train_state
from functrain.typing import Array, PyTree


def _adam_state(opt_state: PyTree) -> ScaleByAdamState:
    found = [s for s in jax.tree_util.tree_leaves(opt_state, is_leaf=lambda s: isinstance(s, ScaleByAdamState))
             if isinstance(s, ScaleByAdamState)]
    assert len(found) == 1, opt_state
    return found[0]


def _params() -> dict[str, Array]:
    return {"w": jax.random.normal(jax.random.key(0), (2, 3)), "b": jnp.arange(3.0)}


class TestInitTrainState(chex.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    def test_adam_state_equals_optax_before_and_after_an_update(self) -> None:
        params = _params()

        def init(p: PyTree) -> TrainState[Any, Any, Any]:
            return init_train_state(p, (), optim.adam(1e-3))

        state = self.variant(init)(params)
        assert int(state.step) == 0 and state.step.dtype == jnp.int32 and state.model_state == ()
        chex.assert_trees_all_equal(state.params, params)
        ref = optax.adam(1e-3).init(params)
        ours = _adam_state(state.opt_state)
        # The moment buffers: the params' structure, zeros, exactly as optax's.
        chex.assert_trees_all_equal(ours.mu, ref[0].mu, strict=True)
        chex.assert_trees_all_equal(ours.nu, ref[0].nu, strict=True)
        assert int(ours.step) == int(ref[0].count) == 0
        # After one update with the same gradients the buffers still agree with optax's.
        grads = _tree.tree_map(lambda x: jnp.cos(x) + 0.5, params)
        _, new = optim.adam(1e-3).update(grads, state.opt_state, params)
        _, new_ref = optax.adam(1e-3).update(grads, ref, params)
        chex.assert_trees_all_close(_adam_state(new).mu, new_ref[0].mu, rtol=1e-6)
        chex.assert_trees_all_close(_adam_state(new).nu, new_ref[0].nu, rtol=1e-6)
        assert int(_adam_state(new).step) == int(new_ref[0].count) == 1

    @chex.variants(with_jit=True, without_jit=True)
    def test_train_state_is_a_pytree(self) -> None:
        state = init_train_state({"w": jnp.ones((2,))}, {"bn": jnp.zeros(2)}, optim.sgd(0.1, momentum=0.9))

        def bump(s: TrainState[Any, Any, Any]) -> TrainState[Any, Any, Any]:
            return s._replace(step=s.step + 1, params={"w": s.params["w"] * 2})

        out = self.variant(bump)(state)
        assert isinstance(out, TrainState) and int(out.step) == 1
        np.testing.assert_array_equal(out.params["w"], [2.0, 2.0])
        chex.assert_trees_all_equal_structs(out, state)


def test_init_train_state_under_vmap_stacks_every_field() -> None:
    def init(p: jax.Array) -> TrainState[Any, Any, Any]:
        return init_train_state({"w": p}, (), optim.sgd(0.1, momentum=0.9))

    stacked = jax.vmap(init)(jnp.arange(8.0).reshape(4, 2))
    assert stacked.step.shape == (4,) and stacked.params["w"].shape == (4, 2)
    single = init_train_state({"w": jnp.zeros(2)}, (), optim.sgd(0.1, momentum=0.9))
    chex.assert_trees_all_equal_structs(stacked, single)
    for leaf, one in zip(jax.tree_util.tree_leaves(stacked), jax.tree_util.tree_leaves(single), strict=True):
        assert leaf.shape == (4,) + one.shape


def test_init_train_state_rejects_non_optimizer() -> None:
    with pytest.raises(TypeError, match=r"init_train_state: argument 'optimizer' must be a gradient "
                                        r"transformation .*, got 0.1"):
        init_train_state({}, (), 0.1)  # type: ignore[call-overload]  # deliberate misuse
    with pytest.raises(TypeError, match=r"got the function adam"):
        init_train_state({}, (), optim.adam)  # type: ignore[call-overload]  # a factory, not called
