"""Shared benchmark machinery: settings, interleaved timing, statistics and machine information."""

from __future__ import annotations

import datetime
import gc
import importlib.metadata
import os
import platform
import random
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import jax

Mode = Literal["full", "quick", "smoke"]
JSON = dict[str, Any]


@dataclass(frozen=True)
class Settings:
    """How a benchmark run is sized and where it runs.

    Attributes:
        mode: ``"full"`` (the reported measurement), ``"quick"`` (same workload shapes, shorter
            measurement units, for development) or ``"smoke"`` (tiny shapes; checks plumbing only,
            its numbers mean nothing).
        gpu: GPU mode requested (``--gpu``).
        on_gpu: GPU mode requested *and* ``jax.devices()[0]`` is a GPU.
        repeats: timed repeats per contender (the median is reported).
        heavy_repeats: timed repeats for the long workloads (convnet, seeds).
        torch_device: ``"cpu"``, ``"cuda"``, or ``None`` when PyTorch is skipped.
        torch_skip_reason: why PyTorch is skipped (``""`` when it runs).
        gate: the shared-machine guard used before every timed unit.
    """

    mode: Mode
    gpu: bool
    on_gpu: bool
    repeats: int
    heavy_repeats: int
    torch_device: str | None
    torch_skip_reason: str
    gate: QuietGate | None = None

    @property
    def smoke(self) -> bool:
        """Whether this is a smoke run (tiny shapes)."""
        return self.mode == "smoke"

    def units(self, full: int, quick: int, smoke: int = 1) -> int:
        """Pick a count (epochs or updates per measurement) by mode."""
        return {"full": full, "quick": quick, "smoke": smoke}[self.mode]


@dataclass
class Contender:
    """One side of a comparison.

    Attributes:
        name: short identifier used in JSON (``"functrain"``, ``"optax_scan"`` ...).
        label: human-readable description for tables.
        run: performs one measurement unit and blocks until the device is idle. It returns
            ``None`` (the unit is timed from outside) or the seconds it measured itself (for units
            that must exclude their own set-up, such as compile timings).
        skip_reason: non-empty when the contender cannot run here (then ``run`` is never called).
        info: extra facts recorded in the results (parity checks, thread counts ...).
        report: called once after timing; returns more facts (the final training loss ...).
    """

    name: str
    label: str
    run: Callable[[], float | None] = lambda: None
    skip_reason: str = ""
    info: JSON = field(default_factory=dict)
    report: Callable[[], JSON] = lambda: {}


def _cpu_times() -> tuple[int, int] | None:
    """``(busy, total)`` jiffies of all CPUs from ``/proc/stat`` (``None`` where unavailable)."""
    try:
        with open("/proc/stat", encoding="ascii") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return sum(fields) - idle, sum(fields)


def background_busy(window: float = 0.2) -> float | None:
    """Fraction of all CPU capacity used during ``window`` seconds while this process is idle.

    Measured between timed units, when the benchmark itself runs nothing, so it is the load of
    *other* processes on a shared machine (0 = quiet, 1 = every core busy).
    """
    a = _cpu_times()
    if a is None:
        return None
    time.sleep(window)
    b = _cpu_times()
    if b is None or b[1] == a[1]:
        return None
    return (b[0] - a[0]) / (b[1] - a[1])


@dataclass
class QuietGate:
    """Waits, before each timed unit, until other processes leave the CPUs (mostly) idle.

    On a shared machine another process's burst slows whichever contender happens to run, and
    multi-threaded runtimes (OpenMP in PyTorch especially) slow down out of all proportion when
    their threads are descheduled. Before each timed unit the gate samples the other processes'
    CPU use; while it is above ``threshold`` it sleeps and samples again, for at most ``max_wait``
    seconds per unit and ``budget`` seconds per run. Every contender gets the same treatment;
    the load seen before each unit is recorded with the results.

    Attributes:
        enabled: whether to wait at all (the load is recorded either way).
        threshold: tolerated fraction of total CPU capacity used by others.
        max_wait: longest wait before one unit (seconds).
        budget: total waiting allowed in this run (seconds); ``waited`` counts it down.
        waited: seconds waited so far.
    """

    enabled: bool = True
    threshold: float = 0.15
    max_wait: float = 20.0
    budget: float = 240.0
    waited: float = 0.0

    def wait(self) -> float | None:
        """Wait for a quiet machine; return the background load measured last."""
        t0 = time.perf_counter()
        load = background_busy()
        while (self.enabled and load is not None and load > self.threshold
               and time.perf_counter() - t0 < self.max_wait and self.waited + time.perf_counter() - t0 < self.budget):
            time.sleep(0.5)
            load = background_busy()
        self.waited += time.perf_counter() - t0
        return load


def _timed(fn: Callable[[], float | None]) -> float:
    """Seconds taken by ``fn()`` (or reported by it), with the garbage collector run before and
    paused during it."""
    gc.collect()
    gc.disable()
    try:
        t0 = time.perf_counter()
        inner = fn()
        elapsed = time.perf_counter() - t0
    finally:
        gc.enable()
    return elapsed if inner is None else inner


def interleaved(contenders: Sequence[Contender], repeats: int, *, warmup: int = 1,
                log: Callable[[str], None] = print, gate: QuietGate | None = None) -> dict[str, list[float]]:
    """Time contenders side by side: ``warmup`` untimed units each, then ``repeats`` rounds.

    Each round runs every contender's unit once, in a fresh order (a permutation drawn from a
    fixed seed, so runs are reproducible): no contender always runs first, or always follows the
    same neighbour. (A rotation A B C, B C A, C A B keeps the cyclic neighbours: the contender after
    PyTorch always ran right after it, and measured 5-8% slower than its own variants.)

    Args:
        contenders: the contenders (skipped ones are left out).
        repeats: number of timed rounds.
        warmup: untimed units per contender before timing (compilation, caches).
        log: progress printer.
        gate: if given, waits for a quiet machine before each timed unit and records the
            background load in each contender's ``info["background_load"]``.

    Returns:
        ``{name: [seconds of each timed unit]}`` for the contenders that ran.
    """
    live = [c for c in contenders if not c.skip_reason]
    for c in live:
        for _ in range(warmup):
            c.run()
    times: dict[str, list[float]] = {c.name: [] for c in live}
    order = random.Random(0)
    for r in range(repeats):
        for c in order.sample(live, len(live)):
            if gate is not None:
                c.info.setdefault("background_load", []).append(gate.wait())
            times[c.name].append(_timed(c.run))
        log("    round %d/%d: %s" % (r + 1, repeats,
                                    ", ".join(f"{n}={t[-1]:.4g}s" for n, t in times.items())))
    return times


def stats(samples: Sequence[float]) -> JSON:
    """Median, minimum, maximum and quartiles of timing samples (seconds)."""
    xs = sorted(samples)
    q = statistics.quantiles(xs, n=4, method="inclusive") if len(xs) > 1 else [xs[0]] * 3
    return {"median": statistics.median(xs), "min": xs[0], "max": xs[-1], "q1": q[0], "q3": q[2],
            "n": len(xs), "samples": list(samples)}


def _info(c: Contender) -> JSON:
    info = dict(c.info)
    loads = [x for x in info.pop("background_load", []) if x is not None]
    if loads:
        info["background_load"] = {"median": statistics.median(loads), "max": max(loads), "samples": loads}
    return info


def throughput_entry(c: Contender, samples: Sequence[float] | None, work: float, unit: str) -> JSON:
    """A result entry for a throughput: ``work`` items per measured unit, reported per second."""
    entry: JSON = {"label": c.label, "unit": unit, **_info(c)}
    if samples is None:
        entry["skipped"] = c.skip_reason
        return entry
    s = stats(samples)
    entry.update(c.report())
    entry.update(time_s=s, value=work / s["median"], value_best=work / s["min"],
                 work_per_unit=work)
    return entry


def time_entry(c: Contender, samples: Sequence[float] | None) -> JSON:
    """A result entry for a duration (seconds; lower is better)."""
    entry: JSON = {"label": c.label, "unit": "s", **_info(c)}
    if samples is None:
        entry["skipped"] = c.skip_reason
        return entry
    s = stats(samples)
    entry.update(c.report())
    entry.update(time_s=s, value=s["median"])
    return entry


def add_ratios(entries: dict[str, JSON], *, reference: str = "functrain", higher_is_better: bool) -> None:
    """Add ``ratio`` = functrain's value ÷ the contender's value to every entry that ran.

    For throughputs (``higher_is_better``) a ratio above 1 means functrain is faster; for times
    a ratio below 1 means functrain is faster. The reference entry gets ratio 1.
    """
    ref = entries.get(reference, {}).get("value")
    for e in entries.values():
        if ref is not None and e.get("value"):
            e["ratio"] = ref / e["value"]
        e["higher_is_better"] = higher_is_better


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _git_commit() -> str | None:
    try:
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True,
                             text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "functrain"], cwd=root,
                               capture_output=True, text=True, timeout=10, check=True).stdout.strip()
        return rev + ("+dirty(functrain)" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


def machine_info(settings: Settings, torch_threads: int | None) -> JSON:
    """Facts about the machine and software versions, recorded with the results."""
    dev = jax.devices()[0]
    try:
        affinity = len(os.sched_getaffinity(0))
    except AttributeError:
        affinity = os.cpu_count() or 1
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpus_available": affinity,
        "load_average_at_start": list(load) if load else None,
        "jax": jax.__version__,
        "jaxlib": _version("jaxlib"),
        "jax_backend": jax.default_backend(),
        "device": f"{dev.platform}: {getattr(dev, 'device_kind', str(dev))}",
        "optax": _version("optax"),
        "equinox": _version("equinox"),
        "torch": _version("torch"),
        "torch_device": settings.torch_device,
        "torch_threads": torch_threads,
        "torch_skipped": settings.torch_skip_reason or None,
        "functrain_commit": _git_commit(),
        "mode": settings.mode,
        "gpu_requested": settings.gpu,
        "repeats": settings.repeats,
        "repeats_long_workloads": settings.heavy_repeats,
    }


def block(tree: Any) -> None:
    """Wait until every array in ``tree`` is computed."""
    for leaf in jax.tree_util.tree_leaves(tree):
        if isinstance(leaf, jax.Array):
            leaf.block_until_ready()
