"""The ``functrain`` command: ``tricks`` and ``train`` end to end, the entry points, bad input.

The failure cases of issue 12 (bad data, write errors, interrupts, integer ranges) are in
tests/test_cli_failures.py.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from _cli import REPO, check_train_outputs, env, mlp_logits, one_error_line, png_size

from functrain._tree import tree_map
from functrain.cli import main
from functrain.experiments import tricks
from functrain.train import load_checkpoint

# ----------------------------------------------------------------------------------------------
# functrain tricks


@pytest.mark.slow  # ten compiled programs: about 30 s of CPU even with --quick
def test_tricks_quick_prints_table_and_writes_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "results"
    assert main(["tricks", "--quick", "--out", str(out)]) == 0
    captured = capsys.readouterr()
    labels = [label for label, _ in tricks.trick_rows(epochs=2, learning_rate=0.1)]  # --quick: SGD at lr 0.1
    labels += ["+ ensemble of the 2 models above"]

    # The table: header, rule, one line per row, in order.
    lines = captured.out.strip().splitlines()
    assert lines[0].split() == ["trick", "(cumulative)", "test", "accuracy", "(mean", "±", "std)", "Δ",
                                "accuracy", "test", "loss", "(mean", "±", "std)", "Δ", "loss", "epochs", "train", "s",
                                "compile", "s"]
    assert len(lines) == 3 + len(labels)  # and the verdict line under the table
    for line, label in zip(lines[2:], labels):
        assert line.startswith(label)
    assert re.fullmatch(r"\d+ of 10 rows change the test accuracy or the test loss by more than 2x the seed spread "
                        r"\(✓\); within noise: .+\.", lines[-1]), lines[-1]

    # Progress: a line when every row starts and when it ends.
    for i in range(1, len(labels) + 1):
        assert f"[{i}/{len(labels)}]" in captured.err
    assert "Traceback" not in captured.err

    # The JSON holds what was measured; the printed and Markdown tables show exactly that.
    doc = json.loads((out / "tricks.json").read_text())
    assert doc["settings"] == {"seeds": 2, "epochs": 2, "hidden": [32, 32], "batch_size": 64, "seed": 0,
                               "model": "mlp", "sections": ["classic"], "data": "digits", "prng": "threefry",
                               "label_noise": 0.3}
    # rows of one structure share programs: no batch norm | batch norm + SGD | Adam | early stopping
    assert [r["group"] for r in doc["rows"]] == [0, 0, 1, 1, 1, 2, 2, 2, 2, 3, -1]
    assert doc["timing"]["programs"] == 4 and doc["timing"]["rows"] == 10
    assert doc["timing"]["compile_seconds"] == pytest.approx(sum(r["compile_seconds"] for r in doc["rows"]))
    assert [r["compile_seconds"] for r in doc["rows"]][3:5] == [0.0, 0.0]  # shared: nothing compiled
    assert re.search(r"compiling \d+\.\d s \(4 sets of programs for 10 rows; compilation cache: ", captured.err)
    rows = doc["rows"]
    assert [r["trick"] for r in rows] == labels
    md = (out / "tricks.md").read_text()
    for r, line in zip(rows, lines[2:]):
        acc = np.asarray(r["test_accuracy"])
        assert acc.shape == ((1,) if r["ensemble"] else (2,))
        cell = f"{acc.mean():.4f}" if acc.size == 1 else f"{acc.mean():.4f} ± {acc.std():.4f}"
        assert cell in line
        assert f"| {r['trick']} | {cell}" in md
        assert r["epochs_run"] == [2, 2]  # patience 5 never stops a 2-epoch run
        if not r["ensemble"]:
            assert np.asarray(r["val_accuracy"], dtype=float).shape == (2, 2)
    assert rows[-1]["ensemble"] and rows[-1]["val_accuracy"] is None
    # What the table shows at this size (chance is 0.1): the tricks before Adam lift the accuracy well
    # above chance (momentum reaches ~0.88 in 2 epochs), batch norm beats the N(0, 1) baseline.
    mean = {r["trick"]: float(np.mean(np.asarray(r["test_accuracy"]))) for r in rows}
    assert mean["+ momentum 0.9"] > 0.7
    assert mean["+ batch norm"] > mean["baseline: SGD lr 0.1, N(0,1) init"] + 0.1
    # The validation curves end where the test numbers were measured: the kept model is the last
    # epoch's (no early stop in 2 epochs), whose validation accuracy is of the same order once the
    # label noise is accounted for: 30% of the validation labels are wrong (another of the 10
    # classes), so a model of test accuracy a scores about 0.7 a + 0.3 (1 - a) / 9 on them.
    for r in rows[:-1]:
        last_val = float(np.mean(np.asarray(r["val_accuracy"], dtype=float)[:, -1]))
        a = mean[r["trick"]]
        assert abs(last_val - (0.7 * a + 0.3 * (1 - a) / 9)) < 0.2, r["trick"]
    assert "![" in md and "(tricks.png)" in md
    assert "`functrain tricks --quick`" in md and "of the 2 models of the row above" in md

    width, height = png_size(out / "tricks.png")
    assert width >= 1000 and height >= 700


def _table_rows(out: str) -> list[str]:
    """The printed table's row lines (header, rule, section titles and the verdict line under it left out)."""
    lines = out.strip().splitlines()
    assert "within noise:" in lines[-1], lines[-1]
    return [line for line in lines[2:-1] if not line.startswith("-- ")]


@pytest.mark.slow  # four sets of convnet programs: about a minute of CPU with --quick
def test_tricks_model_cnn_quick(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cnn"
    assert main(["tricks", "--model", "cnn", "--quick", "--out", str(out)]) == 0
    captured = capsys.readouterr()
    doc = json.loads((out / "tricks.json").read_text())
    assert doc["settings"]["model"] == "cnn" and doc["settings"]["hidden"] == [8, 16]
    assert doc["timing"]["programs"] == 4 and doc["timing"]["rows"] == 10
    rows = doc["rows"]
    assert [r["trick"] for r in rows] == [label for label, _ in tricks.trick_rows(epochs=2, learning_rate=0.1)] + [
        "+ ensemble of the 2 models above"]
    assert len(_table_rows(captured.out)) == len(rows)
    mean = {r["trick"]: float(np.mean(np.asarray(r["test_accuracy"]))) for r in rows}
    assert mean["+ momentum 0.9"] > 0.5  # the convnet learns the digits in 2 epochs (chance 0.1)
    assert "the lesson's convnet (channels 8-16) on 8x8x1 images" in (out / "tricks.md").read_text()
    assert "sharing the programs of" in captured.err


@pytest.mark.slow  # the classic rows and the canon rows on a small ResNet: about two minutes of CPU
def test_tricks_canon_quick(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "canon"
    assert main(["tricks", "--canon", "--quick", "--out", str(out)]) == 0
    captured = capsys.readouterr()
    doc = json.loads((out / "tricks.json").read_text())
    canon = [r for r in doc["rows"] if r["section"] == "canon"]
    assert [r["trick"] for r in canon] == [label for label, _ in tricks.canon_rows(epochs=2)]
    # the classic section (with its ensemble) comes first, unchanged; the canon after it
    assert doc["rows"][10]["ensemble"] and doc["rows"][11]["trick"].startswith("canon baseline")
    # one program for the canon tricks that are values, one for mixup, one for SAM
    assert len({r["group"] for r in canon}) == 3 and doc["timing"]["programs"] == 7
    for r in canon:
        acc = np.asarray(r["test_accuracy"])
        assert acc.shape == (2,) and np.isfinite(acc).all() and r["diverged"] == 0
    assert "-- the canon (each row: the canon baseline + one trick, not cumulative)" in captured.out
    assert len(_table_rows(captured.out)) == len(doc["rows"])
    md = (out / "tricks.md").read_text()
    assert "each row adds ONE trick to the canon baseline" in md and "zero-init residual BN" in md
    assert "`functrain tricks --quick --canon`" in md


# ----------------------------------------------------------------------------------------------
# functrain lr-find


@pytest.mark.slow  # one compiled program (two seeds of the range test), about 10 s
def test_lr_find_quick(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "lr"
    assert main(["lr-find", "--quick", "--optimizer", "sgd", "--steps", "60", "--min-lr", "1e-4", "--max-lr", "100",
                 "--out", str(out)]) == 0
    printed = capsys.readouterr().out.strip().splitlines()
    doc = json.loads((out / "lr_find.json").read_text())
    assert doc["seeds"] == 2 and len(doc["runs"]) == 2 and doc["range"] == {"min_lr": 1e-4, "max_lr": 100.0,
                                                                            "steps": 60}
    suggestions = [r["suggestion"] for r in doc["runs"]]
    assert all(s is not None and 1e-4 < s < 100 for s in suggestions)
    assert doc["suggestion_median"] == pytest.approx(float(np.median(suggestions)))
    for s, run in enumerate(doc["runs"]):
        assert printed[s].startswith(f"seed {s}: suggested learning rate {run['suggestion']:.3g} ")
        assert 20 <= run["steps_run"] <= 60 and len(run["losses"]) == 60
    assert printed[-1].startswith(f"median suggestion over 2 seeds: {doc['suggestion_median']:.3g} (")
    assert len(doc["lrs"]) == 60 and doc["lrs"][0] == pytest.approx(1e-4) and doc["lrs"][-1] == pytest.approx(100)
    assert png_size(out / "lr_find.png")[0] >= 600


# ----------------------------------------------------------------------------------------------
# functrain train


def _summary_and_result(out: str) -> tuple[list[str], str]:
    """The model summary's lines (printed first) and the result line (printed last)."""
    lines = out.strip().splitlines()
    return lines[:-1], lines[-1]


@pytest.mark.slow  # one compiled program, about 5 s
def test_train_quick_digits_several_seeds(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    argv = ["train", "--quick", "--seeds", "2", "--epochs", "3", "--optimizer", "momentum", "--lr", "0.05",
            "--schedule", "cosine", "--init", "xavier", "--batch-norm", "--dropout", "0.3", "--clip", "1",
            "--weight-decay", "1e-4", "--early-stopping", "1", "--hidden", "16,8", "--out", str(out)]
    assert main(argv) == 0
    captured = capsys.readouterr()
    # progress as epochs complete (case 11): epoch, training loss, validation accuracy, mean over seeds
    assert re.search(r"^functrain train: epoch 1/3: training loss \d\.\d{4}, validation accuracy \d\.\d{4} "
                     r"\(mean of 2 seeds\) \(\d+\.\d s\)$", captured.err, re.M), captured.err
    doc = check_train_outputs(out, "digits", seeds=2)
    assert doc["interrupted"] is None
    summary = doc["summary"]  # the printed line shows the JSON's numbers
    table, result = _summary_and_result(captured.out)
    assert result.startswith(f"test accuracy {summary['test_accuracy_mean']:.4f} ± "
                             f"{summary['test_accuracy_std']:.4f} over 2 seeds, epochs run ")
    # the model summary first: Dense 64->16 (1040 params), BN(16) 32, Dense 16->8 136, BN(8) 16, Dense 8->10 90
    assert table[0].split() == ["Layer", "Output", "shape", "Params", "State"]
    assert "Total params: 1,314" in table and sum(line.strip().startswith("Dropout") for line in table) == 2
    assert doc["config"]["optimizer"] == "momentum" and doc["config"]["batch_norm"] is True
    assert doc["config"]["hidden"] == [16, 8] and doc["config"]["dropout"] == 0.3

    # The ensemble accuracy (the tricks table's last row) against a float64 NumPy ensemble of the
    # two checkpointed models: argmax of the mean of their softmax probabilities.
    cfg: dict[str, Any] = {**doc["config"], "hidden": tuple(doc["config"]["hidden"])}
    config = tricks.RunConfig(**cfg)
    splits = tricks.prepare_splits(tricks.load_data("digits"))
    state = load_checkpoint(out / "checkpoint.ckpt", like=tricks.checkpoint_like(config, splits, 2))
    probs: list[np.ndarray] = []
    for s in range(2):
        logits = mlp_logits(tree_map(lambda t: np.asarray(t)[s], state.params),
                             tree_map(lambda t: np.asarray(t)[s], state.model_state), splits.x_test)
        z = np.exp(logits - logits.max(axis=1, keepdims=True))
        probs.append(z / z.sum(axis=1, keepdims=True))
    expected = float((np.argmax(np.mean(probs, axis=0), axis=1) == splits.y_test).mean())
    model = tricks.build_model(config, splits.num_classes)
    got = tricks.ensemble_accuracy(model, state, splits.x_test, splits.y_test)
    assert abs(got - expected) <= 1.0 / len(splits.y_test) + 1e-9


@pytest.mark.slow  # one compiled program, about 5 s
def test_train_quick_npz_one_seed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rng = np.random.default_rng(0)
    centers = rng.normal(size=(3, 5)) * 3
    y = rng.integers(0, 3, size=150)
    x = centers[y] + rng.normal(size=(150, 5))
    data = tmp_path / "blobs.npz"
    np.savez(data, x=x, y=y)
    out = tmp_path / "run"
    assert main(["train", "--quick", "--data", str(data), "--optimizer", "adamw", "--weight-decay", "1e-2",
                 "--lr", "0.01", "--batch-size", "16",
                 "--epochs", "4", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    doc = check_train_outputs(out, str(data), seeds=1)
    (run,) = doc["runs"]
    table, result = _summary_and_result(printed)
    assert result.startswith(f"test accuracy {run['test_accuracy']:.4f}, epochs run 4.0 (")
    assert "Total params: 1,347" in table  # 5 -> 32 -> 32 -> 3: 192 + 1056 + 99
    assert run["test_accuracy"] > 0.6  # three well-separated blobs (chance 1/3)
    assert doc["data"] == {"source": str(data), "name": "blobs", "n_train": 96, "n_val": 24, "n_test": 30,
                           "features": 5, "num_classes": 3}


# ----------------------------------------------------------------------------------------------
# Bad input: one line on stderr, exit status 2, no traceback


def _bad_npz(tmp: Path) -> str:
    path = tmp / "broken.npz"
    path.write_bytes(b"this is not a zip archive")
    return str(path)


def _wrong_keys_npz(tmp: Path) -> str:
    path = tmp / "wrong.npz"
    np.savez(path, features=np.zeros((4, 2)), labels=np.zeros(4, int))
    return str(path)


def _flat_npz(tmp: Path) -> str:
    path = tmp / "flat.npz"
    rng = np.random.default_rng(0)
    np.savez(path, x=rng.normal(size=(200, 64)), y=np.arange(200) % 2)
    return str(path)


def _a_file(tmp: Path) -> str:
    path = tmp / "a_file"
    path.write_text("not a directory")
    return str(path)


BAD: list[tuple[list[str], str]] = [
    (["train", "--optimizer", "sgdx"], "invalid choice: 'sgdx'"),
    (["train", "--lr", "-0.1"], "argument --lr: must be a finite number > 0, got '-0.1'"),
    (["train", "--lr", "fast"], "argument --lr: must be a finite number, got 'fast'"),
    (["train", "--lr", "nan"], "argument --lr: must be a finite number > 0, got 'nan'"),
    (["train", "--dropout", "1.0"], "argument --dropout: must be in [0, 1), got '1.0'"),
    (["train", "--dropout", "-0.2"], "argument --dropout: must be in [0, 1)"),
    (["train", "--schedule", "linear"], "invalid choice: 'linear'"),
    (["train", "--init", "zeros"], "invalid choice: 'zeros'"),
    (["train", "--clip", "0"], "argument --clip: must be a finite number > 0, got '0'"),
    (["train", "--weight-decay", "-1e-4"], "argument --weight-decay: must be a finite number >= 0, got '-1e-4'"),
    (["train", "--early-stopping", "0"], "argument --early-stopping: must be an int in [1, 1000000], got '0'"),
    (["train", "--seeds", "0"], "argument --seeds: must be an int in [1, 10000], got '0'"),
    (["train", "--epochs", "2.5"], "argument --epochs: must be an int in [1, 1000000], got '2.5'"),
    (["train", "--hidden", "16,0"], "argument --hidden: must be comma-separated layer widths in [1, 65536]"),
    (["train", "--data", "{tmp}/missing.npz"], "missing.npz: no such file"),
    (["train", "--data", "{bad_npz}"], "not a readable .npz file"),
    (["train", "--data", "{wrong_npz}"], "must hold either arrays 'x' and 'y'"),
    (["train", "--out", "{a_file}"], "cannot create the output directory"),
    (["train", "--decay-rate", "0"], "argument --decay-rate: must be in (0, 1], got '0'"),
    (["train", "--seed", "-1"], "argument --seed: must be an int in [0, 4294967295], got '-1'"),
    (["train", "--no-such-flag"], "unrecognized arguments: --no-such-flag"),
    (["tricks", "--seeds", "0"], "argument --seeds: must be an int in [1, 10000], got '0'"),
    (["tricks", "--epochs", "-3"], "argument --epochs: must be an int in [1, 1000000], got '-3'"),
    (["tricks", "--out", "{a_file}"], "cannot create the output directory"),
    (["tricks", "--model", "resnet"], "argument --model: invalid choice: 'resnet'"),
    (["tricks", "--data", "{tmp}/nowhere.npz"], "nowhere.npz: no such file (give digits, mnist, fashion-mnist or"),
    (["train", "--drop-path", "0.1"], "RunConfig: argument 'drop_path' must be 0 unless model is 'resnet'"),
    (["train", "--zero-init-bn", "--model", "resnet"], "argument 'zero_init_bn' must be False unless model is"),
    (["train", "--model", "cnn", "--data", "{flat_npz}"], "--model cnn: needs images, and flat holds flat features"),
    (["train", "--model", "cnn", "--hidden", "4,4,4,4"], "--model cnn --hidden 4,4,4,4: does not fit digits's 8x8x1"),
    (["train", "--mixup", "-1"], "argument --mixup: must be a finite number >= 0, got '-1'"),
    (["train", "--prng", "philox"], "argument --prng: invalid choice: 'philox'"),
    (["lr-find", "--steps", "5"], "argument --steps: must be an int in [20, 1000000], got '5'"),
    (["lr-find", "--min-lr", "1", "--max-lr", "0.5"], "argument --max-lr: must be a number > --min-lr (1), got '0.5'"),
    (["lr-find", "--batch-size", "100000"], "argument --batch-size: must be an int in [1, 1149]"),
    (["fit"], "invalid choice: 'fit'"),
    ([], "the following arguments are required: COMMAND"),
]


@pytest.mark.parametrize(("argv", "expected"), BAD, ids=[" ".join(a) or "<none>" for a, _ in BAD])
def test_bad_input_is_one_line_and_exit_status_2(argv: list[str], expected: str, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    fill = {"tmp": str(tmp_path), "bad_npz": _bad_npz(tmp_path), "wrong_npz": _wrong_keys_npz(tmp_path),
            "a_file": _a_file(tmp_path), "flat_npz": _flat_npz(tmp_path)}
    args = [a.format(**fill) for a in argv]
    assert main(args) == 2
    captured = capsys.readouterr()
    line = one_error_line(captured.err)
    assert expected in line
    assert captured.out == ""


def test_help_in_process(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "--help"]) == 0
    text = capsys.readouterr().out
    for flag in ("--optimizer", "--lr", "--schedule", "--init", "--batch-norm", "--dropout", "--clip",
                 "--weight-decay", "--early-stopping", "--seeds", "--epochs", "--data", "--out"):
        assert flag in text


# ----------------------------------------------------------------------------------------------
# Entry points (subprocesses)


def test_python_dash_m_functrain_help() -> None:
    proc = subprocess.run([sys.executable, "-m", "functrain", "--help"], capture_output=True, text=True,
                          cwd=REPO, env=env(), timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "tricks" in proc.stdout and "train" in proc.stdout


def test_console_script_entry_point() -> None:
    script = Path(sys.executable).parent / "functrain"
    if not script.exists():
        pytest.skip("the functrain console script is not installed in this environment (pip install -e .)")
    ok = subprocess.run([str(script), "tricks", "--help"], capture_output=True, text=True, env=env(),
                        timeout=120)
    assert ok.returncode == 0 and "--seeds" in ok.stdout and "--quick" in ok.stdout
    bad = subprocess.run([str(script), "train", "--lr", "-1"], capture_output=True, text=True, env=env(),
                         timeout=120)
    assert bad.returncode == 2
    assert re.fullmatch(r"functrain: error: argument --lr: must be a finite number > 0, got '-1' .*\n", bad.stderr)
    assert bad.stdout == ""


def test_import_functrain_stays_light() -> None:
    code = ("import sys, functrain; "
            "print([m for m in ('functrain.cli', 'functrain.experiments', 'matplotlib', 'sklearn') "
            "if m in sys.modules])")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env(), timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"
