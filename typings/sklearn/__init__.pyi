# Minimal stubs for the parts of scikit-learn that functrain uses (scikit-learn ships no py.typed).
__version__: str

# Incomplete on purpose: every other real scikit-learn name is Any, never an error.
from _typeshed import Incomplete as _Incomplete

def __getattr__(name: str) -> _Incomplete: ...
