"""make_train_step / make_eval_step / classifier_loss against hand computations and optax."""

from __future__ import annotations

import re
from typing import Any

import chex
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from _typed import eqx_combine, eqx_partition, grad, jit, lower, make_jaxpr, value_and_grad

from functrain import layers, optim
from functrain.losses import l2_penalty, mean_squared_error, softmax_cross_entropy
from functrain.train import (
    TrainState,
    classifier_loss,
    fit,
    init_train_state,
    make_eval_step,
    make_train_step,
)
from functrain.typing import Array, Metrics, PRNGKey, PyTree

STYLE = re.compile(r"^[\w.]+: argument '[\w.\[\]']+' must be .+, got .+$", re.S)


def _linear_loss(params: PyTree, model_state: PyTree, batch: PyTree,
                 key: PRNGKey) -> tuple[Array, tuple[PyTree, Metrics]]:
    x, y = batch
    pred = x @ params["w"] + params["b"]
    return mean_squared_error(pred, y), ({"calls": model_state["calls"] + 1}, {"mae": jnp.mean(jnp.abs(pred - y))})


def _data() -> tuple[Array, Array]:
    x = jax.random.normal(jax.random.key(1), (8, 3))
    y = jax.random.normal(jax.random.key(2), (8, 2))
    return x, y


def _hand_sgd(params: PyTree, x: Array, y: Array, lr: float) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    """One SGD step of _linear_loss in float64: (new params, metrics)."""
    w, b = np.asarray(params["w"], np.float64), np.asarray(params["b"], np.float64)
    xd, yd = np.asarray(x, np.float64), np.asarray(y, np.float64)
    r = xd @ w + b - yd
    gw, gb = 2 * xd.T @ r / r.size, 2 * r.sum(0) / r.size
    metrics = {"loss": float((r ** 2).mean()), "mae": float(np.abs(r).mean()),
               "grad_norm": float(np.sqrt((gw ** 2).sum() + (gb ** 2).sum()))}
    return {"w": w - lr * gw, "b": b - lr * gb}, metrics


class TestTrainStep(chex.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    def test_sgd_steps_match_float64_hand_computation(self) -> None:
        params = {"w": jax.random.normal(jax.random.key(0), (3, 2)), "b": jnp.array([0.1, -0.2])}
        x, y = _data()
        lr = 0.05
        state = init_train_state(params, {"calls": jnp.zeros((), jnp.int32)}, optim.sgd(lr))
        step = self.variant(make_train_step(_linear_loss, optim.sgd(lr), grad_norm=True))
        ref: PyTree = params
        for i in range(2):  # two steps: the state really carries over
            state, metrics = step(state, (x, y), jax.random.key(i))
            ref, ref_metrics = _hand_sgd(ref, x, y, lr)
            np.testing.assert_allclose(state.params["w"], ref["w"], rtol=1e-5, atol=1e-6)
            np.testing.assert_allclose(state.params["b"], ref["b"], rtol=1e-5, atol=1e-6)
            for name, value in ref_metrics.items():
                np.testing.assert_allclose(metrics[name], value, rtol=1e-5)
            assert int(state.step) == i + 1 and int(state.model_state["calls"]) == i + 1
            assert set(metrics) == {"loss", "mae", "grad_norm"}

    @chex.variants(with_jit=True, without_jit=True)
    def test_the_gradient_norm_is_opt_in(self) -> None:
        params = {"w": jnp.ones((3, 2)), "b": jnp.zeros(2)}
        x, y = _data()
        state = init_train_state(params, {"calls": jnp.zeros((), jnp.int32)}, optim.sgd(0.1))
        full, m_full = self.variant(make_train_step(_linear_loss, optim.sgd(0.1), grad_norm=True))(
            state, (x, y), jax.random.key(0))
        for lean_step in (make_train_step(_linear_loss, optim.sgd(0.1)),
                          make_train_step(_linear_loss, optim.sgd(0.1), grad_norm=False)):
            lean, m_lean = self.variant(lean_step)(state, (x, y), jax.random.key(0))
            assert set(m_lean) == {"loss", "mae"}  # the default: the loss function's metrics and the loss
            chex.assert_trees_all_close(lean.params, full.params, rtol=1e-6)
        assert set(m_full) == {"loss", "mae", "grad_norm"}

    @chex.variants(with_jit=True, without_jit=True)
    def test_an_opt_state_built_for_other_params_is_a_clear_error(self) -> None:
        opt = optim.adam(0.1)
        state = init_train_state({"w": jnp.ones((3, 2)), "b": jnp.zeros(2)}, {"calls": jnp.zeros((), jnp.int32)}, opt)
        grown = state._replace(params={**state.params, "extra": jnp.ones(2)})  # a param added after init
        step = self.variant(make_train_step(_linear_loss, opt))
        with pytest.raises(TypeError, match=r"train_step: argument 'state.opt_state' must be a pytree with "
                                            r"the structure of optimizer.init\(state.params\), got missing "
                                            r"leaves .*'extra'"):
            step(grown, _data(), jax.random.key(0))


def test_the_default_step_compiles_to_a_hand_written_step() -> None:
    """The trace-time checks (loss output, optimizer state structure) add nothing to the program."""
    opt = optim.adam(0.01)
    params = {"w": jnp.ones((3, 2)), "b": jnp.zeros(2)}
    state = init_train_state(params, {"calls": jnp.zeros((), jnp.int32)}, opt)

    def by_hand(state: TrainState[Any, Any, Any], batch: PyTree, key: PRNGKey) -> tuple[Any, Metrics]:
        (loss, (ms, metrics)), g = value_and_grad(_linear_loss, has_aux=True)(
            state.params, state.model_state, batch, key)
        updates, opt_state = opt.update(g, state.opt_state, state.params)
        params = optim.apply_updates(state.params, updates)
        return TrainState(state.step + 1, params, ms, opt_state), {**metrics, "loss": loss}

    args = (state, _data(), jax.random.key(0))
    ours = make_jaxpr(make_train_step(_linear_loss, opt))(*args)  # the default step
    hand = make_jaxpr(by_hand)(*args)
    assert str(ours) == str(hand)


def test_the_gradient_norm_is_free_when_the_optimizer_clips_by_it() -> None:
    """grad_norm=True costs one more reduction pass per leaf, except with clip_by_global_norm,
    whose norm XLA computes once for both (the compiled programs have the same reductions)."""
    model = layers.serial(layers.Dense(16), layers.Relu, layers.Dense(3))
    params, model_state, _ = model.init(jax.random.key(0), (-1, 5))
    batch = (jnp.ones((8, 5)), jnp.zeros(8, jnp.int32))
    loss = classifier_loss(model.apply, train=True)

    def reductions(opt: Any, grad_norm: bool) -> int:
        state = init_train_state(params, model_state, opt)
        text = lower(make_train_step(loss, opt, grad_norm=grad_norm),
                     state, batch, jax.random.key(0)).compile().as_text()
        assert text is not None
        return len(re.findall(r" reduce\(", text))

    plain = optim.adam(1e-3)
    assert reductions(plain, True) > reductions(plain, False)  # the opt-in metric is real work
    clipped = optim.chain(optim.clip_by_global_norm(1.0), optim.adam(1e-3))
    assert reductions(clipped, True) == reductions(clipped, False)  # ... shared with the clipping


def test_adam_steps_match_optax_reference() -> None:
    params = {"w": jax.random.normal(jax.random.key(0), (3, 2)), "b": jnp.zeros(2)}
    x, y = _data()
    step = jit(make_train_step(_linear_loss, optim.adam(0.01)))
    state = init_train_state(params, {"calls": jnp.zeros((), jnp.int32)}, optim.adam(0.01))
    ref_p, ref_s = params, optax.adam(0.01).init(params)

    def reference_loss(p: PyTree) -> Array:
        return _linear_loss(p, {"calls": 0}, (x, y), jax.random.key(0))[0]

    for i in range(3):
        state, _ = step(state, (x, y), jax.random.key(i))
        g = grad(reference_loss)(ref_p)
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
    ws = jit(jax.vmap(one))(lrs, jax.random.split(jax.random.key(0), 3))
    np.testing.assert_array_equal(ws[0], params["w"])
    # Updates are linear in the learning rate.
    np.testing.assert_allclose(ws[2] - params["w"], 2 * (ws[1] - params["w"]), rtol=1e-5, atol=1e-7)


def test_eval_step_reports_the_hand_computed_loss() -> None:
    params = {"w": jax.random.normal(jax.random.key(0), (3, 2)), "b": jnp.array([0.1, -0.2])}
    state = init_train_state(params, {"calls": jnp.zeros((), jnp.int32)}, optim.sgd(0.1))
    x, y = _data()
    metrics = jit(make_eval_step(_linear_loss))(state, (x, y))
    _, ref = _hand_sgd(params, x, y, 0.0)
    np.testing.assert_allclose(metrics["loss"], ref["loss"], rtol=1e-5)
    np.testing.assert_allclose(metrics["mae"], ref["mae"], rtol=1e-5)
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


def _eqx_loss(static: Any) -> Any:
    def loss_fn(params: PyTree, model_state: PyTree, batch: PyTree,
                key: PRNGKey) -> tuple[Array, tuple[PyTree, Metrics]]:
        model = eqx_combine(params, static)
        x, y = batch
        pred = jax.vmap(model)(x)
        return mean_squared_error(pred, y), (model_state, {})
    return loss_fn


def _mlp_forward(model: eqx.nn.MLP, x: Array) -> np.ndarray:
    """The MLP's forward pass in float64 NumPy from its layers' arrays (ReLU between layers)."""
    h = np.asarray(x, np.float64)
    for i, layer in enumerate(model.layers):
        h = h @ np.asarray(layer.weight, np.float64).T + np.asarray(layer.bias, np.float64)
        if i < len(model.layers) - 1:
            h = np.maximum(h, 0.0)
    return h


def test_equinox_mlp_trains_with_make_train_step_and_fit() -> None:
    mlp = eqx.nn.MLP(3, 2, width_size=16, depth=2, key=jax.random.key(0))
    params, static = eqx_partition(mlp, eqx.is_inexact_array)
    x = jax.random.normal(jax.random.key(1), (64, 3))
    y = jnp.stack([jnp.sin(x[:, 0]), x[:, 1] * x[:, 2]], axis=1)
    yd = np.asarray(y, np.float64)
    loss_fn = _eqx_loss(static)
    opt = optim.adam(2e-2)
    step = make_train_step(loss_fn, opt)
    state = init_train_state(params, (), opt)
    first, m = jit(step)(state, (x, y), jax.random.key(2))
    np.testing.assert_allclose(m["loss"], np.mean((_mlp_forward(mlp, x) - yd) ** 2), rtol=1e-5)
    assert int(first.step) == 1
    trained, hist = fit(step, state, (x, y), jax.random.key(3), epochs=12, batch_size=16, progress=False)
    model = eqx_combine(trained.params, static)
    assert isinstance(model, eqx.nn.MLP)
    # The trained arrays, put back into the module, compute the hand-written forward pass ...
    np.testing.assert_allclose(jax.vmap(model)(x), _mlp_forward(model, x), rtol=1e-5, atol=1e-6)
    # ... and fit the data much better than the initial ones (losses computed independently).
    before = np.mean((_mlp_forward(mlp, x) - yd) ** 2)
    after = np.mean((_mlp_forward(model, x) - yd) ** 2)
    assert after < 0.5 * before, (before, after)
    assert hist.train["loss"][-1] < hist.train["loss"][0]


def test_bad_loss_functions_and_optimizers() -> None:
    params = {"w": jnp.ones((3, 2)), "b": jnp.zeros(2)}
    state = init_train_state(params, (), optim.sgd(0.1))
    x, y = _data()

    def vector_loss(p: PyTree, s: PyTree, b: PyTree, k: PRNGKey) -> tuple[Array, tuple[PyTree, Metrics]]:
        return jnp.ones(3) * jnp.sum(p["w"]), (s, {})

    def flat(p: PyTree, s: PyTree, b: PyTree, k: PRNGKey) -> Any:
        return jnp.sum(p["w"]), s

    def bad_metrics(p: PyTree, s: PyTree, b: PyTree, k: PRNGKey) -> Any:
        return jnp.sum(p["w"]), (s, [1.0])

    _raises(ValueError, r"make_train_step: argument 'loss_fn' must be a function returning a scalar loss, "
            r"got a loss of shape \(3,\)", make_train_step(vector_loss, optim.sgd(0.1)), state, (x, y),
            jax.random.key(0))
    _raises(TypeError, r"make_train_step: argument 'loss_fn' must be a function returning \(loss, "
            r"\(new_model_state, metrics\)\)", make_train_step(flat, optim.sgd(0.1)), state, (x, y),
            jax.random.key(0))
    _raises(TypeError, r"make_eval_step: argument 'loss_fn' must be a function returning metrics as a mapping",
            make_eval_step(bad_metrics), state, (x, y))
    _raises(TypeError, r"make_train_step: argument 'optimizer' must be a gradient transformation",
            make_train_step, _linear_loss, 0.1)
    _raises(TypeError, r"make_train_step: argument 'loss_fn' must be a function, got 3", make_train_step, 3,
            optim.sgd(0.1))
    _raises(TypeError, r"make_train_step: argument 'grad_norm' must be a bool, got 1", make_train_step,
            _linear_loss, optim.sgd(0.1), grad_norm=1)
    _raises(TypeError, r"make_eval_step: argument 'loss_fn' must be a function, got 3", make_eval_step, 3)
    _raises(ValueError, r"classifier_loss: argument 'weight_decay' must be >= 0, got -1.0", classifier_loss,
            layers.serial(layers.Dense(2)).apply, train=True, weight_decay=-1.0)
    _raises(TypeError, r"classifier_loss: argument 'train' must be a bool, got 'yes'", classifier_loss,
            layers.serial(layers.Dense(2)).apply, train="yes")


def _raises(exc: type[Exception], match: str, fn: Any, *args: Any, **kwargs: Any) -> None:
    with pytest.raises(exc, match=match) as info:
        fn(*args, **kwargs)
    assert STYLE.match(str(info.value)), str(info.value)


def _bn_model_state() -> tuple[Any, TrainState[Any, Any, Any], tuple[Array, Array]]:
    model = layers.serial(layers.Dense(4), layers.BatchNorm(), layers.Relu, layers.Dense(3))
    params, model_state, _ = model.init(jax.random.key(0), (-1, 5))
    x = jax.random.normal(jax.random.key(1), (8, 5))
    return model, TrainState(jnp.zeros((), jnp.int32), params, model_state, ()), (x, jnp.arange(8) % 3)


def test_case_2_a_skipped_step_keeps_batch_norm_statistics() -> None:
    """Issue 12 case 2: with NaN in a batch, skip_nonfinite skipped the update but the running
    mean/var became NaN. Now a skipped step leaves params, opt state AND model state unchanged
    (only the counters advance); under jit and vmap, with functrain's and optax's guards."""
    model, base, (x, y) = _bn_model_state()
    loss = classifier_loss(model.apply, train=True)
    bad = (x.at[3, 2].set(jnp.nan), y)
    guards: list[Any] = [optim.skip_nonfinite(optim.adam(0.1)),
                         optim.chain(optim.clip_by_global_norm(1.0),
                                     optim.skip_nonfinite(optim.sgd(0.1), max_consecutive=3)),
                         optax.apply_if_finite(optax.adam(0.1), 5)]
    for opt in guards:
        state = base._replace(opt_state=opt.init(base.params))
        run = jit(make_train_step(loss, opt))
        new, metrics = run(state, bad, jax.random.key(0))
        assert bool(jnp.isnan(metrics["loss"]))
        chex.assert_trees_all_equal(new.params, state.params)
        chex.assert_trees_all_equal(new.model_state, state.model_state)  # not NaN statistics
        assert int(new.step) == 1
        good, _ = run(new, (x, y), jax.random.key(1))  # a finite batch updates everything
        assert not np.allclose(good.model_state[1].mean, state.model_state[1].mean)
        assert bool(jnp.all(jnp.isfinite(good.model_state[1].var)))
    # Under vmap each run skips on its own: run 0 sees the NaN batch, run 1 a clean one.
    opt = optim.skip_nonfinite(optim.sgd(0.1))
    state = base._replace(opt_state=opt.init(base.params))
    xs = jnp.stack([bad[0], x])
    out, _ = jit(jax.vmap(make_train_step(loss, opt), in_axes=(None, 0, None)))(
        state, (xs, jnp.stack([y, y])), jax.random.key(0))
    np.testing.assert_array_equal(out.model_state[1].mean[0], state.model_state[1].mean)
    assert not np.allclose(out.model_state[1].mean[1], state.model_state[1].mean)
    assert bool(jnp.all(jnp.isfinite(out.model_state[1].var)))


def test_case_2_the_guard_costs_nothing_without_a_guard() -> None:
    """Issue 12 case 2: the model-state protection is found at trace time; an unguarded step is
    still exactly the hand-written program (see also the test above with adam)."""
    model, base, batch = _bn_model_state()
    loss = classifier_loss(model.apply, train=True)
    opt = optim.sgd(0.1)
    state = base._replace(opt_state=opt.init(base.params))

    def by_hand(state: TrainState[Any, Any, Any], batch: PyTree, key: PRNGKey) -> tuple[Any, Metrics]:
        (value, (ms, metrics)), g = value_and_grad(loss, has_aux=True)(
            state.params, state.model_state, batch, key)
        updates, opt_state = opt.update(g, state.opt_state, state.params)
        params = optim.apply_updates(state.params, updates)
        return TrainState(state.step + 1, params, ms, opt_state), {**metrics, "loss": value}

    args = (state, batch, jax.random.key(0))
    assert str(make_jaxpr(make_train_step(loss, opt))(*args)) == str(make_jaxpr(by_hand)(*args))
    guarded = optim.skip_nonfinite(opt)
    g_state = base._replace(opt_state=guarded.init(base.params))
    n_plain = len(make_jaxpr(make_train_step(loss, opt))(*args).eqns)
    n_guard = len(make_jaxpr(make_train_step(loss, guarded))(g_state, batch, jax.random.key(0)).eqns)
    assert n_guard > n_plain  # the guard and its select are there only when asked for


def test_case_7_eval_step_refuses_a_training_mode_loss() -> None:
    """Issue 12 case 7: make_eval_step accepted classifier_loss(apply, train=True) and evaluated
    with dropout on. classifier_loss returns a ClassifierLoss carrying its mode; make_eval_step
    refuses train=True (also a functools.partial with train=True); the step keeps its loss_fn."""
    import functools

    model = layers.serial(layers.Dense(8), layers.Dropout(0.5), layers.Dense(3))
    train_loss = classifier_loss(model.apply, train=True, weight_decay=1e-4)
    eval_loss = classifier_loss(model.apply, train=False)
    assert (train_loss.apply, train_loss.train, train_loss.weight_decay) == (model.apply, True, 1e-4)
    assert train_loss == classifier_loss(model.apply, train=True, weight_decay=1e-4)
    assert train_loss != eval_loss and len({train_loss, eval_loss, train_loss}) == 2
    _raises(ValueError, r"^make_eval_step: argument 'loss_fn' must be an evaluation loss function "
            r"\(train=False.*got ClassifierLoss classifier_loss\(.*train=True.*dropout on",
            make_eval_step, train_loss)

    def my_loss(p: PyTree, s: PyTree, b: PyTree, k: PRNGKey, *, train: bool) -> Any:
        return eval_loss(p, s, b, k)

    _raises(ValueError, r"^make_eval_step: argument 'loss_fn' must be an evaluation loss function",
            make_eval_step, functools.partial(my_loss, train=True))
    make_eval_step(functools.partial(my_loss, train=False))
    params, model_state, _ = model.init(jax.random.key(0), (-1, 4))
    state = init_train_state(params, model_state, optim.sgd(0.1))
    batch = (jnp.ones((6, 4)), jnp.zeros(6, jnp.int32))
    m1, m2 = make_eval_step(eval_loss)(state, batch), make_eval_step(eval_loss, key=jax.random.key(5))(state, batch)
    assert float(m1["loss"]) == float(m2["loss"])  # deterministic: dropout off
    step = make_train_step(train_loss, optim.sgd(0.1))
    assert getattr(step, "loss_fn") is train_loss and getattr(step, "loss_fn").apply is model.apply
    loss, (_, metrics) = train_loss(params, model_state, batch, jax.random.key(0))
    assert loss.shape == () and set(metrics) == {"accuracy"}
