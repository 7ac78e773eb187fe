"""Weight initialization: how the signal's scale changes through depth, and what that does to training.

``signal_propagation`` sends unit-variance inputs through a deep plain MLP and records the standard
deviation of the pre-activations (forward) and of the gradients with respect to them (backward)
at every layer. With ``N(0, 1)`` weights (``standard_normal``) a layer of ``n`` inputs multiplies
the scale by about ``sqrt(n)``: a ReLU network explodes forward and backward; tanh units saturate
at +-1 while the gradients still grow towards the input. ``gaussian`` (``N(0, 1/n)``) and
Xavier/Glorot (``N(0, 2/(n_in + n_out))``) keep a tanh network near 1 but halve a ReLU network's
variance per layer (it vanishes); He (``N(0, 2/n_in)``) keeps a ReLU network at 1 through any
depth. A short training run then compares the same deep
MLP under each initializer: the parameters are re-drawn with ``initializers.reinitialize``, so one
compiled training program serves every initializer.

    python examples/initialization.py [--quick] [--out DIR] [--depth N] [--width N] [--epochs N]
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from _common import fit_run, load_split, parser  # examples/_common.py, next to this file

from functrain import initializers, layers, optim, plotting, train
from functrain.diagnostics import SignalPropagation, signal_propagation
from functrain.typing import Array, Initializer, PyTree

INITIALIZERS: dict[str, Initializer] = {
    "standard_normal N(0,1)": initializers.standard_normal(),
    "gaussian N(0,1/n)": initializers.gaussian(),
    "xavier/glorot": initializers.xavier_normal(),
    "he/kaiming": initializers.he_normal(),
}
# signal_propagation's layers are square (n_in = n_out = n), where Xavier's 2/(n_in + n_out) is
# gaussian's 1/n: the two draw identical weights, so they share one line there.
SQUARE_LAYER_INITIALIZERS: dict[str, Initializer] = {
    "standard_normal N(0,1)": initializers.standard_normal(),
    "gaussian = xavier/glorot": initializers.xavier_normal(),
    "he/kaiming": initializers.he_normal(),
}
ACTIVATIONS: dict[str, tuple[Callable[[Array], Array], layers.Layer]] = {
    "tanh": (jnp.tanh, layers.Tanh),
    "relu": (jax.nn.relu, layers.Relu),
}


def main(argv: list[str] | None = None) -> None:
    """Measure signal propagation per initializer and activation, plot it, then train briefly."""
    p = parser(__doc__, seeds=3, epochs=10)
    p.add_argument("--depth", type=int, default=20, help="layers in the signal-propagation MLP")
    p.add_argument("--width", type=int, default=256, help="units per layer")
    args = p.parse_args(argv)
    depth, width, epochs, n_seeds = (args.depth, args.width, args.epochs, args.seeds)
    if args.quick:
        depth, width, epochs, n_seeds = 6, 32, 2, 2
    args.out.mkdir(parents=True, exist_ok=True)

    # 1. Signal propagation through `depth` layers of `width` units.
    print(f"Signal propagation through {depth} dense layers of {width} units (std of layer 1 -> layer {depth})")
    print(f"{'activation':<11}{'initializer':<26}{'forward std':<26}{'backward std':<26}")
    for act_name, (activation, _) in ACTIVATIONS.items():
        curves: dict[str, SignalPropagation] = {}
        for init_name, init in SQUARE_LAYER_INITIALIZERS.items():
            sp = signal_propagation(init, activation, depth, width, jax.random.key(0),
                                    batch=128 if args.quick else 512)
            curves[init_name] = sp
            fwd, bwd = np.asarray(sp.forward_std), np.asarray(sp.backward_std)
            print(f"{act_name:<11}{init_name:<26}{f'{fwd[0]:.3g} -> {fwd[-1]:.3g}':<26}"
                  f"{bwd[0]:.3g} -> {bwd[-1]:.3g}")
        plotting.plot_signal_propagation(curves, title=f"Signal propagation: {depth} x {width} {act_name} MLP",
                                         path=args.out / f"initialization_signal_{act_name}.png")

    # 2. Training the same deep MLP from each initialization (4 hidden layers of 64 units, SGD).
    train_xy, test_xy, _ = load_split()
    opt = optim.sgd(0.05)
    keys = jax.random.split(jax.random.key(1), n_seeds)
    print(f"\nTraining a 4 x 64 MLP with SGD lr=0.05 for {epochs} epochs, {n_seeds} seeds (mean ± std)")
    print(f"{'activation':<11}{'initializer':<26}{'final train loss':<20}{'test accuracy':<16}")
    for act_name, (_, act_layer) in ACTIVATIONS.items():
        model = layers.serial(*[layers.Dense(64), act_layer] * 4, layers.Dense(10))
        template, model_state, _ = model.init(jax.random.key(0), (-1, 64))
        step = train.make_train_step(train.classifier_loss(model.apply, train=True), opt)
        eval_step = train.make_eval_step(train.classifier_loss(model.apply, train=False))

        @jax.jit
        @jax.vmap
        def run(params: PyTree, key: Array) -> tuple[Array, Array]:
            """Train from the given initial parameters; the last epoch's train loss and test accuracy."""
            _, m = fit_run(step, train.init_train_state(params, model_state, opt), train_xy, key, epochs=epochs,
                           eval_step=eval_step, val_data=test_xy)
            return m.train["loss"][-1], m.val["accuracy"][-1]

        for init_name, init in INITIALIZERS.items():
            params = jax.vmap(lambda k: initializers.reinitialize(template, k, weight_init=init))(keys)
            loss, acc = (np.asarray(a) for a in run(params, keys))
            loss_text = f"{loss.mean():.4f}" if np.all(np.isfinite(loss)) else "diverged (nan)"
            print(f"{act_name:<11}{init_name:<26}{loss_text:<20}{acc.mean():.3f} ± {acc.std():.3f}")


if __name__ == "__main__":
    main()
