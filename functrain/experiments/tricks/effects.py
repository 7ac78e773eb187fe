"""Did a row of the trick table change anything? Its change versus the row above, against the seed noise.

Every row of a section trains the same seeds, so each row's test accuracy and test loss come as
one number per seed. :func:`change` compares a row with the row it adds its trick to: the mean
change ``delta = mean(row) - mean(reference)``, and the *seed spread* ``s = max(std(row),
std(reference))``, the larger of the two population standard deviations over seeds that the
table prints (a single value, the ensemble's, has no spread of its own: the reference's counts).
The change is *shown* when ``|delta| > 2 s`` (:data:`NOISE_FACTOR`): larger than twice the spread
of either row, a difference the seeds' own scatter does not explain. A row counts as shown when its
accuracy or its loss change is (:func:`row_effects`); the others are *within noise*
(:func:`within_noise`). A non-finite value (a diverged seed's loss) leaves that metric unjudged.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

if TYPE_CHECKING:  # table.py imports report.py, which imports this module
    from functrain.experiments.tricks.table import TrickResult

__all__ = ["NOISE_FACTOR", "Change", "RowEffect", "change", "format_change", "reference_rows", "row_effects",
           "within_noise"]

NOISE_FACTOR = 2.0
"""A change is shown when ``|delta|`` exceeds this many seed spreads."""


class Change(NamedTuple):
    """One metric's change versus the reference row.

    Attributes:
        delta: ``mean(row) - mean(reference)`` over seeds.
        spread: ``max(std(row), std(reference))``, population standard deviations over seeds (a
            single value has none: the other row's).
        shown: ``|delta| > NOISE_FACTOR * spread``.
    """

    delta: float
    spread: float
    shown: bool


def change(row: np.ndarray[Any, Any] | None, reference: np.ndarray[Any, Any] | None) -> Change | None:
    """The :class:`Change` of ``row`` versus ``reference`` (per-seed values), ``None`` if not judged.

    ``None`` when either is missing or holds a non-finite value (e.g. the loss of a diverged seed).

    Example:
        >>> from functrain.experiments.tricks.effects import change
        >>> c = change(np.asarray([0.90, 0.92]), np.asarray([0.80, 0.84]))
        >>> round(c.delta, 4), round(c.spread, 4), c.shown
        (0.09, 0.02, True)
        >>> change(np.asarray([0.81, 0.85]), np.asarray([0.80, 0.84])).shown
        False
    """
    if row is None or reference is None:
        return None
    a, b = np.asarray(row, np.float64).reshape(-1), np.asarray(reference, np.float64).reshape(-1)
    if a.size == 0 or b.size == 0 or not (np.isfinite(a).all() and np.isfinite(b).all()):
        return None
    delta = float(np.mean(a) - np.mean(b))
    spread = max(float(np.std(a)) if a.size > 1 else 0.0, float(np.std(b)) if b.size > 1 else 0.0)
    return Change(delta, spread, abs(delta) > NOISE_FACTOR * spread)


class RowEffect(NamedTuple):
    """A row's changes versus its reference row (``None``: not judged)."""

    accuracy: Change | None
    loss: Change | None

    @property
    def shown(self) -> bool:
        """Whether the accuracy or the loss change is larger than twice the seed spread."""
        return any(c is not None and c.shown for c in (self.accuracy, self.loss))


def reference_rows(results: Sequence[TrickResult], cumulative: dict[str, bool] | None = None) -> list[int | None]:
    """For each row, the index of the row it is compared with (``None`` for a section's first row).

    A row of a cumulative section (the classic one) is compared with the row above; a row of a
    section that adds each trick to one baseline (``cumulative[section] = False``, the canon) with
    that section's first row. An ensemble row is always compared with the row above (its members).
    """
    refs: list[int | None] = []
    first = 0
    for i, r in enumerate(results):
        if i == 0 or r.section != results[i - 1].section:
            first = i
            refs.append(None)
        elif r.ensemble or (cumulative or {}).get(r.section, True):
            refs.append(i - 1)
        else:
            refs.append(first)
    return refs


def row_effects(results: Sequence[TrickResult], cumulative: dict[str, bool] | None = None) -> list[RowEffect | None]:
    """Each row's :class:`RowEffect` versus its reference row (:func:`reference_rows`); ``None`` for first rows.

    Example:
        >>> from functrain.experiments.tricks.effects import row_effects
        >>> from functrain.experiments.tricks.table import TrickResult
        >>> def row(label, acc):
        ...     a = np.asarray(acc)
        ...     return TrickResult(label, a, np.ones(2), 0.0, 0.0, 0, None, None, None, test_loss=1 - a)
        >>> effects = row_effects([row("a", [0.5, 0.6]), row("b", [0.9, 0.9]), row("c", [0.91, 0.89])])
        >>> effects[0] is None, effects[1].shown, effects[2].shown
        (True, True, False)
    """
    out: list[RowEffect | None] = []
    for r, ref in zip(results, reference_rows(results, cumulative)):
        if ref is None:
            out.append(None)
            continue
        above = results[ref]
        out.append(RowEffect(change(r.test_accuracy, above.test_accuracy), change(r.test_loss, above.test_loss)))
    return out


def within_noise(results: Sequence[TrickResult], cumulative: dict[str, bool] | None = None) -> list[str]:
    """The labels of the rows (first rows of sections aside) whose changes are all within noise."""
    effects = row_effects(results, cumulative)
    return [r.label for r, e in zip(results, effects) if e is not None and not e.shown]


def format_change(c: Change | None) -> str:
    """``"+0.0810 ✓"`` (shown), ``"+0.0020"`` (within noise), ``"-"`` (not judged)."""
    if c is None:
        return "-"
    return f"{c.delta:+.4f}" + (" ✓" if c.shown else "")
