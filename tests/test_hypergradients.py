"""Hypergradients: ``jax.grad`` of the validation loss with respect to the learning rate, through
a whole 3-epoch ``fit_scan``, matches central finite differences in float64.

The recipe (also in ``ft.optim.adam``'s docstring): build the optimizer *inside* the function of
the learning rate, so the learning rate is traced, run the training with ``fit_scan`` and return
the last epoch's validation loss; ``jax.grad`` of that function is the hypergradient. For Adam,
``eps_root > 0`` is needed as soon as some parameter's gradients are all exactly zero (here an
input feature that is always 0, as a padding feature or a dead unit would give): the second
moment of such a parameter stays 0, and ``sqrt`` has an infinite derivative at 0, so without
``eps_root`` the hypergradient is NaN (``0 * inf``), and with it finite and correct.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _typed import grad, jit

import functrain.optim as fo
from functrain import train
from functrain.typing import Array, PRNGKey, PyTree

Optimizer = Callable[[Array], fo.GradientTransformation[Any]]

OPTIMIZERS: dict[str, tuple[Optimizer, float]] = {  # name -> (optimizer of lr, lr)
    "sgd": (lambda lr: fo.sgd(lr), 0.05),
    "momentum": (lambda lr: fo.momentum(lr, 0.9), 0.02),
    "adam": (lambda lr: fo.adam(lr, eps_root=1e-12), 0.01),
}


def _data(key: PRNGKey, n: int) -> tuple[Array, Array]:
    """A smooth regression problem whose last input feature is always 0 (its weights get exactly
    zero gradients). Call under ``jax.enable_x64``: everything is float64."""
    kx, kn = jax.random.split(key)
    x = jax.random.normal(kx, (n, 4), jnp.float64)
    y = jnp.sin(x[:, :1]) + 0.5 * x[:, 1:2] * x[:, 2:3] + 0.1 * jax.random.normal(kn, (n, 1),
                                                                                     jnp.float64)
    return jnp.concatenate([x, jnp.zeros((n, 1), jnp.float64)], axis=1), y


def _params(key: PRNGKey) -> PyTree:
    k1, k2 = jax.random.split(key)
    return {"w1": 0.5 * jax.random.normal(k1, (5, 8), jnp.float64), "b1": jnp.zeros(8, jnp.float64),
            "w2": 0.5 * jax.random.normal(k2, (8, 1), jnp.float64), "b2": jnp.zeros(1, jnp.float64)}


def _loss_fn(params: PyTree, model_state: PyTree, batch: tuple[Array, Array],
             key: PRNGKey) -> tuple[Array, tuple[PyTree, dict[str, Array]]]:
    x, y = batch
    h = jnp.tanh(x @ params["w1"] + params["b1"])
    return jnp.mean((h @ params["w2"] + params["b2"] - y) ** 2), (model_state, {})


def _validation_loss(make: Optimizer) -> Callable[[Array], Array]:
    """The recipe: the last epoch's validation loss as a function of the learning rate."""
    train_data, val_data = _data(jax.random.key(1), 32), _data(jax.random.key(2), 16)
    params = _params(jax.random.key(3))
    options = train.FitOptions(batch_size=8, eval_step=train.make_eval_step(_loss_fn))

    def val_loss(lr: Array) -> Array:
        opt = make(lr)  # built inside: the learning rate is traced
        state = train.init_train_state(params, (), opt)
        step = train.make_train_step(_loss_fn, opt, grad_norm=False)
        _, metrics = train.fit_scan(step, train.init_fit_state(state), train_data,
                                    jax.random.key(4), options, epochs=3, val_data=val_data)
        return metrics.val["loss"][-1]

    return val_loss


def _hypergradient_and_central_difference(make: Optimizer, lr: float) -> tuple[float, float]:
    with jax.enable_x64(True):
        val_loss = _validation_loss(make)
        lr64 = jnp.asarray(lr, jnp.float64)
        hypergrad = jit(grad(val_loss))(lr64)
        assert hypergrad.dtype == jnp.float64
        h = 1e-4 * lr
        f = jit(val_loss)
        central = (f(lr64 + h) - f(lr64 - h)) / (2 * h)
        return float(hypergrad), float(central)


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_hypergradient_matches_central_differences_in_float64(name: str) -> None:
    make, lr = OPTIMIZERS[name]
    grad, central = _hypergradient_and_central_difference(make, lr)
    assert np.isfinite(grad) and abs(central) > 1e-3  # the learning rate matters
    assert abs(grad - central) <= 1e-4 * abs(central), (grad, central)


def test_adam_hypergradient_is_nan_without_eps_root_and_finite_with_it() -> None:
    """The parameters fed by the always-zero feature have a zero second moment: without
    ``eps_root`` the derivative of ``sqrt`` there is infinite and the hypergradient NaN."""
    with jax.enable_x64(True):
        plain = jit(grad(_validation_loss(lambda lr: fo.adam(lr))))(0.01)
        rooted = jit(grad(_validation_loss(lambda lr: fo.adam(lr, eps_root=1e-12))))(0.01)
    assert np.isnan(float(plain))
    assert np.isfinite(float(rooted))


ADAM_FAMILY: list[Optimizer] = [
    lambda lr: fo.adamw(lr, eps_root=1e-12, weight_decay=1e-2),
    lambda lr: fo.amsgrad(lr, eps_root=1e-12),
    lambda lr: fo.nadam(lr, eps_root=1e-12),
    lambda lr: fo.radam(lr, eps_root=1e-12, threshold=4.5),
]


@pytest.mark.slow
@pytest.mark.parametrize("make", ADAM_FAMILY, ids=["adamw", "amsgrad", "nadam", "radam"])
def test_eps_root_gives_finite_hypergradients_for_the_adam_family(make: Optimizer) -> None:
    with jax.enable_x64(True):
        hypergrad = jit(grad(_validation_loss(make)))(0.01)
    assert np.isfinite(float(hypergrad)) and float(hypergrad) != 0.0
