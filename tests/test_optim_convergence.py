"""Each optimizer drives a convex quadratic and the Rosenbrock function from a fixed start to a
stated tolerance (deterministic full-batch gradients, whole run in one ``lax.scan``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _typed import grad, jit

import functrain.optim as fo
from functrain.optim import schedules
from functrain.typing import Array, PyTree

# Convex quadratic f(x) = 1/2 (x - x*)^T A (x - x*), A = Q diag(1, 2, 4, 7, 10) Q^T (condition
# number 10), x* below, start x0 = 0.
_Q, _ = np.linalg.qr(np.random.default_rng(0).normal(size=(5, 5)))
A = jnp.asarray(_Q @ np.diag([1.0, 2.0, 4.0, 7.0, 10.0]) @ _Q.T, jnp.float32)
X_STAR = jnp.asarray([1.0, -2.0, 0.5, 3.0, -1.0], jnp.float32)


def quadratic(p: PyTree) -> Array:
    d = p["x"] - X_STAR
    out: Array = 0.5 * d @ A @ d
    return out


def rosenbrock(p: PyTree) -> Array:
    """(1 - x)^2 + 100 (y - x^2)^2, minimum 0 at (1, 1); start (-1.2, 1)."""
    x, y = p["xy"][0], p["xy"][1]
    out: Array = (1 - x) ** 2 + 100 * (y - x**2) ** 2
    return out


def _minimize(f: Callable[[PyTree], Array], p0: PyTree, tx: fo.GradientTransformation[Any],
              steps: int) -> PyTree:
    def body(carry: tuple[PyTree, Any], _: None) -> tuple[tuple[PyTree, Any], None]:
        p, s = carry
        u, s = tx.update(grad(f)(p), s, p)
        return (fo.apply_updates(p, u), s), None

    return jax.lax.scan(body, (p0, tx.init(p0)), None, length=steps)[0][0]


Make = Callable[[], fo.GradientTransformation[Any]]

# name: (quadratic optimizer, steps, tolerance on max|x - x*|,
#        Rosenbrock optimizer, steps, tolerance on max|(x, y) - (1, 1)|)
CASES: dict[str, tuple[Make, int, float, Make, int, float]] = {
    "sgd": (lambda: fo.sgd(0.15), 300, 1e-4, lambda: fo.sgd(1e-3), 20_000, 1e-3),
    "momentum": (lambda: fo.momentum(0.05, 0.9), 300, 1e-4,
                 lambda: fo.momentum(1e-3, 0.9), 5_000, 1e-4),
    "nesterov": (lambda: fo.momentum(0.05, 0.9, nesterov=True), 300, 1e-4,
                 lambda: fo.momentum(1e-3, 0.9, nesterov=True), 5_000, 1e-4),
    "adagrad": (lambda: fo.adagrad(1.0), 300, 1e-4, lambda: fo.adagrad(0.5), 20_000, 1e-3),
    "rmsprop": (lambda: fo.rmsprop(schedules.exponential_decay(0.05, 0.99)), 1_000, 1e-4,
                lambda: fo.rmsprop(schedules.exponential_decay(1e-2, 0.9995)), 20_000, 1e-4),
    "adam": (lambda: fo.adam(0.1), 1_000, 1e-4, lambda: fo.adam(0.01), 10_000, 1e-3),
    # decoupled decay moves the fixed point slightly (lambda = 1e-4): looser tolerance
    "adamw": (lambda: fo.adamw(0.1, weight_decay=1e-4, mask=None), 1_000, 5e-4,
              lambda: fo.adamw(0.01, weight_decay=1e-4, mask=None), 10_000, 3e-3),
    "normalized_sgd": (lambda: fo.normalized_sgd(schedules.exponential_decay(0.5, 0.98)), 1_000,
                       1e-4,
                       lambda: fo.normalized_sgd(schedules.exponential_decay(0.05, 0.9995)),
                       20_000, 1e-4),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_optimizer_minimizes_quadratic_and_rosenbrock(name: str) -> None:
    make_q, steps_q, tol_q, make_r, steps_r, tol_r = CASES[name]
    pq, pr = jit(lambda: (
        _minimize(quadratic, {"x": jnp.zeros(5)}, make_q(), steps_q),
        _minimize(rosenbrock, {"xy": jnp.asarray([-1.2, 1.0])}, make_r(), steps_r),
    ))()
    assert float(np.max(np.abs(np.asarray(pq["x"] - X_STAR)))) < tol_q
    assert float(np.max(np.abs(np.asarray(pr["xy"]) - 1.0))) < tol_r
    assert float(rosenbrock(pr)) < 1e-3  # from f(x0) = 24.2
