"""The canon examples (bag_of_tricks.py, lr_find.py, mnist_dropout.py): their pieces (fast) and each
script end to end with ``--quick`` (slow). Kept apart from tests/test_examples.py, which the lead
extends with these scripts' names when merging."""

from __future__ import annotations

import gzip
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from _examples import examples_on_path, load_example, run_example

import functrain
from functrain import layers

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
SCRIPTS = ("bag_of_tricks", "lr_find", "mnist_dropout")


@pytest.mark.parametrize("name", SCRIPTS)
def test_every_script_parses_the_shared_options(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    with examples_on_path(), pytest.raises(SystemExit) as info:
        load_example(name).main(["--help"])
    assert info.value.code == 0
    text = capsys.readouterr().out
    assert "--quick" in text and "--out" in text and "--seeds" in text


def test_bag_of_tricks_pieces() -> None:
    with examples_on_path():
        bot = load_example("bag_of_tricks")
    names = [r.name for r in layers.summary(bot.build_model(0.1), (-1, 8, 8, 1)).rows]
    assert names.count("DropPath") == 2 and names.count("Residual") == 2
    assert "DropPath" not in [r.name for r in layers.summary(bot.build_model(0.0), (-1, 8, 8, 1)).rows]

    model = bot.build_model(0.0)
    params, state, _ = model.init(jax.random.key(0), (-1, 8, 8, 1))
    x, y = jnp.asarray(np.random.default_rng(0).random((4, 8, 8, 1)), jnp.float32), jnp.array([1, 2, 3, 4])
    loss, _ = bot.make_loss(model, bot.Tricks(label_smoothing=0.1))(params, state, (x, y), jax.random.key(1))
    logits, _ = model.apply(params, state, x, key=jax.random.split(jax.random.key(1))[1], train=True)
    expected = optax.softmax_cross_entropy(logits, optax.smooth_labels(jax.nn.one_hot(y, 10), 0.1)).mean()
    np.testing.assert_allclose(float(loss), float(expected), rtol=1e-5)
    mixed, _ = bot.make_loss(model, bot.Tricks(mixup_alpha=0.2))(params, state, (x, y), jax.random.key(1))
    assert np.isfinite(float(mixed)) and float(mixed) != float(loss)


def _tiny_mnist(directory: Path) -> None:
    def idx(a: np.ndarray) -> bytes:
        return bytes([0, 0, 0x08, a.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in a.shape) + a.tobytes()

    for part, n in (("train", 6), ("t10k", 3)):
        images = np.full((n, 28, 28), 255, np.uint8)
        (directory / f"{part}-images-idx3-ubyte.gz").write_bytes(gzip.compress(idx(images)))
        (directory / f"{part}-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx(np.arange(n, dtype=np.uint8))))


def test_mnist_dropout_loads_mnist_or_falls_back_to_the_digits(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    with examples_on_path():
        script = load_example("mnist_dropout")
    _tiny_mnist(tmp_path)
    calls: list[tuple[object, str]] = []

    def fetched(directory: object, *, kind: str = "mnist", **_: object) -> Path:
        calls.append((directory, kind))
        return tmp_path

    monkeypatch.setattr(functrain.data, "fetch_mnist", fetched)
    (x, _), (x_test, _), name = script.load_images("fashion", tmp_path / "where", quick=False)
    assert calls == [(tmp_path / "where", "fashion")] and name == "Fashion-MNIST"
    assert x.shape == (6, 28, 28, 1) and float(x.max()) == 1.0 and x_test.shape == (3, 28, 28, 1)

    def offline(directory: object, **_: object) -> Path:
        raise functrain.data.DownloadError("fetch_mnist: could not download ...; tried http://x (offline)")

    monkeypatch.setattr(functrain.data, "fetch_mnist", offline)
    (x, _), _, name = script.load_images("mnist", None, quick=False)
    assert name == "digits (8x8)" and x.shape[1:] == (8, 8, 1)
    assert "running on the 8x8 digits instead" in capsys.readouterr().out
    (x, _), _, name = script.load_images("mnist", None, quick=True)  # --quick: no download at all
    assert name == "digits (8x8)" and x.shape[0] == 256


def test_lr_find_example_optimizers() -> None:
    with examples_on_path():
        script = load_example("lr_find")
    assert sorted(script.OPTIMIZERS) == ["adam", "momentum", "sgd"]
    assert layers.summary(script.build_model(), (-1, 64)).total_params == 64 * 64 + 64 + 64 * 10 + 10


EXPECTED: dict[str, tuple[list[str], str]] = {
    "bag_of_tricks": (["Total params", "baseline", "all of them", "verdict (vs seed spread)", "± ",
                       "verdict: all of them raises test accuracy: effect"],
                      "bag_of_tricks.png"),
    "lr_find": (["range test, sgd", "steepest descent", "minimum / 10", "suggested learning rate",
                 "best fixed rate"], "lr_find.png"),
    "mnist_dropout": (["digits (8x8)", "dropout rate", "0.0 ", "0.2 ", "0.5 ", "0.8 ", "best final test accuracy"],
                      "mnist_dropout.png"),
}


@pytest.mark.slow  # each script end to end: 10-40 s each
@pytest.mark.parametrize("name", SCRIPTS)
def test_quick_run(name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run_example(name, ["--quick", "--out", str(tmp_path / "figures")])
    printed = capsys.readouterr().out
    strings, png = EXPECTED[name]
    for text in strings:
        assert text in printed, f"{name}: {text!r} missing from its output:\n{printed}"
    content = (tmp_path / "figures" / png).read_bytes()
    assert content.startswith(PNG_MAGIC) and len(content) > 10_000
