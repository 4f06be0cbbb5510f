"""The layer contract shared by the linen and nnx conv layers: variables, checks and apply.

A layer is written once, as a frozen spec: `build(...)` validates the constructor arguments and
resolves them (window, strides, padding, dilation); `variables()` lists what the layer holds
(name, shape, initialiser, collection); `apply(values, x)` is the forward pass on those values
(check `x` → promote → op → bias). Both Flax APIs wrap the same spec, so parameter names, shapes,
initialisers and messages cannot drift apart:

* linen (`linen/spec_module.py`): `__call__` builds the spec from the fields and `x` (the input
  channels and, for an int `kernel_size`, the number of spatial dims come from `x`), declares the
  variables with `self.param` / `self.variable`, and calls `apply`.
* nnx (`nnx/spec_module.py`): `__init__` builds the spec from `in_features` and
  `num_spatial_dims`, creates the variables as `nnx.Param` (or the `nnx.Variable` type of their
  collection) in `variables()` order, and `__call__` calls `apply`.

To add a layer (a squeeze-excite, a channels-last LayerNorm, a causal depthwise conv with a
cache, ...): write its spec here (a frozen dataclass with `build`, `variables` and `apply`;
declare non-parameter state with `collection="cache"` or `"batch_stats"`), then a linen module
whose `__call__` is `return spec_module.apply(self, Spec.build(...), x)` and an nnx module whose
`__init__` is `super().__init__(Spec.build(...), rngs=rngs)` over `nnx.spec_module.SpecLayer`.
Test both through `tests/_modules.py`. The causal sequence layers' specs live in
`_causal_layers.py`: their decode cache depends on the batch size, so the wrappers declare it
when decoding starts (`spec.cache(batch, dtype)`), and `apply` takes the state and segment ids.

An int `kernel_size` means the same size along every spatial dim; the number of dims comes from
`x` (ops, linen) or from `num_spatial_dims` (nnx, `cost`). Arguments are validated here once;
the op itself then runs unchecked (`_routing`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar, NamedTuple

import jax
import jax.numpy as jnp
from flax.linen import dtypes, initializers
from jax import lax
from jax.typing import ArrayLike

from sepconv_jax import _args, _routing

Dtype = Any
Initializer = Callable[..., jax.Array]
Act = Callable[[jax.Array], jax.Array]

#: He (Kaiming) normal for a depthwise kernel `(*window, 1, C*m)`. With `in_axis=-2` (size 1)
#: and `out_axis=-1`, `variance_scaling` takes fan_in = 1 * prod(window): each output sums
#: prod(window) inputs of one channel, so the variance is 2 / prod(window), the He value for a
#: layer followed by ReLU. (PyTorch ignores groups in fan_out: torchvision's
#: `kaiming_normal_(mode="fan_out")` gives a depthwise kernel 2 / (C*m*prod(window)).)
default_depthwise_init: Initializer = initializers.variance_scaling(
    2.0, "fan_in", "truncated_normal", in_axis=-2, out_axis=-1
)
#: LeCun normal for a pointwise kernel `(C_in, C_out)`: `nn.Dense`'s default (variance 1/C_in).
#: After a He depthwise kernel, the separable pair has the variance of a He full conv (the
#: ReLU gain of 2 counted once: there is no nonlinearity between the two).
default_pointwise_init: Initializer = initializers.lecun_normal()
default_bias_init: Initializer = initializers.zeros_init()


class Variable(NamedTuple):
    """One variable a layer holds.

    Attributes:
      name: its name in the layer (and in checkpoints).
      shape: its shape.
      init: `init(key, shape, dtype)`.
      dtype: its dtype.
      collection: `"params"` (an `nnx.Param`), or a state collection such as `"batch_stats"`
        or `"cache"`.
    """

    name: str
    shape: tuple[int, ...]
    init: Initializer
    dtype: Dtype
    collection: str = "params"


def identity(x: jax.Array) -> jax.Array:
    """The activation used where `act=None`."""
    return x


def promote_to_compute(*arrays: jax.Array | None, dtype: Dtype | None) -> list[jax.Array | None]:
    """Casts `x` and parameters to `dtype`, or to their common type if `None` (`None`s kept).

    Flax's `promote_dtype`, inferring on JAX's standard lattice (float32 params with a bfloat16
    `x` give float32) whatever the user's promotion config; the casts themselves are explicit.

    Raises:
      TypeError: the compute dtype is not floating.
    """
    with jax.numpy_dtype_promotion("standard"):
        out = dtypes.promote_dtype(*arrays, dtype=dtype)
    _args.check_floating("the compute dtype", out[0].dtype)
    return out


def add_bias(y: jax.Array, bias: jax.Array | None) -> jax.Array:
    """`y + bias` over the last axis, with the rank made explicit (rank promotion may raise)."""
    if bias is None:
        return y
    return y + jnp.reshape(bias, (1,) * (y.ndim - 1) + bias.shape)


def check_input(x: ArrayLike, n: int | None, in_features: int, where: str) -> jax.Array:
    """`x` as an array with `n` spatial dims (any rank if `None`) and `in_features` channels."""
    x = jnp.asarray(x)
    if n is not None and x.ndim != n + 2:
        fix = ""
        if 1 <= x.ndim - 2 <= 3:
            fix = f" (for x with {x.ndim - 2} spatial dims, pass num_spatial_dims={x.ndim - 2})"
        raise ValueError(
            f"{where} was built for {n} spatial dims, so x must have shape "
            f"(N, *spatial, {in_features}) of rank {n + 2}; got shape {x.shape}{fix}"
        )
    if x.ndim < 1 or x.shape[-1] != in_features:
        raise ValueError(
            f"{where}: x has shape {x.shape}, so {x.shape[-1] if x.ndim else 0} channels, "
            f"but in_features={in_features}"
        )
    return x


@dataclasses.dataclass(frozen=True)
class _WindowFields:
    """Fields every windowed layer resolves: window, strides, padding, dilation, route."""

    window: tuple[int, ...]
    strides: tuple[int, ...]
    padding: _args.PaddingLike
    dilation: tuple[int, ...]
    pad: _args.Padding
    implementation: str

    @property
    def kernel_size(self) -> tuple[int, ...]:
        return self.window

    @property
    def num_spatial_dims(self) -> int:
        return len(self.window)


def _spatial(
    kernel_size: int | Sequence[int],
    num_spatial_dims: int | None,
    strides: int | Sequence[int],
    padding: _args.PaddingLike,
    dilation: int | Sequence[int],
    implementation: str,
    where: str,
) -> dict[str, Any]:
    win = _args.window(kernel_size, num_spatial_dims, where)
    n = len(win)
    dilation_t = _args.normalize_tuple(dilation, n, f"{where}: dilation")
    return dict(
        window=win,
        strides=_args.normalize_tuple(strides, n, f"{where}: strides"),
        padding=_args.freeze_padding(padding),
        dilation=dilation_t,
        pad=_args.resolve_padding(padding, win, dilation_t),
        implementation=_args.check_implementation(implementation, where),
    )


@dataclasses.dataclass(frozen=True)
class DepthwiseSpec(_WindowFields):
    """`DepthwiseConv`: `depthwise_kernel` `(*window, 1, C*m)` and, if `use_bias`, `bias`."""

    OPTIONAL: ClassVar[tuple[str, ...]] = ("bias",)

    in_features: int
    channel_multiplier: int
    use_bias: bool
    dtype: Dtype | None
    param_dtype: Dtype
    precision: lax.PrecisionLike
    kernel_init: Initializer
    bias_init: Initializer
    where: str

    @classmethod
    def build(
        cls,
        *,
        in_features: int,
        kernel_size: int | Sequence[int],
        num_spatial_dims: int | None,
        channel_multiplier: int = 1,
        strides: int | Sequence[int] = 1,
        padding: _args.PaddingLike = "SAME",
        dilation: int | Sequence[int] = 1,
        use_bias: bool = False,
        dtype: Dtype | None = None,
        param_dtype: Dtype = jnp.float32,
        precision: lax.PrecisionLike = None,
        kernel_init: Initializer = default_depthwise_init,
        bias_init: Initializer = default_bias_init,
        implementation: str = "auto",
        where: str = "DepthwiseConv",
    ) -> DepthwiseSpec:
        """Validates and resolves the layer's arguments (see `linen.DepthwiseConv`).

        Raises:
          ValueError: a bad argument, naming it.
        """
        return cls(
            in_features=_args.positive_int(in_features, "in_features", where),
            channel_multiplier=_args.positive_int(channel_multiplier, "channel_multiplier", where),
            use_bias=use_bias,
            dtype=dtype,
            param_dtype=param_dtype,
            precision=precision,
            kernel_init=kernel_init,
            bias_init=bias_init,
            where=where,
            **_spatial(
                kernel_size, num_spatial_dims, strides, padding, dilation, implementation, where
            ),
        )

    @property
    def out_features(self) -> int:
        return self.in_features * self.channel_multiplier

    def variables(self) -> tuple[Variable, ...]:
        """`depthwise_kernel` and, if `use_bias`, `bias`, in creation order."""
        c = self.out_features
        kernel = Variable(
            "depthwise_kernel", (*self.window, 1, c), self.kernel_init, self.param_dtype
        )
        if not self.use_bias:
            return (kernel,)
        return kernel, Variable("bias", (c,), self.bias_init, self.param_dtype)

    def apply(self, values: Mapping[str, jax.Array], x: ArrayLike) -> jax.Array:
        """`(N, *spatial, C)` → `(N, *out_spatial, C*m)`."""
        x = check_input(x, self.num_spatial_dims, self.in_features, self.where)
        x, kernel, bias = promote_to_compute(
            x, values["depthwise_kernel"], values.get("bias"), dtype=self.dtype
        )
        y = _routing.depthwise(
            x, kernel, self.strides, self.pad, self.dilation, self.precision, self.implementation
        )
        return add_bias(y, bias)


@dataclasses.dataclass(frozen=True)
class PointwiseSpec:
    """`PointwiseConv`: `pointwise_kernel` `(C_in, C_out)` and, if `use_bias`, `bias`."""

    OPTIONAL: ClassVar[tuple[str, ...]] = ("bias",)

    in_features: int
    out_features: int
    use_bias: bool
    dtype: Dtype | None
    param_dtype: Dtype
    precision: lax.PrecisionLike
    kernel_init: Initializer
    bias_init: Initializer
    where: str

    @classmethod
    def build(
        cls,
        *,
        in_features: int,
        out_features: int,
        use_bias: bool = True,
        dtype: Dtype | None = None,
        param_dtype: Dtype = jnp.float32,
        precision: lax.PrecisionLike = None,
        kernel_init: Initializer = default_pointwise_init,
        bias_init: Initializer = default_bias_init,
        where: str = "PointwiseConv",
    ) -> PointwiseSpec:
        """Validates the layer's arguments (see `linen.PointwiseConv`).

        Raises:
          ValueError: a non-positive `in_features` or `out_features`.
        """
        return cls(
            in_features=_args.positive_int(in_features, "in_features", where),
            out_features=_args.positive_int(out_features, "out_features", where),
            use_bias=use_bias,
            dtype=dtype,
            param_dtype=param_dtype,
            precision=precision,
            kernel_init=kernel_init,
            bias_init=bias_init,
            where=where,
        )

    def variables(self) -> tuple[Variable, ...]:
        """`pointwise_kernel` and, if `use_bias`, `bias`, in creation order."""
        shape = (self.in_features, self.out_features)
        kernel = Variable("pointwise_kernel", shape, self.kernel_init, self.param_dtype)
        if not self.use_bias:
            return (kernel,)
        return kernel, Variable("bias", (self.out_features,), self.bias_init, self.param_dtype)

    def apply(self, values: Mapping[str, jax.Array], x: ArrayLike) -> jax.Array:
        """`(..., C_in)` → `(..., C_out)`."""
        x = check_input(x, None, self.in_features, self.where)
        x, kernel, bias = promote_to_compute(
            x, values["pointwise_kernel"], values.get("bias"), dtype=self.dtype
        )
        return add_bias(_routing.pointwise(x, kernel, self.precision), bias)


@dataclasses.dataclass(frozen=True)
class SeparableSpec(_WindowFields):
    """`SeparableConv`: `depthwise_kernel`, `pointwise_kernel` and, if `use_bias`, `bias`."""

    OPTIONAL: ClassVar[tuple[str, ...]] = ("bias",)

    in_features: int
    out_features: int
    channel_multiplier: int
    use_bias: bool
    dtype: Dtype | None
    param_dtype: Dtype
    precision: lax.PrecisionLike
    depthwise_init: Initializer
    pointwise_init: Initializer
    bias_init: Initializer
    where: str

    @classmethod
    def build(
        cls,
        *,
        in_features: int,
        out_features: int,
        kernel_size: int | Sequence[int],
        num_spatial_dims: int | None,
        channel_multiplier: int = 1,
        strides: int | Sequence[int] = 1,
        padding: _args.PaddingLike = "SAME",
        dilation: int | Sequence[int] = 1,
        use_bias: bool = True,
        dtype: Dtype | None = None,
        param_dtype: Dtype = jnp.float32,
        precision: lax.PrecisionLike = None,
        depthwise_init: Initializer = default_depthwise_init,
        pointwise_init: Initializer = default_pointwise_init,
        bias_init: Initializer = default_bias_init,
        implementation: str = "auto",
        where: str = "SeparableConv",
    ) -> SeparableSpec:
        """Validates and resolves the layer's arguments (see `linen.SeparableConv`).

        Raises:
          ValueError: a bad argument, naming it.
        """
        return cls(
            in_features=_args.positive_int(in_features, "in_features", where),
            out_features=_args.positive_int(out_features, "out_features", where),
            channel_multiplier=_args.positive_int(channel_multiplier, "channel_multiplier", where),
            use_bias=use_bias,
            dtype=dtype,
            param_dtype=param_dtype,
            precision=precision,
            depthwise_init=depthwise_init,
            pointwise_init=pointwise_init,
            bias_init=bias_init,
            where=where,
            **_spatial(
                kernel_size, num_spatial_dims, strides, padding, dilation, implementation, where
            ),
        )

    def variables(self) -> tuple[Variable, ...]:
        """`depthwise_kernel`, `pointwise_kernel` and, if `use_bias`, `bias`, in creation order."""
        hidden = self.in_features * self.channel_multiplier
        dtype = self.param_dtype
        kernels = (
            Variable("depthwise_kernel", (*self.window, 1, hidden), self.depthwise_init, dtype),
            Variable("pointwise_kernel", (hidden, self.out_features), self.pointwise_init, dtype),
        )
        if not self.use_bias:
            return kernels
        return (*kernels, Variable("bias", (self.out_features,), self.bias_init, dtype))

    def apply(self, values: Mapping[str, jax.Array], x: ArrayLike) -> jax.Array:
        """`(N, *spatial, C)` → `(N, *out_spatial, C_out)` (the fused kernel where routed)."""
        x = check_input(x, self.num_spatial_dims, self.in_features, self.where)
        x, dw, pw, bias = promote_to_compute(
            x,
            values["depthwise_kernel"],
            values["pointwise_kernel"],
            values.get("bias"),
            dtype=self.dtype,
        )
        y = _routing.separable(
            x, dw, pw, self.strides, self.pad, self.dilation, self.precision, self.implementation
        )
        return add_bias(y, bias)
