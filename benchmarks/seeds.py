"""Workload 4: multi-seed scaling -- 1, 8, 32 and 128 whole training runs at once with ``run_seeds``.

One training run (per seed): initialize the MLP 64-512-512-10 from the seed's key (functrain
``Dense`` defaults), then one shuffled epoch of the digits (28 steps of batch 64, Adam 1e-3) with
``functrain.train.train_epoch``. ``functrain.train.run_seeds(train_fn, keys)`` runs all seeds in one
vmapped, jitted program. Reported: seed-steps per second (seeds x steps / time) and the scaling
efficiency against one seed (seed-steps/s at ``n`` seeds / seed-steps/s at 1 seed).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from benchmarks._common import JSON, Contender, Settings, block, interleaved, throughput_entry
from benchmarks._models import MLP, digits
from benchmarks._training import BATCH, LR

SEEDS = (1, 8, 32, 128)
SMOKE_SEEDS = (1, 2)


def _train_fn(data: tuple[jax.Array, jax.Array]) -> Callable[[jax.Array], Any]:
    import functrain.optim as fo
    from functrain.train import classifier_loss, init_train_state, make_train_step, train_epoch

    model = MLP.functrain_model()
    opt = fo.adam(LR)
    step = make_train_step(classifier_loss(model.apply, train=True), opt)

    def train(key: jax.Array) -> Any:
        k_init, k_epoch = jax.random.split(key)
        params, mstate, _ = model.init(k_init, (-1, *MLP.example_shape))
        state = init_train_state(params, mstate, opt)
        state, metrics = train_epoch(step, state, data, k_epoch, batch_size=BATCH)
        return state, metrics

    return train


def _runner(train: Callable[[jax.Array], Any]) -> tuple[Callable[[jax.Array], Any], str]:
    """``run_seeds`` when functrain has it, else the documented equivalent ``jit(vmap(train))``."""
    try:
        from functrain.train import run_seeds
    except ImportError:
        return jax.jit(jax.vmap(train)), "jax.jit(jax.vmap(train_fn)) (functrain.train.run_seeds not available)"

    def go(keys: jax.Array) -> Any:
        return run_seeds(train, keys)

    return go, "functrain.train.run_seeds"


def run(settings: Settings, log: Callable[[str], None] = print) -> JSON:
    """Seed-steps per second at each seed count (interleaved across seed counts)."""
    x, y = digits(BATCH)
    if settings.smoke:
        x, y = x[: 2 * BATCH], y[: 2 * BATCH]
    steps = len(x) // BATCH
    data = (jnp.asarray(x), jnp.asarray(y))
    counts = SMOKE_SEEDS if settings.smoke else SEEDS
    how = ""
    cs: list[Contender] = []
    for n in counts:
        c = Contender(f"seeds_{n}", f"{n} seed{'s' if n > 1 else ''}")
        try:
            fn, how = _runner(_train_fn(data))
        except ImportError as e:
            c.skip_reason = f"functrain API not available: {e}"
            cs.append(c)
            continue
        keys = jax.random.split(jax.random.key(0), n)

        def go(fn: Callable[[jax.Array], Any] = fn, keys: jax.Array = keys) -> None:
            block(fn(keys))

        c.run = go
        c.info["seeds"] = n
        cs.append(c)
    times = interleaved(cs, settings.repeats, log=log)
    results = {c.name: throughput_entry(c, times.get(c.name), c.info.get("seeds", 0) * steps, "seed-steps/s")
               for c in cs}
    base = results.get("seeds_1", {}).get("value")
    for e in results.values():
        if base and e.get("value"):
            e["scaling_vs_1_seed"] = e["value"] / base
    return {
        "title": "Multi-seed scaling: whole MLP training runs (1 epoch of digits each), vmapped",
        "unit": "seed-steps/s",
        "config": {"runner": how, "steps_per_run": steps, "batch_size": BATCH, "seed_counts": list(counts),
                   "model": "MLP 64-512-512-10, Adam 1e-3"},
        "results": results,
    }
