"""Learning-rate decay: a high rate to go fast early, a small one to settle late, in a noise-limited run.

A schedule maps the step number to a learning rate; every functrain optimizer accepts one in
place of a number (``optim.sgd(schedule)``). The setting is one where the gradient noise limits
plain SGD: batches of 8 digits, a high learning rate (0.25) and a short budget (5 epochs of 168
steps) for an MLP 64-64-10. With a constant rate the last steps still jump around the minimum
(each step follows the noisy gradient of 8 examples), so the final weights land wherever the last
few steps threw them. Compared, for ``E`` epochs of ``S`` steps:

* constant ``eta``;
* the lesson's exponential decay, ``eta * 0.98^epoch``: ``exponential_decay(eta, 0.98, S,
  staircase=True)``; over 5 epochs it only reaches ``0.92 eta`` (it needs ~100 epochs to matter);
* step decay: ``eta``, then ``eta / 10`` for the last third (``piecewise_constant``);
* cosine decay from ``eta`` to 0 over ``E * S`` steps (Loshchilov & Hutter 2017);
* one-cycle: up from ``eta / 25`` to ``eta`` over the first 30% of the steps, then down to almost 0
  (Smith & Topin 2017).

Every schedule starts from the same weights with the same batches (one set per seed), so the
schedules are compared seed by seed (paired). The schedules are data: each one is tabulated as an
array of per-step rates and the optimizer reads ``table[step]``, so one compiled program trains
every schedule and every seed at once. What to expect: the schedules that decay to ~0 end at less
than half the training loss (the weights settle); the test accuracy rises by about 0.01, but the
constant rate's final accuracy scatters from seed to seed (that scatter is what decay removes),
so the accuracy gain is within noise at 6 seeds. On a long budget with a moderate rate
(``--epochs 20 --lr 0.1 --batch-size 32``) every schedule ends at the same accuracy: the digits are
easy and a constant rate also settles.

    python examples/lr_decay.py [--quick] [--out DIR] [--seeds N] [--epochs N] [--lr LR] [--batch-size N]
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from _common import init_seeds, jit, load_split, mean_std, parse_args, parser, verdict, watch_run
from _plots import caption

from functrain import layers, optim, plotting, train
from functrain.optim import schedules
from functrain.typing import Array, PyTree, Schedule


def schedule_set(lr: float, steps_per_epoch: int, total: int) -> dict[str, Schedule]:
    """The compared schedules, by label."""
    return {
        f"constant {lr:g}": schedules.constant(lr),
        "x0.98 per epoch": schedules.exponential_decay(lr, 0.98, steps_per_epoch, staircase=True),
        "step: /10 for the last third": schedules.piecewise_constant(lr, {2 * total // 3: 0.1}),
        "cosine decay": schedules.cosine_decay(lr, total),
        "one-cycle": schedules.one_cycle(total, lr),
    }


def main(argv: list[str] | None = None) -> None:
    """Train with each schedule; print the table and verdicts, plot the schedules and the curves."""
    p = parser(__doc__, seeds=6, epochs=5)
    p.add_argument("--lr", type=float, default=0.25, help="initial (one-cycle: peak) learning rate")
    p.add_argument("--batch-size", type=int, default=8)
    args = parse_args(p, argv)
    n_seeds, epochs = (2, 1) if args.quick else (args.seeds, args.epochs)

    split = load_split()
    steps_per_epoch = split.train[0].shape[0] // args.batch_size  # the last partial batch is dropped
    total = epochs * steps_per_epoch
    named = schedule_set(args.lr, steps_per_epoch, total)
    tables = jnp.stack([jax.vmap(s)(jnp.arange(total)) for s in named.values()])  # (schedules, steps)

    model = layers.serial(*[layers.Dense(64), layers.Relu] * 2, layers.Dense(10))
    eval_step = train.make_eval_step(train.classifier_loss(model.apply, train=False))
    init_keys, fit_keys = jax.random.split(jax.random.key(1), (2, n_seeds))
    initial = init_seeds(model, init_keys, (-1, 64))  # (params, state) per seed

    def run(start: tuple[PyTree, PyTree], key: Array, table: Array) -> dict[str, dict[str, Array]]:
        """One seed under one tabulated schedule (a traced array of per-step rates)."""
        opt = optim.sgd(lambda step: table[jnp.minimum(step, total - 1)])
        step = train.make_train_step(train.classifier_loss(model.apply, train=True), opt)
        _, seen = watch_run(step, train.init_train_state(*start, opt), split.train, key, epochs=epochs,
                            batch_size=args.batch_size, eval_step=eval_step,
                            watch={"train": split.train, "test": split.test})
        return seen

    every = jit(jax.vmap(jax.vmap(run, in_axes=(0, 0, None)), in_axes=(None, None, 0)))
    seen = jax.device_get(every(initial, fit_keys, tables))  # leading axes (schedule, seed)

    print(f"MLP 64-64-10, SGD, batch {args.batch_size}, {epochs} epochs of {steps_per_epoch} steps, "
          f"{n_seeds} seeds (mean ± std)")
    print(f"{'schedule':<30}{'final lr':<11}{'train loss (final weights)':<28}{'test loss':<18}{'test acc'}")
    for g, (name, schedule) in enumerate(named.items()):
        tl, te, acc = seen["train"]["loss"][g], seen["test"]["loss"][g], seen["test"]["accuracy"][g]
        print(f"{name:<30}{float(schedule(total - 1)):<11.3g}{mean_std(tl[:, -1], 4):<28}"
              f"{mean_std(te[:, -1]):<18}{mean_std(acc[:, -1])}")
    cosine = list(named).index("cosine decay")
    train_loss, test_acc = seen["train"]["loss"][:, :, -1], seen["test"]["accuracy"][:, :, -1]
    print(verdict(train_loss[0], train_loss[cosine], paired=True, higher_is_better=False, metric="train loss",
                  digits=4, claim="cosine decay lowers the final training loss").line)
    print(verdict(test_acc[0], test_acc[cosine], paired=True,
                  claim="cosine decay raises the final test accuracy").line)
    plot(args, named, seen, total, steps_per_epoch)


def plot(args: Any, named: dict[str, Schedule], seen: dict[str, dict[str, Any]], total: int,
         steps_per_epoch: int) -> None:
    """The schedules, and the training loss and test accuracy of the final weights per epoch."""
    args.out.mkdir(parents=True, exist_ok=True)
    fig = plotting.plot_schedule(named, total, title=f"Learning-rate schedules ({total // steps_per_epoch} epochs x "
                                 f"{steps_per_epoch} steps)")
    caption(fig, "Every schedule starts at the same rate (one-cycle warms up to it); the lesson's x0.98 per "
                 "epoch barely moves in a short run.", width=90)
    plotting.save_figure(fig, args.out / "lr_decay_schedules.png")
    fig, (left, right) = plotting.panels(1, 2, width=5.5)
    plotting.plot_curves({name: seen["train"]["loss"][g] for g, name in enumerate(named)},
                         title="Training loss of the weights after each epoch", ylabel="cross-entropy loss",
                         log_y=True, ax=left)
    plotting.plot_curves({name: seen["test"]["accuracy"][g] for g, name in enumerate(named)},
                         title="Test accuracy after each epoch", ylabel="test accuracy", ax=right)
    caption(fig, "Look at the last epoch: the schedules that end near 0 (cosine, one-cycle, step) reach less than "
                 "half the training loss of the constant rate, whose weights still jump with every noisy "
                 "batch; its test accuracy band (± std over seeds) is wide for the same reason.", width=120)
    plotting.save_figure(fig, args.out / "lr_decay_curves.png")


if __name__ == "__main__":
    main()
