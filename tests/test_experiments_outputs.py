"""The commands' output files (issue 12, case 12): checked before any work, written all-or-nothing."""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Callable
from pathlib import Path

import pytest

from functrain.experiments.tricks import outputs


def _old_outputs(directory: Path) -> dict[str, bytes]:
    directory.mkdir(parents=True, exist_ok=True)
    old = {"a.json": b"old a", "b.ckpt": b"old b", "c.png": b"old c"}
    for name, data in old.items():
        (directory / name).write_bytes(data)
    return old


def test_case_12_write_outputs_is_all_or_nothing(tmp_path: Path) -> None:
    old = _old_outputs(tmp_path / "out")

    def full_disk(path: Path) -> None:
        path.write_bytes(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    writers: dict[str, Callable[[Path], object]] = {
        "a.json": lambda p: p.write_bytes(b"new a"), "b.ckpt": full_disk, "c.png": lambda p: p.write_bytes(b"c")}
    with pytest.raises(outputs.WriteError, match=r"^cannot write .*out/b\.ckpt: No space left on device; no output "
                                                 r"was changed$"):
        outputs.write_outputs(tmp_path / "out", writers)
    assert {p.name: p.read_bytes() for p in (tmp_path / "out").iterdir()} == old  # no temporaries, no new file

    # a new directory that got nothing is removed again (with the parents it created)
    with pytest.raises(outputs.WriteError):
        outputs.write_outputs(tmp_path / "new" / "deeper", writers)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_case_12_write_outputs_replaces_every_file(tmp_path: Path) -> None:
    _old_outputs(tmp_path / "out")
    killed = [tmp_path / "out" / ".a.json.0123abcd.tmp", tmp_path / "out" / ".c.png.ffffffff.tmp"]
    for path in killed:  # what a run killed while writing leaves behind
        path.write_text("partial")
    kept = tmp_path / "out" / ".a.json.mine.tmp"  # not a name write_outputs makes: not touched
    kept.write_text("someone else's")
    def writer(name: str) -> outputs.Writer:
        return lambda path: path.write_text("new " + name)

    umask = os.umask(0o022)
    try:
        written = outputs.write_outputs(tmp_path / "out", {n: writer(n) for n in ("a.json", "b.ckpt", "c.png")})
    finally:
        os.umask(umask)
    assert [p.name for p in written] == ["a.json", "b.ckpt", "c.png"]
    assert {p.name: p.read_text() for p in (tmp_path / "out").iterdir()} == {
        **{n: "new " + n for n in ("a.json", "b.ckpt", "c.png")}, kept.name: "someone else's"}
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o644 for p in written)  # as any new file, per the umask


def test_case_12_outputs_are_checked_before_anything_is_created(tmp_path: Path) -> None:
    (tmp_path / "out" / "b.ckpt").mkdir(parents=True)
    with pytest.raises(outputs.CommandError, match=r"^--out .*out: .*b\.ckpt is a directory, where the output file "
                                                   r"b\.ckpt goes"):
        outputs.check_outputs(str(tmp_path / "out"), ("a.json", "b.ckpt"))
    (tmp_path / "file").write_text("x")
    with pytest.raises(outputs.CommandError, match="cannot create the output directory"):
        outputs.check_outputs(str(tmp_path / "file"), ("a.json",))
    with pytest.raises(outputs.CommandError, match=r"cannot create the output directory \(.*file is a file\)"):
        outputs.check_outputs(str(tmp_path / "file" / "sub"), ("a.json",))
    assert outputs.check_outputs(str(tmp_path / "x" / "y"), ("a.json",)) == tmp_path / "x" / "y"
    assert not (tmp_path / "x").exists()  # checked, not created
