"""The trick experiments' pieces, each on its own and fast: tables, checks, reports, figures, options.

The end-to-end runs (``functrain tricks`` / ``functrain train``) are in tests/test_cli.py (slow).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _cli import toy_splits
from _typed import eval_shape

from functrain import optim
from functrain.cli import build_parser
from functrain.experiments import tricks
from functrain.experiments.tricks import commands, figures, report
from functrain.experiments.tricks import run as run_module
from functrain.experiments.tricks.run import RunOutput, steps_per_epoch
from functrain.experiments.tricks.table import TrickResult
from functrain.train import TrainState

STYLE = re.compile(r"^[\w.]+: argument '[\w.\[\]']+' must be .+, got .+$", re.S)


def _updates(opt: optim.TransformationLike, steps: int = 3) -> list[np.ndarray]:
    """The updates of ``steps`` steps on fixed gradients of a 2-D parameter (float64 on host)."""
    params = {"w": jnp.arange(6.0).reshape(2, 3) / 10}
    state = opt.init(params)
    out: list[np.ndarray] = []
    for k in range(steps):
        grads = {"w": jnp.cos(jnp.arange(6.0).reshape(2, 3) + k)}
        updates, state = opt.update(grads, state, params)
        params = optim.apply_updates(params, updates)
        out.append(np.asarray(updates["w"], np.float64))
    return out


# ----------------------------------------------------------------------------------------------
# config: the tables and the checks


def test_optimizer_table_builds_the_named_optimizer() -> None:
    config = tricks.RunConfig(momentum=0.8, weight_decay=0.05)
    expected: dict[str, optim.TransformationLike] = {
        "sgd": optim.sgd(0.1), "momentum": optim.momentum(0.1, 0.8),
        "nesterov": optim.momentum(0.1, 0.8, nesterov=True), "adagrad": optim.adagrad(0.1),
        "rmsprop": optim.rmsprop(0.1), "adam": optim.adam(0.1),
        "adamw": optim.adamw(0.1, weight_decay=0.05), "normalized_sgd": optim.normalized_sgd(0.1),
    }
    assert set(tricks.OPTIMIZERS) == set(expected)
    for name, reference in expected.items():
        got = tricks.build_optimizer(config._replace(optimizer=name), 0.1)
        for a, b in zip(_updates(got), _updates(reference), strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-6, err_msg=name)
    # the names differ in behaviour (so a wrong entry cannot hide behind an identical one)
    assert not np.allclose(_updates(optim.momentum(0.1, 0.8))[-1],
                           _updates(optim.momentum(0.1, 0.8, nesterov=True))[-1])


def test_default_learning_rates() -> None:
    lrs = {name: spec.default_lr for name, spec in tricks.OPTIMIZERS.items()}
    assert lrs == {"sgd": 0.1, "momentum": 0.1, "nesterov": 0.1, "adagrad": 1e-2, "rmsprop": 1e-3,
                   "adam": 1e-3, "adamw": 1e-3, "normalized_sgd": 0.1}


def test_clipping_bounds_the_step() -> None:
    # sgd at lr 0.1 behind clip_by_global_norm(1): each update has norm min(||g||, 1) * 0.1
    opt = tricks.build_optimizer(tricks.RunConfig(optimizer="sgd", clip=1.0), 0.1)
    for k, u in enumerate(_updates(opt)):
        g = np.cos(np.arange(6.0).reshape(2, 3) + k)
        assert np.linalg.norm(u) == pytest.approx(0.1 * min(float(np.linalg.norm(g)), 1.0), rel=1e-5)


def test_schedule_table_closed_forms() -> None:
    c = tricks.RunConfig(learning_rate=0.2, decay_rate=0.5, epochs=4)
    spe = 10  # steps per epoch; the run has 40 steps
    assert tricks.build_schedule(c, spe) == 0.2
    exp = tricks.build_schedule(c._replace(schedule="exponential"), spe)
    assert callable(exp)
    assert [round(float(exp(s)), 6) for s in (0, 9, 10, 25)] == [0.2, 0.2, 0.1, 0.05]  # staircase per epoch
    cos = tricks.build_schedule(c._replace(schedule="cosine"), spe)
    assert callable(cos)
    assert float(cos(20)) == pytest.approx(0.1, rel=1e-5)  # halfway: (1 + cos(pi/2)) / 2 * eta
    assert float(cos(40)) == pytest.approx(0.0, abs=1e-7)
    warm = tricks.build_schedule(c._replace(schedule="warmup_cosine"), spe)
    assert callable(warm)
    assert float(warm(0)) == 0.0 and float(warm(4)) == pytest.approx(0.2, rel=1e-5)  # 10% warmup
    cycle = tricks.build_schedule(c._replace(schedule="one_cycle"), spe)
    assert callable(cycle)
    values = np.asarray(jax.vmap(cycle)(jnp.arange(40)))
    assert float(values.max()) == pytest.approx(0.2, rel=1e-3) and float(values[0]) < 0.05


BAD_CONFIGS = [
    ({"hidden": ()}, ValueError, "hidden"), ({"hidden": (16, 0)}, ValueError, "hidden[1]"),
    ({"hidden": (16, 2.5)}, TypeError, "hidden[1]"), ({"init": "zeros"}, ValueError, "init"),
    ({"optimizer": "sgdx"}, ValueError, "optimizer"), ({"schedule": "linear"}, ValueError, "schedule"),
    ({"learning_rate": 0.0}, ValueError, "learning_rate"), ({"learning_rate": "fast"}, TypeError, "learning_rate"),
    ({"momentum": 1.0}, ValueError, "momentum"), ({"decay_rate": 0.0}, ValueError, "decay_rate"),
    ({"dropout": 1.0}, ValueError, "dropout"), ({"clip": 0.0}, ValueError, "clip"),
    ({"weight_decay": -1e-4}, ValueError, "weight_decay"), ({"early_stopping": 0}, ValueError, "early_stopping"),
    ({"epochs": 0}, ValueError, "epochs"), ({"batch_size": 2.0}, TypeError, "batch_size"),
    ({"batch_norm": "yes"}, TypeError, "batch_norm"),
]


@pytest.mark.parametrize(("change", "error", "field"), BAD_CONFIGS, ids=[str(c) for c, _, _ in BAD_CONFIGS])
def test_check_config_names_the_field(change: dict[str, Any], error: type[Exception], field: str) -> None:
    with pytest.raises(error) as info:
        tricks.check_config(tricks.RunConfig()._replace(**change))
    text = str(info.value)
    assert STYLE.match(text) and text.startswith(f"RunConfig: argument '{field}' must be "), text


def test_trick_rows_are_valid_and_cumulative() -> None:
    rows = tricks.trick_rows(epochs=7, hidden=(8,), batch_size=16)
    configs = [c for _, c in rows]
    for config in configs:
        tricks.check_config(config)
    base = configs[0]
    assert (base.init, base.optimizer, base.batch_norm, base.dropout) == ("standard_normal", "sgd", False, 0.0)
    changed = [{k for k in a._fields if getattr(a, k) != getattr(b, k)} for a, b in zip(configs, configs[1:])]
    assert changed == [{"init"}, {"batch_norm"}, {"dropout"}, {"optimizer"}, {"optimizer", "learning_rate"},
                       {"clip"}, {"schedule"}, {"weight_decay"}, {"early_stopping"}]
    assert all(c.epochs == 7 and c.hidden == (8,) and c.batch_size == 16 for c in configs)


def test_build_model_layers_and_output_shape() -> None:
    plain = tricks.build_model(tricks.RunConfig(hidden=(8, 4)), 3)
    full = tricks.build_model(tricks.RunConfig(hidden=(8, 4), batch_norm=True, dropout=0.5), 3)
    shapes: list[tuple[int, ...]] = []

    def init(model: Any) -> Any:
        def f(key: jax.Array) -> Any:
            params, state, shape = model.init(key, (-1, 5))
            shapes.append(tuple(shape))
            return params, state
        return eval_shape(f, jax.random.key(0))  # traced only: nothing is computed

    p_plain, _ = init(plain)
    p_full, s_full = init(full)
    assert shapes == [(-1, 3), (-1, 3)]
    # Dense, [BatchNorm], ReLU, [Dropout] per hidden width, then Dense
    assert len(p_plain) == 5 and len(p_full) == 9
    assert [getattr(p, "w", None) is not None for p in p_full] == [True, False, False, False] * 2 + [True]

    def apply(params: Any, state: Any, key: jax.Array) -> jax.Array:
        y, _ = full.apply(params, state, jnp.ones((2, 5)), key=key, train=True)
        return y

    assert eval_shape(apply, p_full, s_full, jax.random.key(1)).shape == (2, 3)


# ----------------------------------------------------------------------------------------------
# run: shapes without training


def test_checkpoint_like_and_steps_per_epoch() -> None:
    splits = toy_splits()
    config = tricks.RunConfig(hidden=(4,), epochs=3, batch_size=16)
    assert steps_per_epoch(config, splits) == 3  # 50 // 16, the partial batch dropped
    assert steps_per_epoch(config._replace(batch_size=50), splits) == 1
    like = tricks.checkpoint_like(config, splits, seeds=2)
    assert isinstance(like, TrainState)
    kernels = [leaf.shape for leaf in jax.tree_util.tree_leaves(like.params) if len(leaf.shape) == 3]
    assert kernels == [(2, 5, 4), (2, 4, 3)]  # seeds stacked on a leading axis


# ----------------------------------------------------------------------------------------------
# report


def _result(label: str, acc: list[float], *, diverged: int = 0, ensemble: bool = False) -> TrickResult:
    curves = None if ensemble else np.asarray([[0.5, np.nan], [0.6, 0.7]])
    return TrickResult(label=label, test_accuracy=np.asarray(acc), epochs_run=np.asarray([1, 2]),
                       train_seconds=0.25, compile_seconds=3.0, diverged=diverged, val_accuracy=curves,
                       val_loss=None if ensemble else np.asarray([[2.0, np.nan], [1e30, np.inf]]),
                       train_loss=curves, ensemble=ensemble)


def test_tables_and_json_show_the_measured_numbers() -> None:
    results = [_result("base", [0.5, 1.0], diverged=1), _result("+ ens", [0.875], ensemble=True)]
    text = report.format_table(results).splitlines()
    assert text[0].split()[:2] == ["trick", "(cumulative)"] and set(text[1]) <= {"-", " "}
    # no test loss measured ("-"); the first row has no row above (empty change cells)
    assert text[2].split() == ["base", "0.7500", "±", "0.2500", "(1/2", "diverged)", "-", "1.5", "0.2", "3.0"]
    assert text[3].split()[:6] == ["+", "ens", "0.8750", "(one", "ensemble)", "+0.1250"]
    md = report.markdown_table(results)
    assert "| base | 0.7500 ± 0.2500 (1/2 diverged) |  | - |  | 1.5 | 0.2 | 3.0 |" in md
    sections = [tricks.Section("classic", "c", [("base", tricks.RunConfig(hidden=(8,), batch_size=4))], True)]
    setup = report.Setup(splits=toy_splits(), sections=sections, network="MLP", source="toy.npz", seeds=2, epochs=2,
                         batch_size=4, seed=3, prng="threefry", seconds=5.0, cpu_seconds=4.0, machine="m",
                         command="functrain tricks", cache=None)
    doc = report.results_json(results, setup)
    assert doc["settings"] == {"seeds": 2, "epochs": 2, "hidden": [8], "batch_size": 4, "seed": 3, "model": "mlp",
                               "sections": ["classic"], "data": "toy.npz", "prng": "threefry", "label_noise": 0.0}
    # the totals: 3.0 s compiling per row (the ensemble's too), one set of programs (group -1 twice)
    assert doc["timing"]["compile_seconds"] == 6.0 and doc["timing"]["train_seconds"] == 0.5
    assert (doc["timing"]["programs"], doc["timing"]["rows"], doc["timing"]["cache"]) == (1, 1, None)
    assert "compiling 6.0 s (1 sets of programs for 1 rows)" in report.markdown_report(results, setup, image="t.png")
    assert doc["rows"][0]["val_loss"] == [[2.0, None], [1e30, None]]  # NaN and inf become null
    assert doc["rows"][1]["val_accuracy"] is None and doc["rows"][1]["ensemble"] is True


def _run_output(acc: list[float], active: list[list[bool]], finite: list[list[bool]]) -> RunOutput:
    epochs = jnp.asarray([[0.5, 0.25]] * len(acc))
    active_a = jnp.asarray(active)
    return RunOutput(train_loss=epochs, train_accuracy=epochs, val_loss=jnp.where(active_a, epochs, 9.0),
                     val_accuracy=epochs, active=active_a, finite=jnp.asarray(finite),
                     epochs_run=active_a.sum(1), test_loss=jnp.full(len(acc), 0.3),
                     test_accuracy=jnp.asarray(acc), state=TrainState(jnp.zeros((), jnp.int32), (), (), ()))


def test_run_summary_and_history_json() -> None:
    out = _run_output([0.8, 0.6], active=[[True, True], [True, False]], finite=[[True, True], [False, True]])
    assert report.run_summary(out, 1.25) == ("test accuracy 0.7000 ± 0.1000 over 2 seeds, epochs run 1.5, "
                                             "1 diverged (1.2 s)")
    splits = toy_splits()
    doc = report.history_json(out, config=tricks.RunConfig(hidden=(4,)), splits=splits, source="toy.npz", seed=7,
                              seconds=1.0, checkpoint="checkpoint.ckpt")
    assert doc["data"] == {"source": "toy.npz", "name": "toy", "n_train": 50, "n_val": 10, "n_test": 12,
                           "features": 5, "num_classes": 3}
    assert doc["config"]["hidden"] == [4] and doc["checkpoint"]["stacked_seeds"] is True
    first, second = doc["runs"]
    assert (first["seed"], first["epochs_run"], first["diverged"]) == ("split(key(7), 2)[0]", 2, False)
    assert (second["epochs_run"], second["diverged"]) == (1, True)  # only active epochs, last one not finite
    assert [e["epoch"] for e in second["epochs"]] == [1]
    assert doc["summary"] == {"test_accuracy_mean": pytest.approx(0.7), "test_accuracy_std": pytest.approx(0.1)}
    one = _run_output([0.5], active=[[True, True]], finite=[[True, True]])
    assert report.run_summary(one, 2.0) == "test accuracy 0.5000, epochs run 2.0 (2.0 s)"


# ----------------------------------------------------------------------------------------------
# figures


def test_axis_decisions() -> None:
    assert figures.zoom_low([0.97, 0.93, 0.2]) == 0.85  # floor((0.93 - 0.04) * 20) / 20
    assert figures.zoom_low([0.3, float("nan")]) == 0.0
    assert figures.zoom_low([0.999]) == 0.9
    assert figures.best_mean(np.asarray([[0.5, 0.9], [0.7, np.nan]])) == pytest.approx(0.9)
    tame, wild = _result("tame", [0.9, 0.9]), _result("wild", [0.1, 0.1], diverged=2)
    ylim, note = figures.loss_axis([(tame, np.asarray([[1.0, 0.5]])), (wild, np.asarray([[3.0, 1e30]]))])
    assert ylim == pytest.approx((0.35, 2.0))
    assert note is not None and note.startswith("above the axis:\nwild: up to 1.0e+30")
    assert "2/2 seeds diverged to NaN" in note
    assert figures.loss_axis([(wild, np.asarray([[3.0]]))]) == (None, None)


def test_plot_tricks_and_plot_run(tmp_path: Path) -> None:
    good = _result("good", [0.9, 0.94])
    bad = _result("bad", [0.1, 0.1], diverged=2)._replace(val_accuracy=np.full((2, 2), 0.1))
    ens = _result("+ ensemble", [0.95], ensemble=True)
    fig = figures.plot_tricks([good, bad, ens], tmp_path / "t.png", title="T")
    assert (tmp_path / "t.png").read_bytes()[:4] == b"\x89PNG" and fig.get_suptitle() == "T"
    ax_val, ax_vloss, ax_loss, ax_test = fig.axes
    # good rows: best validation 0.70 (epoch 2), test 0.92 and 0.95: axis from floor((0.70 - 0.04) * 20) / 20
    assert ax_val.get_title() == "Validation accuracy per epoch (axis from 0.65)"
    assert ax_val.get_ylim() == pytest.approx((0.65, 1.0))
    assert [t.get_text() for t in ax_val.texts] == ["below the axis:\nbad: 0.10 at best"]
    assert ax_vloss.get_yscale() == "log" and ax_loss.get_yscale() == "log"
    assert [t.get_text() for t in ax_test.texts] == [
        "0.9200 ± 0.0200", "0.1000 (off the axis; 2/2 diverged)", "0.9500 (one ensemble)"]
    (legend,) = fig.legends
    assert [t.get_text() for t in legend.get_texts()] == ["good", "bad"]
    assert "mean over 2 seeds" in legend.get_title().get_text()

    out = _run_output([0.8, 0.6], active=[[True, True], [True, False]], finite=[[True, True], [True, True]])
    run_fig = figures.plot_run(out, None, title="R")
    loss_ax, acc_ax = run_fig.axes
    assert loss_ax.get_yscale() == "log" and acc_ax.get_title() == "Accuracy per epoch"
    validation = np.asarray(loss_ax.lines[1].get_ydata(), np.float64)
    np.testing.assert_allclose(validation, [0.5, 0.25])  # the inactive epoch (9.0) is left out


# ----------------------------------------------------------------------------------------------
# commands: from parsed arguments to configurations


def test_parsed_arguments_become_the_command_options() -> None:
    args = vars(build_parser().parse_args(["train", "--optimizer", "adagrad", "--quick", "--hidden", "8,4"]))
    assert args.pop("command") == "train" and args.pop("no_cache") is False  # the cache: functrain.cli
    config = commands.train_config(commands.TrainArgs(**args))
    assert config == tricks.RunConfig(hidden=(8, 4), optimizer="adagrad", learning_rate=1e-2, epochs=2)
    full = vars(build_parser().parse_args(["train", "--lr", "0.5", "--epochs", "3"]))
    full.pop("command")
    full.pop("no_cache")
    assert commands.train_config(commands.TrainArgs(**full)) == tricks.RunConfig(learning_rate=0.5, epochs=3)
    t = vars(build_parser().parse_args(["tricks", "--quick", "--seed", "3", "--hidden", "16"]))
    t.pop("command")
    t.pop("no_cache")
    assert commands.tricks_command_line(commands.TricksArgs(**t)) == "functrain tricks --quick --seed 3 --hidden 16"
    assert commands.tricks_command_line(commands.TricksArgs()) == "functrain tricks"
    assert t["label_noise"] == commands.DEFAULT_LABEL_NOISE == commands.TricksArgs().label_noise == 0.3
    clean = vars(build_parser().parse_args(["tricks", "--label-noise", "0"]))
    assert clean["label_noise"] == 0.0
    assert commands.tricks_command_line(commands.TricksArgs(label_noise=0.0)) == "functrain tricks --label-noise 0"


def test_command_errors(tmp_path: Path) -> None:
    with pytest.raises(commands.CommandError, match="--data .*missing.npz: no such file"):
        commands.train(commands.TrainArgs(data=str(tmp_path / "missing.npz"), out=str(tmp_path / "o")))
    with pytest.raises(commands.CommandError, match=r"^RunConfig: argument 'batch_size' must be an int >= 1, got 0$"):
        commands.train_config(commands.TrainArgs(batch_size=0))
    with pytest.raises(commands.CommandError, match="--out .*: cannot create the output directory"):
        (tmp_path / "file").write_text("x")
        commands.tricks(commands.TricksArgs(out=str(tmp_path / "file")))


# ----------------------------------------------------------------------------------------------
# Fail loudly, lose nothing (issue 12, case 9): nothing clamped, bad data refused (chunked runs and
# interrupts: tests/test_experiments_chunks.py; output files: tests/test_experiments_outputs.py)


def test_case_9_batch_size_above_the_data_is_refused_not_clamped() -> None:
    splits = toy_splits()  # 50 training examples
    config = tricks.RunConfig(hidden=(4,), epochs=2, batch_size=500)
    expected = r"argument 'config.batch_size' must be an int in \[1, 50\] \(at most the 50 training examples of toy\)"
    with pytest.raises(ValueError, match="^steps_per_epoch: " + expected + ", got 500$"):
        steps_per_epoch(config, splits)
    with pytest.raises(ValueError, match="^make_run: " + expected):
        tricks.make_run(config, splits)
    # the step counter is int32: epochs x steps per epoch must fit it (5000 steps of batch 1)
    big = toy_splits(n=5000)
    assert run_module.max_epochs(config._replace(batch_size=1), big) == (2**31 - 1) // 5000 == 429496
    with pytest.raises(ValueError, match=r"^make_run: argument 'config.epochs' must be an int in \[1, 429496\] "
                                         r"\(epochs x 5000 steps per epoch must fit the int32 step counter\), "
                                         r"got 429497$"):
        tricks.make_run(config._replace(batch_size=1, epochs=429497), big)


def _dataset(x: np.ndarray, y: np.ndarray, name: str = "d") -> Any:
    from functrain.data import Dataset

    return Dataset(jnp.asarray(x, jnp.float32), jnp.asarray(y, jnp.int32), int(y.max()) + 1, name)


def test_case_9_prepare_splits_refuses_nonfinite_features_and_wrapped_labels() -> None:
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(40, 3)), np.arange(40) % 2
    for value, at in ((np.nan, 5), (np.inf, 7), (-np.inf, 8)):
        bad = x.copy()
        bad[at, 1] = value
        with pytest.raises(ValueError, match=rf"^'x' of d holds 1 value that is NaN or infinite .* example {at}$"):
            tricks.prepare_splits(_dataset(bad, y))
    wrapped = y.astype(np.int64)
    wrapped[[3, 9]] = 2**31  # what an int64 label of 2**31 becomes in int32: -2**31
    with pytest.raises(ValueError, match=r"^'y' of d holds 2 labels that are negative .* example 3; labels must be "
                                         r"in \[0, 100000\)$"):
        tricks.prepare_splits(_dataset(x, wrapped.astype(np.int32)))
    many = y.copy()
    many[0] = 2**31 - 1  # a valid int32, but 2**31 network outputs
    with pytest.raises(ValueError, match="largest label of 2147483647: labels must be in"):
        tricks.prepare_splits(_dataset(x, many))
    wide = x.copy()
    wide[:, 0] = np.where(np.arange(40) % 2 == 0, 3e38, -3e38)  # finite, but max - min overflows float32
    with pytest.raises(ValueError, match="span more than float32's range"):
        tricks.prepare_splits(_dataset(wide, y))
    ok = tricks.prepare_splits(_dataset(x, y))
    assert np.isfinite(ok.x_train).all() and ok.num_classes == 2
