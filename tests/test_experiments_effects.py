"""The trick table's verdicts: each row's change versus the row above against the seed spread, and label noise.

Fast: hand-computed changes and marks, the report's text naming the rows within noise, and the
label noise of the data splits (exact fraction, clean test labels, deterministic by key). The
default table itself (at least 6 rows beyond the noise) is the slow test at the end.
"""

from __future__ import annotations

import json
from pathlib import Path

import jax
import numpy as np
import pytest
from _cli import toy_splits

from functrain.cli import main
from functrain.data import load_digits
from functrain.experiments import tricks
from functrain.experiments.tricks import effects, report
from functrain.experiments.tricks.splits import noisy_labels, prepare_splits
from functrain.experiments.tricks.table import TrickResult


def _row(label: str, acc: list[float], loss: list[float], *, section: str = "classic",
         ensemble: bool = False) -> TrickResult:
    return TrickResult(label=label, test_accuracy=np.asarray(acc), epochs_run=np.full(len(acc), 3),
                       train_seconds=0.5, compile_seconds=1.0, diverged=0, val_accuracy=None, val_loss=None,
                       train_loss=None, ensemble=ensemble, section=section, test_loss=np.asarray(loss))


# three seeds per row; std is the population std (ddof 0), as the table prints it
ROWS = [
    _row("base", [0.50, 0.60, 0.70], [2.0, 2.1, 2.2]),      # acc std 0.0816, loss std 0.0816
    _row("+ big", [0.90, 0.91, 0.92], [0.5, 0.6, 0.7]),     # acc +0.31 > 2 * 0.0816: shown
    _row("+ quiet", [0.91, 0.90, 0.93], [0.6, 0.5, 0.75]),  # acc +0.0033, loss +0.0167: within noise
    _row("+ loss only", [0.92, 0.92, 0.94], [0.30, 0.31, 0.32]),  # loss -0.34 > 2 * 0.1027: shown by loss
    _row("+ ensemble", [0.935], [0.40], ensemble=True),     # one value: the members' spread
]


def test_change_against_hand_computed_numbers() -> None:
    big = effects.change(ROWS[1].test_accuracy, ROWS[0].test_accuracy)
    assert big is not None
    assert big.delta == pytest.approx(0.31) and big.spread == pytest.approx(np.sqrt(2 / 3) * 0.1) and big.shown
    quiet = effects.change(ROWS[2].test_accuracy, ROWS[1].test_accuracy)
    assert quiet is not None  # std of [0.91, 0.90, 0.93] = 0.012472 > std of [0.90, 0.91, 0.92] = 0.008165
    assert quiet.delta == pytest.approx(0.01 / 3) and quiet.spread == pytest.approx(0.0124722, rel=1e-5)
    assert not quiet.shown
    # just above / just below twice the spread (spread 0.1: std of [x-0.1, x+0.1])
    assert effects.change(np.asarray([0.3, 0.5]), np.asarray([0.0, 0.2])) == pytest.approx((0.3, 0.1, True))
    edge = effects.change(np.asarray([0.29, 0.49]), np.asarray([0.1, 0.3]))
    assert edge is not None and edge.delta == pytest.approx(0.19) and not edge.shown
    # a single value has no spread of its own; non-finite values are not judged
    one = effects.change(np.asarray([0.935]), ROWS[3].test_accuracy)
    assert one is not None and one.spread == pytest.approx(float(np.std([0.92, 0.92, 0.94]))) and not one.shown
    assert effects.change(np.asarray([np.nan, 1.0]), np.asarray([1.0, 1.0])) is None
    assert effects.change(None, np.asarray([1.0])) is None
    assert effects.format_change(big) == "+0.3100 ✓" and effects.format_change(quiet) == "+0.0033"
    assert effects.format_change(None) == "-"


def test_row_effects_mark_shown_and_within_noise_rows() -> None:
    found = effects.row_effects(ROWS)
    assert found[0] is None
    verdicts = [(e.accuracy is not None and e.accuracy.shown, e.loss is not None and e.loss.shown, e.shown)
                for e in found[1:] if e is not None]
    assert verdicts == [(True, True, True), (False, False, False), (False, True, True), (False, True, True)]
    ensemble = found[4]
    assert ensemble is not None and ensemble.loss is not None
    assert ensemble.loss.delta == pytest.approx(0.09) and ensemble.loss.spread == pytest.approx(np.std([0.3, 0.31,
                                                                                                       0.32]))
    assert effects.within_noise(ROWS) == ["+ quiet"]


def test_canon_rows_are_compared_with_their_baseline() -> None:
    canon = [_row("canon base", [0.5, 0.5], [1.0, 1.0], section="canon"),
             _row("+ a", [0.9, 0.9], [0.5, 0.5], section="canon"),
             _row("+ b", [0.5, 0.5], [1.0, 1.0], section="canon")]
    results = [*ROWS, *canon]
    assert effects.reference_rows(results, {"canon": False}) == [None, 0, 1, 2, 3, None, 5, 5]
    assert effects.reference_rows(results)[7] == 6  # cumulative by default
    # '+ b' equals the canon baseline: within noise against it, though far from the row above
    assert effects.within_noise(results, {"canon": False}) == ["+ quiet", "+ b"]


def test_report_text_lists_the_rows_within_noise() -> None:
    text = report.format_table(ROWS)
    lines = text.splitlines()
    assert lines[0].split("  ")[0] == "trick (cumulative)" and "Δ accuracy" in lines[0] and "Δ loss" in lines[0]
    assert lines[3].split() == ["+", "big", "0.9100", "±", "0.0082", "+0.3100", "✓", "0.6000", "±", "0.0816",
                                "-1.5000", "✓", "3.0", "0.5", "1.0"]
    assert lines[4].split()[5] == "+0.0033" and lines[4].split()[9] == "+0.0167"  # no mark: within noise
    assert lines[2].split()[:8] == ["base", "0.6000", "±", "0.0816", "2.1000", "±", "0.0816", "3.0"]
    expected = ("3 of 4 rows change the test accuracy or the test loss by more than 2x the seed spread (✓); "
                "within noise: + quiet.")
    assert lines[-1] == expected
    md = report.markdown_table(ROWS)
    assert "| + big | 0.9100 ± 0.0082 | +0.3100 ✓ | 0.6000 ± 0.0816 | -1.5000 ✓ | 3.0 | 0.5 | 1.0 |" in md
    assert md.endswith(expected)
    sections = [tricks.Section("classic", "c", [("base", tricks.RunConfig(hidden=(8,), batch_size=4))], True)]
    setup = report.Setup(splits=toy_splits(), sections=sections, network="MLP", source="toy.npz", seeds=3, epochs=3,
                         batch_size=4, seed=0, prng="threefry", seconds=5.0, cpu_seconds=4.0, machine="m",
                         command="functrain tricks", cache=None)
    assert expected in report.markdown_report(ROWS, setup, image="t.png")
    doc = report.results_json(ROWS, setup)
    assert doc["within_noise"] == ["+ quiet"] and doc["rows"][0]["vs_reference"] is None
    quiet = doc["rows"][2]["vs_reference"]
    assert quiet["shown"] is False and quiet["accuracy"]["delta"] == pytest.approx(0.01 / 3)
    assert doc["rows"][3]["vs_reference"]["loss"]["shown"] is True and doc["rows"][3]["test_loss"] == [0.3, 0.31, 0.32]


def test_loss_cells_of_diverged_seeds() -> None:
    rows = [_row("base", [0.1, 0.1], [float("nan"), 1.0]), _row("+ x", [0.9, 0.9], [0.5, 0.5])]
    line = report.format_table(rows).splitlines()[2]
    assert "1.0000 (1/2 not finite)" in line
    assert report.format_table(rows).splitlines()[3].split()[10] == "-"  # the loss change is not judged


# ----------------------------------------------------------------------------------------------
# label noise


def test_noisy_labels_change_exactly_the_fraction_to_other_classes() -> None:
    y = np.arange(200) % 7
    noisy = noisy_labels(jax.random.key(3), y, 0.3, 7)
    assert int((noisy != y).sum()) == 60 and noisy.dtype == y.dtype
    assert ((noisy >= 0) & (noisy < 7)).all()
    np.testing.assert_array_equal(noisy_labels(jax.random.key(3), y, 0.3, 7), noisy)  # deterministic by key
    assert (noisy_labels(jax.random.key(4), y, 0.3, 7) != noisy).any()
    assert int((noisy_labels(jax.random.key(0), y, 1.0, 7) != y).sum()) == 200
    np.testing.assert_array_equal(noisy_labels(jax.random.key(0), y, 0.0, 7), y)
    np.testing.assert_array_equal(y, np.arange(200) % 7)  # the input is not modified
    with pytest.raises(ValueError, match=r"^noisy_labels: argument 'fraction' must be "):
        noisy_labels(jax.random.key(0), y, 1.5, 7)


def test_prepare_splits_label_noise_keeps_test_labels_and_splits() -> None:
    clean, noisy = prepare_splits(load_digits()), prepare_splits(load_digits(), label_noise=0.3)
    n_train, n_val = len(clean.y_train), len(clean.y_val)
    assert int((noisy.y_train != clean.y_train).sum()) == round(0.3 * n_train)
    assert int((noisy.y_val != clean.y_val).sum()) == round(0.3 * n_val)
    np.testing.assert_array_equal(noisy.y_test, clean.y_test)
    for a, b in ((noisy.x_train, clean.x_train), (noisy.x_val, clean.x_val), (noisy.x_test, clean.x_test)):
        np.testing.assert_array_equal(a, b)  # the same examples, only training/validation labels changed
    again = prepare_splits(load_digits(), label_noise=0.3)
    np.testing.assert_array_equal(again.y_train, noisy.y_train)
    with pytest.raises(ValueError, match=r"^prepare_splits: argument 'label_noise' must be "):
        prepare_splits(load_digits(), label_noise=1.0)


def test_readme_and_docs_show_the_same_recorded_table() -> None:
    root = Path(__file__).resolve().parents[1]
    block = (root / "README.md").read_text().split("<!-- tricks-table -->")[1].split("<!-- /tricks-table -->")[0]
    table = [line for line in block.splitlines() if line.startswith("| ")]
    docs = (root / "docs" / "tricks.md").read_text()
    assert len(table) >= 12 and all(line in docs for line in table)
    verdict = next(line for line in block.splitlines() if "within noise:" in line)
    assert verdict in docs
    shown = int(verdict.split(" of ")[0])
    assert shown >= 6 and shown == sum("✓" in line for line in table[2:])


@pytest.mark.slow  # the default table: 10 rows x 5 seeds x 30 epochs, about a minute on 2 cores when cold
def test_default_table_shows_at_least_six_effects(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["tricks", "--out", str(tmp_path)]) == 0
    printed = capsys.readouterr().out.strip().splitlines()
    doc = json.loads((tmp_path / "tricks.json").read_text())
    settings = doc["settings"]
    assert (settings["hidden"], settings["seeds"], settings["epochs"], settings["label_noise"]) == ([64] * 6, 5, 30,
                                                                                                   0.3)
    rows = doc["rows"]
    judged = [(r, above) for r, above in zip(rows[1:], rows) if r["vs_reference"] is not None]
    assert len(judged) == 10  # every row but the baseline, the ensemble included
    for r, above in judged:  # the marks follow the definition, recomputed from the per-seed numbers
        acc, ref = np.asarray(r["test_accuracy"]), np.asarray(above["test_accuracy"])
        spread = max(float(np.std(acc)) if acc.size > 1 else 0.0, float(np.std(ref)))
        assert r["vs_reference"]["accuracy"]["shown"] == (abs(acc.mean() - ref.mean()) > 2 * spread), r["trick"]
    shown = [r["trick"] for r, _ in judged if r["vs_reference"]["shown"]]
    quiet = [r["trick"] for r, _ in judged if not r["vs_reference"]["shown"]]
    assert len(shown) >= 6, (shown, quiet)
    assert doc["within_noise"] == quiet
    assert printed[-1] == (f"{len(shown)} of 10 rows change the test accuracy or the test loss by more than 2x the "
                           f"seed spread (✓); within noise: {'; '.join(quiet) or 'none'}.")
