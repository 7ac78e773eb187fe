"""The lesson examples: the shared helpers and verdict rule (fast), every script's pieces (fast), every
script end to end in ``--quick`` mode and at its defaults (slow).

Each example is imported by path (``examples/`` is not a package) and its ``main`` called in-process,
with ``examples/`` on ``sys.path`` only meanwhile (see tests/_examples.py). The default runs check
each script's verdict lines against :data:`DOCUMENTED`, the verdicts the README's examples table
records; a fast test keeps that table and :data:`DOCUMENTED` in step, and another that every claim the
lesson makes unconditionally is documented as ``shown``.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from types import ModuleType

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _examples import EXAMPLES, examples_on_path, load_example, run_example, verdicts

from functrain import data, layers, optim, plotting, train

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
ROOT = EXAMPLES.parent

# example -> (strings its --quick output must contain, PNG files it must write)
EXPECTED: dict[str, tuple[list[str], list[str]]] = {
    "digits_quickstart": (["epochs run", "best epoch", "test accuracy"], ["digits_quickstart.png"]),
    "value_ranges": (["1e10 + 1e-10 == 1e10 is True", "raw 0..16", "min-max [0, 1]", "min-max [-1, 1]",
                      "standardized", "test acc, last"], ["value_ranges.png"]),
    "initialization": (["output std", "sqrt(n)", "forward std", "backward std", "standard_normal N(0,1)",
                        "uniform U(-0.05, 0.05)", "he/kaiming uniform", "tanh", "relu", "test acc, last"],
                       ["initialization_signal.png", "initialization_training.png"]),
    "batch_norm": (["default init, no batch norm", "He init, no batch norm", "default init + batch norm",
                    "running statistics", "train=False", "train=True"], ["batch_norm.png"]),
    "normalization": (["none", "batch norm", "layer norm", "weight norm", "batch 4", "batch 32"],
                      ["normalization.png"]),
    "dropout": (["dropout rate", "0.0 ", "0.2 ", "0.5 ", "0.8 ", "train loss (eval)", "gap",
                 "average of 100 thinned networks", "full network"], ["dropout.png"]),
    "overfitting": (["no regularization", "early stopping", "L2 penalty", "AdamW", "EMA", "SWA",
                     "ensemble of the other seeds", "recompute_batch_norm_stats", "test accuracy"],
                    ["overfitting.png"]),
    "model_size": (["clean labels", "30% wrong training labels", "width (parameters)", "100 digits"],
                   ["model_size.png"]),
    "optimizers": (["SGD", "momentum 0.9", "normalized SGD", "Adagrad", "RMSProp", "Adam", "best rate",
                    "is normalized SGD"], ["optimizers.png"]),
    "momentum": (["gamma 0 (SGD)", "gamma 0.9", "gamma 1 (no friction)", "effective lr", "unbounded"],
                 ["momentum.png"]),
    "gradient_clipping": (["no clipping (theta = inf)", "clip theta = 10", "clip theta = 1", "lr / 10",
                           "median step norm", "test acc, last"], ["gradient_clipping.png"]),
    "lr_decay": (["constant", "x0.98 per epoch", "cosine decay", "one-cycle", "step: /10", "train loss"],
                 ["lr_decay_schedules.png", "lr_decay_curves.png"]),
    "multi_seed_sweep": (["4 configurations x 2 seeds = 8 runs", "learning rate", "momentum",
                          "test accuracy (mean ± std)"], ["multi_seed_sweep.png"]),
    "equinox_model": (["re-initialized output layer", "equinox default", "functrain he_normal",
                       "test accuracy"], ["equinox_model.png"]),
}
LAYER_EXAMPLES = {"convnet", "resnet", "inception"}  # tested by tests/test_examples_layers.py (no figures)
CANON_EXAMPLES = {"bag_of_tricks", "lr_find", "mnist_dropout"}  # tested by tests/test_examples_canon.py

# The verdicts of every lesson example at its defaults, in the order it prints them: what the
# README's examples table records (a recorded run on 2 CPU cores). digits_quickstart makes no claim.
DOCUMENTED: dict[str, list[str]] = {
    "value_ranges": ["shown"],
    "initialization": ["shown", "shown", "shown"],
    "batch_norm": ["shown", "shown"],
    "normalization": ["shown", "shown", "within noise"],
    "dropout": ["shown", "shown"],
    "overfitting": ["shown", "shown", "shown", "within noise"],
    "model_size": ["shown", "reversed"],
    "optimizers": ["shown", "within noise"],
    "momentum": ["shown", "shown"],
    "gradient_clipping": ["shown", "within noise", "within noise"],
    "lr_decay": ["shown", "within noise"],
    "multi_seed_sweep": ["shown"],
    "equinox_model": ["shown"],
    "convnet": ["shown"],
    "resnet": ["shown"],
    "inception": ["within noise"],
}
# The claims the lesson makes unconditionally: (example, index of the verdict line) must be shown.
UNCONDITIONAL = [("value_ranges", 0), ("initialization", 0), ("initialization", 1), ("initialization", 2),
                 ("batch_norm", 0), ("resnet", 0), ("gradient_clipping", 0), ("optimizers", 0)]


def common() -> ModuleType:
    with examples_on_path():
        return load_example("_common")


def test_every_example_is_tested_and_described() -> None:
    scripts = {p.stem for p in EXAMPLES.glob("*.py") if not p.stem.startswith("_")}
    lesson = scripts - CANON_EXAMPLES
    assert lesson - LAYER_EXAMPLES == set(EXPECTED), "add new examples to EXPECTED (or remove stale entries)"
    assert set(DOCUMENTED) == lesson - {"digits_quickstart"}
    assert CANON_EXAMPLES <= scripts
    readme = (EXAMPLES / "README.md").read_text()
    for name in scripts:
        assert f"{name}.py" in readme, f"examples/README.md does not describe {name}.py"


def test_unconditional_claims_are_documented_as_shown() -> None:
    for name, i in UNCONDITIONAL:
        assert DOCUMENTED[name][i] == "shown", (name, i)


def _readme_table() -> dict[str, list[str]]:
    text = (ROOT / "README.md").read_text()
    start, end = text.index("<!-- examples-table -->"), text.index("<!-- /examples-table -->")
    rows: dict[str, list[str]] = {}
    for line in text[start:end].splitlines():
        match = re.match(r"^\| `(\w+)\.py` \|.*\| \*\*(shown|within noise|reversed)\*\* \|", line)
        if match:
            rows.setdefault(match[1], []).append(match[2])
    return rows


def test_readme_examples_table_matches_the_documented_verdicts() -> None:
    assert _readme_table() == DOCUMENTED


@pytest.mark.parametrize("name", sorted(EXPECTED.keys() | LAYER_EXAMPLES))
def test_every_script_parses_the_shared_options(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    with examples_on_path(), pytest.raises(SystemExit) as info:
        load_example(name).main(["--help"])
    assert info.value.code == 0
    text = capsys.readouterr().out
    assert "--quick" in text
    assert ("--out" in text) == (name not in LAYER_EXAMPLES)  # the layer scripts write no figure


def test_examples_path_is_restored() -> None:
    import sys

    before = list(sys.path)
    with examples_on_path():
        module = load_example("_common")
        assert str(EXAMPLES) in sys.path
    assert sys.path == before
    assert "_common" not in sys.modules and module.__name__ not in sys.modules


# ----------------------------------------------------------------------------- the verdict rule

def test_verdict_unpaired_hand_computed() -> None:
    c = common()
    v = c.verdict([0.1, 0.2, 0.3], [0.5, 0.6, 0.7], claim="c")
    # effect 0.4; each sample variance (ddof=1) is 0.01, so the pooled std is 0.1; 0.4 > 2 x 0.1
    assert (round(v.effect, 12), round(v.spread, 12), v.label) == (0.4, 0.1, "shown")
    assert v.line == "verdict: c: effect +0.400 test accuracy vs seed std 0.100: shown"
    low = c.verdict([0.5, 0.6, 0.7], [0.1, 0.2, 0.3], claim="c")
    assert low.label == "reversed" and low.line.endswith("effect -0.400 test accuracy vs seed std 0.100: reversed")
    lower_is_better = c.verdict([0.5, 0.6, 0.7], [0.1, 0.2, 0.3], claim="c",
                                higher_is_better=False, metric="test loss")
    assert lower_is_better.label == "shown" and "test loss" in lower_is_better.line
    noisy = c.verdict([0.0, 1.0], [0.5, 1.5], claim="c")
    # effect 0.5; sample variances 0.5 each: spread sqrt(0.5) = 0.7071 > 0.25
    assert noisy.label == "within noise" and math.isclose(noisy.spread, math.sqrt(0.5))
    assert c.FACTOR == 2.0


def test_verdict_paired_uses_the_spread_of_the_differences() -> None:
    c = common()
    a, b = [1.0, 2.0, 3.0], [1.1, 2.25, 3.3]
    # differences 0.1, 0.25, 0.3: mean 0.21667, sample std 0.10408 (2 x 0.10408 = 0.20817 < 0.21667)
    paired = c.verdict(a, b, claim="c", paired=True)
    assert math.isclose(paired.effect, 0.65 / 3) and math.isclose(paired.spread, 0.104083, rel_tol=1e-5)
    assert paired.label == "shown" and "vs paired std 0.104" in paired.line
    # the same numbers unpaired: the seeds' own spread (~1) swamps the effect
    assert c.verdict(a, b, claim="c").label == "within noise"
    # exactly at the threshold is not shown: |effect| must exceed 2 x spread
    assert c.verdict([0.0, 0.0], [1.0, 3.0], claim="c", paired=True).label == "within noise"


@pytest.mark.parametrize(("baseline", "treated", "paired", "name"), [
    ([0.5], [0.6, 0.7], False, "baseline"),
    ([0.5, float("nan")], [0.6, 0.7], False, "baseline"),
    ([0.5, 0.6], [0.6, 0.7, 0.8], True, "treated"),
])
def test_verdict_rejects_bad_values(baseline: list[float], treated: list[float], paired: bool, name: str) -> None:
    with pytest.raises(ValueError, match=rf"^verdict: argument '{name}' must be .+, got .+$"):
        common().verdict(baseline, treated, claim="c", paired=paired)


def test_mean_std_and_take() -> None:
    c = common()
    assert c.mean_std([1.0, 3.0]) == "2.000 ± 1.000"
    tree = {"a": jnp.arange(6).reshape(3, 2)}
    assert c.take(tree, 1)["a"].tolist() == [2, 3]


# ----------------------------------------------------------------------------- preamble and data

def test_parser_and_parse_args_keep_an_existing_cache(tmp_path: Path) -> None:
    c = common()
    args = c.parser("Title line.\n\nMore.", seeds=3, epochs=7).parse_args(
        ["--quick", "--out", "d"])
    assert (args.quick, args.out, args.seeds, args.epochs) == (True, Path("d"), 3, 7)
    bare = c.parser(None, out=False).parse_args([])
    assert vars(bare) == {"quick": False}
    before = getattr(jax.config, "jax_compilation_cache_dir", None)
    parsed = c.parse_args(c.parser(None, seeds=2), ["--seeds", "5"])
    assert parsed.seeds == 5
    if before:  # the test suite turned a cache on: the examples keep it
        assert getattr(jax.config, "jax_compilation_cache_dir", None) == before


def test_load_split_is_the_one_split_with_global_scaling() -> None:
    c = common()
    split = c.load_split()
    whole = data.split_dataset(jax.random.key(0), data.load_digits(), test_fraction=0.25)
    x_train = np.asarray(whole.train.x, np.float64)
    low, high = x_train.min(), x_train.max()  # 0 and 16: every pixel scaled alike
    assert (low, high) == (0.0, 16.0)
    expected = -1.0 + 2.0 * (np.asarray(whole.test.x, np.float64) - low) / (high - low)
    np.testing.assert_allclose(np.asarray(split.test[0]), expected, atol=1e-6)
    np.testing.assert_array_equal(np.asarray(split.train[1]), np.asarray(whole.train.y))
    assert split.val is None and split.test[0].shape == (450, 64) and split.train[0].shape == (1347, 64)

    val = c.load_split(validation=True)
    carved = data.split_dataset(jax.random.key(2), whole.train, test_fraction=0.2)
    np.testing.assert_array_equal(np.asarray(val.val[1]), np.asarray(carved.test.y))
    assert len(val.train[0]) + len(val.val[0]) + len(val.test[0]) == 1797
    np.testing.assert_array_equal(np.asarray(val.test[0]), np.asarray(split.test[0]))  # the same test digits

    images = c.load_split(as_images=True, train_size=100)
    assert images.train[0].shape == (100, 8, 8, 1)
    np.testing.assert_allclose(np.asarray(images.test[0]).reshape(450, 64), np.asarray(split.test[0]), atol=1e-6)
    raw = c.load_split(feature_range=None)
    assert float(jnp.max(raw.train[0])) == 16.0


def test_label_noise_changes_the_training_labels_only() -> None:
    c = common()
    clean, noisy = c.load_split(validation=True), c.load_split(validation=True, label_noise=0.3)
    changed = np.asarray(clean.train[1]) != np.asarray(noisy.train[1])
    assert 0.25 < changed.mean() < 0.35
    np.testing.assert_array_equal(np.asarray(clean.val[1]), np.asarray(noisy.val[1]))
    np.testing.assert_array_equal(np.asarray(clean.test[1]), np.asarray(noisy.test[1]))
    y = jnp.arange(1000) % 10
    every = np.asarray(c.noisy_labels(jax.random.key(0), y, 1.0))
    assert np.all(every != np.asarray(y)) and every.min() >= 0 and every.max() <= 9
    assert np.array_equal(np.asarray(c.noisy_labels(jax.random.key(0), y, 0.0)), np.asarray(y))


def _toy() -> tuple[layers.Layer, tuple[jax.Array, jax.Array]]:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 64)
    x = jnp.asarray(rng.normal(size=(64, 3)) + 3.0 * y[:, None], jnp.float32)
    return layers.serial(layers.Dense(2)), (x, jnp.asarray(y))


def test_fit_run_trains() -> None:
    c = common()
    model, xy = _toy()
    params, model_state, _ = model.init(jax.random.key(0), (-1, 3))
    opt = optim.sgd(0.1)
    step = train.make_train_step(train.classifier_loss(model.apply, train=True), opt)
    eval_step = train.make_eval_step(train.classifier_loss(model.apply, train=False))
    start = train.init_train_state(params, model_state, opt)
    state, metrics = c.fit_run(step, start, xy, jax.random.key(1), epochs=3,
                               batch_size=16, eval_step=eval_step, val_data=xy)
    assert metrics.val["loss"].shape == (3,) and int(state.step) == 3 * 4
    assert float(metrics.val["loss"][-1]) < float(metrics.val["loss"][0])
    final = train.evaluate(eval_step, state, xy, batch_size=64)
    assert float(final["loss"]) == pytest.approx(float(metrics.val["loss"][-1]), rel=1e-6)


def test_watch_run_scores_each_set_in_evaluation_mode() -> None:
    c = common()
    model, xy = _toy()
    params, model_state, _ = model.init(jax.random.key(0), (-1, 3))
    opt = optim.sgd(0.1)
    step = train.make_train_step(train.classifier_loss(model.apply, train=True), opt, grad_norm=True)
    eval_step = train.make_eval_step(train.classifier_loss(model.apply, train=False))
    start = train.init_train_state(params, model_state, opt)
    state, seen = c.watch_run(step, start, xy, jax.random.key(1), epochs=2, eval_step=eval_step,
                              watch={"train": xy, "val": (xy[0][:10], xy[1][:10])}, batch_size=16, per_step=True)
    assert seen["train"]["loss"].shape == (2,) and seen["val"]["accuracy"].shape == (2,)
    assert seen["steps"]["grad_norm"].shape == (2, 4) and int(state.step) == 8
    assert float(seen["train"]["loss"][-1]) == pytest.approx(
        float(train.evaluate(eval_step, state, xy, batch_size=64)["loss"]), rel=1e-6)
    _, means = c.watch_run(step, start, xy, jax.random.key(1), epochs=2, eval_step=eval_step,
                           watch={}, batch_size=16)
    np.testing.assert_allclose(np.asarray(means["steps"]["loss"]), np.asarray(seen["steps"]["loss"]).mean(1), rtol=1e-6)


# ----------------------------------------------------------------------------- figure helpers

def test_plot_helpers_draw_what_they_say() -> None:
    with examples_on_path():
        plots = load_example("_plots")
    fig, (gap, heat, steps) = plotting.panels(1, 3)
    best = plots.plot_gap(gap, {"a": np.array([[3.0, 2.0, 1.0]])}, {"a": np.array([[3.0, 1.0, 2.0]])}, title="t")
    assert best == {"a": 2} and len(gap.lines) == 4  # train, validation, the dot and the vertical line
    plots.plot_heatmap(heat, np.array([[0.5, 0.25]]), std=np.array([[0.1, 0.2]]), rows=["r"], cols=["x", "y"],
                       title="t", xlabel="x", ylabel="y", digits=2)
    assert [t.get_text() for t in heat.texts] == ["0.50\n± 0.10", "0.25\n± 0.20"]
    plots.plot_steps(steps, np.array([[1.0, 100.0, np.nan], [2.0, 3.0, 4.0]]), title="t", ylabel="norm",
                     lines={"theta = 1": 1.0})
    assert len(steps.lines) == 3 and steps.get_yscale() == "log"
    plots.caption(fig, "look here")
    assert fig.get_supxlabel() == "look here"


# ----------------------------------------------------------------------------- pieces of the scripts

def test_script_pieces() -> None:
    with examples_on_path():
        dropout, lr_decay, clipping = (load_example(n) for n in ("dropout", "lr_decay", "gradient_clipping"))
        momentum, model_size, init = (load_example(n) for n in ("momentum", "model_size", "initialization"))
        normalization, optimizers = load_example("normalization"), load_example("optimizers")
    # a rate-0 network drops nothing: every average of "thinned" networks is the full network
    model = dropout.mlp(0.0, 8)
    params, state, _ = model.init(jax.random.key(0), (-1, 64))
    x, y = jax.random.normal(jax.random.key(1), (20, 64)), jnp.arange(20) % 10
    full = float(jnp.mean(jnp.argmax(model.apply(params, state, x, train=False)[0], -1) == y))
    averaged = np.asarray(dropout.thinned_average(model, params, state, (x, y), jax.random.key(2)))
    np.testing.assert_allclose(averaged, full)

    named = lr_decay.schedule_set(0.25, 10, 30)
    values = {name: [float(s(i)) for i in (0, 10, 25, 29)] for name, s in named.items()}
    assert values["constant 0.25"] == [0.25] * 4
    assert values["x0.98 per epoch"] == pytest.approx([0.25, 0.245, 0.25 * 0.98**2, 0.25 * 0.98**2])
    assert values["step: /10 for the last third"] == pytest.approx([0.25, 0.25, 0.025, 0.025])
    assert values["cosine decay"][0] == pytest.approx(0.25) and values["cosine decay"][-1] < 0.01

    assert clipping.configurations(1.0)["clip theta = 1"] == (1.0, 1.0)
    assert clipping.configurations(1.0)["no clipping, lr / 10 = 0.1"] == (0.1, math.inf)
    assert momentum.configurations(0.01)["gamma 0.9, lr 0.01"] == (0.01, 0.9)
    for width in (4, 16):
        net = layers.serial(layers.Dense(width), layers.Relu, layers.Dense(width), layers.Relu, layers.Dense(10))
        p, _, _ = net.init(jax.random.key(0), (-1, 64))
        assert model_size.parameters(width) == sum(leaf.size for leaf in jax.tree_util.tree_leaves(p))
    assert init.first_layer_std(64) == pytest.approx(8.0, rel=0.05)  # sqrt(n), not n
    for norm in normalization.NORMS:
        _, _, shape = normalization.deep_mlp(norm, 3).init(jax.random.key(0), (-1, 64))
        assert tuple(shape) == (-1, 10)
    assert {"normalized SGD", "Adagrad", "Adam", "SGD"} <= set(optimizers.LESSON)


# ----------------------------------------------------------------------------- end to end

@pytest.mark.slow  # every script end to end in --quick mode: 5-25 s each
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_example_quick_run(name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out_dir = tmp_path / "figures"  # not created yet: the example must create it
    run_example(name, ["--quick", "--out", str(out_dir)])
    printed = capsys.readouterr().out
    table, pngs = EXPECTED[name]
    for text in table:
        assert text in printed, f"{name}: {text!r} missing from its output:\n{printed}"
    verdicts(printed)  # any verdict line is well formed
    assert sorted(p.name for p in out_dir.iterdir()) == sorted(pngs)
    for png in pngs:
        content = (out_dir / png).read_bytes()
        assert content.startswith(PNG_MAGIC) and len(content) > 10_000, f"{name}: {png} is not a real PNG"


@pytest.mark.slow  # every lesson example at its defaults (a few minutes in all with the compile cache)
@pytest.mark.parametrize("name", sorted(DOCUMENTED))
def test_example_default_run_prints_its_documented_verdicts(name: str, tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    run_example(name, [] if name in LAYER_EXAMPLES else ["--out", str(tmp_path)])
    printed = capsys.readouterr().out
    assert verdicts(printed) == DOCUMENTED[name], printed
