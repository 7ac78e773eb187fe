"""Layer geometry shared by the layer modules: padding, sliding-window sizes, ``input_shape`` checks.

Argument checks of Python values (counts, fractions, window sizes, strides) and the chex shape
assertions on arrays go through :mod:`functrain._validate`; this private module holds only what is
specific to layers -- the padding of a window op, the output size of a sliding window, the
spatial geometry of a convolution, and the check of a composable layer's ``input_shape`` -- with
errors in ``_validate``'s one message style (``who: argument 'name' must be ..., got ...``).

Everything here looks only at static information (shapes, Python numbers), so under ``jax.jit`` it
runs once, at trace time, and adds nothing to the compiled program.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence
from typing import Literal, TypeAlias

import numpy as np

from functrain import _validate
from functrain.typing import Shape

PaddingLike: TypeAlias = Literal["SAME", "VALID"] | int | Sequence[tuple[int, int]]
"""Padding of a convolution or pooling window.

``"SAME"`` (output size ``ceil(n / stride)``, zero/neutral padding split evenly, the extra element
at the end), ``"VALID"`` (no padding), an ``int`` ``p`` (``p`` elements on both sides of every
spatial axis) or one ``(low, high)`` pair per spatial axis.
"""

Pads: TypeAlias = tuple[tuple[int, int], ...]
PadSpec: TypeAlias = Literal["SAME", "VALID"] | Pads

LAYOUTS: dict[int, tuple[str, str, str]] = {
    1: ("NWC", "WIO", "NWC"),
    2: ("NHWC", "HWIO", "NHWC"),
    3: ("NDHWC", "DHWIO", "NDHWC"),
}
"""``lax.conv_general_dilated`` dimension numbers (input, kernel, output) per number of spatial axes."""


def fmt(shape: Sequence[int]) -> str:
    """``(2, 3)`` style text for a shape (``-1`` shown as ``-1``)."""
    return str(tuple(int(d) for d in shape))


def layout(spatial: int) -> str:
    """``(N, H, W, C)`` style text for a channels-last input with ``spatial`` spatial axes."""
    names = {1: ("W",), 2: ("H", "W"), 3: ("D", "H", "W")}.get(spatial)
    axes = names if names is not None else tuple(f"S{i}" for i in range(spatial))
    return "(" + ", ".join(("N", *axes, "C")) + ")"


def normalize_padding(padding: PaddingLike, n: int, who: str) -> PadSpec:
    """Validate ``padding`` for ``n`` spatial dimensions; keep strings, expand ints to pairs.

    Raises:
        TypeError: not a string, an int or a sequence of ``(low, high)`` int pairs.
        ValueError: an unknown string, a negative size, or a wrong number of pairs.
    """
    expectation = f"'SAME', 'VALID', an int >= 0 or {n} (low, high) pair{'s' if n > 1 else ''} of ints >= 0"
    if isinstance(padding, str):
        if padding not in ("SAME", "VALID"):
            _validate.fail(who, "padding", expectation, padding)
        return "SAME" if padding == "SAME" else "VALID"
    if isinstance(padding, (bool, np.bool_)):
        _validate.fail(who, "padding", expectation, padding, error=TypeError)
    if isinstance(padding, (int, np.integer)):
        if padding < 0:
            _validate.fail(who, "padding", expectation, padding)
        return ((int(padding), int(padding)),) * n
    try:
        pairs = tuple((operator.index(lo), operator.index(hi)) for lo, hi in padding)
    except (TypeError, ValueError):
        _validate.fail(who, "padding", expectation, padding, error=TypeError)
    if len(pairs) != n or any(lo < 0 or hi < 0 for lo, hi in pairs):
        _validate.fail(who, "padding", expectation, padding)
    return pairs


def window_output_size(size: int, window: int, stride: int, dilation: int,
                       pad: Literal["SAME", "VALID"] | tuple[int, int]) -> int | None:
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


def spatial_output(spatial: Sequence[int], window: Sequence[int], strides: Sequence[int],
                   dilation: Sequence[int], padding: PadSpec, *, who: str, name: str, what: str,
                   got: object) -> Shape:
    """Spatial output shape of a window op.

    Args:
        spatial: the input's spatial sizes.
        window: the window (or kernel) size per spatial axis.
        strides: the stride per spatial axis.
        dilation: the dilation per spatial axis.
        padding: normalized padding (see :func:`normalize_padding`).
        who: the public function or layer, for the error message.
        name: the argument that carries the input (``"x"`` or ``"input_shape"``).
        what: ``"kernel"`` or ``"window"``.
        got: the input (array or shape) shown in the message.

    Raises:
        ValueError: the (dilated) window is larger than the (padded) input on some axis.
    """
    out: list[int] = []
    for axis, (n, k, s, d) in enumerate(zip(spatial, window, strides, dilation, strict=True)):
        pad: Literal["SAME", "VALID"] | tuple[int, int] = padding if isinstance(padding, str) else padding[axis]
        o = window_output_size(n, k, s, d, pad)
        if o is None or o < 1:
            spans = tuple((kk - 1) * dd + 1 for kk, dd in zip(window, dilation, strict=True))
            how = f"padding {padding!r}" if isinstance(padding, str) else f"padding {padding}"
            _validate.fail(
                who, name,
                f"{'a shape' if name == 'input_shape' else 'an array'} whose spatial sizes fit the "
                f"{what} {tuple(window)} (dilated extent {spans}) with {how}", got,
                detail=f"spatial size {tuple(spatial)} is too small on spatial axis {axis}")
        out.append(o)
    return tuple(out)


def conv_geometry(kernel: Sequence[int], x_shape: Sequence[int], *, stride: int | Sequence[int],
                  padding: PaddingLike, dilation: int | Sequence[int], who: str, name: str,
                  got: object) -> tuple[tuple[int, ...], PadSpec, tuple[int, ...], Shape]:
    """Strides, padding, dilation and output spatial shape of a convolution (channels last).

    Args:
        kernel: the HWIO kernel shape ``(*kernel_size, c_in, c_out)``.
        x_shape: the input shape ``(..., *spatial, c_in)`` (rank and channels already checked).
        stride: as given by the user (int or one per spatial axis).
        padding: as given by the user.
        dilation: as given by the user.
        who: the public function or layer, for error messages.
        name: the argument that carries the input (``"x"`` or ``"input_shape"``).
        got: the input shown in error messages.

    Raises:
        TypeError, ValueError: bad ``stride``, ``padding`` or ``dilation``, or a kernel larger
            than the (padded) input.
    """
    spatial = len(kernel) - 2
    strides = _validate.check_ints(stride, spatial, who, "stride")
    dil = _validate.check_ints(dilation, spatial, who, "dilation")
    pads = normalize_padding(padding, spatial, who)
    out = spatial_output(tuple(x_shape[-spatial - 1:-1]), tuple(kernel[:spatial]), strides, dil, pads,
                         who=who, name=name, what="kernel", got=got)
    return strides, pads, dil, out


def check_input_shape(input_shape: Sequence[int], who: str, *, rank: int | None = None,
                      min_rank: int | None = None, axes: str = "") -> Shape:
    """Validate a composable layer's ``input_shape`` and return it as a tuple of ints.

    The leading batch size may be ``-1`` (unknown); every other size must be ``>= 1``.

    Args:
        input_shape: the shape given to ``init``.
        who: the layer, for error messages.
        rank: the required rank (batch axis included), if any.
        min_rank: the minimum rank (batch axis included), if any.
        axes: what the axes mean, e.g. ``"(N, H, W, C)"``.

    Raises:
        TypeError: not a sequence of ints.
        ValueError: a wrong rank, a batch size below ``-1`` or another size below 1.
    """
    name = "input_shape"
    try:
        if isinstance(input_shape, (str, bytes)):
            raise TypeError("a string")
        items = tuple(input_shape)
        if any(isinstance(d, (bool, np.bool_)) for d in items):
            raise TypeError("a bool")
        shape = tuple(operator.index(d) for d in items)
    except TypeError:
        _validate.fail(who, name, "a sequence of ints (the batch axis first, -1 if unknown)",
                       input_shape, error=TypeError)
    hint = f" {axes}" if axes else ""
    if rank is not None and len(shape) != rank:
        _validate.fail(who, name, f"a shape of rank {rank}{hint}, batch axis included", shape)
    if min_rank is not None and len(shape) < min_rank:
        _validate.fail(who, name, f"a shape of rank >= {min_rank}{hint}, batch axis included", shape)
    if shape and shape[0] < -1:
        _validate.fail(who, name, "a shape whose batch size is -1 (unknown) or >= 0", shape)
    if any(d < 1 for d in shape[1:]):
        _validate.fail(who, name, "a shape whose non-batch sizes are >= 1", shape)
    return shape


def check_last_axis(x: object, size: int, who: str, name: str = "x") -> None:
    """chex check (trace time only) that the array ``x`` has ``size`` entries in its last axis.

    Raises:
        TypeError: ``x`` is not an array.
        ValueError: ``x`` is a scalar or its last axis is not ``size`` long, e.g.
            ``dense: argument 'x' must be an array of shape (*, 5), got an array of shape (4, 6) ...``.
    """
    ndim = getattr(x, "ndim", None)
    if not isinstance(ndim, int):
        _validate.fail(who, name, "an array", x, error=TypeError)
    if ndim < 1:
        _validate.fail(who, name, f"an array of shape (..., {size})", x)
    _validate.check_shape(x, (None,) * (ndim - 1) + (size,), who, name)
