"""The output files of the commands: checked before any work, written all-or-nothing.

:func:`check_outputs` runs before training and creates nothing: the output directory must be a
directory we can write to, or creatable (its nearest existing ancestor a writable directory), and
no output file may be in the way as a directory. :func:`write_outputs` then writes every file as a
temporary in the output directory (flushed to disk), and only once all of them are complete
renames them into place (``os.replace``, atomic): a failure while writing (a full disk ...)
removes the temporaries and leaves the previous outputs untouched, never a mix of old and new
files, and raises :class:`WriteError` naming the file. Directories it created for a write that
failed are removed again. The temporaries are ``.NAME.<8 hex digits>.tmp``; those a killed run
left behind are removed by the next write of the same outputs.

Example:
    >>> import os, tempfile
    >>> from functrain.experiments.tricks import outputs
    >>> out = os.path.join(tempfile.mkdtemp(), "run")
    >>> outputs.check_outputs(out, ["a.txt"]).name, os.path.exists(out)  # checked, nothing created
    ('run', False)
"""

from __future__ import annotations

import errno
import glob
import os
import re
import secrets
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

__all__ = ["CommandError", "WriteError", "Writer", "check_outputs", "write_outputs"]


class CommandError(Exception):
    """A bad value found after parsing (an output directory, a data file): one line, exit status 2."""


class WriteError(Exception):
    """An output could not be written (e.g. a full disk): one line naming the file, exit status 1."""


Writer = Callable[[Path], object]
"""Writes one output, complete, to the path it is given (a temporary in the output directory)."""


def _why(e: OSError) -> str:
    return e.strerror or str(e)


def _writable_dir(path: Path) -> bool:
    return os.access(path, os.W_OK | os.X_OK)


def check_outputs(out: str, names: Sequence[str]) -> Path:
    """Check that the files ``names`` can be written in the directory ``out``; create nothing.

    Raises:
        CommandError: ``out`` is a file or cannot be created or written, or an output file is
            in the way as a directory (the message starts with ``--out <out>:``).
    """
    directory = Path(out)
    if directory.exists():
        if not directory.is_dir():
            raise CommandError(f"--out {out}: cannot create the output directory (a file of that name exists)")
        if not _writable_dir(directory):
            raise CommandError(f"--out {out}: the output directory is not writable")
        for name in names:
            target = directory / name
            if target.is_dir():
                raise CommandError(f"--out {out}: {target} is a directory, where the output file {name} "
                                   "goes; move it away or choose another --out")
        return directory
    ancestor = directory.absolute().parent
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise CommandError(f"--out {out}: cannot create the output directory ({ancestor} is a file)")
    if not _writable_dir(ancestor):
        raise CommandError(f"--out {out}: cannot create the output directory ({ancestor} is not writable)")
    return directory


def _make_dirs(directory: Path) -> list[Path]:
    """Create ``directory`` and its missing ancestors; return those created, outermost first."""
    missing: list[Path] = []
    d = directory.absolute()
    while not d.exists():
        missing.append(d)
        d = d.parent
    created: list[Path] = []
    for d in reversed(missing):
        try:
            d.mkdir()
        except OSError as e:
            _remove_dirs(created)
            raise WriteError(f"cannot create the output directory {d}: {_why(e)}") from e
        created.append(d)
    return created


def _remove_dirs(created: list[Path]) -> None:
    for d in reversed(created):
        try:
            d.rmdir()
        except OSError:
            pass  # not empty after all (someone else wrote there): leave it


def _temporaries(directory: Path, name: str) -> list[Path]:
    """The temporaries of ``name`` that :func:`_reserve` names (left behind by a killed run)."""
    return [p for p in directory.glob(f".{glob.escape(name)}.*.tmp")
            if _TEMPORARY.fullmatch(p.name[len(name) + 1:]) and p.is_file()]


_TEMPORARY = re.compile(r"\.[0-9a-f]{8}\.tmp")


def _reserve(directory: Path, name: str) -> Path:
    """A new, empty temporary file next to ``name`` (mode as the umask says, like any new file)."""
    while True:
        path = directory / f".{name}.{secrets.token_hex(4)}.tmp"
        try:
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        except FileExistsError:
            continue
        return path


def _sync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _sync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # e.g. Windows cannot open directories
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_outputs(directory: Path, writers: Mapping[str, Writer]) -> list[Path]:
    """Write every output (``name -> writer``) in ``directory``: all of them, or none.

    Args:
        directory: the output directory (created with its missing parents if needed).
        writers: per file name, a function writing the whole file to the path it is given.

    Returns:
        The paths written, in the order of ``writers``.

    Raises:
        WriteError: an ``OSError`` while creating the directory or writing a file (its message
            names the file); the previous outputs are left as they were and no temporary
            file remains.
    """
    created = _make_dirs(directory)
    for name in writers:  # a run killed while writing (SIGKILL, a second Ctrl-C) left these
        for stale in _temporaries(directory, name):
            stale.unlink(missing_ok=True)
    staged: dict[Path, Path] = {}
    try:
        for name, write in writers.items():
            target = directory / name
            try:
                staged[target] = _reserve(directory, name)
                write(staged[target])
                _sync(staged[target])
            except OSError as e:
                raise WriteError(f"cannot write {target}: {_why(e)}; no output was changed") from e
        for target, tmp in staged.items():
            try:
                os.replace(tmp, target)
            except OSError as e:
                if e.errno in (errno.EISDIR, errno.ENOTEMPTY, errno.EEXIST):
                    raise WriteError(f"cannot write {target}: it is a directory") from e
                raise WriteError(f"cannot write {target}: {_why(e)}") from e
    except BaseException:
        for tmp in staged.values():
            if tmp.exists():
                tmp.unlink()
        if not any(t.exists() for t in staged):
            _remove_dirs(created)
        raise
    _sync_dir(directory)
    return list(staged)
