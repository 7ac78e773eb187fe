"""NAdam, RAdam, Adamax and AMSGrad against float64 NumPy transcriptions of their papers' formulas
(with and without jit, under vmap), RAdam's switch from momentum SGD to the rectified step,
scheduled betas, bad arguments."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _typed import jit, vmap

import functrain.optim as fo

RNG = np.random.default_rng(0)
GRADS = RNG.normal(size=(12, 5)) * np.linspace(0.1, 3.0, 12)[:, None]  # 12 steps, 5 coordinates


def _nadam_ref(b1: float, b2: float, eps: float) -> list[np.ndarray[Any, Any]]:
    m, v = np.zeros(5), np.zeros(5)
    out: list[np.ndarray[Any, Any]] = []
    for t, g in enumerate(GRADS, start=1):
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g**2
        m_hat = b1 * m / (1 - b1 ** (t + 1)) + (1 - b1) * g / (1 - b1**t)  # Dozat 2016
        out.append(m_hat / (np.sqrt(v / (1 - b2**t)) + eps))
    return out


def _radam_ref(b1: float, b2: float, eps: float, threshold: float) -> list[np.ndarray[Any, Any]]:
    m, v = np.zeros(5), np.zeros(5)
    out: list[np.ndarray[Any, Any]] = []
    rho_inf = 2 / (1 - b2) - 1
    for t, g in enumerate(GRADS, start=1):
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g**2
        m_hat = m / (1 - b1**t)
        rho = rho_inf - 2 * t * b2**t / (1 - b2**t)  # Liu et al. 2020, algorithm 2
        if rho >= threshold:
            r = np.sqrt((rho - 4) * (rho - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho))
            out.append(r * m_hat / (np.sqrt(v / (1 - b2**t)) + eps))
        else:
            out.append(m_hat)
    return out


def _adamax_ref(b1: float, b2: float, eps: float) -> list[np.ndarray[Any, Any]]:
    m, u = np.zeros(5), np.zeros(5)
    out: list[np.ndarray[Any, Any]] = []
    for t, g in enumerate(GRADS, start=1):
        m = b1 * m + (1 - b1) * g
        u = np.maximum(b2 * u, np.abs(g) + eps)  # Kingma & Ba 2015, algorithm 2
        out.append(m / (1 - b1**t) / u)
    return out


def _amsgrad_ref(b1: float, b2: float, eps: float) -> list[np.ndarray[Any, Any]]:
    m, v, vmax = np.zeros(5), np.zeros(5), np.zeros(5)
    out: list[np.ndarray[Any, Any]] = []
    for t, g in enumerate(GRADS, start=1):
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g**2
        vmax = np.maximum(vmax, v / (1 - b2**t))
        out.append(m / (1 - b1**t) / (np.sqrt(vmax) + eps))
    return out


Reference = list[np.ndarray[Any, Any]]
CASES: dict[str, tuple[Callable[[], fo.GradientTransformation[Any]], Reference]] = {
    "nadam": (lambda: fo.scale_by_nadam(0.8, 0.9, 1e-3), _nadam_ref(0.8, 0.9, 1e-3)),
    "radam": (lambda: fo.scale_by_radam(0.9, 0.7, 1e-3, threshold=4.0),
              _radam_ref(0.9, 0.7, 1e-3, 4.0)),
    "adamax": (lambda: fo.scale_by_adamax(0.8, 0.9, 1e-3), _adamax_ref(0.8, 0.9, 1e-3)),
    "amsgrad": (lambda: fo.scale_by_amsgrad(0.8, 0.9, 1e-3), _amsgrad_ref(0.8, 0.9, 1e-3)),
}


class TestAgainstTheFormulas(chex.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    def test_scale_by_variants_follow_their_formulas(self) -> None:
        for name, (make, reference) in CASES.items():
            tx = make()
            update = self.variant(tx.update)
            state = tx.init({"w": jnp.zeros(5)})
            for g, ref in zip(GRADS, reference):
                u, state = update({"w": jnp.asarray(g, jnp.float32)}, state)
                np.testing.assert_allclose(u["w"], ref, rtol=2e-5, atol=1e-6, err_msg=name)
            assert int(state.step) == len(GRADS)

    def test_vmap_over_gradient_batches(self) -> None:
        for name, (make, reference) in CASES.items():
            tx = make()

            def run(scale: jax.Array, tx: fo.GradientTransformation[Any] = tx) -> jax.Array:
                state = tx.init({"w": jnp.zeros(5)})
                u: Any = None  # set by the loop (GRADS is not empty)
                for g in GRADS:
                    u, state = tx.update({"w": scale * jnp.asarray(g, jnp.float32)}, state)
                out: jax.Array = u["w"]
                return out

            swept = jit(vmap(run))(jnp.asarray([1.0, 1.0]))
            np.testing.assert_allclose(swept, [reference[-1]] * 2, rtol=2e-5, atol=1e-6,
                                       err_msg=name)


def test_radam_is_momentum_sgd_until_the_variance_is_tractable() -> None:
    # b2 = 0.999: rho_t < 5 for t <= 5 (rho_6 ~ 5.0), so the first steps return m_hat itself
    tx = fo.scale_by_radam()
    state = tx.init({"w": jnp.zeros(5)})
    m = np.zeros(5)
    switched: list[bool] = []
    for t, g in enumerate(GRADS[:8], start=1):
        u, state = tx.update({"w": jnp.asarray(g, jnp.float32)}, state)
        m = 0.9 * m + 0.1 * g
        switched.append(not np.allclose(u["w"], m / (1 - 0.9**t), rtol=1e-5))
    assert switched == [False] * 5 + [True] * 3


def test_constant_beta_schedules_equal_constant_betas() -> None:
    const = fo.schedules.constant
    makers: list[Callable[[Any, Any], Any]] = [
        lambda b1, b2: fo.nadam(0.01, b1, b2), lambda b1, b2: fo.radam(0.01, b1, b2),
        lambda b1, b2: fo.adamax(0.01, b1, b2), lambda b1, b2: fo.amsgrad(0.01, b1, b2)]
    for make in makers:
        outs: list[np.ndarray[Any, Any]] = []
        for tx in (make(0.8, 0.9), make(const(0.8), const(0.9))):
            state = tx.init({"w": jnp.zeros(5)})
            u: Any = None  # set by the loop (GRADS is not empty)
            for g in GRADS:
                u, state = tx.update({"w": jnp.asarray(g, jnp.float32)}, state)
            outs.append(np.asarray(u["w"]))
        np.testing.assert_allclose(outs[0], outs[1], rtol=1e-6)


BAD: list[tuple[Callable[[], Any], type[Exception], str]] = [
    (lambda: fo.nadam(-0.1), ValueError,
     r"^nadam: argument 'learning_rate' must be >= 0, got -0.1$"),
    (lambda: fo.scale_by_nadam(b1=1.0), ValueError,
     r"^scale_by_nadam: argument 'b1' must be in \[0, 1\)"),
    (lambda: fo.radam(threshold=3.0), ValueError,
     r"^radam: argument 'threshold' must be >= 4, got 3.0$"),
    (lambda: fo.scale_by_radam(eps_root=-1.0), ValueError,
     r"^scale_by_radam: argument 'eps_root'"),
    (lambda: fo.adamax(b2="x"), TypeError,  # type: ignore[arg-type]  # the error tested
     r"^adamax: argument 'b2' must be a number"),
    (lambda: fo.amsgrad(eps=-1.0), ValueError, r"^amsgrad: argument 'eps' must be >= 0"),
]


@pytest.mark.parametrize(("make", "error", "pattern"), BAD)
def test_bad_arguments(make: Callable[[], Any], error: type[Exception], pattern: str) -> None:
    with pytest.raises(error, match=pattern):
        make()
