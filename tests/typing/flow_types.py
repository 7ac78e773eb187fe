"""Types that flow through the public API: mypy and pyright must accept every line (no error is
marked here; tests/test_typing.py checks this file with the misuse files)."""

from typing import Any

import jax
import jax.numpy as jnp
from typing_extensions import assert_type

from functrain import layers, optim, train
from functrain.typing import Array, Metrics, PRNGKey, PyTree

key = jax.random.key(0)

# A single layer's init and apply give and take its parameter and state records.
dense = layers.Dense(3)
assert_type(dense, layers.Layer[layers.DenseParams, tuple[()]])
dense_params, dense_state, _ = dense.init(key, (-1, 4))
assert_type(dense_params, layers.DenseParams)
assert_type(dense_state, tuple[()])
assert_type(dense_params.w, Array)
y, new_dense_state = dense.apply(dense_params, dense_state, jnp.ones((2, 4)), train=False)
assert_type(new_dense_state, tuple[()])
bn_params, bn_state, _ = layers.BatchNorm().init(key, (-1, 4))
assert_type(bn_params, layers.BatchNormParams)
assert_type(bn_state, layers.BatchNormState)
assert_type(layers.BatchNorm().apply(bn_params, bn_state, jnp.ones((2, 4)), train=True)[1],
            layers.BatchNormState)
assert_type(layers.Conv2D(2, 3).init(key, (-1, 6, 6, 1))[0], layers.ConvParams)
assert_type(layers.Residual(layers.BatchNorm()).init(key, (-1, 4))[:2],
            tuple[layers.ResidualParams, layers.BatchNormState])
assert_type(layers.Relu, layers.Layer[tuple[()], tuple[()]])
assert_type(layers.mixed_precision(dense), layers.Layer[layers.DenseParams, tuple[()]])

# serial falls back to tuples of Any, and accepts layers of every type.
model = layers.serial(layers.Dense(3), layers.Relu, layers.BatchNorm())
assert_type(model, layers.Layer[tuple[Any, ...], tuple[Any, ...]])
params, model_state, _ = model.init(key, (-1, 4))

# A list mixing layer kinds stays a list of layers (what `serial(*[Dense(64), Relu] * 6)` needs):
# Layer is covariant, so mypy joins Layer[DenseParams, ...] and Layer[tuple[()], ...] to a Layer.
mixed = [layers.Dense(64), layers.Relu] * 2
deep = layers.serial(*mixed)
deep = layers.serial(*([layers.Dense(64), layers.Relu] * 6))
body = [layers.Conv2D(4, 3), layers.BatchNorm(), layers.Relu, layers.Conv2D(4, 3), layers.BatchNorm()]
body.append(layers.DropPath(0.1))
block = layers.Residual(layers.serial(*body))
plain: layers.Layer = layers.BatchNorm() if bool(params) else layers.Identity
single: layers.Layer = dense  # a bare Layer is Layer[Any, Any]

# init_train_state keeps the params', model state's and optimizer state's types.
weights = {"w": jnp.ones(3)}
opt = optim.adam(1e-3)
state = train.init_train_state(weights, (), opt)
assert_type(state, train.TrainState[dict[str, Array], tuple[()],
                                    tuple[optim.ScaleByAdamState, optim.ScaleByLearningRateState]])
assert_type(train.init_train_state(params, model_state, optim.sgd(0.1)).opt_state[1],
            optim.ScaleByLearningRateState)


def loss_fn(params: PyTree, model_state: PyTree, batch: PyTree, key: PRNGKey) -> tuple[Array, tuple[PyTree, Metrics]]:
    return jnp.sum(params["w"]), (model_state, {})


# A train step is typed by its optimizer's state; a driver returns the state type it is given.
step = train.make_train_step(loss_fn, opt)
assert_type(step, train.TrainStep[train.TrainState[Any, Any, tuple[optim.ScaleByAdamState,
                                                                   optim.ScaleByLearningRateState]]])
data = (jnp.ones((4, 4)),)
new, metrics = step(state, data, key)
assert_type(new.opt_state, tuple[optim.ScaleByAdamState, optim.ScaleByLearningRateState])
after, epoch_metrics = train.train_epoch(step, state, data, key, batch_size=2)
assert_type(after.opt_state[0], optim.ScaleByAdamState)
eval_step = train.make_eval_step(loss_fn)
train.evaluate(eval_step, state, data, batch_size=2)
