"""train_epoch and evaluate: the documented batch/key schedule, coverage, vmap, tails, errors."""

from __future__ import annotations

import functools
import re
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _typed import jit, lower, make_jaxpr

from functrain import _tree, layers, optim
from functrain.train import (
    TrainState,
    classifier_loss,
    compiler_options,
    evaluate,
    init_train_state,
    make_eval_step,
    make_train_step,
    train_epoch,
)
from functrain.typing import Array, Metrics, PRNGKey, PyTree

STYLE = re.compile(r"^[\w.]+: argument '[\w.\[\]']+' must be .+, got .+$", re.S)


def _data(n: int, features: int = 8, classes: int = 4, seed: int = 0) -> tuple[Array, Array]:
    """A small synthetic classification problem (labels from a random linear map; host RNG)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, features)).astype(np.float32)
    w = np.random.default_rng(100).normal(size=(features, classes))
    return jnp.asarray(x), jnp.asarray(np.argmax(x @ w, axis=1).astype(np.int32))


def _mlp(fancy: bool = False) -> layers.Layer:
    if fancy:  # batch-norm state and dropout keys both flow through the epoch
        return layers.serial(layers.Dense(16), layers.BatchNorm(), layers.Relu, layers.Dropout(0.2),
                             layers.Dense(4))
    return layers.serial(layers.Dense(16), layers.Relu, layers.Dense(4))


_EPOCH = jit(train_epoch, static_argnames=("step", "batch_size"))


def test_train_epoch_equals_python_loop_over_the_same_batches() -> None:
    x, y = _data(203)  # 203 = 12 * 16 + 11: the partial batch is dropped
    model = _mlp(fancy=True)
    opt = optim.momentum(0.05, 0.9)
    params, mstate, _ = model.init(jax.random.key(1), (-1, 8))
    state = init_train_state(params, mstate, opt)
    step = make_train_step(classifier_loss(model.apply, train=True), opt)
    key, bs = jax.random.key(7), 16
    new_state, metrics = _EPOCH(step, state, (x, y), key, batch_size=bs)

    # The documented schedule, by hand.
    perm_key, step_key = jax.random.split(key)
    perm = np.asarray(jax.random.permutation(perm_key, 203))
    keys = jax.random.split(step_key, 203 // bs)
    jstep = jit(step)
    s = state
    losses: list[float] = []
    for i in range(203 // bs):
        idx = perm[i * bs:(i + 1) * bs]
        s, m = jstep(s, (x[idx], y[idx]), keys[i])
        losses.append(float(m["loss"]))
    assert int(new_state.step) == int(s.step) == 12
    for a, b in zip(jax.tree_util.tree_leaves(new_state), jax.tree_util.tree_leaves(s), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=2e-5, atol=2e-6)
    np.testing.assert_allclose(metrics["loss"], np.mean(losses), rtol=1e-5)
    assert set(metrics) == {"loss", "accuracy"}


def _counting_step(state: TrainState[Any, Any, Any], batch: PyTree, key: PRNGKey) -> tuple[
        TrainState[Any, Any, Any], Metrics]:
    (idx,) = batch
    seen = state.model_state.at[idx].add(1)
    return state._replace(step=state.step + 1, model_state=seen), {"loss": jnp.zeros(())}


def test_train_epoch_sees_each_example_at_most_once_and_reshuffles() -> None:
    n, bs = 23, 5
    data = (jnp.arange(n),)
    state = TrainState(jnp.zeros((), jnp.int32), (), jnp.zeros(n, jnp.int32), ())
    s1, _ = _EPOCH(_counting_step, state, data, jax.random.key(0), batch_size=bs)
    counts = np.asarray(s1.model_state)
    assert counts.max() == 1 and counts.sum() == (n // bs) * bs  # 3 examples dropped
    s2, _ = _EPOCH(_counting_step, state, data, jax.random.key(1), batch_size=bs)
    assert not np.array_equal(counts, np.asarray(s2.model_state))  # a different epoch drops others
    # Over many epochs every example is seen; a NumPy batch size is the same static value.
    s = state
    for e in range(12):
        s, _ = _EPOCH(_counting_step, s, data, jax.random.key(e),
                      batch_size=np.int64(bs))  # type: ignore[arg-type]  # a NumPy int: accepted (run time)
    assert np.asarray(s.model_state).min() >= 1


def test_train_epoch_under_vmap_matches_each_seed() -> None:
    x, y = _data(64)
    model = _mlp()
    opt = optim.sgd(0.1)
    step = make_train_step(classifier_loss(model.apply, train=True), opt)

    def run(state: TrainState[Any, Any, Any], key: PRNGKey) -> tuple[TrainState[Any, Any, Any], Metrics]:
        return train_epoch(step, state, (x, y), key, batch_size=16)

    keys = jax.random.split(jax.random.key(3), 3)
    states = [init_train_state(*model.init(k, (-1, 8))[:2], opt) for k in keys]  # built outside: less to compile
    stacked = _tree.tree_map(lambda *leaves: jnp.stack(leaves), *states)
    batched, bm = jit(jax.vmap(run))(stacked, keys)
    single = jit(run)
    for i in range(3):
        one, om = single(states[i], keys[i])
        np.testing.assert_allclose(batched.params[0].w[i], one.params[0].w, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(bm["loss"][i], om["loss"], rtol=1e-5)
    assert not np.allclose(bm["loss"][0], bm["loss"][1])  # the seeds really differ


class _Traces:
    """Wraps a step or an eval step and counts how often JAX traces it."""

    def __init__(self, fn: Any) -> None:
        self.fn, self.n = fn, 0

    def step(self, state: TrainState[Any, Any, Any], batch: PyTree, key: PRNGKey) -> tuple[
            TrainState[Any, Any, Any], Metrics]:
        self.n += 1
        out: tuple[TrainState[Any, Any, Any], Metrics] = self.fn(state, batch, key)
        return out

    def eval_step(self, state: TrainState[Any, Any, Any], batch: PyTree) -> Metrics:
        self.n += 1
        out: Metrics = self.fn(state, batch)
        return out


def _problem() -> tuple[layers.Layer, Any, TrainState[Any, Any, Any], tuple[Array, Array]]:
    model = _mlp(fancy=True)
    opt = optim.adam(0.01)
    params, mstate, _ = model.init(jax.random.key(1), (-1, 8))
    return model, opt, init_train_state(params, mstate, opt), _data(50)


def test_an_eager_loop_over_epochs_compiles_once_and_equals_the_jitted_epoch() -> None:
    """train_epoch called without jax.jit compiles itself once (per step, batch size and shapes):
    later epochs trace nothing, give the user-jitted epoch's results, and still check labels."""
    model, opt, state, data = _problem()
    traced = _Traces(make_train_step(classifier_loss(model.apply, train=True), opt))
    step = traced.step
    s, m = train_epoch(step, state, data, jax.random.key(0), batch_size=16)
    after_first = traced.n
    for e in range(1, 4):
        s, m = train_epoch(step, s, data, jax.random.key(e), batch_size=16)
    assert traced.n == after_first >= 1  # later epochs: no trace, no compile
    ref, rm = state, dict[str, Any]()
    for e in range(4):
        ref, rm = _EPOCH(step, ref, data, jax.random.key(e), batch_size=16)
    after_first = traced.n
    for a, b in zip(jax.tree_util.tree_leaves((s, m)), jax.tree_util.tree_leaves((ref, rm)), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert int(s.step) == 4 * 3
    with pytest.raises(ValueError, match=r"train_epoch: argument 'data\[1\]' must be class labels"):
        train_epoch(step, s, (data[0], data[1].at[0].set(-1)), jax.random.key(0), batch_size=16)
    numpy_16: Any = np.int64(16)
    train_epoch(step, s, data, jax.random.key(9), batch_size=numpy_16)  # the same static value
    assert traced.n == after_first
    train_epoch(step, s, (data[0][:40], data[1][:40]), jax.random.key(9), batch_size=16)  # a new shape
    assert traced.n > after_first


def test_an_eager_evaluate_compiles_once_and_equals_the_jitted_one() -> None:
    model, _, state, data = _problem()
    traced = _Traces(make_eval_step(classifier_loss(model.apply, train=False)))
    first = evaluate(traced.eval_step, state, data, batch_size=16)  # 3 batches and a tail of 2
    after_first = traced.n
    again = [evaluate(traced.eval_step, state, data, batch_size=16) for _ in range(3)][-1]
    assert traced.n == after_first >= 1
    jitted = jit(evaluate, static_argnames=("eval_step", "batch_size"))(
        traced.eval_step, state, data, batch_size=16)
    for name in first:
        np.testing.assert_array_equal(np.asarray(first[name]), np.asarray(jitted[name]))
        np.testing.assert_array_equal(np.asarray(again[name]), np.asarray(first[name]))


class _Unhashable:
    """A callable step object that is not hashable (it defines __eq__ only)."""

    def __init__(self, step: Any) -> None:
        self.inner, self.n = step, 0

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Unhashable) and other.inner is self.inner

    __hash__ = None  # type: ignore[assignment]  # deliberately unhashable

    def __call__(self, state: TrainState[Any, Any, Any], batch: PyTree, key: PRNGKey) -> tuple[
            TrainState[Any, Any, Any], Metrics]:
        self.n += 1
        out: tuple[TrainState[Any, Any, Any], Metrics] = self.inner(state, batch, key)
        return out


def test_compiler_options_remove_the_per_step_kernel_copies() -> None:
    """With ``compiler_options()`` (what functrain compiles its epochs with) XLA:CPU no longer
    copies the hidden kernels once per step inside the epoch's loop; numbers are unchanged."""
    if jax.default_backend() != "cpu":
        pytest.skip("an XLA:CPU option")
    model = layers.serial(layers.Dense(32), layers.Relu, layers.Dense(32), layers.Relu, layers.Dense(4))
    opt = optim.adam(0.01)
    params, mstate, _ = model.init(jax.random.key(1), (-1, 8))
    state = init_train_state(params, mstate, opt)
    data = _data(64)
    step = make_train_step(classifier_loss(model.apply, train=True), opt)
    epoch = functools.partial(train_epoch, step, batch_size=16)
    key = jax.random.key(0)

    def kernel_copies(**options: Any) -> int:  # donated: no copies of the inputs at the entry
        text = str(lower(epoch, state, data, key, donate_argnums=0, **options).compile().as_text())
        return len(re.findall(r"= f32\[32,32\]\{1,0\} copy\(", text))

    assert kernel_copies() >= 1  # the check can fail: XLA's default copies the 32x32 kernel
    assert kernel_copies(compiler_options=compiler_options()) == 0
    ours = train_epoch(step, state, data, key, batch_size=16)  # compiled by functrain, with the options
    ref = jit(epoch)(state, data, key)
    for a, b in zip(jax.tree_util.tree_leaves(ours), jax.tree_util.tree_leaves(ref), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_an_unhashable_step_object_is_compiled_once_too() -> None:
    model, opt, state, data = _problem()
    step = _Unhashable(make_train_step(classifier_loss(model.apply, train=True), opt))
    s, _ = train_epoch(step, state, data, jax.random.key(0), batch_size=16)
    after_first = step.n
    for e in range(1, 3):
        s, _ = train_epoch(step, s, data, jax.random.key(e), batch_size=16)
    assert step.n == after_first and int(s.step) == 9


def test_inside_the_users_jit_vmap_and_scan_the_epoch_traces_inline() -> None:
    """Under a trace train_epoch and evaluate add no nested compiled call: the user's jaxpr holds
    the scan itself; and lax.scan over epochs equals the eager loop."""
    model, opt, state, data = _problem()
    step = make_train_step(classifier_loss(model.apply, train=True), opt)
    eval_step = make_eval_step(classifier_loss(model.apply, train=False))

    def epochs(s: TrainState[Any, Any, Any], keys: Array) -> tuple[TrainState[Any, Any, Any], Metrics]:
        def body(s: TrainState[Any, Any, Any], k: Array) -> tuple[TrainState[Any, Any, Any], Metrics]:
            s, _ = train_epoch(step, s, data, k, batch_size=16)
            return s, evaluate(eval_step, s, data, batch_size=16)
        out: tuple[TrainState[Any, Any, Any], Metrics] = jax.lax.scan(body, s, keys)
        return out

    keys = jax.random.split(jax.random.key(0), 3)
    text = str(make_jaxpr(epochs)(state, keys))
    assert "name=_epoch" not in text and "name=_evaluate" not in text  # inline: not our compiled calls
    scanned, per_epoch = jit(epochs)(state, keys)
    s = state
    for e in range(3):
        s, _ = train_epoch(step, s, data, keys[e], batch_size=16)
        ev = evaluate(eval_step, s, data, batch_size=16)
        np.testing.assert_allclose(np.asarray(per_epoch["loss"][e]), np.asarray(ev["loss"]), rtol=1e-5)
    chex_close = functools.partial(np.testing.assert_allclose, rtol=1e-5, atol=1e-6)
    for a, b in zip(jax.tree_util.tree_leaves(scanned), jax.tree_util.tree_leaves(s), strict=True):
        chex_close(np.asarray(a), np.asarray(b))
    # vmap over keys: each seed's epoch, as run alone
    def epoch(k: jax.Array) -> tuple[TrainState[Any, Any, Any], Any]:
        return train_epoch(step, state, data, k, batch_size=16)

    vm, _ = jax.vmap(epoch)(keys)
    one, _ = train_epoch(step, state, data, keys[1], batch_size=16)
    np.testing.assert_allclose(np.asarray(vm.params[0].w[1]), np.asarray(one.params[0].w), rtol=1e-5, atol=1e-6)


def _mean_eval(state: TrainState[Any, Any, Any], batch: PyTree) -> Metrics:
    (v,) = batch
    return {"loss": jnp.mean(v), "one": jnp.mean(v * 0 + 1)}


@pytest.mark.parametrize("batch_size", [1, 3, 4, 10, 64])
def test_evaluate_covers_the_tail_with_correct_weights(batch_size: int) -> None:
    v = jnp.arange(10.0) ** 2
    state = TrainState(jnp.zeros((), jnp.int32), (), (), ())
    m = jit(evaluate, static_argnames=("eval_step", "batch_size"))(_mean_eval, state, (v,),
                                                                      batch_size=batch_size)
    np.testing.assert_allclose(m["loss"], np.mean(np.arange(10.0) ** 2), rtol=1e-6)
    np.testing.assert_allclose(m["one"], 1.0, rtol=1e-6)


def test_evaluate_equals_the_whole_batch_metrics_of_a_model() -> None:
    x, y = _data(37)
    model = _mlp()
    params, mstate, _ = model.init(jax.random.key(0), (-1, 8))
    state = init_train_state(params, mstate, optim.sgd(0.1))
    eval_step = make_eval_step(classifier_loss(model.apply, train=False))
    whole = eval_step(state, (x, y))  # one batch of all 37 examples
    eight: Any = np.int64(8)  # (annotated int: NumPy ints are accepted at runtime)
    batched = evaluate(eval_step, state, (x, y), batch_size=eight)  # 4 batches + a tail of 5
    for name in ("loss", "accuracy"):
        np.testing.assert_allclose(batched[name], whole[name], rtol=1e-5)


def _raises(exc: type[Exception], match: str, fn: Any, *args: Any, **kwargs: Any) -> str:
    with pytest.raises(exc, match=match) as info:
        fn(*args, **kwargs)
    text = str(info.value)
    assert STYLE.match(text), text
    return text


def test_bad_data_and_batch_sizes() -> None:
    opt = optim.sgd(0.1)
    model = _mlp()
    params, mstate, _ = model.init(jax.random.key(0), (-1, 8))
    state = init_train_state(params, mstate, opt)
    step = make_train_step(classifier_loss(model.apply, train=True), opt)
    eval_step = make_eval_step(classifier_loss(model.apply, train=False))
    x, y = _data(10)
    key = jax.random.key(0)
    with pytest.raises(ValueError, match=r"train_epoch: argument 'data' must be arrays with the same leading"):
        train_epoch(step, state, (x, y[:9]), key, batch_size=2)
    _raises(ValueError, r"train_epoch: argument 'batch_size' must be an int >= 1, got 0",
            train_epoch, step, state, (x, y), key, batch_size=0)
    _raises(ValueError, r"train_epoch: argument 'batch_size' must be an int <= the number of examples \(10\), got 11",
            train_epoch, step, state, (x, y), key, batch_size=11)
    _raises(TypeError, r"train_epoch: argument 'batch_size' must be an int >= 1, got 2.0",
            train_epoch, step, state, (x, y), key, batch_size=2.0)
    _raises(TypeError, r"train_epoch: argument 'step' must be a train step function",
            train_epoch, 3, state, (x, y), key, batch_size=2)
    with pytest.raises(ValueError, match=r"at least one example"):
        train_epoch(step, state, (x[:0], y[:0]), key, batch_size=1)
    with pytest.raises(ValueError, match=r"evaluate: argument 'data' must be arrays with the same leading"):
        evaluate(eval_step, state, (x[:3], y), batch_size=2)
    _raises(ValueError, r"evaluate: argument 'batch_size' must be an int >= 1, got 0",
            evaluate, eval_step, state, (x, y), batch_size=0)
    _raises(TypeError, r"evaluate: argument 'eval_step' must be an eval step function",
            evaluate, None, state, (x, y), batch_size=2)

    def moody(state: TrainState[Any, Any, Any], batch: PyTree) -> Metrics:
        return {"loss": jnp.zeros(())} if batch[0].shape[0] == 4 else {"other": jnp.zeros(())}

    _raises(ValueError, r"evaluate: argument 'eval_step' must be a function returning the same metrics for every batch",
            evaluate, moody, state, (x, y), batch_size=4)


def test_case_1_train_epoch_rejects_out_of_range_labels_eagerly_and_skips_traced_ones() -> None:
    """Issue 12, case 1: labels outside [0, num_classes) are refused before the epoch runs."""
    opt = optim.sgd(0.1)
    model = _mlp()
    params, mstate, _ = model.init(jax.random.key(0), (-1, 8))
    state = init_train_state(params, mstate, opt)
    step = make_train_step(classifier_loss(model.apply, train=True), opt)
    x, y = _data(12)
    key = jax.random.key(0)
    text = _raises(ValueError, r"train_epoch: argument 'data\[1\]' must be class labels in \[0, 4\), got 2 out of "
                   r"range \(the first at index 1: 7\)", train_epoch, step, state, (x, y.at[1].set(7).at[9].set(4)),
                   key, batch_size=4, num_classes=4)
    assert "index 1" in text
    _raises(ValueError, r"train_epoch: argument 'data\[1\]' must be class labels (>= 0|in \[0, 4\)), got 1 out of "
            r"range \(the first at index 2: -1\)", train_epoch, step, state, (x, y.at[2].set(-1)), key, batch_size=4)
    _raises(TypeError, r"train_epoch: argument 'check_labels' must be a bool, got 'no'",
            train_epoch, step, state, (x, y), key, batch_size=4, check_labels="no")
    # Under jit the labels are traced: not inspected (and nothing is added to the compiled epoch).
    out, _ = _EPOCH(step, state, (x, y.at[2].set(-1)), key, batch_size=4)
    assert int(out.step) == 3
    # Float targets and other data structures are not labels.
    train_epoch(step, state, (x, y), key, batch_size=4, num_classes=4)
