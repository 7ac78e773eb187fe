# Minimal stubs for the parts of optax used in functrain's tests (optax ships no py.typed).
# optax is a dev-only dependency: the reference for functrain.optim's parity tests. Incomplete on
# purpose: the module-level __getattr__ makes every other real optax name type as Any, never an error.
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple, Protocol

import jax
from _typeshed import Incomplete
from jax.typing import ArrayLike

Params = Any
Updates = Any
OptState = Any
Schedule = Callable[[ArrayLike], Any]
ScalarOrSchedule = float | jax.Array | Schedule
MaskOrFn = Any

class _TransformationLike(Protocol):
    # optax duck-types its arguments: any (init, update) pair works, functrain's included.
    @property
    def init(self) -> Callable[..., Any]: ...
    @property
    def update(self) -> Callable[..., Any]: ...

class GradientTransformation(NamedTuple):
    init: Callable[[Params], OptState]
    update: Callable[..., tuple[Updates, OptState]]

class GradientTransformationExtraArgs(GradientTransformation): ...

class EmptyState(NamedTuple): ...

def apply_updates(params: Params, updates: Updates) -> Params: ...
def chain(*args: _TransformationLike) -> GradientTransformationExtraArgs: ...
def identity() -> GradientTransformation: ...
def scale(step_size: ArrayLike) -> GradientTransformation: ...
def scale_by_learning_rate(
    learning_rate: ScalarOrSchedule | None = ..., *, flip_sign: bool = ...
) -> GradientTransformation: ...
def trace(
    decay: ArrayLike, nesterov: bool = ..., accumulator_dtype: Any | None = ...
) -> GradientTransformation: ...
def scale_by_rss(
    initial_accumulator_value: ArrayLike = ..., eps: ArrayLike = ...
) -> GradientTransformation: ...
def scale_by_rms(
    decay: ArrayLike = ...,
    eps: ArrayLike = ...,
    initial_scale: ArrayLike = ...,
    eps_in_sqrt: bool = ...,
    bias_correction: bool = ...,
) -> GradientTransformation: ...
def scale_by_stddev(
    decay: ArrayLike = ...,
    eps: ArrayLike = ...,
    initial_scale: ArrayLike = ...,
    eps_in_sqrt: bool = ...,
    bias_correction: bool = ...,
) -> GradientTransformation: ...
def scale_by_adam(
    b1: ArrayLike = ...,
    b2: ArrayLike = ...,
    eps: ArrayLike = ...,
    eps_root: ArrayLike = ...,
    mu_dtype: Any | None = ...,
    *,
    nesterov: bool = ...,
) -> GradientTransformation: ...
def scale_by_amsgrad(
    b1: ArrayLike = ...,
    b2: ArrayLike = ...,
    eps: ArrayLike = ...,
    eps_root: ArrayLike = ...,
    mu_dtype: Any | None = ...,
) -> GradientTransformation: ...
def normalize_by_update_norm(
    scale_factor: ArrayLike = ..., eps: ArrayLike = ...
) -> GradientTransformation: ...
def add_decayed_weights(
    weight_decay: ScalarOrSchedule = ..., mask: MaskOrFn | None = ...
) -> GradientTransformation: ...
def clip(max_delta: ArrayLike) -> GradientTransformation: ...
def clip_by_global_norm(max_norm: ArrayLike) -> GradientTransformation: ...
def adaptive_grad_clip(
    clipping: ArrayLike, eps: ArrayLike = ..., axis: int | tuple[int, ...] | None = ...
) -> GradientTransformation: ...
def apply_if_finite(
    inner: _TransformationLike, max_consecutive_errors: int
) -> GradientTransformationExtraArgs: ...

class MultiSteps:
    def __init__(
        self,
        opt: _TransformationLike,
        every_k_schedule: int | Callable[[ArrayLike], ArrayLike],
        use_grad_mean: bool = ...,
        should_skip_update_fn: Callable[..., Any] | None = ...,
        accumulator_dtype: Any = ...,
    ) -> None: ...
    def init(self, params: Params) -> Any: ...
    def update(
        self, updates: Updates, state: Any, params: Params | None = ..., **extra_args: Any
    ) -> tuple[Updates, Any]: ...
    def gradient_transformation(self) -> GradientTransformation: ...

def sgd(
    learning_rate: ScalarOrSchedule,
    momentum: float | None = ...,
    nesterov: bool = ...,
    accumulator_dtype: Any | None = ...,
) -> GradientTransformationExtraArgs: ...
def momentum(
    learning_rate: ScalarOrSchedule, momentum: float = ..., nesterov: bool = ...
) -> GradientTransformationExtraArgs: ...
def adagrad(
    learning_rate: ScalarOrSchedule,
    initial_accumulator_value: float = ...,
    eps: float = ...,
) -> GradientTransformationExtraArgs: ...
def rmsprop(
    learning_rate: ScalarOrSchedule,
    decay: float = ...,
    eps: float = ...,
    initial_scale: float = ...,
    eps_in_sqrt: bool = ...,
    centered: bool = ...,
    momentum: float | None = ...,
    nesterov: bool = ...,
    bias_correction: bool = ...,
) -> GradientTransformationExtraArgs: ...
def adam(
    learning_rate: ScalarOrSchedule,
    b1: ArrayLike = ...,
    b2: ArrayLike = ...,
    eps: ArrayLike = ...,
    eps_root: ArrayLike = ...,
    mu_dtype: Any | None = ...,
    *,
    nesterov: bool = ...,
) -> GradientTransformationExtraArgs: ...
def adamw(
    learning_rate: ScalarOrSchedule,
    b1: ArrayLike = ...,
    b2: ArrayLike = ...,
    eps: ArrayLike = ...,
    eps_root: ArrayLike = ...,
    mu_dtype: Any | None = ...,
    weight_decay: ScalarOrSchedule = ...,
    mask: MaskOrFn | None = ...,
    *,
    nesterov: bool = ...,
) -> GradientTransformationExtraArgs: ...
def amsgrad(
    learning_rate: ScalarOrSchedule,
    b1: ArrayLike = ...,
    b2: ArrayLike = ...,
    eps: ArrayLike = ...,
    eps_root: ArrayLike = ...,
    mu_dtype: Any | None = ...,
) -> GradientTransformationExtraArgs: ...

# schedules (also importable from optax.schedules)
def constant_schedule(value: ArrayLike) -> Schedule: ...
def exponential_decay(
    init_value: ArrayLike,
    transition_steps: int,
    decay_rate: float,
    transition_begin: int = ...,
    staircase: bool = ...,
    end_value: ArrayLike | None = ...,
) -> Schedule: ...
def piecewise_constant_schedule(
    init_value: ArrayLike, boundaries_and_scales: Mapping[int, float] | None = ...
) -> Schedule: ...
def polynomial_schedule(
    init_value: ArrayLike,
    end_value: ArrayLike,
    power: ArrayLike,
    transition_steps: int,
    transition_begin: int = ...,
) -> Schedule: ...
def linear_schedule(
    init_value: ArrayLike, end_value: ArrayLike, transition_steps: int, transition_begin: int = ...
) -> Schedule: ...
def cosine_decay_schedule(
    init_value: ArrayLike, decay_steps: int, alpha: ArrayLike = ..., exponent: ArrayLike = ...
) -> Schedule: ...
def warmup_cosine_decay_schedule(
    init_value: ArrayLike,
    peak_value: ArrayLike,
    warmup_steps: int,
    decay_steps: int,
    end_value: ArrayLike = ...,
    exponent: ArrayLike = ...,
) -> Schedule: ...
def cosine_onecycle_schedule(
    transition_steps: int,
    peak_value: ArrayLike,
    pct_start: float = ...,
    div_factor: float = ...,
    final_div_factor: float = ...,
) -> Schedule: ...
def join_schedules(schedules: Sequence[Schedule], boundaries: Sequence[int]) -> Schedule: ...
def global_norm(updates: Any) -> jax.Array: ...

def __getattr__(name: str) -> Incomplete: ...
