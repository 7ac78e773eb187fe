"""Workload 4: multi-seed scaling -- 1, 8, 32 and 128 whole training runs at once with ``run_seeds``.

One training run (per seed): initialize the MLP 64-512-512-10 from the seed's key (functrain
``Dense`` defaults), then one shuffled epoch of the first 512 digits (8 steps of batch 64, Adam
1e-3) with ``functrain.train.train_epoch``, returning the epoch's metrics. (Runs are short so that
128 vmapped runs, about 7 ms per seed-step on 2 CPU cores, fit the benchmark's time budget.) ``functrain.train.run_seeds(train_fn, keys)`` runs all seeds in one
vmapped, jitted program. Reported: seed-steps per second (seeds x steps / time) and the scaling
efficiency against one seed (seed-steps/s at ``n`` seeds / seed-steps/s at 1 seed).

A timed unit repeats the call (``calls``, the same on both sides of a pair) until it lasts about
0.3 s, since one call at 1 seed takes ~20 ms, below the scheduling noise of a shared 2-core
machine. ``run_seeds`` is timed exactly as a user calls it, after one untimed first call that compiles
(its time is recorded as ``first_call_s``); the reference ``jax.jit(jax.vmap(train_fn))`` is
compiled once ahead of time, so both are compared in the steady state. A ``run_seeds`` that
recompiled on every call would still be measured: every timed call would include the compile, and
``traces_during_timing`` (how often ``train_fn`` was traced during the timed calls, 0 when the
compiled program is reused) says so.

Timing design: both sides run the same XLA program (``run_seeds`` adds only its seed summary), so
the comparison must not favour either by its position. Each round runs every seed count's pair
back to back (the seed counts' order rotates from round to round), ``run_seeds`` first in even
rounds and the reference first in odd rounds, over an even number of rounds (``repeats``
rounded up). The ratio is the geometric mean of the two orders' median paired ratios (reference
time / ``run_seeds`` time in the same round), which cancels both a position effect and the slow
drifts of a shared machine's load; ``ratio_of_medians`` (throughput medians) is recorded too.
(With a fixed order, the reference always ran right after its ``run_seeds`` twin, and the short
8-seed units read as ``run_seeds`` 0.84x of the same program.)
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from benchmarks._common import JSON, Contender, Settings, _timed, block, throughput_entry
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


def _time_pairs(pairs: list[tuple[Contender, Contender]], rounds: int, settings: Settings,
                log: Callable[[str], None]) -> tuple[dict[str, list[float]], dict[str, tuple[list[float], list[float]]]]:
    """Time each ``(run_seeds, reference)`` pair back to back for ``rounds`` rounds, alternating
    which goes first; return every contender's times and, per ``run_seeds`` contender, the paired
    ratios ``(with run_seeds first, with the reference first)``."""
    live = [(a, b) for a, b in pairs if not a.skip_reason and not b.skip_reason]
    for a, b in live:  # one untimed unit each: run_seeds's first call compiles
        a.run()
        b.run()
    times: dict[str, list[float]] = {c.name: [] for ab in live for c in ab}
    ratios: dict[str, tuple[list[float], list[float]]] = {a.name: ([], []) for a, _ in live}
    for r in range(rounds):
        shift = r % len(live) if live else 0
        for a, b in live[shift:] + live[:shift]:
            got = {}
            for c in ((a, b) if r % 2 == 0 else (b, a)):
                if settings.gate is not None:
                    c.info.setdefault("background_load", []).append(settings.gate.wait())
                got[c.name] = _timed(c.run)
                times[c.name].append(got[c.name])
            ratios[a.name][r % 2].append(got[b.name] / got[a.name])
        log("    round %d/%d: %s" % (r + 1, rounds, ", ".join(f"{n}={t[-1]:.4g}s" for n, t in times.items())))
    return times, ratios


def run(settings: Settings, log: Callable[[str], None] = print) -> JSON:
    """Seed-steps per second at each seed count, ``run_seeds`` against its compiled-once twin."""
    x, y = digits(BATCH)
    n_runs = 2 if settings.smoke else RUN_BATCHES
    x, y = x[: n_runs * BATCH], y[: n_runs * BATCH]
    steps = len(x) // BATCH
    data = (jnp.asarray(x), jnp.asarray(y))
    counts = SMOKE_SEEDS if settings.smoke else SEEDS
    run_seeds = _run_seeds()
    pairs: list[tuple[Contender, Contender]] = []
    traces: dict[int, list[int]] = {}
    for n in counts:
        keys = jax.random.split(jax.random.key(0), n)
        plural = "s" if n > 1 else ""
        c = Contender(f"run_seeds_{n}", f"`run_seeds`, {n} seed{plural}")
        ref = Contender(f"jit_vmap_{n}", f"`jit(vmap(train_fn))` compiled once, {n} seed{plural}")
        c.info["seeds"] = ref.info["seeds"] = n
        pairs.append((c, ref))
        try:
            train = _train_fn(data, traces.setdefault(n, []))
        except ImportError as err:
            c.skip_reason = ref.skip_reason = f"functrain API not available: {err}"
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
                for _ in range(c.info["calls"]):
                    block(fn(train, keys))

            c.run = go
        compiled = jax.jit(jax.vmap(train)).lower(keys).compile()
        block(compiled(keys))
        t0 = time.perf_counter()
        block(compiled(keys))
        # One unit lasts >= ~0.3 s: a 1-seed call takes ~20 ms, which a shared 2-core machine's
        # scheduling noise swamps; both sides of a pair repeat the call equally often.
        c.info["calls"] = ref.info["calls"] = max(1, round(0.3 / (time.perf_counter() - t0)))

        def go_ref(fn: Callable[..., Any] = compiled, keys: jax.Array = keys, ref: Contender = ref) -> None:
            for _ in range(ref.info["calls"]):
                block(fn(keys))

        ref.run = go_ref
    rounds = settings.heavy_repeats + settings.heavy_repeats % 2  # as many rounds in each order
    times, ratios = _time_pairs(pairs, rounds, settings, log)
    cs = [c for ab in pairs for c in ab]
    results = {c.name: throughput_entry(c, times.get(c.name), c.info.get("seeds", 0) * c.info.get("calls", 1) * steps,
                                        "seed-steps/s") for c in cs}
    for prefix in ("run_seeds_", "jit_vmap_"):
        base = results.get(f"{prefix}1", {}).get("value")
        for name, e in results.items():
            if name.startswith(prefix) and base and e.get("value"):
                e["scaling_vs_1_seed"] = e["value"] / base
    for n in counts:
        a, b = results[f"run_seeds_{n}"], results[f"jit_vmap_{n}"]
        if "traces_before_timing" in a:
            a["traces_during_timing"] = len(traces[n]) - a.pop("traces_before_timing")
        first, second = ratios.get(f"run_seeds_{n}", ([], []))
        if first and second and b.get("value"):
            a["ratio"] = (statistics.median(first) * statistics.median(second)) ** 0.5
            a["ratio_run_seeds_first"], a["ratio_reference_first"] = statistics.median(first), statistics.median(second)
            a["ratio_of_medians"] = a["value"] / b["value"]
        a["higher_is_better"] = b["higher_is_better"] = True
    return {
        "title": "Multi-seed scaling: whole MLP training runs (8 steps each), vmapped",
        "unit": "seed-steps/s",
        "config": {"steps_per_run": steps, "batch_size": BATCH, "seed_counts": list(counts),
                   "run": f"init MLP 64-512-512-10 from the key, one train_epoch over {len(x)} digits "
                          "(Adam 1e-3), return the epoch's metrics",
                   "ratio": "run_seeds / jit(vmap(train_fn)) compiled once, at the same seed count: "
                            "the geometric mean of the median paired ratios with either one first",
                   "rounds": rounds},
        "results": results,
    }
