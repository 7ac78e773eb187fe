"""``functrain lr-find``: the learning-rate range test of one configuration, every seed in one program.

Takes the flags of ``functrain train`` (the network, optimizer, data, tricks) plus the range
(``--min-lr``, ``--max-lr``, ``--steps``), and runs :func:`functrain.train.lr_find` (Smith 2015;
fastai's lr finder) for every seed -- its own initial weights and batch order -- vmapped in one
compiled program. The learning rate is the test's exponential ramp: the flags' schedule, warmup
and ``--lr`` are not used, nor are SAM, the EMA and early stopping (the test is a throw-away
run); clipping, weight decay, label smoothing and mixup are. Prints each seed's suggestion (the
steepest descent of the smoothed loss) and their median, and writes ``lr_find.png``
(:func:`functrain.plotting.plot_lr_find`) and ``lr_find.json`` (all-or-nothing, as the other
commands).

Example:
    >>> from functrain.experiments.tricks.lr_range import LrFindArgs
    >>> a = LrFindArgs(seeds=4)
    >>> a.out, a.min_lr, a.max_lr, a.steps, a.seeds
    ('functrain-lr-find', 1e-07, 10.0, 100, 4)
"""

from __future__ import annotations

import dataclasses

import sys
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from functrain import _jax
from functrain.experiments.tricks.commands import (
    PRNGS,
    TrainArgs,
    check_fits_data,
    load_splits,
    need_matplotlib,
    train_config,
    write_json,
)
from functrain.experiments.tricks.config import build_optimizer
from functrain.experiments.tricks.models import build_model
from functrain.experiments.tricks.outputs import CommandError, check_outputs, write_outputs
from functrain.experiments.tricks.programs import loss_for
from functrain.train import LRFindResult
from functrain.train import lr_find as range_test
from functrain.typing import Array, PRNGKey

__all__ = ["LR_FIND_OUTPUTS", "LrFindArgs", "lr_find", "lr_find_json"]

LR_FIND_OUTPUTS = ("lr_find.png", "lr_find.json")
"""The files ``functrain lr-find`` writes in its output directory."""


@dataclasses.dataclass(frozen=True)
class LrFindArgs(TrainArgs):
    """The options of ``functrain lr-find``: those of ``functrain train``, and the range."""

    out: str = "functrain-lr-find"
    min_lr: float = 1e-7
    max_lr: float = 10.0
    steps: int = 100


def _finite(values: np.ndarray[Any, Any]) -> list[float | None]:
    return [float(v) if np.isfinite(v) else None for v in values]


def _median(values: np.ndarray[Any, Any]) -> float | None:
    finite = values[np.isfinite(values)]
    return float(np.median(finite)) if finite.size else None


def lr_find_json(result: LRFindResult, *, config: dict[str, Any], args: LrFindArgs, data: dict[str, Any],
                 seconds: float) -> dict[str, Any]:
    """The document ``functrain lr-find`` writes: the range, per-seed suggestions, their median, the curves."""
    suggestion = np.asarray(result.suggestion, np.float64)
    low = np.asarray(result.min_loss_suggestion, np.float64)
    n = suggestion.size
    return {
        "config": config, "data": data, "seed": args.seed, "seeds": n, "seconds": seconds,
        "range": {"min_lr": args.min_lr, "max_lr": args.max_lr, "steps": args.steps},
        "suggestion_median": _median(suggestion), "min_loss_suggestion_median": _median(low),
        "runs": [{"seed": f"split(key({args.seed}), {n})[{s}]", "suggestion": _finite(suggestion[s:s + 1])[0],
                  "min_loss_suggestion": _finite(low[s:s + 1])[0],
                  "steps_run": int(np.asarray(result.steps_run)[s]),
                  "losses": _finite(np.asarray(result.losses, np.float64)[s])} for s in range(n)],
        "lrs": _finite(np.asarray(result.lrs, np.float64).reshape(n, -1)[0]),
    }


def lr_find(args: LrFindArgs, *, stop: Callable[[], bool] | None = None) -> None:
    """``functrain lr-find``: run the range test of every seed, print the suggestions, write the outputs.

    Args:
        args: the parsed options.
        stop: not polled (the test is one compiled program); the command line reports a Ctrl-C
            once it has returned.

    Raises:
        CommandError: bad options, data, batch size or output directory (checked before anything runs).
        WriteError: writing an output failed (the previous outputs are left unchanged).
        ImportError: matplotlib is missing.
    """
    del stop
    if args.max_lr <= args.min_lr:
        raise CommandError(f"argument --max-lr: must be a number > --min-lr ({args.min_lr:g}), got '{args.max_lr:g}'")
    config = train_config(args)
    splits = load_splits(args.data, images=config.model != "mlp", per_feature=config.model == "mlp")
    check_fits_data(config, splits)
    out = check_outputs(args.out, LR_FIND_OUTPUTS)
    need_matplotlib()
    n = args.seeds if args.seeds is not None else (2 if args.quick else 4)
    model = build_model(config, splits.num_classes, splits.image_shape)
    loss_fn = loss_for(config, model, splits.num_classes)
    features, data = int(splits.x_train.shape[1]), (jnp.asarray(splits.x_train), jnp.asarray(splits.y_train))

    def one(key: PRNGKey) -> LRFindResult:
        k_init, k_test = jax.random.split(key)
        params, model_state, _ = model.init(k_init, (-1, features))
        return range_test(loss_fn, lambda schedule: build_optimizer(config, schedule), params, model_state, data,
                          k_test, min_lr=args.min_lr, max_lr=args.max_lr, steps=args.steps,
                          batch_size=config.batch_size)

    print(f"functrain lr-find: {config.optimizer} on {splits.name}, {n} seed{'s' * (n != 1)} x {args.steps} steps "
          f"from {args.min_lr:g} to {args.max_lr:g}, in one program ...", file=sys.stderr, flush=True)
    started = time.perf_counter()
    keys: Array = jax.random.split(jax.random.key(args.seed, impl=PRNGS[args.prng]), n)
    result: LRFindResult = _jax.jit_training(jax.vmap(one))(keys)
    seconds = time.perf_counter() - started
    suggestion = np.asarray(result.suggestion, np.float64)
    for s in range(n):
        v = suggestion[s]
        shown = f"{v:.3g}" if np.isfinite(v) else "none (too few steps recorded)"
        print(f"seed {s}: suggested learning rate {shown} (minimum / 10: "
              f"{float(np.asarray(result.min_loss_suggestion)[s]):.3g}; {int(np.asarray(result.steps_run)[s])} of "
              f"{args.steps} steps before the loss diverged)")
    median = _median(suggestion)
    print(f"median suggestion over {n} seeds: {'none' if median is None else f'{median:.3g}'} ({seconds:.1f} s)",
          flush=True)
    doc = lr_find_json(result, config={**config._asdict(), "hidden": list(config.hidden)}, args=args,
                       data={"source": args.data, "name": splits.name, "n_train": len(splits.x_train)},
                       seconds=seconds)
    png, js = LR_FIND_OUTPUTS
    from functrain.plotting import plot_lr_find

    title = f"Learning-rate range test: {config.optimizer} on {splits.name} ({n} seeds)"
    written = write_outputs(out, {png: lambda p: plot_lr_find(result, title=title, path=p),
                                  js: lambda p: write_json(p, doc)})
    print(f"functrain lr-find: wrote {written[0]} and {written[1]}", file=sys.stderr, flush=True)
