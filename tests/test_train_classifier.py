"""classifier_loss: label smoothing against optax's smoothed cross-entropy, traced and vmapped eps."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from _typed import grad, jit

from functrain import _tree, layers, optim, train
from functrain.typing import Array, PyTree


def _model_and_batch() -> tuple[layers.Layer, object, object, tuple[Array, Array]]:
    model = layers.serial(layers.Dense(5), layers.Relu, layers.Dense(4))
    params, model_state, _ = model.init(jax.random.key(0), (-1, 3))
    x = jax.random.normal(jax.random.key(1), (6, 3))
    y = jnp.asarray([0, 1, 2, 3, 1, 0])
    return model, params, model_state, (x, y)


def _optax_reference(logits: Array, y: Array, eps: float) -> float:
    targets = optax.smooth_labels(jax.nn.one_hot(y, logits.shape[-1]), eps)
    return float(optax.softmax_cross_entropy(logits, targets).mean())


@pytest.mark.parametrize("eps", [0.0, 0.1, 0.5, 1.0])
def test_label_smoothing_matches_optax(eps: float) -> None:
    model, params, model_state, (x, y) = _model_and_batch()
    logits, _ = model.apply(params, model_state, x, train=False)
    loss_fn = train.classifier_loss(model.apply, train=False, label_smoothing=eps)
    loss, (_, metrics) = loss_fn(params, model_state, (x, y), jax.random.key(2))
    ref = _optax_reference(logits, y, eps)
    assert float(loss) == pytest.approx(ref, rel=1e-6)
    plain, _ = train.classifier_loss(model.apply, train=False)(params, model_state, (x, y), jax.random.key(2))
    assert (float(loss) == pytest.approx(float(plain), rel=1e-7)) == (eps == 0.0)
    np.testing.assert_allclose(float(metrics["accuracy"]), float(jnp.mean(jnp.argmax(logits, -1) == y)))


def test_label_smoothing_is_traceable_and_vmaps_over_eps() -> None:
    model, params, model_state, (x, y) = _model_and_batch()
    logits, _ = model.apply(params, model_state, x, train=False)

    def loss_at(eps: Array) -> Array:
        loss_fn = train.classifier_loss(model.apply, train=True, label_smoothing=eps)
        return loss_fn(params, model_state, (x, y), jax.random.key(2))[0]

    epss = jnp.asarray([0.0, 0.05, 0.2])
    got = jit(jax.vmap(loss_at))(epss)
    for e, g in zip(epss.tolist(), got.tolist(), strict=True):
        assert g == pytest.approx(_optax_reference(logits, y, e), rel=1e-6)


def test_a_train_step_with_label_smoothing_descends_the_smoothed_loss() -> None:
    model, params, model_state, batch = _model_and_batch()
    loss_fn = train.classifier_loss(model.apply, train=True, label_smoothing=0.2)
    sgd = optim.sgd(0.1)
    step = jit(train.make_train_step(loss_fn, sgd))
    state = train.init_train_state(params, model_state, sgd)
    def loss(p: PyTree) -> jax.Array:
        return loss_fn(p, model_state, batch, jax.random.key(0))[0]

    grads = grad(loss)(params)
    new, metrics = step(state, batch, jax.random.key(0))
    expected = _tree.tree_map(lambda p, g: p - 0.1 * g, params, grads)
    for a, b in zip(jax.tree_util.tree_leaves(new.params), jax.tree_util.tree_leaves(expected), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6, atol=1e-7)
    assert float(metrics["loss"]) == pytest.approx(float(loss_fn(params, model_state, batch, jax.random.key(0))[0]), rel=1e-6)


def test_label_smoothing_takes_part_in_equality_and_repr() -> None:
    model, *_ = _model_and_batch()
    a = train.classifier_loss(model.apply, train=True, label_smoothing=0.1)
    assert a == train.classifier_loss(model.apply, train=True, label_smoothing=0.1)
    assert a != train.classifier_loss(model.apply, train=True)
    assert hash(a) == hash(train.classifier_loss(model.apply, train=True, label_smoothing=0.1))
    assert "label_smoothing=0.1" in repr(a)
    assert train.classifier_loss(model.apply, train=True).label_smoothing == 0.0


@pytest.mark.parametrize("bad, error", [(-0.1, ValueError), (1.5, ValueError), ("0.1", TypeError)])
def test_label_smoothing_out_of_range_is_refused(bad: object, error: type[Exception]) -> None:
    model, *_ = _model_and_batch()
    with pytest.raises(error, match=r"classifier_loss: argument 'label_smoothing' must be"):
        train.classifier_loss(model.apply, train=True, label_smoothing=bad)  # type: ignore[call-overload]  # bad on purpose
