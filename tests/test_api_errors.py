"""One message style for every argument error, checked by walking the public API.

Every public function of every public module is called with valid sample values for its
required arguments (from :data:`SAMPLES`, by argument name) and then with one bad value per
argument kind (see :func:`_bad_values`): a string where a number, an int or a bool goes, a negative
number where only non-negative ones make sense, an unknown name where a choice goes. The call must
raise ``TypeError`` or ``ValueError`` whose message names the argument in the style of
``functrain._validate``: ``who: argument 'name' must be <expectation>, got <value>``.

Functions whose required arguments have no sample are skipped; the walk must still cover at
least :data:`MIN_CASES` (function, argument, bad value) cases, so it cannot silently shrink.
"""

from __future__ import annotations

import atexit
import importlib
import inspect
import pkgutil
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import functrain
from functrain import initializers, layers, optim

STYLE = re.compile(r"^[\w.]+: argument '[\w.\[\]']+' must be .+, got .+$", re.S)
MIN_CASES = 380

# Applications built on the library are not its API (the CLI has its own one-line errors).
_NOT_API = ("functrain.cli", "functrain.__main__", "functrain.experiments")


def _samples() -> dict[str, Any]:
    """Valid values by argument name, enough to call the constructors and configuration functions."""
    key = jax.random.key(0)
    return {
        "key": key, "learning_rate": 0.1, "out_features": 3, "out_channels": 2, "kernel_size": 3,
        "window": 2, "num_features": 3, "in_features": 3, "in_channels": 2, "batch_size": 2,
        "epochs": 1, "patience": 2, "every_k": 2, "decay_steps": 10, "transition_steps": 10,
        "warmup_steps": 2, "init_value": 0.1, "peak_value": 0.1, "end_value": 0.01, "value": 0.5,
        "decay_rate": 0.9, "power": 1.0, "max_norm": 1.0, "clipping": 0.1, "weight_decay": 1e-4,
        "factor": 0.5, "decay": 0.9, "shape": (3, 4), "n": 10, "depth": 2, "width": 4,
        "rate": 0.5, "inner": optim.sgd(0.1), "initializer": initializers.he_normal(),
        "weight_init": initializers.he_normal(), "activation": jnp.tanh, "fn": jnp.tanh,
        "layer": layers.Dense(3), "max_value": 1.0, "min_value": -1.0, "boundaries": [5],
        "schedules": [optim.schedules.constant(0.1), optim.schedules.constant(0.01)],
        "kernel_shape": (3, 4), "alpha": 0.5, "scale": 1.0, "stddev": 1.0,
    }


SAMPLES = _samples()


def _tiny_mnist() -> str:
    """A directory of four tiny MNIST-format files, removed at exit (``load_mnist``'s sample call
    reads them: without a directory it would read the data cache)."""
    directory = tempfile.mkdtemp(prefix="functrain-api-mnist-")
    atexit.register(shutil.rmtree, directory, True)
    for part, n in (("train", 2), ("t10k", 1)):
        for name, array in (("images-idx3", np.zeros((n, 2, 2), np.uint8)), ("labels-idx1", np.arange(n, dtype=np.uint8))):
            sizes = b"".join(int(k).to_bytes(4, "big") for k in array.shape)
            Path(directory, f"{part}-{name}-ubyte").write_bytes(bytes([0, 0, 8, array.ndim]) + sizes + array.tobytes())
    return directory


def _extra() -> dict[str, dict[str, Any]]:
    """Per-function valid arguments: array inputs of the right shapes, and arguments that cannot
    all be left out (e.g. a clip needs some bound)."""
    from functrain import data

    key = jax.random.key(0)
    vec = jnp.linspace(-1.0, 1.0, 12).reshape(4, 3)
    dense = layers.DenseParams(jnp.ones((3, 2)), jnp.zeros(2))
    conv1 = layers.ConvParams(jnp.ones((3, 1, 2)), jnp.zeros(2))
    conv2 = layers.ConvParams(jnp.ones((3, 3, 1, 2)), jnp.zeros(2))
    image = jnp.ones((1, 6, 6, 1))
    bn_p, bn_s = layers.init_batch_norm(key, 3)
    wn = layers.init_weight_norm(key, (3, 2))
    wn_conv = layers.init_weight_norm(key, (3, 3, 1, 2))
    labels = jnp.array([0, 1, 2, 1])
    x_data = jnp.ones((6, 3))
    digits = data.Dataset(x_data, jnp.arange(6) % 2, 2, "tiny")
    sgd = optim.sgd(0.1)
    return {
        "clip_by_value": {"max_delta": 1.0},
        "dense": {"params": dense, "x": vec},
        "conv1d": {"params": conv1, "x": jnp.ones((1, 6, 1))},
        "conv2d": {"params": conv2, "x": image},
        "max_pool": {"x": image}, "avg_pool": {"x": image}, "global_avg_pool": {"x": image},
        "flatten": {"x": image},
        "dropout": {"key": key, "x": vec, "rate": 0.5, "train": True},
        "batch_norm": {"params": bn_p, "state": bn_s, "x": vec, "train": True},
        "layer_norm": {"params": layers.init_layer_norm(key, 3), "x": vec},
        "weight_norm": {"v": wn.v, "g": wn.g},
        "weight_norm_dense": {"params": wn, "x": vec},
        "weight_norm_conv2d": {"params": wn_conv, "x": image},
        "leaky_relu": {"x": vec}, "elu": {"x": vec}, "gelu": {"x": vec},
        "softmax": {"x": vec}, "log_softmax": {"x": vec},
        "softmax_cross_entropy": {"logits": vec, "labels": labels},
        "accuracy": {"logits": vec, "labels": labels},
        "binary_cross_entropy": {"logits": vec, "labels": jnp.ones((4, 3))},
        "mean_squared_error": {"predictions": vec, "targets": vec},
        "fit_min_max": {"x": x_data}, "fit_standardize": {"x": x_data},
        "batches": {"data": (x_data,), "batch_size": 2},
        "split_dataset": {"key": key, "dataset": digits},
        "lookahead": {"inner": sgd, "sync_period": 2},
        "add_noise": {"eta": 0.1, "gamma": 0.55, "key": key},
        "clip_by_block_rms": {"max_rms": 1.0},
        "masked": {"inner": sgd, "mask": {"a": True}},
        "freeze": {"mask": {"a": True}},
        "load_mnist": {"directory": _tiny_mnist()},
    }


EXTRA = _extra()

_NON_NEGATIVE = {
    "learning_rate", "eps", "batch_size", "epochs", "patience", "out_features", "out_channels",
    "in_features", "in_channels", "num_features", "every_k", "decay_steps", "transition_steps",
    "warmup_steps", "weight_decay", "initial_accumulator_value", "initial_scale", "max_norm",
    "clipping", "eps_root", "rate", "momentum", "cooldown", "depth", "width", "chunk_size",
    "eval_batch_size", "kernel_size", "window", "stride", "dilation", "n", "steps", "min_delta",
    "scale", "stddev",
}
_CHOICES = {"mode", "reduction", "distribution", "padding", "monitor"}


def _kind(annotation: str) -> str | None:
    a = annotation.replace(" ", "")
    if a == "bool":
        return "bool"
    if a.startswith("int") and "float" not in a:
        return "int"
    if a.startswith(("float", "ScalarOrSchedule", "Value")):
        return "number"
    return None


def _bad_values(name: str, annotation: str) -> list[tuple[object, str]]:
    """(bad value, what it is) pairs for one argument."""
    kind = _kind(annotation)
    out: list[tuple[object, str]] = []
    if kind in ("int", "number", "bool"):
        out.append(("nonsense", "a string"))
    if kind in ("int", "number") and name in _NON_NEGATIVE:
        out.append((-5, "a negative number"))
    if name in _CHOICES:
        out.append(("no-such-choice", "an unknown choice"))
    if "DTypeLike" in annotation:  # dtype= of layers and init_* functions, mixed_precision's dtypes
        out += [("no-such-dtype", "a string"), (jnp.int32, "an integer dtype")]
    return out


def _public_functions() -> list[tuple[str, Callable[..., Any]]]:
    names = ["functrain"] + [m.name for m in pkgutil.walk_packages(functrain.__path__, "functrain.")]
    found: dict[int, tuple[str, Callable[..., Any]]] = {}
    for modname in sorted(names):
        if any(p.startswith("_") for p in modname.split(".")[1:]) or modname.startswith(_NOT_API):
            continue
        module = importlib.import_module(modname)
        for name in getattr(module, "__all__", []):
            obj = getattr(module, name)
            if inspect.isfunction(obj) and obj.__module__.startswith("functrain"):
                found.setdefault(id(obj), (f"{obj.__module__}.{obj.__name__}", obj))
    return sorted(found.values(), key=lambda t: t[0])


def _cases() -> Iterator[tuple[str, Callable[..., Any], dict[str, Any], str, object, str]]:
    for qualname, fn in _public_functions():
        sig = inspect.signature(fn)
        if any(p.kind is p.VAR_POSITIONAL for p in sig.parameters.values()):
            continue  # e.g. train_test_split(key, *arrays): the walk gives keyword samples only
        params = [p for p in sig.parameters.values()
                  if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
        required = [p for p in params if p.default is p.empty]
        extra = EXTRA.get(fn.__name__, {})
        if any(p.name not in SAMPLES and p.name not in extra for p in required):
            continue  # no sample for a required argument: not walked
        valid = {p.name: SAMPLES[p.name] for p in required if p.name not in extra} | extra
        for p in params:
            for bad, what in _bad_values(p.name, str(p.annotation)):
                yield qualname, fn, valid, p.name, bad, what


CASES = list(_cases())


@pytest.mark.parametrize(("qualname", "fn", "valid", "name", "bad", "what"), CASES,
                         ids=[f"{c[0]}-{c[3]}-{c[5].replace(' ', '_')}" for c in CASES])
def test_bad_argument_gets_one_styled_message(qualname: str, fn: Callable[..., Any],
                                              valid: dict[str, Any], name: str, bad: object,
                                              what: str) -> None:
    fn(**valid)  # the sample call itself is valid
    positional_only = [p.name for p in inspect.signature(fn).parameters.values()
                       if p.kind is p.POSITIONAL_ONLY]
    kwargs = {**valid, name: bad}
    args = [kwargs.pop(n) for n in positional_only if n in kwargs]
    with pytest.raises((TypeError, ValueError)) as info:
        fn(*args, **kwargs)
    text = str(info.value)
    assert f"argument '{name}'" in text and STYLE.match(text), (
        f"{qualname}({name}={bad!r}) [{what}] raised {type(info.value).__name__}: {text}")


def test_the_walk_covers_the_api() -> None:
    walked = {c[0] for c in CASES}
    assert len(CASES) >= MIN_CASES, (len(CASES), sorted(walked))
