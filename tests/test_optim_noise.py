"""Annealed gradient noise: its defining property (mean 0, variance eta / t^gamma over many keys,
with and without jit), key handling (typed and raw keys, a new draw every step), bad arguments."""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _typed import jit

import functrain.optim as fo
from functrain.typing import Array, PyTree

N_KEYS = 4000


class TestAddNoise(chex.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    def test_noise_has_mean_zero_and_the_annealed_variance(self) -> None:
        eta, gamma = 0.5, 0.55
        grads = {"w": jnp.asarray([1.0, -2.0]), "b": jnp.asarray(3.0)}

        def noise_after(key: Array, steps: int) -> tuple[Array, Array]:
            tx = fo.add_noise(eta, gamma, key)
            state = tx.init(grads)
            u: PyTree = None
            for _ in range(steps):
                u, state = tx.update(grads, state)
            return u["w"] - grads["w"], u["b"] - grads["b"]

        keys = jax.random.split(jax.random.key(0), N_KEYS)
        for t in (1, 4):
            def after_t(key: Array, t: int = t) -> tuple[Array, Array]:
                return noise_after(key, t)

            w, b = self.variant(jax.vmap(after_t))(keys)
            var = eta / t**gamma
            for x in (w[:, 0], w[:, 1], b):
                assert abs(float(jnp.mean(x))) < 4 * np.sqrt(var / N_KEYS)
                assert abs(float(jnp.var(x)) / var - 1) < 0.1
            assert abs(float(jnp.corrcoef(w[:, 0], b)[0, 1])) < 0.1  # independent leaves

    def test_each_step_draws_new_noise_and_the_key_determines_it(self) -> None:
        tx = fo.add_noise(1.0, 0.0, jax.random.key(7))
        zero = {"w": jnp.zeros(3)}
        state = tx.init(zero)
        u1, state = tx.update(zero, state)
        u2, state = tx.update(zero, state)
        assert not np.allclose(u1["w"], u2["w"]) and int(state.step) == 2
        again, _ = tx.update(zero, tx.init(zero))
        np.testing.assert_array_equal(again["w"], u1["w"])
        raw = fo.add_noise(1.0, 0.0, jax.random.PRNGKey(7))
        u_raw, s_raw = raw.update(zero, raw.init(zero))
        assert u_raw["w"].shape == (3,) and s_raw.key.shape == (2,)

    def test_a_traced_eta_scales_the_noise(self) -> None:
        def first(eta: Array) -> Array:
            tx = fo.add_noise(eta, 0.55, jax.random.key(1))
            u, _ = tx.update({"w": jnp.zeros(5)}, tx.init({"w": jnp.zeros(5)}))
            out: Array = u["w"]
            return out

        out = jit(jax.vmap(first))(jnp.asarray([1.0, 4.0]))
        np.testing.assert_allclose(out[1], 2 * out[0], rtol=1e-6)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match=r"^add_noise: argument 'eta' must be >= 0, got -1.0$"):
        fo.add_noise(-1.0, 0.55, jax.random.key(0))
    with pytest.raises(TypeError, match=r"^add_noise: argument 'key' must be a PRNG key"):
        fo.add_noise(0.1, 0.55, 0)  # type: ignore[arg-type]  # the error tested
    with pytest.raises(TypeError, match=r"^add_noise: argument 'key' must be a PRNG key"):
        fo.add_noise(0.1, 0.55, jax.random.split(jax.random.key(0), 2))
