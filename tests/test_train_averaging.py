"""EMA (closed form), SWA (identity, running mean), batch-norm recomputation, digits ensemble."""

from __future__ import annotations

from typing import Any

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _typed import jit, vmap

from functrain import _tree, layers, optim
from functrain._tree import tree_map
from functrain.data.datasets import load_digits
from functrain.layers import BatchNormState
from functrain.train import (
    FitOptions,
    SWAState,
    classifier_loss,
    ema_update,
    ensemble_predict,
    final_train_state,
    fit_scan,
    init_fit_state,
    init_train_state,
    make_train_step,
    recompute_batch_norm_stats,
    swa_init,
    swa_update,
)
from functrain.typing import Array, PRNGKey, PyTree


def _params(seed: int) -> PyTree:
    rng = np.random.default_rng(seed)  # host RNG: nothing to compile
    return {"w": jnp.asarray(rng.normal(size=(3, 4)), jnp.float32), "b": jnp.asarray(rng.normal(size=4), jnp.float32)}


class TestAveraging(chex.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    def test_ema_matches_the_closed_form(self) -> None:
        update = self.variant(ema_update)
        decay = 0.9
        avg0 = _params(0)
        ps = [_params(i + 1) for i in range(6)]
        avg = avg0
        for p in ps:
            avg = update(avg, p, decay)
        t = len(ps)
        for k in avg0:
            ref = decay ** t * np.asarray(avg0[k], np.float64) + (1 - decay) * sum(
                decay ** (t - i) * np.asarray(p[k], np.float64) for i, p in enumerate(ps, start=1))
            np.testing.assert_allclose(avg[k], ref, rtol=1e-5, atol=1e-6)
        # Constant params: avg_t = decay^t avg_0 + (1 - decay^t) p.
        p = _params(9)
        a = avg0
        for _ in range(10):
            a = update(a, p, 0.8)
        np.testing.assert_allclose(a["w"], 0.8 ** 10 * avg0["w"] + (1 - 0.8 ** 10) * p["w"], rtol=1e-5, atol=1e-6)

    @chex.variants(with_jit=True, without_jit=True)
    def test_swa_is_the_uniform_mean_from_the_start_epoch(self) -> None:
        def update(s: SWAState, p: PyTree, e: Array) -> SWAState:
            return swa_update(s, p, e, start_epoch=3)

        step = self.variant(update)
        ps = [_params(i) for i in range(8)]
        s = swa_init(ps[0])
        for e, p in enumerate(ps):
            s = step(s, p, jnp.asarray(e))
        assert int(s.n) == 5
        for k in ps[0]:
            ref = np.mean([np.asarray(p[k], np.float64) for p in ps[3:]], axis=0)
            np.testing.assert_allclose(s.average[k], ref, rtol=1e-5, atol=1e-6)

    @chex.variants(with_jit=True, without_jit=True)
    def test_swa_of_identical_params_is_the_identity(self) -> None:
        update = self.variant(swa_update)
        p = _params(3)
        s = swa_init(p)
        for e in range(7):
            s = update(s, p, e)
        assert int(s.n) == 7
        chex.assert_trees_all_equal(s.average, p)  # bitwise: the mean of equal values


def test_ema_under_vmap_over_decays_and_dtypes() -> None:
    avg, p = _params(0), _params(1)
    decays = jnp.array([0.0, 0.5, 1.0])
    out = vmap(lambda d: ema_update(avg, p, d))(decays)
    np.testing.assert_allclose(out["w"][0], p["w"], rtol=1e-6)
    np.testing.assert_allclose(out["w"][2], avg["w"], rtol=1e-6)
    bf = ema_update({"w": jnp.ones(3, jnp.bfloat16)}, {"w": jnp.zeros(3, jnp.bfloat16)}, 0.5)
    assert bf["w"].dtype == jnp.bfloat16
    with pytest.raises(ValueError, match=r"ema_update: argument 'decay' must be in \[0, 1\], got 1.5"):
        ema_update(avg, p, 1.5)
    with pytest.raises(TypeError, match=r"ema_update: argument 'params' must be a pytree with the structure of "
                                        r"the average, got missing leaves \[\"\['b'\]\"\]"):
        ema_update(avg, {"w": p["w"]}, 0.5)


def test_swa_under_vmap_over_start_epochs_and_errors() -> None:
    ps = [_params(i) for i in range(8)]
    starts = jnp.array([0, 6])

    def run(start: Array) -> PyTree:
        st = swa_init(ps[0])
        for e, p in enumerate(ps):
            st = swa_update(st, p, e, start_epoch=start)
        return st

    out = vmap(run)(starts)
    np.testing.assert_array_equal(out.n, [8, 2])
    np.testing.assert_allclose(out.average["w"][1], (np.asarray(ps[6]["w"]) + np.asarray(ps[7]["w"])) / 2, rtol=1e-6)
    with pytest.raises(TypeError, match=r"swa_update: argument 'params' must be a pytree with the structure of "
                                        r"state.average"):
        swa_update(swa_init(ps[0]), {"w": ps[0]["w"]}, 0)
    with pytest.raises(TypeError, match=r"swa_update: argument 'state' must be an SWAState"):
        swa_update(ps[0], ps[1], 0)


def test_recompute_batch_norm_stats_is_the_cumulative_average_of_batch_statistics() -> None:
    model = layers.serial(layers.Dense(6), layers.BatchNorm(momentum=0.9), layers.Relu, layers.Dense(3),
                          layers.BatchNorm(momentum=0.99))
    params, state, _ = model.init(jax.random.key(0), (-1, 5))
    x = jax.random.normal(jax.random.key(1), (50, 5)) * 2.0 + 1.0
    bs = 16  # 3 full batches; the last 2 examples are dropped
    new = jit(recompute_batch_norm_stats, static_argnames=("apply", "batch_size"))(
        model.apply, params, state, x, batch_size=bs)

    # Reference in float64: per-batch mean and unbiased variance of each BN input, averaged.
    d0, d1 = params[0], params[3]
    bn0 = params[1]
    means0: list[np.ndarray] = []
    vars0: list[np.ndarray] = []
    means1: list[np.ndarray] = []
    vars1: list[np.ndarray] = []
    for i in range(3):
        xb = np.asarray(x[i * bs:(i + 1) * bs], np.float64)
        h = xb @ np.asarray(d0.w, np.float64) + np.asarray(d0.b, np.float64)
        means0.append(h.mean(0)); vars0.append(h.var(0, ddof=1))
        hn = (h - h.mean(0)) / np.sqrt(h.var(0) + 1e-5) * np.asarray(bn0.scale) + np.asarray(bn0.bias)
        z = np.maximum(hn, 0) @ np.asarray(d1.w, np.float64) + np.asarray(d1.b, np.float64)
        means1.append(z.mean(0)); vars1.append(z.var(0, ddof=1))
    assert isinstance(new[1], BatchNormState) and isinstance(new[4], BatchNormState)
    np.testing.assert_allclose(new[1].mean, np.mean(means0, 0), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(new[1].var, np.mean(vars0, 0), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(new[4].mean, np.mean(means1, 0), rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(new[4].var, np.mean(vars1, 0), rtol=1e-3, atol=1e-4)
    chex.assert_trees_all_equal_structs(new, state)


def test_recompute_batch_norm_stats_with_dropout_key_and_errors() -> None:
    model = layers.serial(layers.Dense(4), layers.Dropout(0.5), layers.BatchNorm())
    params, state, _ = model.init(jax.random.key(0), (-1, 3))
    x = jnp.asarray(np.random.default_rng(1).normal(size=(20, 3)), jnp.float32)
    recompute = jit(recompute_batch_norm_stats, static_argnames=("apply", "batch_size"))
    a = recompute(model.apply, params, state, x, batch_size=10, key=jax.random.key(2))
    b = recompute(model.apply, params, state, x, batch_size=10, key=jax.random.key(3))
    assert not np.allclose(a[2].mean, b[2].mean)
    with pytest.raises(ValueError, match="needs a key|key"):
        recompute_batch_norm_stats(model.apply, params, state, x, batch_size=10)
    plain = layers.serial(layers.Dense(4))
    pp, ps, _ = plain.init(jax.random.key(0), (-1, 3))
    with pytest.raises(ValueError, match="recompute_batch_norm_stats: argument 'state' must be a model state "
                                         "holding a BatchNormState"):
        recompute_batch_norm_stats(plain.apply, pp, ps, x, batch_size=10)
    with pytest.raises(ValueError, match=r"recompute_batch_norm_stats: argument 'batch_size' must be an int <= "
                                         r"the number of examples \(20\), got 21"):
        recompute_batch_norm_stats(model.apply, params, state, x, batch_size=21, key=jax.random.key(2))


def test_ensemble_predict_averages_member_probabilities() -> None:
    model = layers.serial(layers.Dense(5), layers.Relu, layers.Dense(4))
    params, state, _ = model.init(jax.random.key(0), (-1, 2))
    rng = np.random.default_rng(0)  # three members: the initial params with host-random leaves
    stacked_params = _tree.tree_map(lambda a: jnp.asarray(rng.normal(size=(3,) + a.shape), a.dtype), params)
    x = jnp.asarray(rng.normal(size=(7, 2)), jnp.float32)
    probs = jit(ensemble_predict, static_argnames="apply")(model.apply, stacked_params, state, x)
    apply = jit(model.apply, static_argnames="train")
    members = [jax.nn.softmax(apply(_tree.tree_map(lambda a: a[i], stacked_params), state, x, train=False)[0])
               for i in range(3)]
    np.testing.assert_allclose(probs, np.mean(members, axis=0), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(probs.sum(-1), 1.0, rtol=1e-6)
    with pytest.raises(ValueError, match="same leading"):
        ensemble_predict(model.apply, {"a": jnp.ones((3, 2)), "b": jnp.ones((2, 2))}, (), x)


def test_digits_ensemble_of_vmapped_runs_is_the_mixture_of_its_members() -> None:
    """Members trained by one vmapped fit_scan; the ensemble against a float64 hand computation."""
    ds = load_digits()
    order = np.random.default_rng(0).permutation(len(ds.y))  # a random split, drawn on the host
    x_all, y_all = np.asarray(ds.x, np.float32)[order] / 16.0, np.asarray(ds.y)[order]
    train, test = (x_all[:1200], y_all[:1200]), (x_all[1200:], y_all[1200:])
    model = layers.serial(layers.Dense(32), layers.BatchNorm(), layers.Relu, layers.Dense(10))
    opt = optim.adam(1e-2)
    step = make_train_step(classifier_loss(model.apply, train=True), opt)
    options = FitOptions(batch_size=50)
    keys = jax.random.split(jax.random.key(1), 3)
    starts = [init_train_state(*model.init(k, (-1, 64))[:2], opt) for k in keys]
    stacked = tree_map(lambda *xs: jnp.stack(xs), *starts)

    def member(state: Any, key: PRNGKey) -> tuple[PyTree, PyTree]:
        fs, _ = fit_scan(step, init_fit_state(state), train, key, options, epochs=5)
        ts = final_train_state(fs)
        return ts.params, ts.model_state

    stacked_params, stacked_state = jit(vmap(member))(stacked, keys)
    x, y = test
    probs = jit(ensemble_predict, static_argnames="apply")(model.apply, stacked_params, stacked_state, jnp.asarray(x))

    # By hand, in float64: each member's inference-mode forward pass (batch norm with its running
    # statistics), softmax, then the mean of the probabilities.
    def forward(i: int) -> np.ndarray[Any, Any]:
        def f64(a: Array) -> np.ndarray[Any, Any]:
            out: np.ndarray[Any, Any] = np.asarray(a[i], np.float64)
            return out

        dense0, bn, dense1 = stacked_params[0], stacked_params[1], stacked_params[3]
        stats = stacked_state[1]
        h = np.asarray(x, np.float64) @ f64(dense0.w) + f64(dense0.b)
        h = (h - f64(stats.mean)) / np.sqrt(f64(stats.var) + 1e-5) * f64(bn.scale) + f64(bn.bias)
        logits = np.maximum(h, 0.0) @ f64(dense1.w) + f64(dense1.b)
        e = np.exp(logits - logits.max(-1, keepdims=True))
        probs: np.ndarray[Any, Any] = e / e.sum(-1, keepdims=True)
        return probs

    members = [forward(i) for i in range(3)]
    ref = np.mean(members, axis=0)
    np.testing.assert_allclose(probs, ref, rtol=1e-4, atol=1e-6)
    nll = -np.log(ref[np.arange(len(y)), np.asarray(y)]).mean()
    np.testing.assert_allclose(-jnp.mean(jnp.log(probs[jnp.arange(len(y)), y])), nll, rtol=1e-4)
    assert float(jnp.mean(jnp.argmax(probs, -1) == y)) >= 0.95, float(jnp.mean(jnp.argmax(probs, -1) == y))
    assert not np.allclose(members[0], members[1], atol=1e-3)  # and they differ
