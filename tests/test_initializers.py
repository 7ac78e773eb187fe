"""Initializers: moments against their formulas, fans, orthogonality, determinism, dtypes, errors,
reinitialize on equinox models, and the lesson's signal-propagation claim."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _typed import eqx_filter, eqx_filter_eval_shape

from functrain import _tree, initializers as I
from functrain.typing import Initializer

KEY = jax.random.key(0)

# Dense (in, out) and HWIO conv kernels with 1, 2 and 3 spatial dimensions.
SHAPES: list[tuple[int, ...]] = [(384, 256), (5, 48, 512), (3, 3, 64, 128), (3, 3, 3, 16, 160)]


def _moments(init: Initializer, shape: tuple[int, ...]) -> tuple[float, float, int]:
    x = np.asarray(init(KEY, shape, jnp.float32), dtype=np.float64)
    return float(x.mean()), float(x.var()), x.size


def _check_moments(init: Initializer, shape: tuple[int, ...], variance: float,
                   rel_tol: float = 0.03) -> None:
    mean, var, n = _moments(init, shape)
    sd = math.sqrt(variance)
    assert abs(mean) < 5 * sd / math.sqrt(n), (mean, variance)
    assert var == pytest.approx(variance, rel=rel_tol)


def _fans(shape: tuple[int, ...]) -> tuple[int, int]:
    receptive = math.prod(shape[:-2])
    return receptive * shape[-2], receptive * shape[-1]


@pytest.mark.parametrize("shape", SHAPES)
def test_compute_fans_dense_and_conv(shape: tuple[int, ...]) -> None:
    assert I.compute_fans(shape) == _fans(shape)


def test_compute_fans_by_hand() -> None:
    assert I.compute_fans((784, 512)) == (784, 512)
    assert I.compute_fans((3, 3, 32, 64)) == (288, 576)
    assert I.compute_fans((5, 16, 8)) == (80, 40)
    assert I.compute_fans((2, 3, 4, 5, 6)) == (120, 144)
    assert I.compute_fans((7,)) == (7, 7)


NAMED: list[tuple[str, Callable[[], Initializer], Callable[[int, int], float]]] = [
    ("gaussian", I.gaussian, lambda fi, fo: 1.0 / fi),
    ("standard_normal", I.standard_normal, lambda fi, fo: 1.0),
    ("lecun_normal", I.lecun_normal, lambda fi, fo: 1.0 / fi),
    ("lecun_uniform", I.lecun_uniform, lambda fi, fo: 1.0 / fi),
    ("glorot_normal", I.glorot_normal, lambda fi, fo: 2.0 / (fi + fo)),
    ("glorot_uniform", I.glorot_uniform, lambda fi, fo: 2.0 / (fi + fo)),
    ("xavier_normal", I.xavier_normal, lambda fi, fo: 2.0 / (fi + fo)),
    ("xavier_uniform", I.xavier_uniform, lambda fi, fo: 2.0 / (fi + fo)),
    ("he_normal", I.he_normal, lambda fi, fo: 2.0 / fi),
    ("he_uniform", I.he_uniform, lambda fi, fo: 2.0 / fi),
    ("kaiming_normal", I.kaiming_normal, lambda fi, fo: 2.0 / fi),
    ("kaiming_uniform", I.kaiming_uniform, lambda fi, fo: 2.0 / fi),
]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize(("name", "factory", "variance"), NAMED, ids=[n for n, _, _ in NAMED])
def test_named_initializer_moments(name: str, factory: Callable[[], Initializer],
                                   variance: Callable[[int, int], float],
                                   shape: tuple[int, ...]) -> None:
    fan_in, fan_out = _fans(shape)
    _check_moments(factory(), shape, variance(fan_in, fan_out))


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("mode", ["fan_in", "fan_out", "fan_avg"])
@pytest.mark.parametrize("distribution", ["normal", "truncated_normal", "uniform"])
def test_variance_scaling_moments(shape: tuple[int, ...], mode: I.Mode,
                                  distribution: I.Distribution) -> None:
    fan_in, fan_out = _fans(shape)
    n = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2}[mode]
    _check_moments(I.variance_scaling(0.7, mode, distribution), shape, 0.7 / n)


def test_uniform_is_symmetric_with_textbook_bounds() -> None:
    x = np.asarray(I.uniform(0.3)(KEY, (400, 500)))
    assert x.min() >= -0.3 and x.max() <= 0.3
    assert x.min() < -0.29 and x.max() > 0.29  # symmetric U(-s, s), unlike jax's U[0, s)
    _check_moments(I.uniform(0.3), (400, 500), 0.3**2 / 3)


def test_distribution_shapes_are_what_the_names_say() -> None:
    # he_uniform is bounded by sqrt(6 / n_in); glorot_normal is untruncated (tails beyond 2 sd).
    x = np.asarray(I.he_uniform()(KEY, (400, 300)))
    assert np.abs(x).max() <= math.sqrt(6 / 400)
    g = np.asarray(I.glorot_normal()(KEY, (400, 300)))
    assert np.abs(g).max() > 3 * math.sqrt(2 / 700)


@pytest.mark.parametrize("stddev", [1e-2, 0.5, 3.0])
def test_truncated_normal_variance_after_truncation(stddev: float) -> None:
    x = np.asarray(I.truncated_normal(stddev)(KEY, (400, 500)), dtype=np.float64)
    assert x.std() == pytest.approx(stddev, rel=0.02)
    bound = 2 * stddev / 0.8796256610342398
    assert np.abs(x).max() <= bound * (1 + 1e-6)
    assert np.abs(x).max() > 0.95 * bound


def test_truncation_constant_is_the_closed_form() -> None:
    # Var of N(0,1) truncated to [-2, 2] is 1 - 2*2*phi(2)/(Phi(2)-Phi(-2)); check numerically.
    z = np.linspace(-2, 2, 400001)
    pdf = np.exp(-z**2 / 2)
    var = float(np.trapezoid(z**2 * pdf, z) / np.trapezoid(pdf, z))
    assert I._TRUNC_STD == pytest.approx(  # pyright: ignore[reportPrivateUsage]  # the private constant under test
        math.sqrt(var), rel=1e-6)


@pytest.mark.parametrize(
    ("shape", "tall"),
    [((64, 32), True), ((32, 64), False), ((48, 48), True), ((3, 3, 16, 32), True),
     ((1, 1, 8, 32), False), ((3, 8, 5), True)],
)
@pytest.mark.parametrize("gain", [1.0, 1.7])
def test_orthogonal(shape: tuple[int, ...], tall: bool, gain: float) -> None:
    w = np.asarray(I.orthogonal(gain)(KEY, shape), dtype=np.float64).reshape(-1, shape[-1])
    gram = w.T @ w if tall else w @ w.T
    np.testing.assert_allclose(gram, gain**2 * np.eye(gram.shape[0]), atol=2e-5 * gain**2)


@pytest.mark.parametrize("factory", [f for _, f, _ in NAMED] + [lambda: I.orthogonal(),
                                                                lambda: I.truncated_normal(0.1),
                                                                lambda: I.uniform(0.1)])
def test_same_key_same_values_different_keys_differ(factory: Callable[[], Initializer]) -> None:
    init = factory()
    a, b = init(KEY, (16, 8)), init(KEY, (16, 8))
    c = init(jax.random.key(1), (16, 8))
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert not np.allclose(np.asarray(a), np.asarray(c))


def test_raw_uint32_keys_work_too() -> None:
    a = I.he_normal()(jax.random.PRNGKey(3), (4, 5))
    assert a.shape == (4, 5)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16, jnp.float16])
@pytest.mark.parametrize("factory", [I.he_normal, I.glorot_uniform, I.orthogonal, I.zeros,
                                     lambda: I.truncated_normal(0.1), I.standard_normal])
def test_dtypes_are_honoured(dtype: Any, factory: Callable[[], Initializer]) -> None:
    x = factory()(KEY, (32, 16), dtype)
    assert x.dtype == jnp.dtype(dtype)
    assert bool(jnp.all(jnp.isfinite(x.astype(jnp.float32))))


def test_bfloat16_moments() -> None:
    x = np.asarray(I.he_normal()(KEY, (384, 256), jnp.bfloat16).astype(jnp.float32), np.float64)
    assert x.var() == pytest.approx(2 / 384, rel=0.03)


def test_float64_with_x64_enabled() -> None:
    with jax.enable_x64(True):
        x = I.glorot_normal()(KEY, (384, 256), jnp.float64)
        o = I.orthogonal()(KEY, (64, 32), jnp.float64)
        assert x.dtype == jnp.float64 and o.dtype == jnp.float64
        assert float(jnp.var(x)) == pytest.approx(2 / 640, rel=0.03)
        np.testing.assert_allclose(np.asarray(o.T @ o), np.eye(32), atol=1e-12)


def test_integer_dtype_rejected() -> None:
    with pytest.raises(ValueError, match="dtype.*floating.*int32"):
        I.he_normal()(KEY, (3, 3), jnp.int32)


def test_constants() -> None:
    np.testing.assert_array_equal(np.asarray(I.zeros()(KEY, (2, 3))), np.zeros((2, 3)))
    np.testing.assert_array_equal(np.asarray(I.ones()(KEY, (4,))), np.ones(4))
    np.testing.assert_array_equal(np.asarray(I.constant(0.25)(KEY, (2, 2))), np.full((2, 2), 0.25))


@pytest.mark.parametrize(
    ("call", "pattern"),
    [
        (lambda: I.uniform(0.0), r"uniform: argument 'scale' must be a finite number > 0, got 0.0"),
        (lambda: I.uniform(-1.0), r"'scale'.*got -1.0"),
        (lambda: I.truncated_normal(-0.1), r"truncated_normal: argument 'stddev'.*> 0, got -0.1"),
        (lambda: I.variance_scaling(0.0), r"variance_scaling: argument 'scale'"),
        (lambda: I.orthogonal(0.0), r"orthogonal: argument 'gain'"),
        (lambda: I.variance_scaling(1.0, "fan_sum"),  # type: ignore[arg-type]  # the error under test
         r"^variance_scaling: argument 'mode' must be one of 'fan_in', 'fan_out', 'fan_avg', got 'fan_sum'$"),
        (lambda: I.variance_scaling(1.0, "fan_in", "cauchy"),  # type: ignore[arg-type]  # ditto
         r"^variance_scaling: argument 'distribution' must be one of .*got 'cauchy'$"),
        (lambda: I.compute_fans(()), r"^compute_fans: argument 'shape' must be a shape of rank >= 1 .*got tuple \(\)$"),
        (lambda: I.he_normal()(KEY, ()), r"^variance_scaling: argument 'shape' must be a shape of rank >= 1"),
        (lambda: I.orthogonal()(KEY, (5,)), r"^orthogonal: argument 'shape' must be a shape of rank >= 2, got tuple "
                                           r"\(5,\)$"),
        (lambda: I.gaussian()(KEY, (3, -1)), r"^variance_scaling: argument 'shape' must be a shape \(a sequence of ints "
                                            r">= 0\), got tuple \(3, -1\)$"),
        (lambda: I.constant(float("nan")), r"^constant: argument 'value' must be a real number, got nan$"),
    ],
)
def test_bad_input_raises_value_error(call: Callable[[], object], pattern: str) -> None:
    with pytest.raises(ValueError, match=pattern):
        call()


@pytest.mark.parametrize(
    ("call", "pattern"),
    [
        (lambda: I.uniform("0.1"), r"^uniform: argument 'scale' must be a number, got '0.1'$"),  # type: ignore[arg-type]  # the error under test
        (lambda: I.constant("1"), r"^constant: argument 'value' must be a number, got '1'$"),  # type: ignore[arg-type]  # ditto
        (lambda: I.he_normal()(KEY, 3), r"^variance_scaling: argument 'shape' must be a shape \(a sequence of ints "  # type: ignore[arg-type]  # ditto
                                        r">= 0\), got 3$"),
        (lambda: I.zeros()(KEY, (2, 2.5)), r"^constant: argument 'shape' must be a shape"),  # type: ignore[arg-type]  # ditto
        (lambda: I.reinitialize({}, KEY, weight_init="he_normal"),  # type: ignore[arg-type]  # the error under test
         r"^reinitialize: argument 'weight_init' must be an initializer .*got 'he_normal'$"),
    ],
)
def test_bad_type_raises_type_error(call: Callable[[], object], pattern: str) -> None:
    with pytest.raises(TypeError, match=pattern):
        call()


def test_draws_equal_jax_random_of_the_same_shape() -> None:
    """Values are drawn flat and reshaped (cheaper to compile): the same values as a shaped draw."""
    shape = (4, 5)
    np.testing.assert_array_equal(I.standard_normal()(KEY, shape), jax.random.normal(KEY, shape))
    np.testing.assert_array_equal(I.uniform(0.5)(KEY, shape), jax.random.uniform(KEY, shape, minval=-0.5, maxval=0.5))


# ----------------------------------------------------------------------------- reinitialize

def _eqx_blank(make: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """An equinox module of the real structure and shapes with zero (NumPy) arrays, built without
    drawing equinox's own random initialization (which compiles a program per weight shape)."""
    shapes = eqx_filter_eval_shape(make, *args, key=jax.random.key(0), **kwargs)
    return _tree.tree_map(
        lambda s: np.zeros(s.shape, s.dtype) if isinstance(s, jax.ShapeDtypeStruct) else s, shapes)


class _Params(NamedTuple):
    w: jax.Array
    b: jax.Array
    steps: jax.Array


def test_reinitialize_dicts_and_namedtuples() -> None:
    tree = {"dense": _Params(jnp.ones((6, 4)), jnp.ones(4), jnp.array(3)),
            "conv": {"w": jnp.ones((3, 3, 2, 5)), "b": jnp.ones(5)}, "scale": jnp.ones(())}
    out = I.reinitialize(tree, KEY, weight_init=I.he_normal(), bias_init=I.constant(0.5))
    assert str(jax.tree_util.tree_structure(out)) == str(jax.tree_util.tree_structure(tree))
    assert not np.any(np.asarray(out["dense"].w) == 1.0)
    np.testing.assert_array_equal(np.asarray(out["dense"].b), np.full(4, 0.5))
    np.testing.assert_array_equal(np.asarray(out["conv"]["b"]), np.full(5, 0.5))
    assert int(out["dense"].steps) == 3  # integer leaf untouched
    assert float(out["scale"]) == 1.0  # scalar untouched


def test_reinitialize_distinct_keys_per_leaf() -> None:
    tree = [jnp.zeros((8, 8)), jnp.zeros((8, 8))]
    a, b = I.reinitialize(tree, KEY, weight_init=I.standard_normal())
    assert not np.allclose(np.asarray(a), np.asarray(b))


def test_reinitialize_equinox_mlp() -> None:
    mlp = _eqx_blank(eqx.nn.MLP, 5, 3, width_size=7, depth=2, activation=jax.nn.tanh)
    assert isinstance(mlp, eqx.nn.MLP)
    out = I.reinitialize(mlp, jax.random.key(2), weight_init=I.glorot_normal())
    again = I.reinitialize(mlp, jax.random.key(2), weight_init=I.glorot_normal())
    other = I.reinitialize(mlp, jax.random.key(3), weight_init=I.glorot_normal())
    assert isinstance(out, eqx.nn.MLP)
    for old, new in zip(mlp.layers, out.layers):
        assert new.weight.shape == old.weight.shape
        assert not np.any(np.asarray(new.weight) == np.asarray(old.weight))  # every weight changed
        assert new.bias is not None
        np.testing.assert_array_equal(np.asarray(new.bias), 0.0)  # default bias init: zeros
    # Non-array fields are kept.
    assert out.activation is mlp.activation  # pyright: ignore[reportUnknownMemberType]  # equinox: a bare Callable
    assert (out.in_size, out.out_size, out.width_size, out.depth) == (5, 3, 7, 2)
    assert out.final_activation is mlp.final_activation  # pyright: ignore[reportUnknownMemberType]  # as above
    # Deterministic in its key.
    for a, b, c in zip(jax.tree_util.tree_leaves(eqx_filter(out, eqx.is_array)),
                       jax.tree_util.tree_leaves(eqx_filter(again, eqx.is_array)),
                       jax.tree_util.tree_leaves(eqx_filter(other, eqx.is_array))):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
        if a.ndim >= 2:
            assert not np.allclose(np.asarray(a), np.asarray(c))
    x = jnp.ones(5)
    assert out(x).shape == (3,)


def test_reinitialize_custom_rule() -> None:
    tree = {"w": jnp.ones((4, 4)), "gamma": jnp.ones(4)}
    out = I.reinitialize(tree, KEY, weight_init=I.zeros(), bias_init=I.constant(2.0),
                         is_bias=lambda leaf: False)
    np.testing.assert_array_equal(np.asarray(out["w"]), 0.0)
    np.testing.assert_array_equal(np.asarray(out["gamma"]), 1.0)


def test_interop_with_jax_initializers() -> None:
    # A jax initializer used where functrain expects one, and ours where jax calls (key, shape, dtype).
    jax_init: Initializer = jax.nn.initializers.lecun_normal()
    out = I.reinitialize({"w": jnp.ones((8, 8))}, KEY, weight_init=jax_init)
    assert out["w"].shape == (8, 8)
    dense = _eqx_blank(eqx.nn.Linear, 4, 3)
    w = I.he_normal()(KEY, dense.weight.shape, dense.weight.dtype)
    assert w.shape == (3, 4)


# ------------------------------------------------------------- the lesson's central claim

def _activation_std_at_depth(init: Initializer, act: Callable[[np.ndarray], np.ndarray],
                             depth: int = 20, width: int = 256, batch: int = 512) -> list[float]:
    """Pre-activation std per layer of a bias-free MLP, computed in float64 NumPy."""
    x = np.asarray(jax.random.normal(jax.random.key(1), (batch, width)), np.float64)
    stds: list[float] = []
    for layer in range(depth):
        w = np.asarray(init(jax.random.fold_in(KEY, layer), (width, width)), np.float64)
        z = x @ w
        stds.append(float(z.std()))
        x = act(z)
    return stds


def _relu(z: np.ndarray) -> np.ndarray:
    out: np.ndarray = np.maximum(z, 0.0)
    return out


def test_standard_normal_explodes_with_depth() -> None:
    def identity(z: np.ndarray) -> np.ndarray:
        return z

    for act in (_relu, identity):
        s = _activation_std_at_depth(I.standard_normal(), act)
        assert not (1e-2 <= s[-1] <= 1e2)
        assert s[-1] > 1e15  # grows by ~sqrt(n/2) or sqrt(n) per layer


def test_he_normal_with_relu_keeps_scale() -> None:
    s = _activation_std_at_depth(I.he_normal(), _relu)
    assert all(0.5 <= v <= 2.0 for v in s), s


def test_glorot_normal_keeps_linear_scale() -> None:
    s = _activation_std_at_depth(I.glorot_normal(), lambda z: z)
    assert all(0.5 <= v <= 2.0 for v in s), s


def test_glorot_normal_with_tanh_follows_mean_field_theory() -> None:
    """Glorot + tanh neither explodes nor vanishes, but it does decay slowly.

    With weight variance 1/n the pre-activation variance q follows q' = E[tanh(sqrt(q) z)^2],
    z ~ N(0, 1), whose only fixed point is 0 and which is approached like 1/(2 l): at layer 20 the
    std is ~0.16, not within [0.5, 2] (see the closing note of the foundation issue). We check the
    measured stds against the recursion, computed independently by quadrature.
    """
    s = _activation_std_at_depth(I.glorot_normal(), np.tanh)
    z = np.linspace(-10, 10, 20001)
    pdf = np.exp(-z**2 / 2) / math.sqrt(2 * math.pi)
    dz = z[1] - z[0]
    q = 1.0
    predicted: list[float] = []
    for _ in range(20):
        predicted.append(math.sqrt(q))
        q = float(np.sum(np.tanh(math.sqrt(q) * z) ** 2 * pdf) * dz)
    np.testing.assert_allclose(s, predicted, rtol=0.1)
    assert 1e-2 <= s[-1] <= 1e2  # stays within the lesson's usable range
    standard = _activation_std_at_depth(I.standard_normal(), np.tanh)
    assert standard[-1] > 10  # N(0, 1) weights drive tanh units deep into saturation


def test_reinitialize_equinox_uses_the_right_fans() -> None:
    """Equinox stores (out, in) / (out, in, *spatial): fans must still be n_in of the layer."""
    mlp = _eqx_blank(eqx.nn.MLP, 64, 16, width_size=256, depth=1)  # weights (256, 64) and (16, 256)
    out = I.reinitialize(mlp, jax.random.key(1), weight_init=I.he_normal())
    for layer in out.layers:
        n_in = layer.weight.shape[1]
        assert float(jnp.std(layer.weight)) == pytest.approx(math.sqrt(2 / n_in), rel=0.1)
    conv = _eqx_blank(eqx.nn.Conv2d, 8, 64, (3, 3))
    new = I.reinitialize({"conv": conv}, jax.random.key(2), weight_init=I.he_normal(),
                         bias_init=I.constant(0.1))["conv"]
    assert new.weight.shape == conv.weight.shape == (64, 8, 3, 3)
    assert float(jnp.std(new.weight)) == pytest.approx(math.sqrt(2 / (9 * 8)), rel=0.05)
    assert new.bias is not None and conv.bias is not None and new.bias.shape == conv.bias.shape
    np.testing.assert_allclose(np.asarray(new.bias), 0.1)
    # Glorot uses both fans: compare the whole kernel's variance with 2 / (fan_in + fan_out).
    lin = _eqx_blank(eqx.nn.Linear, 256, 64)
    g = I.reinitialize(lin, jax.random.key(3), weight_init=I.glorot_normal())
    assert float(jnp.var(g.weight)) == pytest.approx(2 / 320, rel=0.05)


def test_case_5_reinitialize_resets_normalization_scales_to_ones() -> None:
    """Issue 12 case 5: the default bias rule zeroed BatchNorm/LayerNorm scales (a re-initialized
    BN model gave the same logits for every input). Normalization records and equinox norm layers
    are recognized by type: scales 1, offsets 0, running statistics at their initial values."""
    from functrain import layers as L

    model = L.serial(L.Dense(8), L.BatchNorm(), L.Relu, L.Dense(8), L.LayerNorm(), L.Dense(3))
    params, state, _ = model.init(KEY, (-1, 5))
    trained = _tree.tree_map(lambda p: p * 3.0 + 0.5, params)  # scales != 1, offsets != 0
    stats = _tree.tree_map(lambda s: s + 2.0, state)
    new = I.reinitialize(trained, jax.random.key(7), weight_init=I.he_normal())
    new_state = I.reinitialize(stats, jax.random.key(7), weight_init=I.he_normal())
    for i in (1, 4):
        np.testing.assert_array_equal(np.asarray(new[i].scale), 1.0)
        np.testing.assert_array_equal(np.asarray(new[i].bias), 0.0)
    np.testing.assert_array_equal(np.asarray(new[0].b), 0.0)  # plain biases are still re-set
    assert not np.allclose(np.asarray(new[0].w), np.asarray(trained[0].w))
    np.testing.assert_array_equal(np.asarray(new_state[1].mean), 0.0)
    np.testing.assert_array_equal(np.asarray(new_state[1].var), 1.0)
    x = jax.random.normal(jax.random.key(1), (6, 5))
    for train in (True, False):
        logits, _ = model.apply(new, new_state, x, train=train)
        assert float(jnp.max(jnp.std(logits, axis=0))) > 1e-3, train  # outputs differ across inputs
    # Weight normalization: g = ||v|| so the kernel equals the new direction; b re-set.
    wn = L.init_weight_norm(KEY, (4, 3))._replace(g=jnp.zeros(3), b=jnp.ones(3))
    new_wn = I.reinitialize({"wn": wn}, jax.random.key(2), weight_init=I.glorot_normal())["wn"]
    np.testing.assert_allclose(L.weight_norm(new_wn.v, new_wn.g), new_wn.v, rtol=1e-6)
    np.testing.assert_array_equal(np.asarray(new_wn.b), 0.0)


def test_case_5_reinitialize_resets_equinox_norm_layers() -> None:
    """Issue 12 case 5, equinox side: eqx.nn.LayerNorm, BatchNorm and GroupNorm weights were
    zeroed (LayerNorm's 2-d weight was even re-drawn as a kernel); now weight 1, bias 0."""
    k1, k2, k3 = jax.random.split(KEY, 3)
    layer_norm = eqx.nn.LayerNorm((4, 6))
    group_norm = eqx.nn.GroupNorm(2, 6)
    batch_norm, bn_state = eqx.nn.make_with_state(eqx.nn.BatchNorm)(6, axis_name="batch",
                                                                     mode="batch")
    tree = {"lin": eqx.nn.Linear(6, 6, key=k1), "ln": layer_norm, "gn": group_norm,
            "bn": batch_norm, "rms": eqx.nn.RMSNorm(6)}
    shifted = _tree.tree_map(lambda x: x * 3.0 - 0.5 if eqx.is_inexact_array(x) else x, tree)
    new = I.reinitialize(shifted, k2, weight_init=I.he_normal())
    for name in ("ln", "gn", "bn", "rms"):
        assert new[name].weight is not None and new[name].bias is not None
        np.testing.assert_array_equal(np.asarray(new[name].weight), 1.0)
        np.testing.assert_array_equal(np.asarray(new[name].bias), 0.0)
    assert new["ln"].weight.shape == (4, 6)
    assert not np.allclose(np.asarray(new["lin"].weight), np.asarray(shifted["lin"].weight))
    x = jax.random.normal(k3, (5, 4, 6))
    out = jax.vmap(new["ln"])(x)
    assert float(jnp.min(jnp.std(out.reshape(5, -1), axis=0))) > 1e-3  # differs across inputs
    out_gn = jax.vmap(new["gn"])(x[:, 0])
    out_bn, _ = jax.vmap(new["bn"], axis_name="batch", in_axes=(0, None),
                         out_axes=(0, None))(x[:, 0], bn_state)
    for y in (out_gn, out_bn):
        assert float(jnp.min(jnp.std(y, axis=0))) > 1e-3
