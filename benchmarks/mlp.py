"""Workload 1: MLP 64-512-512-10 on the digits, batch 64, Adam -- training steps per second.

Data: scikit-learn's embedded digits (pixels / 16), the first 1792 = 28 x 64 examples, so every
contender runs exactly 28 steps per epoch. Contenders: see :mod:`benchmarks._training`.
"""

from __future__ import annotations

from collections.abc import Callable

import jax

from benchmarks import _training
from benchmarks._common import JSON, Settings, add_ratios, interleaved, throughput_entry
from benchmarks._models import MLP, digits, init_leaves

TITLE = "MLP 64-512-512-10 on digits, batch 64, Adam"


def run(settings: Settings, log: Callable[[str], None] = print) -> JSON:
    """Measure training steps per second of every contender (median of ``settings.repeats``)."""
    x, y = digits(_training.BATCH)
    if settings.smoke:
        x, y = x[: 4 * _training.BATCH], y[: 4 * _training.BATCH]
    epochs = settings.units(full=8, quick=3, smoke=1)
    if settings.on_gpu and not settings.smoke:
        epochs *= 5  # a GPU step is ~50x faster: keep each timed unit well above timer noise
    steps = len(x) // _training.BATCH
    leaves = init_leaves(jax.random.key(0), MLP.leaf_shapes)
    cs = _training.contenders(MLP, settings, leaves, x, y, epochs, ablation=True)
    times = interleaved(cs, settings.repeats, log=log, gate=settings.gate)
    results = {c.name: throughput_entry(c, times.get(c.name), epochs * steps, "steps/s") for c in cs}
    add_ratios(results, higher_is_better=True)
    return {
        "title": TITLE,
        "unit": "steps/s",
        "config": {"examples": len(x), "batch_size": _training.BATCH, "steps_per_epoch": steps,
                   "epochs_per_measurement": epochs, "optimizer": "adam(1e-3)",
                   "init": "glorot_uniform kernels, zero biases (same values for every contender)"},
        "results": results,
    }
