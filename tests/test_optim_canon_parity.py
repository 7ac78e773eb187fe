"""The optimizer canon (issue 16) matches optax over 100 jitted steps, in float32 and float64.

Same problem as ``test_optim_parity.py``: a random nested pytree with dense- and conv-shaped
leaves, gradients that depend on the params and the step and alternate in size. Criterion: 1e-6
relative in float32 (plus ``atol`` of 1e-7 of the leaf's largest entry for entries crossing
zero), 1e-12 in float64 (``jax.enable_x64``); the final floating state buffers match optax's too.
Each optimizer, ``jax.vmap``-ed over its learning rate, equals its per-value runs. The new
schedules match optax value by value and as learning rates over 100 steps.
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
from _typed import jit, vmap

import functrain.optim as fo
from functrain._tree import describe_difference, tree_map
from functrain.optim import schedules
from functrain.typing import Array, ArrayLike, PyTree

STEPS = 100
FAST = {"xla_backend_optimization_level": 0}  # compiles 2x faster; both sides alike


def _params(dtype: Any = jnp.float32) -> PyTree:
    rng = np.random.default_rng(42)
    return {
        "dense": {"w": jnp.asarray(rng.normal(size=(6, 5)), dtype),
                  "b": jnp.asarray(rng.normal(size=(5,)), dtype)},
        "conv": [jnp.asarray(rng.normal(size=(3, 3, 2, 4)), dtype),
                 (jnp.asarray(rng.normal(size=(4,)), dtype),)],
    }


def _grads(params: PyTree, t: Array) -> PyTree:
    size = jnp.where(t % 3 == 0, 0.02, 2.0)
    return tree_map(lambda x: size * (0.5 * x + 0.2 * jnp.sin(x + t)), params)


def _run(tx: Any, dtype: Any = jnp.float32) -> tuple[PyTree, Any]:
    params = _params(dtype)

    def body(carry: tuple[PyTree, Any], t: Array) -> tuple[tuple[PyTree, Any], None]:
        p, s = carry
        u, s = tx.update(_grads(p, t.astype(dtype)), s, p)
        return (tree_map(lambda a, b: a + b, p, u), s), None

    (p, s), _ = jax.lax.scan(body, (params, tx.init(params)), jnp.arange(STEPS))
    return p, s



def _float_leaves(tree: Any) -> list[Any]:
    return [x for x in jax.tree_util.tree_leaves(optax_layout(tree))
            if jnp.issubdtype(x.dtype, jnp.floating)]


def _assert_close(a: list[Any], b: list[Any], rtol: float) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b):
        y64 = np.asarray(y, np.float64)
        assert x.shape == y64.shape and np.all(np.isfinite(y64))
        np.testing.assert_allclose(np.asarray(x, np.float64), y64, rtol=rtol,
                                   atol=rtol / 10 * np.max(np.abs(y64), initial=0.0))


def assert_parity(ours: Any, theirs: Any, dtype: Any = jnp.float32, rtol: float = 1e-6,
                  views: tuple[Callable[[Any], Any], Callable[[Any], Any]] | None = None) -> None:
    """Same params after 100 steps, and the same floating state buffers (through ``views``)."""
    (a, sa), (b, sb) = jit(lambda: (_run(ours, dtype), _run(theirs, dtype)),
                               compiler_options=FAST)()
    assert describe_difference(b, a) is None
    assert all(x.dtype == dtype for x in jax.tree_util.tree_leaves(a))
    _assert_close(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b), rtol)
    if views is not None:
        sa, sb = views[0](sa), views[1](sb)
    _assert_close(_float_leaves(sa), _float_leaves(sb), rtol)
    moved = [np.max(np.abs(np.asarray(x) - np.asarray(p0)))
             for x, p0 in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(_params()))]
    assert max(moved) > 1e-3  # the run moved the params (a vacuous comparison would pass too)


def _kernels(params: PyTree) -> PyTree:
    return tree_map(lambda x: x.ndim >= 2, params)


def _every_k(gradient_step: ArrayLike) -> Array:
    return 1 + jnp.asarray(gradient_step) % 3


LABELS = {"dense": {"w": "adam", "b": "sgd"}, "conv": ["lion", ("sgd",)]}
FROZEN = {"dense": {"w": False, "b": True}, "conv": [False, (True,)]}

# name -> (ours(lr), optax(lr)): each an optimizer with its learning rate as the argument.
OPTIMIZERS: dict[str, tuple[Callable[[Any], Any], Callable[[Any], Any]]] = {
    "nadam": (lambda lr: fo.nadam(lr), lambda lr: optax.nadam(lr)),
    "nadam_betas": (lambda lr: fo.nadam(lr, 0.5, 0.9, 1e-4), lambda lr: optax.nadam(lr, 0.5, 0.9, 1e-4)),
    "radam": (lambda lr: fo.radam(lr), lambda lr: optax.radam(lr)),
    "radam_short_warmup": (lambda lr: fo.radam(lr, 0.8, 0.9, 1e-6, threshold=4.5),
                           lambda lr: optax.radam(lr, 0.8, 0.9, 1e-6, threshold=4.5)),
    "adamax": (lambda lr: fo.adamax(lr), lambda lr: optax.adamax(lr)),
    "amsgrad": (lambda lr: fo.amsgrad(lr), lambda lr: optax.amsgrad(lr)),
    "adabelief": (lambda lr: fo.adabelief(lr), lambda lr: optax.adabelief(lr)),
    "adabelief_eps": (lambda lr: fo.adabelief(lr, 0.8, 0.99, 1e-8, 1e-10),
                      lambda lr: optax.adabelief(lr, 0.8, 0.99, 1e-8, 1e-10)),
    "lion_all_leaves": (lambda lr: fo.lion(lr, weight_decay=0.1, mask=None),
                        lambda lr: optax.lion(lr, weight_decay=0.1)),
    "lion_default_mask": (lambda lr: fo.lion(lr, 0.8, 0.95, weight_decay=0.1),
                          lambda lr: optax.lion(lr, 0.8, 0.95, weight_decay=0.1, mask=_kernels)),
    "lamb": (lambda lr: fo.lamb(lr, weight_decay=0.01, mask=None),
             lambda lr: optax.lamb(lr, weight_decay=0.01)),
    "lamb_default_mask": (lambda lr: fo.lamb(lr, eps=1e-4, weight_decay=0.1),
                          lambda lr: optax.lamb(lr, eps=1e-4, weight_decay=0.1, mask=_kernels)),
    "lars_all_leaves": (lambda lr: fo.lars(lr, 1e-3, None, 0.02, 1e-6, None),
                        lambda lr: optax.lars(lr, 1e-3, True, 0.02, 1e-6, True)),
    "lars_default_masks_nesterov": (
        lambda lr: fo.lars(lr, 1e-3, trust_coefficient=0.02, momentum=0.8, nesterov=True),
        lambda lr: optax.lars(lr, 1e-3, _kernels, 0.02, 0.0, _kernels, 0.8, True)),
    "partition": (
        lambda lr: fo.partition({"adam": fo.adam(lr), "sgd": fo.sgd(lr, 0.9),
                                 "lion": fo.lion(lr, mask=None)}, LABELS),
        lambda lr: optax.partition({"adam": optax.adam(lr), "sgd": optax.sgd(lr, 0.9),
                                    "lion": optax.lion(lr)}, LABELS)),
    "masked": (lambda lr: fo.chain(fo.masked(fo.scale_by_adam(), _kernels), fo.sgd(lr)),
               lambda lr: optax.chain(optax.masked(optax.scale_by_adam(), _kernels),
                                      optax.sgd(lr))),
    "freeze": (lambda lr: fo.freeze(FROZEN, fo.adam(lr)),
               lambda lr: optax.selective_transform(optax.adam(lr), freeze_mask=FROZEN)),
    "ema_gradients": (lambda lr: fo.chain(fo.ema(0.8), fo.sgd(lr)),
                      lambda lr: optax.chain(optax.ema(0.8), optax.sgd(lr))),
}

TRANSFORMS: dict[str, Callable[[], tuple[Any, Any]]] = {
    "scale_by_nadam": lambda: (fo.chain(fo.scale_by_nadam(0.8, 0.99, 1e-6, 1e-8), fo.scale(-0.01)),
                               optax.chain(optax.scale_by_adam(0.8, 0.99, 1e-6, 1e-8,
                                                               nesterov=True), optax.scale(-0.01))),
    "scale_by_radam": lambda: (fo.chain(fo.scale_by_radam(eps_root=1e-8), fo.scale(-0.01)),
                               optax.chain(optax.scale_by_radam(eps_root=1e-8), optax.scale(-0.01))),
    "scale_by_adamax": lambda: (fo.chain(fo.scale_by_adamax(0.5, 0.9, 1e-3), fo.scale(-0.01)),
                                optax.chain(optax.scale_by_adamax(0.5, 0.9, 1e-3),
                                            optax.scale(-0.01))),
    "scale_by_belief": lambda: (fo.chain(fo.scale_by_belief(), fo.scale(-0.01)),
                                optax.chain(optax.scale_by_belief(), optax.scale(-0.01))),
    "scale_by_lion": lambda: (fo.chain(fo.scale_by_lion(0.5, 0.9), fo.scale(-0.01)),
                              optax.chain(optax.scale_by_lion(0.5, 0.9), optax.scale(-0.01))),
    "scale_by_trust_ratio": lambda: (
        fo.chain(fo.scale_by_trust_ratio(0.5, 0.3, 0.1), fo.sgd(0.05)),
        optax.chain(optax.scale_by_trust_ratio(0.5, 0.3, 0.1), optax.sgd(0.05))),
    "clip_by_block_rms": lambda: (fo.chain(fo.clip_by_block_rms(0.5), fo.sgd(0.1)),
                                  optax.chain(optax.clip_by_block_rms(0.5), optax.sgd(0.1))),
    "centralize_pytorch_layout": lambda: (fo.chain(fo.centralize(output_axis=0), fo.sgd(0.1)),
                                          optax.chain(optax.centralize(), optax.sgd(0.1))),
    "ema_not_debiased": lambda: (fo.chain(fo.ema(0.9, debias=False), fo.sgd(0.1)),
                                 optax.chain(optax.ema(0.9, debias=False), optax.sgd(0.1))),
    "add_noise": lambda: (fo.chain(fo.add_noise(0.01, 0.55, jax.random.key(3)), fo.sgd(0.05)),
                          optax.chain(optax.add_noise(0.01, 0.55, jax.random.key(3)),
                                      optax.sgd(0.05))),
    "accumulate_gradients_every_k_schedule": lambda: (
        fo.accumulate_gradients(fo.adam(0.01), _every_k),
        optax.MultiSteps(optax.adam(0.01), _every_k).gradient_transformation()),
}

# optax.MultiSteps keeps (mini_step, gradient_step, inner_opt_state, acc_grads, skip_state).
VIEWS: dict[str, tuple[Callable[[Any], Any], Callable[[Any], Any]]] = {
    "accumulate_gradients_every_k_schedule": (lambda s: (s.inner_state, s.grad_mean),
                                              lambda s: (s.inner_opt_state, s.acc_grads)),
}


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_optimizer_matches_optax(name: str) -> None:
    ours, theirs = OPTIMIZERS[name]
    assert_parity(ours(0.01), theirs(0.01))


@pytest.mark.parametrize("name", sorted(TRANSFORMS))
def test_transformation_matches_optax(name: str) -> None:
    ours, theirs = TRANSFORMS[name]()
    assert_parity(ours, theirs, views=VIEWS.get(name))


FLOAT64 = ["nadam", "radam", "adamax", "amsgrad", "adabelief_eps", "lion_all_leaves", "lamb",
           "lars_all_leaves", "partition"]


@pytest.mark.parametrize("name", FLOAT64)
def test_optimizer_matches_optax_in_float64(name: str) -> None:
    ours, theirs = OPTIMIZERS[name]
    with jax.enable_x64(True):
        assert_parity(ours(0.01), theirs(0.01), dtype=jnp.float64, rtol=1e-12)


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_vmap_over_the_learning_rate_equals_the_separate_runs(name: str) -> None:
    ours, _ = OPTIMIZERS[name]
    lrs = jnp.asarray([0.003, 0.01, 0.05])

    def final(lr: Array) -> PyTree:
        return _run(ours(lr))[0]

    def runs() -> tuple[PyTree, list[PyTree]]:
        return vmap(final)(lrs), [final(lr) for lr in lrs]

    swept, separate = jit(runs, compiler_options=FAST)()
    for i, single in enumerate(separate):
        _assert_close([x[i] for x in jax.tree_util.tree_leaves(swept)],
                      jax.tree_util.tree_leaves(single), rtol=1e-6)
    first, last = (jax.tree_util.tree_leaves(r)[0] for r in (separate[0], separate[-1]))
    assert not np.allclose(first, last)  # the learning rate matters


def _lookahead_run(tx: Any, optax_pair: bool) -> tuple[PyTree, Any]:
    params0 = _params()
    params = optax.LookaheadParams.init_synced(params0) if optax_pair else params0

    def body(carry: tuple[PyTree, Any], t: Array) -> tuple[tuple[PyTree, Any], None]:
        p, s = carry
        u, s = tx.update(_grads(p.fast if optax_pair else p, t.astype(jnp.float32)), s, p)
        return (tree_map(lambda a, b: a + b, p, u), s), None

    (p, s), _ = jax.lax.scan(body, (params, tx.init(params)), jnp.arange(STEPS))
    return p, s


@pytest.mark.parametrize("reset_state", [False, True])
def test_lookahead_matches_optax(reset_state: bool) -> None:
    ours = fo.lookahead(fo.adam(0.05), 5, 0.4, reset_state=reset_state)
    theirs = optax.lookahead(optax.adam(0.05), 5, 0.4, reset_state=reset_state)
    (p, s), (q, r) = jit(lambda: (_lookahead_run(ours, False), _lookahead_run(theirs, True)),
                             compiler_options=FAST)()
    # our params are optax's fast params; our state's slow weights its slow params
    _assert_close(jax.tree_util.tree_leaves(p), jax.tree_util.tree_leaves(q.fast), 1e-6)
    _assert_close(jax.tree_util.tree_leaves(s.slow), jax.tree_util.tree_leaves(q.slow), 1e-6)
    _assert_close(_float_leaves(s.inner_state), _float_leaves(r.fast_state), 1e-6)


def _sgdr_kwargs(peak: float, first: int, mult: int, n: int, decay: float = 1.0,
                 **cycle: Any) -> list[dict[str, Any]]:
    return [dict(peak_value=peak * decay**i, decay_steps=first * mult**i, **cycle)
            for i in range(n)]


SCHEDULES: dict[str, Callable[[], tuple[Any, Any]]] = {
    "sgdr_equal_cycles": lambda: (
        schedules.sgdr(0.05, 30, end_value=1e-3, n_cycles=5),
        optax.sgdr_schedule(_sgdr_kwargs(0.05, 30, 1, 5, init_value=0.0, warmup_steps=0,
                                         end_value=1e-3))),
    "sgdr_growing_warmup_decay": lambda: (
        schedules.sgdr(0.05, 10, 2, 1e-3, warmup_steps=3, init_value=0.001, peak_decay=0.7,
                       n_cycles=4, exponent=1.5),
        optax.sgdr_schedule(_sgdr_kwargs(0.05, 10, 2, 4, 0.7, init_value=0.001, warmup_steps=3,
                                         end_value=1e-3, exponent=1.5))),
    "sgdr_endless_growing": lambda: (
        schedules.sgdr(0.05, 7, 3, 1e-3),
        optax.sgdr_schedule(_sgdr_kwargs(0.05, 7, 3, 4, init_value=0.0, warmup_steps=0,
                                         end_value=1e-3))),
    "linear_one_cycle": lambda: (schedules.linear_one_cycle(120, 0.05),
                                 optax.linear_onecycle_schedule(120, 0.05)),
    "linear_one_cycle_custom": lambda: (
        schedules.linear_one_cycle(90, 0.05, 0.2, 0.6, 10.0, 100.0),
        optax.linear_onecycle_schedule(90, 0.05, 0.2, 0.6, 10.0, 100.0)),
    "piecewise_interpolate_linear": lambda: (
        schedules.piecewise_interpolate(0.05, {10: 0.5, 40: 0.2, 41: 3.0, 90: 0.1}),
        optax.piecewise_interpolate_schedule("linear", 0.05, {10: 0.5, 40: 0.2, 41: 3.0, 90: 0.1})),
    "piecewise_interpolate_cosine": lambda: (
        schedules.piecewise_interpolate(0.05, {0: 1.0, 25: 0.1, 60: 0.5}, "cosine"),
        optax.piecewise_interpolate_schedule("cosine", 0.05, {0: 1.0, 25: 0.1, 60: 0.5})),
    "cosine_decay_exponent": lambda: (schedules.cosine_decay(0.05, 80, 0.01, exponent=2.0),
                                      optax.cosine_decay_schedule(0.05, 80, 0.01, exponent=2.0)),
    "warmup_cosine_decay_exponent": lambda: (
        schedules.warmup_cosine_decay(0.0, 0.05, 10, 90, 0.001, exponent=0.5),
        optax.warmup_cosine_decay_schedule(0.0, 0.05, 10, 90, 0.001, exponent=0.5)),
}


@pytest.mark.parametrize("name", sorted(SCHEDULES))
def test_schedule_matches_optax(name: str) -> None:
    ours, theirs = SCHEDULES[name]()
    steps = jnp.arange(160, dtype=jnp.int32)
    a = jit(vmap(ours))(steps)
    b = jit(vmap(lambda s: jnp.asarray(theirs(s), jnp.float32)))(steps)
    assert a.dtype == jnp.float32 and a.shape == (160,)
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6, atol=1e-10)
    assert_parity(fo.momentum(ours, 0.5), optax.sgd(theirs, 0.5))


@pytest.mark.parametrize("name", ["sgdr_growing_warmup_decay", "linear_one_cycle",
                                  "piecewise_interpolate_cosine"])
def test_schedule_with_a_traced_peak_equals_the_concrete_one(name: str) -> None:
    builds: dict[str, Callable[[Any], Any]] = {
        "sgdr_growing_warmup_decay": lambda v: schedules.sgdr(v, 10, 2, warmup_steps=3),
        "linear_one_cycle": lambda v: schedules.linear_one_cycle(120, v),
        "piecewise_interpolate_cosine": lambda v: schedules.piecewise_interpolate(
            v, {25: 0.1, 60: 0.5}, "cosine")}
    build = builds[name]
    steps = jnp.arange(150)
    peaks = jnp.asarray([0.1, 0.5])
    def values(peak: Array) -> Array:
        out: Array = vmap(build(peak))(steps)
        return out

    traced = jit(vmap(values))(peaks)
    for i, v in enumerate([0.1, 0.5]):
        np.testing.assert_allclose(traced[i], vmap(build(v))(steps), rtol=1e-6, atol=1e-7 * v)
