"""Workload 5: compile time of a train step and of a whole epoch, and ``import functrain`` time.

Compile time (MLP 64-512-512-10, digits, batch 64, Adam): ``jax.jit(f).lower(*args)`` (trace and
lower) plus ``.compile()`` (XLA), timed separately and reported as their sum. Before every timing,
``jax.clear_caches()`` runs and the function is built afresh (a new ``make_train_step`` /
closure), so nothing is reused from a previous repeat. Pairs:

* step: ``make_train_step(classifier_loss(model.apply, train=True), functrain.optim.adam(1e-3))``
  against the hand-written JAX + optax step (value_and_grad, optax.adam, apply_updates) of
  :mod:`benchmarks._training`.
* epoch: ``train_epoch(step, ...)`` (28 steps in ``lax.scan``, shuffling included) against the
  hand-written scan epoch.

Import time: in fresh subprocesses, ``import jax`` and then ``import functrain`` (and, for
reference, ``import optax`` and ``import equinox`` instead), median of several runs, interleaved.
"""

from __future__ import annotations

import functools
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax

from benchmarks._common import JSON, Contender, Settings, add_ratios, interleaved, time_entry
from benchmarks._models import MLP, digits, init_leaves, pairs
from benchmarks._training import BATCH, LR, _xent_acc, functrain_params

Array = jax.Array


def _lower_compile(fn: Callable[..., Any], args: tuple[Any, ...], store: dict[str, list[float]]) -> float:
    jax.clear_caches()  # type: ignore[no-untyped-call]  # unannotated in jax
    t0 = time.perf_counter()
    lowered = jax.jit(fn).lower(*args)
    t1 = time.perf_counter()
    lowered.compile()
    t2 = time.perf_counter()
    store["lower"].append(t1 - t0)
    store["compile"].append(t2 - t1)
    return t2 - t0


def _handwritten_step() -> Callable[..., Any]:
    """A fresh hand-written JAX + optax train step (the ``jax_loop`` contender's step), with the
    metrics of functrain's default step (loss and accuracy)."""
    tx = optax.adam(LR)
    apply = MLP.jax_apply

    def loss_fn(params: Any, xb: Array, yb: Array) -> tuple[Array, Array]:
        return _xent_acc(apply(params, xb, None, True), yb)

    def step(params: Any, opt_state: Any, xb: Array, yb: Array) -> tuple[Any, Any, Array, Array]:
        (loss, acc), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, xb, yb)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss, acc

    return step


def _handwritten_epoch(n: int) -> Callable[..., Any]:
    """A fresh hand-written scan epoch (the ``jax_scan`` contender's epoch)."""
    tx = optax.adam(LR)
    apply = MLP.jax_apply
    steps = n // BATCH

    def loss_fn(params: Any, xb: Array, yb: Array) -> tuple[Array, Array]:
        return _xent_acc(apply(params, xb, None, True), yb)

    def train_step(carry: Any, batch: Any) -> tuple[Any, tuple[Array, Array]]:
        params, opt_state = carry
        xb, yb = batch
        (loss, acc), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, xb, yb)
        updates, opt_state = tx.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state), (loss, acc)

    def epoch(carry: Any, xs: Array, ys: Array, key: Array) -> tuple[Any, Array]:
        perm = jax.random.permutation(key, n)[: steps * BATCH]
        xb = xs[perm].reshape(steps, BATCH, *xs.shape[1:])
        yb = ys[perm].reshape(steps, BATCH)
        carry, (losses, _accs) = jax.lax.scan(train_step, carry, (xb, yb))
        return carry, losses.mean()

    return epoch


def _compile_contenders(settings: Settings) -> tuple[list[Contender], dict[str, dict[str, list[float]]]]:
    x, y = digits(BATCH)
    if settings.smoke:
        x, y = x[: 2 * BATCH], y[: 2 * BATCH]
    leaves = init_leaves(jax.random.key(0), MLP.leaf_shapes)
    data = (jnp.asarray(x), jnp.asarray(y))
    batch = (data[0][:BATCH], data[1][:BATCH])
    key = jax.random.key(0)
    params = pairs(leaves)
    hw_opt = optax.adam(LR).init(params)
    stores: dict[str, dict[str, list[float]]] = {}

    def store(name: str) -> dict[str, list[float]]:
        return stores.setdefault(name, {"lower": [], "compile": []})

    hw_step = Contender("step_handwritten", "train step: hand-written JAX + optax",
                        run=lambda: _lower_compile(_handwritten_step(), (params, hw_opt, *batch),
                                                   store("step_handwritten")))
    hw_epoch = Contender("epoch_handwritten", "epoch: hand-written lax.scan",
                         run=lambda: _lower_compile(_handwritten_epoch(len(x)), ((params, hw_opt), *data, key),
                                                    store("epoch_handwritten")))
    ft_step = Contender("step_functrain", "train step: functrain make_train_step")
    ft_epoch = Contender("epoch_functrain", "epoch: functrain train_epoch")
    try:
        import functrain.optim as fo
        from functrain.train import classifier_loss, init_train_state, make_train_step, train_epoch

        model, ft_params, mstate = functrain_params(MLP, leaves)
        state = init_train_state(ft_params, mstate, fo.adam(LR))

        def fresh_step() -> Callable[..., Any]:
            return make_train_step(classifier_loss(model.apply, train=True), fo.adam(LR))

        def fresh_epoch() -> Callable[..., Any]:
            return functools.partial(train_epoch, fresh_step(), batch_size=BATCH)

        ft_step.run = lambda: _lower_compile(fresh_step(), (state, batch, key), store("step_functrain"))
        ft_epoch.run = lambda: _lower_compile(fresh_epoch(), (state, data, key), store("epoch_functrain"))
    except ImportError as e:
        ft_step.skip_reason = ft_epoch.skip_reason = f"functrain API not available: {e}"
    return [ft_step, hw_step, ft_epoch, hw_epoch], stores


_IMPORT_SNIPPET = (
    "import time; t0 = time.perf_counter(); import jax; t1 = time.perf_counter(); "
    "import {mod}; t2 = time.perf_counter(); print(t1 - t0, t2 - t1)"
)


def _import_times(mod: str) -> tuple[float, float]:
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {**os.environ, "PYTHONPATH": root + os.pathsep + os.environ.get("PYTHONPATH", "")}
    out = subprocess.run([sys.executable, "-c", _IMPORT_SNIPPET.format(mod=mod)], cwd=root, env=env,
                         capture_output=True, text=True, timeout=300, check=True).stdout.split()
    return float(out[0]), float(out[1])


def import_time(settings: Settings, log: Callable[[str], None] = print) -> JSON:
    """``import X`` time beyond ``import jax`` for functrain, optax and equinox (median, seconds)."""
    n = settings.units(full=5 if settings.on_gpu else 9, quick=5, smoke=1)
    mods = ("functrain", "optax", "equinox")
    samples: dict[str, list[float]] = {m: [] for m in mods}
    jax_samples: list[float] = []
    for r in range(n):
        for m in mods[r % len(mods):] + mods[: r % len(mods)]:
            t_jax, t_mod = _import_times(m)
            samples[m].append(t_mod)
            jax_samples.append(t_jax)
        log(f"    import round {r + 1}/{n}: " + ", ".join(f"{m}={s[-1]:.3f}s" for m, s in samples.items()))
    return {
        "runs": n,
        "import_jax_s": statistics.median(jax_samples),
        "beyond_jax_s": {m: statistics.median(s) for m, s in samples.items()},
        "samples": samples,
    }


def run(settings: Settings, log: Callable[[str], None] = print) -> JSON:
    """Compile times (functrain vs hand-written) and import times."""
    cs, stores = _compile_contenders(settings)
    times = interleaved(cs, settings.repeats, warmup=settings.units(full=1, quick=1, smoke=0), log=log, gate=settings.gate)
    results: JSON = {}
    for c in cs:
        e = time_entry(c, times.get(c.name))
        st = stores.get(c.name)
        if st and "value" in e:
            n = len(times[c.name])
            e["lower_s"] = statistics.median(st["lower"][-n:])
            e["compile_s"] = statistics.median(st["compile"][-n:])
        results[c.name] = e
    step = {k: results[k] for k in ("step_functrain", "step_handwritten")}
    epoch = {k: results[k] for k in ("epoch_functrain", "epoch_handwritten")}
    add_ratios(step, reference="step_functrain", higher_is_better=False)
    add_ratios(epoch, reference="epoch_functrain", higher_is_better=False)
    return {
        "title": "Compile time (MLP, jit lower + compile, caches cleared) and import time",
        "unit": "s",
        "config": {"model": "MLP 64-512-512-10, Adam, batch 64", "steps_per_epoch": len(digits(BATCH)[0]) // BATCH
                   if not settings.smoke else 2},
        "results": results,
        "import": import_time(settings, log),
    }
