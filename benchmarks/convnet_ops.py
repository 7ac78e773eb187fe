"""Workload 2b: the lesson convnet's training step op by op, functrain against stock ``lax``.

Where does a training step of :mod:`benchmarks.convnet` (Conv2D 32 3x3 + ReLU, MaxPool 2, Conv2D
64 3x3 + ReLU, MaxPool 2, Flatten, Dropout 0.5, Dense 10; 28x28x1, batch 64, Adam) spend its
time? Each op below is timed alone, as a jitted ``lax.scan`` over ``k`` calls on different inputs,
because a training epoch runs inside a loop body and XLA:CPU compiles some convolutions much
worse there (jax-ml/jax#12868). Every call's outputs are summed into the scan carry (so nothing is
dead code; both contenders pay that sum).

Ops (shapes at batch 64):

* ``forward``: the whole model in training mode (dropout on) and the cross-entropy loss;
* ``conv1_kernel_grad``: kernel gradient of Conv2D 1->32 on 28x28 (the first layer needs no input
  gradient);
* ``conv2_forward``, ``conv2_input_grad``, ``conv2_kernel_grad``: Conv2D 32->64 on 13x13;
* ``pool1_relu_fb``, ``pool2_relu_fb``: ReLU + 2x2 max pooling, forward and backward, on 26x26x32
  and 11x11x64 (the second drops the last row and column);
* ``dense_fb``: dropout, Dense 1600->10 and the loss, forward and backward;
* ``dense_kernel_grad``: the kernel gradient of Dense 1600->10 alone (on the CPU functrain computes
  a narrow layer's kernel gradient as ``(g^T x)^T``, ``functrain.layers._dense_gemm``);
* ``adam``: the Adam update of the model's parameters;
* ``step_fb``: the whole forward and backward pass (no optimizer).

Contenders: ``functrain`` (``functrain.layers`` ops and ``functrain.optim.adam``: on the CPU the
gradient rules of ``functrain.layers._conv_gemm``, ``functrain.layers._tiled_pool`` and
``functrain.layers._dense_gemm``) and ``lax``
(plain ``lax.conv_general_dilated`` and ``lax.reduce_window`` with JAX's default gradients,
``optax.adam``). Value: milliseconds per call (median; lower is better); the ratio is
functrain ÷ lax (below 1: functrain is faster). ``xla_flops`` is XLA's count for one call.

For orientation, ``torch_profile`` lists the self CPU time per step of PyTorch eager's busiest aten
ops in the same training step (``torch.profiler``, same threads; profiling adds overhead).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import lax

from benchmarks._common import JSON, Contender, Settings, add_ratios, block, interleaved, stats
from benchmarks._models import CONVNET, DROPOUT_RATE, Leaves, init_leaves, pairs, synthetic_images
from benchmarks._training import functrain_params

Array = jax.Array
Fn = Callable[..., Any]
TITLE = "Convnet training step per op (28x28x1, batch 64): functrain against stock lax"
LABELS = {
    "forward": "forward pass + loss (training mode)",
    "conv1_kernel_grad": "Conv2D 1->32 on 28x28: kernel gradient",
    "conv2_forward": "Conv2D 32->64 on 13x13: forward",
    "conv2_input_grad": "Conv2D 32->64 on 13x13: input gradient",
    "conv2_kernel_grad": "Conv2D 32->64 on 13x13: kernel gradient",
    "pool1_relu_fb": "ReLU + MaxPool 2 on 26x26x32: forward + backward",
    "pool2_relu_fb": "ReLU + MaxPool 2 on 11x11x64: forward + backward",
    "dense_fb": "Dropout + Dense 1600->10 + loss: forward + backward",
    "dense_kernel_grad": "Dense 1600->10: kernel gradient",
    "adam": "Adam update of the parameters",
    "step_fb": "whole step, forward + backward (no optimizer)",
}
_DN = ("NHWC", "HWIO", "NHWC")


def _xent(logits: Array, y: Array) -> Array:
    return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), y[:, None], axis=-1))


def _impl(name: str, leaves: Leaves) -> tuple[Fn, Fn, Fn, Fn, Any]:
    """``conv(x, w, b)``, ``pool(x)``, ``dense(x, w, b)``, the model's ``apply(params, x, key)``, params."""
    if name == "lax":
        def conv(x: Array, w: Array, b: Array) -> Array:
            return lax.conv_general_dilated(x, w, (1, 1), "VALID", dimension_numbers=_DN) + b

        def pool(x: Array) -> Array:
            y: Array = lax.reduce_window(x, -jnp.inf, lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "VALID")
            return y

        def dense(x: Array, w: Array, b: Array) -> Array:
            return x @ w + b

        def apply(params: Any, x: Array, key: Array) -> Array:
            return CONVNET.jax_apply(params, x, key, True)

        return conv, pool, dense, apply, pairs(leaves)
    from functrain import layers as L

    model, params, state = functrain_params(CONVNET, leaves)

    def ft_apply(p: Any, x: Array, key: Array) -> Array:
        logits: Array = model.apply(p, state, x, key=key, train=True)[0]
        return logits

    return (lambda x, w, b: L.conv2d(L.ConvParams(w, b), x, padding="VALID"), lambda x: L.max_pool(x, 2),
            lambda x, w, b: L.dense(L.DenseParams(w, b), x), ft_apply, params)


def _dropout(x: Array, key: Array) -> Array:
    keep = jax.random.bernoulli(key, 1.0 - DROPOUT_RATE, x.shape)
    return jnp.where(keep, x / (1.0 - DROPOUT_RATE), 0.0)


def make_ops(impl: str, batch: int) -> dict[str, tuple[Fn, tuple[Any, ...]]]:
    """Every op of :data:`LABELS` as ``(fn, args)`` for ``impl`` (``"functrain"`` or ``"lax"``)."""
    leaves = init_leaves(jax.random.key(0), CONVNET.leaf_shapes)
    conv, pool, dense, apply, params = _impl(impl, leaves)
    rng = np.random.default_rng(0)

    def arr(*shape: int, scale: float = 1.0) -> Array:
        return jnp.asarray(rng.standard_normal(shape, dtype=np.float32) * scale)

    w1, b1, w2, b2, w3, b3 = (jnp.asarray(a) for a in leaves)
    x, y = (jnp.asarray(a) for a in synthetic_images(batch, CONVNET.example_shape))
    key = jax.random.key(1)
    tx: Any = optax.adam(1e-3)
    if impl == "functrain":
        import functrain.optim as fo

        tx = fo.adam(1e-3)

    def loss(p: Any, xx: Array, yy: Array, k: Array) -> Array:
        return _xent(apply(p, xx, k), yy)

    def relu_pool_fb(a: Array, g: Array) -> Any:
        out, vjp = jax.vjp(lambda z: pool(jax.nn.relu(z)), a)
        return out, vjp(g)

    def dense_fb(h: Array, w: Array, b: Array, yy: Array, k: Array) -> Any:
        return jax.value_and_grad(lambda hh, ww, bb: _xent(dense(_dropout(hh, k), ww, bb), yy),
                                  argnums=(0, 1, 2))(h, w, b)

    def adam(p: Any, g: Any) -> Any:
        updates, _ = tx.update(g, tx.init(p), p)
        return optax.apply_updates(p, updates)

    h1, y2 = arr(batch, 13, 13, 32), arr(batch, 11, 11, 64)
    return {
        "forward": (loss, (params, x, y, key)),
        "conv1_kernel_grad": (lambda xx, w, g: jax.vjp(lambda ww: conv(xx, ww, b1), w)[1](g), (x, w1, arr(batch, 26, 26, 32))),
        "conv2_forward": (lambda h, w: conv(h, w, b2), (h1, w2)),
        "conv2_input_grad": (lambda h, w, g: jax.vjp(lambda hh: conv(hh, w, b2), h)[1](g), (h1, w2, y2)),
        "conv2_kernel_grad": (lambda h, w, g: jax.vjp(lambda ww: conv(h, ww, b2), w)[1](g), (h1, w2, y2)),
        "pool1_relu_fb": (relu_pool_fb, (arr(batch, 26, 26, 32), arr(batch, 13, 13, 32))),
        "pool2_relu_fb": (relu_pool_fb, (arr(batch, 11, 11, 64), arr(batch, 5, 5, 64))),
        "dense_fb": (dense_fb, (arr(batch, 1600), w3, b3, y, key)),
        "dense_kernel_grad": (lambda h, w, g: jax.vjp(lambda ww: dense(h, ww, b3), w)[1](g),
                              (arr(batch, 1600), w3, arr(batch, 10))),
        "adam": (adam, (params, jax.tree_util.tree_map(lambda a: 0.01 * jnp.ones_like(a), params))),
        "step_fb": (jax.value_and_grad(loss), (params, x, y, key)),
    }


def _stacked(args: tuple[Any, ...], k: int) -> tuple[Any, ...]:
    """``k`` different copies of every argument, stacked (float arrays scaled, keys folded)."""
    def one(a: Any) -> Any:
        if jnp.issubdtype(a.dtype, jax.dtypes.prng_key):
            def fold(i: Array) -> Array:
                flat = jax.vmap(lambda kk: jax.random.fold_in(kk, i))(a.reshape(-1))
                return flat.reshape(a.shape)

            return jax.vmap(fold)(jnp.arange(k))
        if jnp.issubdtype(a.dtype, jnp.floating):
            return jnp.stack([a * (1.0 + 0.01 * i) for i in range(k)])
        return jnp.stack([a] * k)

    stacked: tuple[Any, ...] = jax.tree_util.tree_map(one, args)
    return stacked


def _scanned(fn: Fn, args: tuple[Any, ...], k: int) -> Callable[[], None]:
    """One measurement unit: ``k`` calls of ``fn`` inside a jitted ``lax.scan``."""
    xs = _stacked(args, k)

    @jax.jit
    def run(xs: Any) -> Array:
        def body(c: Array, a: Any) -> tuple[Array, None]:
            leaves = jax.tree_util.tree_leaves(fn(*a))
            return c + sum(jnp.sum(leaf.astype(jnp.float32)) for leaf in leaves), None

        return lax.scan(body, jnp.zeros((), jnp.float32), xs)[0]

    return lambda: block(run(xs))


def _flops(fn: Fn, args: tuple[Any, ...]) -> float | None:
    cost = jax.jit(fn).lower(*args).compile().cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    return float(cost["flops"]) if cost and "flops" in cost else None


def _entry(c: Contender, samples: list[float] | None, k: int) -> JSON:
    entry: JSON = {"label": c.label, "unit": "ms", **c.info}
    if samples is None:
        entry["skipped"] = c.skip_reason
        return entry
    s = stats([t / k * 1e3 for t in samples])
    entry.update(time_ms=s, value=s["median"])
    if entry.get("xla_flops"):
        entry["gflop_per_s"] = entry["xla_flops"] / (s["median"] * 1e6)
    return entry


def torch_profile(settings: Settings, batch: int, steps: int, top: int = 12) -> JSON:
    """Self CPU time per training step (ms) of PyTorch eager's busiest aten ops, or why it was skipped."""
    if settings.torch_device != "cpu":
        return {"skipped": settings.torch_skip_reason or "CPU profile only"}
    import torch
    import torch.nn.functional as F
    from torch.profiler import ProfilerActivity, profile

    from benchmarks._models import channels_first

    model = CONVNET.torch_model(init_leaves(jax.random.key(0), CONVNET.leaf_shapes))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x, y = synthetic_images(batch, CONVNET.example_shape)
    xt, yt = torch.from_numpy(channels_first(x)), torch.from_numpy(y.astype(np.int64))

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(xt), yt).backward()  # type: ignore[no-untyped-call]  # torch's backward is untyped
        opt.step()

    for _ in range(2):
        step()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            step()
    rows = sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)[:top]
    return {"threads": torch.get_num_threads(), "steps": steps,
            "self_cpu_ms_per_step": {e.key: e.self_cpu_time_total / 1e3 / steps for e in rows}}


def run(settings: Settings, log: Callable[[str], None] = print) -> JSON:
    """Milliseconds per call of every op, functrain against stock lax, and PyTorch's profile."""
    batch = 4 if settings.smoke else 64
    k = settings.units(full=4, quick=2, smoke=1)
    ops = {impl: make_ops(impl, batch) for impl in ("functrain", "lax")}
    out: JSON = {}
    for name, label in LABELS.items():
        log(f"  {name}")
        cs = []
        for impl in ("functrain", "lax"):
            fn, args = ops[impl][name]
            c = Contender(impl, f"{impl} ({'CPU rules' if impl == 'functrain' else 'default gradients'})",
                          run=_scanned(fn, args, k))
            if not settings.smoke:  # compiling each op once more: skipped in the plumbing check
                c.info["xla_flops"] = _flops(fn, args)
            cs.append(c)
        times = interleaved(cs, settings.repeats, log=log, gate=settings.gate)
        results = {c.name: _entry(c, times.get(c.name), k) for c in cs}
        add_ratios(results, higher_is_better=False)
        out[name] = {"label": label, "results": results}
    return {
        "title": TITLE,
        "unit": "ms",
        "config": {"batch_size": batch, "calls_per_measurement": k, "timed_inside": "jit(lax.scan)",
                   "ratio": "functrain ms / lax ms (below 1: functrain faster)"},
        "ops": out,
        "torch_profile": torch_profile(settings, batch, settings.units(full=20, quick=10, smoke=1)),
    }
