# Minimal stub: sklearn.datasets.load_digits, the only loader functrain calls (with return_X_y=True).
from typing import Any, Literal, overload

import numpy as np
from numpy.typing import NDArray

class Bunch(dict[str, Any]):
    def __getattr__(self, key: str) -> Any: ...

@overload
def load_digits(
    *, n_class: int = ..., return_X_y: Literal[True], as_frame: bool = ...
) -> tuple[NDArray[np.float64], NDArray[np.int64]]: ...
@overload
def load_digits(
    *, n_class: int = ..., return_X_y: Literal[False] = ..., as_frame: bool = ...
) -> Bunch: ...

# Incomplete on purpose: every other real scikit-learn name is Any, never an error.
from _typeshed import Incomplete as _Incomplete

def __getattr__(name: str) -> _Incomplete: ...
