"""Flax linen causal sequence layers with a decode cache: causal depthwise / separable, Conformer."""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax
from jax.typing import ArrayLike

from sepconv_jax import _causal_layers as cl
from sepconv_jax import _layer_specs as specs
from sepconv_jax import _norm
from sepconv_jax.linen import spec_module
from sepconv_jax.linen.convs import DepthwiseConv, PointwiseConv


def _apply(
    module: nn.Module,
    spec_type: type,
    x: ArrayLike,
    segment_ids: ArrayLike | None,
    decode: bool,
) -> jax.Array:
    """Builds the causal spec from the module's fields and `x`, declares its parameters (and,
    when decoding, the `"cache"` variable `"state"`), and applies it.

    Flax attention's convention: `init(..., decode=True)` creates the start-of-sequence state
    and leaves it there; later calls with `decode=True` read it and advance it.
    """
    where = spec_module.describe(module)
    x = cl.check_call(x, None, decode, segment_ids, where)
    spec = spec_type.build(in_features=x.shape[-1], where=where, **spec_module.fields(module))
    values = spec_module.declare(module, spec)
    cache = None
    if decode and module.has_variable("cache", "state"):
        cache = module.variable("cache", "state")
    elif decode:  # init: the start-of-sequence state, not advanced by this call
        v = spec.cache(x.shape[0], spec.compute_dtype(x, values))
        module.variable(v.collection, v.name, v.init, None, v.shape, v.dtype)
    state = None if cache is None else cache.value
    y, new_state = spec.apply(values, x, state=state, segment_ids=segment_ids)
    if cache is not None:
        cache.value = new_state
    return y


class CausalDepthwiseConv1D(nn.Module):
    """Causal 1-D depthwise conv over `(N, T, C)` sequences with a streaming decode cache.

    Holds `depthwise_kernel` `(W, 1, C*m)` and (if `use_bias`) `bias` `(C*m,)`, as
    `DepthwiseConv`, and calls `sepconv_jax.causal_depthwise_conv1d`: output step `t` reads
    steps `t - (W-1)·dilation … t` only. With `decode=True` the last `(W-1)·dilation` inputs live
    in the `"cache"` collection as one variable `"state"` `(N, (W-1)·dilation, C)`, in the compute
    dtype: `init(..., decode=True)` creates it (zeros, the start of a sequence) and
    `apply(..., decode=True, mutable=["cache"])` advances it by a chunk of any length `T ≥ 1`,
    giving the outputs of the full forward.

    Attributes:
      kernel_size: the window length `W` (an int or a one-entry sequence).
      channel_multiplier: filters per input channel, `m`. Defaults to 1.
      dilation: positive int. Defaults to 1.
      use_bias: whether to add a bias. Defaults to True (sequence models rarely norm here).
      activation: `None` or `"silu"`, applied after the bias in the same op (Mamba). Defaults to
        `None`.
      dtype: compute dtype. Defaults to `None` (the promoted type of `x` and params).
      param_dtype: parameter dtype. Defaults to float32.
      precision: passed to the convolution.
      kernel_init: defaults to He normal with fan_in = W.
      bias_init: defaults to zeros.
      implementation: `"auto"`, `"xla"` or `"taps"`, as `causal_depthwise_conv1d`.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> layer = CausalDepthwiseConv1D(4)
      >>> x = jax.random.normal(jax.random.key(0), (2, 6, 8))
      >>> variables = layer.init(jax.random.key(1), x[:, :1], decode=True)
      >>> variables["cache"]["state"].shape
      (2, 3, 8)
      >>> y, cache = layer.apply(variables, x[:, :1], decode=True, mutable=["cache"])
      >>> y.shape
      (2, 1, 8)
    """

    kernel_size: int | Sequence[int]
    channel_multiplier: int = 1
    dilation: int = 1
    use_bias: bool = True
    activation: str | None = None
    dtype: specs.Dtype | None = None
    param_dtype: specs.Dtype = jnp.float32
    precision: lax.PrecisionLike = None
    kernel_init: specs.Initializer = specs.default_depthwise_init
    bias_init: specs.Initializer = specs.default_bias_init
    implementation: str = "auto"

    @nn.compact
    def __call__(
        self, x: ArrayLike, *, segment_ids: ArrayLike | None = None, decode: bool = False
    ) -> jax.Array:
        """Applies the layer to `x: (N, T, C)`; returns `(N, T, C*m)`.

        Args:
          x: `(N, T, C)`.
          segment_ids: `(N, T)` ids of packed sequences (no tap crosses a change of id), or
            `None`. Not with `decode`.
          decode: read and advance the `"cache"` state (see the class docstring).

        Raises:
          ValueError: `x` not `(N, T, C)`, bad options, or `segment_ids` with `decode`.
        """
        return _apply(self, cl.CausalDepthwiseSpec, x, segment_ids, decode)


class CausalSeparableConv1D(nn.Module):
    """Causal 1-D depthwise-separable conv (causal depthwise → pointwise) with a decode cache.

    Holds `depthwise_kernel` `(W, 1, C*m)`, `pointwise_kernel` `(C*m, features)` and (if
    `use_bias`) `bias` `(features,)`, as `SeparableConv`. The decode cache is the depthwise conv's
    input state, as in `CausalDepthwiseConv1D` (`"cache"` / `"state"`, `(N, (W-1)·dilation, C)`).

    Attributes:
      features: output channels.
      kernel_size, channel_multiplier, dilation, implementation: as `CausalDepthwiseConv1D`.
      use_bias: whether to add a bias after the pointwise conv. Defaults to True.
      dtype: compute dtype. Defaults to `None` (the promoted type of `x` and params).
      param_dtype: parameter dtype. Defaults to float32.
      precision: passed to both convolutions.
      depthwise_init: defaults to He normal with fan_in = W.
      pointwise_init: defaults to LeCun normal.
      bias_init: defaults to zeros.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> layer = CausalSeparableConv1D(16, 3)
      >>> x = jnp.ones((2, 10, 4))
      >>> variables = layer.init(jax.random.key(0), x)
      >>> sorted(variables["params"]), layer.apply(variables, x).shape
      (['bias', 'depthwise_kernel', 'pointwise_kernel'], (2, 10, 16))
    """

    features: int
    kernel_size: int | Sequence[int]
    channel_multiplier: int = 1
    dilation: int = 1
    use_bias: bool = True
    dtype: specs.Dtype | None = None
    param_dtype: specs.Dtype = jnp.float32
    precision: lax.PrecisionLike = None
    depthwise_init: specs.Initializer = specs.default_depthwise_init
    pointwise_init: specs.Initializer = specs.default_pointwise_init
    bias_init: specs.Initializer = specs.default_bias_init
    implementation: str = "auto"

    @nn.compact
    def __call__(
        self, x: ArrayLike, *, segment_ids: ArrayLike | None = None, decode: bool = False
    ) -> jax.Array:
        """Applies the layer to `x: (N, T, C)`; returns `(N, T, features)`.

        Args and Raises as `CausalDepthwiseConv1D`; also a non-positive `features`.
        """
        return _apply(self, cl.CausalSeparableSpec, x, segment_ids, decode)


class ConformerConv(nn.Module):
    """Conformer's convolution module: pointwise (2C) → GLU → depthwise → norm → swish → pointwise.

    Input and output `(N, T, C)`; the residual connection, the pre-norm and dropout are the
    caller's. With `causal=True` the depthwise conv is causal and the module streams: the
    `"cache"` state of its `depthwise` submodule carries the last `(W-1)·dilation` GLU outputs,
    and the norm is LayerNorm (per frame). With `causal=False` the window is centred (`"SAME"`),
    as in the paper, and `norm="batch"` is allowed.

    Attributes:
      kernel_size: the depthwise window length. Defaults to 31 (the paper's).
      causal: a causal depthwise conv (streaming) or the paper's centred one. Defaults to True.
      norm: `"layer"` (default) or `"batch"` (non-causal only; `train` selects its mode).
      dilation: depthwise dilation. Defaults to 1.
      momentum, epsilon: BatchNorm's (0.9, 1e-5); `epsilon` is LayerNorm's too.
      dtype: compute dtype. Defaults to `None` (the promoted type of `x` and params).
      param_dtype: parameter dtype. Defaults to float32.
      precision: passed to the convolutions.
      implementation: `"auto"`, `"xla"` or `"taps"`, as `causal_depthwise_conv1d`.

    Submodules: `pointwise_in` (`PointwiseConv`, C → 2C), `depthwise` (`CausalDepthwiseConv1D`,
    or `DepthwiseConv` with `"SAME"` padding; with a bias either way), `norm`, `pointwise_out`
    (`PointwiseConv`, C → C).

    References:
      Gulati et al., "Conformer: Convolution-augmented Transformer for Speech Recognition", 2020.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> block = ConformerConv(kernel_size=7)
      >>> x = jnp.ones((2, 12, 8))
      >>> variables = block.init(jax.random.key(0), x)
      >>> sorted(variables["params"]), block.apply(variables, x).shape
      (['depthwise', 'norm', 'pointwise_in', 'pointwise_out'], (2, 12, 8))
    """

    kernel_size: int = 31
    causal: bool = True
    norm: str = "layer"
    dilation: int = 1
    momentum: float = 0.9
    epsilon: float = 1e-5
    dtype: specs.Dtype | None = None
    param_dtype: specs.Dtype = jnp.float32
    precision: lax.PrecisionLike = None
    implementation: str = "auto"

    @nn.compact
    def __call__(
        self,
        x: ArrayLike,
        *,
        segment_ids: ArrayLike | None = None,
        decode: bool = False,
        train: bool = False,
    ) -> jax.Array:
        """Applies the module to `x: (N, T, C)`; returns `(N, T, C)`.

        Args:
          x: `(N, T, C)`.
          segment_ids: `(N, T)` ids of packed sequences (causal only, not with `decode`).
          decode: read and advance the depthwise conv's `"cache"` state (causal only).
          train: BatchNorm's mode (`norm="batch"`: batch statistics, apply with
            `mutable=["batch_stats"]`); ignored by LayerNorm.

        Raises:
          ValueError: `x` not `(N, T, C)`, `norm="batch"` with `causal`, or `decode` /
            `segment_ids` without `causal`.
        """
        where = spec_module.describe(self)
        x = cl.check_call(x, None, decode, segment_ids, where)
        cl.check_conformer(self.causal, self.norm, where)
        cl.check_conformer_call(self.causal, decode, segment_ids, where)
        c = x.shape[-1]
        conv = dict(dtype=self.dtype, param_dtype=self.param_dtype, precision=self.precision)
        h = cl.glu(PointwiseConv(2 * c, name="pointwise_in", **conv)(x))
        width = cl.kernel_width(self.kernel_size, where)
        dw = dict(dilation=self.dilation, implementation=self.implementation, name="depthwise")
        if self.causal:
            h = CausalDepthwiseConv1D(width, **dw, **conv)(
                h, segment_ids=segment_ids, decode=decode
            )
        else:  # the paper's centred window
            h = DepthwiseConv((width,), padding="SAME", use_bias=True, **dw, **conv)(h)
        if self.norm == "layer":
            norm = nn.LayerNorm(
                epsilon=self.epsilon, dtype=jnp.float32, param_dtype=self.param_dtype, name="norm"
            )
            h = _norm.in_float32(norm, h)
        else:
            h = _norm.batch_norm(
                h,
                train,
                name="norm",
                momentum=self.momentum,
                epsilon=self.epsilon,
                axis_name=None,
                param_dtype=self.param_dtype,
            )
        return PointwiseConv(c, name="pointwise_out", **conv)(jax.nn.silu(h))
