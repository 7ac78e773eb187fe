"""Reduce-on-plateau: the rule on recorded sequences, scale_by_plateau's effect on updates, fit."""

from __future__ import annotations

import re
from typing import Any

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax import lax
from _typed import jit

from functrain import layers, optim
from functrain.data.datasets import load_digits
from functrain.train import (
    ReduceOnPlateauState,
    ScaleByPlateauState,
    classifier_loss,
    fit,
    get_plateau_scale,
    init_train_state,
    make_eval_step,
    make_train_step,
    reduce_on_plateau,
    scale_by_plateau,
    set_plateau_scale,
)
from functrain.typing import Array

STYLE = re.compile(r"^[\w.]+: argument '[\w.\[\]']+' must be .+, got .+$", re.S)


def _reference_scales(values: list[float], factor: float, patience: int, min_delta: float, cooldown: int,
                      min_scale: float, mode: str = "min") -> list[float]:
    """Plain-Python statement of the documented rule."""
    scale, best, bad, cd = 1.0, (np.inf if mode == "min" else -np.inf), 0, 0
    out: list[float] = []
    for v in values:
        improved = v < best - min_delta if mode == "min" else v > best + min_delta
        if improved:
            best, bad = v, 0
        else:
            bad += 1
        if cd > 0:
            cd -= 1
            bad = 0
        if bad >= patience:
            scale = max(scale * factor, min_scale)
            cd, bad = cooldown, 0
        out.append(scale)
    return out


VALUES = [5.0, 4.0, 4.0, 4.0, 4.0, 4.0, 4.0, 3.0, 3.0, 3.0, 3.0, 3.0, 3.0]


def _run(values: list[float], **kw: Any) -> list[float]:
    rule = reduce_on_plateau(**kw)
    s = rule.init()
    out: list[float] = []
    for v in values:
        s = rule.update(s, v)
        out.append(float(s.scale))
    return out


def test_scale_changes_exactly_where_the_rule_says() -> None:
    got = _run(VALUES, factor=0.5, patience=2, cooldown=1, min_scale=0.2)
    # Epoch 3: 2nd non-improving epoch -> 0.5; epoch 4 is cooldown; epochs 5, 6 -> 0.25;
    # epoch 7 improves (3.0); epochs 8, 9 -> 0.125 clipped to min_scale 0.2.
    assert got == pytest.approx([1, 1, 1, .5, .5, .5, .25, .25, .25, .2, .2, .2, .2])


@pytest.mark.parametrize("patience", [1, 2, 3])
@pytest.mark.parametrize("cooldown", [0, 1, 3])
@pytest.mark.parametrize("min_delta", [0.0, 0.5])
@pytest.mark.parametrize("mode", ["min", "max"])
def test_matches_the_reference_rule(patience: int, cooldown: int, min_delta: float, mode: str) -> None:
    vals = VALUES + [2.9, 2.95, 2.0, 2.5, 2.5] if mode == "min" else [-v for v in VALUES + [2.9, 2.95, 2.0]]
    ref = _reference_scales(vals, 0.3, patience, min_delta, cooldown, 0.001, mode)
    got = _run(vals, factor=0.3, patience=patience, cooldown=cooldown, min_delta=min_delta, min_scale=0.001,
               mode=mode)
    np.testing.assert_allclose(got, ref, rtol=1e-6)


class TestReduceOnPlateauUpdate(chex.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    def test_update_follows_the_reference_rule(self) -> None:
        for patience, cooldown, mode in ((1, 0, "min"), (2, 1, "min"), (3, 3, "max")):
            rule = reduce_on_plateau(factor=0.3, patience=patience, cooldown=cooldown, min_delta=0.5,
                                     min_scale=0.001, mode=mode)  # type: ignore[arg-type]  # str from the table
            vals = VALUES + [2.9, 2.95, 2.0] if mode == "min" else [-v for v in VALUES + [2.9, 2.95, 2.0]]

            def update(s: ReduceOnPlateauState, v: Array) -> ReduceOnPlateauState:
                return rule.update(s, v)

            step = self.variant(update)
            s = rule.init()
            got: list[float] = []
            for v in vals:
                s = step(s, jnp.asarray(v))
                got.append(float(s.scale))
            ref = _reference_scales(vals, 0.3, patience, 0.5, cooldown, 0.001, mode)
            np.testing.assert_allclose(got, ref, rtol=1e-6)
            assert min(ref) < 1.0  # each case reduces at least once

    @chex.variants(with_jit=True, without_jit=True)
    def test_set_plateau_scale_acts_on_the_next_update(self) -> None:
        tx = optim.chain(optim.sgd(0.1), scale_by_plateau())
        params = {"w": jnp.array([1.0, -2.0])}

        def scaled_update(opt_state: Any, scale: Array) -> Any:
            updates, _ = tx.update(params, set_plateau_scale(opt_state, scale), params)
            return updates

        u = self.variant(scaled_update)(tx.init(params), jnp.asarray(0.5))
        np.testing.assert_allclose(u["w"], -0.1 * 0.5 * np.array([1.0, -2.0]), rtol=1e-6)


def test_jit_scan_and_vmap_over_sequences() -> None:
    rule = reduce_on_plateau(factor=0.5, patience=2, cooldown=1, min_scale=0.2)

    def run(values: Array) -> Array:
        def body(s: ReduceOnPlateauState, v: Array) -> tuple[ReduceOnPlateauState, Array]:
            s = rule.update(s, v)
            return s, s.scale
        return lax.scan(body, rule.init(), values)[1]

    seqs = jnp.stack([jnp.asarray(VALUES), jnp.asarray(VALUES[::-1])])
    out = jit(jax.vmap(run))(seqs)
    np.testing.assert_allclose(out[0], _run(VALUES, factor=0.5, patience=2, cooldown=1, min_scale=0.2))
    np.testing.assert_allclose(out[1], _run(VALUES[::-1], factor=0.5, patience=2, cooldown=1, min_scale=0.2))


def test_scale_by_plateau_scales_the_learning_rate() -> None:
    params = {"w": jnp.array([1.0, -2.0]), "b": jnp.array(0.5)}
    grads = {"w": jnp.array([0.3, 0.1]), "b": jnp.array(-1.0)}
    bases: list[optim.GradientTransformation[Any]] = [optim.sgd(0.1, momentum=0.9), optim.adam(0.01)]
    for base in bases:
        tx = optim.chain(base, scale_by_plateau())
        state = set_plateau_scale(tx.init(params), 0.25)
        assert float(get_plateau_scale(state)) == 0.25
        u, _ = tx.update(grads, state, params)
        u_ref, _ = base.update(grads, base.init(params), params)
        for k in params:
            np.testing.assert_allclose(u[k], 0.25 * u_ref[k], rtol=1e-6)
    # Inside an optax chain too, and under jit.
    tx2 = optax.chain(optax.sgd(0.1), scale_by_plateau())
    s2 = jit(set_plateau_scale)(tx2.init(params), jnp.asarray(0.5))
    u2, _ = tx2.update(grads, s2, params)
    np.testing.assert_allclose(u2["w"], -0.05 * grads["w"], rtol=1e-6)
    assert isinstance(s2[1], ScaleByPlateauState)


def test_missing_scale_by_plateau_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match=r"set_plateau_scale: argument 'opt_state' must be the state of an "
                                         r"optimizer with exactly one scale_by_plateau\(\) \(add "
                                         r"functrain.train.scale_by_plateau\(\) at the end") as info:
        set_plateau_scale(optim.sgd(0.1).init({"w": jnp.ones(2)}), 0.5)
    assert STYLE.match(str(info.value)) and str(info.value).endswith("got a state with 0 ScaleByPlateauState")
    double = optim.chain(scale_by_plateau(), scale_by_plateau()).init({})
    with pytest.raises(ValueError, match="get_plateau_scale: .*got a state with 2 ScaleByPlateauState"):
        get_plateau_scale(double)


def test_fit_with_plateau_reduces_the_learning_rate_by_the_rule() -> None:
    ds = load_digits()
    x, y = ds.x / 16.0, ds.y
    train, val = (x[:200], y[:200]), (x[200:300], y[200:300])
    model = layers.serial(layers.Dense(16), layers.Relu, layers.Dense(10))
    opt = optim.chain(optim.adam(5e-2), scale_by_plateau())
    params, mstate, _ = model.init(jax.random.key(0), (-1, 64))
    state = init_train_state(params, mstate, opt)
    step = make_train_step(classifier_loss(model.apply, train=True), opt)
    eval_step = make_eval_step(classifier_loss(model.apply, train=False))
    rule = reduce_on_plateau(factor=0.5, patience=1, min_delta=0.05, min_scale=0.01)
    out, hist = fit(step, state, train, jax.random.key(1), epochs=12, batch_size=50, eval_step=eval_step,
                    val_data=val, plateau=rule, progress=False)
    ref = _reference_scales([float(v) for v in hist.val["loss"]], 0.5, 1, 0.05, 0, 0.01)
    np.testing.assert_allclose(hist.lr_scale, ref, rtol=1e-6)
    assert min(ref) < 1.0  # the test exercises at least one reduction
    assert hist.learning_rate is not None
    np.testing.assert_allclose(hist.learning_rate, 5e-2 * np.asarray(ref), rtol=1e-6)
    assert float(get_plateau_scale(out.opt_state)) == pytest.approx(ref[-1])
    with pytest.raises(ValueError, match="init_fit_state: argument 'train_state.opt_state' .*ScaleByPlateauState"):
        fit(make_train_step(classifier_loss(model.apply, train=True), optim.adam(1e-2)),
            init_train_state(params, mstate, optim.adam(1e-2)), train, jax.random.key(1), epochs=1,
            batch_size=50, plateau=rule, progress=False)


def _raises(exc: type[Exception], match: str, fn: Any, *args: Any, **kwargs: Any) -> None:
    with pytest.raises(exc, match=match) as info:
        fn(*args, **kwargs)
    assert STYLE.match(str(info.value)), str(info.value)


def test_bad_arguments() -> None:
    _raises(ValueError, r"reduce_on_plateau: argument 'factor' must be in \(0, 1\), got 1.0", reduce_on_plateau,
            factor=1.0)
    _raises(ValueError, r"reduce_on_plateau: argument 'patience' must be an int in \[1, 2147483647\], got 0",
            reduce_on_plateau, patience=0)
    _raises(ValueError, r"reduce_on_plateau: argument 'cooldown' must be an int in \[0, 2147483647\], got -1",
            reduce_on_plateau, cooldown=-1)
    _raises(ValueError, r"reduce_on_plateau: argument 'min_scale' must be in \[0, 1\], got -0.5",
            reduce_on_plateau, min_scale=-0.5)
    _raises(ValueError, r"reduce_on_plateau: argument 'mode' must be one of 'min', 'max', got 'up'",
            reduce_on_plateau, mode="up")
    _raises(TypeError, r"reduce_on_plateau: argument 'patience' must be an int in \[1, 2147483647\], got 2.0",
            reduce_on_plateau, patience=2.0)
    three: Any = np.int64(3)  # (annotated int: NumPy ints are accepted at runtime)
    one: Any = np.int32(1)
    rule = reduce_on_plateau(patience=three, cooldown=one)
    assert (rule.patience, rule.cooldown) == (3, 1) and type(rule.cooldown) is int
    _raises(ValueError, r"ReduceOnPlateau.update: argument 'value' must be a scalar, got an array of shape \(3,\)",
            reduce_on_plateau().update, reduce_on_plateau().init(), jnp.ones(3))
