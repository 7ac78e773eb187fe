"""make_train_step / make_eval_step / classifier_loss against hand computations and optax."""

from __future__ import annotations

from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from functrain import layers, optim
from functrain.losses import l2_penalty, mean_squared_error, softmax_cross_entropy
from functrain.train import (
    classifier_loss,
    fit,
    init_train_state,
    make_eval_step,
    make_train_step,
)
from functrain.typing import Array, Metrics, PRNGKey, PyTree


def _linear_loss(params: PyTree, model_state: PyTree, batch: PyTree,
                 key: PRNGKey) -> tuple[Array, tuple[PyTree, Metrics]]:
    x, y = batch
    pred = x @ params["w"] + params["b"]
    return mean_squared_error(pred, y), ({"calls": model_state["calls"] + 1}, {"mae": jnp.mean(jnp.abs(pred - y))})


def _data() -> tuple[Array, Array]:
    x = jax.random.normal(jax.random.key(1), (8, 3))
    y = jax.random.normal(jax.random.key(2), (8, 2))
    return x, y


def test_sgd_step_matches_float64_hand_computation() -> None:
    params = {"w": jax.random.normal(jax.random.key(0), (3, 2)), "b": jnp.array([0.1, -0.2])}
    x, y = _data()
    lr = 0.05
    state = init_train_state(params, {"calls": jnp.zeros((), jnp.int32)}, optim.sgd(lr))
    new, metrics = jax.jit(make_train_step(_linear_loss, optim.sgd(lr)))(state, (x, y), jax.random.key(3))

    w, b = np.asarray(params["w"], np.float64), np.asarray(params["b"], np.float64)
    xd, yd = np.asarray(x, np.float64), np.asarray(y, np.float64)
    r = xd @ w + b - yd
    gw, gb = 2 * xd.T @ r / r.size, 2 * r.sum(0) / r.size
    np.testing.assert_allclose(new.params["w"], w - lr * gw, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(new.params["b"], b - lr * gb, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(metrics["loss"], (r ** 2).mean(), rtol=1e-5)
    np.testing.assert_allclose(metrics["grad_norm"], np.sqrt((gw ** 2).sum() + (gb ** 2).sum()), rtol=1e-5)
    np.testing.assert_allclose(metrics["mae"], np.abs(r).mean(), rtol=1e-5)
    assert int(new.step) == 1 and int(new.model_state["calls"]) == 1
    lean, lean_metrics = make_train_step(_linear_loss, optim.sgd(lr), grad_norm=False)(state, (x, y), jax.random.key(3))
    assert set(lean_metrics) == {"loss", "mae"}
    np.testing.assert_allclose(lean.params["w"], new.params["w"], rtol=1e-6)


def test_adam_steps_match_optax_reference() -> None:
    params = {"w": jax.random.normal(jax.random.key(0), (3, 2)), "b": jnp.zeros(2)}
    x, y = _data()
    step = jax.jit(make_train_step(_linear_loss, optim.adam(0.01)))
    state = init_train_state(params, {"calls": jnp.zeros((), jnp.int32)}, optim.adam(0.01))
    ref_p, ref_s = params, optax.adam(0.01).init(params)
    for i in range(3):
        state, _ = step(state, (x, y), jax.random.key(i))
        g = jax.grad(lambda p: _linear_loss(p, {"calls": 0}, (x, y), jax.random.key(0))[0])(ref_p)
        u, ref_s = optax.adam(0.01).update(g, ref_s, ref_p)
        ref_p = optax.apply_updates(ref_p, u)
    for k in params:
        np.testing.assert_allclose(state.params[k], ref_p[k], rtol=1e-5, atol=1e-7)


def test_step_vmaps_over_learning_rates_and_keys() -> None:
    params = {"w": jnp.ones((3, 2)), "b": jnp.zeros(2)}
    x, y = _data()

    def one(lr: Array, key: PRNGKey) -> Array:
        opt = optim.sgd(lr)
        state = init_train_state(params, {"calls": jnp.zeros((), jnp.int32)}, opt)
        new, _ = make_train_step(_linear_loss, opt)(state, (x, y), key)
        out: Array = new.params["w"]
        return out

    lrs = jnp.array([0.0, 0.1, 0.2])
    ws = jax.jit(jax.vmap(one))(lrs, jax.random.split(jax.random.key(0), 3))
    np.testing.assert_array_equal(ws[0], params["w"])
    # Updates are linear in the learning rate.
    np.testing.assert_allclose(ws[2] - params["w"], 2 * (ws[1] - params["w"]), rtol=1e-5, atol=1e-7)


def test_eval_step_discards_model_state_and_reports_loss() -> None:
    params = {"w": jnp.ones((3, 2)), "b": jnp.zeros(2)}
    state = init_train_state(params, {"calls": jnp.zeros((), jnp.int32)}, optim.sgd(0.1))
    x, y = _data()
    metrics = jax.jit(make_eval_step(_linear_loss))(state, (x, y))
    np.testing.assert_allclose(metrics["loss"], _linear_loss(params, {"calls": 0}, (x, y), jax.random.key(0))[0])
    assert set(metrics) == {"loss", "mae"}


def test_classifier_loss_weight_decay_and_train_flag() -> None:
    model = layers.serial(layers.Dense(4), layers.Dropout(0.5), layers.Dense(3))
    params, mstate, _ = model.init(jax.random.key(0), (-1, 5))
    x = jax.random.normal(jax.random.key(1), (6, 5))
    y = jnp.array([0, 1, 2, 0, 1, 2])
    lam = 0.3
    plain = classifier_loss(model.apply, train=False)
    decayed = classifier_loss(model.apply, train=False, weight_decay=lam)
    k = jax.random.key(2)
    l0, (_, m0) = plain(params, mstate, (x, y), k)
    l1, _ = decayed(params, mstate, (x, y), k)
    np.testing.assert_allclose(l1 - l0, lam * l2_penalty(params), rtol=1e-5)
    logits, _ = model.apply(params, mstate, x, train=False)
    np.testing.assert_allclose(l0, softmax_cross_entropy(logits, y), rtol=1e-6)
    assert set(m0) == {"accuracy"}
    # train=True uses dropout: the key matters.
    t = classifier_loss(model.apply, train=True)
    assert float(t(params, mstate, (x, y), jax.random.key(3))[0]) != float(t(params, mstate, (x, y), jax.random.key(4))[0])
    with pytest.raises(ValueError, match="weight_decay"):
        classifier_loss(model.apply, train=True, weight_decay=-1.0)


def _eqx_loss(static: Any) -> Any:
    def loss_fn(params: PyTree, model_state: PyTree, batch: PyTree,
                key: PRNGKey) -> tuple[Array, tuple[PyTree, Metrics]]:
        model = eqx.combine(params, static)
        x, y = batch
        pred = jax.vmap(model)(x)
        return mean_squared_error(pred, y), (model_state, {})
    return loss_fn


def test_equinox_mlp_trains_with_make_train_step_and_fit() -> None:
    mlp = eqx.nn.MLP(3, 2, width_size=16, depth=2, key=jax.random.key(0))
    params, static = eqx.partition(mlp, eqx.is_inexact_array)
    x = jax.random.normal(jax.random.key(1), (64, 3))
    y = jnp.stack([jnp.sin(x[:, 0]), x[:, 1] * x[:, 2]], axis=1)
    loss_fn = _eqx_loss(static)
    opt = optim.adam(1e-2)
    step = make_train_step(loss_fn, opt)
    state = init_train_state(params, (), opt)
    first, m = jax.jit(step)(state, (x, y), jax.random.key(2))
    assert float(m["grad_norm"]) > 0 and int(first.step) == 1
    trained, hist = fit(step, state, (x, y), jax.random.key(3), epochs=30, batch_size=16, progress=False)
    assert hist.train["loss"][-1] < 0.5 * hist.train["loss"][0]
    model = eqx.combine(trained.params, static)
    assert isinstance(model, eqx.nn.MLP)
    np.testing.assert_allclose(mean_squared_error(jax.vmap(model)(x), y),
                               loss_fn(trained.params, (), (x, y), jax.random.key(0))[0], rtol=1e-6)


def test_bad_loss_functions_and_optimizers() -> None:
    params = {"w": jnp.ones((3, 2)), "b": jnp.zeros(2)}
    state = init_train_state(params, (), optim.sgd(0.1))
    x, y = _data()

    def vector_loss(p: PyTree, s: PyTree, b: PyTree, k: PRNGKey) -> tuple[Array, tuple[PyTree, Metrics]]:
        return jnp.ones(3) * jnp.sum(p["w"]), (s, {})

    def flat(p: PyTree, s: PyTree, b: PyTree, k: PRNGKey) -> Any:
        return jnp.sum(p["w"]), s

    with pytest.raises(ValueError, match="make_train_step: loss_fn must return a scalar loss"):
        make_train_step(vector_loss, optim.sgd(0.1))(state, (x, y), jax.random.key(0))
    with pytest.raises(TypeError, match=r"loss_fn must return \(loss, \(new_model_state, metrics\)\)"):
        make_train_step(flat, optim.sgd(0.1))(state, (x, y), jax.random.key(0))
    with pytest.raises(TypeError, match="make_train_step: argument 'optimizer'"):
        make_train_step(_linear_loss, 0.1)  # type: ignore[arg-type]  # deliberate misuse
    with pytest.raises(TypeError, match="make_eval_step: argument 'loss_fn'"):
        make_eval_step(3)  # type: ignore[arg-type]  # deliberate misuse
