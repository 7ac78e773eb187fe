"""Training an equinox model with functrain: optimizers, ``make_train_step``, ``fit_scan``, ``reinitialize``.

Any pytree of arrays can be trained. ``eqx.partition(model, eqx.is_inexact_array)`` splits an
``eqx.nn.MLP`` into its arrays (trained: gradients, optimizer state, early stopping and
checkpoints all see them) and its static rest (activation functions, sizes), and the loss
function puts them back together with ``eqx.combine``. Equinox layers take one example, so the
batch goes through ``jax.vmap(model)``. The arrays of several seeds' models are stacked along a
leading axis, so ``jax.vmap`` trains every seed at once (the static rest is shared).

``initializers.reinitialize`` re-draws every weight of the same modules with He's initialization
(``N(0, 2/n_in)``) and zeroes the biases. Equinox stores a linear layer's weight as
``(out_features, in_features)``; ``reinitialize`` recognizes ``eqx.nn.Linear`` and ``eqx.nn.Conv``
and draws their kernels with the right fans. Both initializations then train with Adam and early
stopping (patience 5, best epoch restored), over 5 seeds. Equinox's default, ``U(+-1/sqrt(n_in))``
(variance ``1/(3 n_in)``), is 6x smaller than He's ``2/n_in``: through eight ReLU layers the
signal shrinks by ~6x in variance per layer, and even Adam trains the network more slowly and to a
lower accuracy. (On a shallow MLP of two hidden layers the two are within noise;
``initialization.py`` shows the signal through depth.)

    python examples/equinox_model.py [--quick] [--out DIR] [--seeds N] [--epochs N]
"""

from __future__ import annotations

from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from _common import fit_run, jit, load_split, mean_std, parse_args, parser, stack, take, verdict
from _plots import caption

from functrain import initializers, losses, optim, plotting, train
from functrain.typing import Array, Metrics, PRNGKey, PyTree

DEPTH = 8


def partition(model: PyTree) -> tuple[PyTree, PyTree]:
    """``eqx.partition(model, eqx.is_inexact_array)``: the trainable arrays and the rest."""
    parts: tuple[PyTree, PyTree] = eqx.partition(  # pyright: ignore[reportUnknownMemberType, reportUnknownVariableType]
        model, eqx.is_inexact_array)  # (equinox leaves pytree and filter_spec unannotated)
    return parts


def combine(params: PyTree, static: PyTree) -> PyTree:
    """``eqx.combine(params, static)``: the module again."""
    return eqx.combine(params, static)  # pyright: ignore[reportUnknownMemberType]  # an overload takes Unknown


def stacked(models: list[eqx.nn.MLP]) -> PyTree:
    """The trainable arrays of several models, stacked along a leading seed axis."""
    return stack(*[partition(m)[0] for m in models])


def main(argv: list[str] | None = None) -> None:
    """Train deep eqx.nn.MLPs with equinox's and He's initialization over seeds; compare."""
    args = parse_args(parser(__doc__, seeds=5, epochs=30), argv)
    n_seeds, epochs = (2, 2) if args.quick else (args.seeds, args.epochs)
    split = load_split(validation=True)
    assert split.val is not None

    keys = jax.random.split(jax.random.key(1), (n_seeds, 3))
    models = [eqx.nn.MLP(in_size=64, out_size=10, width_size=64, depth=DEPTH, activation=jax.nn.relu, key=k[0])
              for k in keys]
    _, static = partition(models[0])
    reinitialized = [initializers.reinitialize(m, k[1], weight_init=initializers.he_normal())
                     for m, k in zip(models, keys)]
    last = reinitialized[0].layers[-1].weight
    print(f"re-initialized output layer: weight {tuple(last.shape)}, std {float(jnp.std(last)):.3f} "
          f"(He for 64 inputs: {float(np.sqrt(2 / 64)):.3f})")

    def loss_fn(params: PyTree, model_state: PyTree, batch: tuple[Array, Array],
                key: PRNGKey) -> tuple[Array, tuple[PyTree, Metrics]]:
        net = combine(params, static)
        x, y = batch
        logits = jax.vmap(net)(x)
        return losses.softmax_cross_entropy(logits, y), (model_state, {"accuracy": losses.accuracy(logits, y)})

    opt = optim.adam(1e-3)
    step = train.make_train_step(loss_fn, opt)
    eval_step = train.make_eval_step(loss_fn)  # no dropout or batch norm: the same function evaluates

    @jit
    @jax.vmap
    def run(params: PyTree, key: Array) -> tuple[dict[str, Array], train.EpochMetrics]:
        """One seed: train with early stopping, score the restored best epoch on the test set."""
        best, metrics = fit_run(step, train.init_train_state(params, (), opt), split.train, key, epochs=epochs,
                                eval_step=eval_step, val_data=split.val, eval_batch_size=512,
                                early_stopping=train.early_stopping(5))
        return train.evaluate(eval_step, best, split.test, batch_size=512), metrics

    print(f"\neqx.nn.MLP 64-{DEPTH} x 64-10 (ReLU), Adam lr=1e-3, up to {epochs} epochs with early stopping "
          f"(patience 5), {n_seeds} seeds (mean ± std)")
    print(f"{'initialization':<36}{'epochs run':<14}{'test loss':<18}{'test accuracy'}")
    results: dict[str, tuple[dict[str, Any], Any]] = {}
    for name, ms in [("equinox default U(+-1/sqrt(n_in))", models), ("functrain he_normal", reinitialized)]:
        test, metrics = jax.device_get(run(stacked(ms), keys[:, 2]))
        results[name] = (test, metrics)
        ran = np.asarray(metrics.active).sum(axis=1)
        print(f"{name:<36}{mean_std(ran, 1):<14}{mean_std(test['loss'], 4):<18}{mean_std(test['accuracy'])}")
    trained = combine(take(stacked(models), 0), static)
    assert isinstance(trained, eqx.nn.MLP)  # a regular equinox module again
    (default, _), (he, _) = results.values()
    print(verdict(default["accuracy"], he["accuracy"],
                  claim=f"He initialization beats equinox's default on a deep MLP ({DEPTH} hidden layers)").line)

    args.out.mkdir(parents=True, exist_ok=True)
    fig = plotting.plot_curves({name: np.where(m.active, m.val["loss"], np.nan) for name, (_, m) in results.items()},
                               title="eqx.nn.MLP trained by functrain", ylabel="validation loss", log_y=True)
    caption(fig, "With He's initialization the validation loss falls faster and lower; each run ends where "
                 "early stopping stopped it (the best epoch is restored).", width=90)
    plotting.save_figure(fig, args.out / "equinox_model.png")


if __name__ == "__main__":
    main()
