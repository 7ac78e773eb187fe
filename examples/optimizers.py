"""Optimizers: a learning-rate sweep per optimizer -- best accuracy, and how much the rate matters.

The lesson's advice "if unsure, start with Adam" is about robustness: an optimizer whose good
learning rates span a wide range is one you do not have to tune. Each optimizer trains the same
MLP 64-64-10 (batch 32, 10 epochs) from the same initial weights at nine learning rates, 1e-4 to
1 in half-decade steps, over 3 seeds: the rates are traced hyperparameters, so one program per
optimizer trains every rate and seed at once. Reported per optimizer: the best rate and its
accuracy, the rates whose accuracy is within 0.02 of that best, and the mean accuracy over the
whole grid (the wider the range of rates that work, the higher). The update rules::

    SGD             w <- w - eta g
    momentum        v <- gamma v + g,  w <- w - eta v                    (gamma = 0.9)
    normalized SGD  w <- w - eta g / ||g||                               (direction only)
    Adagrad         G <- G + g^2,  w <- w - eta g / sqrt(G)              (per coordinate)
    RMSProp         s <- rho s + (1 - rho) g^2,  w <- w - eta g / sqrt(s)
    Adam            RMSProp's scaling of a momentum average, with bias corrections

A correction to the lesson: its "Adagrad" formula ``w - eta grad / ||grad||`` divides the whole
gradient by its global norm; that is normalized SGD (``optim.normalized_sgd``). Adagrad
(Duchi et al. 2011) divides each coordinate by the root of that coordinate's accumulated squared
gradients, so rarely updated weights get larger steps. Both rows are in the table.

What it shows: at its best rate every optimizer reaches about the same accuracy (within noise).
The difference is the range: Adam and RMSProp reach ~0.94 or more from 3e-4 to 3e-2, around their usual
default 1e-3, and still learn a lot 10x below it, so their mean over the grid is the highest; plain
SGD needs its rate within half a decade of its best (0.1-0.3) and collapses above it. Momentum's
good range is about as wide as Adam's, but 10x lower than SGD's (its effective rate is
``eta / (1 - gamma)``; ``momentum.py`` shows that). The grid mean is the robustness measure: it
counts every rate, so it grows with the width of the range of rates that work.

``--zoo`` also trains NAdam, RAdam, AMSGrad, Adamax, AdaBelief, Lion, LAMB, LARS and
Lookahead(Adam) at their typical rates (20 epochs), the table of the README's optimizer section.

    python examples/optimizers.py [--quick] [--out DIR] [--seeds N] [--epochs N] [--zoo]
"""

# matplotlib's stubs leave the ``**kwargs`` of nearly every Axes/Figure method unannotated, so
# pyright reports each method as partially unknown; this one rule is off in this file only.
# pyright: reportUnknownMemberType=false

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from _common import XY, fit_run, init_seeds, jit, load_split, mean_std, parse_args, parser, verdict
from _plots import caption, plot_heatmap

from functrain import layers, optim, plotting, train
from functrain.typing import Array, PyTree

LESSON: dict[str, Callable[[Array], optim.TransformationLike]] = {
    "SGD": optim.sgd,
    "momentum 0.9": lambda lr: optim.momentum(lr, 0.9),
    "normalized SGD": optim.normalized_sgd,
    "Adagrad": optim.adagrad,
    "RMSProp": optim.rmsprop,
    "Adam": optim.adam,
}
RATES = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 0.1, 0.3, 1.0)
ZOO: dict[str, optim.TransformationLike] = {
    "NAdam lr=1e-3": optim.nadam(1e-3),
    "RAdam lr=1e-3": optim.radam(1e-3),
    "AMSGrad lr=1e-3": optim.amsgrad(1e-3),
    "Adamax lr=2e-3": optim.adamax(2e-3),
    "AdaBelief lr=1e-3": optim.adabelief(1e-3),
    "Lion lr=3e-4": optim.lion(3e-4, weight_decay=0.0),
    "LAMB lr=1e-2": optim.lamb(1e-2),
    "LARS lr=1": optim.lars(1.0),
    "Lookahead(Adam) k=5": optim.lookahead(optim.adam(1e-3), 5, 0.5),
}


def model() -> layers.Layer:
    """The MLP 64-64-10 every optimizer trains."""
    return layers.serial(layers.Dense(64), layers.Relu, layers.Dense(64), layers.Relu, layers.Dense(10))


def sweep_rates(make: Callable[[Array], optim.TransformationLike], initial: tuple[PyTree, PyTree], keys: Array,
                rates: Array, data: tuple[XY, XY], epochs: int) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    """Final test accuracy and training loss, ``(rates, seeds)``, of one optimizer at every rate (one program)."""
    net = model()
    eval_step = train.make_eval_step(train.classifier_loss(net.apply, train=False))

    def run(start: tuple[PyTree, PyTree], key: Array, lr: Array) -> tuple[Array, Array]:
        opt = make(lr)
        step = train.make_train_step(train.classifier_loss(net.apply, train=True), opt)
        _, m = fit_run(step, train.init_train_state(*start, opt), data[0], key, epochs=epochs,
                       eval_step=eval_step, val_data=data[1], eval_batch_size=512)
        return m.val["accuracy"][-1], m.train["loss"][-1]

    every = jit(jax.vmap(jax.vmap(run, in_axes=(0, 0, None)), in_axes=(None, None, 0)))
    acc, loss = every(initial, keys, rates)
    return np.asarray(acc), np.asarray(loss)


def main(argv: list[str] | None = None) -> None:
    """Sweep the learning rate of each lesson optimizer; print, judge and plot; optionally the zoo."""
    p = parser(__doc__, seeds=3, epochs=10)
    p.add_argument("--zoo", action="store_true", help="also train nine more optimizers at their typical rates")
    args = parse_args(p, argv)
    n_seeds, epochs = (2, 1) if args.quick else (args.seeds, args.epochs)
    rates = RATES[::4] if args.quick else RATES
    split = load_split()
    init_keys, fit_keys = jax.random.split(jax.random.key(1), (2, n_seeds))
    initial = init_seeds(model(), init_keys, (-1, 64))  # (params, state) per seed

    print(f"MLP 64-64-10, batch 32, {epochs} epochs, {n_seeds} seeds, the same initial weights for every "
          "optimizer and rate (mean ± std)")
    print(f"{'optimizer':<16}{'best rate':<11}{'test acc at best':<18}{'rates within 0.02 of best':<36}"
          "mean test acc over the grid")
    acc: dict[str, np.ndarray[Any, Any]] = {}
    for name, make in LESSON.items():
        acc[name], _ = sweep_rates(make, initial, fit_keys, jnp.asarray(rates), (split.train, split.test), epochs)
        mean = acc[name].mean(axis=1)
        best = int(np.argmax(mean))
        good = [f"{r:g}" for r, m in zip(rates, mean) if m >= mean[best] - 0.02]
        print(f"{name:<16}{rates[best]:<11g}{mean_std(acc[name][best]):<18}{', '.join(good):<36}"
              f"{mean_std(acc[name].mean(axis=0))}")
    print("\nThe lesson's 'Adagrad' formula w - eta grad / ||grad|| is normalized SGD (optim.normalized_sgd); "
          "Adagrad divides each coordinate by sqrt(sum of its squared gradients).")
    print(verdict(acc["SGD"].mean(axis=0), acc["Adam"].mean(axis=0), paired=True, metric="mean test accuracy",
                  claim=f"Adam works over a wider range of rates than SGD ({rates[0]:g}..{rates[-1]:g})").line)
    best_of = {name: a[int(np.argmax(a.mean(axis=1)))] for name, a in acc.items()}
    print(verdict(best_of["SGD"], best_of["Adam"], paired=True,
                  claim="at its best rate, Adam beats SGD's best").line)
    plot(args, acc, rates, epochs)
    if args.zoo and not args.quick:
        zoo(initial, fit_keys, (split.train, split.test))


def zoo(initial: tuple[PyTree, PyTree], keys: Array, data: tuple[XY, XY], epochs: int = 20) -> None:
    """The other optimizers at their typical learning rates (no sweep)."""
    net = model()
    eval_step = train.make_eval_step(train.classifier_loss(net.apply, train=False))
    print(f"\nMore optimizers at their typical rates, {epochs} epochs (mean ± std)")
    print(f"{'optimizer':<22}{'train loss, last':<22}{'test accuracy'}")
    for name, opt in ZOO.items():
        step = train.make_train_step(train.classifier_loss(net.apply, train=True), opt)

        def run(start: tuple[PyTree, PyTree], key: Array, opt: optim.TransformationLike = opt,
                step: train.TrainStep = step) -> train.EpochMetrics:
            return fit_run(step, train.init_train_state(*start, opt), data[0], key, epochs=epochs,
                           eval_step=eval_step, val_data=data[1], eval_batch_size=512)[1]

        m = jit(jax.vmap(run))(initial, keys)
        print(f"{name:<22}{mean_std(m.train['loss'][:, -1], 4):<22}{mean_std(m.val['accuracy'][:, -1])}")


def plot(args: Any, acc: dict[str, np.ndarray[Any, Any]], rates: tuple[float, ...], epochs: int) -> None:
    """A heatmap optimizer x rate of the mean accuracy, and the accuracy-vs-rate curves."""
    fig, (heat, curves) = plotting.panels(1, 2, width=7.0, height=4.6)
    grid = np.stack([a.mean(axis=1) for a in acc.values()])
    plot_heatmap(heat, grid, rows=list(acc), cols=[f"{r:g}" for r in rates], vmin=0.0, vmax=1.0, digits=2,
                 title=f"Test accuracy after {epochs} epochs (mean over seeds)", xlabel="learning rate",
                 ylabel="optimizer")
    for name, a in acc.items():
        curves.errorbar(rates, a.mean(axis=1), yerr=a.std(axis=1), marker="o", capsize=3, label=name)
    curves.set_xscale("log")
    curves.set(title="Accuracy against the learning rate", xlabel="learning rate", ylabel="test accuracy",
               ylim=(0.0, 1.0))
    curves.grid(True, alpha=0.3)
    curves.legend(fontsize="small")
    caption(fig, "Read each row of the heatmap (or each curve) for the width of its bright band: the learning "
                 "rates that work. At its best rate every optimizer reaches about the same accuracy; plain SGD "
                 "and normalized SGD work only for large rates (0.03-1), Adam and RMSProp from 3e-4 to 3e-2, "
                 "around their usual default 1e-3. Momentum shifts SGD's band left by about 1 / (1 - gamma) = 10x.",
            width=170)
    args.out.mkdir(parents=True, exist_ok=True)
    plotting.save_figure(fig, args.out / "optimizers.png")


if __name__ == "__main__":
    main()
