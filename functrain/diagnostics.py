"""Training diagnostics: gradient and update norms, activation statistics, signal propagation.

Three ways to look inside a network while (or before) it trains:

* :func:`leaf_norms` and :func:`update_ratios` turn the gradients and updates of a train step into a
  pytree of scalars with the parameters' structure, which a jitted (and vmapped) step can return
  alongside its metrics; :func:`to_metrics` flattens any such tree into ``{"prefix/path": scalar}``.
  A healthy update-to-weight ratio ``||dw|| / ||w||`` is around ``1e-3`` per step (Karpathy's rule
  of thumb, CS231n "Babysitting the learning process"); far above means the learning rate is too
  large, far below too small.
* :func:`activation_stats` runs a list of layers one after another and records the mean,
  standard deviation and fraction of exact zeros of every layer's output: dead ReLUs, saturating
  units and drifting scales show up here.
* :func:`signal_propagation` measures how the standard deviation of the signal changes through
  the depth of a plain MLP, forward (pre-activations) and backward (gradients): the exploding and
  vanishing picture that motivates careful initialization (Glorot & Bengio 2010, He et al. 2015).

Like the losses and the data utilities, this module sits at the bottom of the library: it imports
only ``functrain.typing``, ``_tree`` and ``_validate``, never ``functrain.layers``. Layers are
taken by their shape, not their class: anything with an ``apply(params, state, x, *, key, train)
-> (y, new_state)`` function (a ``functrain.layers.Layer``, ``Branches`` or ``Join``, or your own
record) can be measured by :func:`activation_stats`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple, Protocol, cast

import jax
import jax.numpy as jnp
from jaxtyping import Float

from functrain import _tree, _validate
from functrain.typing import Array, ArrayLike, Initializer, PRNGKey, PyTree

__all__ = [
    "ActivationStats",
    "LayerLike",
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

    Raises:
        TypeError: ``is_leaf`` is neither ``None`` nor a function.

    Example:
        >>> grads = {"w": jnp.array([[3.0, 0.0], [0.0, 4.0]]), "b": jnp.zeros(2)}
        >>> {name: float(norm) for name, norm in ft.diagnostics.leaf_norms(grads).items()}
        {'b': 0.0, 'w': 5.0}
    """
    if is_leaf is not None:
        _validate.check_callable(is_leaf, "leaf_norms", "is_leaf")
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
        TypeError: if ``updates`` and ``params`` have different structures, or ``is_leaf`` is
            neither ``None`` nor a function.

    Example:
        >>> params = {"w": jnp.full((2, 2), 5.0), "b": jnp.zeros(2)}
        >>> updates = {"w": jnp.full((2, 2), -0.005), "b": jnp.full(2, 0.1)}
        >>> ratios = ft.diagnostics.update_ratios(updates, params)
        >>> round(float(ratios["w"]), 6), float(ratios["b"])  # 0.01 / 10; a zero bias moving
        (0.001, inf)
    """
    who = "update_ratios"
    _validate.check_same_structure(params, updates, who, "updates", "the params")
    if is_leaf is not None:
        _validate.check_callable(is_leaf, who, "is_leaf")

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

    Raises:
        TypeError: ``prefix`` is not a str.

    Example:
        >>> norms = ft.diagnostics.leaf_norms([jnp.array([3.0, 4.0]), jnp.ones(4)])
        >>> {k: float(v) for k, v in ft.diagnostics.to_metrics(norms, "grad_norm").items()}
        {'grad_norm[0]': 5.0, 'grad_norm[1]': 2.0}
    """
    if not isinstance(cast(object, prefix), str):  # the static type is not enforced
        _validate.fail("to_metrics", "prefix", "a str", prefix, error=TypeError)
    return {prefix + path: jnp.asarray(leaf) for path, leaf in _tree.tree_leaves_with_path(tree)}


# ------------------------------------------------------------------------ activation statistics

class ActivationStats(NamedTuple):
    """Per-layer statistics of a forward pass, each an array of shape ``(num_layers,)``.

    Attributes:
        mean: mean of each layer's output.
        std: standard deviation (population) of each layer's output.
        fraction_zero: fraction of each layer's output entries that are exactly 0 (dead ReLUs,
            dropped units).

    Example:
        >>> stats = ft.diagnostics.activation_stats([ft.layers.Relu], [()], [()],
        ...                                         jnp.array([[-1.0, 0.0, 3.0, 5.0]]))
        >>> isinstance(stats, ft.diagnostics.ActivationStats), stats.mean.tolist()
        (True, [2.0])
        >>> stats.fraction_zero.tolist()
        [0.5]
    """

    mean: Float[Array, " layers"]
    std: Float[Array, " layers"]
    fraction_zero: Float[Array, " layers"]


class LayerLike(Protocol):
    """Anything with a layer's ``apply(params, state, x, *, key, train) -> (y, new_state)``.

    :func:`activation_stats` needs nothing more of a layer: functrain's ``Layer``, ``Branches``
    and ``Join`` records qualify, and so does any object of your own with such an ``apply``
    (this module does not import ``functrain.layers``).

    Example:
        >>> layer: ft.diagnostics.LayerLike = ft.layers.Relu  # a functrain layer is LayerLike
        >>> y, state = layer.apply((), (), jnp.array([-1.0, 2.0]), train=False)
        >>> y.tolist()
        [0.0, 2.0]
        >>> class Double:  # and so is any object with an apply function
        ...     def apply(self, params, state, x, *, key=None, train):
        ...         return 2 * x, state
        >>> y, _ = Double().apply((), (), jnp.array([-1.0, 2.0]), train=False)
        >>> y.tolist()
        [-2.0, 4.0]
    """

    @property
    def apply(self) -> Callable[..., tuple[Any, PyTree]]:
        """``apply(params, state, x, *, key, train) -> (y, new_state)``; ``y`` an array, or a
        tuple of arrays for a fan-out (``Branches``)."""
        ...


def _stats(y: Array | Sequence[Array]) -> tuple[Array, Array, Array]:
    parts = [y] if isinstance(y, jax.Array) else list(y)
    flat = jnp.concatenate([jnp.ravel(a) for a in parts])
    flat = flat.astype(jnp.promote_types(flat.dtype, jnp.float32))
    return jnp.mean(flat), jnp.std(flat), jnp.mean(flat == 0)


def _check_layers(layers: object, params: object, state: object, who: str) -> int:
    if callable(getattr(layers, "apply", None)):  # one layer (a NamedTuple is a sequence too)
        _validate.fail(who, "layers", "a sequence of layers (wrap a single layer in a list)",
                       layers, error=TypeError)
    for name, value in (("layers", layers), ("params", params), ("state", state)):
        if not _tree.is_sequence(value) or isinstance(value, str):
            _validate.fail(who, name, "a sequence (one entry per layer)", value, error=TypeError)
    assert _tree.is_sequence(layers) and _tree.is_sequence(params)
    assert _tree.is_sequence(state)
    n = len(layers)
    if n == 0:
        _validate.fail(who, "layers", "a non-empty sequence of layers", layers)
    for position, layer in enumerate(layers):
        if not callable(getattr(layer, "apply", None)):
            _validate.fail(who, f"layers[{position}]", "a layer (an object with an apply function, "
                           "e.g. functrain.layers.Dense(8))", layer, error=TypeError)
    for name, value in (("params", params), ("state", state)):
        if len(value) != n:
            raise ValueError(f"{who}: argument '{name}' must be a sequence with one entry per "
                             f"layer ({n}), got {len(value)} entries")
    return n


def activation_stats(
    layers: Sequence[LayerLike],
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
        layers: the layers, in order: anything with an ``apply`` function (:class:`LayerLike`),
            e.g. functrain ``Layer`` s, or a ``Branches`` followed by a ``Join``.
        params: one parameter pytree per layer.
        state: one state pytree per layer.
        x: an input batch, ``(batch, ...)``.
        key: PRNG key for stochastic layers (needed with ``train=True`` if there is dropout).
        train: run the layers in training mode.

    Returns:
        :class:`ActivationStats`, each field of shape ``(len(layers),)``. Outputs of a
        fan-out (``Branches``) are pooled together.

    Raises:
        TypeError: ``layers``, ``params`` or ``state`` is not a sequence, an entry of ``layers``
            has no ``apply`` function, or ``train`` is not a bool.
        ValueError: no layers, or ``params`` or ``state`` without one entry per layer.

    Example:
        >>> layers = [ft.layers.Dense(16), ft.layers.Relu, ft.layers.Dense(3)]
        >>> params, state, _ = ft.layers.serial(*layers).init(jax.random.key(0), (-1, 4))
        >>> x = jax.random.normal(jax.random.key(1), (32, 4))
        >>> stats = ft.diagnostics.activation_stats(layers, params, state, x)
        >>> stats.std.shape, float(stats.fraction_zero[0])
        ((3,), 0.0)
        >>> 0.0 < float(stats.fraction_zero[1]) < 1.0  # the ReLU zeroes some units
        True
    """
    who = "activation_stats"
    n = _check_layers(layers, params, state, who)
    train = _validate.check_bool(train, who, "train")
    h: Any = jnp.asarray(x)
    keys = None if key is None else jax.random.split(key, n)
    means: list[Array] = []
    stds: list[Array] = []
    zeros: list[Array] = []
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

    Example:
        >>> sp = ft.diagnostics.signal_propagation(ft.initializers.lecun_normal(), lambda z: z,
        ...                                        depth=3, width=32, key=jax.random.key(0))
        >>> isinstance(sp, ft.diagnostics.SignalPropagation)
        True
        >>> sp.forward_std.shape, sp.backward_std.shape
        ((3,), (3,))
    """

    forward_std: Float[Array, " depth"]
    backward_std: Float[Array, " depth"]


def _std(a: Array) -> Array:
    # std(a) = m * std(a / m) with m = max|a|: squaring values of 1e24 would overflow float32.
    m = jnp.max(jnp.abs(a))
    safe = jnp.where((m > 0) & jnp.isfinite(m), m, jnp.ones_like(m))
    return safe * jnp.std(a / safe)


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
        TypeError: if ``depth``, ``width`` or ``batch`` is not an int (NumPy integers are
            accepted), or ``initializer`` or ``activation`` is not callable.
        ValueError: if ``depth``, ``width`` or ``batch`` is below 1.

    Example:
        >>> key = jax.random.key(0)
        >>> he = ft.diagnostics.signal_propagation(ft.initializers.he_normal(), jax.nn.relu,
        ...                                        depth=10, width=64, key=key)
        >>> he.forward_std.shape, bool(jnp.all((he.forward_std > 0.5) & (he.forward_std < 2.0)))
        ((10,), True)
        >>> normal = ft.diagnostics.signal_propagation(ft.initializers.standard_normal(),
        ...                                            jax.nn.relu, depth=10, width=64, key=key)
        >>> bool(normal.forward_std[-1] > 1e6)  # N(0, 1) weights: the scale explodes with depth
        True
    """
    who = "signal_propagation"
    _validate.check_callable(initializer, who, "initializer",
                             "an initializer (key, shape, dtype) -> array")
    _validate.check_callable(activation, who, "activation")
    depth = _validate.check_int(depth, who, "depth", low=1)
    width = _validate.check_int(width, who, "width", low=1)
    batch = _validate.check_int(batch, who, "batch", low=1)

    # Run op by op rather than under one jax.jit: each call gets new Python closures (initializer,
    # activation), so a jitted version would recompile every time, while eager ops hit JAX's cache.
    k_x, k_w, k_c = jax.random.split(key, 3)
    weights = [initializer(jax.random.fold_in(k_w, layer), (width, width)) for layer in range(depth)]
    h = jax.random.normal(k_x, (batch, width), weights[0].dtype)
    cotangent = jax.random.normal(k_c, (batch, width), weights[0].dtype)
    zs: list[Array] = []
    activation_vjps: list[Callable[[Array], tuple[Array]]] = []
    for w in weights:
        z = h @ w
        zs.append(z)
        # jax annotates vjp's ``fun`` as a bare Callable (Unknown to pyright); diagnostics sits at
        # the bottom of the library, so it does not use the typed wrapper in functrain._jax.
        h, vjp = cast("tuple[Array, Callable[[Array], tuple[Array]]]",
                      jax.vjp(activation, z))  # pyright: ignore[reportUnknownMemberType]
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
