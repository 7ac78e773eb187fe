"""``layers.mixed_precision``: float32 master parameters, a bfloat16 forward pass, a float32 loss.

Checked: the forward pass runs in bfloat16 (the dtype each layer sees, the jaxpr's matmuls and
convolutions, and the loss equals a hand-cast bfloat16 reference bit for bit); gradients,
parameters and optimizer state stay float32 through a train step; batch-norm statistics keep
their float32 carry; training reduces the loss on a small problem.
"""

from __future__ import annotations

from typing import Any

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _typed import grad, jit, make_jaxpr

from functrain import layers as L
from functrain import optim, train
from functrain._tree import tree_map
from functrain.losses import softmax_cross_entropy
from functrain.typing import Array, PyTree

KEY = jax.random.key(0)


def _dtypes(tree: PyTree) -> set[str]:
    return {jnp.dtype(leaf.dtype).name for leaf in jax.tree_util.tree_leaves(tree)
            if jnp.issubdtype(leaf.dtype, jnp.floating)}


def _convnet() -> L.Layer:
    return L.serial(L.Conv2D(4, 3), L.BatchNorm(), L.Relu, L.GlobalAvgPool, L.Dense(8), L.Relu,
                    L.Dense(3))


def _data(n: int = 12) -> tuple[Array, Array]:
    x = jax.random.normal(jax.random.key(1), (n, 5, 5, 2))
    return x, (jnp.sum(x[..., 0], axis=(1, 2)) > 0).astype(jnp.int32) + (jnp.sum(x[..., 1], axis=(1, 2)) > 0)


def test_every_layer_sees_bfloat16_and_the_output_is_float32() -> None:
    seen: list[Any] = []

    def probe(x: Array) -> Array:
        seen.append(x.dtype)
        return x

    model = L.mixed_precision(L.serial(L.Dense(4), L.Elementwise(probe), L.Dense(3), L.Elementwise(probe)))
    params, state, _ = model.init(KEY, (-1, 5))
    assert _dtypes(params) == {"float32"}
    y, _ = model.apply(params, state, jnp.ones((2, 5)), train=False)
    assert seen == [jnp.bfloat16, jnp.bfloat16] and y.dtype == jnp.float32


def test_the_matmuls_and_convolutions_run_in_bfloat16() -> None:
    model = L.mixed_precision(_convnet())
    params, state, _ = model.init(KEY, (-1, 5, 5, 2))
    loss_fn = train.classifier_loss(model.apply, train=True)
    def loss(p: PyTree) -> jax.Array:
        return loss_fn(p, state, _data(), KEY)[0]

    jaxpr = make_jaxpr(grad(loss))(params)
    heavy = [e for e in jaxpr.jaxpr.eqns if e.primitive.name in ("dot_general", "conv_general_dilated")]
    assert len(heavy) >= 3  # forward and backward
    for eqn in heavy:
        assert {str(v.aval.dtype) for v in eqn.invars} == {"bfloat16"}, eqn


def test_loss_equals_a_hand_cast_bfloat16_reference() -> None:
    net = _convnet()
    model = L.mixed_precision(net)
    params, state, _ = model.init(KEY, (-1, 5, 5, 2))
    x, y = _data()
    loss, (new_state, _) = train.classifier_loss(model.apply, train=True)(params, state, (x, y), KEY)
    p16 = tree_map(lambda a: a.astype(jnp.bfloat16), params)
    logits, ref_state = net.apply(p16, state, x.astype(jnp.bfloat16), train=True)
    ref = softmax_cross_entropy(logits.astype(jnp.float32), y)
    assert loss.dtype == jnp.float32
    np.testing.assert_array_equal(np.asarray(loss), np.asarray(ref))
    # differs from the float32 model's loss (so the check above is not vacuous)
    loss32 = train.classifier_loss(net.apply, train=True)(params, state, (x, y), KEY)[0]
    assert float(loss) != float(loss32) and abs(float(loss) - float(loss32)) < 0.05
    chex.assert_trees_all_equal_dtypes(new_state, state)  # the statistics stay float32
    chex.assert_trees_all_close(new_state, ref_state, rtol=1e-6)


class TestMixedPrecisionStep(chex.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    def test_gradients_updates_and_optimizer_state_stay_float32(self) -> None:
        model = L.mixed_precision(_convnet())
        params, model_state, _ = model.init(KEY, (-1, 5, 5, 2))
        opt = optim.adam(1e-2)
        loss_fn = train.classifier_loss(model.apply, train=True)

        def grads_of(p: PyTree) -> PyTree:
            return grad(lambda q: loss_fn(q, model_state, _data(), KEY)[0])(p)

        grads = self.variant(grads_of)(params)
        assert _dtypes(grads) == {"float32"}
        state = train.init_train_state(params, model_state, opt)
        step = self.variant(train.make_train_step(loss_fn, opt))
        new, metrics = step(state, _data(), jax.random.key(2))
        assert metrics["loss"].dtype == jnp.float32 and bool(jnp.isfinite(metrics["loss"]))
        assert _dtypes(new.params) == _dtypes(new.opt_state) == _dtypes(new.model_state) == {"float32"}
        chex.assert_trees_all_equal_structs(new.params, params)


def test_training_reduces_the_loss() -> None:
    model = L.mixed_precision(_convnet())
    params, model_state, _ = model.init(KEY, (-1, 5, 5, 2))
    opt = optim.adam(3e-2)
    state = train.init_train_state(params, model_state, opt)
    step = jit(train.make_train_step(train.classifier_loss(model.apply, train=True), opt))
    data = _data(48)
    losses: list[float] = []
    for i in range(40):
        state, metrics = step(state, data, jax.random.key(i))
        losses.append(float(metrics["loss"]))
    assert losses[-1] < 0.5 * losses[0], losses
    assert _dtypes(state.params) == {"float32"}


def test_output_dtype_none_keeps_the_compute_dtype() -> None:
    model = L.mixed_precision(L.Dense(3), jnp.float16, output_dtype=None)
    params, state, _ = model.init(KEY, (-1, 4))
    y, _ = model.apply(params, state, jnp.ones((2, 4)), train=False)
    assert y.dtype == jnp.float16 and params.w.dtype == jnp.float32


def test_integer_inputs_and_keys_pass_through() -> None:
    model = L.mixed_precision(L.serial(L.Dense(3), L.Dropout(0.5)))
    params, state, _ = model.init(KEY, (-1, 4))
    y, _ = model.apply(params, state, jnp.ones((2, 4), jnp.int32), key=jax.random.key(1), train=True)
    assert y.dtype == jnp.float32 and y.shape == (2, 3)


@pytest.mark.parametrize(("kwargs", "error", "pattern"), [
    ({"layer": L.Dense}, TypeError, r"^mixed_precision: argument 'layer' must be a Layer.*, got "),
    ({"compute_dtype": jnp.int32}, ValueError, r"^mixed_precision: argument 'compute_dtype' must be a floating "),
    ({"compute_dtype": "nonsense"}, TypeError, r"^mixed_precision: argument 'compute_dtype' must be a floating "),
    ({"output_dtype": jnp.int8}, ValueError, r"^mixed_precision: argument 'output_dtype' must be a floating "),
])
def test_bad_arguments(kwargs: dict[str, Any], error: type[Exception], pattern: str) -> None:
    with pytest.raises(error, match=pattern):
        base: dict[str, Any] = {"layer": L.Dense(3)}
        L.mixed_precision(**(base | kwargs))
