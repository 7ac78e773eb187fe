"""Every functrain transformation that optax also has matches optax over 100 jitted steps.

The pytree is random and nested, with dense- and conv-shaped leaves; gradients depend on the
params and the step, and their size alternates so that clipping is sometimes active and sometimes
not. The criterion is 1e-6 relative (elementwise ``rtol=1e-6``, plus ``atol`` of 1e-7 of the
leaf's largest entry for entries that cross zero); most cases are in fact bit-identical. The final
optimizer states are compared too: their floating buffers (moments, velocities, accumulators), in
order, match optax's (functrain's states also hold int32 step counters where optax's may not, and
the learning rate ``ScaleByLearningRateState`` records for ``current_learning_rate``, so those are
left out of that comparison; ``tests/test_optim_hyperparams.py`` checks the records). Schedules
are compared value by value, and used as learning rates over 100 steps.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from _optax_layout import optax_layout
from _typed import jit

from functrain import _tree
import functrain.optim as fo
from functrain._tree import describe_difference
from functrain.optim import schedules
from functrain.typing import Array, PyTree

STEPS = 100


def _params() -> PyTree:
    rng = np.random.default_rng(42)
    return {
        "dense": {"w": jnp.asarray(rng.normal(size=(6, 5)), jnp.float32),
                  "b": jnp.asarray(rng.normal(size=(5,)), jnp.float32)},
        "conv": [jnp.asarray(rng.normal(size=(3, 3, 2, 4)), jnp.float32),
                 (jnp.asarray(rng.normal(size=(4,)), jnp.float32),)],
    }


def _grads(params: PyTree, t: Array) -> PyTree:
    # dg/dx = 0.5 + 0.2 cos(.) > 0: gradient descent contracts, so float rounding is not
    # amplified over the 100 steps. Small every third step: clipping inactive then.
    size = jnp.where(t % 3 == 0, 0.02, 2.0)
    return _tree.tree_map(lambda x: size * (0.5 * x + 0.2 * jnp.sin(x + t)), params)


def _run(tx: Any, nan_at: tuple[int, ...] = ()) -> tuple[PyTree, Any]:
    params = _params()

    def body(carry: tuple[PyTree, Any], t: Array) -> tuple[tuple[PyTree, Any], None]:
        p, s = carry
        g = _grads(p, t.astype(jnp.float32))
        for bad in nan_at:
            g = _tree.tree_map(lambda x: jnp.where(t == bad, jnp.nan, x), g)
        u, s = tx.update(g, s, p)
        return (_tree.tree_map(lambda a, b: a + b, p, u), s), None

    (p, s), _ = jax.lax.scan(body, (params, tx.init(params)), jnp.arange(STEPS))
    return p, s



def _float_leaves(state: Any) -> list[Any]:
    return [x for x in jax.tree_util.tree_leaves(optax_layout(state))
            if jnp.issubdtype(x.dtype, jnp.floating)]


def _assert_close(a: list[Any], b: list[Any]) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b):
        y64 = np.asarray(y, np.float64)
        assert x.shape == y64.shape and np.all(np.isfinite(y64))
        np.testing.assert_allclose(np.asarray(x, np.float64), y64, rtol=1e-6,
                                   atol=1e-7 * np.max(np.abs(y64), initial=0.0))


def _same(state: Any) -> Any:
    return state


StateView = Callable[[Any], Any]


def assert_parity(ours: Any, theirs: Any, nan_at: tuple[int, ...] = (),
                  views: tuple[StateView, StateView] = (_same, _same)) -> None:
    """Same params after 100 steps, and the same floating state buffers (seen through
    ``views``, for states whose fields come in another order than optax's)."""
    # Low LLVM optimization: compiles 2x faster; both sides are compiled the same way.
    fast = {"xla_backend_optimization_level": 0}
    (a, sa), (b, sb) = jit(lambda: (_run(ours, nan_at), _run(theirs, nan_at)),
                               compiler_options=fast)()
    assert describe_difference(b, a) is None
    _assert_close(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b))
    _assert_close(_float_leaves(views[0](sa)), _float_leaves(views[1](sb)))
    # the run moved the params (a vacuous comparison would pass too)
    moved = [np.max(np.abs(np.asarray(x) - np.asarray(p0)))
             for x, p0 in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(_params()))]
    assert max(moved) > 1e-3


def _mask(params: PyTree) -> PyTree:
    return _tree.tree_map(lambda x: x.ndim >= 2, params)


MASK_TREE = {"dense": {"w": True, "b": False}, "conv": [True, (False,)]}

CASES: dict[str, Callable[[], tuple[Any, Any]]] = {
    "scale": lambda: (fo.scale(-0.05), optax.scale(-0.05)),
    "identity": lambda: (fo.chain(fo.identity(), fo.scale(-0.1)),
                         optax.chain(optax.identity(), optax.scale(-0.1))),
    "scale_by_learning_rate": lambda: (fo.scale_by_learning_rate(0.1),
                                       optax.scale_by_learning_rate(0.1)),
    "scale_by_learning_rate_array": lambda: (fo.scale_by_learning_rate(jnp.asarray(0.1)),
                                             optax.scale_by_learning_rate(jnp.asarray(0.1))),
    "trace": lambda: (fo.chain(fo.trace(0.8), fo.scale(-0.01)),
                      optax.chain(optax.trace(0.8), optax.scale(-0.01))),
    "trace_nesterov": lambda: (fo.chain(fo.trace(0.8, nesterov=True), fo.scale(-0.01)),
                               optax.chain(optax.trace(0.8, nesterov=True), optax.scale(-0.01))),
    "sgd": lambda: (fo.sgd(0.05), optax.sgd(0.05)),
    "sgd_momentum": lambda: (fo.sgd(0.01, momentum=0.9), optax.sgd(0.01, momentum=0.9)),
    "momentum": lambda: (fo.momentum(0.01), optax.sgd(0.01, momentum=0.9)),
    "momentum_nesterov": lambda: (fo.momentum(0.01, 0.8, nesterov=True),
                                  optax.sgd(0.01, 0.8, nesterov=True)),
    "scale_by_adagrad": lambda: (fo.chain(fo.scale_by_adagrad(0.2, 1e-6), fo.scale(-0.1)),
                                 optax.chain(optax.scale_by_rss(0.2, 1e-6), optax.scale(-0.1))),
    "adagrad": lambda: (fo.adagrad(0.1), optax.adagrad(0.1)),
    "scale_by_rms": lambda: (fo.chain(fo.scale_by_rms(0.8, 1e-6, 0.5), fo.scale(-0.01)),
                             optax.chain(optax.scale_by_rms(0.8, 1e-6, 0.5), optax.scale(-0.01))),
    "scale_by_rms_centered": lambda: (
        fo.chain(fo.scale_by_rms(0.9, 1e-6, 1.0, centered=True), fo.scale(-0.01)),
        optax.chain(optax.scale_by_stddev(0.9, 1e-6, 1.0), optax.scale(-0.01))),
    "rmsprop": lambda: (fo.rmsprop(0.01), optax.rmsprop(0.01)),
    "rmsprop_centered": lambda: (fo.rmsprop(0.01, centered=True, initial_scale=1.0),
                                 optax.rmsprop(0.01, centered=True, initial_scale=1.0)),
    "scale_by_adam": lambda: (fo.chain(fo.scale_by_adam(0.8, 0.99, 1e-6, 1e-8), fo.scale(-0.01)),
                              optax.chain(optax.scale_by_adam(0.8, 0.99, 1e-6, 1e-8),
                                          optax.scale(-0.01))),
    "scale_by_amsgrad": lambda: (
        fo.chain(fo.scale_by_amsgrad(), fo.scale(-0.01)),
        optax.chain(optax.scale_by_amsgrad(), optax.scale(-0.01))),
    "adam": lambda: (fo.adam(0.01), optax.adam(0.01)),
    "adam_betas": lambda: (fo.adam(0.02, 0.5, 0.9, 1e-4), optax.adam(0.02, 0.5, 0.9, 1e-4)),
    "adamw_all_leaves": lambda: (fo.adamw(0.01, weight_decay=0.1, mask=None),
                                 optax.adamw(0.01, weight_decay=0.1)),
    "adamw_default_mask": lambda: (fo.adamw(0.01, weight_decay=0.1),
                                   optax.adamw(0.01, weight_decay=0.1, mask=_mask)),
    "adamw_mask_tree": lambda: (fo.adamw(0.01, weight_decay=0.1, mask=MASK_TREE),
                                optax.adamw(0.01, weight_decay=0.1, mask=MASK_TREE)),
    "add_decayed_weights": lambda: (
        fo.chain(fo.add_decayed_weights(0.05), fo.sgd(0.05)),
        optax.chain(optax.add_decayed_weights(0.05), optax.sgd(0.05))),
    "add_decayed_weights_masked_scheduled": lambda: (
        fo.chain(fo.add_decayed_weights(schedules.linear_schedule(0.1, 0.0, 50), _mask),
                 fo.sgd(0.05)),
        optax.chain(optax.add_decayed_weights(optax.linear_schedule(0.1, 0.0, 50), _mask),
                    optax.sgd(0.05))),
    "clip_by_global_norm": lambda: (fo.chain(fo.clip_by_global_norm(0.5), fo.sgd(0.1)),
                                    optax.chain(optax.clip_by_global_norm(0.5), optax.sgd(0.1))),
    "clip_by_global_norm_adamw": lambda: (
        fo.chain(fo.clip_by_global_norm(1.0), fo.adamw(0.01, weight_decay=1e-2, mask=None)),
        optax.chain(optax.clip_by_global_norm(1.0), optax.adamw(0.01, weight_decay=1e-2))),
    "clip_by_value": lambda: (fo.chain(fo.clip_by_value(max_delta=0.3), fo.sgd(0.1)),
                              optax.chain(optax.clip(0.3), optax.sgd(0.1))),
    "adaptive_grad_clip": lambda: (fo.chain(fo.adaptive_grad_clip(0.05), fo.sgd(0.1)),
                                   optax.chain(optax.adaptive_grad_clip(0.05), optax.sgd(0.1))),
    "normalize_by_global_norm": lambda: (
        fo.normalized_sgd(0.05),
        optax.chain(optax.normalize_by_update_norm(eps=0.0), optax.sgd(0.05))),
    "accumulate_gradients": lambda: (
        fo.accumulate_gradients(fo.adam(0.01), 3),
        optax.MultiSteps(optax.adam(0.01), 3).gradient_transformation()),
    "skip_nonfinite": lambda: (fo.skip_nonfinite(fo.adam(0.01)),
                               optax.apply_if_finite(optax.adam(0.01), 10**6)),
}


# optax.MultiSteps keeps (mini_step, gradient_step, inner_opt_state, acc_grads, skip_state).
VIEWS: dict[str, tuple[StateView, StateView]] = {
    "accumulate_gradients": (lambda s: (s.inner_state, s.grad_mean),
                             lambda s: (s.inner_opt_state, s.acc_grads)),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_matches_optax(name: str) -> None:
    ours, theirs = CASES[name]()
    assert_parity(ours, theirs, views=VIEWS.get(name, (_same, _same)))


def test_skip_nonfinite_matches_optax_apply_if_finite_with_nan_steps() -> None:
    assert_parity(fo.skip_nonfinite(fo.momentum(0.01)),
                  optax.apply_if_finite(optax.sgd(0.01, 0.9), 10**6), nan_at=(3, 4, 50))


SCHEDULES: dict[str, Callable[[], tuple[Any, Any]]] = {
    "constant": lambda: (schedules.constant(0.02), optax.constant_schedule(0.02)),
    "exponential_decay": lambda: (schedules.exponential_decay(0.05, 0.97, 3),
                                  optax.exponential_decay(0.05, 3, 0.97)),
    "exponential_decay_staircase_begin_end": lambda: (
        schedules.exponential_decay(0.05, 0.9, 7, staircase=True, transition_begin=5,
                                    end_value=0.01),
        optax.exponential_decay(0.05, 7, 0.9, 5, True, 0.01)),
    "exponential_growth_end": lambda: (
        schedules.exponential_decay(0.001, 1.05, 2, end_value=0.02),
        optax.exponential_decay(0.001, 2, 1.05, end_value=0.02)),
    "piecewise_constant": lambda: (schedules.piecewise_constant(0.05, {10: 0.5, 50: 0.1}),
                                   optax.piecewise_constant_schedule(0.05, {10: 0.5, 50: 0.1})),
    "polynomial": lambda: (schedules.polynomial(0.05, 0.001, 2.0, 60, 10),
                           optax.polynomial_schedule(0.05, 0.001, 2.0, 60, 10)),
    "linear_schedule": lambda: (schedules.linear_schedule(0.0, 0.05, 30),
                                optax.linear_schedule(0.0, 0.05, 30)),
    "linear_warmup": lambda: (schedules.linear_warmup(0.001, 0.05, 20, 5),
                              optax.linear_schedule(0.001, 0.05, 20, 5)),
    "cosine_decay": lambda: (schedules.cosine_decay(0.05, 80, 0.1),
                             optax.cosine_decay_schedule(0.05, 80, 0.1)),
    "warmup_cosine_decay": lambda: (schedules.warmup_cosine_decay(0.0, 0.05, 10, 90, 0.001),
                                    optax.warmup_cosine_decay_schedule(0.0, 0.05, 10, 90, 0.001)),
    "one_cycle": lambda: (schedules.one_cycle(90, 0.05), optax.cosine_onecycle_schedule(90, 0.05)),
    "one_cycle_custom": lambda: (schedules.one_cycle(70, 0.05, 0.25, 10.0, 100.0),
                                 optax.cosine_onecycle_schedule(70, 0.05, 0.25, 10.0, 100.0)),
    "join": lambda: (
        schedules.join([schedules.constant(0.05), schedules.linear_schedule(0.05, 0.0, 20),
                        schedules.constant(0.01)], [40, 70]),
        optax.join_schedules([optax.constant_schedule(0.05), optax.linear_schedule(0.05, 0.0, 20),
                              optax.constant_schedule(0.01)], [40, 70])),
}


@pytest.mark.parametrize("name", sorted(SCHEDULES))
def test_schedule_matches_optax(name: str) -> None:
    ours, theirs = SCHEDULES[name]()
    steps = jnp.arange(150, dtype=jnp.int32)
    a = jit(jax.vmap(ours))(steps)
    def reference(s: jax.Array) -> jax.Array:
        return jnp.asarray(theirs(s), jnp.float32)

    b = jit(jax.vmap(reference))(steps)
    assert a.dtype == jnp.float32 and a.shape == (150,)
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6, atol=0.0)
    # used as a learning rate (through the schedule path with its step counter) over 100 steps
    assert_parity(fo.momentum(ours, 0.5), optax.sgd(theirs, 0.5))
