"""skip_nonfinite and accumulate_gradients: bit-identical skips, counters, averaging (with and
without jit, under vmap)."""

from __future__ import annotations

from typing import Any

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _typed import jit, vmap

import functrain.optim as fo
from functrain._tree import tree_map
from functrain.typing import PyTree

PARAMS = {"w": jnp.asarray([[1.0, -2.0], [0.5, 3.0]]), "b": jnp.asarray([0.1, -0.1])}


def _grads(scale: float = 1.0) -> PyTree:
    return tree_map(lambda x: scale * (0.5 * x + 0.3), PARAMS)


def _bits(tree: PyTree) -> list[bytes]:
    return [np.asarray(x).tobytes() for x in jax.tree_util.tree_leaves(tree)]


class TestGuards(chex.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    def test_skip_nonfinite_leaves_params_and_inner_state_bit_identical(self) -> None:
        tx, inner = fo.skip_nonfinite(fo.adam(0.1)), fo.adam(0.1)
        update, inner_update = self.variant(tx.update), self.variant(inner.update)
        for bad in (jnp.nan, jnp.inf, -jnp.inf):
            self._check_skip(tx, update, inner_update, bad)

    def _check_skip(self, tx: fo.GradientTransformation[fo.SkipNonfiniteState[Any]],
                    update: fo.UpdateFn[fo.SkipNonfiniteState[Any]],
                    inner_update: fo.UpdateFn[Any], bad: float) -> None:
        state = tx.init(PARAMS)
        params = PARAMS
        for _ in range(2):  # two good steps first
            u, state = update(_grads(), state, params)
            params = fo.apply_updates(params, u)
        assert (int(state.skipped_steps), int(state.total_steps)) == (0, 2)

        g = _grads()
        g["w"] = g["w"].at[0, 1].set(bad)
        u, new_state = update(g, state, params)
        new_params = fo.apply_updates(params, u)
        assert _bits(new_params) == _bits(params)
        assert _bits(new_state.inner_state) == _bits(state.inner_state)
        assert all(np.all(np.asarray(x) == 0.0) for x in jax.tree_util.tree_leaves(u))
        assert (int(new_state.skipped_steps), int(new_state.total_steps)) == (1, 3)

        # a later finite step is taken normally, as if the bad one never happened
        u2, s2 = update(_grads(), new_state, new_params)
        ref_u, ref_s = inner_update(_grads(), state.inner_state, params)
        assert _bits(u2) == _bits(ref_u) and _bits(s2.inner_state) == _bits(ref_s)
        assert (int(s2.skipped_steps), int(s2.total_steps)) == (1, 4)

    @chex.variants(with_jit=True, without_jit=True)
    def test_accumulate_gradients_averages_k_microbatches_then_steps(self) -> None:
        k = 3
        inner = fo.momentum(0.1, 0.9)
        tx = fo.accumulate_gradients(inner, k)
        update = self.variant(tx.update)
        state = tx.init(PARAMS)
        ref_state = inner.init(PARAMS)
        scales = [1.0, 2.0, 6.0, -1.0, 0.5, 3.5]
        for cycle in range(2):
            micro = scales[cycle * k:(cycle + 1) * k]
            for i, c in enumerate(micro):
                before = state.inner_state
                u, state = update(_grads(c), state, PARAMS)
                if i < k - 1:
                    assert all(np.all(np.asarray(x) == 0.0) for x in jax.tree_util.tree_leaves(u))
                    assert _bits(state.inner_state) == _bits(before)
                    assert int(state.micro_step) == i + 1
                else:
                    mean = _grads(float(np.mean(micro)))
                    ref_u, ref_state = inner.update(mean, ref_state, PARAMS)
                    for a, b in zip(jax.tree_util.tree_leaves(u),
                                    jax.tree_util.tree_leaves(ref_u)):
                        np.testing.assert_allclose(a, b, rtol=1e-6)
                    assert int(state.micro_step) == 0
                    assert all(np.all(np.asarray(x) == 0.0)
                               for x in jax.tree_util.tree_leaves(state.grad_mean))
        assert int(state.inner_state[0].step) == 2  # two inner steps in six calls


def test_skip_nonfinite_under_vmap_skips_each_run_on_its_own() -> None:
    tx = fo.skip_nonfinite(fo.sgd(0.5, momentum=0.9))
    gb = tree_map(lambda x: jnp.stack([x, x, x]), _grads())
    gb["b"] = gb["b"].at[1, 0].set(jnp.nan)  # only run 1 sees a NaN
    pb = tree_map(lambda x: jnp.stack([x, x, x]), PARAMS)
    sb = vmap(tx.init)(pb)
    def update(updates: PyTree, state: Any, params: PyTree) -> tuple[PyTree, Any]:
        return tx.update(updates, state, params)

    ub, sb = jit(vmap(update))(gb, sb, pb)
    np.testing.assert_array_equal(sb.skipped_steps, [0, 1, 0])
    np.testing.assert_array_equal(sb.total_steps, [1, 1, 1])
    assert np.all(np.asarray(ub["w"][1]) == 0.0)
    np.testing.assert_allclose(ub["w"][0], -0.5 * _grads()["w"], rtol=1e-6)
    np.testing.assert_array_equal(ub["w"][0], ub["w"][2])


def test_all_finite() -> None:
    assert bool(fo.all_finite({"a": jnp.ones(2), "b": [jnp.zeros(())]}))
    assert not bool(fo.all_finite({"a": jnp.asarray([1.0, jnp.nan])}))
    assert bool(fo.all_finite({}))


def test_accumulate_gradients_every_1_is_the_inner_transformation() -> None:
    tx, inner = fo.accumulate_gradients(fo.adam(0.1), 1), fo.adam(0.1)
    s, r = tx.init(PARAMS), inner.init(PARAMS)
    for c in (1.0, -2.0):
        u, s = tx.update(_grads(c), s, PARAMS)
        v, r = inner.update(_grads(c), r, PARAMS)
        for a, b in zip(jax.tree_util.tree_leaves(u), jax.tree_util.tree_leaves(v)):
            np.testing.assert_allclose(a, b, rtol=1e-6)


def test_accumulate_gradients_bf16_accumulates_in_float32_and_works_under_vmap() -> None:
    p = {"w": jnp.ones((2,), jnp.bfloat16)}
    tx = fo.accumulate_gradients(fo.sgd(1.0), 2)
    s = tx.init(p)
    assert s.grad_mean["w"].dtype == jnp.float32
    u, s = tx.update({"w": jnp.ones((2,), jnp.bfloat16)}, s)
    assert u["w"].dtype == jnp.bfloat16

    def run(scale: jax.Array) -> Any:
        t = fo.accumulate_gradients(fo.sgd(1.0), 2)
        st = t.init(PARAMS)
        _, st = t.update(_grads(1.0), st)
        out, _ = t.update(tree_map(lambda x: scale * x, _grads(1.0)), st)
        return out

    ub = jit(vmap(run))(jnp.asarray([1.0, 3.0]))
    np.testing.assert_allclose(ub["w"][0], -_grads(1.0)["w"], rtol=1e-6)
    np.testing.assert_allclose(ub["w"][1], -2.0 * _grads(1.0)["w"], rtol=1e-6)


def test_guards_reject_non_transformations() -> None:
    with pytest.raises(TypeError, match=r"skip_nonfinite: argument 'inner' must be a gradient "
                                        r"transformation .*, got 0.1"):
        fo.skip_nonfinite(0.1)  # type: ignore[arg-type]  # deliberate misuse
    with pytest.raises(TypeError, match=r"accumulate_gradients: argument 'inner' must be a "
                                        r"gradient transformation"):
        fo.accumulate_gradients("adam", 2)  # type: ignore[arg-type]  # deliberate misuse


class TestDivergenceLimit(chex.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    def test_the_nth_consecutive_nonfinite_step_declares_divergence_and_freezes(self) -> None:
        tx = fo.chain(fo.clip_by_global_norm(10.0),
                      fo.skip_nonfinite(fo.adam(0.1), max_consecutive=3))
        update = self.variant(tx.update)
        state, params = tx.init(PARAMS), PARAMS
        finite = [True, False, False, True, False, False, False, True, True]
        guard: Any = None  # set by the loop
        # consecutive non-finite steps: 0 1 2 0 1 2 3 (diverged) ...; frozen from step 7 on
        for t, ok in enumerate(finite, start=1):
            g = _grads(1.0 + t) if ok else tree_map(lambda x: x * jnp.nan, _grads())
            before = state
            u, state = update(g, state, params)
            params = fo.apply_updates(params, u)
            guard = state[1]
            assert bool(fo.has_diverged(state)) == (t >= 7) == bool(guard.diverged), t
            if not ok or t >= 7:
                assert all(np.all(np.asarray(x) == 0.0) for x in jax.tree_util.tree_leaves(u))
                assert _bits(guard.inner_state) == _bits(before[1].inner_state)
        assert int(guard.consecutive_skips) == 0  # the last steps were finite again
        assert (int(guard.skipped_steps), int(guard.total_steps)) == (7, 9)
        assert int(guard.inner_state[0].step) == 2  # only steps 1 and 4 were applied

    def test_without_a_limit_a_run_never_diverges(self) -> None:
        tx = fo.skip_nonfinite(fo.sgd(0.1))
        state = tx.init(PARAMS)
        for _ in range(20):
            _, state = tx.update(tree_map(lambda x: x * jnp.inf, _grads()), state)
        assert int(state.consecutive_skips) == 20 and not bool(state.diverged)
        assert not bool(fo.has_diverged(state))

    def test_vmapped_runs_diverge_on_their_own_and_the_others_match_their_solo_runs(self) -> None:
        tx = fo.skip_nonfinite(fo.momentum(0.05, 0.9), max_consecutive=2)
        bad_from = jnp.asarray([99, 3, 99, 99])  # run 1 produces NaN gradients from step 3 on
        scales = jnp.asarray([1.0, 2.0, -1.0, 0.5])

        def run(scale: jax.Array, first_bad: jax.Array) -> tuple[Any, Any]:
            params, state = PARAMS, tx.init(PARAMS)
            for t in range(6):
                g = tree_map(lambda x: scale * x, _grads(1.0 + t))
                g = tree_map(lambda x: jnp.where(t >= first_bad, jnp.nan, x), g)
                u, state = tx.update(g, state, params)
                params = fo.apply_updates(params, u)
            return params, state

        params, state = jit(vmap(run))(scales, bad_from)
        np.testing.assert_array_equal(fo.has_diverged(state), [False, True, False, False])
        for i in range(4):
            solo, solo_state = jit(run)(scales[i], bad_from[i])
            assert bool(solo_state.diverged) == (i == 1)
            for a, b in zip(jax.tree_util.tree_leaves(params), jax.tree_util.tree_leaves(solo)):
                np.testing.assert_allclose(a[i], b, rtol=1e-6)
            assert np.all(np.isfinite(np.asarray(params["w"][i])))

    def test_bad_limit(self) -> None:
        with pytest.raises(ValueError, match=r"^skip_nonfinite: argument 'max_consecutive' must be "
                                             r"an int >= 1, got 0$"):
            fo.skip_nonfinite(fo.sgd(0.1), max_consecutive=0)


class TestEveryKSchedule(chex.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    def test_k_follows_the_schedule_of_inner_steps(self) -> None:
        inner = fo.sgd(1.0)
        tx = fo.accumulate_gradients(inner, lambda s: jnp.where(s < 2, 1, 3))
        update = self.variant(tx.update)
        state = tx.init(PARAMS)
        scales = [1.0, 2.0, 3.0, 5.0, -1.0, 2.0, 4.0]
        emitted: list[bool] = []
        for i, c in enumerate(scales):
            u, state = update(_grads(c), state, PARAMS)
            emitted.append(bool(np.any(np.asarray(u["w"]) != 0.0)))
            if i == 4:  # the mean of the micro-batches 2, 3 and 4 (k = 3 from the 3rd inner step)
                np.testing.assert_allclose(u["w"], -_grads(float(np.mean(scales[2:5])))["w"],
                                           rtol=1e-6)
        assert emitted == [True, True, False, False, True, False, False]
        assert int(state.step) == 3 and int(state.micro_step) == 2

    def test_bad_every_k(self) -> None:
        with pytest.raises(TypeError, match=r"^accumulate_gradients: argument 'every_k' must be an "
                                            r"int >= 1, got 'two'$"):
            fo.accumulate_gradients(fo.sgd(0.1), "two")  # type: ignore[arg-type]  # deliberate


def test_case_19_accumulate_gradients_with_mixed_precision_matches_optax_multisteps() -> None:
    """Issue 12 case 19: gradients wider than the params (f32 on f16/bf16, bf16 <-> f16) made adam's
    inner state change dtype and lax.cond fail. Now every pairing works: the updates have plain
    adam's dtype, the inner state keeps its init dtypes, and the values match optax.MultiSteps."""
    import optax

    dtypes = (jnp.float32, jnp.float16, jnp.bfloat16)
    pairs = [(p, g) for p in dtypes for g in dtypes]

    def run(tx: Any, p_dtype: Any, g_dtype: Any) -> tuple[PyTree, Any]:
        params = {"w": jnp.linspace(-1.0, 1.0, 4).astype(p_dtype)}
        state = tx.init(params)
        outs: list[PyTree] = []
        for t in range(2):  # one cycle: accumulate, then step (no zero gradient: f16 eps is 0)
            g = {"w": (jnp.arange(4.0) * 0.25 - 0.3 * t + 0.13).astype(g_dtype)}
            u, state = tx.update(g, state, params)
            outs.append(u)
        return outs, state

    def all_pairs() -> list[Any]:
        results: list[Any] = []
        for p_dtype, g_dtype in pairs:
            ours = run(fo.accumulate_gradients(fo.adam(0.1), every_k=2), p_dtype, g_dtype)
            theirs = run(optax.MultiSteps(optax.adam(0.1), every_k_schedule=2), p_dtype, g_dtype)
            plain = run(fo.adam(0.1), p_dtype, g_dtype)
            results.append((ours, theirs, plain))
        return results

    for (p_dtype, g_dtype), ((ours, state), (theirs, their_state), (plain, _)) in zip(
            pairs, jit(all_pairs, compiler_options={"xla_backend_optimization_level": 0})(),
            strict=True):
        assert [u["w"].dtype for u in ours] == [u["w"].dtype for u in plain], (p_dtype, g_dtype)
        assert [u["w"].dtype for u in ours] == [u["w"].dtype for u in theirs]
        init = fo.adam(0.1).init({"w": jnp.zeros(4, p_dtype)})
        assert [x.dtype for x in jax.tree_util.tree_leaves(state.inner_state)] == [
            x.dtype for x in jax.tree_util.tree_leaves(init)]
        tol = 1e-6 if jnp.dtype(p_dtype) == jnp.float32 and jnp.dtype(g_dtype) == jnp.float32 else 2e-2
        for a, b in zip(ours, theirs, strict=True):
            np.testing.assert_allclose(np.asarray(a["w"], np.float32), np.asarray(b["w"], np.float32),
                                       rtol=tol, atol=tol * 0.1)
        assert float(jnp.max(jnp.abs(ours[-1]["w"].astype(jnp.float32)))) > 0.01  # it stepped
        mu_ours = jax.tree_util.tree_leaves(state.inner_state[0].mu)[0]
        mu_theirs = their_state.inner_opt_state[0].mu["w"]
        np.testing.assert_allclose(np.asarray(mu_ours, np.float32), np.asarray(mu_theirs, np.float32),
                                   rtol=tol, atol=tol * 0.1)
