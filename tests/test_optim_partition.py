"""Parameter groups: partition, masked, freeze and label_by_path (dicts, functrain NamedTuple
records, equinox modules; with and without jit, under vmap)."""

from __future__ import annotations

from typing import Any

import chex
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _typed import eqx_combine, eqx_partition, grad, jit

import functrain.optim as fo
from functrain import _tree, layers
from functrain.typing import Array, PyTree

PARAMS = {"trunk": {"w": jnp.asarray([[1.0, -2.0], [0.5, 3.0]]), "b": jnp.asarray([0.1, -0.1])},
          "head": {"w": jnp.asarray([[0.3], [-0.7]]), "b": jnp.asarray([0.2])}}


def _grads(params: PyTree, t: float) -> PyTree:
    return _tree.tree_map(lambda x: 0.5 * x + jnp.sin(x + t), params)


def _bits(tree: PyTree) -> list[bytes]:
    return [np.asarray(x).tobytes() for x in jax.tree_util.tree_leaves(tree)]


def _train(tx: Any, params: PyTree, steps: int, update: Any = None) -> tuple[PyTree, Any]:
    update = update or jit(tx.update)
    state = tx.init(params)
    for t in range(steps):
        u, state = update(_grads(params, float(t)), state, params)
        params = fo.apply_updates(params, u)
    return params, state


class TestPartition(chex.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    def test_per_group_learning_rates_are_exactly_the_separate_optimizers(self) -> None:
        tx = fo.partition({"trunk": fo.adam(1e-3), "head": fo.momentum(0.1, 0.9)},
                          {"trunk": "trunk", "head": "head"})
        params, state = _train(tx, PARAMS, 10, self.variant(tx.update))
        trunk, _ = _train(fo.adam(1e-3), PARAMS["trunk"], 10, self.variant(fo.adam(1e-3).update))
        head_tx = fo.momentum(0.1, 0.9)
        head, _ = _train(head_tx, PARAMS["head"], 10, self.variant(head_tx.update))
        assert _bits(params["trunk"]) == _bits(trunk) and _bits(params["head"]) == _bits(head)
        assert int(state.inner_states["trunk"].inner_state[0].step) == 10

    @chex.variants(with_jit=True, without_jit=True)
    def test_frozen_leaves_are_unchanged_and_hold_no_optimizer_state(self) -> None:
        frozen = {"trunk": True, "head": False}
        for tx in (fo.freeze(frozen, fo.adam(0.1)),
                   fo.partition({"train": fo.adam(0.1), "frozen": fo.freeze(True)},
                                {"trunk": "frozen", "head": "train"})):
            params, state = _train(tx, PARAMS, 10, self.variant(tx.update))
            assert _bits(params["trunk"]) == _bits(PARAMS["trunk"])
            assert not np.allclose(params["head"]["w"], PARAMS["head"]["w"])
            # adam's two moments for the head only: no buffer of the trunk's shapes
            sizes = sorted(x.size for x in jax.tree_util.tree_leaves(state) if x.ndim > 0)
            assert sizes == sorted(2 * [2, 1]), sizes

    def test_frozen_leaves_of_a_chain_get_zero_updates(self) -> None:
        tx = fo.chain(fo.adam(0.1), fo.freeze({"trunk": {"w": True, "b": False}, "head": False}))
        params, _ = _train(tx, PARAMS, 3)
        assert _bits(params["trunk"]["w"]) == _bits(PARAMS["trunk"]["w"])
        assert not np.allclose(params["trunk"]["b"], PARAMS["trunk"]["b"])

    @chex.variants(with_jit=True, without_jit=True)
    def test_masked_transforms_the_selected_leaves_and_passes_the_others(self) -> None:
        tx = fo.masked(fo.trace(0.9), fo.default_decay_mask)
        update = self.variant(tx.update)
        state = tx.init(PARAMS)
        assert isinstance(state.inner_state.trace["trunk"]["b"], fo.MaskedNode)
        u: PyTree = None
        for t in range(3):
            g = _grads(PARAMS, float(t))
            u, state = update(g, state, PARAMS)
            assert _bits(u["trunk"]["b"]) == _bits(g["trunk"]["b"])
        expected = sum(0.9 ** (2 - t) * _grads(PARAMS, float(t))["head"]["w"] for t in range(3))
        np.testing.assert_allclose(u["head"]["w"], expected, rtol=1e-6)

    def test_vmap_over_runs_each_partition_on_its_own(self) -> None:
        tx = fo.partition({"a": fo.adam(0.1), "b": fo.sgd(0.5)}, {"trunk": "a", "head": "b"})
        batch = _tree.tree_map(lambda x: jnp.stack([x, -2 * x]), PARAMS)
        def grads_at_zero(p: PyTree) -> PyTree:
            return _grads(p, 0.0)

        grads = jax.vmap(grads_at_zero)(batch)
        u, _ = jit(jax.vmap(tx.update))(grads, jax.vmap(tx.init)(batch), batch)
        for i in range(2):
            p_i = _tree.tree_map(lambda x: x[i], batch)
            u_i, _ = tx.update(_grads(p_i, 0.0), tx.init(p_i), p_i)
            for a, b in zip(jax.tree_util.tree_leaves(u), jax.tree_util.tree_leaves(u_i)):
                np.testing.assert_allclose(a[i], b, rtol=1e-6)


def _serial_params() -> PyTree:
    model = layers.serial(layers.Dense(4), layers.Relu, layers.BatchNorm(), layers.Dense(2))
    return model.init(jax.random.key(0), (-1, 3))[0]


def test_functrain_records_are_labelled_by_layer_index_and_field() -> None:
    params = _serial_params()  # (DenseParams, (), BatchNormParams, DenseParams)
    by_layer = fo.label_by_path(lambda path, leaf: "head" if path[0] == 3 else "trunk")
    labels = by_layer(params)
    assert type(labels[3]) is layers.DenseParams and list(labels[3]) == ["head", "head"]
    assert labels[0].w == "trunk"
    tx = fo.partition({"trunk": fo.sgd(0.001), "head": fo.sgd(0.1)}, by_layer)
    grads = _tree.tree_map(jnp.ones_like, params)
    u, _ = jit(tx.update)(grads, tx.init(params), params)
    np.testing.assert_allclose(u[3].w, -0.1)
    np.testing.assert_allclose(u[0].w, -0.001)
    np.testing.assert_allclose(u[2].scale, -0.001)
    # a no-decay group by field name: biases and normalization parameters are not decayed
    no_decay = fo.label_by_path(lambda path, leaf: path[-1] not in ("b", "scale", "bias"))
    decay = fo.masked(fo.add_decayed_weights(0.5), no_decay)
    zeros = _tree.tree_map(jnp.zeros_like, params)
    u, _ = decay.update(zeros, decay.init(params), params)
    np.testing.assert_allclose(u[0].w, 0.5 * params[0].w)
    assert not np.any(u[0].b) and not np.any(u[2].bias)


def test_equinox_models_are_partitioned_and_frozen_by_path() -> None:
    model = eqx.nn.MLP(3, 2, 4, 2, key=jax.random.key(0))
    params, static = eqx_partition(model, eqx.is_array)
    last = fo.label_by_path(lambda path, leaf: "head" if path[:2] == ("layers", 2) else "body")
    tx = fo.partition({"body": fo.freeze(True), "head": fo.adam(0.01)}, last)

    def loss(p: PyTree, x: Array) -> Array:
        return jnp.sum(eqx_combine(p, static)(x) ** 2)

    state = tx.init(params)
    step_params = params
    for t in range(5):
        g = grad(loss)(step_params, jnp.full(3, float(t + 1)))
        u, state = jit(tx.update)(g, state, step_params)
        step_params = fo.apply_updates(step_params, u)
    assert _bits(step_params.layers[0]) == _bits(params.layers[0])
    assert not np.allclose(step_params.layers[2].weight, params.layers[2].weight)
    assert len(jax.tree_util.tree_leaves(state.inner_states["body"])) == 0


def test_label_by_path_gives_plain_keys() -> None:
    tree = {"a": [jnp.ones(1), (jnp.ones(2),)], "b": layers.DenseParams(jnp.ones(3), jnp.ones(4))}
    paths = fo.label_by_path(lambda path, leaf: (path, leaf.size))(tree)
    assert paths["a"][0] == (("a", 0), 1) and paths["a"][1][0] == (("a", 1, 0), 2)
    assert paths["b"].b == (("b", "b"), 4)


def _bad_labels(params: PyTree) -> PyTree:
    return {"trunk": "a", "head": "c"}


def test_bad_labels_and_masks_get_one_styled_message() -> None:
    with pytest.raises(ValueError, match=r"^partition: argument 'labels' must be a pytree of "
                                         r"labels among 'a' \(the keys of transforms\), got 'c'$"):
        fo.partition({"a": fo.sgd(0.1)}, {"trunk": "a", "head": "c"})  # a tree: checked at once
    with pytest.raises(ValueError, match="got 'c'"):  # a function: checked at init
        fo.partition({"a": fo.sgd(0.1)}, _bad_labels).init(PARAMS)
    with pytest.raises(TypeError, match=r"^partition: argument 'transforms' must be a non-empty"):
        fo.partition({}, {"trunk": "a"})
    with pytest.raises(TypeError, match=r"^partition: argument 'transforms\['a'\]' must be a "):
        fo.partition({"a": 0.1}, {"trunk": "a"})  # type: ignore[dict-item]  # the error tested
    with pytest.raises(TypeError, match=r"^masked: argument 'mask' must be a pytree of Python "):
        fo.masked(fo.sgd(0.1), {"trunk": 1.0, "head": True})
    with pytest.raises(TypeError, match=r"^freeze: argument 'mask' must be a pytree with the "
                                        r"structure of the params"):
        fo.freeze({"trunk": True, "tail": False}).init(PARAMS)
    with pytest.raises(TypeError, match=r"^label_by_path: argument 'rule' must be a function"):
        fo.label_by_path("w")  # type: ignore[arg-type]  # the error tested
