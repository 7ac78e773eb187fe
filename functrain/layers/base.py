"""The composable-layer protocol: ``Layer(init, apply)`` and its fan-out/fan-in companions.

A :class:`Layer` is a pair of pure functions (the ``jax.example_libraries.stax`` convention, typed)::

    params, state, output_shape = layer.init(key, input_shape)
    y, new_state = layer.apply(params, state, x, key=None, train=False)

* ``input_shape`` / ``output_shape`` are concrete shapes that INCLUDE the leading batch axis, whose
  size may be ``-1`` (unknown), e.g. ``(-1, 28, 28, 1)``. ``init`` uses nothing but this static shape
  information and the key, so it can be ``jax.vmap``-ed over keys (one model per seed) and ``jit``-ed.
* ``params`` are trained by gradient descent; ``state`` holds everything else a layer updates while
  running (batch-norm statistics). Both are pytrees -- ``typing.NamedTuple`` records for single
  layers (``DenseParams(w, b)``) and tuples with one entry per sub-layer for combinators. A layer
  without parameters (or without state) uses the empty tuple ``()``.
* ``apply`` takes a batch (leading batch axis, as in ``init``), a PRNG ``key`` (needed only by
  stochastic layers in training, e.g. dropout) and ``train`` (keyword-only, a Python bool, no
  default). With ``train=False`` it is deterministic and needs no key; with ``train=True`` a layer
  that needs randomness raises ``ValueError`` when ``key`` is ``None``.

:class:`Branches` (made by :func:`~functrain.layers.parallel`) maps one input to a tuple of outputs,
and :class:`Join` (e.g. :data:`~functrain.layers.Concatenate`) maps a tuple back to one array; in
:func:`~functrain.layers.serial` a ``Branches`` must be followed directly by a ``Join``.

Shared within :mod:`functrain.layers` (not exported): :func:`stateless`, which builds the
parameter-free layers (activations, ``Flatten``, ``Identity`` ...).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Generic, NamedTuple, Protocol

from typing_extensions import TypeVar

from functrain.layers._geometry import check_input_shape
from functrain.typing import Array, PRNGKey, PyTree, Shape

__all__ = [
    "ApplyFn",
    "Branches",
    "BranchesApplyFn",
    "BranchesInitFn",
    "InitFn",
    "Join",
    "JoinApplyFn",
    "JoinInitFn",
    "Layer",
]

# Defaults (PEP 696): a bare ``Layer`` is ``Layer[Any, Any]``, the graceful fallback.
M = TypeVar("M", default=Any)
P_co = TypeVar("P_co", covariant=True, default=Any)
M_co = TypeVar("M_co", covariant=True, default=Any)
P_contra = TypeVar("P_contra", contravariant=True, default=Any)


class InitFn(Protocol[P_co, M_co]):
    """``init(key, input_shape) -> (params, state, output_shape)``; shapes include the batch axis.

    Generic in the types of the params and the state it returns (``Any`` when not given).

    Example:
        >>> init: ft.layers.InitFn = ft.layers.Dense(3).init
        >>> params, state, out_shape = init(jax.random.key(0), (-1, 2))
        >>> out_shape
        (-1, 3)
    """

    def __call__(self, key: PRNGKey, input_shape: Sequence[int], /) -> tuple[P_co, M_co, Shape]:
        """Initialize parameters and state for inputs of ``input_shape``."""
        ...


class ApplyFn(Protocol[P_contra, M]):
    """``apply(params, state, x, *, key=None, train) -> (y, new_state)``.

    Generic in the types of the params it reads and the state it reads and returns (``Any`` when
    not given).

    Example:
        >>> layer = ft.layers.Dense(3)
        >>> params, state, _ = layer.init(jax.random.key(0), (-1, 2))
        >>> apply: ft.layers.ApplyFn = layer.apply
        >>> y, state = apply(params, state, jnp.ones((4, 2)), train=False)
        >>> y.shape
        (4, 3)
    """

    def __call__(
        self, params: P_contra, state: M, x: Array, /, *, key: PRNGKey | None = None, train: bool
    ) -> tuple[Array, M]:
        """Run the layer on the batch ``x``."""
        ...


@dataclass(frozen=True)
class Layer(Generic[P_co, M_co]):
    """A composable layer: a pair of pure functions ``(init, apply)``.

    Generic in its parameter and state types: ``Dense(3)`` is a ``Layer[DenseParams, tuple[()]]``,
    ``BatchNorm()`` a ``Layer[BatchNormParams, BatchNormState]``, a parameter-free layer a
    ``Layer[tuple[()], tuple[()]]``; :func:`~functrain.layers.serial` gives a
    ``Layer[tuple[Any, ...], tuple[Any, ...]]`` (one entry per layer). A bare ``Layer`` is
    ``Layer[Any, Any]``.

    An immutable value (a frozen dataclass, equal and hashed by ``(init, apply)``; ``init, apply =
    layer`` unpacks it) rather than a ``NamedTuple``, and covariant in both types: so a list of
    layers of different types, ``[Dense(64), Relu] * 6``, is still a list of layers for mypy (which
    joins invariant or ``NamedTuple`` generics to ``object``) and can be passed to ``serial``. The
    price of covariance: ``apply`` takes the params and state it is typed with, so a layer seen
    through a wider type (a ``Layer[object, object]``) would accept any params statically. Lists
    are invariant, so mypy still joins ``[BatchNorm()]`` and ``[LayerNorm()]`` (lists of lists, dicts
    of lists) to ``object``: annotate those, e.g. ``dict[str, list[Layer]]``.

    Attributes:
        init: ``init(key, input_shape) -> (params, state, output_shape)``.
        apply: ``apply(params, state, x, *, key=None, train) -> (y, new_state)``.

    Example:
        >>> def init(key, input_shape):
        ...     return jnp.ones(()), (), tuple(input_shape)
        >>> def apply(params, state, x, *, key=None, train):
        ...     return params * 2.0 * x, state
        >>> double = ft.layers.Layer(init, apply)  # a custom layer: y = 2 a x, a learned
        >>> params, state, _ = double.init(jax.random.key(0), (-1, 3))
        >>> double.apply(params, state, jnp.ones((1, 3)), train=False)[0].tolist()
        [[2.0, 2.0, 2.0]]
        >>> init_fn, apply_fn = double  # stax-style unpacking
        >>> double == ft.layers.Layer(init_fn, apply_fn)
        True
    """

    init: InitFn[P_co, M_co]
    apply: ApplyFn[P_co, M_co]

    def __iter__(self) -> Iterator[InitFn[P_co, M_co] | ApplyFn[P_co, M_co]]:
        """``init`` then ``apply``: ``init, apply = layer`` (the attributes are typed precisely)."""
        return iter((self.init, self.apply))


class BranchesInitFn(Protocol):
    """``init(key, input_shape) -> (params, state, output_shapes)``, one output shape per branch.

    Example:
        >>> init: ft.layers.BranchesInitFn = ft.layers.parallel(ft.layers.Dense(2), ft.layers.Dense(5)).init
        >>> init(jax.random.key(0), (-1, 3))[2]
        ((-1, 2), (-1, 5))
    """

    def __call__(
        self, key: PRNGKey, input_shape: Sequence[int], /
    ) -> tuple[PyTree, PyTree, tuple[Shape, ...]]:
        """Initialize every branch for inputs of ``input_shape``."""
        ...


class BranchesApplyFn(Protocol):
    """``apply(params, state, x, *, key=None, train) -> (ys, new_state)``, one output per branch.

    Example:
        >>> branches = ft.layers.parallel(ft.layers.Identity, ft.layers.Relu)
        >>> apply: ft.layers.BranchesApplyFn = branches.apply
        >>> ys, _ = apply(((), ()), ((), ()), jnp.array([[-1.0, 2.0]]), train=False)
        >>> [y.tolist() for y in ys]
        [[[-1.0, 2.0]], [[0.0, 2.0]]]
    """

    def __call__(
        self, params: PyTree, state: PyTree, x: Array, /, *, key: PRNGKey | None = None, train: bool
    ) -> tuple[tuple[Array, ...], PyTree]:
        """Run every branch on the same input ``x``."""
        ...


class Branches(NamedTuple):
    """Fan-out: one input, a tuple of outputs (built by :func:`~functrain.layers.parallel`).

    Attributes:
        init: ``init(key, input_shape) -> (params, state, output_shapes)``.
        apply: ``apply(params, state, x, *, key=None, train) -> (ys, new_state)``.

    Example:
        >>> branches = ft.layers.parallel(ft.layers.Dense(2), ft.layers.Dense(3))
        >>> isinstance(branches, ft.layers.Branches)
        True
        >>> params, state, shapes = branches.init(jax.random.key(0), (-1, 4))
        >>> shapes
        ((-1, 2), (-1, 3))
    """

    init: BranchesInitFn
    apply: BranchesApplyFn


class JoinInitFn(Protocol):
    """``init(key, input_shapes) -> (params, state, output_shape)``.

    Example:
        >>> init: ft.layers.JoinInitFn = ft.layers.Concatenate.init
        >>> init(jax.random.key(0), [(-1, 2), (-1, 5)])[2]
        (-1, 7)
    """

    def __call__(
        self, key: PRNGKey, input_shapes: Sequence[Sequence[int]], /
    ) -> tuple[PyTree, PyTree, Shape]:
        """Initialize for inputs of ``input_shapes``."""
        ...


class JoinApplyFn(Protocol):
    """``apply(params, state, xs, *, key=None, train) -> (y, new_state)``.

    Example:
        >>> apply: ft.layers.JoinApplyFn = ft.layers.Concatenate.apply
        >>> y, _ = apply((), (), [jnp.ones((4, 2)), jnp.zeros((4, 5))], train=False)
        >>> y.shape
        (4, 7)
    """

    def __call__(
        self, params: PyTree, state: PyTree, xs: Sequence[Array], /, *, key: PRNGKey | None = None,
        train: bool
    ) -> tuple[Array, PyTree]:
        """Combine the arrays ``xs`` into one."""
        ...


class Join(NamedTuple):
    """Fan-in: a tuple of inputs, one output (e.g. :data:`~functrain.layers.Concatenate`).

    Attributes:
        init: ``init(key, input_shapes) -> (params, state, output_shape)``.
        apply: ``apply(params, state, xs, *, key=None, train) -> (y, new_state)``.

    Example:
        >>> def init(key, input_shapes):
        ...     return (), (), tuple(input_shapes[0])
        >>> def apply(params, state, xs, *, key=None, train):
        ...     return sum(xs), state
        >>> add = ft.layers.Join(init, apply)  # a custom join: the sum of the branches
        >>> block = ft.layers.serial(ft.layers.parallel(ft.layers.Identity, ft.layers.Identity), add)
        >>> params, state, _ = block.init(jax.random.key(0), (-1, 2))
        >>> block.apply(params, state, jnp.ones((1, 2)), train=False)[0].tolist()
        [[2.0, 2.0]]
    """

    init: JoinInitFn
    apply: JoinApplyFn


def stateless(
    name: str,
    fn: Callable[[Array], Array],
    output_shape: Callable[[Shape], Shape] | None = None,
    *,
    min_rank: int = 1,
) -> Layer[tuple[()], tuple[()]]:
    """A layer with no parameters and no state: ``y = fn(x)``; ``params = state = ()``.

    Shared within :mod:`functrain.layers` (activations, pooling, ``Identity``); users write
    :func:`~functrain.layers.Elementwise` instead.

    Args:
        name: the layer's name in error messages.
        fn: the function applied to the batch.
        output_shape: maps a validated input shape (batch axis included) to the output shape;
            default: unchanged.
        min_rank: minimum rank of the input shape (batch axis included).
    """

    def init(key: PRNGKey, input_shape: Sequence[int]) -> tuple[tuple[()], tuple[()], Shape]:
        del key
        shape = check_input_shape(input_shape, name, min_rank=min_rank)
        return (), (), shape if output_shape is None else output_shape(shape)

    def apply(
        params: tuple[()], state: tuple[()], x: Array, *, key: PRNGKey | None = None, train: bool
    ) -> tuple[Array, tuple[()]]:
        del params, key, train
        return fn(x), state

    return Layer(init, apply)
