# jaxlib._jax is a C extension that ships no .pyi (jaxlib is otherwise typed), so pyright types
# jax.Device (and every jnp function taking device=) as Unknown. This partial stub (no
# __init__.pyi: the rest of jaxlib resolves from the real package) gives the names jax's own
# annotations use a type; every other name is Any, never an error. mypy already treats the
# missing module as Any.
from _typeshed import Incomplete

class Device:
    id: int
    platform: str
    device_kind: str
    process_index: int

def __getattr__(name: str) -> Incomplete: ...

class pytree:
    """``jaxlib._jax.pytree`` (a submodule at run time): the names jax's annotations use."""

    class PyTreeDef:
        num_leaves: int
        num_nodes: int
        def __getattr__(self, name: str) -> Incomplete: ...
