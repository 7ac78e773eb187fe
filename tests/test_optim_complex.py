"""Issue 12 case 18: complex parameters. Every optimizer matches optax on complex64 parameters.

Before, ``scale_by_adam``, ``scale_by_adagrad`` and ``scale_by_rms`` (and with them adam, adamw,
amsgrad, nadam, radam, adabelief, adagrad, rmsprop, lamb), the block/unit-wise clipping norms and
the trust ratio squared the gradient as ``g**2`` instead of ``|g|^2``; the weight rule skipped
complex kernels (weight-decay masks, centralization). Each transformation here runs 40 jitted
steps on a nested tree of complex64 leaves against optax (same updates, same floating state
buffers, 1e-5 relative), and the optimizers solve optax's own complex parabola and Rosenbrock
targets (``alias_test.py``). ``clip_by_value`` refuses complex updates (optax fails there too).
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
from _typed import grad, jit

import functrain.optim as fo
from functrain import losses
from functrain._tree import tree_map
from functrain.typing import Array, PyTree

FAST = {"xla_backend_optimization_level": 0}  # compiles faster; both sides alike


def _params() -> PyTree:
    rng = np.random.default_rng(7)

    def c(*shape: int) -> Array:
        return jnp.asarray(rng.normal(size=shape) + 1j * rng.normal(size=shape), jnp.complex64)

    return {"dense": {"w": c(6, 5), "b": c(5)}, "conv": [c(3, 3, 2, 4), (c(4),)]}


def _grads(params: PyTree, t: Array) -> PyTree:
    size = jnp.where(t % 3 == 0, 0.02, 2.0)  # clipping sometimes active, sometimes not
    return tree_map(lambda x: size * (0.5 * x + 0.2 * jnp.sin(x + t)), params)


def _run(tx: Any) -> tuple[PyTree, Any]:
    def body(carry: tuple[PyTree, Any], t: Array) -> tuple[tuple[PyTree, Any], None]:
        p, s = carry
        u, s = tx.update(_grads(p, t.astype(jnp.float32)), s, p)
        return (tree_map(lambda a, b: a + b, p, u), s), None

    params = _params()
    (p, s), _ = jax.lax.scan(body, (params, tx.init(params)), jnp.arange(40))
    return p, s



def _inexact(tree: Any) -> list[Any]:
    return [x for x in jax.tree_util.tree_leaves(optax_layout(tree))
            if jnp.issubdtype(x.dtype, jnp.inexact)]


def _close(a: list[Any], b: list[Any]) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        y = np.asarray(y, np.complex128)
        assert x.shape == y.shape and np.all(np.isfinite(y))
        np.testing.assert_allclose(np.asarray(x, np.complex128), y, rtol=1e-5,
                                   atol=1e-6 * np.max(np.abs(y), initial=0.0))


def _ndim2(params: PyTree) -> PyTree:
    return tree_map(lambda x: x.ndim >= 2, params)


def _then_sgd(tx: Any, ref: Any) -> tuple[Any, Any]:
    return fo.chain(tx, fo.sgd(0.05)), optax.chain(ref, optax.sgd(0.05))


# name -> (functrain, optax) with the same hyperparameters.
CASES: dict[str, Callable[[], tuple[Any, Any]]] = {
    "adam": lambda: (fo.adam(0.01), optax.adam(0.01)),
    "adamw_default_mask": lambda: (fo.adamw(0.01, weight_decay=0.1),
                                   optax.adamw(0.01, weight_decay=0.1, mask=_ndim2)),
    "amsgrad": lambda: (fo.amsgrad(0.01), optax.amsgrad(0.01)),
    "nadam": lambda: (fo.nadam(0.01), optax.nadam(0.01)),
    "radam": lambda: (fo.radam(0.01), optax.radam(0.01)),
    "adamax": lambda: (fo.adamax(0.01), optax.adamax(0.01)),
    "adabelief": lambda: (fo.adabelief(0.01), optax.adabelief(0.01)),
    "adagrad": lambda: (fo.adagrad(0.1), optax.adagrad(0.1)),
    "rmsprop": lambda: (fo.rmsprop(0.01), optax.rmsprop(0.01)),
    "rmsprop_centered": lambda: (fo.rmsprop(0.01, centered=True, initial_scale=1.0),
                                 optax.rmsprop(0.01, centered=True, initial_scale=1.0)),
    "lion_default_mask": lambda: (fo.lion(0.01, weight_decay=0.1),
                                  optax.lion(0.01, weight_decay=0.1, mask=_ndim2)),
    "lamb": lambda: (fo.lamb(0.01, weight_decay=0.01, mask=None),
                     optax.lamb(0.01, weight_decay=0.01)),
    "lars_default_masks": lambda: (fo.lars(0.05, 1e-3, trust_coefficient=0.02),
                                   optax.lars(0.05, 1e-3, _ndim2, 0.02, 0.0, _ndim2)),
    "scale_by_trust_ratio": lambda: _then_sgd(fo.scale_by_trust_ratio(0.5, 0.3, 0.1),
                                              optax.scale_by_trust_ratio(0.5, 0.3, 0.1)),
    "clip_by_global_norm": lambda: _then_sgd(fo.clip_by_global_norm(0.5),
                                             optax.clip_by_global_norm(0.5)),
    "clip_by_block_rms": lambda: _then_sgd(fo.clip_by_block_rms(0.5), optax.clip_by_block_rms(0.5)),
    "adaptive_grad_clip": lambda: _then_sgd(fo.adaptive_grad_clip(0.05),
                                            optax.adaptive_grad_clip(0.05)),
    "normalized_sgd": lambda: (fo.normalized_sgd(0.05),
                               optax.chain(optax.normalize_by_update_norm(eps=0.0),
                                           optax.sgd(0.05))),
    "centralize": lambda: _then_sgd(fo.centralize(output_axis=0), optax.centralize()),
    "add_decayed_weights_default_mask": lambda: _then_sgd(
        fo.add_decayed_weights(0.05, fo.default_decay_mask),
        optax.add_decayed_weights(0.05, _ndim2)),
    # optax's default float32 accumulator drops imaginary parts; ours is complex.
    "accumulate_gradients": lambda: (
        fo.accumulate_gradients(fo.adam(0.01), 3),
        optax.MultiSteps(optax.adam(0.01), 3,
                         accumulator_dtype=jnp.complex64).gradient_transformation()),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_case_18_complex_parameters_match_optax(name: str) -> None:
    ours, theirs = CASES[name]()
    (a, sa), (b, sb) = jit(lambda: (_run(ours), _run(theirs)), compiler_options=FAST)()
    assert all(x.dtype == jnp.complex64 for x in jax.tree_util.tree_leaves(a))
    _close(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b))
    if name == "accumulate_gradients":  # optax.MultiSteps orders its state differently
        sa, sb = (sa.inner_state, sa.grad_mean), (sb.inner_opt_state, sb.acc_grads)
    _close(_inexact(sa), _inexact(sb))
    start = jax.tree_util.tree_leaves(_params())
    moved = max(float(np.max(np.abs(np.asarray(x) - np.asarray(p0))))
                for x, p0 in zip(jax.tree_util.tree_leaves(a), start, strict=True))
    assert moved > 1e-3  # the runs moved: not a vacuous comparison


def test_case_18_block_norm_clipping_uses_the_magnitude() -> None:
    """clip_by_block_norm (no optax twin): complex128 NumPy reference, ``g / max(1, ||g|| / t)``."""
    g = _params()
    u, _ = fo.clip_by_block_norm(1.5).update(g, fo.clip_by_block_norm(1.5).init(g))
    for x, y in zip(jax.tree_util.tree_leaves(u), jax.tree_util.tree_leaves(g), strict=True):
        y64 = np.asarray(y, np.complex128)
        ref = y64 / max(1.0, float(np.sqrt(np.sum(np.abs(y64) ** 2))) / 1.5)
        np.testing.assert_allclose(np.asarray(x), ref, rtol=1e-5)
        assert float(np.linalg.norm(np.asarray(x))) == pytest.approx(1.5, rel=1e-5)


Target = tuple[Array, Array, Callable[[Array], Array]]  # (initial, minimum, objective)


def _parabola() -> Target:
    initial = jnp.array([-1.0, 10.0, 1.0], jnp.complex64)
    final = jnp.array([1.0, -1.0, 1.0], jnp.complex64) * (1 + 1j)
    return initial, final, lambda p: jnp.sum(jnp.abs(p - final) ** 2)


def _rosenbrock() -> Target:
    a, b = 1.0 + 1.0j, 100.0

    def objective(p: Array) -> Array:
        return jnp.abs(a - p[0]) ** 2 + b * jnp.abs(p[1] - p[0] ** 2) ** 2

    return jnp.zeros(2, jnp.complex64), jnp.array([a, a**2], jnp.complex64), objective


# optax alias_test.py's optimizers and learning rates that support complex parameters.
SOLVERS: dict[str, Callable[[], Any]] = {
    "adabelief": lambda: fo.adabelief(1e-2),
    "adagrad": lambda: fo.adagrad(1.0),
    "adam": lambda: fo.adam(1e-1),
    "adamax": lambda: fo.adamax(1e-1),
    "adamw": lambda: fo.adamw(1e-1, mask=None),
    "amsgrad": lambda: fo.amsgrad(1e-1),
    "lamb": lambda: fo.lamb(1e-3, mask=None),
    "lars": lambda: fo.lars(1.0, weight_decay_mask=None, trust_ratio_mask=None),
    "nadam": lambda: fo.nadam(1e-2),
    "radam": lambda: fo.radam(5e-3),
    "rmsprop": lambda: fo.rmsprop(5e-3),
    "sgd": lambda: fo.sgd(1e-3, momentum=0.9),
}


def test_case_18_optimizers_solve_optax_complex_parabola_and_rosenbrock() -> None:
    """optax's complex targets: 10,000 steps with the conjugated gradient reach the minimum to
    3e-2 (adam used to end at ``1-0.895j`` instead of ``1+1j`` on the Rosenbrock function)."""
    def solve(tx: Any, target: Callable[[], Target]) -> Array:
        initial, _, objective = target()

        def body(carry: tuple[Array, Any], _: Array) -> tuple[tuple[Array, Any], None]:
            p, s = carry
            g = jnp.conj(grad(objective)(p))  # the descent direction of a real loss
            u, s = tx.update(g, s, p)
            return (p + u, s), None

        (p, _), _ = jax.lax.scan(body, (initial, tx.init(initial)), None, length=10_000)
        return p

    def solve_all() -> dict[str, tuple[Array, Array]]:
        return {name: (solve(make(), _parabola), solve(make(), _rosenbrock))
                for name, make in SOLVERS.items()}

    results = jit(solve_all, compiler_options=FAST)()
    for name, (para, rosen) in results.items():
        for got, target in ((para, _parabola), (rosen, _rosenbrock)):
            np.testing.assert_allclose(np.asarray(got), np.asarray(target()[1]), rtol=3e-2,
                                       atol=3e-2, err_msg=f"{name} on {target.__name__}")


def test_case_18_clip_by_value_refuses_complex_updates() -> None:
    tx = fo.clip_by_value(max_delta=1.0)
    with pytest.raises(TypeError, match=r"^clip_by_value: argument 'updates\['w'\]' must be real "
                                        r"\(complex values have no order.*, got an array of shape "
                                        r"\(2,\) and dtype complex64$"):
        tx.update({"w": jnp.ones(2, jnp.complex64)}, tx.init(None))


def test_case_18_l2_penalty_of_complex_weights_is_the_squared_magnitude() -> None:
    w = jnp.array([[1 + 2j, 3j], [-1.0 + 0j, 0.5 - 0.5j]], jnp.complex64)
    value = losses.l2_penalty({"w": w})
    assert value.dtype == jnp.float32  # real, where sum(w**2) is complex
    assert float(value) == pytest.approx(0.5 * (5 + 9 + 1 + 0.5))
    assert bool(losses.default_penalty_mask(w)) and bool(fo.default_decay_mask({"w": w})["w"])
