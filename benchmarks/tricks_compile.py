"""Workload 6 ("tricks"): compile time of one whole ``functrain tricks`` row, cold and cached.

Each unit is a fresh subprocess (``python -m benchmarks.tricks_compile``) that compiles the programs
of one row of the default table exactly as ``functrain tricks`` does
(:func:`functrain.experiments.tricks.chunks.compile_programs`: the start program and the body --
one epoch of training with validation, and the test evaluation -- every seed vmapped) and prints
the seconds spent tracing, lowering and compiling them. The row is "+ dropout 0.2" (MLP
64-256-256-256-10 with batch norm and dropout, SGD, 5 seeds, batch 64; in smoke mode a tiny MLP):
the table's earlier default network (it is now six layers of 64), kept so that results stay comparable.

* ``cold``: a fresh, empty persistent-cache directory (``FUNCTRAIN_CACHE``);
* ``cached``: a second process on the directory ``cold`` just filled (what a second
  ``functrain tricks`` spends: tracing and lowering, then loading from the cache);
* ``cold_unsafe_rbg``: cold again, with the run keys' PRNG ``unsafe_rbg`` instead of threefry
  (``functrain tricks --prng unsafe_rbg``): what threefry's hash costs in compile time.

Each round runs the three in this order (``cached`` needs the cache ``cold`` wrote); the medians
are reported with ``cached / cold`` (issue 14's target: at most 0.2) and ``unsafe_rbg / threefry``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from benchmarks._common import JSON, Settings, stats

ROW = 3  # "+ dropout 0.2" of trick_rows
FULL = {"hidden": (256, 256, 256), "seeds": 5, "epochs": 30}
SMOKE = {"hidden": (16,), "seeds": 2, "epochs": 2}
ROOT = Path(__file__).resolve().parent.parent


def compile_row(*, hidden: Sequence[int], seeds: int, epochs: int, prng: str) -> dict[str, float]:
    """Compile row ``ROW``'s programs as ``functrain tricks`` does; return the seconds spent."""
    import jax

    from functrain.experiments.tricks import chunks, programs, trick_rows
    from functrain.experiments.tricks.commands import PRNGS
    from functrain.experiments.tricks.splits import load_data, prepare_splits

    splits = prepare_splits(load_data("digits"))
    config = trick_rows(epochs=epochs, hidden=tuple(hidden))[ROW][1]
    structure, layout = programs.structure_of(config), programs.layout_of(splits)
    hyper, data = programs.hyper_of(config, structure, layout), programs.device_data(splits)
    keys = jax.random.split(jax.random.key(0, impl=PRNGS[prng]), seeds)
    t0 = time.perf_counter()
    chunks.compile_programs(structure, config.init, layout, hyper, data, keys)
    return {"seconds": time.perf_counter() - t0}


def _unit(cache: Path, prng: str, smoke: bool) -> float:
    env = {**os.environ, "FUNCTRAIN_CACHE": str(cache), "JAX_PLATFORMS": os.environ.get("JAX_PLATFORMS", "cpu"),
           "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    cmd = [sys.executable, "-m", "benchmarks.tricks_compile", "--prng", prng] + (["--smoke"] if smoke else [])
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed: {proc.stderr[-2000:]}")
    return float(json.loads(proc.stdout.strip().splitlines()[-1])["seconds"])


LABELS = {"cold": "one tricks row: cold (empty cache)",
          "cached": "one tricks row: second process (persistent cache)",
          "cold_unsafe_rbg": "one tricks row: cold, --prng unsafe_rbg"}


def run(settings: Settings, log: Callable[[str], None] = print) -> JSON:
    """Cold, cached and cold-with-unsafe_rbg compile seconds of one tricks row (fresh subprocesses)."""
    rounds = settings.units(full=3, quick=2, smoke=1)
    samples: dict[str, list[float]] = {name: [] for name in LABELS}
    loads: list[float] = []
    with tempfile.TemporaryDirectory(prefix="functrain-bench-cache-") as tmp:
        for r in range(rounds):
            caches = {"threefry": Path(tmp, f"threefry-{r}"), "unsafe_rbg": Path(tmp, f"unsafe_rbg-{r}")}
            for name, prng in (("cold", "threefry"), ("cached", "threefry"), ("cold_unsafe_rbg", "unsafe_rbg")):
                load = None if settings.gate is None else settings.gate.wait()
                if load is not None:
                    loads.append(load)
                samples[name].append(_unit(caches[prng], prng, settings.smoke))
            log(f"    round {r + 1}/{rounds}: " + ", ".join(f"{n}={s[-1]:.2f}s" for n, s in samples.items()))
    results: JSON = {}
    for name, label in LABELS.items():
        s = stats(samples[name])
        results[name] = {"label": label, "unit": "s", "time_s": s, "value": s["median"]}
    cold = results["cold"]["value"]
    for e in results.values():
        e["ratio"] = e["value"] / cold
        e["higher_is_better"] = False
    out: JSON = {
        "title": "Compile time of one `functrain tricks` row (start + train + test programs), cold and cached",
        "unit": "s",
        "config": {"row": "+ dropout 0.2", **{k: list(v) if isinstance(v, tuple) else v
                                              for k, v in (SMOKE if settings.smoke else FULL).items()},
                   "rounds": rounds, "process": "a fresh subprocess per unit"},
        "results": results,
        "cached_over_cold": results["cached"]["value"] / cold,
        "unsafe_rbg_over_threefry": results["cold_unsafe_rbg"]["value"] / cold,
    }
    if loads:
        out["background_load_median"] = statistics.median(loads)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """One unit, in this process: compile the row and print ``{"seconds": ...}`` as JSON."""
    p = argparse.ArgumentParser(prog="python -m benchmarks.tricks_compile")
    p.add_argument("--prng", choices=("threefry", "unsafe_rbg", "rbg"), default="threefry")
    p.add_argument("--smoke", action="store_true")
    args = p.parse_args(argv)
    from functrain import compilation_cache

    compilation_cache.enable()  # $FUNCTRAIN_CACHE, as the command does
    shape: dict[str, Any] = SMOKE if args.smoke else FULL
    print(json.dumps(compile_row(hidden=shape["hidden"], seeds=shape["seeds"], epochs=shape["epochs"],
                                 prng=args.prng)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
