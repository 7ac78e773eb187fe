"""Train/test splitting and minibatch iteration."""

from __future__ import annotations

import re
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from functrain.data import batches, num_batches, train_test_split

KEY = jax.random.key(0)
STYLE = re.compile(r"^[\w.]+: argument '[\w.\[\]']+' must be .+, got .+$", re.S)


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


def _message(exc: type[Exception], fn: Callable[..., object], *args: object,
             **kwargs: object) -> str:
    """Call ``fn``, expect ``exc`` with a message in the library's one style, return it."""
    with pytest.raises(exc) as info:
        fn(*args, **kwargs)
    text = str(info.value)
    assert STYLE.match(text), text
    return text


def _lengths_message(fn: Callable[..., object], *args: object) -> str:
    """The different-lengths error of ``_validate.check_leading_length`` (its own wording)."""
    with pytest.raises(ValueError) as info:
        fn(*args)
    return str(info.value)


def test_numpy_integers_are_accepted_wherever_ints_are() -> None:
    x = np.arange(10)
    assert num_batches(np.int64(10), np.int32(4)) == 3  # type: ignore[arg-type]  # NumPy integers are ints at runtime
    assert type(num_batches(np.int64(10), np.int32(4))) is int  # type: ignore[arg-type]  # NumPy integers are ints at runtime
    assert [b.tolist() for b in batches(x, np.int64(4))] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]  # type: ignore[arg-type]  # NumPy integers are ints at runtime
    assert [len(b) for b in batches(x, np.uint8(5), drop_last=np.bool_(True))] == [5, 5]  # type: ignore[arg-type]  # NumPy integers are ints at runtime


def test_batches_rejects_bad_input_at_call_time() -> None:
    x, y = np.zeros((5, 2)), np.zeros(4)
    text = _lengths_message(batches, (x, y), 2)
    assert text.startswith("batches: argument 'data' must ") and "same leading length" in text
    assert "'data[0]': 5" in text and "'data[1]': 4" in text
    for bad in (0, -3):
        assert f"batches: argument 'batch_size' must be an int >= 1, got {bad}" == _message(
            ValueError, batches, (x,), bad)
    assert _message(TypeError, batches, (x,), 2.5) == (
        "batches: argument 'batch_size' must be an int >= 1, got 2.5")
    _message(TypeError, batches, (x,), True)
    assert _message(ValueError, batches, (), 2).startswith(
        "batches: argument 'data' must be a pytree with at least one array, got ")
    assert "a scalar at data['s']" in _message(ValueError, batches, {"s": np.float32(1.0), "x": x}, 2)
    assert "data[0]" in _message(TypeError, batches, ([1, 2, 3],), 2)  # a list is a pytree of ints
    assert "'drop_last' must be a bool" in _message(TypeError, batches, (x,), 2, drop_last="yes")
    assert "'key' must be a PRNG key" in _message(TypeError, batches, (x,), 2, key=3)
    assert "'key' must be a PRNG key" in _message(
        TypeError, batches, (x,), 2, key=jax.random.split(KEY, 2))
    assert len(list(batches((x,), 2, key=jax.random.PRNGKey(0)))) == 3  # raw uint32[2] keys work
    assert _message(ValueError, num_batches, -1, 2) == (
        "num_batches: argument 'n' must be an int >= 0, got -1")
    assert "'n' must be an int >= 0, got 'ten'" in _message(TypeError, num_batches, "ten", 2)
    assert "'batch_size' must be an int >= 1, got 0" in _message(ValueError, num_batches, 3, 0)


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
    for bad in (1.0, 0.0, -0.5, float("nan")):
        assert _message(ValueError, train_test_split, KEY, x, test_fraction=bad).startswith(
            "train_test_split: argument 'test_fraction' must be in (0, 1), got ")
    assert "'test_fraction' must be a number, got '0.2'" in _message(
        TypeError, train_test_split, KEY, x, test_fraction="0.2")
    text = _lengths_message(train_test_split, KEY, x, np.zeros(9))
    assert text.startswith("train_test_split: argument 'arrays' must ") and "same leading length" in text and "'arrays[0]': 10, 'arrays[1]': 9" in text
    assert _message(ValueError, train_test_split, KEY) == (
        "train_test_split: argument 'arrays' must be at least one array, got tuple ()")
    assert "leaves both parts non-empty (it puts 1 of the 1 examples in the test part)" in _message(
        ValueError, train_test_split, KEY, np.zeros(1), test_fraction=0.5)
    assert "a scalar at arrays[1]" in _message(ValueError, train_test_split, KEY, x, np.float32(0.0))
    assert "'arrays[1]' must be an array" in _message(TypeError, train_test_split, KEY, x, object())
    text = _message(TypeError, train_test_split, 0, x)
    assert "argument 'key' must be a PRNG key" in text and text.endswith("got 0")
