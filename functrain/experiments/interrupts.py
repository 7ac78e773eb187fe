"""Ctrl-C for the ``functrain`` command: recorded at once, honored between compiled calls.

Why the default does not do: Python's SIGINT handler raises ``KeyboardInterrupt`` wherever the
main thread happens to be. jaxlib polls for pending signals while XLA compiles, so an interrupt
during compilation raised ``KeyboardInterrupt`` out of ``backend.compile_and_load`` while XLA's
compiler threads were still at work, and the interpreter then shut down under them: the process
died with a segfault (exit -11) seconds later. Reported in 3 of 10 interrupts; reproduced in 6 of
18 SIGINTs sent to a 3-seed ``functrain train`` (MLP 128-128) 1-3 s after it printed
"compiling" (the others: a ``KeyboardInterrupt`` traceback, exit -2). An interrupt landing in
JAX's garbage-collection callback (``_xla_gc_callback``) was printed as "Exception ignored" and
swallowed: the run went on and exited 0. And a compiled run is one call that Python cannot
interrupt at all, so the signal waited for the whole run. With the deferral below, 19 of 19 such
interrupts (16 during compilation, 3 during training) exited 130 with one line.

So the command installs :func:`deferred_interrupts` for its whole duration: the handler only
records the interrupt (no exception is ever raised asynchronously, so no compilation is
abandoned half-way), and the command asks :meth:`InterruptFlag.requested` between compiled calls
(the runs are cut into chunks of epochs, see :mod:`functrain.experiments.tricks.chunks`), then
saves what it completed and raises :class:`Interrupted`; the command line prints its message as
one line and exits with status 130 (128 + SIGINT). The first Ctrl-C also restores the default
action, so a second Ctrl-C ends the process at once (nothing more is written; files already
written are complete, as every output is renamed into place only once written).

Example:
    >>> from functrain.experiments.interrupts import InterruptFlag, Interrupted
    >>> flag = InterruptFlag()
    >>> flag.requested(), (flag.request(), flag.requested())[1], issubclass(Interrupted, KeyboardInterrupt)
    (False, True, True)
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Generator
from contextlib import contextmanager
from types import FrameType

__all__ = ["EXIT_STATUS", "InterruptFlag", "Interrupted", "deferred_interrupts"]

EXIT_STATUS = 130
"""The exit status of an interrupted command: 128 + SIGINT, as shells report it."""


class Interrupted(KeyboardInterrupt):
    """A command stopped at a safe point after Ctrl-C; the message says what it kept or wrote."""


class InterruptFlag:
    """Whether Ctrl-C was pressed since :func:`deferred_interrupts` started (poll it)."""

    def __init__(self) -> None:
        self._requested = False

    def requested(self) -> bool:
        """``True`` once SIGINT arrived."""
        return self._requested

    def request(self) -> None:
        """Record an interrupt (what the signal handler does; also for tests)."""
        self._requested = True


@contextmanager
def deferred_interrupts() -> Generator[InterruptFlag, None, None]:
    """Record SIGINT in the yielded flag instead of raising ``KeyboardInterrupt``.

    The handler is installed only in the main thread and only over Python's default handler: a
    SIGINT that is ignored (``nohup``, a background job) stays ignored, and a caller's own handler
    stays in charge; the flag then never turns true. The previous handler is restored on exit.
    After the first interrupt the default action is restored, so a second one ends the process.
    """
    flag = InterruptFlag()
    if (threading.current_thread() is not threading.main_thread()
            or signal.getsignal(signal.SIGINT) is not signal.default_int_handler):
        yield flag
        return

    def record(signum: int, frame: FrameType | None) -> None:
        flag.request()
        signal.signal(signal.SIGINT, signal.SIG_DFL)  # a second Ctrl-C: stop at once

    previous = signal.signal(signal.SIGINT, record)
    try:
        yield flag
    finally:
        signal.signal(signal.SIGINT, previous)
