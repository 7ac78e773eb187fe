"""Workload 2: the lesson's convnet at MNIST shape (28x28x1), batch 64, Adam -- steps per second.

Conv2D 32 3x3 + ReLU, MaxPool 2, Conv2D 64 3x3 + ReLU, MaxPool 2, Flatten, Dropout 0.5, Dense 10
(VALID convolutions, as in the lesson's Keras model), on synthetic uniform images with random
labels (throughput does not depend on the pixel values). Contenders: see
:mod:`benchmarks._training`.

One measured unit is one epoch of 16 steps on the CPU (1024 examples; 64 steps on a GPU). The
epoch is short because on XLA:CPU the stock gradients of a convolution (the kernel gradient
especially) inside a ``lax.scan``/while loop body run 5-100x slower than the forward convolution
(jax-ml/jax#12868), so the hand-written ``lax.scan`` contender takes a few hundred milliseconds
per step. It is not shorter because each unit starts after the CPUs went idle (the quiet gate),
and a jitted call then pays a few milliseconds to wake XLA's threads: with 4-step epochs that cost
read as ~20% of functrain's step time (66 against 86 steps/s back to back), which a training loop's
epochs (938 steps on MNIST) never see. functrain's convolutions and
pooling compute the same gradients in forms XLA:CPU runs fast inside loops (``functrain.layers``
``_conv_gemm`` and ``_tiled_pool``); :mod:`benchmarks.convnet_ops` times every op of the step.

PyTorch runs eager with as many threads as JAX has cores (``torch.set_num_threads``, recorded as
``torch_threads``).
"""

from __future__ import annotations

from collections.abc import Callable

import jax

from benchmarks import _training
from benchmarks._common import JSON, Settings, add_ratios, interleaved, throughput_entry
from benchmarks._models import CONVNET, init_leaves, synthetic_images

TITLE = "Convnet (lesson) at 28x28x1, batch 64, Adam"


def run(settings: Settings, log: Callable[[str], None] = print) -> JSON:
    """Measure training steps per second of every contender (median of ``settings.repeats``)."""
    steps = settings.units(full=16, quick=4, smoke=2)
    if settings.on_gpu and not settings.smoke:
        steps = 64
    epochs = settings.units(full=1, quick=1, smoke=1)
    x, y = synthetic_images(steps * _training.BATCH, CONVNET.example_shape)
    leaves = init_leaves(jax.random.key(0), CONVNET.leaf_shapes)
    cs = _training.contenders(CONVNET, settings, leaves, x, y, epochs)
    times = interleaved(cs, settings.heavy_repeats, log=log, gate=settings.gate)
    results = {c.name: throughput_entry(c, times.get(c.name), epochs * steps, "steps/s") for c in cs}
    add_ratios(results, higher_is_better=True)
    return {
        "title": TITLE,
        "unit": "steps/s",
        "config": {"examples": len(x), "batch_size": _training.BATCH, "steps_per_epoch": steps,
                   "epochs_per_measurement": epochs, "optimizer": "adam(1e-3)",
                   "data": "synthetic uniform [0, 1) images, random labels",
                   "init": "glorot_uniform kernels, zero biases (same values for every contender)"},
        "results": results,
    }
