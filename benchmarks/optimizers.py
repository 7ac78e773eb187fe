"""Workload 3: the optimizer update alone on a 16M-parameter pytree, functrain against optax.

The parameters are dense-shaped float32 leaves, kernels ``(4096, 2048)``, ``(2048, 2048)``,
``(2048, 1024)``, ``(1024, 2048)`` and their biases: ``P = 16,784,384`` parameters (64 MiB).
One update is a jitted ``update + apply_updates`` with the parameters and optimizer state donated::

    updates, opt_state = tx.update(grads, opt_state, params)
    params = apply_updates(params, updates)

(``functrain.optim.apply_updates`` for functrain, ``optax.apply_updates`` for optax), called
repeatedly on a fixed gradient pytree (gradients ~ N(0, 1), so clipping is active).

Optimizers (same hyperparameters on both sides): ``sgd(0.01)``; ``momentum(0.01, 0.9)``
(optax: ``sgd(0.01, momentum=0.9)``); ``adam(1e-3)``;
``chain(clip_by_global_norm(1.0), adamw(1e-3, weight_decay=1e-4))`` with decay on ``ndim >= 2``
leaves only (functrain's default mask; optax gets the same mask).

Bytes moved per update (the compulsory memory traffic of an ideal fused implementation, float32,
4 bytes per number)::

    bytes = 4 * P * (3 + 2 * S + C)

3 = read the gradient, read the parameter, write the parameter; ``S`` = number of parameter-sized
optimizer-state buffers, each read and written once (sgd 0, momentum 1, adam 2, adamw 2); ``C`` =
extra full passes over the gradient (1 for clip_by_global_norm: the norm must be known before the
gradient can be scaled, so the gradient is read twice). Per parameter: sgd 12 B, momentum 20 B,
adam 28 B, adamw + clip 32 B. Bytes per second = bytes per update x updates per second.

For a machine-independent check, each contender also records XLA's own estimate of the compiled
update's memory traffic and flops (``compiled.cost_analysis()``: ``xla_bytes_accessed``,
``xla_flops``); equal numbers mean functrain and optax compile to the same work.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax

from benchmarks._common import JSON, Contender, Settings, add_ratios, block, interleaved, throughput_entry

KERNELS: tuple[tuple[int, int], ...] = ((4096, 2048), (2048, 2048), (2048, 1024), (1024, 2048))
SMOKE_KERNELS: tuple[tuple[int, int], ...] = ((64, 32), (32, 16))

# name -> (S, C): param-sized state buffers, extra gradient passes
TRAFFIC: dict[str, tuple[int, int]] = {"sgd": (0, 0), "momentum": (1, 0), "adam": (2, 0), "adamw_clip": (2, 1)}
LABELS = {"sgd": "sgd(0.01)", "momentum": "momentum(0.01, 0.9)", "adam": "adam(1e-3)",
          "adamw_clip": "clip_by_global_norm(1.0) + adamw(1e-3, wd 1e-4)"}


def tree(kernels: tuple[tuple[int, int], ...], key: jax.Array) -> dict[str, jax.Array]:
    """A dense-network-shaped pytree of N(0, 1) float32 leaves: ``w{i}`` kernels and ``b{i}`` biases."""
    out: dict[str, jax.Array] = {}
    for i, shape in enumerate(kernels):
        out[f"w{i}"] = jax.random.normal(jax.random.fold_in(key, 2 * i), shape, jnp.float32)
        out[f"b{i}"] = jax.random.normal(jax.random.fold_in(key, 2 * i + 1), (shape[1],), jnp.float32)
    return out


def bytes_per_update(name: str, n_params: int) -> int:
    """``4 * P * (3 + 2 S + C)`` -- see the module docstring."""
    s, c = TRAFFIC[name]
    return 4 * n_params * (3 + 2 * s + c)


def _decay_mask(params: Any) -> Any:
    return jax.tree_util.tree_map(lambda p: p.ndim >= 2, params)


def optax_tx(name: str) -> optax.GradientTransformation:
    """The optax optimizer ``name``."""
    if name == "sgd":
        return optax.sgd(0.01)
    if name == "momentum":
        return optax.sgd(0.01, momentum=0.9)
    if name == "adam":
        return optax.adam(1e-3)
    return optax.chain(optax.clip_by_global_norm(1.0), optax.adamw(1e-3, weight_decay=1e-4, mask=_decay_mask))


def functrain_tx(name: str) -> Any:
    """The functrain optimizer ``name``."""
    import functrain.optim as fo

    if name == "sgd":
        return fo.sgd(0.01)
    if name == "momentum":
        return fo.momentum(0.01, 0.9)
    if name == "adam":
        return fo.adam(1e-3)
    return fo.chain(fo.clip_by_global_norm(1.0), fo.adamw(1e-3, weight_decay=1e-4))


def _contender(name: str, label: str, make_tx: Callable[[], Any], apply_updates: Callable[[Any, Any], Any],
               params0: Any, grads: Any, k: int) -> Contender:
    c = Contender(name, label)
    try:
        tx = make_tx()
    except (ImportError, AttributeError) as e:
        c.skip_reason = f"not available: {e}"
        return c

    def update(params: Any, opt_state: Any, g: Any) -> tuple[Any, Any]:
        updates, opt_state = tx.update(g, opt_state, params)
        return apply_updates(params, updates), opt_state

    fn = jax.jit(update, donate_argnums=(0, 1))
    params = jax.tree_util.tree_map(jnp.copy, params0)
    cost = fn.lower(params, tx.init(params), grads).compile().cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    if cost:
        c.info["xla_bytes_accessed"] = float(cost.get("bytes accessed", 0.0))
        c.info["xla_flops"] = float(cost.get("flops", 0.0))
    # Fresh buffers for every state leaf (donated below): functrain's scale_by_adam.init puts one
    # zeros tree in both mu and nu, and XLA refuses to donate a buffer twice. Done for both sides.
    box: dict[str, Any] = {"params": params, "opt": jax.tree_util.tree_map(jnp.copy, tx.init(params))}

    def run() -> None:
        p, s = box["params"], box["opt"]
        for _ in range(k):
            p, s = fn(p, s, grads)
        block((p, s))
        box.update(params=p, opt=s)

    c.run = run
    return c


def run(settings: Settings, log: Callable[[str], None] = print) -> JSON:
    """Updates per second and bytes per second for each optimizer, functrain vs optax."""
    kernels = SMOKE_KERNELS if settings.smoke else KERNELS
    params0 = tree(kernels, jax.random.key(0))
    grads = tree(kernels, jax.random.key(1))
    n_params = sum(int(a.size) for a in jax.tree_util.tree_leaves(params0))
    # Updates per timed unit: about the same memory traffic in every unit (k x bytes per param
    # roughly constant), so the cheap optimizers' units are not too short to time reliably.
    base = settings.units(full=10, quick=4, smoke=2)
    if settings.on_gpu and not settings.smoke:
        base = 100
    try:
        import functrain.optim as fo

        ft_apply: Callable[[Any, Any], Any] = fo.apply_updates
    except (ImportError, AttributeError):
        ft_apply = optax.apply_updates
    out: JSON = {}
    for name in TRAFFIC:
        k = max(1, round(base * bytes_per_update("adamw_clip", 1) / bytes_per_update(name, 1)))
        log(f"  optimizer {name} ({k} updates per unit)")
        cs = [
            _contender("functrain", f"functrain {LABELS[name]}", functools.partial(functrain_tx, name), ft_apply,
                       params0, grads, k),
            _contender("optax", f"optax {LABELS[name]}", functools.partial(optax_tx, name), optax.apply_updates,
                       params0, grads, k),
        ]
        times = interleaved(cs, settings.repeats, log=log, gate=settings.gate)
        bpu = bytes_per_update(name, n_params)
        results = {c.name: throughput_entry(c, times.get(c.name), k, "updates/s") for c in cs}
        for e in results.values():
            if "value" in e:
                e["bytes_per_update"] = bpu
                e["bytes_per_s"] = bpu * e["value"]
        add_ratios(results, higher_is_better=True)
        out[name] = {"label": LABELS[name], "bytes_per_update": bpu, "updates_per_measurement": k,
                     "results": results}
        del cs
    return {
        "title": "Optimizer update alone, 16M-parameter pytree",
        "unit": "updates/s",
        "config": {"n_params": n_params, "leaf_shapes": [list(s) for s in kernels] + [[s[1]] for s in kernels],
                   "updates_per_measurement": {n: d["updates_per_measurement"] for n, d in out.items()},
                   "donated": True,
                   "bytes_formula": "4 * P * (3 + 2*S + C); S = param-sized state buffers "
                                    "(sgd 0, momentum 1, adam 2, adamw 2), C = extra gradient passes "
                                    "(clip_by_global_norm 1)"},
        "optimizers": out,
    }
