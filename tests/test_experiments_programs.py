"""Shared programs (issue 14, "compile once"), the networks and the canon rows of the trick table.

Rows that differ only in hyperparameter values share one compiled program, the values passed as
data: the grouping of the default and canon rows, the neutral values (a row run in its group's
program computes what it computes alone), the learning-rate table against the schedule, and the
pieces the canon adds (the local label smoothing against optax, the EMA of the weights against the
closed form), each fast (tiny shapes, programs compiled with the --quick options).
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from _cli import toy_splits

from functrain import layers
from functrain._tree import tree_leaves_with_path
from functrain.experiments import tricks
from functrain.experiments.tricks import chunks, models, programs
from functrain.experiments.tricks.splits import Splits

QUICK = {"xla_backend_optimization_level": 0}


def _image_splits(n: int = 48, side: int = 8, classes: int = 3) -> Splits:
    """Random 8x8x1 images (flat) with their image shape."""
    rng = np.random.default_rng(1)

    def part(m: int) -> tuple[np.ndarray, np.ndarray]:
        return rng.uniform(size=(m, side * side)).astype(np.float32), rng.integers(0, classes, m)

    (xt, yt), (xv, yv), (xs, ys) = part(n), part(10), part(12)
    return Splits(xt, yt, xv, yv, xs, ys, classes, "images", (side, side, 1))


# ----------------------------------------------------------------------------------------------
# grouping


def test_default_rows_share_four_sets_of_programs() -> None:
    rows = tricks.trick_rows(epochs=3, hidden=(8,), batch_size=16)
    groups = programs.group_rows([c for _, c in rows])
    # no batch norm | batch norm with SGD/momentum | Adam | Adam with early stopping
    assert [g.members for g in groups] == [(0, 1), (2, 3, 4), (5, 6, 7, 8), (9,)]
    assert [sorted(g.structure.tricks) for g in groups] == [
        [], ["dropout", "momentum"], ["clip", "dropout", "weight_decay"], ["clip", "dropout", "weight_decay"]]
    canon = programs.group_rows([c for _, c in tricks.canon_rows(epochs=2)])
    # mixup and SAM change the computation; the other tricks are values of one program
    assert [g.members for g in canon] == [(0, 1, 3, 4, 5, 7), (2,), (6,)]
    assert sorted(canon[0].structure.tricks) == ["bn_last_scale", "drop_path", "ema", "label_smoothing", "momentum"]


def test_hyper_values_are_the_rows_or_neutral() -> None:
    splits = toy_splits()  # 50 training examples: 3 steps per epoch of 16
    rows = [c for _, c in tricks.trick_rows(epochs=4, hidden=(8,), batch_size=16)]
    adam = programs.group_rows(rows)[2].structure
    layout = programs.layout_of(splits)
    plain = programs.hyper_of(rows[5], adam, layout)
    assert float(plain["clip"]) == math.inf and float(plain["weight_decay"]) == 0.0
    assert float(plain["dropout"]) == pytest.approx(0.2)
    np.testing.assert_array_equal(np.asarray(plain["lr"]), np.full(12, np.float32(1e-3)))
    cosine = programs.hyper_of(rows[8], adam, layout)
    assert float(cosine["clip"]) == 1.0 and float(cosine["weight_decay"]) == pytest.approx(1e-4)
    schedule = tricks.build_schedule(rows[8], 3)
    assert callable(schedule)
    expected = [float(schedule(t)) for t in range(12)]
    np.testing.assert_allclose(np.asarray(cosine["lr"]), expected, rtol=1e-6, atol=1e-9)
    assert float(cosine["lr"][6]) == pytest.approx(0.5e-3, rel=1e-5)  # halfway: (1 + cos(pi/2)) / 2 * eta


def test_warmup_ramps_to_the_schedule() -> None:
    config = tricks.RunConfig(learning_rate=0.2, schedule="cosine", warmup=0.25, epochs=4)
    schedule = tricks.build_schedule(config, 10)  # 40 steps: 10 of warmup, then the cosine's own values
    assert callable(schedule)
    assert float(schedule(0)) == 0.0
    cosine = tricks.build_schedule(config._replace(warmup=0.0), 10)
    assert callable(cosine)
    assert float(schedule(5)) == pytest.approx(0.5 * float(cosine(10)), rel=1e-5)
    assert float(schedule(20)) == pytest.approx(float(cosine(20)), rel=1e-6)


def _run(config: tricks.RunConfig, structure: programs.Structure, splits: Splits, keys: jax.Array) -> Any:
    layout, data = programs.layout_of(splits), programs.device_data(splits)
    hyper = programs.hyper_of(config, structure, layout)
    compiled = chunks.compile_programs(structure, config.init, layout, hyper, data, keys, compiler_options=QUICK)
    out = chunks.run_chunked(chunks.bind(compiled, compiled, hyper, data), keys).output
    assert out is not None
    return out


def test_a_row_in_its_groups_program_computes_what_it_computes_alone() -> None:
    splits, keys = toy_splits(), jax.random.split(jax.random.key(2), 2)
    base = tricks.RunConfig(hidden=(8,), optimizer="sgd", learning_rate=0.3, epochs=3, batch_size=16)
    # the group of plain SGD with momentum (gamma 0) and clipping (theta = inf) and weight decay (0)
    shared = programs.Structure(programs.structure_of(base).template,
                                frozenset({"momentum", "clip", "weight_decay"}))
    alone, grouped = _run(base, programs.structure_of(base), splits, keys), _run(base, shared, splits, keys)
    for name in ("train_loss", "val_loss", "test_accuracy"):
        np.testing.assert_allclose(np.asarray(getattr(grouped, name)), np.asarray(getattr(alone, name)),
                                   rtol=1e-6, err_msg=name)
    # and a row that uses them gets its own values there
    other = base._replace(optimizer="momentum", clip=0.5, weight_decay=1e-2)
    assert not np.allclose(np.asarray(_run(other, shared, splits, keys).train_loss), np.asarray(alone.train_loss))


def test_a_dropout_layer_at_rate_zero_is_the_identity() -> None:
    config = tricks.RunConfig(hidden=(6,))
    with_layer = models.build_model(config, 3, rates={"dropout": jnp.asarray(0.0)})
    params, state, _ = with_layer.init(jax.random.key(0), (-1, 4))
    x = jax.random.normal(jax.random.key(1), (5, 4))
    y, _ = with_layer.apply(params, state, x, key=jax.random.key(2), train=True)
    w1, w2 = params[0], params[3]  # Dense, Relu, Dropout, Dense
    np.testing.assert_allclose(np.asarray(y), np.asarray(jnp.maximum(x @ w1.w + w1.b, 0) @ w2.w + w2.b), rtol=1e-6)


# ----------------------------------------------------------------------------------------------
# networks


def test_convnets_take_flat_images() -> None:
    cnn = models.build_model(tricks.RunConfig(model="cnn", hidden=(4, 8), batch_norm=True, dropout=0.5), 3, (8, 8, 1))
    summary = layers.summary(cnn, (-1, 64))
    assert str(summary).count("Conv2D") == 2 and "MaxPool" in str(summary) and "Dropout" in str(summary)
    assert tuple(cnn.init(jax.random.key(0), (-1, 64))[2]) == (-1, 3)
    assert models.padding_for((28, 28, 1)) == "VALID" and models.padding_for((8, 8, 1)) == "SAME"
    resnet = models.build_model(tricks.RunConfig(model="resnet", hidden=(4, 8), batch_norm=True, drop_path=0.1,
                                                 zero_init_bn=True), 3, (8, 8, 1))
    params, _, shape = resnet.init(jax.random.key(0), (-1, 64))
    assert tuple(shape) == (-1, 3) and "DropPath" in str(layers.summary(resnet, (-1, 64)))
    scales = [leaf for path, leaf in tree_leaves_with_path(params) if "scale" in path]
    # stem BN, then per block: first BN at 1, last BN (zero-init) at 0
    assert [float(jnp.max(s)) for s in scales] == [1.0, 1.0, 0.0, 1.0, 0.0]
    with pytest.raises(ValueError, match="needs images"):
        models.build_model(tricks.RunConfig(model="cnn"), 3, None)
    with pytest.raises(ValueError):  # four 2x2 poolings do not fit 8x8 images
        models.check_model(tricks.RunConfig(model="cnn", hidden=(2, 2, 2, 2)), 3, 64, (8, 8, 1))


def test_canon_rows_each_add_one_trick_to_the_baseline() -> None:
    rows = tricks.canon_rows(epochs=3)
    base = rows[0][1]
    assert base.model == "resnet" and base.batch_norm and base.optimizer == "momentum"
    for label, config in rows[1:]:
        tricks.check_config(config)
        changed = {k for k in config._fields if getattr(config, k) != getattr(base, k)}
        assert len(changed) == 1, (label, changed)
    assert [next(iter({k for k in c._fields if getattr(c, k) != getattr(base, k)})) for _, c in rows[1:]] == [
        "label_smoothing", "mixup", "warmup", "zero_init_bn", "drop_path", "sam", "ema"]


@pytest.mark.parametrize(("change", "field"), [
    ({"drop_path": 0.1}, "drop_path"), ({"zero_init_bn": True}, "zero_init_bn"), ({"model": "vgg"}, "model"),
    ({"label_smoothing": 1.0}, "label_smoothing"), ({"mixup": -1.0}, "mixup"), ({"ema": 1.0}, "ema"),
    ({"warmup": 1.0}, "warmup"), ({"sam": float("nan")}, "sam")])
def test_canon_fields_are_checked(change: dict[str, Any], field: str) -> None:
    with pytest.raises(ValueError, match=rf"^RunConfig: argument '{field}' must be "):
        tricks.check_config(tricks.RunConfig()._replace(**change))


# ----------------------------------------------------------------------------------------------
# the canon's pieces


def test_label_smoothing_loss_equals_optax() -> None:
    config = tricks.RunConfig(hidden=(5,), label_smoothing=0.1, weight_decay=1e-2)
    model = models.build_model(config, 4)
    params, state, _ = model.init(jax.random.key(0), (-1, 3))
    x, y = jax.random.normal(jax.random.key(1), (6, 3)), jnp.asarray([0, 1, 2, 3, 0, 1])
    loss, (_, metrics) = programs.loss_for(config, model, 4)(params, state, (x, y), jax.random.key(2))
    logits, _ = model.apply(params, state, x, train=True, key=jax.random.key(2))
    targets = optax.smooth_labels(jax.nn.one_hot(y, 4), 0.1)
    l2 = 0.5 * sum(float(jnp.sum(p.w ** 2)) for p in params if hasattr(p, "w"))
    expected = float(jnp.mean(optax.softmax_cross_entropy(logits, targets))) + 1e-2 * l2
    assert float(loss) == pytest.approx(expected, rel=1e-6)
    assert float(metrics["accuracy"]) == pytest.approx(float(jnp.mean(jnp.argmax(logits, -1) == y)))


def test_the_ema_of_the_weights_is_the_closed_form() -> None:
    decay = jnp.asarray(0.5)
    ema = programs._ema_of_params(decay)  # pyright: ignore[reportPrivateUsage]  # the private helper under test
    params = {"w": jnp.asarray([1.0, 2.0])}
    state = ema.init(params)
    seen = [params["w"]]
    for k in range(3):
        updates = {"w": jnp.asarray([1.0, -1.0]) * (k + 1)}
        out, state = ema.update(updates, state, params)
        assert out is updates  # the updates pass unchanged
        params = {"w": params["w"] + updates["w"]}
        seen.append(params["w"])
    # avg_t = d^t avg_0 + (1 - d) sum_i d^(t - i) p_i, avg_0 = p_0
    expected = 0.5 ** 3 * seen[0] + 0.5 * sum(0.5 ** (3 - i) * seen[i] for i in range(1, 4))
    np.testing.assert_allclose(np.asarray(state.average["w"]), np.asarray(expected), rtol=1e-6)


def test_canon_programs_train_on_images() -> None:
    """One shared canon program (label smoothing, warmup, zero-init, drop-path, EMA as values) trains."""
    splits, keys = _image_splits(), jax.random.split(jax.random.key(0), 2)
    rows = [c._replace(hidden=(4,), epochs=2, batch_size=16) for _, c in tricks.canon_rows(epochs=2)]
    group = programs.group_rows(rows)[0]
    ema_row = rows[7]
    out = _run(ema_row, group.structure, splits, keys)
    assert np.isfinite(np.asarray(out.train_loss)).all() and np.asarray(out.test_accuracy).shape == (2,)
    # the EMA row evaluates the average: not the last weights
    plain = _run(rows[0], group.structure, splits, keys)
    assert not np.allclose(np.asarray(out.state.params[1].w), np.asarray(plain.state.params[1].w))
