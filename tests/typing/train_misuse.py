"""Misuses of the training API that mypy and pyright must reject (checked by tests/test_typing.py)."""

import jax
import jax.numpy as jnp

from functrain import layers, losses, optim, train
from functrain.typing import Array, Metrics, PRNGKey, PyTree


def loss_fn(params: PyTree, model_state: PyTree, batch: PyTree, key: PRNGKey) -> tuple[Array, tuple[PyTree, Metrics]]:
    return jnp.sum(params["w"]), (model_state, {})


def no_key_loss(params: PyTree, model_state: PyTree, batch: PyTree) -> tuple[Array, tuple[PyTree, Metrics]]:
    return jnp.sum(params["w"]), (model_state, {})


key = jax.random.key(0)
opt = optim.sgd(0.1)
state = train.init_train_state({"w": jnp.ones(2)}, (), opt)
step = train.make_train_step(loss_fn, opt)
eval_step = train.make_eval_step(loss_fn)
data = (jnp.ones((4, 2)),)

# A loss function must take (params, model_state, batch, key).
train.make_train_step(no_key_loss, opt)  # expect-error

# The optimizer must be a gradient transformation, not a learning rate.
train.make_train_step(loss_fn, 0.1)  # expect-error

# TrainState has four fields.
train.TrainState(jnp.zeros(()), {"w": jnp.ones(2)})  # expect-error

# An eval step is not a train step (it takes no key and returns only metrics).
train.train_epoch(eval_step, state, data, key, batch_size=2)  # expect-error

# batch_size is keyword-only.
train.train_epoch(step, state, data, key, 2)  # expect-error

# A train step is not an eval step.
train.evaluate(step, state, data, batch_size=2)  # expect-error

# epochs is required and keyword-only; progress is a bool.
train.fit(step, state, data, key, batch_size=2)  # expect-error
train.fit(step, state, data, key, epochs=1, batch_size=2, progress="yes")  # expect-error

# Early stopping mode is "min" or "max"; patience is an int.
train.early_stopping(3, mode="lowest")  # expect-error
train.early_stopping("3")  # expect-error

# An optimizer factory must be called first.
train.init_train_state({"w": jnp.ones(2)}, (), optim.adam)  # expect-error

# Checkpoint paths come first; a dict is not a path.
train.save_checkpoint({"w": jnp.ones(2)}, "ckpt.bin")  # expect-error

# The History has no such field.
_, history = train.fit(step, state, data, key, epochs=1, batch_size=2)
history.val_loss  # expect-error

# Loss reductions are literal strings.
losses.softmax_cross_entropy(jnp.zeros((2, 3)), jnp.zeros((2,), jnp.int32), reduction="avg")  # expect-error

# The run's options travel as one FitOptions: no separate keywords, and epochs is keyword-only.
train.init_fit_state(state, early_stopping=train.early_stopping(3))  # expect-error
train.fit_scan(step, train.init_fit_state(state), data, key, train.FitOptions(2), 3)  # expect-error
train.FitOptions(batch_size="32")  # expect-error

# Correct use type-checks.
new_state, metrics = step(state, data, key)
es = train.early_stopping(3, mode="max")
es_state = es.update(es.init(state.params), metrics["loss"], new_state.params)
options = train.FitOptions(2, eval_step=eval_step, early_stopping=es)
fs = train.init_fit_state(new_state, options)
fs, epoch_metrics = train.fit_scan(step, fs, data, key, options, epochs=2, val_data=data)
sgd_state = tuple[optim.EmptyState, optim.ScaleByLearningRateState]  # the optimizer state is kept
final: train.TrainState[dict[str, jax.Array], tuple[()], sgd_state] = train.final_train_state(fs, options)

# A training-mode loss given to the evaluation step (dropout on, batch statistics while evaluating);
# the evaluation loss and a loss of unknown mode are accepted.
# (In a function: the refused overload returns NoReturn, which ends the flow of the module.)
model = layers.serial(layers.Dense(3), layers.Dropout(0.5))
train.make_eval_step(train.classifier_loss(model.apply, train=False))
mode: bool = bool(jnp.ones(()))
train.make_eval_step(train.classifier_loss(model.apply, train=mode))


def evaluate_in_training_mode() -> None:
    train.make_eval_step(train.classifier_loss(model.apply, train=True))  # expect-error

# A step is typed by its optimizer's state: a step built with one optimizer refuses a state built
# with another (the generic TrainStep[TrainState[Any, Any, O]]), called directly or by a driver.
adam_state = train.init_train_state({"w": jnp.ones(2)}, (), optim.adam(0.1))
step(adam_state, data, key)  # expect-error
train.train_epoch(step, adam_state, data, key, batch_size=2)  # expect-error
train.fit(step, adam_state, data, key, epochs=1, batch_size=2)  # expect-error
adam_step = train.make_train_step(loss_fn, optim.adam(0.1))
adam_state, adam_metrics = train.train_epoch(adam_step, adam_state, data, key, batch_size=2)
