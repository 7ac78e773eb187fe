"""Applications built on functrain: experiments behind the ``functrain`` command.

Nothing in the library imports this package (``import functrain`` does not load it); it is not
part of functrain's API and may change with the command.

* :mod:`functrain.experiments.tricks` -- the classic training tricks measured one at a time on the
  digits (``functrain tricks``), and one configurable run (``functrain train``).
* :mod:`functrain.experiments.interrupts` -- Ctrl-C recorded at once and honored between compiled
  calls (never inside an XLA compilation).
"""
