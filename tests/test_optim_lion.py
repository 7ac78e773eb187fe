"""Lion against a float64 NumPy transcription of Chen et al. 2023 (with and without jit, under
vmap), its defining property (every coordinate moves by the learning rate), weight decay masks,
bad arguments."""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _typed import jit

import functrain.optim as fo

RNG = np.random.default_rng(2)
GRADS = RNG.normal(size=(10, 2, 3))
PARAMS = {"w": jnp.asarray(RNG.normal(size=(2, 3)), jnp.float32), "b": jnp.ones(3)}


class TestLion(chex.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    def test_follows_the_formula(self) -> None:
        lr, b1, b2, wd = 0.01, 0.8, 0.95, 0.5
        tx = fo.lion(lr, b1, b2, wd)  # default mask: "w" decays, "b" does not
        update = self.variant(tx.update)
        state = tx.init(PARAMS)
        params = PARAMS
        w, m = np.asarray(PARAMS["w"], np.float64), np.zeros((2, 3))
        for g in GRADS:
            c = b1 * m + (1 - b1) * g  # Chen et al. 2023, program 1
            w = w - lr * (np.sign(c) + wd * w)
            m = b2 * m + (1 - b2) * g
            grads = {"w": jnp.asarray(g, jnp.float32), "b": jnp.asarray(g[0], jnp.float32)}
            u, state = update(grads, state, params)
            params = fo.apply_updates(params, u)
            np.testing.assert_allclose(params["w"], w, rtol=1e-5)
            np.testing.assert_allclose(jnp.abs(u["b"]), lr, rtol=1e-6)  # sign steps, no decay
        np.testing.assert_allclose(state[0].mu["w"], m, rtol=1e-5)

    def test_vmap_over_learning_rates_scales_the_sign_steps(self) -> None:
        def step(lr: jax.Array) -> jax.Array:
            tx = fo.lion(lr, weight_decay=0.0)
            params = {"w": PARAMS["w"]}
            u, _ = tx.update({"w": jnp.asarray(GRADS[0], jnp.float32)}, tx.init(params), params)
            out: jax.Array = u["w"]
            return out

        lrs = jnp.asarray([1e-3, 1e-2])
        out = jit(jax.vmap(step))(lrs)
        np.testing.assert_allclose(out, -lrs[:, None, None] * np.sign(GRADS[0]), rtol=1e-6)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match=r"^lion: argument 'b2' must be in \[0, 1\), got 1.0$"):
        fo.lion(1e-4, b2=1.0)
    with pytest.raises(ValueError, match=r"^scale_by_lion: argument 'b1' must be in \[0, 1\], got"):
        fo.scale_by_lion(b1=-0.5)
    with pytest.raises(ValueError, match=r"^lion: argument 'weight_decay' must be >= 0"):
        fo.lion(1e-4, weight_decay=-1.0)
