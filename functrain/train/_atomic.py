"""Atomic file writes with cleanup of the temporaries of killed writers (used by checkpoints).

:func:`write_atomically` writes to ``.NAME.XXXXXXXX.tmp`` next to the target, holding an
exclusive ``flock`` on it, ``fsync``-s it, renames it over the target (``os.replace``: atomic on
POSIX and Windows) and ``fsync``-s the directory. A writer killed before the rename leaves its
temporary behind; the next write of the same target removes every such temporary that no live
writer holds (the kernel drops a dead writer's lock), so killed writes never accumulate. New files
get the mode the umask gives (``0o666 & ~umask``), as ``open`` would.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets

try:
    import fcntl
except ImportError:  # Windows: no flock; stale temporaries are removed when they can be
    fcntl = None  # type: ignore[assignment]  # the module is optional

__all__ = ["temporaries", "write_atomically"]


def _fsync_dir(directory: str) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # e.g. Windows cannot open directories; the rename is still atomic there
        return
    try:
        os.fsync(fd)
    except OSError:  # some file systems do not support fsync on directories
        pass
    finally:
        os.close(fd)


def temporaries(directory: str, base: str) -> list[str]:
    """The temporary files of saves of ``base`` in ``directory`` (``.BASE.XXXXXXXX.tmp``)."""
    pattern = re.compile(r"\." + re.escape(base) + r"\.[a-z0-9_]{8}\.tmp\Z")
    try:
        names = os.listdir(directory)
    except OSError:
        return []
    return [os.path.join(directory, n) for n in names if pattern.match(n)]


def _in_use(path: str) -> bool:
    """Whether a live save holds ``path`` (its exclusive flock); without flock: never."""
    if fcntl is None:
        return False
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return True  # cannot inspect it: leave it alone
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)  # (also releases the lock just taken)
    return False


def _remove_stale_temporaries(directory: str, base: str) -> None:
    for tmp in temporaries(directory, base):
        if not _in_use(tmp):
            try:
                os.unlink(tmp)
            except OSError:  # removed meanwhile, or not removable: not this save's business
                pass


def write_atomically(target: str, parts: tuple[bytes, ...]) -> None:
    """Write ``parts`` + their SHA-256 to a locked temporary file, fsync, rename over ``target``."""
    directory, base = os.path.split(target)
    _remove_stale_temporaries(directory, base)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    while True:
        tmp = os.path.join(directory, f".{base}.{secrets.token_hex(4)}.tmp")
        try:
            fd = os.open(tmp, flags, 0o666)  # the umask applies, as for any new file
            break
        except FileExistsError:  # (a 1 in 4 billion collision: draw another name)
            continue
    hasher = hashlib.sha256()
    try:
        with os.fdopen(fd, "wb") as f:
            if fcntl is not None:
                fcntl.flock(f.fileno(), fcntl.LOCK_EX)  # marks the temporary as in use
            for part in parts:
                hasher.update(part)
                f.write(part)
            f.write(hasher.digest())
            f.flush()
            os.fsync(f.fileno())
            os.replace(tmp, target)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    _fsync_dir(directory)
