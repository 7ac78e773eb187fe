"""Data parallelism over devices with ``jax.sharding``.

The recipe: a :class:`~jax.sharding.Mesh` with one ``"data"`` axis over the devices; the batch is
split along its leading axis over ``"data"``; parameters, model state and optimizer state are
replicated; the *same* train step is jitted with these shardings. XLA's SPMD partitioner then
inserts the cross-device reductions itself: gradients are averaged over the global batch, and
batch-norm statistics (``jnp.mean`` over the batch axis) become global statistics, so a
data-parallel step computes the same thing as one step on the whole batch on one device.

Multi-host (several machines, each with local devices): call ``jax.distributed.initialize()``
on every process first (see the README); ``jax.devices()`` then lists all devices of all hosts,
:func:`data_mesh` spans them, and each process feeds its own slice of the global batch with
``jax.make_array_from_process_local_data(batch_sharding(mesh), local_batch)``.

Example (with the devices of this machine; one CPU device works too):
    >>> from functrain.train import distributed
    >>> mesh = distributed.data_mesh()
    >>> mesh.axis_names == (distributed.DATA_AXIS,) == ("data",)
    True
    >>> n = len(jax.devices())
    >>> batch = distributed.shard_batch((jnp.ones((2 * n, 3)),), mesh)
    >>> batch[0].shape == (2 * n, 3), distributed.is_replicated(batch) == (n == 1)
    (True, True)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar, cast

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from functrain import _jax, _tree, _validate
from functrain.typing import Metrics, PRNGKey, PyTree

__all__ = [
    "DATA_AXIS",
    "batch_sharding",
    "data_mesh",
    "data_parallel_step",
    "is_replicated",
    "replicate",
    "replicated_sharding",
    "shard_batch",
]

DATA_AXIS = "data"
"""The name of the data-parallel mesh axis made by :func:`data_mesh` (``"data"``)."""

S = TypeVar("S")


def data_mesh(devices: Sequence[jax.Device] | None = None,  # pyright: ignore[reportUnknownMemberType, reportUnknownParameterType, reportInvalidTypeForm]  # jaxlib re-exports Device as a variable
              *, axis_name: str = DATA_AXIS) -> Mesh:
    """A one-dimensional device mesh with a single data-parallel axis.

    Args:
        devices: the devices to use (default: all of ``jax.devices()``, across hosts).
        axis_name: the mesh axis name (default ``"data"``).

    Returns:
        A :class:`jax.sharding.Mesh` of shape ``(len(devices),)``.

    Raises:
        ValueError: if ``devices`` is empty.
        TypeError: if ``axis_name`` is not a str.

    Example:
        >>> mesh = ft.train.distributed.data_mesh(jax.devices()[:1])
        >>> mesh.axis_names, mesh.devices.shape
        (('data',), (1,))
    """
    who = "data_mesh"
    devs: list[Any] = list(cast("list[Any]", jax.devices()  # pyright: ignore[reportUnknownMemberType]  # list[Device]
                                if devices is None else devices))
    if not devs:
        _validate.fail(who, "devices", "a list of at least one device", devs)
    if not isinstance(cast(object, axis_name), str):  # the static type is not enforced
        _validate.fail(who, "axis_name", "a str", axis_name, error=TypeError)
    return Mesh(np.asarray(devs, dtype=object), (axis_name,))


def _check_mesh(mesh: object, who: str) -> Mesh:
    if not isinstance(mesh, Mesh):
        _validate.fail(who, "mesh", "a jax.sharding.Mesh (see data_mesh)", mesh, error=TypeError)
    return mesh


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Leading (batch) axis split over the mesh's first axis, other axes whole.

    Args:
        mesh: from :func:`data_mesh`.

    Returns:
        A ``NamedSharding`` with ``PartitionSpec(mesh.axis_names[0])``.

    Example:
        >>> mesh = ft.train.distributed.data_mesh(jax.devices()[:1])
        >>> tuple(ft.train.distributed.batch_sharding(mesh).spec)
        ('data',)
    """
    _check_mesh(mesh, "batch_sharding")
    spec = PartitionSpec(mesh.axis_names[0])  # type: ignore[no-untyped-call]  # jax leaves PartitionSpec.__new__ unannotated
    return NamedSharding(mesh, spec)


def replicated_sharding(mesh: Mesh) -> NamedSharding:
    """A full copy on every device of the mesh.

    Args:
        mesh: from :func:`data_mesh`.

    Returns:
        A ``NamedSharding`` with an empty ``PartitionSpec()``.

    Example:
        >>> mesh = ft.train.distributed.data_mesh(jax.devices()[:1])
        >>> ft.train.distributed.replicated_sharding(mesh).is_fully_replicated
        True
    """
    _check_mesh(mesh, "replicated_sharding")
    return NamedSharding(mesh, PartitionSpec())  # type: ignore[no-untyped-call]  # as above


def _n_shards(mesh: Mesh) -> int:
    return int(mesh.shape[mesh.axis_names[0]])


def _check_divisible(batch: PyTree, n_dev: int, who: str) -> None:
    for path, leaf in _tree.tree_leaves_with_path(batch):
        shape = np.shape(leaf)
        if len(shape) == 0 or shape[0] % n_dev != 0:
            raise ValueError(
                f"{who}: argument 'batch' must be arrays with a leading batch axis divisible by the {n_dev} "
                f"devices of the mesh, got shape {shape} at batch{path}")


def shard_batch(batch: PyTree, mesh: Mesh) -> PyTree:
    """Place every array of ``batch`` on the mesh, split along its leading axis.

    Args:
        batch: a pytree of arrays with a common leading (batch) length ``B``.
        mesh: from :func:`data_mesh`.

    Returns:
        The batch as globally sharded ``jax.Array`` s.

    Raises:
        ValueError: if a leaf is a scalar or ``B`` is not divisible by the number of devices.

    Example:
        >>> mesh = ft.train.distributed.data_mesh(jax.devices()[:1])
        >>> x = ft.train.distributed.shard_batch(jnp.ones((4, 2)), mesh)
        >>> x.shape, x.sharding == ft.train.distributed.batch_sharding(mesh)
        ((4, 2), True)
    """
    _check_divisible(batch, _n_shards(_check_mesh(mesh, "shard_batch")), "shard_batch")
    return _jax.device_put(batch, batch_sharding(mesh))


def replicate(tree: PyTree, mesh: Mesh) -> PyTree:
    """A copy of ``tree`` (parameters, train state ...) on every device of the mesh.

    Args:
        tree: any pytree of arrays.
        mesh: from :func:`data_mesh`.

    Returns:
        The tree with every array replicated over the mesh.

    Example:
        >>> mesh = ft.train.distributed.data_mesh(jax.devices()[:1])
        >>> params = ft.train.distributed.replicate({"w": jnp.ones(3)}, mesh)
        >>> ft.train.distributed.is_replicated(params)
        True
    """
    _check_mesh(mesh, "replicate")
    return _jax.device_put(tree, replicated_sharding(mesh))


def is_replicated(tree: PyTree) -> bool:
    """Whether every array leaf of ``tree`` is fully replicated over its devices.

    Example:
        >>> ft.train.distributed.is_replicated({"w": jnp.ones(3)})  # one device holds all of it
        True
    """
    return all(x.sharding.is_fully_replicated for x in _tree.tree_leaves(tree)
               if isinstance(x, jax.Array))


def data_parallel_step(
    step: Callable[[S, PyTree, PRNGKey], tuple[S, Metrics]],
    mesh: Mesh,
    *,
    donate: bool = False,
) -> Callable[[S, PyTree, PRNGKey], tuple[S, Metrics]]:
    """Jit a train step for data parallelism on ``mesh``.

    The state (train state, or any pytree) and the key are replicated, the batch is sharded over
    the ``"data"`` axis, and the new state and metrics come back replicated. Inputs not yet on the
    mesh are moved there (a host batch is split over devices).

    Args:
        step: ``step(state, batch, key) -> (state, metrics)``, e.g. from
            :func:`~functrain.train.make_train_step`; unchanged.
        mesh: from :func:`data_mesh`.
        donate: donate the input state's buffers (the caller must not reuse it).

    Returns:
        The jitted data-parallel step, same signature.

    Raises:
        TypeError: if ``step`` is not callable or ``mesh`` is not a ``Mesh``.

    Example:
        >>> def loss_fn(params, model_state, batch, key):
        ...     return jnp.mean((batch[0] @ params - batch[1]) ** 2), (model_state, {})
        >>> opt = ft.optim.sgd(0.1)
        >>> state = ft.train.init_train_state(jnp.zeros(2), (), opt)
        >>> mesh = ft.train.distributed.data_mesh()
        >>> step = ft.train.distributed.data_parallel_step(ft.train.make_train_step(loss_fn, opt), mesh)
        >>> n = len(jax.devices())
        >>> state, metrics = step(state, (jnp.ones((2 * n, 2)), jnp.ones(2 * n)), jax.random.key(0))
        >>> int(state.step), round(float(metrics["loss"]), 4)
        (1, 1.0)
    """
    who = "data_parallel_step"
    _validate.check_callable(step, who, "step", "a train step function")
    _validate.check_bool(donate, who, "donate")
    _check_mesh(mesh, who)
    rep, shard = replicated_sharding(mesh), batch_sharding(mesh)
    n_dev = _n_shards(mesh)
    jitted = _jax.jit(step, in_shardings=(rep, shard, rep), out_shardings=(rep, rep),
                     donate_argnums=(0,) if donate else ())

    def parallel_step(state: S, batch: PyTree, key: PRNGKey) -> tuple[S, Metrics]:
        _check_divisible(batch, n_dev, "data_parallel_step")
        out: tuple[S, Metrics] = jitted(state, batch, key)
        return out

    return parallel_step


