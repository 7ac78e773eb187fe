"""The ``functrain`` command fails loudly and loses nothing (issue 12: cases 9, 11, 12, 13).

Each test names its case: bad data and batch sizes (9), Ctrl-C (11), write errors (12), integer
ranges (13). Every bad input is one line on stderr with exit status 2 before anything trains; a
write error is one line with exit status 1 and leaves the previous outputs as they were; an
interrupt is one line with exit status 130 after the completed epochs were saved.
"""

from __future__ import annotations

import errno
import json
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from _cli import REPO, check_train_outputs, env, one_error_line

from functrain.cli import main
from functrain.experiments import tricks
from functrain.experiments.interrupts import Interrupted
from functrain.experiments.tricks import commands, table
from functrain.experiments.tricks.chunks import run_chunked
from functrain.train import load_checkpoint

DIGITS_TRAIN = 1149  # training examples of the digits after the test and validation splits


def _no_training(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make any attempt to compile a run fail the test (the checks must come first)."""

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("training started before the checks")

    monkeypatch.setattr(commands, "compile_chunked", refuse)
    monkeypatch.setattr(table, "compile_programs", refuse)


@pytest.mark.parametrize("command", ["train", "tricks"])
def test_case_9_batch_size_above_the_data_is_refused_not_clamped(
        command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    _no_training(monkeypatch)
    out = tmp_path / "run"
    assert main([command, "--batch-size", "100000", "--out", str(out)]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert line == (f"functrain: error: argument --batch-size: must be an int in [1, {DIGITS_TRAIN}] (at most the "
                    f"{DIGITS_TRAIN} training examples of digits), got '100000'")
    assert not out.exists()
    sub = subprocess.run([sys.executable, "-m", "functrain", command, "--help"], capture_output=True, text=True,
                         cwd=REPO, env=env(), timeout=120)
    assert "a larger one is refused, not clamped" in " ".join(sub.stdout.split())


def _blobs(n: int = 40) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.normal(size=(n, 3)), np.arange(n) % 2


def _bad_data(kind: str) -> tuple[np.ndarray, np.ndarray]:
    x, y = _blobs()
    if kind in ("nan", "inf", "overflow"):
        x[5, 1] = {"nan": np.nan, "inf": np.inf, "overflow": 1e39}[kind]  # 1e39 overflows float32
    elif kind == "range":
        x[:, 0] = np.where(np.arange(40) % 2 == 0, 3e38, -3e38)  # finite, but max - min overflows float32
    else:
        y = y.astype(np.int64)
        y[3] = {"label 2**31": 2**31, "label 2**31 - 1": 2**31 - 1, "label 2**32 + 1": 2**32 + 1}[kind]
    return x, y


BAD_DATA = [  # (the loader refuses most of them, naming the file; prepare_splits refuses the rest)
    ("nan", "NaN or infinite"),
    ("inf", "NaN or infinite"),
    ("overflow", "float32"),  # 1e39 would become infinity in float32
    ("range", "span more than float32's range"),  # finite, but max - min overflows: no scaling
    ("label 2**31", "label"),  # must not wrap to -2**31
    ("label 2**31 - 1", "label"),  # fits int32, but would make a network with 2**31 outputs
    ("label 2**32 + 1", "label"),  # must not wrap to the valid label 1 in an int32 cast
]


@pytest.mark.parametrize(("kind", "expected"), BAD_DATA)
def test_case_9_bad_data_file_is_one_line_naming_it(kind: str, expected: str, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "data.npz"
    x, y = _bad_data(kind)
    np.savez(path, x=x, y=y)
    out = tmp_path / "run"
    # (if a bad file slipped through, this trains one tiny epoch instead of a long run)
    assert main(["train", "--quick", "--epochs", "1", "--hidden", "4", "--batch-size", "8", "--data", str(path),
                 "--out", str(out)]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert line.startswith(f"functrain: error: --data {path}: ") and expected in line
    assert not out.exists()  # case 12: a failing --data check leaves no --out directory behind


def test_case_9_value_error_from_loading_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "data.npz"
    path.write_bytes(b"")

    def load(source: str, **kwargs: Any) -> Any:
        raise ValueError(f"load_npz: {source}: 'x' holds 3 NaN values\nthe first in example 0")

    monkeypatch.setattr(commands, "load_data", load)
    assert main(["train", "--data", str(path), "--out", str(tmp_path / "run")]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert line == f"functrain: error: --data {path}: load_npz: {path}: 'x' holds 3 NaN values the first in example 0"
    assert not (tmp_path / "run").exists()


def test_case_12_failing_data_check_leaves_no_out_directory(tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "new" / "run"
    assert main(["train", "--data", str(tmp_path / "missing.npz"), "--out", str(out)]) == 2
    assert "missing.npz: no such file" in one_error_line(capsys.readouterr().err)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("command", "output"), [("train", "history.json"), ("train", "checkpoint.ckpt"),
                                                 ("tricks", "tricks.md")])
def test_case_12_a_directory_in_place_of_an_output_is_refused_before_training(
        command: str, output: str, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    _no_training(monkeypatch)
    def run_tricks(**kw: Any) -> None:
        pytest.fail("the tricks started before the checks")

    monkeypatch.setattr(commands, "run_tricks", run_tricks)
    (tmp_path / output).mkdir()
    assert main([command, "--out", str(tmp_path)]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert line.startswith(f"functrain: error: --out {tmp_path}: {tmp_path / output} is a directory, where the output "
                           f"file {output} goes")


@pytest.mark.slow  # trains one tiny run (about 5 s)
def test_case_12_full_disk_is_one_line_and_leaves_the_old_outputs(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    old = {name: f"old {name}".encode() for name in commands.TRAIN_OUTPUTS}
    for name, data in old.items():
        (tmp_path / name).write_bytes(data)

    def full_disk(*args: Any, **kwargs: Any) -> Any:  # the figure is written last
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(commands, "plot_run", full_disk)
    assert main(["train", "--quick", "--epochs", "1", "--hidden", "8", "--out", str(tmp_path)]) == 1
    line = one_error_line("\n".join(l for l in capsys.readouterr().err.splitlines()
                                     if not l.startswith("functrain train: ")))
    assert line == f"functrain: error: cannot write {tmp_path / 'curves.png'}: No space left on device; no output was changed"
    # neither the new checkpoint nor the new history replaced the old ones; no temporary left
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == old


TOO_LARGE = [
    (["train", "--seed", "1" + "0" * 30], "argument --seed: must be an int in [0, 4294967295], got '1" + "0" * 30 + "'"),
    (["train", "--seed", str(2**32)], "argument --seed: must be an int in [0, 4294967295], got '4294967296'"),
    (["train", "--epochs", str(10**12)], "argument --epochs: must be an int in [1, 1000000], got '1000000000000'"),
    (["train", "--early-stopping", str(10**12)], "argument --early-stopping: must be an int in [1, 1000000], got"),
    (["train", "--seeds", str(10**12)], "argument --seeds: must be an int in [1, 10000], got '1000000000000'"),
    (["train", "--batch-size", str(10**12)], "argument --batch-size: must be an int in [1, 2147483647], got"),
    (["train", "--hidden", f"16,{10**12}"], "argument --hidden: must be comma-separated layer widths in [1, 65536]"),
    (["train", "--seed", "9" * 5000], "argument --seed: must be an int in [0, 4294967295], got '" + "9" * 37 + "...'"),
    (["tricks", "--seed", "1" + "0" * 30], "argument --seed: must be an int in [0, 4294967295]"),
    (["tricks", "--epochs", str(10**12)], "argument --epochs: must be an int in [1, 1000000]"),
    (["tricks", "--seeds", str(10**12)], "argument --seeds: must be an int in [1, 10000]"),
]


@pytest.mark.parametrize(("argv", "expected"), TOO_LARGE, ids=[" ".join(a)[:40] for a, _ in TOO_LARGE])
def test_case_13_integer_flags_have_ranges_checked_up_front(argv: list[str], expected: str,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    line = one_error_line(capsys.readouterr().err)
    assert expected in line and len(line) < 200


def test_case_13_epochs_times_steps_must_fit_the_int32_step_counter(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    _no_training(monkeypatch)
    x, y = _blobs(4000)
    np.savez(tmp_path / "big.npz", x=x, y=y)  # 2560 training examples: 2560 steps of batch 1
    assert main(["train", "--data", str(tmp_path / "big.npz"), "--batch-size", "1", "--epochs", "900000",
                 "--out", str(tmp_path / "run")]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert line.startswith(f"functrain: error: argument --epochs: must be an int in [1, {(2**31 - 1) // 2560}] "
                           "(epochs x 2560 steps per epoch must fit the int32 step counter), got '900000'")


def test_case_11_interrupted_commands_print_one_line_and_exit_130(capsys: pytest.CaptureFixture[str],
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    def interrupted(args: Any, *, stop: Any) -> None:
        signal.raise_signal(signal.SIGINT)  # recorded, not raised: the command decides where to stop
        assert stop()
        raise Interrupted("interrupted after epoch 1 of 2; wrote a, b and c of the completed epochs")

    monkeypatch.setattr(commands, "train", interrupted)
    assert main(["train"]) == 130
    captured = capsys.readouterr()
    assert captured.err == "functrain: interrupted after epoch 1 of 2; wrote a, b and c of the completed epochs\n"
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # restored

    def finished(args: Any, *, stop: Any) -> None:
        signal.raise_signal(signal.SIGINT)  # while writing the outputs: the command completes

    monkeypatch.setattr(commands, "tricks", finished)
    assert main(["tricks"]) == 130
    assert capsys.readouterr().err == "functrain: interrupted as the run finished; its outputs are complete\n"

    def plain(args: Any, *, stop: Any) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(commands, "train", plain)
    assert main(["train"]) == 130
    assert capsys.readouterr().err == "functrain: interrupted\n"


def _train_config(doc: dict[str, Any]) -> tricks.RunConfig:
    config: dict[str, Any] = {**doc["config"], "hidden": tuple(doc["config"]["hidden"])}
    return tricks.RunConfig(**config)


@pytest.mark.slow  # trains a tiny run in-process (about 5 s)
def test_case_11_stopped_train_writes_the_last_completed_epoch(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    def stop_before_the_fourth_epoch(program: Any, keys: Any, *, stop: Any, progress: Any) -> Any:
        polls: list[int] = []  # asked before every epoch (a Ctrl-C during the third epoch)

        def stop_now() -> bool:
            polls.append(1)
            return len(polls) == 4 or stop()

        return run_chunked(program, keys, stop=stop_now, progress=progress)

    monkeypatch.setattr(commands, "run_chunked", stop_before_the_fourth_epoch)
    args = commands.TrainArgs(quick=True, epochs=50, hidden=(8,), seeds=2, batch_norm=True, out=str(tmp_path))
    with pytest.raises(Interrupted, match=r"^interrupted after epoch 3 of 50; wrote .*history\.json, .*checkpoint\.ckpt "
                                          r"and .*curves\.png of the completed epochs$"):
        commands.train(args, stop=lambda: False)
    doc = json.loads((tmp_path / "history.json").read_text())
    assert doc["interrupted"] == {"after_epoch": 3, "of": 50}
    assert [run["epochs_run"] for run in doc["runs"]] == [3, 3]
    config, splits = _train_config(doc), tricks.prepare_splits(tricks.load_data("digits"))
    state = load_checkpoint(tmp_path / "checkpoint.ckpt", like=tricks.checkpoint_like(config, splits, 2))
    assert np.asarray(state.step).tolist() == [3 * (DIGITS_TRAIN // 64)] * 2  # the state after epoch 3
    check_train_outputs(tmp_path, "digits", seeds=2)  # its test numbers are the checkpoint's
    assert "epochs run 3.0" in capsys.readouterr().out


def _sigint_run(argv: list[str], ready: str, timeout: float = 180) -> tuple[int, list[str], list[str], str]:
    """Run ``functrain ARGV``, send SIGINT after a stderr line starting with ``ready``.

    Returns the exit status, the stderr lines up to that one, the rest, and stdout.
    """
    # python -m functrain, with Python's own SIGINT handler even if this process ignores SIGINT (a
    # background job): a child would inherit the ignored disposition and never see the signal
    code = ("import signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
            "from functrain.cli import main; sys.exit(main(sys.argv[1:]))")
    proc = subprocess.Popen([sys.executable, "-c", code, *argv], cwd=REPO, env=env(), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stderr is not None
    before: list[str] = []
    try:
        for line in proc.stderr:
            before.append(line.rstrip("\n"))
            if line.startswith(ready):
                break
        else:
            pytest.fail(f"no line starting with {ready!r}: {before}")
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    return proc.returncode, before, err.splitlines(), out


@pytest.mark.slow  # a subprocess compiles and trains until interrupted (about 10 s)
def test_case_11_sigint_during_train_exits_130_and_keeps_the_last_completed_epoch(tmp_path: Path) -> None:
    code, before, after, out = _sigint_run(
        ["train", "--quick", "--hidden", "8", "--epochs", "100000", "--out", str(tmp_path)],
        ready="functrain train: epoch ")
    progress = [line for line in after if line.startswith("functrain train: epoch ")]
    rest = [line for line in after if line not in progress]
    assert code == 130, (before, after)
    assert len(rest) == 1, rest  # one line, no traceback
    match = re.fullmatch(r"functrain: interrupted after epoch (\d+) of 100000; wrote .* of the completed epochs", rest[0])
    assert match, rest[0]
    epochs = int(match.group(1))
    doc = json.loads((tmp_path / "history.json").read_text())
    assert doc["interrupted"] == {"after_epoch": epochs, "of": 100000}
    # stdout: the model summary first (Dense 64->8: 520, Dense 8->10: 90), the result line last
    assert out.startswith("Layer ") and "Total params: 610" in out
    assert doc["runs"][0]["epochs_run"] == epochs and out.strip().splitlines()[-1].startswith("test accuracy ")
    config, splits = _train_config(doc), tricks.prepare_splits(tricks.load_data("digits"))
    state = load_checkpoint(tmp_path / "checkpoint.ckpt", like=tricks.checkpoint_like(config, splits))
    assert int(state.step) == epochs * (DIGITS_TRAIN // 64)  # the state after the last completed epoch
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(commands.TRAIN_OUTPUTS)  # no temporaries


@pytest.mark.slow  # a subprocess compiles ten programs until interrupted (about 10 s)
def test_case_11_sigint_during_tricks_exits_130_and_writes_nothing(tmp_path: Path) -> None:
    code, before, after, _ = _sigint_run(["tricks", "--quick", "--epochs", "1000", "--out", str(tmp_path / "t")],
                                         ready="[1/11]")
    rest = [line for line in after if not line.startswith("[")]
    assert code == 130, (before, after)
    assert len(rest) == 1 and re.fullmatch(r"functrain: interrupted in row \d+/11 \(.*\)( after epoch \d+ of 1000)?; "
                                           r"nothing written", rest[0]), rest
    assert not (tmp_path / "t").exists()
