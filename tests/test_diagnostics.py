"""Diagnostics: norms and update ratios, activation statistics, signal propagation through depth."""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _typed import grad, jit, vmap

from functrain import initializers as I
from functrain._tree import tree_map
from functrain.diagnostics import (
    ActivationStats,
    SignalPropagation,
    activation_stats,
    leaf_norms,
    signal_propagation,
    to_metrics,
    update_ratios,
)
from functrain.layers import (
    Branches,
    Concatenate,
    Dense,
    Dropout,
    Join,
    Layer,
    Relu,
    Tanh,
    parallel,
    serial,
)
from functrain.typing import Array, Initializer, PRNGKey, PyTree, Shape

KEY = jax.random.key(0)
STYLE = re.compile(r"^[\w.]+: argument '[\w.\[\]']+' must be .+, got .+$", re.S)


def _message(exc: type[Exception], fn: Callable[..., object], *args: object,
             **kwargs: object) -> str:
    """Call ``fn``, expect ``exc`` with a message in the library's one style, return it."""
    with pytest.raises(exc) as info:
        fn(*args, **kwargs)
    text = str(info.value)
    assert STYLE.match(text), text
    return text


class WB(NamedTuple):
    w: Array
    b: Array


def _params() -> tuple[WB, WB]:
    k1, k2, k3 = jax.random.split(KEY, 3)
    return (WB(jax.random.normal(k1, (3, 4)), jnp.zeros(4)),
            WB(jax.random.normal(k2, (4, 2)), jax.random.normal(k3, (2,))))


# ------------------------------------------------------------------------ norms and ratios

def test_leaf_norms_match_numpy_per_leaf_and_per_layer() -> None:
    params = _params()
    norms = leaf_norms(params)
    assert isinstance(norms, tuple) and isinstance(norms[0], WB)
    for got, ref in zip(jax.tree_util.tree_leaves(norms), jax.tree_util.tree_leaves(params), strict=True):
        assert got.shape == ()
        np.testing.assert_allclose(got, np.sqrt(np.sum(np.asarray(ref, np.float64) ** 2)), rtol=1e-6)
    per_layer = leaf_norms(params, is_leaf=lambda t: isinstance(t, WB))
    for got, layer in zip(per_layer, params, strict=True):
        ref = math.sqrt(sum(float(np.sum(np.asarray(a, np.float64) ** 2)) for a in layer))
        np.testing.assert_allclose(got, ref, rtol=1e-6)


def test_update_ratios_match_numpy_and_handle_zero_weights() -> None:
    params = _params()
    updates = tree_map(lambda p: 1e-3 * jnp.ones_like(p), params)
    ratios = update_ratios(updates, params)
    w = np.asarray(params[0].w, np.float64)
    np.testing.assert_allclose(ratios[0].w, 1e-3 * math.sqrt(w.size) / np.linalg.norm(w), rtol=1e-5)
    assert float(ratios[0].b) == math.inf  # zero bias being updated
    zero_update = update_ratios(tree_map(jnp.zeros_like, params), params)
    assert float(zero_update[0].b) == 0.0  # zero bias, zero update: 0, not nan
    per_layer = update_ratios(updates, params, is_leaf=lambda t: isinstance(t, WB))
    u2 = sum(float(np.sum(np.asarray(u, np.float64) ** 2)) for u in updates[1])
    w2 = sum(float(np.sum(np.asarray(p, np.float64) ** 2)) for p in params[1])
    np.testing.assert_allclose(per_layer[1], math.sqrt(u2 / w2), rtol=1e-5)


def test_update_ratios_rejects_mismatched_trees() -> None:
    text = _message(TypeError, update_ratios, {"a": jnp.ones(2)}, {"a": jnp.ones(2), "b": jnp.ones(1)})
    assert text == ("update_ratios: argument 'updates' must be a pytree with the structure of the "
                    "params, got missing leaves [\"['b']\"]")


def test_norm_helpers_check_their_arguments() -> None:
    assert "leaf_norms: argument 'is_leaf' must be a function" in _message(
        TypeError, leaf_norms, {"a": jnp.ones(2)}, is_leaf=3)
    assert "update_ratios: argument 'is_leaf' must be a function" in _message(
        TypeError, update_ratios, {"a": jnp.ones(2)}, {"a": jnp.ones(2)}, is_leaf="layer")
    assert "to_metrics: argument 'prefix' must be a str, got 1" in _message(
        TypeError, to_metrics, {"a": jnp.ones(())}, 1)


def test_norms_returned_from_a_jitted_vmapped_train_step() -> None:
    """A plain SGD step returns gradient norms and update ratios as metrics, over 3 seeds at once."""
    lr = 0.1

    def loss(params: tuple[WB, WB], x: Array) -> Array:
        h = jnp.tanh(x @ params[0].w + params[0].b)
        return jnp.mean((h @ params[1].w + params[1].b) ** 2)

    def step(params: tuple[WB, WB], x: Array) -> tuple[tuple[WB, WB], dict[str, Array]]:
        grads = grad(loss)(params, x)
        updates = tree_map(lambda g: -lr * g, grads)
        new = tree_map(lambda p, u: p + u, params, updates)
        metrics = to_metrics(leaf_norms(grads), "grad_norm") | to_metrics(
            update_ratios(updates, params), "update_ratio")
        return new, metrics

    seeds = vmap(lambda k: tree_map(
        lambda p: p + jax.random.normal(k, p.shape), _params()))(jax.random.split(KEY, 3))
    x = jax.random.normal(jax.random.key(1), (8, 3))
    _, metrics = jit(vmap(step, in_axes=(0, None)))(seeds, x)
    assert set(metrics) == {f"{kind}[{i}].{f}" for kind in ("grad_norm", "update_ratio")
                            for i in (0, 1) for f in "wb"}
    xd = np.asarray(x, np.float64)
    for s in range(3):  # float64 NumPy backward pass: d mean(out^2) / d w1 = h^T (2 out / size)
        w0, b0, w1, b1 = (np.asarray(a[s], np.float64) for a in (seeds[0].w, seeds[0].b,
                                                                  seeds[1].w, seeds[1].b))
        h = np.tanh(xd @ w0 + b0)
        out = h @ w1 + b1
        gw = h.T @ (2.0 * out / out.size)
        np.testing.assert_allclose(metrics["grad_norm[1].w"][s], np.linalg.norm(gw), rtol=1e-5)
        np.testing.assert_allclose(metrics["update_ratio[1].w"][s],
                                   lr * np.linalg.norm(gw) / np.linalg.norm(w1), rtol=1e-5)


# ------------------------------------------------------------------------ activation statistics

def _affine(scale: float, shift: float) -> Layer:
    """A hand-made stateful layer: y = scale * x * p + shift, state counts calls."""

    def init(key: PRNGKey, input_shape: Sequence[int]) -> tuple[PyTree, PyTree, Shape]:
        del key
        return jnp.ones(input_shape[-1]), jnp.zeros(()), tuple(input_shape)

    def apply(params: PyTree, state: PyTree, x: Array, *, key: PRNGKey | None = None,
              train: bool) -> tuple[Array, PyTree]:
        del key
        return scale * x * params + shift, state + (1 if train else 0)

    return Layer(init, apply)


def _identity(z: Array) -> Array:
    return z


def _relu_layer() -> Layer:
    def init(key: PRNGKey, input_shape: Sequence[int]) -> tuple[PyTree, PyTree, Shape]:
        return (), (), tuple(input_shape)

    def apply(params: PyTree, state: PyTree, x: Array, *, key: PRNGKey | None = None,
              train: bool) -> tuple[Array, PyTree]:
        return jnp.maximum(x, 0.0), state

    return Layer(init, apply)


def _noise_layer() -> Layer:
    """Adds key-dependent noise in training (checks the per-layer key)."""

    def init(key: PRNGKey, input_shape: Sequence[int]) -> tuple[PyTree, PyTree, Shape]:
        return (), (), tuple(input_shape)

    def apply(params: PyTree, state: PyTree, x: Array, *, key: PRNGKey | None = None,
              train: bool) -> tuple[Array, PyTree]:
        if train:
            assert key is not None
            return x + jax.random.normal(key, x.shape), state
        return x, state

    return Layer(init, apply)


def test_activation_stats_match_a_numpy_forward_pass() -> None:
    layers = [_affine(2.0, -1.0), _relu_layer(), _affine(0.5, 3.0)]
    x = np.asarray(jax.random.normal(KEY, (64, 5)), np.float64)
    params = [jnp.full(5, 1.5), (), jnp.ones(5)]
    state = [jnp.zeros(()), (), jnp.zeros(())]
    stats = activation_stats(layers, params, state, x)
    assert isinstance(stats, ActivationStats) and stats.mean.shape == (3,)
    h1 = 2.0 * x * 1.5 - 1.0
    h2 = np.maximum(h1, 0.0)
    h3 = 0.5 * h2 + 3.0
    np.testing.assert_allclose(stats.mean, [h.mean() for h in (h1, h2, h3)], rtol=1e-5)
    np.testing.assert_allclose(stats.std, [h.std() for h in (h1, h2, h3)], rtol=1e-5)
    np.testing.assert_allclose(stats.fraction_zero, [0.0, (h2 == 0).mean(), 0.0], atol=1e-7)
    assert 0.3 < float(stats.fraction_zero[1]) < 0.9
    jitted = jit(functools.partial(activation_stats, layers))(params, state, x)
    np.testing.assert_allclose(jitted.std, stats.std, rtol=1e-6)
    batched = vmap(lambda xb: activation_stats(layers, params, state, xb))(jnp.stack([x, 2 * x]))
    np.testing.assert_allclose(batched.mean[0], stats.mean, rtol=1e-5)


def test_activation_stats_gives_each_layer_its_own_key_in_training() -> None:
    layers = [_noise_layer(), _noise_layer()]
    x = jnp.zeros((4000, 1))
    key = jax.random.key(7)
    stats = activation_stats(layers, [(), ()], [(), ()], x, key=key, train=True)
    k0, k1 = jax.random.split(key, 2)  # serial's per-layer keys
    first = jax.random.normal(k0, x.shape)
    second = first + jax.random.normal(k1, x.shape)
    np.testing.assert_allclose(stats.std, [jnp.std(first), jnp.std(second)], rtol=1e-5)
    assert float(stats.std[1]) == pytest.approx(math.sqrt(2.0), rel=0.05)  # independent keys
    eval_stats = activation_stats(layers, [(), ()], [(), ()], x)
    np.testing.assert_array_equal(eval_stats.std, [0.0, 0.0])


def test_activation_stats_of_a_serial_model_agree_with_serial() -> None:
    """The same list of layers, run by serial and by activation_stats, gives the same output."""
    layers: list[Layer | Branches | Join] = [Dense(32, w_init=I.he_normal()), Relu, Dropout(0.5),
              parallel(Dense(8), serial(Dense(4), Tanh)), Concatenate, Dense(10)]
    model = serial(*layers)
    params, state, _ = jit(model.init, static_argnums=1)(KEY, (-1, 6))
    x = jax.random.normal(jax.random.key(2), (256, 6))

    @jit
    def run(p: PyTree, s: PyTree, xb: Array,
            k: PRNGKey) -> tuple[ActivationStats, Array, Array, ActivationStats]:
        """One compiled program (compiling is what costs here): stats, serial, a manual pass."""
        stats = activation_stats(layers, p, s, xb, key=k, train=True)
        y, _ = model.apply(p, s, xb, key=k, train=True)
        h = xb
        for i in range(3):
            layer = layers[i]
            assert isinstance(layer, Layer)
            h, _ = layer.apply(p[i], s[i], h, key=jax.random.split(k, 6)[i], train=True)
        return stats, y, h, activation_stats(layers, p, s, xb)

    stats, y, h, evaluation = run(params, state, x, jax.random.key(5))
    assert stats.mean.shape == (6,)
    np.testing.assert_allclose(stats.mean[-1], jnp.mean(y), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(stats.std[-1], jnp.std(y), rtol=1e-5)
    # ReLU zeroes about half of its (He-initialized) pre-activations, dropout half of the rest
    assert 0.3 < float(stats.fraction_zero[1]) < 0.7
    assert 0.6 < float(stats.fraction_zero[2]) < 0.9
    # the branches' outputs are pooled: the tanh branch is in [-1, 1], the dense one is not
    pooled = jnp.concatenate([h @ params[3][0].w + params[3][0].b,
                              jnp.tanh(h @ params[3][1][0].w + params[3][1][0].b)], axis=-1)
    np.testing.assert_allclose(stats.std[3], jnp.std(pooled), rtol=1e-5)
    assert float(evaluation.fraction_zero[2]) == pytest.approx(float(evaluation.fraction_zero[1]))


def test_activation_stats_takes_any_object_with_an_apply_function() -> None:
    """Duck typing, not functrain.layers classes: diagnostics does not import the layers."""

    class Shift:
        def __init__(self, by: float) -> None:
            self.by = by

        def apply(self, params: PyTree, state: PyTree, x: Array, *, key: PRNGKey | None = None,
                  train: bool) -> tuple[Array, PyTree]:
            return x + self.by + params, state

    x = jnp.array([[0.0, 2.0], [4.0, 6.0]])
    stats = activation_stats([Shift(1.0), Relu, Shift(-10.0)], [0.5, (), 0.0], [(), (), ()], x)
    np.testing.assert_allclose(stats.mean, [4.5, 4.5, -5.5])
    np.testing.assert_allclose(stats.fraction_zero, [0.0, 0.0, 0.0])


def test_diagnostics_imports_only_the_bottom_of_the_library() -> None:
    """DESIGN.md: data, losses, diagnostics depend only on typing/_tree (and _validate)."""
    import ast
    import functrain.diagnostics as diagnostics

    tree = ast.parse(Path(diagnostics.__file__).read_text())
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    imported |= {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import)
                 for alias in node.names}
    own = {name for name in imported if name and name.startswith("functrain")}
    assert own <= {"functrain", "functrain.typing"}, own
    from_functrain = {alias.name for node in ast.walk(tree)
                      if isinstance(node, ast.ImportFrom) and node.module == "functrain"
                      for alias in node.names}
    assert from_functrain <= {"_tree", "_validate"}, from_functrain


def test_activation_stats_rejects_bad_input() -> None:
    assert _message(ValueError, activation_stats, [], [], [], jnp.ones((2, 2))) == (
        "activation_stats: argument 'layers' must be a non-empty sequence of layers, got list []")
    assert _message(ValueError, activation_stats, [_relu_layer(), _relu_layer()], [()], [(), ()],
                    jnp.ones((2, 2))) == (
        "activation_stats: argument 'params' must be a sequence with one entry per layer (2), got "
        "1 entries")
    assert "argument 'state' must be a sequence with one entry per layer (1), got 2 entries" in _message(
        ValueError, activation_stats, [_relu_layer()], [()], [(), ()], jnp.ones((2, 2)))
    assert _message(TypeError, activation_stats, [_relu_layer(), _identity], [(), ()], [(), ()],
                    jnp.ones((2, 2))).startswith(
        "activation_stats: argument 'layers[1]' must be a layer (an object with an apply function")
    assert "argument 'layers' must be a sequence of layers (wrap a single layer in a list)" in _message(
        TypeError, activation_stats, _relu_layer(), [()], [()], jnp.ones((2, 2)))
    assert "argument 'train' must be a bool" in _message(
        TypeError, activation_stats, [_relu_layer()], [()], [()], jnp.ones((2, 2)), train="yes")


# ------------------------------------------------------------------------ signal propagation

def _numpy_signal(init: Initializer, act: Callable[[np.ndarray], np.ndarray],
                  dact: Callable[[np.ndarray], np.ndarray], depth: int, width: int, batch: int,
                  key: PRNGKey) -> tuple[np.ndarray, np.ndarray]:
    """Float64 NumPy forward pass and hand-written backward pass with the documented keys."""
    k_x, k_w, k_c = jax.random.split(key, 3)
    ws = [np.asarray(init(jax.random.fold_in(k_w, i), (width, width)), np.float64) for i in range(depth)]
    h = np.asarray(jax.random.normal(k_x, (batch, width)), np.float64)
    c = np.asarray(jax.random.normal(k_c, (batch, width)), np.float64)
    zs: list[np.ndarray] = []
    for w in ws:
        zs.append(h @ w)
        h = act(zs[-1])
    delta = c * dact(zs[-1])
    deltas = [delta]
    for i in range(depth - 1, 0, -1):
        delta = (delta @ ws[i].T) * dact(zs[i - 1])
        deltas.append(delta)
    return np.array([z.std() for z in zs]), np.array([d.std() for d in deltas[::-1]])


ACTS: dict[str, tuple[Callable[[Array], Array], Callable[[np.ndarray], np.ndarray],
                      Callable[[np.ndarray], np.ndarray]]] = {
    "linear": (lambda z: z, lambda z: z, np.ones_like),
    "relu": (jax.nn.relu, lambda z: np.maximum(z, 0.0), lambda z: (z > 0).astype(np.float64)),
    "tanh": (jnp.tanh, np.tanh, lambda z: 1.0 - np.tanh(z) ** 2),
}


@pytest.mark.parametrize("act", sorted(ACTS))
@pytest.mark.parametrize("init", [I.standard_normal(), I.glorot_normal(), I.he_normal()])
def test_signal_propagation_matches_float64_reference(act: str, init: Initializer) -> None:
    fn, np_fn, np_d = ACTS[act]
    got = signal_propagation(init, fn, 6, 32, KEY, batch=64)
    assert isinstance(got, SignalPropagation)
    assert got.forward_std.shape == got.backward_std.shape == (6,)
    fwd, bwd = _numpy_signal(init, np_fn, np_d, 6, 32, 64, KEY)
    np.testing.assert_allclose(got.forward_std, fwd, rtol=1e-4)
    np.testing.assert_allclose(got.backward_std, bwd, rtol=1e-4)


def test_lesson_standard_normal_explodes_while_glorot_and_he_keep_the_scale() -> None:
    """The lesson's claim at depth 20, width 256 (same numbers as tests/test_initializers.py)."""

    def run(init: Initializer, act: Callable[[Array], Array]) -> SignalPropagation:
        return signal_propagation(init, act, 20, 256, jax.random.key(1))

    for act in (_identity, jax.nn.relu):
        base = run(I.standard_normal(), act)
        last = float(base.forward_std[-1])
        assert not 1e-2 <= last <= 1e2
        assert math.isfinite(last) and last > 1e15  # grows by ~sqrt(n) (linear) or sqrt(n/2) (relu)
        assert float(base.backward_std[0]) > 1e15  # and so do the gradients towards the input
    for init, act in ((I.glorot_normal(), _identity), (I.he_normal(), jax.nn.relu)):
        good = run(init, act)
        assert bool(jnp.all((good.forward_std >= 0.5) & (good.forward_std <= 2.0))), good
        assert bool(jnp.all((good.backward_std >= 0.5) & (good.backward_std <= 2.0))), good


def test_glorot_with_tanh_follows_mean_field_theory() -> None:
    """Glorot + tanh decays slowly rather than staying in [0.5, 2]: q' = E[tanh(sqrt(q) z)^2]."""
    res = signal_propagation(I.glorot_normal(), jnp.tanh, 20, 256, jax.random.key(1))
    z = np.linspace(-10, 10, 20001)
    pdf = np.exp(-z**2 / 2) / math.sqrt(2 * math.pi)
    q, predicted = 1.0, list[float]()
    for _ in range(20):
        predicted.append(math.sqrt(q))
        q = float(np.sum(np.tanh(math.sqrt(q) * z) ** 2 * pdf) * (z[1] - z[0]))
    np.testing.assert_allclose(res.forward_std, predicted, rtol=0.1)
    assert 1e-2 <= float(res.forward_std[-1]) < 0.5
    saturated = signal_propagation(I.standard_normal(), jnp.tanh, 20, 256, jax.random.key(1))
    assert float(saturated.forward_std[-1]) > 10  # tanh units deep in saturation


def test_signal_propagation_rejects_bad_arguments() -> None:
    init = I.he_normal()
    cases: list[tuple[dict[str, object], type[Exception], str]] = [
        ({"depth": 0}, ValueError, "'depth' must be an int >= 1, got 0"),
        ({"width": 2.5}, TypeError, "'width' must be an int >= 1, got 2.5"),
        ({"width": True}, TypeError, "'width' must be an int >= 1, got True"),
        ({"batch": -1}, ValueError, "'batch' must be an int >= 1, got -1"),
        ({"depth": "3"}, TypeError, "'depth' must be an int >= 1, got '3'"),
    ]
    for bad, exc, expected in cases:
        args = {"depth": 3, "width": 4, "batch": 2} | bad
        assert _message(exc, signal_propagation, init, jax.nn.relu, args["depth"], args["width"],
                        KEY, batch=args["batch"]) == f"signal_propagation: argument {expected}"
    assert "argument 'activation' must be a function, got 'relu'" in _message(
        TypeError, signal_propagation, init, "relu", 3, 4, KEY)
    assert "argument 'initializer' must be an initializer" in _message(
        TypeError, signal_propagation, None, jax.nn.relu, 3, 4, KEY)


def test_signal_propagation_accepts_numpy_integers() -> None:
    depth, width, batch = np.int64(2), np.int32(4), np.int64(3)
    got = signal_propagation(I.he_normal(), jax.nn.relu, depth, width, KEY,  # type: ignore[arg-type]  # NumPy ints are ints at runtime
                             batch=batch)  # type: ignore[arg-type]  # NumPy ints are ints at runtime
    ref = signal_propagation(I.he_normal(), jax.nn.relu, 2, 4, KEY, batch=3)
    np.testing.assert_array_equal(got.forward_std, ref.forward_std)
