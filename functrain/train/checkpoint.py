"""Checkpoints: save any pytree of arrays bitwise, atomically, with a checksum; load it back checked.

File format (version 1), all integers little-endian::

    magic    16 bytes   b"FUNCTRAIN-CKPT\\x00\\x01"
    length    8 bytes   n, the size of the header
    header    n bytes   UTF-8 JSON: for every leaf its tree path, dtype, shape, byte offset and size
    payload             the raw bytes of every leaf, in tree order (C order, host byte order,
                        i.e. little-endian on every platform JAX supports)
    digest   32 bytes   SHA-256 of everything before it

Leaves are stored bitwise, whatever their dtype: floats (bfloat16 and float16 included), ints,
bools, and typed PRNG key arrays (stored as ``jax.random.key_data`` with their implementation
name, rebuilt with ``jax.random.wrap_key_data``). Nothing is pickled, so loading a file cannot run
code.

:func:`save_checkpoint` writes a temporary file ``.NAME.XXXXXXXX.tmp`` in the destination
directory, flushes and ``fsync``-s it, renames it over the destination with ``os.replace`` (atomic
on POSIX and Windows) and ``fsync``-s the directory: a crash at any moment leaves either the old or
the new checkpoint, never a torn one. A save killed before its rename leaves its temporary file
behind; the next save of the same target removes such stale temporaries (those no live save
holds: a writer keeps an exclusive ``flock`` on its temporary while it writes), so killed saves
never accumulate. Files are created with the mode the process umask gives (as ``open`` does).

:func:`load_checkpoint` reads only the named file (temporaries are ignored), verifies the
checksum (a truncated or corrupted file raises :class:`CheckpointError`), validates the header
(format version, every leaf entry; any malformed header is a :class:`CheckpointError`, never
another exception) and checks the file against a ``like`` tree: same leaf paths, shapes and
dtypes, reporting every difference by its path.

Supported leaves: arrays of bool or numeric dtypes (including bfloat16 and the other ml_dtypes
floats), typed PRNG key arrays, Python bools, floats, complex numbers and ints in the int64 range.
Anything else (object or string arrays, ints beyond int64) is refused when saving, naming its path.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from typing import Any, TypeVar, cast

import jax
import jax.numpy as jnp
import numpy as np

from functrain import _jax, _tree, _validate
from functrain.train._atomic import write_atomically
from functrain.typing import Array, PyTree

__all__ = ["CheckpointError", "load_checkpoint", "save_checkpoint"]

T = TypeVar("T")

_MAGIC = b"FUNCTRAIN-CKPT\x00\x01"
_DIGEST = 32
_LEN = 8
_VERSION = 1
_INT64 = (-(2**63), 2**63 - 1)


class CheckpointError(ValueError):
    """A checkpoint file is unreadable (truncated, corrupted, not a checkpoint) or does not match.

    A ``ValueError``: the file's content, not the call, is wrong.

    Example:
        >>> import os, tempfile
        >>> with tempfile.TemporaryDirectory() as directory:
        ...     path = os.path.join(directory, "run.ckpt")
        ...     ft.train.save_checkpoint(path, {"w": jnp.zeros(2)})
        ...     try:
        ...         ft.train.load_checkpoint(path, like={"w": jnp.zeros(3)})
        ...     except ft.train.CheckpointError as error:
        ...         print(isinstance(error, ValueError), "shape (2,) in the file" in str(error))
        True True
    """


def _is_key(x: Any) -> bool:
    dtype = getattr(x, "dtype", None)
    return dtype is not None and jnp.issubdtype(dtype, jax.dtypes.prng_key)


def _describe_leaf(x: Any) -> tuple[str, tuple[int, ...]]:
    """``(dtype name, shape)`` of a leaf (array, key array, ShapeDtypeStruct or Python scalar)."""
    if hasattr(x, "dtype") and hasattr(x, "shape"):
        return str(x.dtype), tuple(int(d) for d in x.shape)
    arr = np.asarray(x)
    return str(arr.dtype), tuple(arr.shape)


def _supported_dtype(dtype: Any) -> bool:
    """Bool and numeric dtypes (ml_dtypes floats included); not object, string or structured."""
    try:
        return bool(jnp.issubdtype(dtype, jnp.number) or jnp.issubdtype(dtype, jnp.bool_))
    except TypeError:
        return False


def _check_leaf(p: str, leaf: Any, who: str) -> None:
    """``TypeError`` (``ValueError`` for an int beyond int64) for a leaf that cannot be stored."""
    where = f"the leaf at tree{p}"
    expectation = ("a pytree whose leaves are arrays of bool or numeric dtype, PRNG key arrays or "
                   "Python numbers")
    if isinstance(leaf, bool):
        return
    if isinstance(leaf, int) and not isinstance(leaf, np.integer):
        if not _INT64[0] <= leaf <= _INT64[1]:
            _validate.fail(who, "tree", "a pytree whose Python ints fit int64", leaf, detail=where)
        return
    if isinstance(leaf, (float, complex)) or _is_key(leaf):
        return
    if isinstance(leaf, jax.ShapeDtypeStruct) or not (hasattr(leaf, "dtype") and hasattr(leaf, "shape")):
        _validate.fail(who, "tree", expectation, leaf, error=TypeError, detail=where)
    if not _supported_dtype(leaf.dtype):
        _validate.fail(who, "tree", expectation, leaf, error=TypeError,
                       detail=f"{where} has dtype {leaf.dtype}")


def _leaf_bytes(x: Any) -> tuple[bytes, str | None]:
    if _is_key(x):
        return np.ascontiguousarray(np.asarray(jax.random.key_data(x))).tobytes(), str(jax.random.key_impl(x))
    return np.ascontiguousarray(np.asarray(x)).tobytes(), None


def _check_path(path: object, who: str) -> str:
    if not isinstance(path, (str, os.PathLike)):
        _validate.fail(who, "path", "a file path (str or os.PathLike)", path, error=TypeError)
    return os.fspath(path)


def save_checkpoint(path: str | os.PathLike[str], tree: PyTree) -> None:
    """Write ``tree`` to ``path`` atomically, bitwise, with a SHA-256 checksum.

    Typical use: ``save_checkpoint(path, fit_state)`` (a whole run: train state, early-stopping
    and plateau states), or any pytree (an equinox module's arrays, averaged params ...). The
    previous file at ``path``, if any, stays intact until the new one is complete on disk; stale
    temporaries of earlier, killed saves of ``path`` are removed (see the module docstring). The
    file gets the mode the umask gives, like any file the process creates.

    Args:
        path: destination file (its directory must exist).
        tree: a pytree whose leaves are arrays of bool or numeric dtype (JAX, NumPy), typed key
            arrays, or Python numbers (ints within int64).

    Raises:
        TypeError: if ``path`` is not a path, or a leaf cannot be stored (an object, string or
            structured array, a non-number): the message names the leaf's path.
        ValueError: a Python int outside the int64 range (its path named).
        FileNotFoundError: if the directory of ``path`` does not exist.

    Example:
        >>> import os, tempfile
        >>> state = ft.train.init_train_state({"w": jnp.ones(2)}, (), ft.optim.adam(1e-3))
        >>> with tempfile.TemporaryDirectory() as directory:
        ...     path = os.path.join(directory, "state.ckpt")
        ...     ft.train.save_checkpoint(path, state)
        ...     print(sorted(os.listdir(directory)))  # one complete file, no temporary left
        ['state.ckpt']
    """
    name = _check_path(path, "save_checkpoint")
    target = os.path.abspath(name)
    directory = os.path.dirname(target)
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"save_checkpoint: directory {directory!r} of {name!r} does not exist")
    entries: list[dict[str, Any]] = []
    chunks: list[bytes] = []
    offset = 0
    leaves = _tree.tree_leaves_with_path(tree)
    for p, leaf in leaves:
        _check_leaf(p, leaf, "save_checkpoint")
    for p, leaf in leaves:
        data, impl = _leaf_bytes(leaf)
        dtype, shape = _describe_leaf(leaf)
        entries.append({"path": p, "dtype": dtype, "shape": list(shape), "key_impl": impl,
                        "offset": offset, "nbytes": len(data)})
        chunks.append(data)
        offset += len(data)
    header = json.dumps({"version": _VERSION, "leaves": entries, "payload_bytes": offset}).encode("utf-8")
    write_atomically(target, (_MAGIC, len(header).to_bytes(_LEN, "little"), header, *chunks))


def _read_verified(path: str) -> tuple[list[dict[str, Any]], memoryview]:
    who = "load_checkpoint"
    try:
        with open(path, "rb") as f:
            blob = f.read()
    except FileNotFoundError as e:
        raise FileNotFoundError(f"{who}: no checkpoint at {path!r}") from e
    minimum = len(_MAGIC) + _LEN + _DIGEST
    if len(blob) < minimum or not blob.startswith(_MAGIC):
        what = "truncated" if _MAGIC.startswith(blob[: len(_MAGIC)]) and len(blob) < minimum else "not a functrain checkpoint"
        raise CheckpointError(f"{who}: {path!r} is {what} ({len(blob)} bytes)")
    body, digest = memoryview(blob)[:-_DIGEST], blob[-_DIGEST:]
    if hashlib.sha256(body).digest() != digest:
        raise CheckpointError(f"{who}: {path!r} is truncated or corrupted (SHA-256 checksum mismatch, "
                              f"{len(blob)} bytes); it cannot be loaded (an earlier checkpoint can)")
    n = int.from_bytes(body[len(_MAGIC): len(_MAGIC) + _LEN], "little")
    start = len(_MAGIC) + _LEN
    if n > len(body) - start:
        raise CheckpointError(f"{who}: {path!r} has a malformed header (its length {n} exceeds the file)")
    try:
        header = json.loads(bytes(body[start: start + n]).decode("utf-8"))
    except ValueError as e:  # (UnicodeDecodeError and JSONDecodeError are ValueErrors)
        raise CheckpointError(f"{who}: {path!r} has an unreadable header ({e})") from None
    payload = body[start + n:]
    entries = _check_header(header, len(payload), path, who)
    return entries, payload


def _malformed(path: str, who: str, what: str) -> CheckpointError:
    return CheckpointError(f"{who}: {path!r} has a malformed header: {what}")


def _is_count(x: object) -> bool:
    return isinstance(x, int) and not isinstance(x, bool) and x >= 0


def _check_header(header: object, payload_bytes: int, path: str, who: str) -> list[dict[str, Any]]:
    """The header's leaf entries, each validated, or :class:`CheckpointError`."""
    if not _tree.is_node_dict(header):
        raise _malformed(path, who, f"a JSON {type(header).__name__} instead of an object")
    version = header.get("version")
    if version != _VERSION:
        raise CheckpointError(f"{who}: {path!r} has checkpoint format version {version!r}; this "
                              f"version of functrain reads version {_VERSION}")
    if header.get("payload_bytes") != payload_bytes:
        raise CheckpointError(f"{who}: {path!r} has {payload_bytes} payload bytes, its header says "
                              f"{header.get('payload_bytes')!r}")
    entries = header.get("leaves")
    if not _tree.is_list(entries):
        raise _malformed(path, who, "no list of leaves")
    for i, e in enumerate(entries):
        _check_entry(e, i, payload_bytes, path, who)
    return entries


def _check_entry(e: object, i: int, payload_bytes: int, path: str, who: str) -> None:
    if not _tree.is_node_dict(e):
        raise _malformed(path, who, f"leaf {i} is a {type(e).__name__}, not an object")
    shape, impl = e.get("shape"), e.get("key_impl")
    ok = (isinstance(e.get("path"), str) and isinstance(e.get("dtype"), str)
          and _tree.is_list(shape) and all(_is_count(d) for d in shape)
          and (impl is None or isinstance(impl, str))
          and _is_count(e.get("offset")) and _is_count(e.get("nbytes")))
    if not ok:
        raise _malformed(path, who, f"leaf {i} has missing or invalid fields ({_short(e)})")
    if e["offset"] + e["nbytes"] > payload_bytes:
        raise _malformed(path, who, f"leaf {i} ({e['path']}) lies beyond the payload")
    dims = [int(d) for d in e["shape"]]
    size = math.prod(dims)
    if impl is None:
        try:
            dtype = np.dtype(jnp.dtype(e["dtype"]))
        except TypeError:
            dtype = None
        if dtype is None or not _supported_dtype(dtype):
            raise _malformed(path, who, f"leaf {i} ({e['path']}) has the unsupported dtype {e['dtype']!r}")
        if size * dtype.itemsize != e["nbytes"]:
            raise _malformed(path, who, f"leaf {i} ({e['path']}) has {e['nbytes']} bytes for shape "
                                        f"{tuple(dims)} and dtype {dtype}")
    else:  # key data: uint32 words, a whole number of them per key
        nbytes = e["nbytes"]
        if (nbytes != 0) if size == 0 else (nbytes == 0 or nbytes % (4 * size) != 0):
            raise _malformed(path, who, f"leaf {i} ({e['path']}) has {nbytes} bytes of key data "
                                        f"for shape {tuple(dims)}")


def _short(x: object) -> str:
    text = repr(x)
    return text if len(text) <= 120 else text[:117] + "..."


def load_checkpoint(path: str | os.PathLike[str], like: T) -> T:
    """Load a checkpoint written by :func:`save_checkpoint`, checked against ``like``.

    ``like`` supplies the tree structure (NamedTuples, dicts, equinox modules ...) and the
    expected shape and dtype of every leaf; it can be a freshly initialized state or
    ``jax.eval_shape`` of one (``jax.ShapeDtypeStruct`` leaves). Loaded leaves are bitwise equal
    to the saved ones; JAX arrays are placed with the sharding of the matching ``like`` leaf.

    Args:
        path: the checkpoint file.
        like: a pytree with the structure, shapes and dtypes to expect.

    Returns:
        A pytree with ``like``'s structure and the checkpoint's values.

    Raises:
        FileNotFoundError: if ``path`` does not exist.
        CheckpointError: if the file is truncated, corrupted or not a checkpoint, has an unknown
            format version or a malformed header (even one that passes the checksum), or its
            leaves differ from ``like``'s (every differing leaf path, shape and dtype is listed).
        TypeError: if ``path`` is not a path.

    Example:
        >>> import os, tempfile
        >>> tree = {"w": jnp.arange(3.0), "step": jnp.int32(7)}
        >>> with tempfile.TemporaryDirectory() as directory:
        ...     path = os.path.join(directory, "run.ckpt")
        ...     ft.train.save_checkpoint(path, tree)
        ...     like = jax.eval_shape(lambda: tree)  # shapes and dtypes suffice
        ...     loaded = ft.train.load_checkpoint(path, like=like)
        >>> loaded["w"].tolist(), int(loaded["step"])
        ([0.0, 1.0, 2.0], 7)
    """
    who = "load_checkpoint"
    name = _check_path(path, who)
    entries, payload = _read_verified(name)
    like_leaves = _tree.tree_leaves_with_path(like)
    saved_paths = [e["path"] for e in entries]
    like_paths = [p for p, _ in like_leaves]
    if saved_paths != like_paths:
        missing = [p for p in like_paths if p not in set(saved_paths)]
        extra = [p for p in saved_paths if p not in set(like_paths)]
        parts: list[str] = []
        if missing:
            parts.append(f"leaves in 'like' but not in the file: {missing[:8]}")
        if extra:
            parts.append(f"leaves in the file but not in 'like': {extra[:8]}")
        if not parts:
            parts.append("the same leaves in a different order")
        raise CheckpointError(f"{who}: the tree structure of {name!r} differs from 'like': " + "; ".join(parts))
    problems: list[str] = []
    for entry, (p, leaf) in zip(entries, like_leaves, strict=True):
        dtype, shape = _describe_leaf(leaf)
        if tuple(entry["shape"]) != shape:
            problems.append(f"{p or '<root>'}: shape {tuple(entry['shape'])} in the file, {shape} in 'like'")
        if entry["dtype"] != dtype:  # for key arrays the name includes the PRNG implementation
            problems.append(f"{p or '<root>'}: dtype {entry['dtype']} in the file, {dtype} in 'like'")
    if problems:
        raise CheckpointError(f"{who}: {name!r} does not match 'like': " + "; ".join(problems))
    try:
        leaves = [_rebuild(entry, leaf, payload) for entry, (_, leaf) in zip(entries, like_leaves, strict=True)]
    except (ValueError, TypeError, KeyError, IndexError, OverflowError) as e:  # e.g. an unknown key impl
        raise CheckpointError(f"{who}: {name!r} has a leaf that cannot be rebuilt ({e})") from None
    out: T = _tree.tree_unflatten(_tree.tree_structure(like), leaves)
    return out


def _placement(leaf: Any) -> Any:
    """The sharding to place a loaded leaf with: ``like``'s, unless ``like``'s array is uncommitted.

    An uncommitted ``like`` array (the default placement of ``jnp`` arrays) gives an uncommitted
    loaded array, so a jitted function fed with the loaded tree reuses the program compiled for
    the fresh one instead of compiling again for committed inputs.
    """
    if isinstance(leaf, jax.Array) and not leaf.committed:
        return None
    if isinstance(leaf, (jax.Array, jax.ShapeDtypeStruct)):
        return getattr(leaf, "sharding", None)
    return None


def _rebuild(entry: dict[str, Any], leaf: Any, payload: memoryview) -> Any:
    shape = tuple(entry["shape"])
    raw = payload[entry["offset"]: entry["offset"] + entry["nbytes"]]
    sharding = _placement(leaf)
    if entry["key_impl"] is not None:
        impl = entry["key_impl"]
        data = np.frombuffer(raw, dtype=np.uint32).reshape(shape + (-1,)).copy()
        key = cast(Array, jax.random.wrap_key_data(jnp.asarray(data), impl=impl))  # unannotated in jax
        return key if sharding is None else _jax.device_put(key, sharding)
    if isinstance(leaf, (bool, int, float, complex)) and not hasattr(leaf, "dtype"):
        arr = np.frombuffer(raw, dtype=np.asarray(leaf).dtype).reshape(shape)
        return type(leaf)(arr.item())
    dtype = jnp.dtype(entry["dtype"])
    arr = np.frombuffer(raw, dtype=dtype).reshape(shape).copy()
    if isinstance(leaf, np.ndarray) or isinstance(leaf, np.generic):
        return arr if isinstance(leaf, np.ndarray) else arr[()]
    return jnp.asarray(arr) if sharding is None else _jax.device_put(arr, sharding)
