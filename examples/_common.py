"""What the lesson scripts share: the command-line preamble, the digits split, one training run.

* :func:`parser` -- ``--quick``, ``--out`` and, where a script has them, ``--seeds``/``--epochs``;
* :func:`load_split` -- scikit-learn's digits split into train / test (and validation) parts,
  min-max scaled with statistics of the training part only;
* :func:`fit_run` -- a whole training run (every epoch inside ``lax.scan``, validated after each),
  the one place where the examples call ``functrain.train``'s run API.

The scripts import it as ``from _common import ...`` (``examples/`` is on the path when a script
runs; the tests put it there for the duration of a test).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, NamedTuple

import jax

from functrain import data, train
from functrain.typing import Array, PRNGKey, PyTree

XY = tuple[Array, Array]


def parser(doc: str | None, *, seeds: int | None = None, epochs: int | None = None,
           out: bool = True) -> argparse.ArgumentParser:
    """An argument parser described by the first line of ``doc``, with the options every lesson has.

    Args:
        doc: the script's docstring (its first line is the description).
        seeds: the default of ``--seeds`` (the option is left out when ``None``).
        epochs: the default of ``--epochs`` (left out when ``None``).
        out: add ``--out DIR`` (default ``examples/out``) for the figures.
    """
    p = argparse.ArgumentParser(description=(doc or "").splitlines()[0] if doc else None)
    p.add_argument("--quick", action="store_true", help="tiny run in seconds (smoke test)")
    if out:
        p.add_argument("--out", type=Path, default=Path("examples/out"), help="directory for the figures")
    if seeds is not None:
        p.add_argument("--seeds", type=int, default=seeds, help=f"seeds, trained at once (default {seeds})")
    if epochs is not None:
        p.add_argument("--epochs", type=int, default=epochs, help=f"epochs (default {epochs})")
    return p


class Split(NamedTuple):
    """Scaled ``(x, y)`` parts of the digits; ``val`` only when a validation part was asked for."""

    train: XY
    test: XY
    val: XY | None = None


def _key(key: int | PRNGKey) -> PRNGKey:
    return jax.random.key(key) if isinstance(key, int) else key


def load_split(*, test_fraction: float = 0.25, feature_range: tuple[float, float] | None = (-1.0, 1.0),
               split_key: int | PRNGKey = 0, val_fraction: float | None = None, val_key: int | PRNGKey = 2,
               as_images: bool = False, train_size: int | None = None) -> Split:
    """The digits, split into train and test (and validation) parts and min-max scaled.

    Args:
        test_fraction: the share of the digits held out for testing (by ``split_key``).
        feature_range: scale every pixel (images: all pixels together) to this range with the
            training part's minimum and maximum; ``None`` keeps the raw 0..16 values.
        split_key: the key (or seed) of the train/test split.
        val_fraction: carve this share of the training part out for validation (by ``val_key``).
        val_key: the key (or seed) of the train/validation split.
        as_images: ``(n, 8, 8, 1)`` images instead of ``(n, 64)`` vectors.
        train_size: keep only the first ``train_size`` training examples.
    """
    split = data.split_dataset(_key(split_key), data.load_digits(as_images=as_images), test_fraction=test_fraction)
    train_part, val_part = split.train, None
    if val_fraction is not None:
        carved = data.split_dataset(_key(val_key), train_part, test_fraction=val_fraction)
        train_part, val_part = carved.train, carved.test
    if train_size is not None:
        train_part = train_part._replace(x=train_part.x[:train_size], y=train_part.y[:train_size])
    parts = [train_part, split.test] + ([val_part] if val_part is not None else [])
    if feature_range is None:
        xs = [p.x for p in parts]
    else:
        stats = data.fit_min_max(train_part.x, feature_range=feature_range, axis=(0, 1, 2) if as_images else 0)
        xs = [data.min_max_scale(stats, p.x) for p in parts]
    pairs = [(x, p.y) for x, p in zip(xs, parts)]
    return Split(pairs[0], pairs[1], pairs[2] if val_part is not None else None)


def fit_run(step: train.TrainStep, train_state: train.TrainState[Any, Any, Any], train_data: PyTree,
            key: PRNGKey, *, epochs: int, batch_size: int = 32, eval_step: train.EvalStep | None = None,
            val_data: PyTree = None,
            eval_batch_size: int | None = None) -> tuple[train.TrainState[Any, Any, Any], train.EpochMetrics]:
    """Train for ``epochs`` shuffled epochs in one ``lax.scan``, evaluating ``val_data`` after each.

    Pure and traceable (use it inside ``jit``/``vmap``). Returns the final train state and the
    per-epoch metrics (``metrics.train[name]``, ``metrics.val[name]``: ``(epochs,)`` arrays).
    """
    options = train.FitOptions(batch_size=batch_size, eval_step=eval_step,
                               eval_batch_size=eval_batch_size)
    fit_state = train.init_fit_state(train_state, options)
    fit_state, metrics = train.fit_scan(step, fit_state, train_data, key, options, epochs=epochs,
                                        val_data=val_data)
    return train.final_train_state(fit_state, options), metrics
