"""Workload 4: multi-seed scaling -- 1, 8, 32 and 128 whole training runs at once with ``run_seeds``.

One training run (per seed): initialize the MLP 64-512-512-10 from the seed's key (functrain
``Dense`` defaults), then one shuffled epoch of the first 512 digits (8 steps of batch 64, Adam
1e-3) with ``functrain.train.train_epoch``, returning the epoch's metrics. (Runs are short so that
128 vmapped runs, about 7 ms per seed-step on 2 CPU cores, fit the benchmark's time budget.) ``functrain.train.run_seeds(train_fn, keys)`` runs all seeds in one
vmapped, jitted program. Reported: seed-steps per second (seeds x steps / time) and the scaling
efficiency against one seed (seed-steps/s at ``n`` seeds / seed-steps/s at 1 seed).

``run_seeds`` is timed exactly as a user calls it, after one untimed first call that compiles
(its time is recorded as ``first_call_s``); the reference ``jax.jit(jax.vmap(train_fn))`` is
compiled once ahead of time, so both are compared in the steady state. A ``run_seeds`` that
recompiled on every call would still be measured: every timed call would include the compile, and
``traces_during_timing`` (how often ``train_fn`` was traced during the timed calls, 0 when the
compiled program is reused) says so. The ratio is the median over rounds of the paired ratio
(reference time / ``run_seeds`` time in the same round), which cancels the slow drifts of a
shared machine's load; ``ratio_of_medians`` is recorded next to it.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from benchmarks._common import JSON, Contender, Settings, block, interleaved, throughput_entry
from benchmarks._models import MLP, digits
from benchmarks._training import BATCH, LR

SEEDS = (1, 8, 32, 128)
RUN_BATCHES = 8  # steps per run: one epoch of the first 512 digits
SMOKE_SEEDS = (1, 2)


def _train_fn(data: tuple[jax.Array, jax.Array], traces: list[int] | None = None) -> Callable[[jax.Array], Any]:
    """A whole training run ``key -> metrics`` (init from the key, one epoch of the digits); each
    trace of it appends to ``traces``."""
    import functrain.optim as fo
    from functrain.train import classifier_loss, init_train_state, make_train_step, train_epoch

    model = MLP.functrain_model()
    opt = fo.adam(LR)
    step = make_train_step(classifier_loss(model.apply, train=True), opt)

    def train(key: jax.Array) -> Any:
        if traces is not None:
            traces.append(1)
        k_init, k_epoch = jax.random.split(key)
        params, mstate, _ = model.init(k_init, (-1, *MLP.example_shape))
        state = init_train_state(params, mstate, opt)
        _, metrics = train_epoch(step, state, data, k_epoch, batch_size=BATCH)
        return metrics

    return train


def _run_seeds() -> Callable[..., Any] | None:
    try:
        from functrain.train import run_seeds
    except ImportError:
        try:
            from functrain.train.seeds import run_seeds
        except ImportError:
            return None
    return run_seeds


def run(settings: Settings, log: Callable[[str], None] = print) -> JSON:
    """Seed-steps per second at each seed count (interleaved across seed counts)."""
    x, y = digits(BATCH)
    n_runs = 2 if settings.smoke else RUN_BATCHES
    x, y = x[: n_runs * BATCH], y[: n_runs * BATCH]
    steps = len(x) // BATCH
    data = (jnp.asarray(x), jnp.asarray(y))
    counts = SMOKE_SEEDS if settings.smoke else SEEDS
    run_seeds = _run_seeds()
    cs: list[Contender] = []
    traces: dict[int, list[int]] = {}
    for n in counts:
        keys = jax.random.split(jax.random.key(0), n)
        plural = "s" if n > 1 else ""
        c = Contender(f"run_seeds_{n}", f"`run_seeds`, {n} seed{plural}")
        ref = Contender(f"jit_vmap_{n}", f"`jit(vmap(train_fn))` compiled once, {n} seed{plural}")
        c.info["seeds"] = ref.info["seeds"] = n
        try:
            train = _train_fn(data, traces.setdefault(n, []))
        except ImportError as err:
            c.skip_reason = ref.skip_reason = f"functrain API not available: {err}"
            cs += [c, ref]
            continue
        if run_seeds is None:
            c.skip_reason = "functrain.train.run_seeds not available"
        else:
            def go(fn: Callable[..., Any] = run_seeds, train: Callable[[jax.Array], Any] = train,
                   keys: jax.Array = keys, c: Contender = c, seen: list[int] = traces[n]) -> None:
                if "first_call_s" not in c.info:  # the untimed warm-up: the call that compiles
                    t0 = time.perf_counter()
                    block(fn(train, keys))
                    c.info["first_call_s"] = time.perf_counter() - t0
                    c.info["traces_before_timing"] = len(seen)
                    return
                block(fn(train, keys))

            c.run = go
        compiled = jax.jit(jax.vmap(train)).lower(keys).compile()

        def go_ref(fn: Callable[..., Any] = compiled, keys: jax.Array = keys) -> None:
            block(fn(keys))

        ref.run = go_ref
        cs += [c, ref]
    # One untimed unit each: run_seeds's first call compiles (recorded in first_call_s); the
    # reference was compiled ahead of time above.
    times = interleaved(cs, settings.heavy_repeats, warmup=1, log=log, gate=settings.gate)
    results = {c.name: throughput_entry(c, times.get(c.name), c.info.get("seeds", 0) * steps, "seed-steps/s")
               for c in cs}
    for prefix in ("run_seeds_", "jit_vmap_"):
        base = results.get(f"{prefix}1", {}).get("value")
        for name, e in results.items():
            if name.startswith(prefix) and base and e.get("value"):
                e["scaling_vs_1_seed"] = e["value"] / base
    for n in counts:
        a, b = results[f"run_seeds_{n}"], results[f"jit_vmap_{n}"]
        if "traces_before_timing" in a:
            a["traces_during_timing"] = len(traces[n]) - a.pop("traces_before_timing")
        ta, tb = times.get(f"run_seeds_{n}"), times.get(f"jit_vmap_{n}")
        if ta and tb:
            a["ratio"] = statistics.median(t_ref / t_rs for t_rs, t_ref in zip(ta, tb, strict=True))
            a["ratio_of_medians"] = a["value"] / b["value"]
        a["higher_is_better"] = b["higher_is_better"] = True
    return {
        "title": "Multi-seed scaling: whole MLP training runs (8 steps each), vmapped",
        "unit": "seed-steps/s",
        "config": {"steps_per_run": steps, "batch_size": BATCH, "seed_counts": list(counts),
                   "run": f"init MLP 64-512-512-10 from the key, one train_epoch over {len(x)} digits "
                          "(Adam 1e-3), return the epoch's metrics",
                   "ratio": "run_seeds / jit(vmap(train_fn)) compiled once, at the same seed count: the "
                            "median over rounds of the paired throughput ratio"},
        "results": results,
    }
