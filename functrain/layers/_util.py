"""Private validation helpers shared by the layer ops and the composable layers.

Every check here runs in Python on *static* information (shapes, Python numbers), so under
``jax.jit`` it runs once, at trace time, and adds nothing to the compiled program.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Sequence
from typing import Literal, TypeAlias

import jax

from functrain.typing import Array, Shape

PaddingLike: TypeAlias = Literal["SAME", "VALID"] | int | Sequence[tuple[int, int]]
"""Padding of a convolution or pooling window.

``"SAME"`` (output size ``ceil(n / stride)``, zero/neutral padding split evenly, the extra element
at the end), ``"VALID"`` (no padding), an ``int`` ``p`` (``p`` elements on both sides of every
spatial axis) or one ``(low, high)`` pair per spatial axis.
"""

Pads: TypeAlias = tuple[tuple[int, int], ...]


def fmt(shape: Sequence[int]) -> str:
    """``(2, 3)`` style text for a shape (``-1`` shown as ``-1``)."""
    return str(tuple(int(d) for d in shape))


def int_tuple(value: int | Sequence[int], n: int, name: str, who: str, *, minimum: int = 1) -> tuple[int, ...]:
    """Normalize an int or a length-``n`` sequence of ints to a tuple, each ``>= minimum``."""
    if isinstance(value, bool):
        raise TypeError(f"{who}: argument '{name}' must be an int or a sequence of {n} ints, got {value!r}")
    if isinstance(value, int):
        out: tuple[int, ...] = (value,) * n
    else:
        try:
            items = tuple(value)
            if any(isinstance(v, bool) for v in items):
                raise TypeError("bool")
            out = tuple(operator.index(v) for v in items)  # ints, including NumPy integers
        except TypeError as e:
            raise TypeError(
                f"{who}: argument '{name}' must be an int or a sequence of {n} ints, got {value!r}"
            ) from e
        if len(out) != n:
            raise ValueError(f"{who}: argument '{name}' must be an int or a sequence of {n} ints, got {value!r}")
    if any(v < minimum for v in out):
        raise ValueError(f"{who}: argument '{name}' must be >= {minimum} in every dimension, got {value!r}")
    return out


def normalize_padding(padding: PaddingLike, n: int, who: str) -> Literal["SAME", "VALID"] | Pads:
    """Validate ``padding`` for ``n`` spatial dimensions; keep strings, expand ints to pairs."""
    if isinstance(padding, str):
        if padding not in ("SAME", "VALID"):
            raise ValueError(
                f"{who}: argument 'padding' must be 'SAME', 'VALID', an int or {n} (low, high) pairs, "
                f"got {padding!r}"
            )
        return "SAME" if padding == "SAME" else "VALID"
    if isinstance(padding, int):
        if isinstance(padding, bool):
            raise TypeError(f"{who}: argument 'padding' must be 'SAME', 'VALID', an int or (low, high) pairs, "
                            f"got {padding!r}")
        if padding < 0:
            raise ValueError(f"{who}: argument 'padding' must be >= 0, got {padding}")
        return ((padding, padding),) * n
    try:
        pairs = tuple((int(lo), int(hi)) for lo, hi in padding)
    except (TypeError, ValueError) as e:
        raise TypeError(
            f"{who}: argument 'padding' must be 'SAME', 'VALID', an int or {n} (low, high) pairs, "
            f"got {padding!r}"
        ) from e
    if len(pairs) != n or any(lo < 0 or hi < 0 for lo, hi in pairs):
        raise ValueError(
            f"{who}: argument 'padding' must be {n} non-negative (low, high) pairs, got {padding!r}"
        )
    return pairs


def window_output_size(
    size: int,
    window: int,
    stride: int,
    dilation: int,
    pad: Literal["SAME", "VALID"] | tuple[int, int],
) -> int | None:
    """Output length of a sliding window along one axis, or ``None`` if the window does not fit.

    With the dilated window ``k' = (k - 1) d + 1``: ``SAME`` gives ``ceil(n / s)``; ``VALID`` gives
    ``floor((n - k') / s) + 1`` (needs ``n >= k'``); explicit ``(lo, hi)`` gives
    ``floor((n + lo + hi - k') / s) + 1`` (needs ``n + lo + hi >= k'``).
    """
    if pad == "SAME":
        return -(-size // stride)
    span = (window - 1) * dilation + 1
    total = size if pad == "VALID" else size + pad[0] + pad[1]
    if total < span:
        return None
    return (total - span) // stride + 1


def spatial_output(
    spatial: Sequence[int],
    window: Sequence[int],
    strides: Sequence[int],
    dilation: Sequence[int],
    padding: Literal["SAME", "VALID"] | Pads,
    *,
    who: str,
    what: str,
    input_shape: Sequence[int],
) -> Shape:
    """Spatial output shape of a window op; ``ValueError`` when the window is larger than the input."""
    out = []
    for axis, (n, k, s, d) in enumerate(zip(spatial, window, strides, dilation, strict=True)):
        pad: Literal["SAME", "VALID"] | tuple[int, int] = padding if isinstance(padding, str) else padding[axis]
        o = window_output_size(n, k, s, d, pad)
        if o is None or o < 1:
            span = (k - 1) * d + 1
            padded = "" if pad in ("SAME", "VALID") else f" plus padding {pad}"
            raise ValueError(
                f"{who}: the {what} {tuple(window)} (dilated extent {span} on spatial axis {axis}) is larger "
                f"than the input's spatial size {tuple(spatial)}{padded} with padding "
                f"{padding if isinstance(padding, str) else 'explicit'}; input shape {fmt(input_shape)}"
            )
        out.append(o)
    return tuple(out)


def check_input_shape(
    input_shape: Sequence[int], who: str, *, rank: int | None = None, min_rank: int | None = None,
    layout: str = "",
) -> Shape:
    """Validate a Layer ``input_shape``: ints, a leading batch size that may be ``-1``, others ``>= 1``."""
    try:
        shape = tuple(input_shape)
    except TypeError as e:
        raise TypeError(f"{who}: input_shape must be a sequence of ints, got {input_shape!r}") from e
    if not all(isinstance(d, int) and not isinstance(d, bool) for d in shape):
        raise TypeError(f"{who}: input_shape must be a sequence of ints, got {input_shape!r}")
    hint = f" {layout}" if layout else ""
    if rank is not None and len(shape) != rank:
        raise ValueError(
            f"{who}: expected an input_shape of rank {rank}{hint} (leading batch axis included), "
            f"got {fmt(shape)} of rank {len(shape)}"
        )
    if min_rank is not None and len(shape) < min_rank:
        raise ValueError(
            f"{who}: expected an input_shape of rank >= {min_rank}{hint} (leading batch axis included), "
            f"got {fmt(shape)} of rank {len(shape)}"
        )
    if shape and (shape[0] < -1):
        raise ValueError(f"{who}: the batch size in input_shape must be -1 (unknown) or >= 0, got {fmt(shape)}")
    if any(d < 1 for d in shape[1:]):
        raise ValueError(f"{who}: every non-batch dimension of input_shape must be >= 1, got {fmt(shape)}")
    return shape


def check_array_rank(x: Array, who: str, *, rank: int, layout: str) -> None:
    """``ValueError`` unless ``x`` (given to a composable layer) has rank ``rank``."""
    if x.ndim != rank:
        raise ValueError(
            f"{who}: expected an input of rank {rank} {layout} (leading batch axis included), "
            f"got shape {fmt(x.shape)}"
        )


def is_concrete(value: object) -> bool:
    """Whether ``value`` is a Python number or a concrete (non-traced) array."""
    return not isinstance(value, jax.core.Tracer)


def check_fraction(value: float | Array, name: str, who: str, *, closed_right: bool) -> None:
    """``ValueError`` unless a concrete ``value`` lies in ``[0, 1)`` (or ``[0, 1]``); tracers pass."""
    if not is_concrete(value):
        return
    try:
        v = float(value)
    except (TypeError, ValueError) as e:
        raise TypeError(f"{who}: argument '{name}' must be a number, got {value!r}") from e
    ok = 0.0 <= v <= 1.0 if closed_right else 0.0 <= v < 1.0
    if not ok or math.isnan(v):
        interval = "[0, 1]" if closed_right else "[0, 1)"
        raise ValueError(f"{who}: argument '{name}' must be in {interval}, got {value!r}")


def check_positive(value: float, name: str, who: str) -> float:
    """``ValueError`` unless ``value`` is a finite number ``> 0``; return it as a float."""
    try:
        v = float(value)
    except (TypeError, ValueError) as e:
        raise TypeError(f"{who}: argument '{name}' must be a number, got {value!r}") from e
    if not (v > 0.0 and math.isfinite(v)):
        raise ValueError(f"{who}: argument '{name}' must be a finite number > 0, got {value!r}")
    return v


def check_count(value: int, name: str, who: str) -> int:
    """``ValueError`` unless ``value`` is an int ``>= 1``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{who}: argument '{name}' must be an int, got {value!r}")
    if value < 1:
        raise ValueError(f"{who}: argument '{name}' must be >= 1, got {value}")
    return value
