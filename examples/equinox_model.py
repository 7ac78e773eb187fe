"""Training an equinox model with functrain: optimizers, ``make_train_step``, ``fit``, ``reinitialize``.

Any pytree of arrays can be trained. ``eqx.partition(model, eqx.is_inexact_array)`` splits an
``eqx.nn.MLP`` into its arrays (trained: gradients, optimizer state, early stopping and
checkpoints all see them) and its static rest (activation functions, sizes), and the loss
function puts them back together with ``eqx.combine``. Equinox layers take one example, so the
batch goes through ``jax.vmap(model)``.

``initializers.reinitialize`` then re-draws every weight of the same module with He's
initialization and zeroes the biases, and the fresh model trains again. Equinox stores a linear
layer's weight as ``(out_features, in_features)``; ``reinitialize`` recognizes ``eqx.nn.Linear``
and ``eqx.nn.Conv`` and draws their kernels with the right fans.

    python examples/equinox_model.py [--quick] [--out DIR] [--epochs N]
"""

from __future__ import annotations

from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from _common import load_split, parser  # examples/_common.py, next to this file

from functrain import initializers, losses, optim, plotting, train
from functrain.typing import Array, Metrics, PRNGKey, PyTree


def main(argv: list[str] | None = None) -> None:
    """Train an eqx.nn.MLP, re-initialize it with He weights, train it again; compare."""
    args = parser(__doc__, epochs=30).parse_args(argv)
    epochs = 2 if args.quick else args.epochs

    train_xy, test_xy, val_xy = load_split(val_fraction=0.2, val_key=2)
    assert val_xy is not None

    k_model, k_reinit, k_fit = jax.random.split(jax.random.key(1), 3)
    model = eqx.nn.MLP(in_size=64, out_size=10, width_size=64, depth=2, activation=jax.nn.relu, key=k_model)
    params, static = eqx.partition(model, eqx.is_inexact_array)

    def loss_fn(params: PyTree, model_state: PyTree, batch: tuple[Array, Array],
                key: PRNGKey) -> tuple[Array, tuple[PyTree, Metrics]]:
        net = eqx.combine(params, static)
        x, y = batch
        logits = jax.vmap(net)(x)
        return losses.softmax_cross_entropy(logits, y), (model_state, {"accuracy": losses.accuracy(logits, y)})

    opt = optim.adam(1e-3)
    step = train.make_train_step(loss_fn, opt)
    eval_step = train.make_eval_step(loss_fn)  # no dropout or batch norm: the same function evaluates

    reinitialized = initializers.reinitialize(model, k_reinit, weight_init=initializers.he_normal())
    last = reinitialized.layers[-1].weight
    print(f"re-initialized output layer: weight {tuple(last.shape)}, std {float(jnp.std(last)):.3f} "
          f"(He for 64 inputs: {float(np.sqrt(2 / 64)):.3f})")

    print(f"\neqx.nn.MLP 64-64-64-10, Adam lr=1e-3, up to {epochs} epochs with early stopping (patience 5)")
    print(f"{'initialization':<36}{'epochs run':<12}{'test loss':<12}{'test accuracy'}")
    curves: dict[str, np.ndarray[Any, Any]] = {}
    for name, start in [("equinox default U(+-1/sqrt(n_in))", model), ("functrain he_normal", reinitialized)]:
        start_params, _ = eqx.partition(start, eqx.is_inexact_array)
        state = train.init_train_state(start_params, (), opt)
        state, history = train.fit(step, state, train_xy, k_fit, epochs=epochs, batch_size=32,
                                   eval_step=eval_step, val_data=val_xy,
                                   early_stopping=train.early_stopping(5), progress=False)
        test = train.evaluate(eval_step, state, test_xy, batch_size=512)
        print(f"{name:<36}{len(history.epoch):<12}{float(test['loss']):<12.4f}{float(test['accuracy']):.3f}")
        curves[name] = history.val["loss"]
        trained = eqx.combine(state.params, static)  # a regular equinox module again
        assert isinstance(trained, eqx.nn.MLP)

    args.out.mkdir(parents=True, exist_ok=True)
    plotting.plot_curves(curves, title="eqx.nn.MLP trained by functrain", ylabel="validation loss", log_y=True,
                         path=args.out / "equinox_model.png")


if __name__ == "__main__":
    main()
