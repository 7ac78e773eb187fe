"""AdaBelief against a float64 NumPy transcription of Zhuang et al. 2020 (with and without jit),
its defining property (a predictable gradient gets larger steps than Adam's), bad arguments."""

from __future__ import annotations

from typing import Any

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _typed import jit, vmap

import functrain.optim as fo

RNG = np.random.default_rng(1)
GRADS = RNG.normal(size=(10, 4)) + np.asarray([0.0, 1.0, -2.0, 5.0])


class TestAdaBelief(chex.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    def test_follows_the_formula(self) -> None:
        b1, b2, eps, eps_root = 0.8, 0.9, 1e-6, 1e-8
        tx = fo.scale_by_belief(b1, b2, eps, eps_root)
        update = self.variant(tx.update)
        state = tx.init({"w": jnp.zeros(4)})
        m, s = np.zeros(4), np.zeros(4)
        for t, g in enumerate(GRADS, start=1):
            m = b1 * m + (1 - b1) * g
            s = b2 * s + (1 - b2) * (g - m) ** 2 + eps_root  # Zhuang et al. 2020, algorithm 2
            ref = m / (1 - b1**t) / (np.sqrt(s / (1 - b2**t)) + eps)
            u, state = update({"w": jnp.asarray(g, jnp.float32)}, state)
            np.testing.assert_allclose(u["w"], ref, rtol=2e-5)
        np.testing.assert_allclose(state.nu["w"], s, rtol=2e-5)

    def test_a_constant_gradient_gets_larger_steps_than_adam(self) -> None:
        # "belief": g - m shrinks for a predictable gradient, so s does and the step grows
        belief, adam = fo.adabelief(0.1), fo.adam(0.1)
        sb, sa = belief.init({"w": jnp.zeros(1)}), adam.init({"w": jnp.zeros(1)})
        ub: Any = None  # set by the loop
        ua: Any = None
        for _ in range(20):
            ub, sb = belief.update({"w": jnp.ones(1)}, sb)
            ua, sa = adam.update({"w": jnp.ones(1)}, sa)
        assert float(jnp.abs(ub["w"][0])) > 2 * float(jnp.abs(ua["w"][0]))
        assert abs(float(ua["w"][0]) + 0.1) < 1e-5  # Adam: -lr * sign(g)

    def test_vmap_over_learning_rates(self) -> None:
        def run(lr: jax.Array) -> jax.Array:
            tx = fo.adabelief(lr)
            state = tx.init({"w": jnp.zeros(4)})
            u: Any = None  # set by the loop (GRADS is not empty)
            for g in GRADS:
                u, state = tx.update({"w": jnp.asarray(g, jnp.float32)}, state)
            out: jax.Array = u["w"]
            return out

        lrs = jnp.asarray([0.01, 0.1])
        single = jit(run)
        np.testing.assert_allclose(jit(vmap(run))(lrs)[1], single(lrs[1]), rtol=1e-5)
        np.testing.assert_allclose(single(lrs[1]), 10 * single(lrs[0]), rtol=1e-5)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match=r"^adabelief: argument 'eps_root' must be >= 0, got -1"):
        fo.adabelief(0.1, eps_root=-1.0)
    with pytest.raises(ValueError, match=r"^scale_by_belief: argument 'b2' must be in \[0, 1\)"):
        fo.scale_by_belief(b2=1.5)
