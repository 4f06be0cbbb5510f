"""The causal sequence layers on the layer contract: their specs and checks (private).

`CausalDepthwiseConv1D`, `CausalSeparableConv1D` (and `ConformerConv`, built from them) exist in
both Flax APIs. Each is one `_layer_specs`-style spec here: `build` validates the arguments,
`variables()` lists the parameters, `cache(batch, dtype)` the decode state (its shape depends on
the batch, so it is declared when decoding starts, not with the parameters), and
`apply(values, x, state=..., segment_ids=...)` is the forward pass, returning `(y, new_state)`.
The linen and nnx wrappers only declare the variables and call `apply`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.typing import ArrayLike

from sepconv_jax import _args, _routing
from sepconv_jax import _layer_specs as specs
from sepconv_jax.causal import ACTIVATIONS, causal_depthwise_conv1d

#: `ConformerConv`'s norms after the depthwise conv. BatchNorm mixes frames of the whole batch in
#: training mode (future frames included), so a causal (streaming) module takes LayerNorm only.
CONFORMER_NORMS = ("layer", "batch")


def _zeros(key: Any, shape: tuple[int, ...], dtype: Any) -> jax.Array:
    del key
    return jnp.zeros(shape, dtype)


def kernel_width(kernel_size: int | Sequence[int], where: str) -> int:
    """The window length `W` from an int or a one-entry sequence.

    Raises:
      ValueError: a non-positive width or a sequence of other than one entry.
    """
    if not isinstance(kernel_size, (int, np.integer)):
        try:
            entries = tuple(kernel_size)
        except TypeError as err:
            raise ValueError(
                f"{where}: kernel_size must be a positive int (the window length), "
                f"got {kernel_size!r}"
            ) from err
        if len(entries) != 1:
            raise ValueError(
                f"{where}: kernel_size must be an int or one entry (a 1-D window), "
                f"got {kernel_size!r}"
            )
        kernel_size = entries[0]
    return _args.positive_int(kernel_size, "kernel_size", where)


def _check_implementation(implementation: str, where: str) -> str:
    _args.check_implementation(implementation, where)
    if implementation == "pallas":
        raise ValueError(
            f"{where}: implementation='pallas' is not supported for causal 1-D convs (the "
            "Pallas kernels are 2-D); use 'auto', 'xla' or 'taps'"
        )
    return implementation


def check_call(
    x: ArrayLike, in_features: int | None, decode: bool, segment_ids: Any, where: str
) -> jax.Array:
    """`x` as an `(N, T, C)` array (`C == in_features` if given); no `segment_ids` in decode.

    Raises:
      ValueError: `x` of another rank or channel count, or `segment_ids` with `decode`.
    """
    x = jnp.asarray(x)
    if x.ndim != 3:
        raise ValueError(f"{where}: x must have shape (N, T, C) (rank 3), got shape {x.shape}")
    if in_features is not None:
        x = specs.check_input(x, 1, in_features, where)
    if decode and segment_ids is not None:
        raise ValueError(
            f"{where}: segment_ids cannot be used with decode=True (packed sequences are "
            "computed from zeros, without a cache); decode each sequence on its own"
        )
    return x


@dataclasses.dataclass(frozen=True)
class _CausalFields:
    """What both causal convs resolve: input channels, window, dilation, compute, route."""

    in_features: int
    kernel_size: int
    channel_multiplier: int
    dilation: int
    use_bias: bool
    dtype: specs.Dtype | None
    param_dtype: specs.Dtype
    precision: lax.PrecisionLike
    implementation: str
    where: str

    @property
    def context(self) -> int:
        """`(W-1)·dilation`: the inputs a step reads before the current one."""
        return (self.kernel_size - 1) * self.dilation

    def cache(self, batch_size: int, dtype: specs.Dtype | None = None) -> specs.Variable:
        """The decode state `state` `(batch_size, (W-1)·dilation, in_features)`, zeros.

        Args:
          batch_size: `N` of the calls that follow.
          dtype: their compute dtype. Defaults to `None`: `dtype` if set, else `param_dtype`.
        """
        batch_size = _args.positive_int(batch_size, "batch_size", self.where)
        if dtype is None:
            dtype = self.param_dtype if self.dtype is None else self.dtype
        shape = (batch_size, self.context, self.in_features)
        return specs.Variable("state", shape, _zeros, dtype, "cache")

    def variables(self) -> tuple[specs.Variable, ...]:
        """The parameters, in creation order (each spec lists its own)."""
        raise NotImplementedError

    def compute_dtype(self, x: jax.Array, values: Mapping[str, jax.Array]) -> Any:
        """The dtype `apply` computes in: `dtype`, else that of `x` promoted with the params."""
        arrays = [values[v.name] for v in self.variables()]
        return specs.promote_to_compute(x, *arrays, dtype=self.dtype)[0].dtype


def _resolve(
    in_features: int,
    kernel_size: int | Sequence[int],
    channel_multiplier: int,
    dilation: int,
    implementation: str,
    where: str,
) -> dict[str, Any]:
    return dict(
        in_features=_args.positive_int(in_features, "in_features", where),
        kernel_size=kernel_width(kernel_size, where),
        channel_multiplier=_args.positive_int(channel_multiplier, "channel_multiplier", where),
        dilation=_args.positive_int(dilation, "dilation", where),
        implementation=_check_implementation(implementation, where),
        where=where,
    )


@dataclasses.dataclass(frozen=True)
class CausalDepthwiseSpec(_CausalFields):
    """`CausalDepthwiseConv1D`: `depthwise_kernel` `(W, 1, C*m)` and, if `use_bias`, `bias`."""

    OPTIONAL: ClassVar[tuple[str, ...]] = ("bias",)

    activation: str | None
    kernel_init: specs.Initializer
    bias_init: specs.Initializer

    @classmethod
    def build(
        cls,
        *,
        in_features: int,
        kernel_size: int | Sequence[int],
        channel_multiplier: int = 1,
        dilation: int = 1,
        use_bias: bool = True,
        activation: str | None = None,
        dtype: specs.Dtype | None = None,
        param_dtype: specs.Dtype = jnp.float32,
        precision: lax.PrecisionLike = None,
        kernel_init: specs.Initializer = specs.default_depthwise_init,
        bias_init: specs.Initializer = specs.default_bias_init,
        implementation: str = "auto",
        where: str = "CausalDepthwiseConv1D",
    ) -> CausalDepthwiseSpec:
        """Validates and resolves the layer's arguments (see `linen.CausalDepthwiseConv1D`).

        Raises:
          ValueError: a bad argument, naming it.
        """
        if activation is not None and activation not in ACTIVATIONS:
            raise ValueError(
                f"{where}: activation must be None or one of {sorted(ACTIVATIONS)}, "
                f"got {activation!r}"
            )
        return cls(
            use_bias=use_bias,
            activation=activation,
            dtype=dtype,
            param_dtype=param_dtype,
            precision=precision,
            kernel_init=kernel_init,
            bias_init=bias_init,
            **_resolve(
                in_features, kernel_size, channel_multiplier, dilation, implementation, where
            ),
        )

    @property
    def out_features(self) -> int:
        return self.in_features * self.channel_multiplier

    def variables(self) -> tuple[specs.Variable, ...]:
        """`depthwise_kernel` and, if `use_bias`, `bias`, in creation order."""
        c = self.out_features
        kernel = specs.Variable(
            "depthwise_kernel", (self.kernel_size, 1, c), self.kernel_init, self.param_dtype
        )
        if not self.use_bias:
            return (kernel,)
        return kernel, specs.Variable("bias", (c,), self.bias_init, self.param_dtype)

    def apply(
        self,
        values: Mapping[str, jax.Array],
        x: jax.Array,
        *,
        state: jax.Array | None = None,
        segment_ids: jax.Array | None = None,
    ) -> tuple[jax.Array, jax.Array | None]:
        """`(N, T, C)` → `(N, T, C*m)`, and the next state (`None` without `state`)."""
        x, kernel, bias = specs.promote_to_compute(
            x, values["depthwise_kernel"], values.get("bias"), dtype=self.dtype
        )
        out = causal_depthwise_conv1d(
            x,
            kernel,
            bias,
            dilation=self.dilation,
            state=state,
            segment_ids=segment_ids,
            activation=self.activation,
            return_state=state is not None,
            precision=self.precision,
            implementation=self.implementation,
        )
        return out if state is not None else (out, None)


@dataclasses.dataclass(frozen=True)
class CausalSeparableSpec(_CausalFields):
    """`CausalSeparableConv1D`: `depthwise_kernel`, `pointwise_kernel` and, if `use_bias`,
    `bias` `(out_features,)` after the pointwise conv."""

    OPTIONAL: ClassVar[tuple[str, ...]] = ("bias",)

    out_features: int
    depthwise_init: specs.Initializer
    pointwise_init: specs.Initializer
    bias_init: specs.Initializer

    @classmethod
    def build(
        cls,
        *,
        in_features: int,
        out_features: int,
        kernel_size: int | Sequence[int],
        channel_multiplier: int = 1,
        dilation: int = 1,
        use_bias: bool = True,
        dtype: specs.Dtype | None = None,
        param_dtype: specs.Dtype = jnp.float32,
        precision: lax.PrecisionLike = None,
        depthwise_init: specs.Initializer = specs.default_depthwise_init,
        pointwise_init: specs.Initializer = specs.default_pointwise_init,
        bias_init: specs.Initializer = specs.default_bias_init,
        implementation: str = "auto",
        where: str = "CausalSeparableConv1D",
    ) -> CausalSeparableSpec:
        """Validates and resolves the layer's arguments (see `linen.CausalSeparableConv1D`).

        Raises:
          ValueError: a bad argument, naming it.
        """
        return cls(
            out_features=_args.positive_int(out_features, "out_features", where),
            use_bias=use_bias,
            dtype=dtype,
            param_dtype=param_dtype,
            precision=precision,
            depthwise_init=depthwise_init,
            pointwise_init=pointwise_init,
            bias_init=bias_init,
            **_resolve(
                in_features, kernel_size, channel_multiplier, dilation, implementation, where
            ),
        )

    def variables(self) -> tuple[specs.Variable, ...]:
        """`depthwise_kernel`, `pointwise_kernel` and, if `use_bias`, `bias`, in creation order."""
        hidden = self.in_features * self.channel_multiplier
        dtype = self.param_dtype
        kernels = (
            specs.Variable(
                "depthwise_kernel", (self.kernel_size, 1, hidden), self.depthwise_init, dtype
            ),
            specs.Variable(
                "pointwise_kernel", (hidden, self.out_features), self.pointwise_init, dtype
            ),
        )
        if not self.use_bias:
            return kernels
        return (*kernels, specs.Variable("bias", (self.out_features,), self.bias_init, dtype))

    def apply(
        self,
        values: Mapping[str, jax.Array],
        x: jax.Array,
        *,
        state: jax.Array | None = None,
        segment_ids: jax.Array | None = None,
    ) -> tuple[jax.Array, jax.Array | None]:
        """`(N, T, C)` → `(N, T, out_features)`, and the next state (`None` without `state`)."""
        x, dw, pw, bias = specs.promote_to_compute(
            x,
            values["depthwise_kernel"],
            values["pointwise_kernel"],
            values.get("bias"),
            dtype=self.dtype,
        )
        out = causal_depthwise_conv1d(
            x,
            dw,
            dilation=self.dilation,
            state=state,
            segment_ids=segment_ids,
            return_state=state is not None,
            precision=self.precision,
            implementation=self.implementation,
        )
        h, new_state = out if state is not None else (out, None)
        return specs.add_bias(_routing.pointwise(h, pw, self.precision), bias), new_state


def check_conformer(causal: bool, norm: str, where: str) -> None:
    """Raises `ValueError` for an unknown norm or BatchNorm in a causal `ConformerConv`."""
    if norm not in CONFORMER_NORMS:
        raise ValueError(f"{where}: norm must be one of {CONFORMER_NORMS}, got {norm!r}")
    if causal and norm == "batch":
        raise ValueError(
            f"{where}: norm='batch' cannot be causal (BatchNorm in training mode mixes every "
            "frame of the batch, future ones included); use norm='layer' or causal=False"
        )


def check_conformer_call(causal: bool, decode: bool, segment_ids: Any, where: str) -> None:
    """Raises `ValueError` for decoding or packing a non-causal `ConformerConv`."""
    if not causal and (decode or segment_ids is not None):
        raise ValueError(
            f"{where}: decode and segment_ids need causal=True (a centred window reads future "
            f"frames); got decode={decode}, "
            f"segment_ids={'None' if segment_ids is None else 'an array'}"
        )


def glu(h: jax.Array) -> jax.Array:
    """Gated linear unit over channels: `a * sigmoid(b)` for `h = concat(a, b)`."""
    a, b = jnp.split(h, 2, axis=-1)
    return a * jax.nn.sigmoid(b)
