"""SAM / ASAM training step: the perturbed point w + rho g/||g|| (and ASAM's) for a quadratic, two
steps against a hand-written float64 SAM step, rho = 0 is the plain step, the model state of the
first pass (kept on a step a guard skipped), the metrics, jit (chex variants) and vmap over a
traced rho, errors."""

from __future__ import annotations

import re
from typing import Any, NamedTuple

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from _typed import jit

from functrain import layers, optim
from functrain.optim import GradientTransformation
from functrain.train import classifier_loss, init_train_state, make_sam_train_step, make_train_step, sam_perturbation
from functrain.typing import Array, Metrics, PRNGKey, PyTree

STYLE = re.compile(r"^[\w.]+: argument '[\w.\[\]']+' must be .+, got .+$", re.S)
KEY = jax.random.key(0)
W0 = np.array([0.5, -1.0, 2.0, 0.25], np.float64)


def _any(value: object) -> Any:
    """A deliberately wrong argument, past the type checker."""
    return value


def half_square(params: PyTree, model_state: PyTree, batch: PyTree,
                key: PRNGKey) -> tuple[Array, tuple[PyTree, Metrics]]:
    """0.5 ||w||^2: its gradient at a point is the point itself (exactly, in floating point)."""
    return 0.5 * jnp.sum(params ** 2), (model_state, {})


class Recorded(NamedTuple):
    grads: Array


def recorder() -> GradientTransformation[Recorded]:
    """An 'optimizer' that keeps the gradient it receives in its state and does not move."""
    def init(params: Array) -> Recorded:
        return Recorded(jnp.zeros_like(params))

    def update(updates: Array, state: Recorded, params: Array | None = None,
               **extra_args: Any) -> tuple[Array, Recorded]:
        return jnp.zeros_like(updates), Recorded(updates)

    return GradientTransformation(init, update)


@pytest.mark.parametrize("adaptive", [False, True])
def test_the_gradient_is_taken_at_the_perturbed_point(adaptive: bool) -> None:
    rho = 0.3
    opt = recorder()
    state = init_train_state(jnp.asarray(W0, jnp.float32), (), opt)
    state, _ = make_sam_train_step(half_square, opt, rho=rho, adaptive=adaptive)(state, None, KEY)
    g = W0  # the gradient of 0.5 ||w||^2 at w
    if adaptive:  # ASAM: rho T^2 g / ||T g||, T = |w|
        expected = W0 + rho * W0 ** 2 * g / np.linalg.norm(np.abs(W0) * g)
    else:
        expected = W0 + rho * g / np.linalg.norm(g)
    np.testing.assert_allclose(np.asarray(state.opt_state.grads), expected, rtol=1e-6)
    e = sam_perturbation(jnp.asarray(g, jnp.float32), jnp.asarray(W0, jnp.float32), rho, adaptive=adaptive)
    np.testing.assert_allclose(np.asarray(e), expected - W0, rtol=1e-6)


def _least_squares_data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((16, 4))
    return x, x @ np.array([1.0, -2.0, 0.5, 3.0]) + 0.1 * rng.standard_normal(16)


def least_squares(params: PyTree, model_state: PyTree, batch: PyTree,
                  key: PRNGKey) -> tuple[Array, tuple[PyTree, Metrics]]:
    x, y = batch
    return jnp.mean((x @ params - y) ** 2), (model_state, {})


def _reference_steps(adaptive: bool, rho: float, lr: float, beta: float, n: int) -> np.ndarray:
    """SAM with heavy-ball momentum, by hand in float64."""
    x, y = _least_squares_data()

    def grad(w: np.ndarray) -> np.ndarray:
        return np.asarray(2 * x.T @ (x @ w - y) / len(y))

    w, v = W0.copy(), np.zeros_like(W0)
    for _ in range(n):
        g = grad(w)
        t = np.abs(w) if adaptive else np.ones_like(w)
        e = rho * t ** 2 * g / np.linalg.norm(t * g)
        v = beta * v + grad(w + e)
        w = w - lr * v
    return np.asarray(w)


class TestSamStep(chex.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    def test_matches_a_hand_written_float64_step(self) -> None:
        x, y = _least_squares_data()
        batch = (jnp.asarray(x, jnp.float32), jnp.asarray(y, jnp.float32))
        for adaptive in (False, True):
            opt = optim.sgd(0.05, momentum=0.9)
            step = self.variant(make_sam_train_step(least_squares, opt, rho=0.1, adaptive=adaptive))
            state = init_train_state(jnp.asarray(W0, jnp.float32), (), opt)
            for _ in range(3):
                state, _ = step(state, batch, KEY)
            np.testing.assert_allclose(np.asarray(state.params), _reference_steps(adaptive, 0.1, 0.05, 0.9, 3),
                                       rtol=2e-5, atol=1e-6)

    @chex.variants(with_jit=True, without_jit=True)
    def test_metrics_and_the_model_state_of_the_first_pass(self) -> None:
        def loss_fn(params: PyTree, model_state: PyTree, batch: PyTree,
                    key: PRNGKey) -> tuple[Array, tuple[PyTree, Metrics]]:
            loss = 0.5 * jnp.sum(params ** 2)
            norm = jnp.sqrt(jnp.sum(params ** 2))  # jnp.linalg.norm is a JitWrapped: Unknown to pyright
            return loss, (model_state + loss, {"norm": norm})  # state: the loss seen

        opt = optim.sgd(0.1)
        rho = 0.5
        state = init_train_state(jnp.asarray(W0, jnp.float32), jnp.zeros(()), opt)
        new, metrics = self.variant(make_sam_train_step(loss_fn, opt, rho=rho, grad_norm=True))(state, None, KEY)
        norm = np.linalg.norm(W0)
        perturbed = W0 * (1 + rho / norm)
        assert sorted(metrics) == ["grad_norm", "loss", "norm", "perturbed_loss"]
        np.testing.assert_allclose(float(metrics["loss"]), 0.5 * norm ** 2, rtol=1e-6)
        np.testing.assert_allclose(float(metrics["norm"]), norm, rtol=1e-6)  # the first pass's
        np.testing.assert_allclose(float(metrics["perturbed_loss"]), 0.5 * np.sum(perturbed ** 2), rtol=1e-6)
        np.testing.assert_allclose(float(metrics["grad_norm"]), np.linalg.norm(perturbed), rtol=1e-6)
        np.testing.assert_allclose(float(new.model_state), 0.5 * norm ** 2, rtol=1e-6)  # at w, not w + e
        np.testing.assert_allclose(np.asarray(new.params), W0 - 0.1 * perturbed, rtol=1e-6)
        assert int(new.step) == 1
        _, lean = self.variant(make_sam_train_step(loss_fn, opt, rho=rho))(state, None, KEY)
        assert sorted(lean) == ["loss", "norm", "perturbed_loss"]  # the gradient norm is opt-in


def _bn_state(opt: Any) -> tuple[Any, Any, tuple[Array, Array]]:
    model = layers.serial(layers.Dense(4), layers.BatchNorm(), layers.Relu, layers.Dense(3))
    params, model_state, _ = model.init(jax.random.key(0), (-1, 5))
    x = jax.random.normal(jax.random.key(1), (8, 5))
    return model, init_train_state(params, model_state, opt), (x, jnp.arange(8) % 3)


def test_a_skipped_step_keeps_batch_norm_statistics() -> None:
    """As make_train_step: a step the optimizer's guard skips (NaN in the batch) leaves params,
    optimizer state AND model state unchanged (no NaN running statistics), with functrain's and
    optax's guards, under jit and under vmap (each run on its own); a clean step updates them."""
    guards: list[Any] = [optim.skip_nonfinite(optim.sgd(0.1)),
                         optim.chain(optim.clip_by_global_norm(1.0), optim.skip_nonfinite(optim.adam(0.1))),
                         optax.apply_if_finite(optax.sgd(0.1), 5)]
    for opt in guards:
        model, state, (x, y) = _bn_state(opt)
        run = jit(make_sam_train_step(classifier_loss(model.apply, train=True), opt, rho=0.05))
        new, metrics = run(state, (x.at[3, 2].set(jnp.nan), y), KEY)
        assert bool(jnp.isnan(metrics["loss"]))
        chex.assert_trees_all_equal(new.params, state.params)
        chex.assert_trees_all_equal(new.model_state, state.model_state)  # not NaN statistics
        assert int(new.step) == 1
        good, _ = run(new, (x, y), KEY)
        assert not np.allclose(good.model_state[1].mean, state.model_state[1].mean)
        assert bool(jnp.all(jnp.isfinite(good.model_state[1].var)))
    opt = optim.skip_nonfinite(optim.sgd(0.1))
    model, state, (x, y) = _bn_state(opt)
    step = make_sam_train_step(classifier_loss(model.apply, train=True), opt)
    xs = jnp.stack([x.at[0, 0].set(jnp.inf), x])  # run 0 sees a bad batch, run 1 a clean one
    out, _ = jit(jax.vmap(step, in_axes=(None, 0, None)))(state, (xs, jnp.stack([y, y])), KEY)
    np.testing.assert_array_equal(out.model_state[1].mean[0], state.model_state[1].mean)
    assert not np.allclose(out.model_state[1].mean[1], state.model_state[1].mean)


def test_rho_zero_is_the_plain_step() -> None:
    x, y = _least_squares_data()
    batch = (jnp.asarray(x, jnp.float32), jnp.asarray(y, jnp.float32))
    opt = optim.adam(0.01)
    state = init_train_state(jnp.asarray(W0, jnp.float32), (), opt)
    sam, _ = make_sam_train_step(least_squares, opt, rho=0.0)(state, batch, KEY)
    plain, _ = make_train_step(least_squares, opt)(state, batch, KEY)
    np.testing.assert_allclose(np.asarray(sam.params), np.asarray(plain.params), rtol=1e-7)


def test_zero_gradient_gives_no_perturbation() -> None:
    e = sam_perturbation({"a": jnp.zeros(3)}, {"a": jnp.ones(3)}, 0.05)
    np.testing.assert_array_equal(np.asarray(e["a"]), np.zeros(3))


def test_vmap_over_a_traced_rho() -> None:
    x, y = _least_squares_data()
    batch = (jnp.asarray(x, jnp.float32), jnp.asarray(y, jnp.float32))
    opt = optim.sgd(0.05)
    start = init_train_state(jnp.asarray(W0, jnp.float32), (), opt)

    def run(rho: Array) -> Any:
        return make_sam_train_step(least_squares, opt, rho=rho)(start, batch, KEY)[0].params

    rhos = jnp.array([0.0, 0.05, 0.5])
    batched = np.asarray(jit(jax.vmap(run))(rhos))
    for i, rho in enumerate([0.0, 0.05, 0.5]):
        np.testing.assert_allclose(batched[i], _reference_steps(False, rho, 0.05, 0.0, 1) if rho else
                                   np.asarray(run(jnp.asarray(0.0))), rtol=2e-5, atol=1e-6)


@pytest.mark.parametrize(("call", "error", "name"), [
    (lambda: make_sam_train_step(half_square, optim.sgd(0.1), rho=-0.1), ValueError, "rho"),
    (lambda: make_sam_train_step(half_square, optim.sgd(0.1), rho=_any("big")), TypeError, "rho"),
    (lambda: make_sam_train_step(half_square, optim.sgd(0.1), adaptive=_any(1)), TypeError, "adaptive"),
    (lambda: make_sam_train_step(half_square, optim.sgd(0.1), grad_norm=_any(None)), TypeError, "grad_norm"),
    (lambda: make_sam_train_step(_any(None), optim.sgd(0.1)), TypeError, "loss_fn"),
    (lambda: make_sam_train_step(half_square, _any(optim.sgd)), TypeError, "optimizer"),
    (lambda: sam_perturbation(jnp.ones(2), jnp.ones(2), -1.0), ValueError, "rho"),
    (lambda: sam_perturbation(jnp.ones(2), {"w": jnp.ones(2)}, 0.1), TypeError, "params"),
])
def test_errors(call: object, error: type[Exception], name: str) -> None:
    with pytest.raises(error) as info:
        call()  # type: ignore[operator]  # a lambda from the table
    assert f"argument '{name}'" in str(info.value) and STYLE.match(str(info.value)), str(info.value)
