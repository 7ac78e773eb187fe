"""An exponential moving average of the updates, optionally debiased (Adam's first moment alone).

:func:`ema` outputs ``m_t = beta m_{t-1} + (1 - beta) g_t`` (divided by ``1 - beta^t`` when
debiased): a smoothed gradient. Compare :func:`~functrain.optim.trace` (momentum,
``v_t = gamma v_{t-1} + g_t``, not normalized). Averages of the *parameters* (EMA/Polyak and SWA
weights for evaluation) are in :mod:`functrain.train.averaging`.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from functrain import _validate
from functrain._tree import tree_map, tree_zeros_like
from functrain.optim._hyper import increment, like, value_at, zero_step
from functrain.optim.base import GradientTransformation
from functrain.typing import Array, PyTree, ScalarOrSchedule

__all__ = ["EmaState", "ema"]


class EmaState(NamedTuple):
    """State of :func:`ema`.

    Attributes:
        step: int32 scalar, the number of updates done (``t`` of the bias correction).
        ema: the (not debiased) moving average ``m`` of the updates.

    Example:
        >>> state = ft.optim.ema(0.9).init({"w": jnp.ones(2)})
        >>> int(state.step), state.ema["w"].tolist()
        (0, [0.0, 0.0])
    """

    step: Array
    ema: PyTree


def ema(decay: ScalarOrSchedule, debias: bool = True) -> GradientTransformation[EmaState]:
    r"""Replace the updates by their exponential moving average.

    .. math::

        m_t = \beta m_{t-1} + (1-\beta) g_t, \qquad
        u_t = m_t / (1 - \beta^t) \ \text{(debiased)} \quad\text{or}\quad u_t = m_t

    with ``m_0 = 0``; the debiased average of a constant gradient is that gradient from the first
    step on (the bias correction of Kingma & Ba, "Adam", ICLR 2015). A scheduled ``beta`` is
    evaluated at the step count before the update and used in the correction as ``1 - beta_t^t``.
    Same as ``optax.ema``.

    Args:
        decay: ``beta`` in [0, 1): a number, a scalar array or a schedule.
        debias: divide by ``1 - beta^t``.

    Returns:
        A :class:`~functrain.optim.GradientTransformation` with :class:`EmaState`.

    Raises:
        TypeError: ``decay`` of the wrong type or ``debias`` not a bool.
        ValueError: a concrete ``decay`` outside [0, 1).

    Example:
        >>> tx = ft.optim.ema(0.5)
        >>> state = tx.init({"w": jnp.zeros(1)})
        >>> for g in (2.0, 2.0, 8.0):  # m: 1, 1.5, 4.75; debiased: 2, 2, 4.75 / 0.875
        ...     u, state = tx.update({"w": jnp.asarray([g])}, state)
        >>> round(float(u["w"][0]), 4), round(float(state.ema["w"][0]), 4)
        (5.4286, 4.75)
    """
    fn = "ema"
    _validate.check_hyperparameter(decay, fn, "decay", low=0.0, high=1.0, high_open=True)
    _validate.check_bool(debias, fn, "debias")

    def init(params: PyTree) -> EmaState:
        return EmaState(zero_step(), tree_zeros_like(params))

    def update(
        updates: PyTree, state: EmaState, params: PyTree | None = None, **extra_args: Any
    ) -> tuple[PyTree, EmaState]:
        del params, extra_args
        _validate.check_same_structure(state.ema, updates, fn, "updates",
                                       "state.ema (the params given to init)")
        d = value_at(decay, state.step)
        new_ema = tree_map(lambda g, m: like(1 - d, m) * g + like(d, m) * m, updates, state.ema)
        t = increment(state.step)
        out = new_ema
        if debias:
            correction = 1 - d**t
            out = tree_map(lambda m: m / correction.astype(m.dtype), new_ema)
        return out, EmaState(t, new_ema)

    return GradientTransformation(init, update)
