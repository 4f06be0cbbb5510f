"""Flax nnx causal sequence layers with a decode cache: causal depthwise / separable, Conformer."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx
from jax import lax
from jax.typing import ArrayLike

from sepconv_jax import _causal_layers as cl
from sepconv_jax import _layer_specs as specs
from sepconv_jax import _norm
from sepconv_jax.nnx.convs import DepthwiseConv, PointwiseConv
from sepconv_jax.nnx.spec_module import SpecLayer


class _CausalLayer(SpecLayer):
    """A causal spec's layer with the decode cache of `nnx.MultiHeadAttention`'s kind: the
    `state` `nnx.Cache`, set by `init_cache` and advanced by calls with `decode=True`."""

    def __init__(self, spec: Any, decode: bool, *, rngs: nnx.Rngs):
        super().__init__(spec, rngs=rngs)
        self.decode = decode
        self.state: nnx.Cache | None = nnx.data(None)

    def init_cache(self, batch_size: int, dtype: specs.Dtype | None = None) -> None:
        """Sets the decode cache to the start of a sequence: `state` zeros `(batch_size,
        (W-1)·dilation, in_features)`.

        Args:
          batch_size: `N` of the calls that follow.
          dtype: the compute dtype of those calls (`x`'s promoted with the parameters, or the
            layer's `dtype`). Defaults to `None`: the layer's `dtype` if set, else its
            `param_dtype`.
        """
        spec, _ = self.bound()
        v = spec.cache(batch_size, dtype)
        self.state = nnx.Cache(v.init(None, v.shape, v.dtype))

    def __call__(
        self, x: ArrayLike, *, segment_ids: ArrayLike | None = None, decode: bool | None = None
    ) -> jax.Array:
        """Applies the layer to `x: (N, T, in_features)`; returns `(N, T, out_features)`.

        Args:
          x: `(N, T, in_features)`.
          segment_ids: `(N, T)` ids of packed sequences, or `None`. Not with `decode`.
          decode: read and advance the cache. Defaults to `None` (the constructor's `decode`).

        Raises:
          ValueError: `x` not `(N, T, in_features)`, `segment_ids` with `decode`, or decoding
            before `init_cache`.
        """
        spec, values = self.bound()
        decode = self.decode if decode is None else decode
        x = cl.check_call(x, spec.in_features, decode, segment_ids, spec.where)
        if decode and self.state is None:
            raise ValueError(
                f"{spec.where}: the decode cache is not initialised; call init_cache first"
            )
        state = self.state[...] if decode else None
        y, new_state = spec.apply(values, x, state=state, segment_ids=segment_ids)
        if new_state is not None:
            self.state[...] = new_state
        return y


class CausalDepthwiseConv1D(_CausalLayer):
    """Causal 1-D depthwise conv over `(N, T, C)` sequences with a streaming decode cache.

    The nnx twin of `sepconv_jax.linen.CausalDepthwiseConv1D` (same parameters, names and
    shapes): `depthwise_kernel` `(W, 1, in_features*m)` and, if `use_bias`, `bias`. Decoding the
    way of `nnx.MultiHeadAttention`: `init_cache(batch_size, dtype=None)` sets the `state`
    `nnx.Cache` `(N, (W-1)·dilation, in_features)` to zeros; each call with `decode=True` (or
    `decode=True` at construction) reads it and advances it by a chunk of any length `T ≥ 1`.

    Args:
      in_features: input channels `C`.
      kernel_size: the window length `W` (an int or a one-entry sequence).
      channel_multiplier: filters per input channel, `m`. Defaults to 1.
      dilation: positive int. Defaults to 1.
      use_bias: whether to add a bias. Defaults to True.
      activation: `None` or `"silu"` (after the bias, in the same op). Defaults to `None`.
      dtype: compute dtype. Defaults to `None` (the promoted type of `x` and params).
      param_dtype: parameter dtype. Defaults to float32.
      precision: passed to the convolution.
      kernel_init: defaults to He normal with fan_in = W.
      bias_init: defaults to zeros.
      implementation: `"auto"`, `"xla"` or `"taps"`, as `causal_depthwise_conv1d`.
      decode: the default of `__call__`'s `decode`. Defaults to False.
      rngs: `nnx.Rngs` with a `params` stream.

    Examples:
      >>> import jax.numpy as jnp
      >>> from flax import nnx
      >>> layer = CausalDepthwiseConv1D(8, 4, rngs=nnx.Rngs(0))
      >>> layer.init_cache(2)
      >>> layer(jnp.ones((2, 1, 8)), decode=True).shape, layer.state.shape
      ((2, 1, 8), (2, 3, 8))
    """

    def __init__(
        self,
        in_features: int,
        kernel_size: int | Sequence[int],
        *,
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
        decode: bool = False,
        rngs: nnx.Rngs,
    ):
        spec = cl.CausalDepthwiseSpec.build(
            in_features=in_features,
            kernel_size=kernel_size,
            channel_multiplier=channel_multiplier,
            dilation=dilation,
            use_bias=use_bias,
            activation=activation,
            dtype=dtype,
            param_dtype=param_dtype,
            precision=precision,
            kernel_init=kernel_init,
            bias_init=bias_init,
            implementation=implementation,
            where=type(self).__name__,
        )
        super().__init__(spec, decode, rngs=rngs)


class CausalSeparableConv1D(_CausalLayer):
    """Causal 1-D depthwise-separable conv (causal depthwise → pointwise) with a decode cache.

    The nnx twin of `sepconv_jax.linen.CausalSeparableConv1D`: `depthwise_kernel`
    `(W, 1, in_features*m)`, `pointwise_kernel` `(in_features*m, out_features)` and, if
    `use_bias`, `bias` `(out_features,)`; the cache as `CausalDepthwiseConv1D`'s.

    Args:
      in_features: input channels `C`.
      out_features: output channels.
      kernel_size, channel_multiplier, dilation, implementation, decode: as
        `CausalDepthwiseConv1D`.
      use_bias: whether to add a bias after the pointwise conv. Defaults to True.
      dtype, param_dtype, precision: as `CausalDepthwiseConv1D`.
      depthwise_init: defaults to He normal with fan_in = W.
      pointwise_init: defaults to LeCun normal.
      bias_init: defaults to zeros.
      rngs: `nnx.Rngs` with a `params` stream.

    Examples:
      >>> import jax.numpy as jnp
      >>> from flax import nnx
      >>> layer = CausalSeparableConv1D(4, 16, 3, rngs=nnx.Rngs(0))
      >>> layer(jnp.ones((2, 10, 4))).shape
      (2, 10, 16)
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        kernel_size: int | Sequence[int],
        *,
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
        decode: bool = False,
        rngs: nnx.Rngs,
    ):
        spec = cl.CausalSeparableSpec.build(
            in_features=in_features,
            out_features=out_features,
            kernel_size=kernel_size,
            channel_multiplier=channel_multiplier,
            dilation=dilation,
            use_bias=use_bias,
            dtype=dtype,
            param_dtype=param_dtype,
            precision=precision,
            depthwise_init=depthwise_init,
            pointwise_init=pointwise_init,
            bias_init=bias_init,
            implementation=implementation,
            where=type(self).__name__,
        )
        super().__init__(spec, decode, rngs=rngs)


class ConformerConv(nnx.Module):
    """Conformer's convolution module: pointwise (2C) → GLU → depthwise → norm → swish → pointwise.

    The nnx twin of `sepconv_jax.linen.ConformerConv` (same submodules and parameters). When
    causal, `init_cache(batch_size, dtype=None)` and `decode` work as in `CausalDepthwiseConv1D`
    (the cache is `depthwise.state`); BatchNorm (`norm="batch"`, non-causal only) follows
    `model.train()` / `model.eval()`.

    Args:
      in_features: channels `C` of the input and the output.
      kernel_size: the depthwise window length. Defaults to 31.
      causal: a causal depthwise conv (streaming) or the paper's centred one. Defaults to True.
      norm: `"layer"` (default) or `"batch"` (non-causal only).
      dilation: depthwise dilation. Defaults to 1.
      momentum, epsilon: BatchNorm's (0.9, 1e-5); `epsilon` is LayerNorm's too.
      dtype, param_dtype, precision, implementation: as `CausalDepthwiseConv1D`.
      decode: the default of `__call__`'s `decode`. Defaults to False.
      rngs: `nnx.Rngs` with a `params` stream.

    Examples:
      >>> import jax.numpy as jnp
      >>> from flax import nnx
      >>> block = ConformerConv(8, kernel_size=7, rngs=nnx.Rngs(0))
      >>> block(jnp.ones((2, 12, 8))).shape
      (2, 12, 8)
    """

    def __init__(
        self,
        in_features: int,
        kernel_size: int = 31,
        *,
        causal: bool = True,
        norm: str = "layer",
        dilation: int = 1,
        momentum: float = 0.9,
        epsilon: float = 1e-5,
        dtype: specs.Dtype | None = None,
        param_dtype: specs.Dtype = jnp.float32,
        precision: lax.PrecisionLike = None,
        implementation: str = "auto",
        decode: bool = False,
        rngs: nnx.Rngs,
    ):
        where = type(self).__name__
        cl.check_conformer(causal, norm, where)
        width = cl.kernel_width(kernel_size, where)
        conv = dict(dtype=dtype, param_dtype=param_dtype, precision=precision, rngs=rngs)
        self.pointwise_in = PointwiseConv(in_features, 2 * in_features, **conv)
        c = self.pointwise_in.in_features  # validated
        self.in_features, self.causal, self.decode = c, causal, decode
        dw = dict(dilation=dilation, use_bias=True, implementation=implementation)
        if causal:
            self.depthwise = CausalDepthwiseConv1D(c, width, **dw, **conv)
        else:  # the paper's centred window
            self.depthwise = DepthwiseConv(
                c, (width,), padding="SAME", num_spatial_dims=1, **dw, **conv
            )
        if norm == "layer":
            self.norm = nnx.LayerNorm(
                c, epsilon=epsilon, dtype=jnp.float32, param_dtype=param_dtype, rngs=rngs
            )
        else:
            self.norm = _norm.BatchNorm(
                c, momentum=momentum, epsilon=epsilon, param_dtype=param_dtype, rngs=rngs
            )
        self.pointwise_out = PointwiseConv(c, c, **conv)

    def init_cache(self, batch_size: int, dtype: specs.Dtype | None = None) -> None:
        """Sets the depthwise conv's cache to the start of a sequence (causal only), as
        `CausalDepthwiseConv1D.init_cache`."""
        if not self.causal:
            raise ValueError("ConformerConv: init_cache needs causal=True")
        self.depthwise.init_cache(batch_size, dtype)

    def __call__(
        self, x: ArrayLike, *, segment_ids: ArrayLike | None = None, decode: bool | None = None
    ) -> jax.Array:
        """Applies the module to `x: (N, T, in_features)`; returns `(N, T, in_features)`.

        Raises:
          ValueError: `x` not `(N, T, in_features)`, or `decode` / `segment_ids` without
            `causal`.
        """
        where = type(self).__name__
        decode = self.decode if decode is None else decode
        x = cl.check_call(x, self.in_features, decode, segment_ids, where)
        cl.check_conformer_call(self.causal, decode, segment_ids, where)
        h = cl.glu(self.pointwise_in(x))
        if self.causal:
            h = self.depthwise(h, segment_ids=segment_ids, decode=decode)
        else:
            h = self.depthwise(h)
        h = jax.nn.silu(_norm.in_float32(self.norm, h))
        return self.pointwise_out(h)
