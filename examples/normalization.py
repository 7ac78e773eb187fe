"""Batch norm, layer norm and weight norm: which one works when the batches are small.

Batch norm (Ioffe & Szegedy 2015) normalizes each unit over the examples of the current batch. With
batches of 4 those statistics are noise: every step normalizes with a different, wrong mean and
variance, and the running averages used at evaluation describe none of them. Two alternatives do
not look at the batch at all:

* layer norm (Ba et al. 2016, ``layers.LayerNorm``) normalizes each example over its own units
  (``(z - mean_units(z)) / std_units(z)``, then a learned scale and shift), the same in training
  and evaluation -- the normalization of recurrent nets and transformers, where batch statistics
  are awkward;
* weight norm (Salimans & Kingma 2016, ``layers.WeightNormDense``) reparametrizes each weight
  vector as ``w = g v / ||v||``: its length ``g`` is learned apart from its direction ``v``. It
  changes how the gradient steps act, not the signal at the start (``g`` starts at ``||v||``, so
  the initial network is the plain one).

The setting: a deep MLP of 14 hidden layers ``Dense(64) -> [norm] -> ReLU`` with the default
(Glorot) initialization, whose ReLU signal shrinks with depth, trained by SGD for 3 epochs with
batches of 4 (lr 0.01) and of 32 (lr 0.08, the rate scaled with the batch), 3 seeds. What it
shows: at batch 32 batch norm is the clear winner; at batch 4 it fails and layer norm is the one
that trains. Weight norm alone does not rescue the deep net at either batch size: it does not fix
the vanishing signal of the initial network (the paper pairs it with a data-dependent
initialization).

    python examples/normalization.py [--quick] [--out DIR] [--seeds N] [--epochs N] [--depth N]
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np
from _common import fit_run, jit, load_split, mean_std, parse_args, parser, verdict
from _plots import caption, plot_heatmap

from functrain import layers, optim, plotting, train
from functrain.typing import Array

NORMS = ("none", "batch norm", "layer norm", "weight norm")
BATCHES = {4: 0.01, 32: 0.08}  # batch size -> learning rate


def deep_mlp(norm: str, depth: int, width: int = 64) -> layers.Layer:
    """``depth`` hidden layers ``Dense -> [norm] -> ReLU`` (weight norm: ``WeightNormDense``), then ``Dense(10)``."""
    if norm == "weight norm":
        block = [layers.WeightNormDense(width), layers.Relu]
    else:
        # Annotated: mypy joins lists of differently typed layers (invariant lists) to `object`.
        norms: dict[str, list[layers.Layer]] = {"none": [], "batch norm": [layers.BatchNorm()],
                                                "layer norm": [layers.LayerNorm()]}
        extra = norms[norm]
        block = [layers.Dense(width), *extra, layers.Relu]
    return layers.serial(*block * depth, layers.Dense(10))


def main(argv: list[str] | None = None) -> None:
    """Train each normalization at batch 4 and 32; print, judge and plot."""
    p = parser(__doc__, seeds=3, epochs=3)
    p.add_argument("--depth", type=int, default=14, help="hidden layers")
    args = parse_args(p, argv)
    n_seeds, epochs, depth = (2, 1, 3) if args.quick else (args.seeds, args.epochs, args.depth)
    split = load_split()
    keys = jax.random.split(jax.random.key(1), n_seeds)

    acc: dict[tuple[str, int], np.ndarray[Any, Any]] = {}
    print(f"{depth} x 64 ReLU MLP, SGD, {epochs} epochs, {n_seeds} seeds (test accuracy, mean ± std)")
    print(f"{'normalization':<16}" + "".join(f"{f'batch {b}, lr {lr:g}':<24}" for b, lr in BATCHES.items()))
    for norm in NORMS:
        model = deep_mlp(norm, depth)
        eval_step = train.make_eval_step(train.classifier_loss(model.apply, train=False))
        for batch_size, lr in BATCHES.items():
            opt = optim.sgd(lr)
            step = train.make_train_step(train.classifier_loss(model.apply, train=True), opt)

            def run(key: Array, model: layers.Layer = model, step: train.TrainStep = step,
                    eval_step: train.EvalStep = eval_step, opt: optim.TransformationLike = opt,
                    batch_size: int = batch_size) -> Array:
                k_init, k_fit = jax.random.split(key)
                params, state, _ = model.init(k_init, (-1, 64))
                _, m = fit_run(step, train.init_train_state(params, state, opt), split.train, k_fit,
                               epochs=epochs, batch_size=batch_size, eval_step=eval_step, val_data=split.test,
                               eval_batch_size=512)
                return m.val["accuracy"][-1]

            acc[norm, batch_size] = np.asarray(jit(jax.vmap(run))(keys))
        print(f"{norm:<16}" + "".join(f"{mean_std(acc[norm, b]):<24}" for b in BATCHES))
    small, large = BATCHES
    print(verdict(acc["batch norm", small], acc["layer norm", small],
                  claim=f"at batch {small}, layer norm beats batch norm").line)
    print(verdict(acc["layer norm", large], acc["batch norm", large],
                  claim=f"at batch {large}, batch norm beats layer norm").line)
    print(verdict(acc["none", small], acc["weight norm", small],
                  claim=f"weight norm alone trains the deep net (batch {small})").line)

    args.out.mkdir(parents=True, exist_ok=True)
    fig, (ax,) = plotting.panels(1, 1, width=6.5, height=4.2)
    plot_heatmap(ax, np.asarray([[acc[n, b].mean() for b in BATCHES] for n in NORMS]),
                 std=np.asarray([[acc[n, b].std() for b in BATCHES] for n in NORMS]), rows=list(NORMS),
                 cols=[f"batch {b}\nlr {lr:g}" for b, lr in BATCHES.items()], vmin=0.0, vmax=1.0,
                 title=f"Test accuracy, {depth}-layer ReLU MLP, {epochs} epochs", xlabel="batch size",
                 ylabel="normalization")
    caption(fig, "Compare the two columns: batch norm is the best at batch 32 and fails at batch 4, where layer "
                 "norm (which never looks at the batch) is the one that trains. Cells: mean ± std over seeds.",
            width=95)
    plotting.save_figure(fig, args.out / "normalization.png")


if __name__ == "__main__":
    main()
