"""What the lesson scripts share: the preamble, the one digits split, training runs and the verdict rule.

* :func:`parser` and :func:`parse_args` -- ``--quick``, ``--out``, ``--seeds``, ``--epochs``; parsing
  also turns on JAX's persistent compilation cache (:func:`functrain.compilation_cache.enable`,
  ``FUNCTRAIN_CACHE`` relocates or disables it), so a second run of a script skips compiling;
* :func:`load_split` -- THE split of every example: scikit-learn's 1797 digits, 25% held out for
  testing (450 digits, the same ones in every script), optionally a validation part carved from
  the training part, fewer training examples or noisy training labels; pixels min-max scaled
  from 0..16 to [-1, 1] with the training part's minimum and maximum (one preprocessing for vectors
  and images alike);
* :func:`fit_run` and :func:`watch_run` -- a whole training run inside ``lax.scan``, pure, so a
  script vmaps it over seeds and traced hyperparameters and compiles few programs;
* :func:`verdict` -- the ONE rule that decides whether an example showed its trick (below).

The verdict rule. Every lesson example compares a treated configuration with a baseline over
several seeds and prints one line, e.g.::

    verdict: batch norm raises test accuracy: effect +0.612 test accuracy vs seed std 0.081: shown

``effect`` is the difference of the means (treated minus baseline). ``spread`` is the pooled
sample standard deviation over seeds, ``sqrt((s_a^2 + s_b^2) / 2)``; when the two runs of a seed
share their initial weights and data order (``paired=True``) it is the sample standard deviation
of the per-seed differences instead, which removes what the pair has in common. The effect is
``shown`` when it points the claimed way and ``|effect| > 2 x spread``, ``reversed`` when it is
that large the other way, and ``within noise`` otherwise. It is a rule of thumb, stricter than it
looks with few seeds but not a significance test: an effect smaller than twice the run-to-run
spread is one a learner could not tell from a lucky seed.

The scripts import it as ``from _common import ...`` (``examples/`` is on the path when a script
runs; the tests put it there for the duration of a test).
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple, ParamSpec, TypeVar

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from functrain import compilation_cache, data, layers, train
from functrain.typing import Array, PRNGKey, PyTree, Shape

P = ParamSpec("P")
R = TypeVar("R")
XY = tuple[Array, Array]
FloatArray = np.ndarray[Any, np.dtype[np.float64]]
FACTOR = 2.0
"""An effect is shown when it exceeds ``FACTOR`` times the spread over seeds."""
TEST_FRACTION = 0.25
"""The share of the digits every example holds out for testing (450 of 1797)."""


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


def parse_args(p: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """Parse ``argv`` and turn on the persistent compilation cache (unless one is already on).

    A process that already chose a cache directory (the test suite does) keeps it.
    """
    args = p.parse_args(argv)
    if not getattr(jax.config, "jax_compilation_cache_dir", None):
        compilation_cache.enable()
    return args


def jit(fn: Callable[P, R]) -> Callable[P, R]:
    """``jax.jit(fn)`` with ``fn``'s signature: pyright sees what ``jax.jit(fn)(...)`` returns as
    Unknown (``jax.jit`` annotates ``fn`` as a bare ``Callable``), the scripts call this instead."""
    return jax.jit(fn)  # pyright: ignore[reportUnknownMemberType]  # fun: a bare Callable in jax


class Split(NamedTuple):
    """Scaled ``(x, y)`` parts of the digits; ``val`` only when a validation part was asked for."""

    train: XY
    test: XY
    val: XY | None = None


def noisy_labels(key: PRNGKey, y: Array, fraction: float, num_classes: int = 10) -> Array:
    """``y`` with a random ``fraction`` of the labels replaced by a different, random class."""
    k_pick, k_shift = jax.random.split(key)
    flip = jax.random.uniform(k_pick, y.shape) < fraction
    shift = jax.random.randint(k_shift, y.shape, 1, num_classes)
    return jnp.where(flip, (y + shift) % num_classes, y)


def load_split(*, feature_range: tuple[float, float] | None = (-1.0, 1.0), validation: bool = False,
               as_images: bool = False, train_size: int | None = None, label_noise: float = 0.0,
               per_feature: bool = False) -> Split:
    """The digits, split into train and test (and validation) parts, scaled to ``feature_range``.

    Args:
        feature_range: min-max scale the pixels to this range with the training part's minimum
            and maximum over all pixels (0 and 16); ``None`` keeps the raw 0..16 values.
        validation: carve 20% of the training part out for validation (269 digits).
        as_images: ``(n, 8, 8, 1)`` images instead of ``(n, 64)`` vectors (the same values).
        train_size: keep only the first ``train_size`` training examples (a random subset).
        label_noise: replace this share of the TRAINING labels by a wrong random class (the
            validation and test labels stay clean).
        per_feature: scale each pixel with its own minimum and maximum (``value_ranges.py``).
    """
    split = data.split_dataset(jax.random.key(0), data.load_digits(as_images=as_images),
                               test_fraction=TEST_FRACTION)
    train_part, val_part = split.train, None
    if validation:
        carved = data.split_dataset(jax.random.key(2), train_part, test_fraction=0.2)
        train_part, val_part = carved.train, carved.test
    if train_size is not None:
        train_part = train_part._replace(x=train_part.x[:train_size], y=train_part.y[:train_size])
    if label_noise > 0:
        train_part = train_part._replace(y=noisy_labels(jax.random.key(3), train_part.y, label_noise))
    parts = [train_part, split.test] + ([val_part] if val_part is not None else [])
    xs = [p.x for p in parts]
    if feature_range is not None:
        axis = 0 if per_feature else tuple(range(train_part.x.ndim))
        stats = data.fit_min_max(train_part.x, feature_range=feature_range, axis=axis)
        xs = [data.min_max_scale(stats, x) for x in xs]
    pairs = [(x, p.y) for x, p in zip(xs, parts)]
    return Split(pairs[0], pairs[1], pairs[2] if val_part is not None else None)


def fit_run(step: train.TrainStep, train_state: train.TrainState[Any, Any, Any], train_data: PyTree,
            key: PRNGKey, *, epochs: int, batch_size: int = 32, eval_step: train.EvalStep | None = None,
            val_data: PyTree = None, eval_batch_size: int | None = None,
            early_stopping: train.EarlyStopping | None = None,
            ) -> tuple[train.TrainState[Any, Any, Any], train.EpochMetrics]:
    """Train for ``epochs`` shuffled epochs in one ``lax.scan``, evaluating ``val_data`` after each.

    Pure and traceable (use it inside ``jit``/``vmap``). Returns the final train state (with an
    ``early_stopping`` rule that restores, the best epoch's parameters) and the per-epoch metrics
    (``metrics.train[name]``, ``metrics.val[name]``: ``(epochs,)`` arrays).
    """
    options = train.FitOptions(batch_size=batch_size, eval_step=eval_step,
                               eval_batch_size=eval_batch_size, early_stopping=early_stopping)
    fit_state = train.init_fit_state(train_state, options)
    fit_state, metrics = train.fit_scan(step, fit_state, train_data, key, options, epochs=epochs,
                                        val_data=val_data)
    return train.final_train_state(fit_state, options), metrics


def _epoch_steps(step: train.TrainStep, state: train.TrainState[Any, Any, Any], train_data: XY, key: PRNGKey,
                 batch_size: int) -> tuple[train.TrainState[Any, Any, Any], dict[str, Array]]:
    """One shuffled epoch (the last partial batch dropped); the metrics of every step, ``(n_batches,)``."""
    n = train_data[0].shape[0] // batch_size * batch_size
    k_perm, k_steps = jax.random.split(key)
    order = jax.random.permutation(k_perm, train_data[0].shape[0])[:n]

    def batched(a: Array) -> Array:
        return a[order].reshape(-1, batch_size, *a.shape[1:])

    batches = jax.tree_util.tree_map(batched, train_data)
    keys = jax.random.split(k_steps, n // batch_size)

    def one(s: train.TrainState[Any, Any, Any], xs: tuple[XY, Array]) -> tuple[Any, dict[str, Array]]:
        s, metrics = step(s, xs[0], xs[1])
        return s, dict(metrics)

    return lax.scan(one, state, (batches, keys))


def watch_run(step: train.TrainStep, train_state: train.TrainState[Any, Any, Any], train_data: XY,
              key: PRNGKey, *, epochs: int, eval_step: train.EvalStep, watch: Mapping[str, XY],
              batch_size: int = 32,
              per_step: bool = False) -> tuple[train.TrainState[Any, Any, Any], dict[str, dict[str, Array]]]:
    """Like :func:`fit_run`, but evaluates every set of ``watch`` in evaluation mode after each epoch.

    ``watch={"train": split.train, "val": split.val}`` gives the training loss as the trained
    network scores it (dropout off, running batch-norm statistics), comparable with the
    validation loss: their gap is the generalization gap. Pure and traceable. Returns the final
    state and ``{name: {metric: (epochs,)}}`` plus ``"steps"``: the step metrics (``"loss"``,
    ``"grad_norm"`` ...), averaged over each epoch, or with ``per_step`` every step's,
    ``(epochs, steps_per_epoch)``.
    """
    def epoch(state: train.TrainState[Any, Any, Any], e: Array) -> tuple[Any, dict[str, dict[str, Array]]]:
        state, steps = _epoch_steps(step, state, train_data, jax.random.fold_in(key, e), batch_size)
        seen = {name: train.evaluate(eval_step, state, xy, batch_size=min(512, xy[0].shape[0]))
                for name, xy in watch.items()}
        return state, {"steps": steps if per_step else {k: jnp.mean(v) for k, v in steps.items()}, **seen}

    return lax.scan(epoch, train_state, jnp.arange(epochs))


class Verdict(NamedTuple):
    """The outcome of :func:`verdict`: effect, spread, the label and the line to print."""

    effect: float
    spread: float
    label: str
    line: str


def _values(name: str, values: object) -> FloatArray:
    arr = np.asarray(values, np.float64).reshape(-1)
    if arr.size < 2 or not np.all(np.isfinite(arr)):
        raise ValueError(f"verdict: argument '{name}' must be at least 2 finite values (one per seed), "
                         f"got {arr.tolist()}")
    return arr


def verdict(baseline: Sequence[float] | Array | FloatArray, treated: Sequence[float] | Array | FloatArray, *,
            claim: str, metric: str = "test accuracy", higher_is_better: bool = True, paired: bool = False,
            digits: int = 3) -> Verdict:
    """Compare per-seed results of a treated configuration with a baseline (the rule above).

    Args:
        baseline: one value per seed without the trick.
        treated: one value per seed with it (the same seeds, in the same order, when ``paired``).
        claim: what the trick is claimed to do, e.g. ``"batch norm raises test accuracy"``.
        metric: the name of the compared quantity (printed after the effect).
        higher_is_better: the claimed direction: the trick raises (``True``) or lowers the metric.
        paired: the two runs of a seed share initial weights and data order: use the spread of
            the per-seed differences.
        digits: decimals printed.

    Returns:
        A :class:`Verdict`; its ``line`` reads
        ``verdict: <claim>: effect +0.021 <metric> vs seed std 0.005: shown``.
    """
    a, b = _values("baseline", baseline), _values("treated", treated)
    if paired:
        if a.shape != b.shape:
            raise ValueError(f"verdict: argument 'treated' must be one value per seed of the baseline "
                             f"({a.size}) when paired, got {b.size}")
        diff = b - a
        effect, spread, kind = float(diff.mean()), float(diff.std(ddof=1)), "paired std"
    else:
        effect = float(b.mean() - a.mean())
        spread, kind = math.sqrt((a.var(ddof=1) + b.var(ddof=1)) / 2), "seed std"
    signed = effect if higher_is_better else -effect
    label = "within noise"
    if abs(effect) > FACTOR * spread:
        label = "shown" if signed > 0 else "reversed"
    line = f"verdict: {claim}: effect {effect:+.{digits}f} {metric} vs {kind} {spread:.{digits}f}: {label}"
    return Verdict(effect, spread, label, line)


def mean_std(values: Sequence[float] | Array | FloatArray, digits: int = 3) -> str:
    """``"mean ± std"`` over seeds (population std, as the tables print it)."""
    arr = np.asarray(values, np.float64)
    return f"{arr.mean():.{digits}f} ± {arr.std():.{digits}f}"


def init_seeds(model: layers.Layer, keys: Array, input_shape: Shape) -> tuple[PyTree, PyTree]:
    """``(params, state)`` of ``model`` for every key of ``keys`` (leading axis: seeds)."""

    def init(key: PRNGKey) -> tuple[PyTree, PyTree]:
        return model.init(key, input_shape)[:2]

    return jax.vmap(init)(keys)


def stack(*trees: PyTree) -> PyTree:
    """The trees (of one structure) stacked leaf by leaf along a new leading axis."""

    def leaves(*a: Array) -> Array:
        return jnp.stack(a)

    return jax.tree_util.tree_map(leaves, *trees)


def take(tree: PyTree, i: int | Array) -> PyTree:
    """Entry (or entries) ``i`` of the leading axis of every leaf (one configuration of a sweep)."""

    def entry(a: Array) -> Array:
        return a[i]

    return jax.tree_util.tree_map(entry, tree)
