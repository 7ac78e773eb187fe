"""A hyperparameter sweep over learning rates x momentum x seeds in one compiled program.

A whole training run is one pure function ``run(key, hparams)``: initialize, train every epoch
inside ``lax.scan`` (``fit_scan``), return the per-epoch metrics. ``seeds.grid`` builds the
Cartesian product of the hyperparameter values as arrays, and ``seeds.sweep`` vmaps the run over
(configuration, seed) pairs, so all runs compile once and execute as one batched XLA program; the
hyperparameters are traced arrays inside it (every functrain optimizer accepts them). Each
configuration uses the same seeds (common random numbers make configurations comparable), and the
result's ``summary`` holds mean, std, min and max over the seeds. With many runs, ``chunk_size``
bounds memory by running them a chunk at a time. The figure is a heatmap of the grid (mean ± std
over seeds in each cell) next to the curves. What it shows: momentum 0.9 multiplies the effective
learning rate by 10, so it helps most at the small rates and hurts at the largest one.

    python examples/multi_seed_sweep.py [--quick] [--out DIR] [--seeds N] [--epochs N]
"""

from __future__ import annotations

import time
from typing import Any

import jax
import numpy as np
from _common import fit_run, load_split, parse_args, parser, verdict  # examples/_common.py
from _plots import caption, plot_heatmap

from functrain import layers, optim, plotting, train
from functrain.train.seeds import grid, sweep
from functrain.typing import Array


def main(argv: list[str] | None = None) -> None:
    """Sweep learning rate x momentum over seeds; print the summary table and plot bands."""
    args = parse_args(parser(__doc__, seeds=5, epochs=15), argv)
    n_seeds, epochs = (2, 2) if args.quick else (args.seeds, args.epochs)
    lrs = [0.03, 0.3] if args.quick else [0.01, 0.03, 0.1, 0.3]

    train_xy, test_xy, _ = load_split()
    model = layers.serial(layers.Dense(64), layers.Relu, layers.Dense(10))
    eval_step = train.make_eval_step(train.classifier_loss(model.apply, train=False))

    def run(key: Array, hp: dict[str, Array]) -> dict[str, Array]:
        """One training run; ``hp["lr"]`` and ``hp["momentum"]`` are traced scalars."""
        opt = optim.sgd(hp["lr"], momentum=hp["momentum"])
        step = train.make_train_step(train.classifier_loss(model.apply, train=True), opt)
        k_init, k_fit = jax.random.split(key)
        params, model_state, _ = model.init(k_init, (-1, 64))
        _, metrics = fit_run(step, train.init_train_state(params, model_state, opt), train_xy, k_fit,
                             epochs=epochs, eval_step=eval_step, val_data=test_xy, eval_batch_size=512)
        return {"accuracy": metrics.val["accuracy"], "final_accuracy": metrics.val["accuracy"][-1],
                "final_loss": metrics.train["loss"][-1]}

    configs = grid(lr=lrs, momentum=[0.0, 0.9])  # {"lr": (G,), "momentum": (G,)}, lr varies slowest
    keys = jax.random.split(jax.random.key(1), n_seeds)
    start = time.perf_counter()
    result = sweep(run, keys, configs)
    accuracy_curves = np.asarray(result.results["accuracy"])  # (configs, seeds, epochs); waits for the runs
    seconds = time.perf_counter() - start
    n_configs = len(configs["lr"])
    print(f"{n_configs} configurations x {n_seeds} seeds = {n_configs * n_seeds} runs of {epochs} epochs "
          f"in one program: {seconds:.1f} s including compilation")

    acc, loss = result.summary["final_accuracy"], result.summary["final_loss"]
    print(f"{'learning rate':<15}{'momentum':<10}{'test accuracy (mean ± std)':<28}{'min':<8}{'max':<8}"
          f"{'train loss'}")
    curves: dict[str, np.ndarray[Any, Any]] = {}
    for g in range(n_configs):
        lr, mom = float(configs["lr"][g]), float(configs["momentum"][g])
        print(f"{lr:<15g}{mom:<10g}{f'{float(acc.mean[g]):.3f} ± {float(acc.std[g]):.3f}':<28}"
              f"{float(acc.min[g]):<8.3f}{float(acc.max[g]):<8.3f}{float(loss.mean[g]):.4f}")
        curves[f"lr {lr:g}, momentum {mom:g}"] = accuracy_curves[g]

    finals = np.asarray(result.results["final_accuracy"])  # (configs, seeds)
    low = float(configs["lr"][0])
    print(verdict(finals[0], finals[1], paired=True,
                  claim=f"momentum 0.9 beats plain SGD at lr {low:g} (same seeds)").line)

    args.out.mkdir(parents=True, exist_ok=True)
    fig, (heat, right) = plotting.panels(1, 2, width=5.8)
    mean = np.asarray(acc.mean).reshape(len(lrs), 2).T  # rows: momentum, columns: learning rate
    std = np.asarray(acc.std).reshape(len(lrs), 2).T
    plot_heatmap(heat, mean, std=std, rows=["momentum 0", "momentum 0.9"], cols=[f"{lr:g}" for lr in lrs],
                 title=f"Final test accuracy ({n_seeds} seeds)", xlabel="learning rate", ylabel="", vmin=0.8,
                 vmax=1.0)
    plotting.plot_curves(curves, title="Test accuracy per epoch", ylabel="test accuracy", ax=right)
    caption(fig, "Each cell is one configuration of the sweep (mean ± std over the same seeds). Momentum helps "
                 "where the rate is small and hurts at the largest rate: it multiplies the step by "
                 "1 / (1 - 0.9) = 10.", width=120)
    plotting.save_figure(fig, args.out / "multi_seed_sweep.png")


if __name__ == "__main__":
    main()
