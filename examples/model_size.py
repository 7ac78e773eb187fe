"""Model size against training-set size: the lesson's "balance parameters with samples", measured.

The lesson: "it's essential to balance the number of model parameters with the number of training
samples"; a model too powerful for its data overfits. This sweeps the width of an MLP
64-W-W-10 (W = 4, 16, 64, 256: 330 to 85k parameters) against the number of training digits
(100, 300, all 1347), with clean labels and with 30% of the training labels replaced by a wrong
class, over 3 seeds. Every run takes the same budget: 1500 Adam steps (lr 1e-3) on batches of 32
drawn from its training digits. The training-set size and the label version are data (batches
are drawn from the first ``n`` digits with a traced ``n``), so one compiled program per width
trains every size, label version and seed.

What it shows, honestly, in two parts:

* with clean labels, bigger is never worse here: at every training-set size the widest net is
  as good as or better than the smaller ones, even with 85k parameters for 100 digits. Over-parameterized
  nets trained by gradient methods often do not overfit the way the rule suggests when the labels
  are right (a well-known observation; why is still researched);
* with 30% wrong labels the rule holds: on all 1347 digits the 16-unit net (1.5k parameters) is the
  best, and the 256-unit net, which has the capacity to memorize the wrong labels, ends far
  below it. Balance matters when the data contain something that should not be learned.

    python examples/model_size.py [--quick] [--out DIR] [--seeds N] [--steps N]
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from _common import jit, load_split, mean_std, parse_args, parser, verdict
from _plots import caption, plot_heatmap
from jax import lax

from functrain import layers, optim, plotting, train
from functrain.typing import Array

WIDTHS = (4, 16, 64, 256)
SIZES = (100, 300, 1347)
NOISE = 0.3


def parameters(width: int) -> int:
    """Weights and biases of the MLP 64-W-W-10."""
    return 64 * width + width + width * width + width + width * 10 + 10


def sweep_width(width: int, labels: Array, sizes: Array, keys: Array, x: Array, test: tuple[Array, Array],
                steps: int) -> np.ndarray[Any, Any]:
    """Test accuracy ``(label versions, sizes, seeds)`` of the MLP of one width (one program)."""
    model = layers.serial(layers.Dense(width), layers.Relu, layers.Dense(width), layers.Relu, layers.Dense(10))
    opt = optim.adam(1e-3)
    step = train.make_train_step(train.classifier_loss(model.apply, train=True), opt)
    eval_step = train.make_eval_step(train.classifier_loss(model.apply, train=False))

    def run(y: Array, n: Array, key: Array) -> Array:
        """One run on the first ``n`` digits (traced) with labels ``y``; the final test accuracy."""
        k_init, k_steps = jax.random.split(key)
        params, state, _ = model.init(k_init, (-1, 64))

        def one(ts: Any, k: Array) -> tuple[Any, None]:
            k_batch, k_step = jax.random.split(k)
            idx = jax.random.randint(k_batch, (32,), 0, n)
            return step(ts, (x[idx], y[idx]), k_step)[0], None

        final, _ = lax.scan(one, train.init_train_state(params, state, opt), jax.random.split(k_steps, steps))
        return train.evaluate(eval_step, final, test, batch_size=512)["accuracy"]

    over_seeds = jax.vmap(run, in_axes=(None, None, 0))
    over_sizes = jax.vmap(over_seeds, in_axes=(None, 0, None))
    return np.asarray(jit(jax.vmap(over_sizes, in_axes=(0, None, None)))(labels, sizes, keys))


def main(argv: list[str] | None = None) -> None:
    """Sweep width x training-set size x label noise; print, judge and plot."""
    p = parser(__doc__, seeds=3)
    p.add_argument("--steps", type=int, default=1500, help="Adam steps per run (batches of 32)")
    args = parse_args(p, argv)
    n_seeds, steps, widths = (2, 20, WIDTHS[:2]) if args.quick else (args.seeds, args.steps, WIDTHS)
    clean, noisy = load_split(), load_split(label_noise=NOISE)
    x = clean.train[0]
    labels = jnp.stack([clean.train[1], noisy.train[1]])
    keys = jax.random.split(jax.random.key(1), n_seeds)
    acc = np.stack([sweep_width(w, labels, jnp.asarray(SIZES), keys, x, clean.test, steps) for w in widths])
    # acc: (widths, label versions, sizes, seeds)

    print(f"MLP 64-W-W-10, Adam lr=1e-3, {steps} steps of 32, {n_seeds} seeds: test accuracy (mean ± std)")
    for v, version in enumerate(["clean labels", f"{NOISE:.0%} wrong training labels"]):
        print(f"\n{version}")
        print(f"{'width (parameters)':<22}" + "".join(f"{f'{n} digits':<18}" for n in SIZES))
        for i, w in enumerate(widths):
            cells = "".join(f"{mean_std(acc[i, v, s]):<18}" for s in range(len(SIZES)))
            print(f"{f'{w} ({parameters(w)})':<22}{cells}")
    if not args.quick:
        w16, w256 = WIDTHS.index(16), WIDTHS.index(256)
        print(verdict(acc[w256, 1, -1], acc[w16, 1, -1],
                      claim=f"with {NOISE:.0%} wrong labels, a balanced net (16 units) beats a big one (256) "
                            f"on {SIZES[-1]} digits").line)
        print(verdict(acc[w256, 0, 0], acc[w16, 0, 0],
                      claim=f"with clean labels, a small net (16 units) beats a big one (256) on {SIZES[0]} "
                            "digits").line)
    plot(args, acc, widths, steps)


def plot(args: Any, acc: np.ndarray[Any, Any], widths: tuple[int, ...], steps: int) -> None:
    """Two heatmaps width x training-set size: clean and noisy labels."""
    fig, axes = plotting.panels(1, 2, width=6.0, height=4.4)
    for v, (ax, version) in enumerate(zip(axes, ["clean labels", f"{NOISE:.0%} wrong training labels"])):
        plot_heatmap(ax, acc[:, v].mean(axis=-1), std=acc[:, v].std(axis=-1), vmin=0.3, vmax=1.0,
                     rows=[f"{w} ({parameters(w)})" for w in widths], cols=[str(n) for n in SIZES],
                     title=f"Test accuracy, {version}", xlabel="training digits",
                     ylabel="width (parameters)")
    caption(fig, "Read down each column (one training-set size). Clean labels: the accuracy only grows with the "
                 "width, even for 100 digits. Wrong labels: with all the digits the best width is a middle one "
                 f"and the widest net is far worse -- it has the capacity to memorize the noise ({steps} Adam "
                 "steps per run; cells: mean ± std over seeds).", width=120)
    args.out.mkdir(parents=True, exist_ok=True)
    plotting.save_figure(fig, args.out / "model_size.png")


if __name__ == "__main__":
    main()
