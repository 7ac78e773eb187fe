"""The one validation module: every check accepts what it should, refuses the rest, in one style."""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _typed import jit

from functrain import _validate as v

STYLE = re.compile(r"^[\w.]+: argument '[\w.\[\]']+' must be .+, got .+$", re.S)


def _raises(exc: type[Exception], fn: object, *args: object, **kwargs: object) -> str:
    assert callable(fn)
    with pytest.raises(exc) as info:
        fn(*args, **kwargs)
    text = str(info.value)
    assert STYLE.match(text), text
    return text


def test_message_and_describe() -> None:
    assert v.message("f", "x", "an int", 1.5) == "f: argument 'x' must be an int, got 1.5"
    assert v.describe(np.int64(3)) == "3"
    assert v.describe(jnp.zeros((2, 3))) == "an array of shape (2, 3) and dtype float32"
    assert "0-d array" in v.describe(jnp.asarray(2.0))
    assert v.describe(len) == "the function len"
    assert v.describe([1, 2]) == "list [1, 2]"
    from functrain import layers

    assert v.describe(layers.Dense(3)) == "a Layer value"
    assert v.describe("x" * 200).endswith("...")


def test_check_int_accepts_numpy_integers_and_refuses_bools_and_floats() -> None:
    assert v.check_int(np.int64(2), "f", "n", low=1) == 2
    assert type(v.check_int(np.int32(2), "f", "n")) is int
    assert "an int >= 1, got True" in _raises(TypeError, v.check_int, True, "f", "n", low=1)
    _raises(TypeError, v.check_int, 2.0, "f", "n")
    assert "an int >= 1, got 0" in _raises(ValueError, v.check_int, 0, "f", "n", low=1)
    assert "an int in [0, 5], got 6" in _raises(ValueError, v.check_int, 6, "f", "n", low=0, high=5)
    assert "an int <= 5" in _raises(ValueError, v.check_int, 6, "f", "n", high=5)


def test_check_ints() -> None:
    assert v.check_ints(3, 2, "f", "window") == (3, 3)
    assert v.check_ints((np.int64(2), 3), 2, "f", "window") == (2, 3)
    _raises(ValueError, v.check_ints, (1, 2, 3), 2, "f", "window")
    _raises(ValueError, v.check_ints, (0, 2), 2, "f", "window")
    _raises(TypeError, v.check_ints, (True, 2), 2, "f", "window")
    _raises(TypeError, v.check_ints, "ab", 2, "f", "window")
    assert v.check_ints(0, 2, "f", "padding", low=0) == (0, 0)


def test_check_number_ranges_nan_and_traced() -> None:
    assert v.check_number(0.5, "f", "lr", low=0.0) == 0.5
    assert v.check_number(np.float32(0.5), "f", "lr", low=0.0) == 0.5
    assert v.check_number(jnp.asarray(2), "f", "lr") == 2.0
    assert ">= 0, got -1.0" in _raises(ValueError, v.check_number, -1.0, "f", "lr", low=0.0)
    assert "in [0, 1), got 1.0" in _raises(ValueError, v.check_number, 1.0, "f", "rate", low=0.0,
                                           high=1.0, high_open=True)
    _raises(ValueError, v.check_number, float("nan"), "f", "lr")
    _raises(ValueError, v.check_number, float("inf"), "f", "lr", finite=True)
    assert v.check_number(float("inf"), "f", "lr", low=0.0) == float("inf")
    _raises(TypeError, v.check_number, "0.1", "f", "lr")
    _raises(TypeError, v.check_number, True, "f", "lr")
    _raises(ValueError, v.check_number, jnp.zeros(3), "f", "lr")
    _raises(TypeError, v.check_number, jnp.zeros((), jnp.complex64), "f", "lr")
    seen: list[float | None] = []

    @jit
    def traced(x: jax.Array) -> jax.Array:
        seen.append(v.check_number(x, "f", "lr", low=0.0))
        return x

    traced(jnp.asarray(-1.0))  # traced values cannot be checked, and pass
    assert seen == [None]


def test_check_positive_fraction_bool_choice_callable() -> None:
    assert v.check_positive(2, "f", "scale") == 2.0
    _raises(ValueError, v.check_positive, 0.0, "f", "scale")
    _raises(ValueError, v.check_positive, float("inf"), "f", "scale")
    v.check_fraction(0.0, "f", "rate")
    _raises(ValueError, v.check_fraction, 1.0, "f", "rate")
    v.check_fraction(1.0, "f", "rate", closed_right=True)
    assert v.check_bool(np.bool_(True), "f", "flag") is True
    _raises(TypeError, v.check_bool, 1, "f", "flag")
    assert v.check_choice("sgd", ("sgd", "adam"), "f", "optimizer") == "sgd"
    assert "one of 'sgd', 'adam', got 'sdg'" in _raises(ValueError, v.check_choice, "sdg",
                                                        ("sgd", "adam"), "f", "optimizer")
    _raises(ValueError, v.check_choice, [1], ("sgd",), "f", "optimizer")
    v.check_callable(len, "f", "fn")
    _raises(TypeError, v.check_callable, 3, "f", "fn")


def test_check_hyperparameter() -> None:
    def constant(step: jax.Array) -> float:
        return 0.1

    def identity(s: jax.Array) -> jax.Array:
        return s

    v.check_hyperparameter(constant, "f", "learning_rate", low=0.0)
    v.check_hyperparameter(jnp.asarray(0.1), "f", "learning_rate", low=0.0)
    _raises(ValueError, v.check_hyperparameter, -0.1, "f", "learning_rate", low=0.0)
    _raises(TypeError, v.check_hyperparameter, identity, "f", "eps", schedule_ok=False)
    _raises(TypeError, v.check_hyperparameter, "fast", "f", "learning_rate")
    _raises(TypeError, v.check_hyperparameter, None, "f", "learning_rate")


def test_check_transformation() -> None:
    from functrain import optim

    v.check_transformation(optim.sgd(0.1), "f", "optimizer")
    text = _raises(TypeError, v.check_transformation, optim.sgd, "f", "optimizer")
    assert "got the function sgd" in text


def test_tree_and_shape_checks_use_the_style() -> None:
    v.check_same_structure({"a": 1, "b": 2}, {"a": 3, "b": 4}, "f", "tree", "the params")
    text = _raises(TypeError, v.check_same_structure, {"a": 1, "b": 2}, {"a": 3}, "f", "tree",
                   "the params")
    assert "missing leaves" in text and "['b']" in text
    v.check_rank(jnp.zeros((2, 3)), 2, "f", "x")
    v.check_rank(jnp.zeros((2, 3)), (1, 2), "f", "x")
    assert "rank 4 (batch, height, width, channels)" in _raises(
        ValueError, v.check_rank, jnp.zeros((2, 3)), 4, "f", "x",
        layout="(batch, height, width, channels)")
    _raises(TypeError, v.check_rank, [1, 2], 1, "f", "x")
    v.check_shape(jnp.zeros((2, 3)), (None, 3), "f", "x")
    assert "shape (3,), got" in _raises(ValueError, v.check_shape, jnp.zeros(2), (3,), "f", "b")
    assert "shape (*, 4)" in _raises(ValueError, v.check_shape, jnp.zeros((2, 3)), (None, 4), "f", "x")


def test_leading_length_and_batch_size() -> None:
    assert v.check_leading_length((np.zeros((5, 2)), np.zeros(5)), "f") == 5
    assert "same leading length" in str(pytest.raises(
        ValueError, v.check_leading_length, (np.zeros((5, 2)), np.zeros(4)), "f").value)
    _raises(ValueError, v.check_leading_length, (), "f")
    _raises(ValueError, v.check_leading_length, (np.zeros(()),), "f")
    _raises(TypeError, v.check_leading_length, ([1, 2],), "f")
    pytest.raises(ValueError, v.check_leading_length, np.zeros((0, 2)), "f")
    assert v.check_leading_length(np.zeros((0, 2)), "f", allow_empty=True) == 0
    assert v.check_batch_size(np.int64(4), 5, "f") == 4
    assert "<= the number of examples (5), got 6" in _raises(ValueError, v.check_batch_size, 6, 5, "f")


def test_check_key() -> None:
    v.check_key(jax.random.key(0), "f")
    v.check_key(jax.random.PRNGKey(0), "f")
    v.check_key(np.zeros(2, np.uint32), "f")
    _raises(TypeError, v.check_key, jax.random.split(jax.random.key(0), 2), "f")
    _raises(TypeError, v.check_key, 0, "f", "seed_key")
    _raises(TypeError, v.check_key, jnp.zeros(2), "f")


def test_check_keys() -> None:
    assert v.check_keys(jax.random.split(jax.random.key(0), 3), "f") == 3
    assert v.check_keys(jax.random.split(jax.random.PRNGKey(0), 4), "f") == 4
    _raises(TypeError, v.check_keys, np.zeros((3, 2), np.uint32), "f")
    _raises(TypeError, v.check_keys, jnp.zeros((3, 2)), "f")
    _raises(ValueError, v.check_keys, jax.random.split(jax.random.key(0), (2, 2)), "f")


def test_check_labels_counts_and_locates_bad_labels_before_any_cast() -> None:
    v.check_labels(np.array([0, 1, 9]), 10, "f")
    v.check_labels(jnp.array([0, 5]), None, "f")
    text = _raises(ValueError, v.check_labels, np.array([0, -1, 3, 10]), 10, "f", "y")
    assert "[0, 10), got 2 out of range (the first at index 1: -1)" in text
    big = np.array([1, 2**31], np.int64)  # would wrap to -2**31 as int32
    assert "index 1: 2147483648" in _raises(ValueError, v.check_labels, big, 10, "f")
    _raises(TypeError, v.check_labels, np.array([0.0, 1.0]), 10, "f")
    _raises(TypeError, v.check_labels, [0, 1], 10, "f")
    assert "index (1, 0)" in _raises(ValueError, v.check_labels, np.array([[0], [7]]), 5, "f")
