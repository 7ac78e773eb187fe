"""Base: chain, identity, scale, scale_by_learning_rate, apply_updates; optax interop both ways;
hyperparameters as data (vmap over learning rates, no recompilation); typed, stable states with an
int32 step; constants cost nothing but the step counter; bad-input errors in the one style."""

from __future__ import annotations

import collections
import re
import typing
from collections.abc import Callable
from typing import Any

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from _typed import jaxprs_in_params, jit, make_jaxpr

from functrain import _tree
import functrain.optim as fo
from functrain._tree import describe_difference
from functrain.optim import schedules
from functrain.typing import Array, PyTree


STYLE = re.compile(r"^[\w.]+: argument '[\w.\[\]']+' must be .+, got .+$", re.S)


def _params() -> PyTree:
    rng = np.random.default_rng(0)
    return {"w": jnp.asarray(rng.normal(size=(4, 3)), jnp.float32),
            "b": [jnp.asarray(rng.normal(size=(3,)), jnp.float32)]}


def _grads(params: PyTree, t: float | Array = 0.0) -> PyTree:
    return _tree.tree_map(lambda x: 0.5 * x + 0.2 * jnp.cos(x + t), params)


# ---------------------------------------------------------------------------------------------
# apply_updates


def test_apply_updates_adds_leafwise() -> None:
    p = _params()
    u = _tree.tree_map(lambda x: 0.25 * jnp.ones_like(x), p)
    out = fo.apply_updates(p, u)
    np.testing.assert_array_equal(out["w"], p["w"] + 0.25)
    np.testing.assert_array_equal(out["b"][0], p["b"][0] + 0.25)


def test_apply_updates_casts_to_param_dtype() -> None:
    p = {"w": jnp.ones((3,), jnp.bfloat16), "n": jnp.arange(3)}
    u = {"w": jnp.full((3,), 0.5, jnp.float32), "n": jnp.ones((3,), jnp.float32)}
    out = fo.apply_updates(p, u)
    assert out["w"].dtype == jnp.bfloat16 and out["n"].dtype == p["n"].dtype
    np.testing.assert_array_equal(np.asarray(out["w"], np.float32), [1.5, 1.5, 1.5])


def test_apply_updates_structure_mismatch_is_type_error_naming_both() -> None:
    with pytest.raises(TypeError, match=r"apply_updates: argument 'updates' must be a pytree with "
                                        r"the structure of the params, got missing leaves"):
        fo.apply_updates({"w": jnp.ones(2), "b": jnp.ones(2)}, {"w": jnp.ones(2)})


# ---------------------------------------------------------------------------------------------
# chain / identity / scale


def test_identity_returns_updates_unchanged() -> None:
    tx = fo.identity()
    g = _grads(_params())
    u, s = tx.update(g, tx.init(_params()))
    assert u is g and s == fo.EmptyState()


def test_chain_applies_left_to_right_and_keeps_a_tuple_of_states() -> None:
    g = {"x": jnp.asarray([3.0, 4.0])}  # norm 5
    clip_then_scale = fo.chain(fo.clip_by_global_norm(1.0), fo.scale(10.0))
    scale_then_clip = fo.chain(fo.scale(10.0), fo.clip_by_global_norm(1.0))
    s = clip_then_scale.init(g)
    assert isinstance(s, tuple) and len(s) == 2
    u1, _ = clip_then_scale.update(g, s)
    u2, _ = scale_then_clip.update(g, scale_then_clip.init(g))
    np.testing.assert_allclose(u1["x"], [6.0, 8.0], rtol=1e-6)
    np.testing.assert_allclose(u2["x"], [0.6, 0.8], rtol=1e-6)


def test_empty_chain_is_identity() -> None:
    tx = fo.chain()
    g = _grads(_params())
    u, s = tx.update(g, tx.init(_params()))
    assert u is g and s == ()


def test_chain_rejects_wrong_state_and_non_transformations() -> None:
    tx = fo.chain(fo.scale(1.0), fo.sgd(0.1))
    with pytest.raises(ValueError, match=r"chain: argument 'state' must be a tuple of 2 states "
                                         r".*got tuple \(EmptyState\(\),\)"):
        tx.update(_grads(_params()), (fo.EmptyState(),))  # type: ignore[arg-type]  # deliberate misuse
    with pytest.raises(TypeError, match=r"chain: argument 'state' must be a tuple of 2 states"):
        tx.update(_grads(_params()), [fo.EmptyState(), ()])  # type: ignore[arg-type]  # deliberate misuse
    with pytest.raises(TypeError, match=r"chain: argument 'txs\[1\]' must be a gradient "
                                        r"transformation .*got 0.1"):
        fo.chain(fo.scale(1.0), 0.1)  # type: ignore[call-overload]  # deliberate misuse


def test_scale_multiplies() -> None:
    g = _grads(_params())
    u, _ = fo.scale(-3.0).update(g, fo.EmptyState())
    np.testing.assert_allclose(u["w"], -3.0 * g["w"], rtol=1e-7)


# ---------------------------------------------------------------------------------------------
# scale_by_learning_rate


class TestScaleByLearningRate(chex.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    def test_constant_scales_and_counts_steps(self) -> None:
        for lr in (0.1, jnp.asarray(0.1)):
            tx = fo.scale_by_learning_rate(lr)
            update = self.variant(tx.update)
            s = tx.init(_params())
            assert int(s.step) == 0 and s.step.dtype == jnp.int32 and s.step.shape == ()
            g = _grads(_params())
            for t in range(3):
                u, s = update(g, s)
                np.testing.assert_allclose(u["w"], -0.1 * g["w"], rtol=1e-7)
                assert int(s.step) == t + 1

    @chex.variants(with_jit=True, without_jit=True)
    def test_schedule_is_evaluated_at_the_step_count(self) -> None:
        tx = fo.scale_by_learning_rate(schedules.exponential_decay(1.0, 0.5))
        update = self.variant(tx.update)
        g = {"x": jnp.ones(2)}
        s = tx.init(g)
        for t in range(4):
            assert int(s.step) == t
            u, s = update(g, s)
            np.testing.assert_allclose(u["x"], -(0.5**t), rtol=1e-6)


def test_step_counter_saturates_at_int32_max() -> None:
    tx = fo.scale_by_learning_rate(0.1)
    top = fo.ScaleByLearningRateState(step=jnp.asarray(np.iinfo(np.int32).max - 1, jnp.int32),
                                      learning_rate=jnp.asarray(0.1, jnp.float32))
    _, s = tx.update({"x": jnp.ones(1)}, top)
    _, s = jit(tx.update)({"x": jnp.ones(1)}, s)
    assert int(s.step) == np.iinfo(np.int32).max and s.step.dtype == jnp.int32
    assert float(s.learning_rate) == np.float32(0.1) and s.learning_rate.dtype == jnp.float32


def _primitives(tx: fo.GradientTransformation[Any], params: PyTree) -> collections.Counter[str]:
    """The primitives of ``tx.update``'s jaxpr (nested jaxprs flattened)."""
    closed = make_jaxpr(tx.update)(params, tx.init(params), params)
    out: collections.Counter[str] = collections.Counter()

    def visit(jaxpr: Any) -> None:
        for eqn in jaxpr.eqns:
            out[eqn.primitive.name] += 1
            for sub in jaxprs_in_params(eqn.params):
                visit(sub)

    visit(closed.jaxpr)
    return out


def test_constant_hyperparameters_cost_only_the_step_counter() -> None:
    """With a Python-float learning rate, momentum or decay, the compiled update is the textbook
    arithmetic (one multiply per leaf for the learning rate, a multiply-add per leaf for
    momentum and decay) plus the saturating step increment (``min``, ``add``) of each state."""
    p = _params()  # 2 leaves
    counter = collections.Counter({"min": 1, "add": 1})
    lr = _primitives(fo.scale_by_learning_rate(0.1), p)
    assert lr == collections.Counter({"mul": 2}) + counter
    assert _primitives(fo.trace(0.9), p) == collections.Counter({"mul": 2, "add": 2}) + counter
    decay = fo.add_decayed_weights(0.1)
    assert _primitives(decay, p) == collections.Counter({"mul": 2, "add": 2}) + counter
    assert _primitives(fo.sgd(0.1), p) == lr
    assert _primitives(fo.momentum(0.1, 0.9), p) == _primitives(fo.trace(0.9), p) + lr
    assert _primitives(fo.adam(1e-3), p) == _primitives(fo.scale_by_adam(), p) + lr


def test_scale_by_learning_rate_array_keeps_low_precision_updates() -> None:
    tx = fo.scale_by_learning_rate(jnp.asarray(0.5, jnp.float32))
    u, _ = tx.update({"x": jnp.ones(2, jnp.bfloat16)}, tx.init(None))
    assert u["x"].dtype == jnp.bfloat16


# ---------------------------------------------------------------------------------------------
# interop with optax


def test_optax_transformation_inside_functrain_chain() -> None:
    ours = fo.chain(optax.clip_by_global_norm(1.0), optax.scale_by_adam(), fo.scale(-0.01))
    ref = optax.chain(optax.clip_by_global_norm(1.0), optax.adam(0.01))
    p = _params()
    s1, s2 = ours.init(p), ref.init(p)
    for t in range(5):
        g = _grads(p, float(t))
        u1, s1 = jit(ours.update)(g, s1, p)
        u2, s2 = jit(ref.update)(g, s2, p)
        np.testing.assert_allclose(u1["w"], u2["w"], rtol=1e-6)
        p = fo.apply_updates(p, u1)


def test_functrain_transformation_inside_optax_chain() -> None:
    ref = fo.chain(fo.clip_by_global_norm(1.0), fo.adamw(0.01, weight_decay=0.1, mask=None))
    mixed = optax.chain(fo.clip_by_global_norm(1.0), fo.scale_by_adam(),
                        optax.add_decayed_weights(0.1), fo.scale_by_learning_rate(0.01))
    p = _params()
    s1, s2 = ref.init(p), mixed.init(p)
    for t in range(5):
        g = _grads(p, float(t))
        u1, s1 = jit(ref.update)(g, s1, p)
        u2, s2 = jit(mixed.update)(g, s2, p)
        np.testing.assert_allclose(u2["w"], u1["w"], rtol=1e-6)
        p = optax.apply_updates(p, u1)


# ---------------------------------------------------------------------------------------------
# hyperparameters are data


def _train(tx: fo.GradientTransformation[Any], steps: int = 20) -> PyTree:
    def body(carry: tuple[PyTree, Any], t: Array) -> tuple[tuple[PyTree, Any], None]:
        p, s = carry
        u, s = tx.update(_grads(p, t), s, p)
        return (fo.apply_updates(p, u), s), None

    p0 = _params()
    return jax.lax.scan(body, (p0, tx.init(p0)), jnp.arange(steps, dtype=jnp.float32))[0][0]


MAKERS: list[Callable[[Any], fo.GradientTransformation[Any]]] = [
    lambda lr: fo.sgd(lr, momentum=0.9), lambda lr: fo.adam(lr),
    lambda lr: fo.chain(fo.clip_by_global_norm(1.0), fo.adamw(lr, weight_decay=0.1, mask=None))]


@pytest.mark.parametrize("make", MAKERS, ids=["momentum", "adam", "clip_adamw"])
def test_vmap_over_8_learning_rates_equals_8_separate_runs(
    make: Callable[[Any], fo.GradientTransformation[Any]],
) -> None:
    lrs = jnp.asarray([0.0, 1e-3, 3e-3, 1e-2, 3e-2, 0.05, 0.1, 0.2])
    def train(lr: jax.Array) -> Any:
        return _train(make(lr))

    batched = jit(jax.vmap(train))(lrs)
    one = jit(train)
    for i in range(8):
        single = one(lrs[i])
        for a, b in zip(jax.tree_util.tree_leaves(batched), jax.tree_util.tree_leaves(single)):
            np.testing.assert_allclose(a[i], b, rtol=1e-6, atol=1e-7)
    # different learning rates really gave different results
    assert not np.allclose(batched["w"][1], batched["w"][5])


def test_changing_the_learning_rate_array_does_not_retrace() -> None:
    traces = 0

    def step(lr: Array, params: PyTree, state: Any) -> tuple[PyTree, Any]:
        nonlocal traces
        traces += 1  # runs only while tracing
        tx = fo.adamw(lr, b1=0.9, weight_decay=lr * 0.1)
        u, state = tx.update(_grads(params), state, params)
        return fo.apply_updates(params, u), state

    jitted = jit(step)
    p = _params()
    state = fo.adamw(1e-3, weight_decay=1e-4).init(p)
    results: list[Any] = []
    for lr in [1e-3, 2e-3, 0.5, 0.0]:
        new_p, _ = jitted(jnp.asarray(lr, jnp.float32), p, state)
        results.append(new_p["w"])
    assert traces == 1
    assert not np.allclose(results[0], results[2])
    np.testing.assert_array_equal(results[3], p["w"])  # lr 0: no step


# ---------------------------------------------------------------------------------------------
# states: typed NamedTuples, structure unchanged by update (under jit and vmap)

TRANSFORMS: dict[str, Callable[[], fo.GradientTransformation[Any]]] = {
    "sgd": lambda: fo.sgd(0.1),
    "sgd_momentum_schedule": lambda: fo.sgd(schedules.cosine_decay(0.1, 10), momentum=0.9),
    "momentum": lambda: fo.momentum(0.1, schedules.linear_schedule(0.5, 0.9, 5), nesterov=True),
    "normalized_sgd": lambda: fo.normalized_sgd(0.1),
    "adagrad": lambda: fo.adagrad(0.1),
    "rmsprop": lambda: fo.rmsprop(0.1, decay=schedules.constant(0.9), centered=True),
    "adam": lambda: fo.adam(schedules.one_cycle(10, 0.1)),
    "amsgrad": lambda: fo.chain(fo.scale_by_amsgrad(), fo.scale(-0.1)),
    "adamw": lambda: fo.adamw(0.1, weight_decay=schedules.constant(1e-2)),
    "clip": lambda: fo.chain(fo.clip_by_global_norm(1.0), fo.clip_by_block_norm(1.0),
                             fo.clip_by_value(min_value=-1.0, max_value=1.0),
                             fo.adaptive_grad_clip(0.1)),
    "skip_nonfinite": lambda: fo.skip_nonfinite(fo.adam(0.1)),
    "accumulate_gradients": lambda: fo.accumulate_gradients(fo.momentum(0.1), 2),
    # issue 16
    "adam_variants": lambda: fo.chain(fo.scale_by_nadam(), fo.scale_by_radam(),
                                      fo.scale_by_adamax(), fo.scale_by_belief(),
                                      fo.scale_by_lion(), fo.scale(-0.1)),
    "nadam": lambda: fo.nadam(schedules.sgdr(0.1, 3)),
    "lamb": lambda: fo.lamb(0.1, weight_decay=0.1),
    "lars": lambda: fo.lars(schedules.inverse_sqrt(0.1, 2), 0.1),
    "noise_centralize_ema_rms": lambda: fo.chain(
        fo.add_noise(0.1, 0.55, jax.random.key(0)), fo.centralize(), fo.clip_by_block_rms(1.0),
        fo.ema(schedules.constant(0.9)), fo.scale_by_learning_rate(0.1)),
    "partition_freeze": lambda: fo.partition(
        {"a": fo.adam(0.1), "b": fo.freeze(True)}, {"w": "a", "b": ["b"]}),
    "masked": lambda: fo.chain(fo.masked(fo.momentum(0.1), {"w": True, "b": [False]}),
                               fo.freeze({"w": False, "b": True}, fo.sgd(0.1))),
    "lookahead": lambda: fo.lookahead(fo.adam(0.1), 2, schedules.constant(0.5)),
    "skip_nonfinite_limit": lambda: fo.skip_nonfinite(fo.adam(0.1), max_consecutive=3),
    "accumulate_gradients_schedule": lambda: fo.accumulate_gradients(fo.adam(0.1),
                                                                     lambda s: 1 + s % 2),
}


def _is_namedtuple(x: object) -> bool:
    return _tree.is_tuple(x) and hasattr(type(x), "_fields")


def _state_nodes(state: Any) -> list[Any]:
    """Every tuple node of a state (chain states are plain tuples of NamedTuples)."""
    nodes: list[Any] = []

    def visit(x: Any) -> None:
        if _tree.is_tuple(x):
            nodes.append(x)
            for y in x:
                visit(y)

    visit(state)
    return nodes


@pytest.mark.parametrize("name", sorted(TRANSFORMS))
def test_state_is_typed_and_structure_is_stable(name: str) -> None:
    tx = TRANSFORMS[name]()
    p = _params()
    s0 = tx.init(p)
    for node in _state_nodes(s0):
        if not _is_namedtuple(node):  # the only plain tuples are chain states
            assert all(_is_namedtuple(n) for n in node), (name, node)
            continue
        node_type: type[Any] = node.__class__
        assert not {"count", "index"} & set(node_type._fields)
        for field in ("step", "skipped_steps", "total_steps", "micro_step", "since_sync",
                      "consecutive_skips"):
            if field in node_type._fields:  # counters: always an int32 scalar, never Optional
                counter = getattr(node, field)
                assert isinstance(counter, jax.Array), (name, field, counter)
                assert counter.dtype == jnp.int32 and counter.shape == (), (name, field)
                hints = typing.get_type_hints(node_type)
                assert hints[field] is jax.Array, (name, node_type.__name__, hints[field])
    s = s0
    for t in range(3):
        _, s = jit(tx.update)(_grads(p, float(t)), s, p)
        assert describe_difference(s0, s) is None
        for a, b in zip(jax.tree_util.tree_leaves(s), jax.tree_util.tree_leaves(s0)):
            assert a.shape == b.shape and a.dtype == b.dtype
    # vmap over a batch of 3 params/gradients: each run has its own state
    pb = _tree.tree_map(lambda x: jnp.stack([x, 2 * x, -x]), p)
    sb = jax.vmap(tx.init)(pb)
    ub, sb2 = jit(jax.vmap(tx.update))(jax.vmap(_grads)(pb), sb, pb)
    assert describe_difference(sb, sb2) is None
    p1, s1 = (_tree.tree_map(lambda x: x[1], tree) for tree in (pb, sb))
    u1, _ = tx.update(_grads(p1), s1, p1)
    for a, b in zip(jax.tree_util.tree_leaves(ub), jax.tree_util.tree_leaves(u1)):
        np.testing.assert_allclose(a[1], b, rtol=1e-5, atol=1e-7)


# ---------------------------------------------------------------------------------------------
# bad input


@pytest.mark.parametrize(
    ("make", "error", "pattern"),
    [
        (lambda: fo.sgd(-0.1), ValueError,
         r"sgd: argument 'learning_rate' must be >= 0, got -0.1$"),
        (lambda: fo.adam(jnp.asarray(-1.0)), ValueError,
         r"adam: argument 'learning_rate' must be >= 0, got -1.0 \(a 0-d array of dtype float32\)"),
        (lambda: fo.adam(b1=1.0), ValueError, r"adam: argument 'b1' must be in \[0, 1\), got 1.0$"),
        (lambda: fo.adamw(0.1, b2=-0.1), ValueError,
         r"adamw: argument 'b2' must be in \[0, 1\), got -0.1$"),
        (lambda: fo.adamw(0.1, eps=-1.0), ValueError, r"adamw: argument 'eps' must be >= 0"),
        (lambda: fo.scale_by_amsgrad(eps_root=-1.0), ValueError,
         r"scale_by_amsgrad: argument 'eps_root' must be >= 0, got -1.0$"),
        (lambda: fo.momentum(0.1, 1.5), ValueError,
         r"momentum: argument 'momentum' must be in \[0, 1\), got 1.5$"),
        (lambda: fo.trace(float("nan")), ValueError, r"trace: argument 'decay' must be .*got nan$"),
        (lambda: fo.trace(0.9, nesterov=1), TypeError,  # type: ignore[arg-type]  # deliberate misuse
         r"trace: argument 'nesterov' must be a bool, got 1$"),
        (lambda: fo.rmsprop(0.1, decay=1.0), ValueError,
         r"rmsprop: argument 'decay' must be in \[0, 1\), got 1.0$"),
        (lambda: fo.rmsprop(0.1, initial_scale=-1.0), ValueError,
         r"rmsprop: argument 'initial_scale' must be >= 0"),
        (lambda: fo.rmsprop(0.1, centered="yes"), TypeError,  # type: ignore[arg-type]  # deliberate misuse
         r"rmsprop: argument 'centered' must be a bool, got 'yes'$"),
        (lambda: fo.adagrad(0.1, initial_accumulator_value=-1.0), ValueError,
         r"adagrad: argument 'initial_accumulator_value' must be >= 0"),
        (lambda: fo.adamw(0.1, weight_decay=-1e-4), ValueError,
         r"adamw: argument 'weight_decay' must be >= 0, got -0.0001$"),
        (lambda: fo.clip_by_global_norm(0.0), ValueError,
         r"clip_by_global_norm: argument 'max_norm' must be > 0, got 0.0$"),
        (lambda: fo.clip_by_block_norm(-1.0), ValueError,
         r"clip_by_block_norm: argument 'max_norm' must be > 0, got -1.0$"),
        (lambda: fo.adaptive_grad_clip(0.0), ValueError,
         r"adaptive_grad_clip: argument 'clipping' must be > 0, got 0.0$"),
        (lambda: fo.scale(lambda step: 1.0), TypeError,  # type: ignore[arg-type]  # deliberate misuse
         r"scale: argument 'factor' must be a number or a scalar array \(not a schedule\)"),
        (lambda: fo.accumulate_gradients(fo.sgd(0.1), 0), ValueError,
         r"accumulate_gradients: argument 'every_k' must be an int >= 1, got 0$"),
        (lambda: fo.accumulate_gradients(fo.sgd(0.1), np.int64(2)),  # type: ignore[arg-type]  # NumPy ints are accepted at runtime
         None, ""),
        (lambda: fo.accumulate_gradients(fo.sgd(0.1), 2.0), TypeError,  # type: ignore[arg-type]  # deliberate misuse
         r"accumulate_gradients: argument 'every_k' must be an int >= 1, got 2.0$"),
        (lambda: fo.sgd("0.1"), TypeError,  # type: ignore[call-overload]  # deliberate misuse
         r"sgd: argument 'learning_rate' must be a number, a scalar array or a schedule, "
         r"got '0.1'$"),
        (lambda: fo.sgd(jnp.ones(3)), ValueError,
         r"sgd: argument 'learning_rate' must be a scalar, got an array of shape \(3,\)"),
        (lambda: fo.sgd(True), TypeError,
         r"sgd: argument 'learning_rate' must be a number, got True$"),
        (lambda: fo.sgd(0.1, nesterov=True), ValueError,
         r"sgd: argument 'nesterov' must be False when momentum is None, got True$"),
    ],
)
def test_bad_hyperparameters_raise_naming_function_argument_expected_and_got(
    make: Callable[[], object], error: type[Exception] | None, pattern: str
) -> None:
    if error is None:  # a valid call (e.g. a NumPy integer where an int goes)
        make()
        return
    with pytest.raises(error, match=pattern) as info:
        make()
    assert STYLE.match(str(info.value)), str(info.value)


def test_traced_hyperparameters_are_not_checked() -> None:
    # inside jit the value is unknown: no error, the transformation is built
    @jit
    def f(lr: Array) -> Array:
        u, _ = fo.sgd(lr).update({"x": jnp.ones(2)}, fo.sgd(0.1).init({"x": jnp.ones(2)}))
        out: Array = u["x"]
        return out

    np.testing.assert_allclose(f(jnp.asarray(-2.0)), [2.0, 2.0])


def test_updates_with_a_different_structure_than_params_raise_type_error() -> None:
    p = _params()
    tx = fo.adamw(0.1, mask=None)
    with pytest.raises(TypeError, match=r"chain: argument 'updates' must be a pytree with the "
                                        r"structure of the params, got missing leaves"):
        tx.update({"w": p["w"]}, tx.init(p), p)
    decay = fo.add_decayed_weights(0.1)
    with pytest.raises(TypeError, match=r"add_decayed_weights: argument 'updates' .*the params"):
        decay.update({"w": p["w"]}, decay.init(p), p)
    with pytest.raises(TypeError, match=r"add_decayed_weights: argument 'params' must be the "
                                        r"current params .*, got None"):
        decay.update(p, decay.init(p))
    for make, field in ((fo.scale_by_adam, "mu"), (fo.scale_by_amsgrad, "mu"),
                        (fo.scale_by_rms, "nu"), (fo.scale_by_adagrad, "sum_of_squares"),
                        (lambda: fo.trace(0.9), "trace")):
        tx1: fo.GradientTransformation[Any] = make()
        with pytest.raises(TypeError, match=rf"argument 'updates' must be a pytree with the "
                                            rf"structure of state.{field} \(the params given"):
            tx1.update({"w": p["w"]}, tx1.init(p))
    with pytest.raises(TypeError, match=r"adaptive_grad_clip: argument 'updates' .*params"):
        fo.adaptive_grad_clip(0.1).update({"w": p["w"]}, fo.EmptyState(), p)
