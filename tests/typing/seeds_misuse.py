"""Misuses of the multi-run and data-parallel API that mypy must reject."""

import jax
import jax.numpy as jnp

from functrain.train import distributed
from functrain.train.seeds import RunResults, grid, run_seeds, sweep

keys = jax.random.split(jax.random.key(0), 4)


def run(key: jax.Array) -> dict[str, jax.Array]:
    return {"x": jax.random.normal(key, ())}


def run_hp(key: jax.Array, hp: dict[str, jax.Array]) -> jax.Array:
    return hp["lr"] * jax.random.normal(key, ())


# A sweep's train_fn takes (key, hyperparameters); a seed run's takes only the key.
run_seeds(run_hp, keys)  # expect-error
sweep(run, keys, {"lr": jnp.ones(2)})  # expect-error

# chunk_size and jit are keyword-only.
run_seeds(run, keys, 2)  # expect-error

# The results keep train_fn's type: a dict here, not an array.
out: RunResults[jax.Array] = run_seeds(run, keys)  # expect-error

# grid takes named 1-d axes only.
grid([0.1, 0.01])  # expect-error

# data_parallel_step needs a mesh, not a device list.
distributed.data_parallel_step(lambda s, b, k: (s, {}), jax.devices())  # expect-error

# Correct use type-checks.
ok: RunResults[dict[str, jax.Array]] = run_seeds(run, keys, chunk_size=2)
swept = sweep(run_hp, keys, grid(lr=[0.1, 0.01]))
