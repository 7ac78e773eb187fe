"""Weight initialization: the signal's scale through 20 layers, and what it does to training them.

A correction to the lesson first: with ``n`` inputs of unit variance, ``N(0, 1)`` weights give an
output of standard deviation ``sqrt(n)`` (a sum of ``n`` independent unit-variance terms), not
``n``; the script measures it. So ``N(0, 1)`` weights multiply the scale by about ``sqrt(n)`` per
layer: 8x for 64 inputs (5.7x through a ReLU), ~1e15 after 20 ReLU layers. ``gaussian``
(``N(0, 1/n)``, LeCun) and Xavier/Glorot (``N(0, 2/(n_in + n_out))``) keep a linear or tanh
network's scale, but a ReLU zeroes half its inputs and halves the variance per layer: ~1e-3 after
20 layers (the signal vanishes). He (``N(0, 2/n_in)``) doubles the variance to make up for it and keeps a ReLU network
at 1 through any depth. The distribution's shape does not matter, its variance does: the
uniform ``U(-a, a)`` has variance ``a^2 / 3``, so ``he_uniform`` (``a = sqrt(6 / n_in)``) acts like
``he_normal``, while the lesson's plain ``uniform`` with a fixed ``a = 0.05`` (variance 8e-4, far
below ``1/64``) ignores the fan and vanishes.

``signal_propagation`` sends unit-variance inputs through the 20-layer, 64-unit MLP with each
initializer and records the standard deviation of the pre-activations (forward) and of the
gradients with respect to them (backward) per layer. Then the same 20-layer MLP is trained from
each initializer (SGD lr 0.02, 10 epochs, 3 seeds): the parameters are re-drawn with
``initializers.reinitialize``, and the initial weights are data, so one compiled program per
activation trains every initializer and seed at once.

    python examples/initialization.py [--quick] [--out DIR] [--seeds N] [--epochs N] [--depth N] [--width N]
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
from _common import XY, fit_run, jit, stack, load_split, mean_std, parse_args, parser, verdict
from _plots import caption
from matplotlib.ticker import MaxNLocator

from functrain import initializers, layers, optim, plotting, train
from functrain.diagnostics import SignalPropagation, signal_propagation
from functrain.typing import Array, Initializer, PyTree

INITIALIZERS: dict[str, Initializer] = {
    "standard_normal N(0,1)": initializers.standard_normal(),
    "uniform U(-0.05, 0.05)": initializers.uniform(0.05),
    "gaussian N(0,1/n)": initializers.gaussian(),
    "xavier/glorot normal": initializers.xavier_normal(),
    "he/kaiming normal": initializers.he_normal(),
    "he/kaiming uniform": initializers.he_uniform(),
}
# signal_propagation's layers are square (n_in = n_out = n), where Xavier's 2/(n_in + n_out) is
# gaussian's 1/n: the two draw identical weights there, so the signal figure shows one line.
SIGNAL = ["standard_normal N(0,1)", "uniform U(-0.05, 0.05)", "xavier/glorot normal", "he/kaiming normal",
          "he/kaiming uniform"]
ACTIVATIONS: dict[str, tuple[Callable[[Array], Array], layers.Layer]] = {
    "tanh": (jnp.tanh, layers.Tanh),
    "relu": (jax.nn.relu, layers.Relu),
}


def first_layer_std(width: int) -> float:
    """The output std of one layer of ``N(0, 1)`` weights with ``width`` unit-variance inputs."""
    k_x, k_w = jax.random.split(jax.random.key(5))
    x = jax.random.normal(k_x, (4096, width))
    return float(jnp.std(x @ jax.random.normal(k_w, (width, width))))


def train_each(act_layer: layers.Layer, depth: int, width: int, epochs: int, keys: Array,
               data: tuple[XY, XY]) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    """Test accuracy per epoch ``(initializers, seeds, epochs)`` and final train loss, one program."""
    model = layers.serial(*[layers.Dense(width), act_layer] * depth, layers.Dense(10))
    template, model_state, _ = model.init(jax.random.key(0), (-1, 64))
    opt = optim.sgd(0.02)
    step = train.make_train_step(train.classifier_loss(model.apply, train=True), opt)
    eval_step = train.make_eval_step(train.classifier_loss(model.apply, train=False))

    def run(params: PyTree, key: Array) -> tuple[Array, Array]:
        _, m = fit_run(step, train.init_train_state(params, model_state, opt), data[0], key, epochs=epochs,
                       eval_step=eval_step, val_data=data[1], eval_batch_size=512)
        return m.val["accuracy"], m.train["loss"][-1]

    def start(init: Initializer) -> PyTree:
        def one(k: Array) -> PyTree:
            return initializers.reinitialize(template, k, weight_init=init)

        return jax.vmap(one)(keys)

    stacked = stack(*[start(init) for init in INITIALIZERS.values()])
    acc, loss = jit(jax.vmap(jax.vmap(run), in_axes=(0, None)))(stacked, keys)
    return np.asarray(acc), np.asarray(loss)


def main(argv: list[str] | None = None) -> None:
    """Measure signal propagation per initializer and activation, plot it, then train each."""
    p = parser(__doc__, seeds=3, epochs=10)
    p.add_argument("--depth", type=int, default=20, help="hidden layers (signal and training)")
    p.add_argument("--width", type=int, default=64, help="units per layer")
    args = parse_args(p, argv)
    depth, width, epochs, n_seeds = (6, 32, 2, 2) if args.quick else (args.depth, args.width, args.epochs, args.seeds)

    for n in (64, 256):
        print(f"N(0,1) weights, {n} unit-variance inputs: output std {first_layer_std(n):.1f} "
              f"(sqrt(n) = {np.sqrt(n):.0f}; the lesson's n = {n} is a slip)")
    print(f"\nSignal propagation through {depth} dense layers of {width} units (std of layer 1 -> layer {depth})")
    print(f"{'activation':<11}{'initializer':<26}{'forward std':<26}{'backward std':<26}")
    signals: dict[str, dict[str, SignalPropagation]] = {}
    for act_name, (activation, _) in ACTIVATIONS.items():
        signals[act_name] = {}
        for name in SIGNAL:
            sp = signal_propagation(INITIALIZERS[name], activation, depth, width, jax.random.key(0), batch=512)
            signals[act_name][name] = sp
            fwd, bwd = np.asarray(sp.forward_std), np.asarray(sp.backward_std)
            print(f"{act_name:<11}{name:<26}{f'{fwd[0]:.3g} -> {fwd[-1]:.3g}':<26}{bwd[0]:.3g} -> {bwd[-1]:.3g}")

    split = load_split()
    keys = jax.random.split(jax.random.key(1), n_seeds)
    print(f"\nTraining the {depth} x {width} MLP with SGD lr=0.02 for {epochs} epochs, {n_seeds} seeds (mean ± std)")
    print(f"{'activation':<11}{'initializer':<26}{'test acc, epoch 1':<20}{'final train loss':<18}{'test acc, last'}")
    final: dict[str, dict[str, np.ndarray[Any, Any]]] = {}
    for act_name, (_, act_layer) in ACTIVATIONS.items():
        acc, loss = train_each(act_layer, depth, width, epochs, keys, (split.train, split.test))
        final[act_name] = {name: acc[i, :, -1] for i, name in enumerate(INITIALIZERS)}
        for i, name in enumerate(INITIALIZERS):
            loss_text = f"{loss[i].mean():.4f}" if np.all(np.isfinite(loss[i])) else "diverged (nan)"
            print(f"{act_name:<11}{name:<26}{mean_std(acc[i, :, 0]):<20}{loss_text:<18}{mean_std(acc[i, :, -1])}")
    relu, tanh = final["relu"], final["tanh"]
    print(verdict(relu["standard_normal N(0,1)"], relu["he/kaiming normal"],
                  claim=f"He initialization trains a {depth}-layer ReLU net that N(0,1) cannot").line)
    print(verdict(relu["xavier/glorot normal"], relu["he/kaiming normal"],
                  claim=f"He beats Xavier on a {depth}-layer ReLU net").line)
    print(verdict(tanh["standard_normal N(0,1)"], tanh["xavier/glorot normal"],
                  claim=f"Xavier trains a {depth}-layer tanh net that N(0,1) cannot").line)
    plot(args, signals, final, depth, width)


def plot(args: Any, signals: dict[str, dict[str, SignalPropagation]], final: dict[str, dict[str, Any]],
         depth: int, width: int) -> None:
    """Signal figure (forward/backward x tanh/relu, each its own axis) and the training scores."""
    args.out.mkdir(parents=True, exist_ok=True)
    fig, axes = plotting.panels(2, 2, width=6.0, height=4.0)
    for row, act_name in enumerate(ACTIVATIONS):
        for col, field in enumerate(("forward_std", "backward_std")):
            ax = axes[2 * row + col]
            off: list[str] = []
            for i, (name, sp) in enumerate(signals[act_name].items()):
                values = np.asarray(getattr(sp, field), np.float64)
                ax.plot(np.arange(1, depth + 1), values, marker="o", markersize=3, color=f"C{i}",
                        label="gaussian = xavier (square layers)" if name.startswith("xavier") else name)
                if np.nanmax(values) > 1e4 or np.nanmin(values) < 1e-5:
                    off.append(f"{name.split()[0]}: {values[0]:.1e} (layer 1) to {values[-1]:.1e} (layer {depth})")
            ax.axhline(1.0, color="grey", linestyle="--", linewidth=1)
            ax.set(yscale="log", ylim=(1e-5, 1e4), xlabel="layer",
                   title=f"{act_name}: {'forward (pre-activations)' if col == 0 else 'backward (gradients)'}",
                   ylabel="standard deviation")
            if off:
                ax.text(0.02, 0.97, "leaving the axis:\n" + "\n".join(off), transform=ax.transAxes, va="top",
                        fontsize="small", bbox={"facecolor": "white", "alpha": 0.85, "edgecolor": "0.7"})
            ax.grid(True, alpha=0.3)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.legend(fontsize="x-small", loc="lower left")
    caption(fig, f"Each panel has its own axis. Through {depth} layers of {width} units, N(0,1) explodes (off the "
                 "top), the fixed uniform(0.05) vanishes (off the bottom). With tanh, Xavier decays slowly (to "
                 "~0.2) and He holds near 1; with ReLU, Xavier halves the variance per layer (to ~1e-3) while He, "
                 "normal or uniform alike, stays at 1, forward and backward.", width=130)
    plotting.save_figure(fig, args.out / "initialization_signal.png")
    fig, panels = plotting.panels(1, 2, width=6.5, height=3.8)
    for ax, (act_name, scores) in zip(panels, final.items()):
        plotting.plot_scores(scores, title=f"{act_name}: test accuracy after training {depth} layers",
                             xlim=(0.0, 1.0), ax=ax)
    caption(fig, "The initializers whose signal stays near 1 (previous figure) are the ones that train: for ReLU "
                 "only He's; for tanh Xavier's and He's. Dot: mean over seeds, bar: ± std.", width=130)
    plotting.save_figure(fig, args.out / "initialization_training.png")


if __name__ == "__main__":
    main()
