"""Training-throughput contenders shared by the MLP and convnet workloads.

Every contender trains the same model (same initial values, see :mod:`benchmarks._models`) with
Adam (lr 1e-3, b1 0.9, b2 0.999, eps 1e-8), batch 64, on the same data, shuffled every epoch,
exactly ``n // 64`` steps per epoch, computing the loss and the accuracy of every batch:

* ``functrain``: ``functrain.train.train_epoch`` (the epoch in ``lax.scan``) over the default
  ``make_train_step(classifier_loss(model.apply, train=True), functrain.optim.adam(1e-3))``,
  jitted with the state donated as the hand-written scan is.
* ``jax_scan``: hand-written JAX + optax, the shuffled epoch in ``lax.scan``, jitted with the
  state donated.
* ``jax_loop``: hand-written JAX + optax, a jitted (donating) step called from a Python loop on
  host-shuffled NumPy batches.
* ``equinox``: equinox + optax, an ``eqx.filter_jit`` step called from a Python loop (the equinox
  tutorial's pattern).
* ``torch``: PyTorch eager, ``torch.optim.Adam`` with its defaults, ``torch.randperm`` shuffling.

One measurement unit is ``epochs`` epochs.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Generator
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

from benchmarks._common import Contender, Settings, block
from benchmarks._models import Leaves, ModelSpec, channels_first, pairs

Array = jax.Array
BATCH = 64
LR = 1e-3
PARITY_RTOL = 1e-3


def _xent_acc(logits: Array, y: Array) -> tuple[Array, Array]:
    loss = -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), y[:, None], axis=-1))
    acc = (jnp.argmax(logits, axis=-1) == y).mean()
    return loss, acc


def _check(name: str, logits: Any, ref: np.ndarray[Any, Any]) -> dict[str, float]:
    """Compare a contender's eval-mode logits with the hand-written reference."""
    got = np.asarray(logits, dtype=np.float64)
    diff = float(np.max(np.abs(got - ref)))
    scale = float(np.max(np.abs(ref))) or 1.0
    if not diff <= PARITY_RTOL * scale:
        raise RuntimeError(f"benchmark parity check failed: {name} computes different logits from the "
                           f"hand-written JAX model (max |diff| {diff:.3g}, logits scale {scale:.3g})")
    return {"parity_max_abs_diff": diff}


def functrain_params(spec: ModelSpec, leaves: Leaves) -> tuple[Any, Any, Any]:
    """The functrain model and its (params, state) holding exactly ``leaves``.

    Returns:
        ``(layer, params, model_state)``.
    """
    model = spec.functrain_model()
    params, state, _ = model.init(jax.random.key(0), (-1, *spec.example_shape))
    flat, treedef = jax.tree_util.tree_flatten(params)
    got = [tuple(a.shape) for a in flat]
    if got != list(spec.leaf_shapes):
        raise RuntimeError(f"functrain {spec.name} has parameter shapes {got}, expected {list(spec.leaf_shapes)}")
    return model, jax.tree_util.tree_unflatten(treedef, [jnp.asarray(a) for a in leaves]), state


@contextlib.contextmanager
def _stock_dense_gemms() -> Generator[None, None, None]:
    """Trace functrain's dense layers as the plain ``jnp.matmul`` (the CPU rules of
    ``functrain.layers._dense_gemm`` off) while inside."""
    from functrain.layers import _dense_gemm
    saved = _dense_gemm.NARROW_MAX, _dense_gemm.PANEL_MAX
    _dense_gemm.NARROW_MAX = _dense_gemm.PANEL_MAX = 0
    try:
        yield
    finally:
        _dense_gemm.NARROW_MAX, _dense_gemm.PANEL_MAX = saved


def _functrain(spec: ModelSpec, leaves: Leaves, x: np.ndarray[Any, Any], y: np.ndarray[Any, Any],
               epochs: int, ref: np.ndarray[Any, Any], *, grad_norm: bool = False,
               self_jit: bool = False, stock_dense: bool = False) -> Contender:
    if stock_dense:
        c = Contender("functrain_stock_dense", "functrain `train_epoch` as the `functrain` row, its dense "
                      "layers traced as the plain `jnp.matmul` (the CPU GEMM rules off)")
    elif grad_norm:
        c = Contender("functrain_grad_norm", "functrain `train_epoch`, `make_train_step(..., grad_norm=True)` "
                      "(the opt-in gradient norm)")
    elif self_jit:
        c = Contender("functrain_self_jit", "functrain `train_epoch` called without `jax.jit` (it compiles "
                      "itself; no donation)")
    else:
        c = Contender("functrain", "functrain `train_epoch` (lax.scan), `jax.jit` with donation and "
                      "`ft.train.compiler_options()`")
    try:
        import functrain.optim as fo
        from functrain.train import classifier_loss, init_train_state, make_train_step, train_epoch
    except ImportError as e:
        c.skip_reason = f"functrain API not available: {e}"
        return c
    model, params, mstate = functrain_params(spec, leaves)
    c.info.update(_check("functrain", model.apply(params, mstate, jnp.asarray(x[:BATCH]), train=False)[0], ref))
    opt = fo.adam(LR)
    loss_fn = classifier_loss(model.apply, train=True)
    step = make_train_step(loss_fn, opt, grad_norm=True) if grad_norm else make_train_step(loss_fn, opt)
    epoch: Callable[..., Any] = functools.partial(train_epoch, step, batch_size=BATCH)
    if not self_jit:  # jitted as the docs say: donated state, functrain's compiler options
        from functrain.train import compiler_options
        epoch = jax.jit(epoch, donate_argnums=0, compiler_options=compiler_options())
    data = (jnp.asarray(x), jnp.asarray(y))
    state0 = init_train_state(params, mstate, opt)
    box: dict[str, Any] = {"state": state0, "key": jax.random.key(1)}

    if stock_dense:  # compiled now, while the rules are off
        with _stock_dense_gemms():
            epoch = epoch.lower(state0, data, jax.random.key(1)).compile()  # type: ignore[attr-defined]

    def run() -> None:
        state, key = box["state"], box["key"]
        metrics: Any = None
        for _ in range(epochs):
            key, k = jax.random.split(key)
            state, metrics = epoch(state, data, k)
        block(state)
        box.update(state=state, key=key, metrics=metrics)

    c.run = run
    c.info["loss_fn"] = "functrain.train.classifier_loss (cross-entropy + accuracy)"
    c.report = lambda: {"final_loss": float(jnp.mean(box["metrics"]["loss"]))}
    return c


def _jax_scan(spec: ModelSpec, leaves: Leaves, x: np.ndarray[Any, Any], y: np.ndarray[Any, Any],
              epochs: int, *, grad_norm: bool = False, options: bool = False) -> Contender:
    if options:
        c = Contender("jax_scan_options", "hand-written JAX + optax, epoch in lax.scan, compiled with "
                      "`ft.train.compiler_options()` (the XLA options alone)")
    elif grad_norm:
        c = Contender("jax_scan_grad_norm", "hand-written JAX + optax, epoch in lax.scan, "
                      "also `optax.global_norm(grads)` per step (the metrics of `grad_norm=True`)")
    else:
        c = Contender("jax_scan", "hand-written JAX + optax, epoch in lax.scan")
    tx = optax.adam(LR)
    apply = spec.jax_apply
    n = len(x)
    steps = n // BATCH

    def loss_fn(params: Any, xb: Array, yb: Array, key: Array | None) -> tuple[Array, Array]:
        return _xent_acc(apply(params, xb, key, True), yb)

    def train_step(carry: Any, batch: Any) -> tuple[Any, tuple[Array, Array, Array]]:
        params, opt_state = carry
        xb, yb, key = batch
        (loss, acc), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, xb, yb, key)
        norm = optax.global_norm(grads) if grad_norm else jnp.zeros(())
        updates, opt_state = tx.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state), (loss, acc, norm)

    def epoch_fn(carry: Any, xs: Array, ys: Array, key: Array) -> tuple[Any, tuple[Array, Array, Array]]:
        k_perm, k_drop = jax.random.split(key)
        perm = jax.random.permutation(k_perm, n)[: steps * BATCH]
        xb = xs[perm].reshape(steps, BATCH, *xs.shape[1:])
        yb = ys[perm].reshape(steps, BATCH)
        keys = jax.random.split(k_drop, steps) if spec.dropout else None
        carry, per_step = jax.lax.scan(train_step, carry, (xb, yb, keys))
        # Every per-step metric is averaged and returned, as functrain's train_epoch does.
        losses, accs, norms = per_step
        return carry, (losses.mean(), accs.mean(), norms.mean())

    from functrain.train import compiler_options
    epoch = jax.jit(epoch_fn, donate_argnums=0, compiler_options=compiler_options() if options else None)
    params = pairs(leaves)
    data = (jnp.asarray(x), jnp.asarray(y))
    box: dict[str, Any] = {"carry": (params, tx.init(params)), "key": jax.random.key(2), "loss": None}

    def run() -> None:
        carry, key = box["carry"], box["key"]
        loss: Any = None
        for _ in range(epochs):
            key, k = jax.random.split(key)
            carry, loss = epoch(carry, *data, k)
        block(carry)
        box.update(carry=carry, key=key, loss=loss)

    c.run = run
    c.report = lambda: {"final_loss": float(box["loss"][0])}
    return c


def _host_batches(rng: np.random.Generator, x: np.ndarray[Any, Any], y: np.ndarray[Any, Any]
                  ) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    steps = len(x) // BATCH
    perm = rng.permutation(len(x))[: steps * BATCH]
    return x[perm].reshape(steps, BATCH, *x.shape[1:]), y[perm].reshape(steps, BATCH)


def _jax_loop(spec: ModelSpec, leaves: Leaves, x: np.ndarray[Any, Any], y: np.ndarray[Any, Any],
              epochs: int) -> Contender:
    c = Contender("jax_loop", "hand-written JAX + optax, jitted step in a Python loop")
    tx = optax.adam(LR)
    apply = spec.jax_apply

    def loss_fn(params: Any, xb: Array, yb: Array, key: Array | None) -> tuple[Array, Array]:
        return _xent_acc(apply(params, xb, key, True), yb)

    @functools.partial(jax.jit, donate_argnums=(0, 1))
    def step(params: Any, opt_state: Any, xb: Array, yb: Array, base_key: Array, i: Array
             ) -> tuple[Any, Any, Array, Array]:
        key = jax.random.fold_in(base_key, i) if spec.dropout else None
        (loss, acc), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, xb, yb, key)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss, acc

    params = pairs(leaves)
    rng = np.random.default_rng(3)
    box: dict[str, Any] = {"params": params, "opt": tx.init(params), "i": 0, "loss": None}
    base_key = jax.random.key(3)

    def run() -> None:
        params, opt_state, i = box["params"], box["opt"], box["i"]
        loss: Any = None
        for _ in range(epochs):
            xb, yb = _host_batches(rng, x, y)
            for j in range(len(xb)):
                params, opt_state, loss, _acc = step(params, opt_state, xb[j], yb[j], base_key,
                                                     np.int32(i))
                i += 1
        block(params)
        box.update(params=params, opt=opt_state, i=i, loss=loss)

    c.run = run
    c.report = lambda: {"final_loss": float(box["loss"])}
    return c


def _equinox(spec: ModelSpec, leaves: Leaves, x: np.ndarray[Any, Any], y: np.ndarray[Any, Any],
             epochs: int, ref: np.ndarray[Any, Any]) -> Contender:
    c = Contender("equinox", "equinox + optax, eqx.filter_jit step in a Python loop")
    model = spec.eqx_model(leaves)
    xe = channels_first(x) if spec.channels_first else x
    logits = jax.vmap(functools.partial(model, inference=True))(jnp.asarray(xe[:BATCH]))
    c.info.update(_check("equinox", logits, ref))
    tx = optax.adam(LR)

    def loss_fn(m: Any, xb: Array, yb: Array, key: Array | None) -> tuple[Array, Array]:
        if key is None:
            out = jax.vmap(m)(xb)
        else:
            keys = jax.random.split(key, xb.shape[0])
            out = jax.vmap(lambda e, k: m(e, key=k, inference=False))(xb, keys)
        return _xent_acc(out, yb)

    @eqx.filter_jit
    def make_step(m: Any, opt_state: Any, xb: Any, yb: Any, base_key: Array, i: Any
                  ) -> tuple[Any, Any, Array, Array]:
        key = jax.random.fold_in(base_key, i) if spec.dropout else None
        (loss, acc), grads = eqx.filter_value_and_grad(loss_fn, has_aux=True)(m, xb, yb, key)
        updates, opt_state = tx.update(grads, opt_state, eqx.filter(m, eqx.is_array))
        return eqx.apply_updates(m, updates), opt_state, loss, acc

    rng = np.random.default_rng(4)
    base_key = jax.random.key(4)
    box: dict[str, Any] = {"model": model, "opt": tx.init(eqx.filter(model, eqx.is_inexact_array)),
                           "i": 0, "loss": None}

    def run() -> None:
        m, opt_state, i = box["model"], box["opt"], box["i"]
        loss: Any = None
        for _ in range(epochs):
            xb, yb = _host_batches(rng, xe, y)
            for j in range(len(xb)):
                m, opt_state, loss, _acc = make_step(m, opt_state, xb[j], yb[j], base_key,
                                                     np.asarray(i, np.int32))
                i += 1
        block(eqx.filter(m, eqx.is_array))
        box.update(model=m, opt=opt_state, i=i, loss=loss)

    c.run = run
    c.report = lambda: {"final_loss": float(box["loss"])}
    return c


def _torch(spec: ModelSpec, settings: Settings, leaves: Leaves, x: np.ndarray[Any, Any],
           y: np.ndarray[Any, Any], epochs: int, ref: np.ndarray[Any, Any]) -> Contender:
    c = Contender("torch", "PyTorch eager (torch.optim.Adam)")
    if settings.torch_device is None:
        c.skip_reason = settings.torch_skip_reason
        return c
    import torch
    import torch.nn.functional as F

    dev = torch.device(settings.torch_device)
    torch.manual_seed(5)
    model = spec.torch_model(leaves).to(dev)
    xt_np = channels_first(x) if spec.channels_first else x
    xt = torch.from_numpy(xt_np).to(dev)
    yt = torch.from_numpy(y.astype(np.int64)).to(dev)
    model.eval()
    with torch.no_grad():
        c.info.update(_check("torch", model(xt[:BATCH]).cpu().numpy(), ref))
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    gen = torch.Generator(device="cpu").manual_seed(5)
    n = len(x)
    steps = n // BATCH
    sync: Callable[[], None] = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    box: dict[str, Any] = {"loss": None}

    def run() -> None:
        loss: Any = None
        for _ in range(epochs):
            perm = torch.randperm(n, generator=gen).to(dev)
            for j in range(steps):
                idx = perm[j * BATCH:(j + 1) * BATCH]
                xb, yb = xt[idx], yt[idx]
                opt.zero_grad(set_to_none=True)
                out = model(xb)
                loss = F.cross_entropy(out, yb)
                loss.backward()
                opt.step()
                _acc = (out.detach().argmax(dim=1) == yb).float().mean()
        sync()
        box["loss"] = loss

    c.run = run
    c.info["torch_device"] = settings.torch_device
    c.info["torch_threads"] = torch.get_num_threads()
    c.report = lambda: {"final_loss": float(box["loss"].item())}
    return c


def contenders(spec: ModelSpec, settings: Settings, leaves: Leaves, x: np.ndarray[Any, Any],
               y: np.ndarray[Any, Any], epochs: int, *, ablation: bool = False) -> list[Contender]:
    """All five training contenders for ``spec`` on data ``(x, y)``, ``epochs`` epochs per unit.

    With ``ablation``, also functrain with the opt-in ``make_train_step(..., grad_norm=True)`` next
    to the hand-written scan with the same metrics (one more pass over the gradients per step),
    functrain's ``train_epoch`` called without ``jax.jit`` (it compiles itself), and functrain with
    its dense layers' CPU GEMM rules off (``functrain_stock_dense``).
    """
    ref = np.asarray(spec.jax_apply(pairs(leaves), jnp.asarray(x[:BATCH]), None, False), np.float64)
    extra = ([_functrain(spec, leaves, x, y, epochs, ref, self_jit=True),
              _functrain(spec, leaves, x, y, epochs, ref, stock_dense=True),
              _functrain(spec, leaves, x, y, epochs, ref, grad_norm=True),
              _jax_scan(spec, leaves, x, y, epochs, grad_norm=True),
              _jax_scan(spec, leaves, x, y, epochs, options=True)] if ablation else [])
    return [
        _functrain(spec, leaves, x, y, epochs, ref),
        *extra,
        _jax_scan(spec, leaves, x, y, epochs),
        _jax_loop(spec, leaves, x, y, epochs),
        _equinox(spec, leaves, x, y, epochs, ref),
        _torch(spec, settings, leaves, x, y, epochs, ref),
    ]

