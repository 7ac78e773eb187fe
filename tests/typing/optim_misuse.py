"""Misuses of the optimizer API that mypy must reject (checked by tests/test_typing.py)."""

import jax.numpy as jnp

import functrain.optim as fo
from functrain.optim import schedules
from functrain.typing import Schedule

params = {"w": jnp.ones((2, 2))}

# A learning rate is a number, an array or a schedule, not a string.
fo.sgd("0.1")  # expect-error

# A schedule factory must be called first: the factory itself is not a Schedule.
bad_schedule: Schedule = schedules.cosine_decay  # expect-error

# Step counts are ints.
schedules.cosine_decay(0.1, decay_steps=10.5)  # expect-error

# update needs the state.
fo.adam(1e-3).update(params)  # expect-error

# States are typed: Adam's state is not a TraceState ...
trace_state: fo.TraceState = fo.scale_by_adam().init(params)  # expect-error

# ... and has no `momentum` field.
fo.scale_by_adam().init(params).momentum  # expect-error

# The state of a chain is a typed tuple: its first entry is Adam's state.
trace_again: fo.TraceState = fo.adam(1e-3).init(params)[0]  # expect-error

# AMSGrad has its own transformation and state type (no flag on scale_by_adam) ...
adam_state: fo.ScaleByAdamState = fo.scale_by_amsgrad().init(params)  # expect-error
fo.scale_by_adam(amsgrad=True)  # expect-error

# ... and counting states always hold their int32 step (never None).
fo.TraceState(step=None, trace=params)  # expect-error
fo.ScaleByLearningRateState(None)  # expect-error

# Guards wrap a transformation, not a learning rate; every_k is an int.
fo.skip_nonfinite(0.1)  # expect-error
fo.accumulate_gradients(fo.sgd(0.1), every_k=2.5)  # expect-error

# adamw's options are keyword-only (so adamw(lr, 1e-2) cannot silently set b1).
fo.adamw(1e-3, 0.9)  # expect-error

# clip_by_value's bounds are keyword-only.
fo.clip_by_value(1.0)  # expect-error

# apply_updates needs both trees.
fo.apply_updates(params)  # expect-error

# Correct use type-checks.
tx = fo.chain(fo.clip_by_global_norm(1.0), fo.adamw(schedules.cosine_decay(1e-3, 100)))
state = tx.init(params)
updates, state = tx.update(params, state, params)
adam_state_ok: fo.ScaleByAdamState = state[1][0]
step_ok: int = int(adam_state_ok.step) + int(fo.trace(0.9).init(params).step)
amsgrad_ok: fo.ScaleByAmsgradState = fo.scale_by_amsgrad().init(params)
new_params = fo.apply_updates(params, updates)
