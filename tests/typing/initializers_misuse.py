"""Misuses of the initializer API that mypy must reject (checked by tests/test_typing.py)."""

import jax

from functrain import initializers
from functrain.typing import Initializer, Schedule

key = jax.random.key(0)

# An initializer factory must be called first: the factory itself is not an Initializer.
bad_factory: Initializer = initializers.glorot_normal  # expect-error

# An initializer is not a schedule (it needs a key and a shape).
bad_schedule: Schedule = initializers.he_normal()  # expect-error

# A missing shape argument.
initializers.gaussian()(key)  # expect-error

# A shape must be a sequence of ints, not an int.
initializers.uniform(0.1)(key, 3)  # expect-error

# reinitialize's initializers are keyword-only.
initializers.reinitialize({"w": jax.numpy.ones((2, 2))}, key, initializers.zeros())  # expect-error

# Correct use type-checks.
good: Initializer = initializers.orthogonal(gain=2.0)
w = good(key, (3, 3))
