"""``Layer`` as a value: built positionally or by keyword, unpacked stax-style, equal and hashed by
``(init, apply)``, immutable, and not a tuple (a frozen generic dataclass, covariant in its params
and state types so that mypy keeps a list of mixed layers a list of layers)."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import pytest
from _typed import jit

from functrain.layers import BatchNorm, Dense, DenseParams, Layer, Relu, serial


def test_construction_unpacking_and_attributes() -> None:
    dense = Dense(3)
    init, apply = dense  # stax-style unpacking: init first
    assert init is dense.init and apply is dense.apply
    again = Layer(init=dense.init, apply=dense.apply)
    assert Layer[DenseParams, tuple[()]](dense.init, dense.apply) == dense  # subscripted: no slots clash
    assert again == Layer(dense.init, dense.apply) == dense
    params, state, shape = again.init(jax.random.key(0), (-1, 2))
    assert shape == (-1, 3) and state == ()
    assert again.apply(params, state, jnp.ones((4, 2)), train=False)[0].shape == (4, 3)


def test_equality_and_hash_follow_init_and_apply() -> None:
    dense = Dense(3)
    same = Layer(dense.init, dense.apply)
    assert same == dense and hash(same) == hash(dense)
    assert len({dense, same, Relu}) == 2
    assert Dense(3) != dense  # another constructor call: other functions
    assert Layer(dense.init, Dense(3).apply) != dense
    as_tuple: object = (dense.init, dense.apply)
    assert dense != as_tuple  # no longer a tuple: not equal to one


def test_immutable_and_not_a_tuple() -> None:
    dense = Dense(3)
    with pytest.raises(dataclasses.FrozenInstanceError):
        dense.init = dense.init  # type: ignore[misc]  # deliberate: a frozen dataclass
    assert not isinstance(dense, tuple)
    other = Dense(3)
    swapped = dataclasses.replace(dense, apply=other.apply)
    assert swapped.init is dense.init and swapped.apply is other.apply
    assert repr(dense).startswith("Layer(init=<function Dense.<locals>.init")


def test_a_layer_is_one_leaf_and_a_static_jit_argument() -> None:
    model = serial(Dense(2), BatchNorm(), Relu)
    assert jax.tree_util.tree_leaves(model) == [model]

    def run(layer: Layer, x: jax.Array) -> jax.Array:
        params, state, _ = layer.init(jax.random.key(0), x.shape)
        return layer.apply(params, state, x, train=False)[0]

    y = jit(run, static_argnums=0)(model, jnp.ones((3, 4)))
    assert y.shape == (3, 2)
