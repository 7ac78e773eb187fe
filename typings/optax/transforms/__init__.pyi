# optax.transforms ships no types (optax has no py.typed): every name is Any, never an error.
from _typeshed import Incomplete

def __getattr__(name: str) -> Incomplete: ...
