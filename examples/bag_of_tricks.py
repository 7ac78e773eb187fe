"""The modern training-tricks canon on a small ResNet on the digits, each trick against the baseline.

The baseline: a small ResNet (stem, two residual blocks with batch norm, global average pooling)
trained with SGD with momentum 0.9, a cosine learning-rate decay and cross-entropy.
Each row adds ONE trick to it (and the last row adds all of them), trained over several seeds
vmapped in one compiled program per row:

* label smoothing (Szegedy et al. 2016): targets ``(1 - eps) one_hot + eps / C``, eps = 0.1;
* mixup (Zhang et al. 2018): ``data.mixup`` inside the loss, alpha = 0.2;
* warmup (Goyal et al. 2017): ``schedules.with_warmup`` puts a linear warmup before the cosine;
* drop-path / stochastic depth (Huang et al. 2016): ``layers.DropPath(0.1)`` ends each residual branch;
* SAM (Foret et al. 2021): ``train.make_sam_train_step`` with rho = 0.05 (two passes per step);
* EMA of the weights: evaluate ``train.ema_update``'s average (decay 0.98 per step).

The table gives the test accuracy (mean ± std over seeds), the change against the baseline and a
verdict against the seed spread (``_common.verdict``, paired: every row trains the same seeds, so a
change counts only when it exceeds twice the std of the per-seed differences), and each row's
``verdict:`` line. On 1347 training digits most tricks are within the noise -- they
were designed for ImageNet-scale training; the point is that each is one small pure function here.

    python examples/bag_of_tricks.py [--quick] [--out DIR] [--seeds N] [--epochs N]
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from _common import XY, jit, load_split, mean_std, parser, verdict  # examples/_common.py, next to this file
from jax import lax

from functrain import data, layers, losses, optim, plotting, train
from functrain.initializers import he_normal
from functrain.optim.schedules import cosine_decay, with_warmup
from functrain.typing import Array, LossFn, Metrics, PRNGKey, PyTree

NUM_CLASSES = 10


class Tricks(NamedTuple):
    """Which tricks a run uses (static: each combination is its own compiled program)."""

    label_smoothing: float = 0.0
    mixup_alpha: float = 0.0
    warmup: bool = False
    drop_path: float = 0.0
    sam_rho: float = 0.0
    ema: bool = False


ROWS: dict[str, Tricks] = {
    "baseline": Tricks(),
    "label smoothing 0.1": Tricks(label_smoothing=0.1),
    "mixup alpha 0.2": Tricks(mixup_alpha=0.2),
    "warmup (10% of steps)": Tricks(warmup=True),
    "drop-path 0.1": Tricks(drop_path=0.1),
    "SAM rho 0.05": Tricks(sam_rho=0.05),
    "EMA of weights": Tricks(ema=True),
    "all of them": Tricks(0.1, 0.2, True, 0.1, 0.05, True),
}


def residual_block(channels: int, drop_rate: float) -> layers.Layer:
    """``ReLU(x + DropPath(BN(Conv(ReLU(BN(Conv(x)))))))``."""
    body = [layers.Conv2D(channels, 3, w_init=he_normal()), layers.BatchNorm(), layers.Relu,
            layers.Conv2D(channels, 3, w_init=he_normal()), layers.BatchNorm()]
    if drop_rate > 0:
        body.append(layers.DropPath(drop_rate))
    return layers.serial(layers.Residual(layers.serial(*body)), layers.Relu)


def build_model(drop_rate: float = 0.0) -> layers.Layer:
    """Stem, two residual blocks at 16 channels, global average pooling, a linear classifier."""
    return layers.serial(layers.Conv2D(16, 3, w_init=he_normal()), layers.BatchNorm(), layers.Relu,
                         residual_block(16, drop_rate), residual_block(16, drop_rate),
                         layers.GlobalAvgPool, layers.Dense(NUM_CLASSES))


def make_loss(model: layers.Layer, tricks: Tricks) -> LossFn:
    """Cross-entropy on (mixed) soft targets, smoothed by the loss (``label_smoothing``)."""
    def loss_fn(params: PyTree, model_state: PyTree, batch: XY, key: PRNGKey) -> tuple[Array, tuple[PyTree, Metrics]]:
        k_mix, k_model = jax.random.split(key)
        x, y = batch
        if tricks.mixup_alpha > 0:
            x, targets = data.mixup(k_mix, (x, y), tricks.mixup_alpha, num_classes=NUM_CLASSES)
        else:
            targets = jax.nn.one_hot(y, NUM_CLASSES)
        logits, new_state = model.apply(params, model_state, x, key=k_model, train=True)
        loss = losses.softmax_cross_entropy(logits, targets, label_smoothing=tricks.label_smoothing)
        return loss, (new_state, {})

    return loss_fn


def run(tricks: Tricks, key: PRNGKey, train_xy: XY, test_xy: XY, *, epochs: int,
        batch_size: int = 64, lr: float = 0.05) -> Array:
    """One seed: train with the given tricks, return the test accuracy (pure; vmap it over keys)."""
    model = build_model(tricks.drop_path)
    n_batches = len(train_xy[1]) // batch_size
    total = epochs * n_batches
    warmup = total // 10 if tricks.warmup else 0
    schedule = with_warmup(cosine_decay(lr, total - warmup), warmup)
    opt = optim.sgd(schedule, momentum=0.9)
    loss_fn = make_loss(model, tricks)
    step = (train.make_sam_train_step(loss_fn, opt, rho=tricks.sam_rho) if tricks.sam_rho > 0
            else train.make_train_step(loss_fn, opt))
    k_init, k_fit = jax.random.split(key)
    params, model_state, _ = model.init(k_init, (-1, 8, 8, 1))
    start = train.init_train_state(params, model_state, opt)
    x, y = train_xy

    def epoch(carry: tuple[Any, PyTree], k: PRNGKey) -> tuple[tuple[Any, PyTree], Array]:
        k_perm, k_steps = jax.random.split(k)
        order = jax.random.permutation(k_perm, len(y))[: n_batches * batch_size].reshape(n_batches, batch_size)

        def body(c: tuple[Any, PyTree], xs: tuple[Array, PRNGKey]) -> tuple[tuple[Any, PyTree], Array]:
            state, average = c
            state, metrics = step(state, (x[xs[0]], y[xs[0]]), xs[1])
            average = train.ema_update(average, state.params, 0.98) if tricks.ema else average
            return (state, average), metrics["loss"]

        carry, step_losses = lax.scan(body, carry, (order, jax.random.split(k_steps, n_batches)))
        return carry, jnp.mean(step_losses)

    (state, average), _ = lax.scan(epoch, (start, params), jax.random.split(k_fit, epochs))
    weights = average if tricks.ema else state.params
    logits, _ = model.apply(weights, state.model_state, test_xy[0], train=False)
    return losses.accuracy(logits, test_xy[1])


def main(argv: list[str] | None = None) -> None:
    """Train every row over seeds (one program per row); print the table, plot the scores."""
    args = parser(__doc__, seeds=5, epochs=15).parse_args(argv)
    n_seeds, epochs = (2, 1) if args.quick else (args.seeds, args.epochs)
    split = load_split(as_images=True, feature_range=(0.0, 1.0), train_size=256 if args.quick else None)
    layers.print_summary(build_model(0.1), (-1, 8, 8, 1))
    keys = jax.random.split(jax.random.key(0), n_seeds)
    rows = {"baseline": ROWS["baseline"], "all of them": ROWS["all of them"]} if args.quick else ROWS
    print(f"\nSmall ResNet on digits, SGD momentum 0.9 + cosine, {epochs} epochs, {n_seeds} seeds per row")
    print(f"{'trick (added to the baseline)':<30}{'test accuracy':<20}{'change':<10}verdict (vs seed spread)")
    scores: dict[str, np.ndarray[Any, Any]] = {}
    lines: list[str] = []
    for label, tricks in rows.items():
        def seed(k: PRNGKey, tricks: Tricks = tricks) -> Array:
            return run(tricks, k, split.train, split.test, epochs=epochs)

        one = jit(jax.vmap(seed))
        scores[label] = np.asarray(one(keys), np.float64)
        s, base = scores[label], scores["baseline"]
        if label == "baseline":
            print(f"{label:<30}{mean_std(s, 4):<20}")
            continue
        judged = verdict(base, s, claim=f"{label} raises test accuracy", paired=True, digits=4)
        print(f"{label:<30}{mean_std(s, 4):<20}{judged.effect:<+10.4f}{judged.label}")
        lines.append(judged.line)
    print("\n".join(lines))

    args.out.mkdir(parents=True, exist_ok=True)
    plotting.plot_scores(scores, title=f"Bag of tricks: small ResNet on digits ({n_seeds} seeds)",
                         xlabel="test accuracy (dot: mean over seeds, bar: ± std)",
                         path=args.out / "bag_of_tricks.png")


if __name__ == "__main__":
    main()
