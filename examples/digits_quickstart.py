"""The shortest end-to-end functrain run: load, scale, model, Adam, fit with early stopping, evaluate.

    python examples/digits_quickstart.py [--quick] [--out DIR]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import jax

from functrain import data, layers, optim, plotting, train


def main(argv: list[str] | None = None) -> None:
    """Train an MLP on the digits and print its test accuracy; plot the learning curves."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few epochs (smoke test)")
    parser.add_argument("--out", type=Path, default=Path("examples/out"), help="directory for the PNG")
    args = parser.parse_args(argv)

    k_split, k_val, k_init, k_fit = jax.random.split(jax.random.key(0), 4)
    train_test = data.split_dataset(k_split, data.load_digits(), test_fraction=0.2)
    fit_val = data.split_dataset(k_val, train_test.train, test_fraction=0.2)
    stats = data.fit_min_max(fit_val.train.x)  # fitted on the training part only
    xy = {name: (data.min_max_scale(stats, d.x), d.y)
          for name, d in [("train", fit_val.train), ("val", fit_val.test), ("test", train_test.test)]}

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
