"""Mixup and CutMix: exact convex combinations on constructed batches (the weight and partner are
read back from the output), CutMix's area-adjusted weight, Beta moments, soft targets in the
cross-entropy, identical results with and without jit and under vmap (keys, traced alpha), errors."""

from __future__ import annotations

import re
from typing import Any

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _typed import jit, vmap

from functrain.data import cutmix, mixup
from functrain.losses import softmax_cross_entropy

STYLE = re.compile(r"^[\w.]+: argument '[\w.\[\]']+' must be .+, got .+$", re.S)
N, C = 8, 5
LABELS = jnp.array([0, 1, 2, 3, 4, 0, 1, 2])


def _any(value: object) -> Any:
    """A deliberately wrong argument, past the type checker."""
    return value


def _one_hot(y: np.ndarray, c: int = C) -> np.ndarray:
    return np.asarray(np.eye(c, dtype=np.float32)[np.asarray(y)])


def _read_mixup(mixed: np.ndarray) -> tuple[float, np.ndarray]:
    """``(lam, perm)`` from mixup of the identity batch: row i is ``lam e_i + (1 - lam) e_perm[i]``."""
    lam = float(np.min(np.diag(mixed)))  # 1 where perm[i] == i, else lam
    off = mixed - np.diag(np.diag(mixed))
    perm = np.where(off.max(axis=1) > 0, off.argmax(axis=1), np.arange(len(mixed)))
    return lam, perm


def test_mixup_is_the_convex_combination_with_the_sampled_weight() -> None:
    x = jnp.eye(N)
    for seed in range(5):
        mixed, targets = mixup(jax.random.key(seed), (x, LABELS), 0.4, num_classes=C)
        m = np.asarray(mixed)
        lam, perm = _read_mixup(m)
        assert 0.0 < lam < 1.0 and sorted(perm.tolist()) == list(range(N))
        lam32 = np.float32(lam)
        expected_x = lam32 * np.eye(N, dtype=np.float32) + (1 - lam32) * np.eye(N, dtype=np.float32)[perm]
        np.testing.assert_array_equal(m, expected_x)  # nothing but the two rows, exactly
        y = np.asarray(LABELS)
        expected_t = lam32 * _one_hot(y) + (1 - lam32) * _one_hot(y[perm])
        np.testing.assert_allclose(np.asarray(targets), expected_t, rtol=0, atol=1e-7)


def test_mixup_of_images_and_soft_targets_mixes_every_axis_alike() -> None:
    x = jnp.asarray(np.random.default_rng(0).standard_normal((N, 3, 3, 2)), jnp.float32)
    probe = jnp.eye(N)
    key = jax.random.key(7)
    lam, perm = _read_mixup(np.asarray(mixup(key, (probe, LABELS), 1.0, num_classes=C)[0]))
    mixed, targets = mixup(key, (x, jnp.asarray(_one_hot(np.asarray(LABELS)))), 1.0)  # one-hot given
    lam32 = np.float32(lam)
    np.testing.assert_allclose(np.asarray(mixed), lam32 * np.asarray(x) + (1 - lam32) * np.asarray(x)[perm],
                               rtol=1e-6, atol=1e-6)
    _, from_ints = mixup(key, (x, LABELS), 1.0, num_classes=C)
    np.testing.assert_array_equal(np.asarray(targets), np.asarray(from_ints))


def test_soft_targets_in_the_cross_entropy_mix_the_two_losses() -> None:
    logits = jnp.asarray(np.random.default_rng(1).standard_normal((N, C)), jnp.float32)
    key = jax.random.key(3)
    lam, perm = _read_mixup(np.asarray(mixup(key, (jnp.eye(N), LABELS), 0.4, num_classes=C)[0]))
    _, targets = mixup(key, (jnp.eye(N), LABELS), 0.4, num_classes=C)
    soft = softmax_cross_entropy(logits, targets, reduction="none")  # floating labels, logits' shape
    y = np.asarray(LABELS)
    z = np.asarray(logits, np.float64)
    log_p = z - np.log(np.exp(z).sum(axis=1, keepdims=True))  # float64 reference
    expected = -(lam * log_p[np.arange(N), y] + (1 - lam) * log_p[np.arange(N), y[perm]])
    np.testing.assert_allclose(np.asarray(soft), expected, rtol=1e-5)


def test_mixup_weight_follows_the_beta_distribution() -> None:
    alpha, n = 0.4, 4000
    keys = jax.random.split(jax.random.key(0), n)
    mixed = jit(vmap(lambda k: mixup(k, (jnp.eye(N), LABELS), alpha, num_classes=C)[0]))(keys)
    lam = np.min(np.diagonal(np.asarray(mixed), axis1=1, axis2=2), axis=1)
    mean, var = 0.5, 1.0 / (4 * (2 * alpha + 1))  # Beta(a, a): mean 1/2, variance 1 / (4 (2a + 1))
    assert abs(lam.mean() - mean) < 3 * np.sqrt(var / n)
    assert abs(lam.var() - var) < 0.1 * var


def test_alpha_zero_is_the_identity() -> None:
    x = jnp.asarray(np.random.default_rng(2).standard_normal((N, 4, 4, 1)), jnp.float32)
    for fn in (mixup, cutmix):
        mixed, targets = fn(jax.random.key(0), (x, LABELS), 0.0, num_classes=C)
        np.testing.assert_array_equal(np.asarray(mixed), np.asarray(x))
        np.testing.assert_array_equal(np.asarray(targets), _one_hot(np.asarray(LABELS)))


def _constant_images(h: int = 12, w: int = 10) -> jax.Array:
    """Image i is the constant i + 1 (2 channels): a pixel's value names its source image."""
    return jnp.broadcast_to(jnp.arange(1.0, N + 1)[:, None, None, None], (N, h, w, 2))


def test_cutmix_pastes_one_box_and_adjusts_the_weight_to_its_area() -> None:
    x = _constant_images()
    h, w = 12, 10
    boxes = 0
    for seed in range(20):
        key = jax.random.key(seed)
        mixed, targets = (np.asarray(a) for a in cutmix(key, (x, LABELS), 1.0, num_classes=C))
        np.testing.assert_array_equal(mixed[..., 0], mixed[..., 1])  # channels alike
        source = mixed[..., 0] - 1  # which image each pixel came from
        own = source == np.arange(N)[:, None, None]
        perm = np.array([int(s[~o][0]) if (~o).any() else i for i, (s, o) in enumerate(zip(source, own))])
        pasted = ~own[perm != np.arange(N)]
        if pasted.size:
            assert (pasted == pasted[0]).all()  # one box for the whole batch
            rows, cols = np.nonzero(pasted[0])
            if rows.size:
                boxes += 1
                box = np.zeros((h, w), bool)
                box[rows.min():rows.max() + 1, cols.min():cols.max() + 1] = True
                np.testing.assert_array_equal(pasted[0], box)  # a rectangle
        area = int(pasted[0].sum()) if pasted.size else 0
        lam = np.float32(1.0 - area / (h * w))  # Yun et al.: lam adjusted to the box's area
        y = np.asarray(LABELS)
        expected = lam * _one_hot(y) + (1 - lam) * _one_hot(y[perm])
        np.testing.assert_allclose(targets, expected, rtol=0, atol=1e-6)
    assert boxes >= 15


def test_cutmix_box_size_follows_the_sampled_weight() -> None:
    # The documented key protocol: k_weight, k_perm, k_box = split(key, 3); lam ~ Beta(alpha, alpha).
    h = w = 32
    x = _constant_images(h, w)[:2]
    y = LABELS[:2]
    checked = 0
    for seed in range(60):
        key = jax.random.key(seed)
        lam = float(jax.random.beta(jax.random.split(key, 3)[0], 1.0, 1.0))
        mixed, _ = cutmix(key, (x, y), 1.0, num_classes=C)
        rows, cols = np.nonzero(np.asarray(mixed)[0, ..., 0] != 1.0)
        side = 2 * (int(np.floor(h * np.sqrt(1 - lam))) // 2)  # floor(H sqrt(1 - lam)), even
        if rows.size and rows.min() > 0 and rows.max() < h - 1 and cols.min() > 0 and cols.max() < w - 1:
            assert rows.max() - rows.min() + 1 == side and cols.max() - cols.min() + 1 == side
            checked += 1
        elif rows.size:  # clipped at the border
            assert rows.max() - rows.min() + 1 <= side and cols.max() - cols.min() + 1 <= side
    assert checked >= 5


class TestSameUnderTransformations(chex.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    def test_identical_with_and_without_jit(self) -> None:
        x = _constant_images()

        def both(key: jax.Array, alpha: jax.Array) -> tuple[jax.Array, ...]:
            return (*mixup(key, (x, LABELS), alpha, num_classes=C),
                    *cutmix(key, (x, LABELS), alpha, num_classes=C))

        key = jax.random.key(5)
        got = self.variant(both)(key, jnp.asarray(0.7))
        want = both(key, jnp.asarray(0.7))
        # The same draws (weight, partners, box); XLA may fuse lam a + (1 - lam) b differently
        # under jit (1 ulp), CutMix's images are a pure selection: bit-identical.
        for a, b in zip(got, want):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6, atol=1e-7)
        np.testing.assert_array_equal(np.asarray(got[2]), np.asarray(want[2]))

    def test_vmap_over_keys_and_traced_alpha_equals_each_call(self) -> None:
        x = _constant_images()
        keys = jax.random.split(jax.random.key(9), 4)
        alphas = jnp.array([0.0, 0.2, 1.0, 3.0])
        for fn in (mixup, cutmix):
            def one(key: jax.Array, alpha: jax.Array, fn: Any = fn) -> tuple[jax.Array, jax.Array]:
                mixed, targets = fn(key, (x, LABELS), alpha, num_classes=C)
                return mixed, targets

            batched = vmap(one)(keys, alphas)
            for i in range(4):
                single = one(keys[i], alphas[i])
                for a, b in zip(batched, single):  # the same draws, up to 1 ulp of arithmetic
                    np.testing.assert_allclose(np.asarray(a)[i], np.asarray(b), rtol=1e-6, atol=1e-7)
                if fn is cutmix:  # a selection of pixels: bit-identical
                    np.testing.assert_array_equal(np.asarray(batched[0])[i], np.asarray(single[0]))


@pytest.mark.parametrize(("call", "error", "name"), [
    (lambda: mixup(jax.random.key(0), (jnp.eye(N), LABELS), 0.4), TypeError, "num_classes"),
    (lambda: mixup(jax.random.key(0), (jnp.eye(N), LABELS), -1.0, num_classes=C), ValueError, "alpha"),
    (lambda: mixup(jax.random.key(0), (jnp.eye(N), LABELS), _any("a"), num_classes=C), TypeError, "alpha"),
    (lambda: mixup(jax.random.key(0), (jnp.eye(N, dtype=jnp.int32), LABELS), 0.4, num_classes=C),
     TypeError, "batch[0]"),
    (lambda: mixup(jax.random.key(0), _any(jnp.eye(N)), 0.4, num_classes=C), TypeError, "batch"),
    (lambda: mixup(jax.random.key(0), (jnp.eye(N), LABELS), 0.4, num_classes=3), ValueError, "batch[1]"),
    (lambda: mixup(jax.random.key(0), (jnp.eye(N), jnp.ones((N, 4))), 0.4, num_classes=3),
     ValueError, "num_classes"),
    (lambda: mixup(jax.random.key(0), (jnp.eye(N), LABELS[:4]), 0.4, num_classes=C), ValueError, "batch"),
    (lambda: mixup(_any("key"), (jnp.eye(N), LABELS), 0.4, num_classes=C), TypeError, "key"),
    (lambda: cutmix(jax.random.key(0), (jnp.eye(N), LABELS), 0.4, num_classes=C), ValueError, "batch[0]"),
])
def test_errors_name_the_argument(call: object, error: type[Exception], name: str) -> None:
    with pytest.raises(error) as info:
        call()  # type: ignore[operator]  # a lambda from the table
    assert f"argument '{name}'" in str(info.value) and STYLE.match(str(info.value)), str(info.value)
