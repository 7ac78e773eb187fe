"""functrain: the classic deep-learning training tricks as small, typed, pure JAX functions.

``import functrain as ft``. One concept family per submodule:

* :mod:`ft.initializers <functrain.initializers>` -- uniform, gaussian, LeCun, Glorot/Xavier,
  He/Kaiming, orthogonal, variance scaling, ``reinitialize``;
* :mod:`ft.layers <functrain.layers>` -- dense, conv, pooling, batch/layer/weight norm, dropout,
  residual and Inception-style combinators, ``serial``;
* :mod:`ft.optim <functrain.optim>` -- gradient transformations (optax convention): SGD, momentum,
  Nesterov, Adagrad, RMSProp, Adam, AdamW, normalized SGD, clipping, weight decay, guards,
  ``ft.optim.schedules``;
* :mod:`ft.losses <functrain.losses>` -- cross-entropy, MSE, accuracy, L1/L2 penalties;
* :mod:`ft.train <functrain.train>` -- train state, jit-compiled steps and epochs, ``fit``, early
  stopping, reduce-on-plateau, EMA/SWA/ensembles, checkpoints, vmapped seeds and sweeps, data
  parallelism;
* :mod:`ft.data <functrain.data>` -- scaling, splits, batching, digits/MNIST/npz loaders;
* :mod:`ft.diagnostics <functrain.diagnostics>` -- gradient/activation statistics, signal
  propagation; :mod:`ft.plotting <functrain.plotting>` (matplotlib, imported lazily);
* :mod:`ft.compilation_cache <functrain.compilation_cache>` -- JAX's persistent compilation cache,
  turned on by the ``functrain`` command and the examples so that a second run skips compiling.

The most used names are also available at the top level (``ft.adam``, ``ft.serial``, ``ft.fit`` ...).
Docstring examples, here and in every module, assume ``import jax``, ``import jax.numpy as jnp``,
``import numpy as np`` and ``import functrain as ft``; the test suite runs them all.

Example:
    >>> model = ft.serial(ft.layers.Dense(16), ft.layers.Relu, ft.layers.Dense(3))
    >>> params, model_state, out_shape = model.init(jax.random.key(0), (-1, 4))
    >>> out_shape
    (-1, 3)
    >>> opt = ft.adam(1e-2)
    >>> state = ft.init_train_state(params, model_state, opt)
    >>> step = ft.make_train_step(ft.train.classifier_loss(model.apply, train=True), opt)
    >>> batch = (jnp.ones((8, 4)), jnp.zeros(8, jnp.int32))
    >>> state, metrics = jax.jit(step)(state, batch, jax.random.key(1))
    >>> int(state.step), sorted(metrics)
    (1, ['accuracy', 'loss'])
"""

from functrain import (
    compilation_cache,
    data,
    diagnostics,
    initializers,
    layers,
    losses,
    optim,
    plotting,
    train,
)
from functrain.layers import Layer, serial
from functrain.losses import accuracy, softmax_cross_entropy
from functrain.optim import (
    GradientTransformation,
    adam,
    adamw,
    apply_updates,
    chain,
    clip_by_global_norm,
    momentum,
    schedules,
    sgd,
)
from functrain.train import (
    TrainState,
    early_stopping,
    evaluate,
    fit,
    init_train_state,
    load_checkpoint,
    make_eval_step,
    make_train_step,
    reduce_on_plateau,
    run_seeds,
    save_checkpoint,
    scale_by_plateau,
    sweep,
    train_epoch,
)
from functrain.typing import Array, Initializer, LossFn, PRNGKey, PyTree, ScalarOrSchedule, Schedule

__version__ = "0.1.0"

__all__ = [
    "Array",
    "GradientTransformation",
    "Initializer",
    "Layer",
    "LossFn",
    "PRNGKey",
    "PyTree",
    "ScalarOrSchedule",
    "Schedule",
    "TrainState",
    "__version__",
    "accuracy",
    "adam",
    "adamw",
    "apply_updates",
    "chain",
    "clip_by_global_norm",
    "compilation_cache",
    "data",
    "diagnostics",
    "early_stopping",
    "evaluate",
    "fit",
    "init_train_state",
    "initializers",
    "layers",
    "load_checkpoint",
    "losses",
    "make_eval_step",
    "make_train_step",
    "momentum",
    "optim",
    "plotting",
    "reduce_on_plateau",
    "run_seeds",
    "save_checkpoint",
    "scale_by_plateau",
    "schedules",
    "serial",
    "sgd",
    "softmax_cross_entropy",
    "sweep",
    "train",
    "train_epoch",
]
