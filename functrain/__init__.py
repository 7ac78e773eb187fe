"""functrain: the classic deep-learning training tricks as small, typed, pure JAX functions.

``import functrain as ft``; submodules: ``ft.initializers``, ``ft.optim``.
"""

from functrain import initializers, optim
from functrain.typing import Array, Initializer, PRNGKey, PyTree, ScalarOrSchedule, Schedule

__version__ = "0.1.0"

__all__ = [
    "Array",
    "Initializer",
    "PRNGKey",
    "PyTree",
    "ScalarOrSchedule",
    "Schedule",
    "initializers",
    "optim",
]
