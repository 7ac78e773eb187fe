"""The lesson examples: their shared preamble (fast), and every script end to end in ``--quick`` mode.

Each example is imported by path (``examples/`` is not a package) and its ``main`` called in-process
with ``["--quick", "--out", DIR]``, with ``examples/`` on ``sys.path`` only meanwhile (as when a
script runs, so scripts can import ``_common.py`` and ``convnet.py``; see tests/_examples.py).
"""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _examples import EXAMPLES, examples_on_path, load_example, run_example

from functrain import data, layers, optim, train

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

# example -> (strings its printed table must contain, PNG files it must write)
EXPECTED: dict[str, tuple[list[str], list[str]]] = {
    "digits_quickstart": (["epochs run", "best epoch", "test accuracy"], ["digits_quickstart.png"]),
    "value_ranges": (["1e10 + 1e-10 == 1e10 is True", "raw 0..16", "min-max [0, 1]", "min-max [-1, 1]",
                      "standardized", "test acc, last"], ["value_ranges.png"]),
    "initialization": (["forward std", "backward std", "standard_normal N(0,1)", "gaussian N(0,1/n)",
                        "xavier/glorot", "he/kaiming", "tanh", "relu", "test accuracy"],
                       ["initialization_signal_tanh.png", "initialization_signal_relu.png"]),
    "batch_norm": (["no batch norm", "with batch norm", "running statistics", "train=False", "train=True"],
                   ["batch_norm.png"]),
    "dropout": (["dropout rate", "0.0 ", "0.2 ", "0.5 ", "0.8 ", "test acc, last"], ["dropout.png"]),
    "overfitting": (["no regularization", "early stopping", "L2 penalty", "AdamW", "EMA", "SWA",
                     "ensemble of the 2 seeds", "recompute_batch_norm_stats", "test accuracy"],
                    ["overfitting.png"]),
    "optimizers": (["SGD lr=", "momentum 0.9", "Nesterov", "normalized SGD", "Adagrad", "RMSProp", "Adam",
                    "test accuracy"], ["optimizers.png"]),
    "gradient_clipping": (["no clipping (theta = inf)", "clip theta = 10", "clip theta = 1", "test accuracy"],
                          ["gradient_clipping.png"]),
    "lr_decay": (["constant", "x0.98 per epoch", "cosine decay", "one-cycle", "test acc, last"],
                 ["lr_decay_schedules.png", "lr_decay_curves.png"]),
    "multi_seed_sweep": (["4 configurations x 2 seeds = 8 runs", "learning rate", "momentum",
                          "test accuracy (mean ± std)"], ["multi_seed_sweep.png"]),
    "equinox_model": (["re-initialized output layer", "equinox default", "functrain he_normal",
                       "test accuracy"], ["equinox_model.png"]),
}
LAYER_EXAMPLES = {"convnet", "resnet", "inception"}  # tested by tests/test_examples_layers.py


def test_every_example_is_tested() -> None:
    scripts = {p.stem for p in EXAMPLES.glob("*.py") if not p.stem.startswith("_")}
    assert scripts - LAYER_EXAMPLES == set(EXPECTED), "add new examples to EXPECTED (or remove stale entries)"
    readme = (EXAMPLES / "README.md").read_text()
    for name in scripts:
        assert f"{name}.py" in readme, f"examples/README.md does not describe {name}.py"


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
        common = load_example("_common")
        assert str(EXAMPLES) in sys.path
    assert sys.path == before
    assert "_common" not in sys.modules and common.__name__ not in sys.modules


def test_common_parser_and_split() -> None:
    with examples_on_path():
        common = load_example("_common")
    args = common.parser("Title line.\n\nMore.", seeds=3, epochs=7).parse_args(["--quick", "--out", "d"])
    assert (args.quick, args.out, args.seeds, args.epochs) == (True, Path("d"), 3, 7)
    bare = common.parser(None, out=False).parse_args([])
    assert vars(bare) == {"quick": False}

    # The same split and scaling written out with functrain.data: statistics of the training part only.
    split = common.load_split(val_fraction=0.2, val_key=2)
    whole = data.split_dataset(jax.random.key(0), data.load_digits(), test_fraction=0.25)
    carved = data.split_dataset(jax.random.key(2), whole.train, test_fraction=0.2)
    x_train = np.asarray(carved.train.x, np.float64)
    low, high = x_train.min(0), x_train.max(0)
    expected_test = -1.0 + 2.0 * (np.asarray(whole.test.x, np.float64) - low) / np.where(high > low, high - low, 1.0)
    np.testing.assert_array_equal(np.asarray(split.train[1]), np.asarray(carved.train.y))
    np.testing.assert_array_equal(np.asarray(split.val[1]), np.asarray(carved.test.y))
    varying = high > low
    np.testing.assert_allclose(np.asarray(split.test[0])[:, varying], expected_test[:, varying], atol=1e-5)
    train_x = np.asarray(split.train[0])
    assert train_x.min() == -1.0 and train_x.max() == 1.0
    assert len(split.train[0]) + len(split.val[0]) + len(split.test[0]) == 1797

    raw = common.load_split(feature_range=None)
    assert raw.val is None and float(jnp.max(raw.train[0])) == 16.0
    images = common.load_split(as_images=True, feature_range=(0.0, 1.0), train_size=100)
    assert images.train[0].shape == (100, 8, 8, 1) and float(jnp.max(images.train[0])) == 1.0


def test_common_fit_run_trains() -> None:
    with examples_on_path():
        common = load_example("_common")
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 64)
    x = jnp.asarray(rng.normal(size=(64, 3)) + 3.0 * y[:, None], jnp.float32)
    model = layers.serial(layers.Dense(2))
    params, model_state, _ = model.init(jax.random.key(0), (-1, 3))
    opt = optim.sgd(0.1)
    step = train.make_train_step(train.classifier_loss(model.apply, train=True), opt)
    eval_step = train.make_eval_step(train.classifier_loss(model.apply, train=False))
    start = train.init_train_state(params, model_state, opt)
    state, metrics = common.fit_run(step, start, (x, jnp.asarray(y)), jax.random.key(1), epochs=3,
                                    batch_size=16, eval_step=eval_step, val_data=(x, jnp.asarray(y)))
    assert metrics.val["loss"].shape == (3,) and int(state.step) == 3 * 4
    assert float(metrics.val["loss"][-1]) < float(metrics.val["loss"][0])
    final = train.evaluate(eval_step, state, (x, jnp.asarray(y)), batch_size=64)
    # the returned state is the last epoch's: it scores the last validation loss
    assert float(final["loss"]) == pytest.approx(float(metrics.val["loss"][-1]), rel=1e-6)


@pytest.mark.slow  # every script end to end: 5-25 s each
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_example_quick_run(name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out_dir = tmp_path / "figures"  # not created yet: the example must create it
    run_example(name, ["--quick", "--out", str(out_dir)])
    printed = capsys.readouterr().out
    table, pngs = EXPECTED[name]
    for text in table:
        assert text in printed, f"{name}: {text!r} missing from its output:\n{printed}"
    assert sorted(p.name for p in out_dir.iterdir()) == sorted(pngs)
    for png in pngs:
        content = (out_dir / png).read_bytes()
        assert content.startswith(PNG_MAGIC) and len(content) > 10_000, f"{name}: {png} is not a real PNG"
