"""Model averaging: exponential moving averages, stochastic weight averaging, ensembles.

* :func:`ema_update` -- Polyak-Ruppert / exponential moving average of the parameters
  (Polyak & Juditsky, "Acceleration of Stochastic Approximation by Averaging", 1992).
* :func:`swa_init` / :func:`swa_update` -- stochastic weight averaging: the uniform average of the
  parameters seen from a start epoch on (Izmailov et al., "Averaging Weights Leads to Wider Optima
  and Better Generalization", UAI 2018), with :func:`recompute_batch_norm_stats`, because the
  running batch-norm statistics of the individual models do not fit the averaged weights.
* :func:`ensemble_predict` -- average the predicted class probabilities of several models
  (Hansen & Salamon, "Neural Network Ensembles", 1990; Lakshminarayanan et al., "Simple and
  Scalable Predictive Uncertainty Estimation using Deep Ensembles", NeurIPS 2017).

All are pure functions over pytrees (any model: functrain params, an equinox module's arrays),
usable under ``jax.jit`` and ``jax.vmap``.
"""

from __future__ import annotations

from typing import Any, NamedTuple, TypeVar, cast

import jax
import jax.numpy as jnp
from jax import lax
from jaxtyping import Float

from functrain import _tree, _validate
from functrain.layers.base import ApplyFn
from functrain.layers.normalization import BatchNormState
from functrain.typing import Array, ArrayLike, PRNGKey, PyTree

__all__ = [
    "SWAState",
    "ema_update",
    "ensemble_predict",
    "recompute_batch_norm_stats",
    "swa_init",
    "swa_update",
]

T = TypeVar("T")


def ema_update(average: T, params: T, decay: ArrayLike) -> T:
    """One step of the exponential moving average, ``avg' = decay * avg + (1 - decay) * params``.

    After ``t`` updates with parameters ``p_1..p_t`` starting from ``avg_0``,
    ``avg_t = decay^t avg_0 + (1 - decay) sum_{i=1..t} decay^(t-i) p_i``
    (so for constant ``p``: ``avg_t = decay^t avg_0 + (1 - decay^t) p``). The average keeps each
    leaf's dtype; the arithmetic runs in at least float32.

    Args:
        average: the current average (any pytree of floating arrays).
        params: the new parameters, same structure.
        decay: in ``[0, 1]`` (e.g. 0.999); may be traced.

    Returns:
        The new average.

    Raises:
        TypeError: if ``params`` does not have the tree structure of ``average``.
        ValueError: if a concrete ``decay`` is outside ``[0, 1]``.

    Example:
        >>> average = {"w": jnp.zeros(2)}
        >>> for _ in range(2):
        ...     average = ft.train.ema_update(average, {"w": jnp.ones(2)}, 0.5)
        >>> average["w"].tolist()  # (1 - 0.5^2) * 1
        [0.75, 0.75]
    """
    who = "ema_update"
    _validate.check_number(decay, who, "decay", low=0.0, high=1.0)
    _validate.check_same_structure(average, params, who, "params", "the average")
    d = jnp.asarray(decay)

    def one(a: Array, p: Array) -> Array:
        dt = jnp.promote_types(a.dtype, jnp.float32)
        dd = d.astype(dt)
        return (dd * a.astype(dt) + (1 - dd) * p.astype(dt)).astype(a.dtype)

    out: T = _tree.tree_map(one, average, params)
    return out


class SWAState(NamedTuple):
    """State of stochastic weight averaging.

    Attributes:
        average: the running uniform average of the parameters averaged so far.
        n: int32, how many parameter sets have been averaged.

    Example:
        >>> state = ft.train.swa_init({"w": jnp.zeros(2)})
        >>> state = ft.train.swa_update(state, {"w": jnp.ones(2)}, epoch=0)
        >>> isinstance(state, ft.train.SWAState), int(state.n), state.average["w"].tolist()
        (True, 1, [1.0, 1.0])
    """

    average: PyTree
    n: Array


def swa_init(params: PyTree) -> SWAState:
    """Start SWA: ``n = 0`` (the average holds ``params`` until the first update replaces it).

    Args:
        params: the parameters (gives the structure, shapes and dtypes).

    Returns:
        ``SWAState(average=params, n=0)``.

    Example:
        >>> state = ft.train.swa_init({"w": jnp.ones(3)})
        >>> int(state.n), state.average["w"].shape
        (0, (3,))
    """
    return SWAState(average=params, n=jnp.zeros((), jnp.int32))


def swa_update(state: SWAState, params: PyTree, epoch: ArrayLike, *, start_epoch: int | Array = 0) -> SWAState:
    """Add ``params`` to the uniform average if ``epoch >= start_epoch`` (else leave it unchanged).

    ``avg_{n+1} = avg_n + (params - avg_n) / (n + 1)``, the running mean of the ``n + 1``
    parameter sets averaged so far; the first one is taken as is (so the average of identical
    parameters is exactly those parameters). Works under jit/vmap (``jnp.where``).

    Args:
        state: the SWA state.
        params: the parameters at the end of ``epoch``.
        epoch: the 0-based epoch index (may be traced).
        start_epoch: the first epoch that is averaged.

    Returns:
        The new state.

    Raises:
        TypeError: if ``state`` is not an ``SWAState`` or ``params`` does not have the tree
            structure of ``state.average``.

    Example:
        >>> state = ft.train.swa_init({"w": jnp.zeros(1)})
        >>> for epoch in range(4):  # parameters 0, 1, 2, 3; averaging starts at epoch 1
        ...     state = ft.train.swa_update(state, {"w": jnp.full(1, float(epoch))}, epoch, start_epoch=1)
        >>> int(state.n), state.average["w"].tolist()  # (1 + 2 + 3) / 3
        (3, [2.0])
    """
    who = "swa_update"
    if not isinstance(cast(object, state), SWAState):  # the static type is not enforced
        _validate.fail(who, "state", "an SWAState (see swa_init)", state, error=TypeError)
    _validate.check_same_structure(state.average, params, who, "params", "state.average")
    take = jnp.asarray(epoch) >= jnp.asarray(start_epoch)
    n_new = state.n + 1

    def one(a: Array, p: Array) -> Array:
        dt = jnp.promote_types(a.dtype, jnp.float32)
        af, pf = a.astype(dt), p.astype(dt)
        mean = jnp.where(state.n == 0, pf, af + (pf - af) / n_new.astype(dt))
        return jnp.where(take, mean, af).astype(a.dtype)

    return SWAState(average=_tree.tree_map(one, state.average, params),
                    n=jnp.where(take, n_new, state.n).astype(jnp.int32))


def _is_bn(x: Any) -> bool:
    return isinstance(x, BatchNormState)


def recompute_batch_norm_stats(
    apply: ApplyFn,
    params: PyTree,
    state: PyTree,
    data: Float[Array, "n *features"],
    *,
    batch_size: int,
    key: PRNGKey | None = None,
) -> PyTree:
    """Batch-norm running statistics recomputed for ``params`` (e.g. SWA-averaged weights).

    Averaged weights need their own normalization statistics (Izmailov et al. 2018, section 3.2;
    PyTorch's ``torch.optim.swa_utils.update_bn``). This runs the model in training mode over the
    ``n // batch_size`` full batches of ``data`` (the last partial batch is dropped) and replaces
    every :class:`~functrain.layers.BatchNormState` in ``state`` by the *cumulative* (equal-weight)
    average over the batches of the batch statistics (mean and unbiased variance), instead of the
    momentum-weighted running average of training. Other state leaves are kept.

    How: batch-norm updates ``s' = m * s + (1 - m) * b`` with the batch statistic ``b``. A forward
    pass from ``s = 0`` gives ``(1 - m) b``, and one from ``s = 1`` gives ``m + (1 - m) b``, so the
    momentum ``m`` is measured once (on the first batch) and each batch's ``b`` recovered exactly
    up to rounding, whatever momentum the layers were built with. Layers with momentum 1 (frozen
    statistics) are left unchanged.

    Args:
        apply: the model's ``apply(params, state, x, *, key, train)``.
        params: the parameters to compute statistics for.
        state: the model state holding the old statistics (gives the structure).
        data: ``(n, ...)`` inputs (a batch axis first).
        batch_size: examples per forward pass, ``1 <= batch_size <= n`` (at least 2 for batch norm).
        key: PRNG key for stochastic layers in training mode (e.g. dropout), split per batch;
            ``None`` if the model needs none.

    Returns:
        The model state with recomputed batch-norm statistics.

    Raises:
        ValueError: if ``state`` holds no ``BatchNormState``, or for bad data or batch size.

    Example:
        >>> model = ft.serial(ft.layers.Dense(2), ft.layers.BatchNorm())
        >>> params, model_state, _ = model.init(jax.random.key(0), (-1, 3))
        >>> x = jax.random.normal(jax.random.key(1), (8, 3))
        >>> new_state = ft.train.recompute_batch_norm_stats(model.apply, params, model_state, x,
        ...                                                 batch_size=8)
        >>> h = x @ params[0].w + params[0].b  # the batch norm's input: one batch of 8
        >>> bool(jnp.allclose(new_state[1].mean, h.mean(0), atol=1e-5))
        True
    """
    who = "recompute_batch_norm_stats"
    _validate.check_callable(apply, who, "apply", "a model's apply function")
    n = _validate.check_leading_length(data, who)
    bs = _validate.check_batch_size(batch_size, n, who)
    if not [x for x in _tree.tree_leaves(state, is_leaf=_is_bn) if _is_bn(x)]:
        _validate.fail(who, "state", "a model state holding a BatchNormState (the model has no "
                       "batch norm)", state)
    n_batches = n // bs
    x = jnp.asarray(data)
    batches = x[: n_batches * bs].reshape((n_batches, bs) + x.shape[1:])
    keys = None if key is None else jax.random.split(key, n_batches)

    def with_bn(fill: float) -> PyTree:
        def filled(s: Any) -> Any:  # a BatchNormState (a leaf here) or another leaf
            return BatchNormState(jnp.full_like(s.mean, fill), jnp.full_like(s.var, fill)) if _is_bn(s) else s

        return _tree.tree_map(filled, state, is_leaf=_is_bn)

    def bn_parts(tree: PyTree) -> list[BatchNormState]:
        return [s for s in _tree.tree_leaves(tree, is_leaf=_is_bn) if _is_bn(s)]

    zeros, ones = with_bn(0.0), with_bn(1.0)

    def forward(start: PyTree, xb: Array, k: PRNGKey | None) -> list[BatchNormState]:
        _, new_state = apply(params, start, xb, key=k, train=True)
        return bn_parts(new_state)

    k0 = None if keys is None else keys[0]
    from_zero, from_one = forward(zeros, batches[0], k0), forward(ones, batches[0], k0)
    # 1 - m per statistic, from the two probes.
    keep = [BatchNormState(1 - (o.mean - z.mean), 1 - (o.var - z.var)) for z, o in zip(from_zero, from_one, strict=True)]

    def body(total: list[BatchNormState], xs: tuple[Array, PRNGKey | None]) -> tuple[list[BatchNormState], None]:
        xb, k = xs
        out = forward(zeros, xb, k)
        return [BatchNormState(t.mean + o.mean, t.var + o.var) for t, o in zip(total, out, strict=True)], None

    init = [BatchNormState(jnp.zeros_like(s.mean), jnp.zeros_like(s.var)) for s in bn_parts(state)]
    total, _ = lax.scan(body, init, (batches, keys))

    def solve(sum_b: Array, one_minus_m: Array, old: Array) -> Array:
        ok = one_minus_m > 1e-6
        return jnp.where(ok, sum_b / (n_batches * jnp.where(ok, one_minus_m, 1.0)), old).astype(old.dtype)

    new_bn = iter([BatchNormState(solve(t.mean, c.mean, s.mean), solve(t.var, c.var, s.var))
                   for t, c, s in zip(total, keep, bn_parts(state), strict=True)])
    return _tree.tree_map(lambda s: next(new_bn) if _is_bn(s) else s, state, is_leaf=_is_bn)


def ensemble_predict(
    apply: ApplyFn,
    stacked_params: PyTree,
    stacked_state: PyTree,
    x: Float[Array, "batch *features"],
) -> Float[Array, "batch classes"]:
    """Average the class probabilities of an ensemble, ``p(y|x) = (1/K) sum_k softmax(f_k(x))``.

    The ``K`` members share one architecture; their parameters and states are stacked along a
    leading axis (e.g. by ``jax.vmap`` of an init over ``K`` keys) and evaluated with
    ``jax.vmap`` in inference mode (``train=False``). Averaging probabilities (not logits) gives
    the mixture's predictive distribution, whose negative log-likelihood is never worse than the
    members' average (Jensen's inequality, ``-log`` being convex).

    Args:
        apply: the model's ``apply(params, state, x, *, key, train)`` returning logits.
        stacked_params: the members' parameters, each leaf with a leading ``(K,)`` axis.
        stacked_state: the members' model states, stacked the same way (``()`` if stateless).
        x: ``(batch, ...)`` inputs, shared by all members.

    Returns:
        ``(batch, classes)`` averaged probabilities (rows sum to 1).

    Raises:
        ValueError: if the stacked leaves do not share one leading size ``K >= 1``.

    Example:
        >>> model = ft.serial(ft.layers.Dense(3))
        >>> keys = jax.random.split(jax.random.key(0), 4)  # an ensemble of 4 members
        >>> stacked_params, stacked_state = jax.vmap(lambda k: model.init(k, (-1, 2))[:2])(keys)
        >>> probs = ft.train.ensemble_predict(model.apply, stacked_params, stacked_state, jnp.ones((5, 2)))
        >>> probs.shape, bool(jnp.allclose(probs.sum(-1), 1.0))
        ((5, 3), True)
    """
    who = "ensemble_predict"
    _validate.check_callable(apply, who, "apply", "a model's apply function")
    k = _validate.check_leading_length(stacked_params, who, "stacked_params")
    if _tree.tree_leaves(stacked_state):
        k_state = _validate.check_leading_length(stacked_state, who, "stacked_state")
        if k_state != k:
            raise ValueError(f"{who}: argument 'stacked_state' must be stacked like 'stacked_params' "
                             f"(the same leading length {k}), got leading length {k_state}")

    def member(p: PyTree, s: PyTree) -> Array:
        logits, _ = apply(p, s, x, key=None, train=False)
        return jax.nn.softmax(logits.astype(jnp.promote_types(logits.dtype, jnp.float32)), axis=-1)

    probs: Array = jax.vmap(member)(stacked_params, stacked_state)
    return jnp.mean(probs, axis=0)
