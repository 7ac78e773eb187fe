"""Training diagnostics: gradient and update norms, activation statistics, signal propagation.

Three ways to look inside a network while (or before) it trains:

* :func:`leaf_norms` and :func:`update_ratios` turn the gradients and updates of a train step into a
  pytree of scalars with the parameters' structure, which a jitted (and vmapped) step can return
  alongside its metrics; :func:`to_metrics` flattens any such tree into ``{"prefix/path": scalar}``.
  A healthy update-to-weight ratio ``||dw|| / ||w||`` is around ``1e-3`` per step (Karpathy's rule
  of thumb, CS231n "Babysitting the learning process"); far above means the learning rate is too
  large, far below too small.
* :func:`activation_stats` runs a list of :class:`~functrain.layers.Layer` s one after another and
  records the mean, standard deviation and fraction of exact zeros of every layer's output: dead
  ReLUs, saturating units and drifting scales show up here.
* :func:`signal_propagation` measures how the standard deviation of the signal changes through
  the depth of a plain MLP, forward (pre-activations) and backward (gradients): the exploding and
  vanishing picture that motivates careful initialization (Glorot & Bengio 2010, He et al. 2015).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jaxtyping import Float

from functrain import _tree
from functrain.layers.base import Branches, Join, Layer
from functrain.typing import Array, ArrayLike, Initializer, PRNGKey, PyTree

__all__ = [
    "ActivationStats",
    "SignalPropagation",
    "activation_stats",
    "leaf_norms",
    "signal_propagation",
    "to_metrics",
    "update_ratios",
]


# ------------------------------------------------------------------------ norms and ratios

def _norm(subtree: PyTree) -> Array:
    return _tree.tree_global_norm(subtree)


def leaf_norms(tree: PyTree, *, is_leaf: Callable[[Any], bool] | None = None) -> PyTree:
    """The L2 norm of every leaf: a tree of scalars with ``tree``'s structure.

    ``||x|| = sqrt(sum_i x_i^2)`` over all entries of the leaf. With ``is_leaf`` a whole subtree can
    count as one leaf, for example one norm per layer:
    ``leaf_norms(grads, is_leaf=lambda t: isinstance(t, DenseParams))`` gives the norm of each
    layer's ``(w, b)`` taken together.

    Works inside ``jax.jit`` and ``jax.vmap`` (a vmapped tree gives one norm per seed).

    Args:
        tree: a pytree of arrays (gradients, parameters, updates ...).
        is_leaf: optional predicate marking subtrees to be normed as a whole.

    Returns:
        A pytree of 0-d arrays.
    """
    return _tree.tree_map(_norm, tree, is_leaf=is_leaf)


def update_ratios(updates: PyTree, params: PyTree, *,
                  is_leaf: Callable[[Any], bool] | None = None) -> PyTree:
    """Update-to-weight ratios ``||dw|| / ||w||`` per leaf, a tree of scalars like ``params``.

    ``updates`` are what the optimizer adds to the parameters (``new_params - params``, i.e. the
    output of ``GradientTransformation.update``). A leaf with ``||w|| = 0`` (a zero-initialized bias)
    has ratio ``inf`` if it is being updated and ``0`` if not, never ``nan``.

    Args:
        updates: the update, same structure as ``params``.
        params: the parameters before the update.
        is_leaf: optional predicate marking subtrees (e.g. whole layers) to treat as one leaf.

    Returns:
        A pytree of 0-d arrays with ``params``' structure.

    Raises:
        TypeError: if ``updates`` and ``params`` have different structures.
    """
    _tree.check_same_structure(params, updates, name="update_ratios: argument 'updates'",
                               expected_name="'params'")

    def ratio(u: PyTree, w: PyTree) -> Array:
        un, wn = _norm(u), _norm(w)
        safe = jnp.where(wn > 0, wn, jnp.ones_like(wn))
        return jnp.where(wn > 0, un / safe, jnp.where(un > 0, jnp.inf, 0.0))

    return _tree.tree_map(ratio, updates, params, is_leaf=is_leaf)


def to_metrics(tree: PyTree, prefix: str = "") -> dict[str, Array]:
    """Flatten a tree of scalars into ``{prefix + path: value}``, ready to merge into metrics.

    Paths are ``jax.tree_util.keystr`` strings, e.g. ``"grad_norm[0].w"`` for the ``w`` of the
    first layer of a tuple of ``DenseParams``.

    Args:
        tree: a pytree of scalars, e.g. from :func:`leaf_norms`.
        prefix: prepended to every path.

    Returns:
        A flat dict (a pytree itself, so it can be returned from a jitted step).
    """
    return {prefix + path: jnp.asarray(leaf) for path, leaf in _tree.tree_leaves_with_path(tree)}


# ------------------------------------------------------------------------ activation statistics

class ActivationStats(NamedTuple):
    """Per-layer statistics of a forward pass, each an array of shape ``(num_layers,)``.

    Attributes:
        mean: mean of each layer's output.
        std: standard deviation (population) of each layer's output.
        fraction_zero: fraction of each layer's output entries that are exactly 0 (dead ReLUs,
            dropped units).
    """

    mean: Float[Array, " layers"]
    std: Float[Array, " layers"]
    fraction_zero: Float[Array, " layers"]


AnyLayer = Layer | Branches | Join


def _stats(y: Array | Sequence[Array]) -> tuple[Array, Array, Array]:
    parts = [y] if isinstance(y, jax.Array) else list(y)
    flat = jnp.concatenate([jnp.ravel(a) for a in parts])
    flat = flat.astype(jnp.promote_types(flat.dtype, jnp.float32))
    return jnp.mean(flat), jnp.std(flat), jnp.mean(flat == 0)


def activation_stats(
    layers: Sequence[AnyLayer],
    params: Sequence[PyTree],
    state: Sequence[PyTree],
    x: ArrayLike,
    *,
    key: PRNGKey | None = None,
    train: bool = False,
) -> ActivationStats:
    """Apply ``layers`` one after another to ``x`` and record statistics of every layer's output.

    This is a :func:`~functrain.layers.serial` forward pass that keeps the intermediate results:
    build the model with ``serial(*layers)``, and pass the same list here with the ``params`` and
    ``state`` that ``serial``'s ``init`` returned (one entry per layer). Layer ``i`` gets
    ``jax.random.split(key, len(layers))[i]``, exactly as in ``serial``, so with the same ``key``
    and ``train`` the last entry describes the very output of ``serial(*layers).apply``.

    Works under ``jax.jit`` (close over ``layers``) and ``jax.vmap``.

    Args:
        layers: the layers, in order (``Layer``, or ``Branches`` followed by a ``Join``).
        params: one parameter pytree per layer.
        state: one state pytree per layer.
        x: an input batch, ``(batch, ...)``.
        key: PRNG key for stochastic layers (needed with ``train=True`` if there is dropout).
        train: run the layers in training mode.

    Returns:
        :class:`ActivationStats`, each field of shape ``(len(layers),)``. Outputs of a
        ``Branches`` are pooled together.

    Raises:
        ValueError: no layers, or ``params`` or ``state`` without one entry per layer.
        TypeError: if an entry of ``layers`` is not a layer.
    """
    who = "activation_stats"
    n = len(layers)
    if n == 0:
        raise ValueError(f"{who}: argument 'layers' is empty; give at least one layer")
    if len(params) != n or len(state) != n:
        raise ValueError(
            f"{who}: arguments 'params' and 'state' must have one entry per layer ({n}), "
            f"got {len(params)} and {len(state)}"
        )
    for position, layer in enumerate(layers):
        if not isinstance(layer, (Layer, Branches, Join)):
            raise TypeError(
                f"{who}: layers[{position}] must be a Layer, Branches or Join, got {type(layer).__name__}"
            )
    h: Any = jnp.asarray(x)
    keys = None if key is None else jax.random.split(key, n)
    means, stds, zeros = [], [], []
    for position, (layer, p, s) in enumerate(zip(layers, params, state, strict=True)):
        k = None if keys is None else keys[position]
        h, _ = layer.apply(p, s, h, key=k, train=train)
        m, sd, z = _stats(h)
        means.append(m)
        stds.append(sd)
        zeros.append(z)
    return ActivationStats(jnp.stack(means), jnp.stack(stds), jnp.stack(zeros))


# ------------------------------------------------------------------------ signal propagation

class SignalPropagation(NamedTuple):
    """Standard deviations through the depth of an MLP, each an array of shape ``(depth,)``.

    Attributes:
        forward_std: ``std(z_l)`` of the pre-activations ``z_l = h_{l-1} W_l`` of layer
            ``l = 1..depth``.
        backward_std: ``std(dL/dz_l)`` of the gradient of ``L = sum(h_depth * c)`` with respect to
            the same pre-activations (``c`` a standard-normal cotangent).
    """

    forward_std: Float[Array, " depth"]
    backward_std: Float[Array, " depth"]


def _std(a: Array) -> Array:
    # std(a) = m * std(a / m) with m = max|a|: squaring values of 1e24 would overflow float32.
    m = jnp.max(jnp.abs(a))
    safe = jnp.where((m > 0) & jnp.isfinite(m), m, jnp.ones_like(m))
    return safe * jnp.std(a / safe)


def _positive_int(value: int, name: str, who: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{who}: argument '{name}' must be an int >= 1, got {value!r}")
    return value


def signal_propagation(
    initializer: Initializer,
    activation: Callable[[Array], Array],
    depth: int,
    width: int,
    key: PRNGKey,
    *,
    batch: int = 512,
) -> SignalPropagation:
    """Forward-activation and backward-gradient standard deviation through a deep MLP.

    The network has ``depth`` dense layers of ``width -> width`` units with zero biases::

        h_0 = x ~ N(0, 1)^(batch, width)
        z_l = h_{l-1} W_l,   h_l = activation(z_l),   W_l = initializer(k_l, (width, width))
        L   = sum(h_depth * c),   c ~ N(0, 1)^(batch, width)

    With ``n`` inputs per unit and weight variance ``s^2``, ``Var(z_l) = n s^2 E[h_{l-1}^2]``:
    ``N(0, 1)`` weights multiply the scale by about ``sqrt(n)`` per layer (explosion), while
    ``s^2 = 1/n`` (LeCun, Glorot for square layers) keeps a linear network's scale and
    ``s^2 = 2/n`` (He) a ReLU network's. Backward, ``dL/dz_l = (dL/dz_{l+1} W_{l+1}^T) *
    activation'(z_l)`` obeys the same factor. (tanh with ``s^2 = 1/n`` decays slowly, like
    ``1/sqrt(2 l)``, because ``E[tanh(z)^2] < E[z^2]``.)

    Keys: ``k_x, k_w, k_c = jax.random.split(key, 3)``; ``x`` from ``k_x``, ``c`` from ``k_c``,
    ``W_l`` from ``jax.random.fold_in(k_w, l - 1)``. Computed in float32 (standard deviations are
    taken as ``m * std(z / m)``, ``m = max|z|``, so they do not overflow before the values do); with
    ``N(0, 1)`` weights and width 256 the values themselves overflow to ``inf`` beyond about 30
    layers.

    Args:
        initializer: the weight initializer, e.g. ``initializers.he_normal()``.
        activation: elementwise non-linearity, e.g. ``jax.nn.relu``, ``jnp.tanh`` or
            ``lambda z: z``.
        depth: number of layers (>= 1).
        width: units per layer (>= 1).
        key: PRNG key.
        batch: number of input samples (>= 1).

    Returns:
        :class:`SignalPropagation` with ``forward_std`` and ``backward_std`` of shape ``(depth,)``;
        entry ``l - 1`` belongs to layer ``l``.

    Raises:
        ValueError: if ``depth``, ``width`` or ``batch`` is not a positive int.
        TypeError: if ``activation`` is not callable.
    """
    who = "signal_propagation"
    depth = _positive_int(depth, "depth", who)
    width = _positive_int(width, "width", who)
    batch = _positive_int(batch, "batch", who)
    if not callable(activation):
        raise TypeError(f"{who}: argument 'activation' must be callable, got {activation!r}")

    # Run op by op rather than under one jax.jit: each call gets new Python closures (initializer,
    # activation), so a jitted version would recompile every time, while eager ops hit JAX's cache.
    k_x, k_w, k_c = jax.random.split(key, 3)
    weights = [initializer(jax.random.fold_in(k_w, layer), (width, width)) for layer in range(depth)]
    h = jax.random.normal(k_x, (batch, width), weights[0].dtype)
    cotangent = jax.random.normal(k_c, (batch, width), weights[0].dtype)
    zs: list[Array] = []
    activation_vjps = []
    for w in weights:
        z = h @ w
        zs.append(z)
        h, vjp = jax.vjp(activation, z)
        activation_vjps.append(vjp)
    # Backward: dL/dh_depth = c; dL/dz_l = activation'(z_l) * dL/dh_l; dL/dh_{l-1} = dL/dz_l W_l^T.
    grads: list[Array] = []
    g = cotangent
    for w, vjp in zip(reversed(weights), reversed(activation_vjps), strict=True):
        (dz,) = vjp(g)
        grads.append(dz)
        g = dz @ w.T
    return SignalPropagation(jnp.stack([_std(z) for z in zs]),
                             jnp.stack([_std(d) for d in reversed(grads)]))
