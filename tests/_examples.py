"""Running the scripts of ``examples/`` inside the test process, as ``python examples/NAME.py`` would.

A script imports its neighbours (``_common.py``, ``_plots.py``, ``convnet.py``) because ``examples/``
is first on ``sys.path`` when it runs. :func:`examples_on_path` puts it there for the duration of a
``with`` block only, and afterwards forgets the modules imported from ``examples/``, so no test
leaves the path or ``sys.modules`` changed. :func:`verdicts` reads the verdict lines a script
printed (``_common.verdict``'s format). Shared by tests/test_examples.py and
tests/test_examples_layers.py.
"""

from __future__ import annotations

import importlib.util
import re
import sys
from collections.abc import Generator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
VERDICT = re.compile(r"^verdict: (?P<claim>.+): effect (?P<effect>[+-]\d+\.\d+) (?P<metric>.+) "
                     r"vs (?:seed|paired) std (?P<spread>\d+\.\d+): (?P<label>shown|within noise|reversed)$")


@contextmanager
def examples_on_path() -> Generator[None, None, None]:
    """``examples/`` first on ``sys.path`` inside the block; path and module table restored after it."""
    before = set(sys.modules)
    sys.path.insert(0, str(EXAMPLES))
    try:
        yield
    finally:
        sys.path.remove(str(EXAMPLES))
        for name in set(sys.modules) - before:
            file = getattr(sys.modules[name], "__file__", None)
            if file is not None and Path(file).resolve().parent == EXAMPLES:
                del sys.modules[name]


def load_example(name: str) -> ModuleType:
    """Import ``examples/<name>.py`` as a module (call inside :func:`examples_on_path`)."""
    spec = importlib.util.spec_from_file_location(f"_functrain_example_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def run_example(name: str, argv: list[str]) -> None:
    """``main(argv)`` of ``examples/<name>.py``, with ``examples/`` on the path only meanwhile."""
    with examples_on_path():
        load_example(name).main(argv)


def verdicts(printed: str) -> list[str]:
    """The labels (``shown``, ``within noise``, ``reversed``) of the verdict lines in ``printed``, in order.

    Every line that starts with ``verdict:`` must have the full format (else AssertionError).
    """
    labels: list[str] = []
    for line in printed.splitlines():
        if line.startswith("verdict:"):
            match = VERDICT.match(line)
            assert match is not None, f"malformed verdict line: {line!r}"
            labels.append(match["label"])
    return labels
