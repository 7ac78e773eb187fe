"""Train/test splitting and minibatch iteration."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from functrain.data import batches, num_batches, train_test_split

KEY = jax.random.key(0)


@pytest.mark.parametrize(("n", "bs", "drop", "expected"),
                         [(10, 4, False, 3), (10, 4, True, 2), (8, 4, False, 2), (8, 4, True, 2),
                          (3, 5, False, 1), (3, 5, True, 0), (0, 2, False, 0)])
def test_num_batches(n: int, bs: int, drop: bool, expected: int) -> None:
    assert num_batches(n, bs, drop_last=drop) == expected


def test_batches_in_order_cover_the_data() -> None:
    x = np.arange(20).reshape(10, 2)
    y = np.arange(10)
    out = list(batches((x, y), 4))
    assert [b[1].tolist() for b in out] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    assert all(isinstance(b[0], np.ndarray) for b in out)  # NumPy leaves stay NumPy
    np.testing.assert_array_equal(np.concatenate([b[0] for b in out]), x)
    dropped = list(batches((x, y), 4, drop_last=True))
    assert len(dropped) == num_batches(10, 4, drop_last=True) == 2
    assert all(b[0].shape == (4, 2) for b in dropped)


def test_shuffled_batches_follow_the_key_and_keep_rows_aligned() -> None:
    x = jnp.arange(30.0).reshape(10, 3)
    data = {"x": x, "y": jnp.arange(10)}
    key = jax.random.key(3)
    out = list(batches(data, 3, key=key))
    assert [set(b) for b in out] == [{"x", "y"}] * 4
    assert all(isinstance(b["x"], jax.Array) for b in out)
    order = np.concatenate([np.asarray(b["y"]) for b in out])
    np.testing.assert_array_equal(order, np.asarray(jax.random.permutation(key, 10)))
    assert sorted(order.tolist()) == list(range(10)) and order.tolist() != list(range(10))
    for b in out:  # each x row still belongs to its label
        np.testing.assert_array_equal(b["x"], x[b["y"]])
    again = np.concatenate([np.asarray(b["y"]) for b in batches(data, 3, key=key)])
    np.testing.assert_array_equal(order, again)
    other = np.concatenate([np.asarray(b["y"]) for b in batches(data, 3, key=jax.random.key(4))])
    assert other.tolist() != order.tolist()


def test_batches_rejects_bad_input_at_call_time() -> None:
    x, y = np.zeros((5, 2)), np.zeros(4)
    with pytest.raises(ValueError, match=r"batches: .*same number of examples.*\[0\]': 5.*\[1\]': 4"):
        batches((x, y), 2)
    for bad in (0, -3):
        with pytest.raises(ValueError, match=r"batches: argument 'batch_size' must be > 0, got"):
            batches((x,), bad)
    with pytest.raises(TypeError, match=r"batches: argument 'batch_size' must be an int, got 2.5"):
        batches((x,), 2.5)  # type: ignore[arg-type]  # deliberately a float
    with pytest.raises(ValueError, match=r"batches: argument 'data' has no arrays"):
        batches((), 2)
    with pytest.raises(ValueError, match=r"batches: .*leaf \['s'\] is a scalar"):
        batches({"s": np.float32(1.0), "x": x}, 2)
    with pytest.raises(ValueError, match=r"num_batches: argument 'n' must be an int >= 0, got -1"):
        num_batches(-1, 2)


def test_train_test_split_is_a_keyed_partition() -> None:
    x = np.arange(50.0).reshape(25, 2)
    y = np.arange(25)
    (x_tr, y_tr), (x_te, y_te) = train_test_split(KEY, x, y, test_fraction=0.2)
    assert (len(y_tr), len(y_te)) == (20, 5)
    assert sorted(np.concatenate([y_tr, y_te]).tolist()) == list(range(25))
    np.testing.assert_array_equal(x_tr, x[np.asarray(y_tr)])
    np.testing.assert_array_equal(x_te, x[np.asarray(y_te)])
    perm = np.asarray(jax.random.permutation(KEY, 25))
    np.testing.assert_array_equal(y_te, perm[:5])
    (_, y_tr2), _ = train_test_split(KEY, x, y, test_fraction=0.2)
    np.testing.assert_array_equal(y_tr, y_tr2)
    _, (y_te3,) = train_test_split(jax.random.key(9), y, test_fraction=0.3)
    assert len(y_te3) == 8  # ceil(0.3 * 25)
    assert set(np.asarray(y_te3).tolist()) != set(np.asarray(y_te).tolist())


def test_train_test_split_rejects_bad_input() -> None:
    x = np.zeros((10, 2))
    with pytest.raises(ValueError, match=r"train_test_split: argument 'test_fraction' must be in \(0, 1\)"):
        train_test_split(KEY, x, test_fraction=1.0)
    with pytest.raises(ValueError, match=r"train_test_split: .*same number of examples.*\[10, 9\]"):
        train_test_split(KEY, x, np.zeros(9))
    with pytest.raises(ValueError, match=r"train_test_split: pass at least one array"):
        train_test_split(KEY)
    with pytest.raises(ValueError, match=r"train_test_split: .*both parts must be non-empty"):
        train_test_split(KEY, np.zeros(1), test_fraction=0.5)
    with pytest.raises(ValueError, match=r"train_test_split: array 1 is a scalar"):
        train_test_split(KEY, x, np.float32(0.0))
