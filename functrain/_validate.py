"""The one home of argument checks, and of their message style.

Every public function of functrain checks its arguments through these helpers, so every argument
error reads the same way::

    who: argument 'name' must be <expectation>, got <value>

``TypeError`` when the argument has the wrong kind (a string where a number goes), ``ValueError``
when it has the right kind but a bad value (a negative learning rate, a shape that does not fit).

The checks look only at static information (Python values, shapes, dtypes, tree structures), so
under ``jax.jit`` they run once, at trace time, and add nothing to the compiled program. Traced
values (the hyperparameters of a ``jax.vmap``-ed sweep) cannot be inspected: they pass unchecked.
Shape and tree assertions go through chex (imported on first use, so ``import functrain`` stays
fast) and are re-raised in the message style above.
"""

from __future__ import annotations

import dataclasses

import math
import operator
from collections.abc import Collection, Sequence
from typing import Any, NoReturn, TypeVar

import jax
import jax.core
import numpy as np

from functrain import _tree
from functrain.typing import PyTree

__all__ = [
    "INT32_MAX",
    "check_batch_size",
    "check_bool",
    "check_callable",
    "check_choice",
    "check_fraction",
    "check_hyperparameter",
    "check_int",
    "check_key",
    "check_keys",
    "check_labels",
    "check_ints",
    "check_leading_length",
    "check_number",
    "check_positive",
    "check_rank",
    "check_same_structure",
    "check_shape",
    "check_transformation",
    "concrete_float",
    "describe",
    "fail",
    "is_traced",
    "message",
]

INT32_MAX = int(np.iinfo(np.int32).max)
"""The largest count that fits the int32 counters of optimizer and training states."""

_T = TypeVar("_T")

# ----------------------------------------------------------------------------------------------
# The message style


def describe(value: object) -> str:
    """A short description of ``value`` for the ``got ...`` part of a message.

    Numbers, strings, ``None`` and bools are shown as their ``repr``; arrays by shape and dtype
    (``an array of shape (2, 3) and dtype float32``), traced arrays as such; functions by name;
    anything else by type and (shortened) ``repr``.
    """
    if value is None or isinstance(value, str) or _tree.is_bool(value) or _tree.is_real(value):
        text = repr(value.item() if isinstance(value, np.generic) else value)
        return text if len(text) <= 80 else text[:77] + "..."
    if isinstance(value, jax.core.Tracer):
        return f"a traced array of shape {tuple(value.shape)} and dtype {value.dtype}"
    if _tree.is_array(value):
        if value.ndim == 0 and value.size == 1:
            return f"{value.item()!r} (a 0-d array of dtype {value.dtype})"
        return f"an array of shape {tuple(value.shape)} and dtype {value.dtype}"
    fields: tuple[str, ...] = getattr(value, "_fields", ()) if issubclass(type(value), tuple) else ()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):  # a Layer: only functions
        names = tuple(f.name for f in dataclasses.fields(value))
        fields = names if all(callable(getattr(value, f)) for f in names) else ()
    if any(callable(getattr(value, f)) for f in fields):
        return f"a {type(value).__name__} value"  # e.g. a Layer: its functions' reprs say nothing
    if callable(value) and hasattr(value, "__name__") and not isinstance(value, type):
        return f"the function {value.__name__}"
    text = repr(value)
    if len(text) > 80:
        text = text[:77] + "..."
    return f"{type(value).__name__} {text}"


def message(who: str, name: str, expectation: str, got: object) -> str:
    """``who: argument 'name' must be <expectation>, got <description of got>``."""
    return f"{who}: argument '{name}' must be {expectation}, got {describe(got)}"


def fail(who: str, name: str, expectation: str, got: object, *,
         error: type[Exception] = ValueError, detail: str = "") -> NoReturn:
    """Raise ``error`` (``ValueError`` by default) with the standard message.

    Args:
        who: the public function (or ``Layer``/constructor) being called.
        name: the argument's name as the user wrote it.
        expectation: what the argument must be, e.g. ``"an int >= 1"``.
        got: the value that came (described by :func:`describe`).
        error: the exception class: ``TypeError`` for the wrong kind of value, ``ValueError``
            for a bad value of the right kind.
        detail: an optional sentence appended after ``got ...`` (``"; " + detail``).
    """
    text = message(who, name, expectation, got)
    raise error(f"{text}; {detail}" if detail else text)


# ----------------------------------------------------------------------------------------------
# Python values


def is_traced(value: object) -> bool:
    """Whether ``value`` is a tracer (inside ``jit``/``vmap``/``grad``): its value is unknown."""
    return isinstance(value, jax.core.Tracer)


def check_bool(value: object, who: str, name: str) -> bool:
    """``value`` as a Python bool (NumPy bools accepted); ``TypeError`` otherwise."""
    if _tree.is_bool(value):
        return bool(value)
    fail(who, name, "a bool", value, error=TypeError)


def check_int(value: object, who: str, name: str, *, low: int | None = None,
              high: int | None = None) -> int:
    """``value`` as a Python int in ``[low, high]`` (NumPy integers accepted, bools refused).

    Raises:
        TypeError: ``value`` is not an integer (floats, bools and strings are refused).
        ValueError: ``value`` is outside ``[low, high]``.
    """
    if _tree.is_bool(value) or not _tree.is_int(value):
        fail(who, name, _int_range(low, high), value, error=TypeError)
    v = int(value)
    if (low is not None and v < low) or (high is not None and v > high):
        fail(who, name, _int_range(low, high), v)
    return v


def _int_range(low: int | None, high: int | None) -> str:
    if low is not None and high is not None:
        return f"an int in [{low}, {high}]"
    return "an int" + (f" >= {low}" if low is not None else f" <= {high}" if high is not None else "")


def check_ints(value: object, n: int, who: str, name: str, *, low: int = 1) -> tuple[int, ...]:
    """An int, or ``n`` ints, as a tuple of ``n`` ints each ``>= low`` (``3`` is ``(3, 3)`` in 2-D).

    ``TypeError`` for anything but ints; ``ValueError`` for a wrong length or an entry below ``low``.
    """
    expectation = f"an int or a sequence of {n} ints, each >= {low}"
    if _tree.is_bool(value):
        fail(who, name, expectation, value, error=TypeError)
    if _tree.is_int(value):
        out: tuple[int, ...] = (int(value),) * n
    else:
        try:
            if not _tree.is_iterable(value):
                raise TypeError("not iterable")
            items: tuple[object, ...] = tuple(value)
            if any(isinstance(v, (bool, np.bool_)) for v in items):
                raise TypeError("bool")
            out = tuple(operator.index(v) for v in items)  # type: ignore[arg-type]  # non-ints raise TypeError, handled below
        except TypeError:
            fail(who, name, expectation, value, error=TypeError)
        if len(out) != n:
            fail(who, name, expectation, value)
    if any(v < low for v in out):
        fail(who, name, expectation, value)
    return out


def concrete_float(value: object, who: str, name: str) -> float | None:
    """``float(value)`` for a concrete real scalar (Python/NumPy number, 0-d array), ``None`` if traced.

    ``TypeError`` for bools, non-numbers and non-real dtypes; ``ValueError`` for non-scalar arrays.
    """
    if _tree.is_bool(value):
        fail(who, name, "a number", value, error=TypeError)
    if _tree.is_real(value):
        return float(value)
    if _tree.is_array(value):
        if value.ndim != 0:
            fail(who, name, "a scalar", value)
        if not (np.issubdtype(value.dtype, np.floating) or np.issubdtype(value.dtype, np.integer)):
            fail(who, name, "a real number", value, error=TypeError)
        if is_traced(value):
            return None
        try:
            return float(np.asarray(value))
        except (jax.errors.TracerArrayConversionError, jax.errors.ConcretizationTypeError):
            return None
    fail(who, name, "a number", value, error=TypeError)


def _range_text(low: float | None, high: float | None, low_open: bool, high_open: bool,
                finite: bool) -> str:
    if low is not None and high is not None:
        return f"in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
    parts: list[str] = []
    if low is not None:
        parts.append(f"{'>' if low_open else '>='} {low:g}")
    if high is not None:
        parts.append(f"{'<' if high_open else '<='} {high:g}")
    bound = " and ".join(parts)
    if finite:
        return f"a finite number {bound}".rstrip()
    return bound or "a real number"


def check_number(value: object, who: str, name: str, *, low: float | None = None,
                 high: float | None = None, low_open: bool = False, high_open: bool = False,
                 finite: bool = False) -> float | None:
    """A real scalar in the given range, as a float; ``None`` when traced (it cannot be checked).

    NaN is always refused; infinities only with ``finite=True`` or when outside the bounds.
    ``TypeError`` for non-numbers; ``ValueError`` for non-scalars, NaN and values out of range.
    """
    v = concrete_float(value, who, name)
    if v is None:
        return None
    ok = not math.isnan(v) and (not finite or math.isfinite(v))
    if low is not None:
        ok = ok and (v > low if low_open else v >= low)
    if high is not None:
        ok = ok and (v < high if high_open else v <= high)
    if not ok:
        fail(who, name, _range_text(low, high, low_open, high_open, finite), value)
    return v


def check_positive(value: object, who: str, name: str) -> float:
    """A concrete (not traced), finite number ``> 0`` such as a scale, returned as a float."""
    v = check_number(value, who, name, low=0.0, low_open=True, finite=True)
    if v is None:
        fail(who, name, "a concrete (not traced) finite number > 0", value, error=TypeError)
    return v


def check_fraction(value: object, who: str, name: str, *, closed_right: bool = False) -> None:
    """A probability in ``[0, 1)`` (or ``[0, 1]``); traced values pass."""
    check_number(value, who, name, low=0.0, high=1.0, high_open=not closed_right)


def check_hyperparameter(value: object, who: str, name: str, *, low: float | None = None,
                         high: float | None = None, low_open: bool = False,
                         high_open: bool = False, schedule_ok: bool = True) -> None:
    """A hyperparameter: a number, a (possibly traced) scalar array, or a schedule ``step -> value``.

    Concrete values are range-checked; traced values and schedules pass (their values are unknown).
    """
    if callable(value):
        if schedule_ok:
            return
        fail(who, name, "a number or a scalar array (not a schedule)", value, error=TypeError)
    if not (_tree.is_bool(value) or _tree.is_real(value) or _tree.is_array(value)):
        expectation = "a number, a scalar array or a schedule" if schedule_ok else "a number or a scalar array"
        fail(who, name, expectation, value, error=TypeError)
    check_number(value, who, name, low=low, high=high, low_open=low_open, high_open=high_open)


def check_choice(value: object, choices: Collection[_T], who: str, name: str) -> _T:
    """``value`` if it is one of ``choices``, else ``ValueError`` listing them."""
    try:
        ok = value in choices
    except TypeError:  # unhashable
        ok = False
    if not ok:
        listed = ", ".join(repr(c) for c in choices)
        fail(who, name, f"one of {listed}", value)
    return value  # type: ignore[return-value]  # membership in choices proves the type


def check_callable(value: object, who: str, name: str, what: str = "a function") -> None:
    """``TypeError`` unless ``value`` is callable."""
    if not callable(value):
        fail(who, name, what, value, error=TypeError)


def check_transformation(value: object, who: str, name: str) -> None:
    """``TypeError`` unless ``value`` is a gradient transformation (optax's ``init``/``update``)."""
    if not (callable(getattr(value, "init", None)) and callable(getattr(value, "update", None))):
        fail(who, name, "a gradient transformation (an object with init and update functions, "
             "e.g. functrain.optim.adam(1e-3))", value, error=TypeError)


# ----------------------------------------------------------------------------------------------
# Arrays and trees (chex assertions, messages in the style above)


def _chex() -> Any:
    import chex  # imported on first use: it costs ~0.1 s, which `import functrain` does not pay

    return chex


def check_rank(x: object, rank: int | Sequence[int], who: str, name: str, *,
               layout: str = "") -> None:
    """``ValueError`` unless the array ``x`` has rank ``rank`` (or one of a sequence of ranks).

    ``layout`` says what the axes mean, e.g. ``"(batch, height, width, channels)"``.
    """
    ranks = {rank} if isinstance(rank, int) else set(rank)
    if not hasattr(x, "shape"):
        fail(who, name, "an array", x, error=TypeError)
    try:
        _chex().assert_rank(x, ranks)
    except AssertionError:
        wanted = " or ".join(str(r) for r in sorted(ranks))
        fail(who, name, f"an array of rank {wanted}{' ' + layout if layout else ''}", x)


def check_shape(x: object, shape: Sequence[int | None], who: str, name: str) -> None:
    """``ValueError`` unless the array ``x`` has ``shape`` (``None`` entries match any size)."""
    if not hasattr(x, "shape"):
        fail(who, name, "an array", x, error=TypeError)
    try:
        _chex().assert_shape(x, tuple(shape))
    except AssertionError:
        dims = ["*" if d is None else str(d) for d in shape]
        wanted = f"({dims[0]},)" if len(dims) == 1 else "(" + ", ".join(dims) + ")"
        fail(who, name, f"an array of shape {wanted}", x)


def check_same_structure(expected: PyTree, got: PyTree, who: str, name: str,
                         expected_name: str) -> None:
    """``TypeError`` unless ``got`` has the tree structure of ``expected``.

    The message names the missing and unexpected leaf paths, e.g.
    ``apply_updates: argument 'updates' must be a pytree with the structure of the params, got
    missing leaves ["[1].b"]``.
    """
    try:
        _chex().assert_trees_all_equal_structs(expected, got)
    except AssertionError:
        diff = _tree.describe_difference(expected, got) or "a different structure"
        raise TypeError(f"{who}: argument '{name}' must be a pytree with the structure of "
                        f"{expected_name}, got {diff}") from None


def check_leading_length(tree: PyTree, who: str, name: str = "data", *,
                         allow_empty: bool = False) -> int:
    """``n``, the common leading length (number of examples) of the arrays in ``tree``, e.g. ``(x, y)``.

    ``TypeError`` for a non-array leaf; ``ValueError`` for no arrays, a scalar leaf, different
    leading lengths, or no examples (unless ``allow_empty``).
    """
    leaves = _tree.tree_leaves_with_path(tree)
    if not leaves:
        fail(who, name, "a pytree with at least one array", tree)
    lengths: dict[str, int] = {}
    for path, leaf in leaves:
        shape = getattr(leaf, "shape", None)
        if shape is None:
            fail(who, name, "a pytree of arrays", leaf, error=TypeError,
                 detail=f"at {name}{path}")
        if len(shape) == 0:
            fail(who, name, "arrays with a leading example axis", leaf,
                 detail=f"a scalar at {name}{path}")
        lengths[f"{name}{path}"] = int(shape[0])
    if len(set(lengths.values())) != 1:
        raise ValueError(f"{who}: argument '{name}' must be arrays with the same leading length "
                         f"(number of examples), got {lengths}")
    n = next(iter(lengths.values()))
    if n == 0 and not allow_empty:
        raise ValueError(f"{who}: argument '{name}' must be arrays with at least one example, got "
                         "leading length 0")
    return n


def check_batch_size(batch_size: object, n: int, who: str, name: str = "batch_size") -> int:
    """``batch_size`` as an int in ``[1, n]`` (``n`` examples are available)."""
    bs = check_int(batch_size, who, name, low=1)
    if bs > n:
        fail(who, name, f"an int <= the number of examples ({n})", bs)
    return bs


def check_labels(labels: object, num_classes: int | None, who: str, name: str = "labels") -> None:
    """Integer class labels, each in ``[0, num_classes)`` (only ``>= 0`` when ``num_classes`` is None).

    Runs on the host, on concrete arrays only (a traced array passes: its values are unknown).
    The range is checked on the values as given, before any cast, so ``2**31`` is not silently
    wrapped to a negative int32.

    ``TypeError`` for non-integer labels; ``ValueError`` naming how many labels are out of range
    and the first one's index and value.
    """
    if is_traced(labels):
        return
    if not _tree.is_array(labels):
        fail(who, name, "an array of integer class labels", labels, error=TypeError)
    arr = np.asarray(labels)
    if not np.issubdtype(arr.dtype, np.integer):
        fail(who, name, "an array of integer class labels", labels, error=TypeError)
    if arr.size == 0:
        return
    flat = arr.reshape(-1)
    bad = flat < 0
    if num_classes is not None:
        bad = bad | (flat >= num_classes)
    n_bad = int(np.count_nonzero(bad))
    if n_bad:
        first = int(np.flatnonzero(bad)[0])
        where = np.unravel_index(first, arr.shape)
        index = where[0] if arr.ndim == 1 else tuple(int(i) for i in where)
        wanted = f"in [0, {num_classes})" if num_classes is not None else ">= 0"
        raise ValueError(f"{who}: argument '{name}' must be class labels {wanted}, got {n_bad} "
                         f"out of range (the first at index {index}: {flat[first].item()})")


def check_key(key: object, who: str, name: str = "key") -> None:
    """One PRNG key: a typed key scalar (``jax.random.key``) or a raw ``uint32[2]`` key."""
    if _tree.is_array(key):
        if jax.numpy.issubdtype(key.dtype, jax.dtypes.prng_key) and key.ndim == 0:
            return
        if key.dtype == np.uint32 and key.shape == (2,):
            return
    fail(who, name, "a PRNG key (jax.random.key(seed), or a raw uint32[2] key)", key,
         error=TypeError)


def check_keys(keys: object, who: str, name: str = "keys") -> int:
    """A batch of PRNG keys (typed ``key<impl>[n]`` or raw ``uint32[n, 2]``); returns ``n``."""
    if not isinstance(keys, jax.Array):
        fail(who, name, "a batch of PRNG keys (e.g. jax.random.split(key, n))", keys,
             error=TypeError)
    if jax.numpy.issubdtype(keys.dtype, jax.dtypes.prng_key):
        if keys.ndim != 1:
            fail(who, name, "a 1-d batch of typed keys", keys)
        return int(keys.shape[0])
    if keys.dtype != np.uint32 or keys.ndim != 2:
        fail(who, name, "a batch of PRNG keys (typed keys of shape (n,) or raw uint32 keys of "
             "shape (n, 2))", keys, error=TypeError)
    return int(keys.shape[0])

