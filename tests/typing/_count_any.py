"""Count ``Any`` in the annotations of functrain's public names (a report, not a test).

    PYTHONPATH=$PWD python tests/typing/_count_any.py          # functrain.__all__ only
    PYTHONPATH=$PWD python tests/typing/_count_any.py --all    # + every public subpackage/module
    PYTHONPATH=$PWD python tests/typing/_count_any.py --all -v # list each annotation

Every parameter and return annotation of a public function, of the ``__call__`` and public
methods of a public class, and every field of a public NamedTuple/dataclass is read as written
(``from __future__ import annotations`` keeps it a string) and put in one bucket:

* ``bare``: the annotation is ``Any`` (or missing);
* ``generic``: ``Any`` inside it (``TrainState[Any, Any, Any]``, ``Callable[..., Any]``);
* ``pytree``: no ``Any``, but the ``PyTree`` alias (which is ``Any``) inside it.

An overloaded function counts the annotations of each overload, not those of its implementation.
Names are deduplicated by object, so a function re-exported in several ``__all__`` counts once.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import sys
import typing
from collections import Counter
from typing import Any

MODULES = ["functrain", "functrain.layers", "functrain.optim", "functrain.optim.schedules",
           "functrain.train", "functrain.data", "functrain.typing", "functrain.losses",
           "functrain.initializers", "functrain.diagnostics"]


def bucket(annotation: object) -> str | None:
    if annotation is inspect.Parameter.empty:
        return "bare"
    text = annotation if isinstance(annotation, str) else getattr(annotation, "__name__", repr(annotation))
    try:
        tree = ast.parse(text, mode="eval").body
    except SyntaxError:
        return None
    names = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
    names |= {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)}
    if isinstance(tree, ast.Name) and tree.id == "Any":
        return "bare"
    if "Any" in names:
        return "generic"
    if "PyTree" in names:
        return "pytree"
    return None


def annotations_of(name: str, obj: Any, overloads: bool = True) -> list[tuple[str, object]]:
    out: list[tuple[str, object]] = []
    if inspect.isclass(obj):
        for field, ann in obj.__dict__.get("__annotations__", {}).items():
            out.append((f"{name}.{field}", ann))
        for meth_name, meth in obj.__dict__.items():
            if (meth_name == "__call__" or not meth_name.startswith("_")) and inspect.isfunction(meth):
                out += annotations_of(f"{name}.{meth_name}", meth)
        return out
    if not callable(obj):
        return out
    variants = typing.get_overloads(obj) if overloads else []
    if variants:  # what callers see: every overload (the implementation is not counted)
        return [x for i, o in enumerate(variants) for x in annotations_of(f"{name}#{i}", o, False)]
    try:
        sig = inspect.signature(obj)
    except (TypeError, ValueError):
        return out
    for p in sig.parameters.values():
        if p.name == "self":
            continue
        out.append((f"{name}({p.name})", p.annotation))
    out.append((f"{name} ->", sig.return_annotation))
    return out


def main() -> None:
    modules = MODULES if "--all" in sys.argv else MODULES[:1]
    seen: set[int] = set()
    counts: Counter[str] = Counter()
    for mod_name in modules:
        mod = importlib.import_module(mod_name)
        for name in getattr(mod, "__all__", []):
            obj = getattr(mod, name)
            if (inspect.ismodule(obj) or id(obj) in seen
                    or not getattr(obj, "__module__", "").startswith("functrain")):
                continue
            seen.add(id(obj))
            for where, ann in annotations_of(f"{mod_name}.{name}", obj):
                b = bucket(ann)
                if b is not None:
                    counts[b] += 1
                    if "-v" in sys.argv:
                        print(f"{b:8} {where}: {ann if ann is not inspect.Parameter.empty else '(none)'}")
    print(f"bare {counts['bare']}, inside generics {counts['generic']}, via PyTree {counts['pytree']}")


if __name__ == "__main__":
    main()
