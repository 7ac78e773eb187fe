"""Dropout: where it helps (a net that overfits), why (the generalization gap), and what it averages.

The setting is one where a network overfits: 400 training digits, 30% of their labels replaced by
a wrong class (the validation and test labels stay clean), an MLP 64-128-128-10 with ``Dropout``
after each hidden ReLU, Adam lr 1e-3 for 60 epochs. Without dropout the network memorizes the
wrong labels: its training loss (measured in evaluation mode, dropout off) falls towards zero
while the validation loss turns back up after ~15 epochs. Dropout (Srivastava et al. 2014) drops
each unit with probability ``rate`` during training and scales the kept ones by ``1 / (1 - rate)``
(inverted dropout), so no single unit can memorize an example; the gap between training and
validation loss stays small and the test accuracy stays high. Every rate starts from the same
weights (one set per seed), so rates are compared seed by seed (paired). ``Dropout(rate)``
accepts a traced rate: one compiled program trains every rate and seed at once.

On clean, plentiful data the same MLP does not overfit much and dropout has nothing to fix:
``--label-noise 0 --train-size 0`` (all 1078 clean training digits) gives an effect within noise.
The lesson's other explanation, "a random shock that helps escape local minima", is not what this
shows: dropout slows training down here (epoch-1 accuracy falls with the rate).

Dropout as model averaging: each training step uses a different thinned network (a random
subset of units). At test time the full network with every unit kept (inverted dropout already
scaled the weights) approximates the average prediction of all those thinned networks. The
second table measures it: the average of K sampled thinned networks' probabilities approaches
the full network's accuracy as K grows, and beats one thinned network.

    python examples/dropout.py [--quick] [--out DIR] [--seeds N] [--epochs N] [--train-size N]
                               [--label-noise P] [--width N]
"""

# matplotlib's stubs leave the ``**kwargs`` of nearly every Axes/Figure method unannotated, so
# pyright reports each method as partially unknown; this one rule is off in this file only.
# pyright: reportUnknownMemberType=false

from __future__ import annotations

from typing import Any, cast

import jax
import jax.numpy as jnp
import numpy as np
from _common import XY, init_seeds, jit, load_split, mean_std, parse_args, parser, take, verdict, watch_run
from _plots import caption, plot_gap

from functrain import layers, optim, plotting, train
from functrain.typing import Array, PyTree

RATES = (0.0, 0.2, 0.5, 0.8)
SAMPLES = (1, 2, 5, 10, 20, 50, 100)  # thinned networks averaged


def mlp(rate: float | Array, width: int) -> layers.Layer:
    """``Dense(width) -> ReLU -> Dropout(rate)`` twice, then ``Dense(10)``; ``rate`` may be traced."""
    block = [layers.Dense(width), layers.Relu, layers.Dropout(rate)]
    return layers.serial(*block, *block, layers.Dense(10))


def thinned_average(model: layers.Layer, params: PyTree, state: PyTree, test: XY, key: Array) -> Array:
    """Test accuracy of the average of the first K thinned networks' probabilities, for K in SAMPLES."""
    x, y = test

    def probs(k: Array) -> Array:
        return jax.nn.softmax(model.apply(params, state, x, key=k, train=True)[0])

    p = cast(Array, jax.lax.map(probs, jax.random.split(key, max(SAMPLES))))  # (K, n, 10); Unknown to pyright
    running = jnp.cumsum(p, axis=0)[jnp.asarray(SAMPLES) - 1]
    return jnp.mean(jnp.argmax(running, -1) == y, axis=-1)


def main(argv: list[str] | None = None) -> None:
    """Train the MLP with each dropout rate over several seeds; print, judge and plot the results."""
    p = parser(__doc__, seeds=4, epochs=60)
    p.add_argument("--train-size", type=int, default=400, help="training digits (0: all 1078)")
    p.add_argument("--label-noise", type=float, default=0.3, help="share of wrong training labels")
    p.add_argument("--width", type=int, default=128, help="units per hidden layer")
    args = parse_args(p, argv)
    n_seeds, epochs, width = (2, 3, 32) if args.quick else (args.seeds, args.epochs, args.width)
    split = load_split(validation=True, train_size=args.train_size or None, label_noise=args.label_noise)
    assert split.val is not None
    opt = optim.adam(1e-3)
    init_keys, fit_keys = jax.random.split(jax.random.key(1), (2, n_seeds))
    initial = init_seeds(mlp(0.0, width), init_keys, (-1, 64))
    watch = {"train": split.train, "val": split.val, "test": split.test}

    def run(start: tuple[PyTree, PyTree], key: Array, rate: Array) -> tuple[Any, dict[str, dict[str, Array]]]:
        """One seed at one (traced) dropout rate: the final (params, state) and per-epoch metrics."""
        model = mlp(rate, width)
        step = train.make_train_step(train.classifier_loss(model.apply, train=True), opt)
        eval_step = train.make_eval_step(train.classifier_loss(model.apply, train=False))
        final, seen = watch_run(step, train.init_train_state(*start, opt), split.train, key, epochs=epochs,
                                eval_step=eval_step, watch=watch)
        return (final.params, final.model_state), seen

    every_rate = jit(jax.vmap(jax.vmap(run, in_axes=(0, 0, None)), in_axes=(None, None, 0)))
    finals, seen = every_rate(initial, fit_keys, jnp.asarray(RATES))  # leading axes (rate, seed)
    seen = jax.device_get(seen)

    n_train = split.train[0].shape[0]
    print(f"MLP 64-{width}-{width}-10, Adam lr=1e-3, {n_train} training digits with {args.label_noise:.0%} "
          f"wrong labels, {epochs} epochs, {n_seeds} seeds (mean ± std)")
    print(f"{'dropout rate':<14}{'test acc, epoch 1':<20}{'train loss (eval)':<19}{'val loss':<10}"
          f"{'gap':<8}{'lowest val loss at':<20}{'test acc, last'}")
    for r, rate in enumerate(RATES):
        tr, va, acc = seen["train"]["loss"][r], seen["val"]["loss"][r], seen["test"]["accuracy"][r]
        best_epoch = int(np.argmin(va.mean(0))) + 1
        print(f"{rate:<14}{mean_std(acc[:, 0]):<20}{tr[:, -1].mean():<19.4f}{va[:, -1].mean():<10.3f}"
              f"{va[:, -1].mean() - tr[:, -1].mean():<8.3f}{f'epoch {best_epoch}':<20}{mean_std(acc[:, -1])}")
    r_half = RATES.index(0.5)
    final_acc = seen["test"]["accuracy"][:, :, -1]
    print(verdict(final_acc[0], final_acc[r_half], paired=True,
                  claim="dropout 0.5 raises the test accuracy of a net that overfits").line)

    # Dropout as model averaging: the rate-0.5 networks, thinned at random K times.
    model = mlp(0.5, width)
    params, state = take(finals, r_half)

    def thinned(pr: PyTree, st: PyTree, k: Array) -> Array:
        return thinned_average(model, pr, st, split.test, k)

    averaged = np.asarray(jit(jax.vmap(thinned))(
        params, state, jax.random.split(jax.random.key(7), n_seeds)))  # (seeds, len(SAMPLES))
    full = final_acc[r_half]
    print(f"\nDropout as model averaging (the rate-0.5 networks; {n_seeds} seeds)")
    print(f"{'prediction':<52}{'test accuracy'}")
    print(f"{'one thinned network (units dropped at random)':<52}{mean_std(averaged[:, 0])}")
    for i, k in enumerate(SAMPLES[1:], start=1):
        print(f"{f'average of {k} thinned networks':<52}{mean_std(averaged[:, i])}")
    print(f"{'full network, every unit kept (evaluation mode)':<52}{mean_std(full)}")
    print(verdict(averaged[:, 0], averaged[:, -1], paired=True,
                  claim=f"averaging {SAMPLES[-1]} thinned networks beats one thinned network").line)
    plot(args, seen, averaged, full, epochs)


def plot(args: Any, seen: dict[str, dict[str, Any]], averaged: np.ndarray[Any, Any],
         full: np.ndarray[Any, Any], epochs: int) -> None:
    """Three panels: the generalization gap, test accuracy per epoch, the model-averaging curve."""
    fig, (gap, acc, avg) = plotting.panels(1, 3, width=5.2, height=4.4)
    shown = [0, RATES.index(0.5)]
    plot_gap(gap, {f"rate {RATES[r]}": seen["train"]["loss"][r] for r in shown},
             {f"rate {RATES[r]}": seen["val"]["loss"][r] for r in shown},
             title="Training (eval mode) vs validation loss")
    plotting.plot_curves({f"rate {rate}": seen["test"]["accuracy"][r] for r, rate in enumerate(RATES)},
                         title="Test accuracy (dropout off at evaluation)", ylabel="test accuracy", ax=acc)
    k = np.asarray(SAMPLES)
    avg.errorbar(k, averaged.mean(0), yerr=averaged.std(0), marker="o", capsize=3,
                 label="average of K thinned networks")
    avg.axhline(float(full.mean()), color="black", linestyle="--", label="full network (evaluation mode)")
    avg.set_xscale("log")
    avg.set(title="Dropout as model averaging (rate 0.5)", xlabel="K thinned networks averaged",
            ylabel="test accuracy")
    avg.grid(True, alpha=0.3)
    avg.legend(fontsize="small")
    caption(fig, "Left: without dropout (blue) the training loss, scored with dropout off on the training labels "
                 "(30% of them wrong), falls towards 0: the net memorizes even the wrong labels, and its "
                 "validation loss turns up after its minimum (dot, dotted line: where early stopping would "
                 "stop). With rate 0.5 (orange) the training loss stays above the validation loss: it does not "
                 "learn the wrong labels. Middle: the test accuracy without dropout peaks early, then falls; "
                 "rate 0.5 keeps it; 0.8 learns too slowly for the budget. Right: averaging more thinned "
                 "networks approaches the full network, which does the averaging in one pass "
                 f"({epochs} epochs, mean ± std over seeds).")
    args.out.mkdir(parents=True, exist_ok=True)
    plotting.save_figure(fig, args.out / "dropout.png")


if __name__ == "__main__":
    main()
