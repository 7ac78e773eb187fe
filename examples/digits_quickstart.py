"""The shortest end-to-end functrain run: load, scale, model, Adam, fit with early stopping, evaluate.

No comparison and so no verdict: this is the API in a dozen lines. The split is the one every
example uses (``_common.load_split``: 25% of the digits held out for testing, 20% of the rest
for validation, pixels scaled to [-1, 1] with the training part's minimum and maximum).

    python examples/digits_quickstart.py [--quick] [--out DIR]
"""

from __future__ import annotations

import jax
from _common import load_split, parse_args, parser  # examples/_common.py, next to this file

from functrain import layers, optim, plotting, train


def main(argv: list[str] | None = None) -> None:
    """Train an MLP on the digits and print its test accuracy; plot the learning curves."""
    args = parse_args(parser(__doc__), argv)

    k_init, k_fit = jax.random.split(jax.random.key(0))
    split = load_split(validation=True)  # min-max statistics of the training part only
    xy = {"train": split.train, "val": split.val, "test": split.test}

    model = layers.serial(layers.Dense(128), layers.Relu, layers.Dense(10))
    params, model_state, _ = model.init(k_init, (-1, 64))
    opt = optim.adam(1e-3)
    state = train.init_train_state(params, model_state, opt)
    step = train.make_train_step(train.classifier_loss(model.apply, train=True), opt)
    eval_step = train.make_eval_step(train.classifier_loss(model.apply, train=False))
    state, history = train.fit(step, state, xy["train"], k_fit, epochs=3 if args.quick else 100,
                               batch_size=32, eval_step=eval_step, val_data=xy["val"],
                               early_stopping=train.early_stopping(patience=5), progress=not args.quick)

    test = train.evaluate(eval_step, state, xy["test"], batch_size=256)
    print(f"{'epochs run':<14}{'best epoch':<14}{'test loss':<14}{'test accuracy':<14}")
    print(f"{len(history.epoch):<14}{history.best_epoch!s:<14}{float(test['loss']):<14.4f}"
          f"{float(test['accuracy']):<14.4f}")
    args.out.mkdir(parents=True, exist_ok=True)
    plotting.plot_curves({"train": history.train["loss"], "validation": history.val["loss"]},
                         title="Digits MLP with Adam and early stopping", ylabel="cross-entropy loss",
                         log_y=True, path=args.out / "digits_quickstart.png")


if __name__ == "__main__":
    main()
