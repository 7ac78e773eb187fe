"""Gradient clipping: a deliberately unstable setting with and without ``clip_by_global_norm``.

A deep ReLU MLP (six hidden layers) trained by plain SGD with a too-large learning rate (0.5)
takes an occasional huge step that throws it far away or overflows it to NaN. Clipping the global
gradient norm to ``theta`` (Pascanu et al. 2013),

    g <- g                    if ||g|| <= theta
    g <- theta * g / ||g||    otherwise,

bounds every step by ``lr * theta`` without changing its direction. ``theta`` is a traced
hyperparameter of ``optim.clip_by_global_norm``, so "no clipping" (``theta = inf``), ``theta = 10``
and ``theta = 1`` are three configurations of one ``sweep`` over ``grid(theta=...)``: all of them
and all seeds train in one compiled program.

    python examples/gradient_clipping.py [--quick] [--out DIR] [--seeds N] [--epochs N] [--lr LR]
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from _common import fit_run, load_split, parser  # examples/_common.py, next to this file

from functrain import layers, optim, plotting, train
from functrain.train.seeds import grid, sweep
from functrain.typing import Array

THETAS = {"no clipping (theta = inf)": jnp.inf, "clip theta = 10": 10.0, "clip theta = 1": 1.0}


def main(argv: list[str] | None = None) -> None:
    """Train the unstable network with each clipping threshold; print and plot the outcome."""
    p = parser(__doc__, seeds=4, epochs=15)
    p.add_argument("--lr", type=float, default=0.5)
    args = p.parse_args(argv)
    n_seeds, epochs = (2, 2) if args.quick else (args.seeds, args.epochs)

    train_xy, test_xy, _ = load_split()
    model = layers.serial(*[layers.Dense(64), layers.Relu] * 6, layers.Dense(10))
    eval_step = train.make_eval_step(train.classifier_loss(model.apply, train=False))

    def run(key: Array, hp: dict[str, Array]) -> train.EpochMetrics:
        """One run with clipping threshold ``hp["theta"]`` (a traced scalar)."""
        opt = optim.chain(optim.clip_by_global_norm(hp["theta"]), optim.sgd(args.lr))
        step = train.make_train_step(train.classifier_loss(model.apply, train=True), opt, grad_norm=True)
        k_init, k_fit = jax.random.split(key)
        params, model_state, _ = model.init(k_init, (-1, 64))
        _, metrics = fit_run(step, train.init_train_state(params, model_state, opt), train_xy, k_fit,
                             epochs=epochs, eval_step=eval_step, val_data=test_xy, eval_batch_size=512)
        return metrics

    keys = jax.random.split(jax.random.key(1), n_seeds)
    out = jax.device_get(sweep(run, keys, grid(theta=list(THETAS.values()))).results)  # axes (theta, seed, ...)

    print(f"6 x 64 ReLU MLP, SGD lr={args.lr}, {epochs} epochs, {n_seeds} seeds (mean ± std over finite runs)")
    print(f"{'clipping':<28}{'runs hitting NaN':<18}{'largest step loss':<20}{'test accuracy, last'}")
    grad_norm: dict[str, np.ndarray[Any, Any]] = {}
    train_loss: dict[str, np.ndarray[Any, Any]] = {}
    accuracy: dict[str, np.ndarray[Any, Any]] = {}
    for g, name in enumerate(THETAS):
        losses = np.asarray(out.step_loss[g]).reshape(n_seeds, -1)  # every step of every epoch
        acc = np.asarray(out.val["accuracy"][g])
        finite = np.isfinite(losses).all(axis=1)
        acc_text = f"{acc[finite, -1].mean():.3f} ± {acc[finite, -1].std():.3f}" if finite.any() else "-"
        print(f"{name:<28}{f'{(~finite).sum()} of {n_seeds}':<18}{np.nanmax(losses):<20.4g}{acc_text}")
        grad_norm[name], accuracy[name] = np.asarray(out.train["grad_norm"][g]), acc
        train_loss[name] = np.asarray(out.train["loss"][g])

    args.out.mkdir(parents=True, exist_ok=True)
    _, (left, middle, right) = plotting.panels(1, 3, width=5.0)
    plotting.plot_curves(grad_norm, title="Gradient norm (before clipping), epoch mean",
                         ylabel="global gradient norm", log_y=True, ax=left)
    plotting.plot_curves(train_loss, title="Training loss, epoch mean (NaN runs left out)",
                         ylabel="cross-entropy loss", log_y=True, ax=middle)
    plotting.plot_curves(accuracy, title=f"Test accuracy (SGD lr={args.lr})", ylabel="test accuracy", ax=right,
                         path=args.out / "gradient_clipping.png")


if __name__ == "__main__":
    main()
