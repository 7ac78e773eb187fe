"""``current_learning_rate``: the learning rate the next update applies, read from the state.

References are independent: optax's schedules (value by value), the update that the next step
actually applies (for SGD it is ``-lr * g`` exactly), and the plateau scale reported by
``fit_scan``. Chains and wrappers nest the learning-rate state anywhere; jit, vmap and grad work.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from _typed import grad, jit, vmap

import functrain.optim as fo
from functrain import train
from functrain._tree import tree_map
from functrain.optim import schedules
from functrain.typing import Array, PRNGKey, PyTree, Schedule

PARAMS = {"w": jnp.asarray([[1.0, -2.0], [0.5, 3.0]]), "b": jnp.asarray([0.1, -0.3])}
STYLE = re.compile(r"^[\w.]+: argument '[\w.\[\]']+' must be .+, got .+$", re.S)


def _grads(t: int) -> PyTree:
    return tree_map(lambda p: 0.3 * p + 0.1 * (t + 1), PARAMS)


def _schedule() -> tuple[Schedule, Any]:
    return (schedules.exponential_decay(0.1, 0.5, transition_steps=3),
            optax.exponential_decay(0.1, 3, 0.5))


OPTIMIZERS: dict[str, Callable[[Any], fo.GradientTransformation[Any]]] = {
    "sgd": lambda lr: fo.sgd(lr),
    "momentum": lambda lr: fo.momentum(lr, 0.9),
    "normalized_sgd": lambda lr: fo.normalized_sgd(lr),
    "adagrad": lambda lr: fo.adagrad(lr),
    "rmsprop": lambda lr: fo.rmsprop(lr),
    "adam": lambda lr: fo.adam(lr),
    "adamw": lambda lr: fo.adamw(lr),
    "amsgrad": lambda lr: fo.amsgrad(lr),
    "nadam": lambda lr: fo.nadam(lr),
    "radam": lambda lr: fo.radam(lr),
    "adamax": lambda lr: fo.adamax(lr),
    "adabelief": lambda lr: fo.adabelief(lr),
    "lion": lambda lr: fo.lion(lr),
    "lamb": lambda lr: fo.lamb(lr),
    "lars": lambda lr: fo.lars(lr),
}


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_every_optimizer_reports_its_scheduled_learning_rate(name: str) -> None:
    ours, theirs = _schedule()
    tx = OPTIMIZERS[name](ours)
    state = tx.init(PARAMS)
    update = jit(tx.update)
    for t in range(7):  # before update t + 1: the schedule at t (t updates done)
        lr = fo.current_learning_rate(state)
        assert lr.shape == () and lr.dtype == jnp.float32
        np.testing.assert_allclose(float(lr), float(theirs(t)), rtol=1e-6)
        _, state = update(_grads(t), state, PARAMS)


@pytest.mark.parametrize("lr", [0.05, np.float32(0.05), jnp.asarray(0.05)],
                         ids=["float", "numpy", "array"])
def test_constant_learning_rates(lr: Any) -> None:
    tx = fo.chain(fo.clip_by_global_norm(1.0), fo.adam(lr))
    state = tx.init(PARAMS)
    for t in range(3):
        assert float(fo.current_learning_rate(state)) == np.float32(0.05)
        _, state = tx.update(_grads(t), state, PARAMS)


class TestNextUpdate(chex.TestCase):
    """The reported rate is the one the next update applies: SGD's update is ``-lr * g``."""

    @chex.variants(with_jit=True, without_jit=True)
    def test_sgd_applies_the_reported_rate(self) -> None:
        sched, _ = _schedule()
        tx = fo.chain(fo.clip_by_global_norm(100.0), fo.sgd(sched), train.scale_by_plateau())
        update = self.variant(tx.update)
        state = tx.init(PARAMS)
        for t in range(6):
            if t == 3:
                state = train.set_plateau_scale(state, 0.1)
            lr = self.variant(fo.current_learning_rate)(state)
            u, state = update(_grads(t), state, PARAMS)
            chex.assert_trees_all_close(u, tree_map(lambda g: -lr * g, _grads(t)),
                                        rtol=1e-6)
        np.testing.assert_allclose(float(fo.current_learning_rate(state)), 0.1 * 0.1 * 0.25,
                                   rtol=1e-6)  # sched(6) = 0.1 * 0.5 ** 2, times the plateau 0.1


def test_nested_wrappers_skipped_and_accumulated_steps() -> None:
    """The rate follows the inner steps actually taken: a skipped (NaN) step and the micro-steps
    of gradient accumulation do not advance it."""
    sched, theirs = _schedule()
    inner = fo.chain(fo.clip_by_global_norm(1.0), fo.sgd(sched), train.scale_by_plateau())
    tx = fo.skip_nonfinite(fo.accumulate_gradients(fo.lookahead(
        fo.freeze({"w": False, "b": True}, fo.masked(inner, {"w": True, "b": True})), 2), 2))
    state = train.set_plateau_scale(tx.init(PARAMS), 0.5)
    update = jit(tx.update)
    taken = 0
    for t in range(9):
        grads = _grads(t) if t != 4 else tree_map(lambda g: g * jnp.nan, _grads(t))
        _, state = update(grads, state, PARAMS)
        taken = int(state.inner_state.step)  # inner steps of accumulate_gradients
        np.testing.assert_allclose(float(fo.current_learning_rate(state)),
                                   0.5 * float(theirs(taken)), rtol=1e-6)
    assert taken == 4 and int(state.skipped_steps) == 1  # 8 finite micro-steps, 2 per step


def test_optax_reduce_on_plateau_scale_is_included() -> None:
    tx = fo.chain(fo.adam(0.1), optax.contrib.reduce_on_plateau(factor=0.5, patience=1))
    state = tx.init(PARAMS)
    for t, value in enumerate([1.0, 1.0, 1.0]):
        _, state = tx.update(_grads(t), state, PARAMS, value=jnp.asarray(value))
    assert float(state[1].scale) == 0.25  # two reductions
    np.testing.assert_allclose(float(fo.current_learning_rate(state)), 0.025, rtol=1e-6)


def _loss_fn(params: PyTree, model_state: PyTree, batch: tuple[Array, Array],
             key: PRNGKey) -> tuple[Array, tuple[PyTree, dict[str, Array]]]:
    x, y = batch
    return jnp.mean((x @ params - y) ** 2), (model_state, {})


def test_plateau_scale_written_by_fit_scan() -> None:
    """After each epoch (fit_epoch, then fit_scan) the state's rate is the schedule at the step
    count times the plateau scale the epoch reports."""
    sched, theirs = _schedule()
    opt = fo.chain(fo.sgd(sched), train.scale_by_plateau())
    data = (jax.random.normal(jax.random.key(0), (8, 3)), jnp.zeros(8))  # 2 steps per epoch
    state = train.init_train_state(jnp.ones(3), (), opt)
    # the plateau rule watches a constant metric: it reduces after every epoch but the first
    options = train.FitOptions(batch_size=4, plateau=train.reduce_on_plateau(0.5, patience=1),
                               monitor="train_flat")

    def loss_fn(params: Array, model_state: PyTree, batch: tuple[Array, Array],
                key: PRNGKey) -> tuple[Array, tuple[PyTree, dict[str, Array]]]:
        loss, aux = _loss_fn(params, model_state, batch, key)
        return loss, (aux[0], {"flat": jnp.asarray(1.0)})

    fit_state = train.init_fit_state(state, options)
    step = train.make_train_step(loss_fn, opt)
    scales: list[float] = []
    for epoch in range(3):
        fit_state, metrics = jit(train.fit_epoch, static_argnums=0)(
            step, fit_state, data, jax.random.key(1), options)
        scales.append(float(metrics.lr_scale))
        expected = float(theirs(2 * (epoch + 1))) * scales[-1]
        np.testing.assert_allclose(float(fo.current_learning_rate(fit_state.train_state.opt_state)),
                                   expected, rtol=1e-6)
    assert scales == [1.0, 0.5, 0.25]  # reductions after epochs 2 and 3
    scanned, m = jit(train.fit_scan, static_argnums=0, static_argnames="epochs")(
        step, train.init_fit_state(state, options), data, jax.random.key(1), options, epochs=3)
    np.testing.assert_allclose(float(fo.current_learning_rate(scanned.train_state.opt_state)),
                               float(theirs(6)) * float(m.lr_scale[-1]), rtol=1e-6)


def test_vmap_one_rate_per_run() -> None:
    sched_peak = jnp.asarray([0.1, 0.2, 0.4])

    def run(peak: Array) -> tuple[Array, Any]:
        tx = fo.chain(fo.adam(schedules.exponential_decay(peak, 0.5, transition_steps=3)),
                      train.scale_by_plateau())
        state = train.set_plateau_scale(tx.init(PARAMS), peak * 10)  # a traced plateau scale
        for t in range(3):
            _, state = tx.update(_grads(t), state, PARAMS)
        return fo.current_learning_rate(state), state

    rates, states = jit(vmap(run))(sched_peak)
    expected = sched_peak * 0.5 * sched_peak * 10  # sched(3) = peak / 2, times the scale
    np.testing.assert_allclose(rates, expected, rtol=1e-6)
    np.testing.assert_allclose(fo.current_learning_rate(states), expected, rtol=1e-6)  # batched
    np.testing.assert_allclose(vmap(fo.current_learning_rate)(states), expected, rtol=1e-6)


def test_traced_learning_rate_and_its_gradient() -> None:
    def rate(lr: Array) -> Array:
        return fo.current_learning_rate(fo.lookahead(fo.adamw(lr), 3).init(PARAMS))

    assert float(jit(rate)(jnp.asarray(0.3))) == np.float32(0.3)
    assert float(grad(rate)(jnp.asarray(0.3))) == 1.0


def test_float64_learning_rate_under_x64() -> None:
    with jax.enable_x64(True):
        params = tree_map(lambda p: p.astype(jnp.float64), PARAMS)
        tx = fo.sgd(0.1)
        state = tx.init(params)
        _, state = jit(tx.update)(params, state, params)
        rate = fo.current_learning_rate(state)
        assert rate.dtype == jnp.float64 and float(rate) == 0.1


def test_partition_groups_are_read_one_by_one() -> None:
    tx = fo.partition({"a": fo.sgd(0.1), "b": fo.adam(0.01)}, {"w": "a", "b": "b"})
    state = tx.init(PARAMS)
    with pytest.raises(ValueError, match="got a state with 2 ScaleByLearningRateState") as info:
        fo.current_learning_rate(state)
    assert STYLE.match(str(info.value))
    assert float(fo.current_learning_rate(state.inner_states["a"])) == np.float32(0.1)
    assert float(fo.current_learning_rate(state.inner_states["b"])) == np.float32(0.01)
    frozen = fo.partition({"a": fo.sgd(0.1), "b": fo.freeze(True)}, {"w": "a", "b": "b"})
    assert float(fo.current_learning_rate(frozen.init(PARAMS))) == np.float32(0.1)


def test_a_state_without_a_recorded_rate_is_refused() -> None:
    for state in (optax.adam(0.1).init(PARAMS), fo.scale_by_adam().init(PARAMS), ()):
        with pytest.raises(ValueError, match="got a state with 0 ScaleByLearningRateState") as info:
            fo.current_learning_rate(state)
        assert STYLE.match(str(info.value))
