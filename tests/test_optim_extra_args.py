"""optax's extra-arguments convention (``GradientTransformationExtraArgs``), both ways.

Every functrain ``update`` accepts and ignores extra keyword arguments; ``chain`` and every
wrapper pass them on to the members that declare them (all of them to a ``**kwargs`` member, the
named ones to a member that names them, none to a plain one); optax's
``contrib.reduce_on_plateau`` (which needs ``value=``) runs inside ``functrain.optim.chain`` and
its wrappers exactly as inside ``optax.chain``; functrain transformations inside ``optax.chain``
receive the extra arguments optax passes them. The forwarding is decided when the transformation
is built: the traced update is the same program with or without extra arguments.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, NamedTuple

import chex
import jax
import jax.numpy as jnp
import optax
import pytest
from _typed import jit, make_jaxpr

import functrain.optim as fo
from functrain import _tree, train
from functrain.optim._extra_args import forward_extra_args
from functrain.optim import schedules
from functrain.typing import Array, PyTree

PARAMS = {"w": jnp.asarray([[1.0, -2.0], [0.5, 3.0]]), "b": jnp.asarray([0.1, -0.3])}
GRADS = {"w": jnp.asarray([[0.3, -1.0], [2.0, 0.1]]), "b": jnp.asarray([-0.5, 0.2])}
KEYS = {"w": "a", "b": "a"}

# Every public transformation of functrain.optim (the test below checks the list is complete),
# plus functrain.train.scale_by_plateau.
TRANSFORMS: dict[str, Callable[[], fo.GradientTransformation[Any]]] = {
    "accumulate_gradients": lambda: fo.accumulate_gradients(fo.adam(0.1), 2),
    "adabelief": lambda: fo.adabelief(0.1),
    "adagrad": lambda: fo.adagrad(0.1),
    "adam": lambda: fo.adam(0.1, eps_root=1e-8),
    "adamax": lambda: fo.adamax(0.1),
    "adamw": lambda: fo.adamw(0.1, eps_root=1e-8),
    "adaptive_grad_clip": lambda: fo.adaptive_grad_clip(0.1),
    "add_decayed_weights": lambda: fo.add_decayed_weights(0.1),
    "add_noise": lambda: fo.add_noise(0.1, 0.55, jax.random.key(0)),
    "amsgrad": lambda: fo.amsgrad(0.1, eps_root=1e-8),
    "centralize": lambda: fo.centralize(),
    "chain": lambda: fo.chain(fo.clip_by_global_norm(1.0), fo.sgd(0.1)),
    "clip_by_block_norm": lambda: fo.clip_by_block_norm(1.0),
    "clip_by_block_rms": lambda: fo.clip_by_block_rms(1.0),
    "clip_by_global_norm": lambda: fo.clip_by_global_norm(1.0),
    "clip_by_value": lambda: fo.clip_by_value(max_delta=0.5),
    "ema": lambda: fo.ema(0.9),
    "freeze": lambda: fo.freeze({"w": False, "b": True}, fo.adam(0.1)),
    "identity": lambda: fo.identity(),
    "lamb": lambda: fo.lamb(0.1),
    "lars": lambda: fo.lars(0.1),
    "lion": lambda: fo.lion(0.1),
    "lookahead": lambda: fo.lookahead(fo.adam(0.1), 2),
    "masked": lambda: fo.masked(fo.adam(0.1), {"w": True, "b": False}),
    "momentum": lambda: fo.momentum(0.1),
    "nadam": lambda: fo.nadam(0.1, eps_root=1e-8),
    "normalize_by_global_norm": lambda: fo.normalize_by_global_norm(),
    "normalized_sgd": lambda: fo.normalized_sgd(0.1),
    "partition": lambda: fo.partition({"a": fo.adam(0.1), "b": fo.sgd(0.1)},
                                      {"w": "a", "b": "b"}),
    "radam": lambda: fo.radam(0.1, eps_root=1e-8),
    "rmsprop": lambda: fo.rmsprop(0.1, centered=True),
    "scale": lambda: fo.scale(-0.1),
    "scale_by_adagrad": lambda: fo.scale_by_adagrad(),
    "scale_by_adam": lambda: fo.scale_by_adam(),
    "scale_by_adamax": lambda: fo.scale_by_adamax(),
    "scale_by_amsgrad": lambda: fo.scale_by_amsgrad(),
    "scale_by_belief": lambda: fo.scale_by_belief(),
    "scale_by_learning_rate": lambda: fo.scale_by_learning_rate(schedules.cosine_decay(0.1, 9)),
    "scale_by_lion": lambda: fo.scale_by_lion(),
    "scale_by_nadam": lambda: fo.scale_by_nadam(),
    "scale_by_radam": lambda: fo.scale_by_radam(),
    "scale_by_rms": lambda: fo.scale_by_rms(),
    "scale_by_trust_ratio": lambda: fo.scale_by_trust_ratio(),
    "sgd": lambda: fo.sgd(0.1, momentum=0.9),
    "skip_nonfinite": lambda: fo.skip_nonfinite(fo.adam(0.1), max_consecutive=2),
    "trace": lambda: fo.trace(0.9, nesterov=True),
    "train.scale_by_plateau": lambda: train.scale_by_plateau(),
}


def test_the_list_covers_every_public_transformation() -> None:
    public = {name for name in fo.__all__ if inspect.isfunction(getattr(fo, name))
              and "GradientTransformation" in str(inspect.signature(getattr(fo, name)).return_annotation)}
    assert len(public) >= 46 and public <= set(TRANSFORMS), sorted(public - set(TRANSFORMS))


@pytest.mark.parametrize("name", sorted(TRANSFORMS))
def test_update_accepts_and_ignores_extra_keyword_arguments(name: str) -> None:
    tx = TRANSFORMS[name]()
    assert any(p.kind is p.VAR_KEYWORD for p in inspect.signature(tx.update).parameters.values())
    state = tx.init(PARAMS)
    plain = tx.update(GRADS, state, PARAMS)
    extra = tx.update(GRADS, state, PARAMS, value=jnp.asarray(2.0), unknown_flag="ignored")
    chex.assert_trees_all_equal(extra, plain)


# ---------------------------------------------------------------------------------------------
# Which members receive what


class Seen(NamedTuple):
    value: Array


class NamesValue:
    """A member that names the one extra argument it needs (keyword-only, no ``**kwargs``): given
    an unknown keyword it raises, and without ``value`` too."""

    def init(self, params: PyTree) -> Seen:
        return Seen(jnp.zeros(()))

    def update(self, updates: PyTree, state: Seen, params: PyTree | None = None, *,
               value: Array) -> tuple[PyTree, Seen]:
        return updates, Seen(jnp.asarray(value, jnp.float32))


class Plain:
    """optax's plain ``GradientTransformation`` signature: no extra arguments at all."""

    def init(self, params: PyTree) -> tuple[()]:
        return ()

    def update(self, updates: PyTree, state: tuple[()], params: PyTree | None = None
               ) -> tuple[PyTree, tuple[()]]:
        return updates, state


def _seen(state: PyTree) -> list[float]:
    nodes = jax.tree_util.tree_leaves(state, is_leaf=lambda x: isinstance(x, Seen))
    return [float(n.value) for n in nodes if isinstance(n, Seen)]


def _recording() -> Any:
    return fo.chain(Plain(), fo.scale(0.5), NamesValue())


# (Typed loosely: mypy refuses a chain with an optax member, GradientTransformation[Any], where
# GradientTransformation[S] is expected; as on main.)
WRAPPERS: dict[str, Callable[[Any], Any]] = {
    "chain": lambda inner: fo.chain(fo.clip_by_global_norm(10.0), inner),
    "skip_nonfinite": lambda inner: fo.skip_nonfinite(inner, max_consecutive=3),
    "accumulate_gradients": lambda inner: fo.accumulate_gradients(inner, 1),
    "masked": lambda inner: fo.masked(inner, {"w": True, "b": True}),
    "freeze": lambda inner: fo.freeze({"w": False, "b": True}, inner),
    "partition": lambda inner: fo.partition({"a": inner}, KEYS),
    "lookahead": lambda inner: fo.lookahead(inner, 2),
    "nested": lambda inner: fo.skip_nonfinite(fo.accumulate_gradients(
        fo.lookahead(fo.partition({"a": fo.masked(inner, {"w": True, "b": True})}, KEYS), 2), 1)),
}


class TestForwarding(chex.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    def test_wrappers_pass_a_member_exactly_the_arguments_it_declares(self) -> None:
        for name, wrap in WRAPPERS.items():
            tx = wrap(_recording())

            def update(updates: PyTree, state: Any, params: PyTree, value: Array) -> Any:
                # `unknown` must not reach NamesValue or Plain (they would raise).
                return tx.update(updates, state, params, value=value, unknown=jnp.ones(3))

            _, state = self.variant(update)(GRADS, tx.init(PARAMS), PARAMS, jnp.asarray(3.0))
            assert _seen(state) == [3.0], name
            with pytest.raises(TypeError, match="value"):  # NamesValue requires it
                tx.update(GRADS, tx.init(PARAMS), PARAMS)

    def test_vmap_over_the_extra_argument(self) -> None:
        tx = fo.skip_nonfinite(_recording())
        state = tx.init(PARAMS)
        def update(v: jax.Array) -> tuple[PyTree, Any]:
            return tx.update(GRADS, state, PARAMS, value=v)

        _, states = jax.vmap(update)(jnp.arange(3.0))
        nodes = [n for n in jax.tree_util.tree_leaves(states, is_leaf=lambda x: isinstance(x, Seen))
                 if isinstance(n, Seen)]
        assert nodes[0].value.tolist() == [0.0, 1.0, 2.0]


def test_forward_extra_args_reads_the_signature_once() -> None:
    def takes_all(updates: PyTree, state: Any, params: PyTree | None = None,
                  **extra_args: Any) -> tuple[PyTree, Any]:
        return updates, extra_args

    def names_two(updates: PyTree, state: Any, params: PyTree | None = None, lr: float = 0.0, *,
                  value: float = 0.0) -> tuple[PyTree, Any]:
        return updates, (lr, value)

    assert forward_extra_args(takes_all) is takes_all  # no wrapper: zero overhead
    assert forward_extra_args(names_two)(1, None, None, value=2.0, lr=3.0, other=4)[1] == (3.0, 2.0)
    assert forward_extra_args(Plain().update)(1, (), None, value=2.0) == (1, ())


def test_extra_arguments_add_nothing_to_the_traced_update() -> None:
    tx = fo.chain(fo.clip_by_global_norm(1.0), fo.skip_nonfinite(fo.adam(0.1)), Plain(),
                  fo.masked(fo.sgd(0.1), {"w": True, "b": False}))
    state = tx.init(PARAMS)
    def plain_update(g: PyTree) -> tuple[PyTree, Any]:
        return tx.update(g, state, PARAMS)

    def extra_update(g: PyTree) -> tuple[PyTree, Any]:
        return tx.update(g, state, PARAMS, value=1.0, flag=True)

    plain = make_jaxpr(plain_update)(GRADS)
    extra = make_jaxpr(extra_update)(GRADS)
    assert str(extra) == str(plain)


# ---------------------------------------------------------------------------------------------
# optax's reduce_on_plateau (needs value=) in functrain's chain, and functrain in optax's chain

VALUES = [1.0, 1.0, 1.0, 0.5, 0.5, 0.5, 0.5, 0.2]  # the plateau scale drops twice


def _plateau() -> Any:
    return optax.contrib.reduce_on_plateau(factor=0.5, patience=2)


def _reference() -> Any:
    return optax.chain(optax.clip_by_global_norm(1.0), optax.adam(0.1), _plateau())


def _run(tx: Any, jitted: bool = True) -> tuple[list[PyTree], Any]:
    update = jit(tx.update) if jitted else tx.update
    params, state = PARAMS, tx.init(PARAMS)
    out: list[PyTree] = []
    for t, value in enumerate(VALUES):
        grads = _tree.tree_map(lambda g: g * (1 + 0.1 * t), GRADS)
        u, state = update(grads, state, params, value=jnp.asarray(value), unknown=jnp.ones(2))
        params = optax.apply_updates(params, u)
        out.append(u)
    return out, state


def _is_plateau(x: Any) -> bool:
    return hasattr(x, "avg_value")  # optax.contrib.reduce_on_plateau's state


def _plateau_scales(state: Any) -> list[float]:
    return [float(n.scale) for n in jax.tree_util.tree_leaves(state, is_leaf=_is_plateau)
            if _is_plateau(n)]


def _assert_same_run(ours: tuple[list[PyTree], Any], ref: tuple[list[PyTree], Any],
                     rtol: float = 1e-6) -> None:
    for a, b in zip(ours[0], ref[0], strict=True):
        chex.assert_trees_all_close(a, b, rtol=rtol, atol=1e-8)
    # the values reached the plateau rule: two reductions
    assert _plateau_scales(ours[1]) == _plateau_scales(ref[1]) == [0.25]


@pytest.mark.parametrize("jit", [True, False])
def test_optax_reduce_on_plateau_inside_functrain_chain(jit: bool) -> None:
    ours = fo.chain(fo.clip_by_global_norm(1.0), fo.adam(0.1), _plateau())
    # Op by op (no jit), float32 Adam rounds differently from optax's by ~1e-5 (on main too,
    # without extra arguments: the bias correction 1 - 0.999^t); jitted, the runs agree to 1e-6.
    _assert_same_run(_run(ours, jit), _run(_reference(), jit), rtol=1e-6 if jit else 5e-5)


@pytest.mark.parametrize("wrapper", ["skip_nonfinite", "partition", "masked", "lookahead_1"])
def test_optax_reduce_on_plateau_inside_functrain_wrappers(wrapper: str) -> None:
    inner: Any = fo.chain(fo.clip_by_global_norm(1.0), fo.adam(0.1), _plateau())
    tx: Any
    if wrapper == "skip_nonfinite":
        tx = fo.skip_nonfinite(inner)
    elif wrapper == "partition":
        tx = fo.partition({"a": inner}, KEYS)
    elif wrapper == "masked":
        tx = fo.masked(inner, {"w": True, "b": True})
    else:
        tx = fo.lookahead(inner, 1, alpha=1.0)  # alpha 1: the slow weights are the fast ones
    _assert_same_run(_run(tx), _run(_reference()))


def test_functrain_transformations_inside_optax_chain() -> None:
    # optax passes extra arguments only to its GradientTransformationExtraArgs instances: a
    # functrain member as is gets none (and needs none) ...
    as_is = optax.chain(fo.clip_by_global_norm(1.0), fo.adam(0.1), _plateau())
    _assert_same_run(_run(as_is), _run(_reference()))
    # ... and wrapped as one it receives them all (value=, unknown=) and forwards value= to the
    # optax member it chains.
    clip, adam = fo.clip_by_global_norm(1.0), fo.chain(fo.adam(0.1), _plateau())
    wrapped = optax.chain(optax.GradientTransformationExtraArgs(clip.init, clip.update),
                          optax.GradientTransformationExtraArgs(adam.init, adam.update))
    _assert_same_run(_run(wrapped), _run(_reference()))


def test_functrain_member_receives_what_optax_passes() -> None:
    inner = fo.chain(Plain(), NamesValue())
    tx = optax.chain(optax.scale(1.0), optax.GradientTransformationExtraArgs(inner.init,
                                                                             inner.update))
    _, state = jit(tx.update)(GRADS, tx.init(PARAMS), PARAMS, value=jnp.asarray(7.0), other=1)
    assert _seen(state) == [7.0]
    chex.assert_trees_all_equal(tx.update(GRADS, tx.init(PARAMS), PARAMS, value=1.0)[0], GRADS)
