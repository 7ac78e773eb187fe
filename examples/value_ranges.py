"""Keep values in a small range: raw digits (0..16) vs [0, 1] vs [-1, 1] vs standardized inputs.

The same ReLU MLP and the same SGD learning rate are trained on four versions of the inputs, all
scalers fitted on the training split only (here each pixel with its own statistics; the other
examples scale all pixels together, 0..16 to [-1, 1]). One program is compiled and reused: the
inputs are arguments, and the seeds run vmapped (``run_seeds``); each seed starts from the same
weights for every input version (paired). At a learning rate that suits inputs of order 1, the
raw 0..16 pixels blow the first steps up and the ReLUs die; zero-centred inputs ([-1, 1],
standardized) learn fastest. (Standardizing divides nearly constant border pixels by a tiny
standard deviation, so a few values land far outside [-3, 3]: the table shows the range.) The
float32 part shows why huge and tiny values don't mix: a float32 has a 24-bit mantissa (about 7
decimal digits), so ``1e10 + 1e-10 == 1e10``.

    python examples/value_ranges.py [--quick] [--out DIR] [--seeds N] [--epochs N] [--lr LR]
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from _common import fit_run, jit, load_split, mean_std, parse_args, parser, verdict  # examples/_common.py
from _plots import caption

from functrain import data, layers, optim, plotting, train
from functrain.train.seeds import run_seeds
from functrain.typing import Array


def float32_demo() -> None:
    """Print how float32 addition loses a small addend next to a large one."""
    big = np.float32(1e10)
    print(f"float32: 1e10 + 1e-10 == 1e10 is {bool(big + np.float32(1e-10) == big)}; "
          f"1e10 + 500 == 1e10 is {bool(big + np.float32(500) == big)} "
          f"(neighbouring float32 values at 1e10 are {float(np.spacing(big)):.0f} apart)")


def main(argv: list[str] | None = None) -> None:
    """Train on differently scaled inputs and print the test accuracy of each."""
    p = parser(__doc__, seeds=4, epochs=15)
    p.add_argument("--lr", type=float, default=0.2)
    args = parse_args(p, argv)
    n_seeds, epochs = (2, 2) if args.quick else (args.seeds, args.epochs)
    float32_demo()

    split = load_split(feature_range=None)  # the raw 0..16 pixels; each scaling below is fitted on x_train
    (x_train, y_train), (x_test, y_test) = split.train, split.test
    inputs = {"raw 0..16": (x_train, x_test)}
    for name, feature_range in [("min-max [0, 1]", (0.0, 1.0)), ("min-max [-1, 1]", (-1.0, 1.0))]:
        mm = data.fit_min_max(x_train, feature_range=feature_range)
        inputs[name] = (data.min_max_scale(mm, x_train), data.min_max_scale(mm, x_test))
    st = data.fit_standardize(x_train)
    inputs["standardized"] = (data.standardize(st, x_train), data.standardize(st, x_test))

    model = layers.serial(layers.Dense(64), layers.Relu, layers.Dense(10))
    opt = optim.sgd(args.lr)
    step = train.make_train_step(train.classifier_loss(model.apply, train=True), opt)
    eval_step = train.make_eval_step(train.classifier_loss(model.apply, train=False))
    keys = jax.random.split(jax.random.key(1), n_seeds)

    @jit
    def run_all_seeds(x_tr: Array, x_te: Array) -> dict[str, Array]:
        """Per-epoch test metrics ``(seeds, epochs)`` of one input scaling."""
        def run(key: Array) -> dict[str, Array]:
            k_init, k_fit = jax.random.split(key)
            params, model_state, _ = model.init(k_init, (-1, 64))
            _, metrics = fit_run(step, train.init_train_state(params, model_state, opt), (x_tr, y_train), k_fit,
                                 epochs=epochs, eval_step=eval_step, val_data=(x_te, y_test))
            return metrics.val
        return run_seeds(run, keys, jit=False).results

    results = {name: run_all_seeds(*xs) for name, xs in inputs.items()}

    print(f"\nReLU MLP, SGD lr={args.lr}, {epochs} epochs, {n_seeds} seeds (mean ± std)")
    print(f"{'inputs':<18}{'train range':<18}{'test acc, epoch 1':<20}{'test acc, last':<18}{'test loss'}")
    for name, res in results.items():
        acc, loss = np.asarray(res["accuracy"]), np.asarray(res["loss"])
        low, high = float(jnp.min(inputs[name][0])), float(jnp.max(inputs[name][0]))
        loss_text = f"{np.nanmean(loss[:, -1]):.4f}" if np.isfinite(loss[:, -1]).any() else "nan (diverged)"
        print(f"{name:<18}{f'[{low:.2g}, {high:.3g}]':<18}{mean_std(acc[:, 0]):<20}{mean_std(acc[:, -1]):<18}"
              f"{loss_text}")
    final = {name: np.asarray(res["accuracy"])[:, -1] for name, res in results.items()}
    print(verdict(final["raw 0..16"], final["min-max [-1, 1]"], paired=True,
                  claim="scaling the pixels to [-1, 1] raises test accuracy over raw 0..16").line)

    args.out.mkdir(parents=True, exist_ok=True)
    fig = plotting.plot_curves({name: res["accuracy"] for name, res in results.items()},
                               title=f"Input scaling (ReLU MLP, SGD lr={args.lr})", ylabel="test accuracy")
    caption(fig, "The raw 0..16 pixels stay at chance: their first steps are 16x too large and kill the ReLUs. "
                 "Every scaled version learns; the zero-centred ones ([-1, 1], standardized) fastest.", width=90)
    plotting.save_figure(fig, args.out / "value_ranges.png")


if __name__ == "__main__":
    main()
