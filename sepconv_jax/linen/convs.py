"""Flax linen depthwise, pointwise and separable conv layers: parameters around `sepconv_jax.ops`."""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax
from jax.typing import ArrayLike

from sepconv_jax import _module_utils as mu
from sepconv_jax import ops
from sepconv_jax._args import PaddingLike


def _where(module: nn.Module) -> str:
    """`"DepthwiseConv 'block0/depthwise'"`: the class and, when bound, the module path."""
    path = "/".join(module.scope.path) if module.scope is not None else ""
    return f"{type(module).__name__} {path!r}" if path else type(module).__name__


class DepthwiseConv(nn.Module):
    """Depthwise convolution: each input channel convolved on its own with `m` filters.

    Holds `depthwise_kernel` `(*window, 1, C*m)` (and `bias` `(C*m,)` if `use_bias`) and calls
    `ops.depthwise_conv`. Output channel `c*m + k` reads input channel `c` only; the kernel is
    exactly `nn.Conv(C*m, window, feature_group_count=C)`'s.

    Attributes:
      kernel_size: the window; an int is used for every spatial dim of `x` (inferred as
        `x.ndim - 2`), a sequence gives one entry per spatial dim.
      channel_multiplier: filters per input channel, `m`. Defaults to 1.
      strides: int or one per spatial dim. Defaults to 1.
      padding: as `ops.depthwise_conv` (`"SAME"`, `"VALID"`, `"CAUSAL"`, `"CIRCULAR"`,
        `"REFLECT"`, `"REPLICATE"`, an int or `(lo, hi)` pairs). Defaults to `"SAME"`.
      dilation: kernel dilation, int or one per spatial dim. Defaults to 1.
      use_bias: whether to add a bias. Defaults to False (a norm usually follows).
      dtype: compute dtype; params and `x` are cast to it. Defaults to `None` (their promoted
        type).
      param_dtype: parameter dtype. Defaults to float32.
      precision: passed to the convolution.
      kernel_init: defaults to He normal with fan_in = prod(window) (see `_module_utils`).
      bias_init: defaults to zeros.
      implementation: `"auto"`, `"xla"`, `"pallas"` or `"taps"`, as `ops.depthwise_conv`.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> layer = DepthwiseConv(3, channel_multiplier=2)
      >>> x = jnp.ones((2, 8, 8, 4))
      >>> variables = layer.init(jax.random.key(0), x)
      >>> variables["params"]["depthwise_kernel"].shape
      (3, 3, 1, 8)
      >>> layer.apply(variables, x).shape
      (2, 8, 8, 8)
    """

    kernel_size: int | Sequence[int]
    channel_multiplier: int = 1
    strides: int | Sequence[int] = 1
    padding: PaddingLike = "SAME"
    dilation: int | Sequence[int] = 1
    use_bias: bool = False
    dtype: mu.Dtype | None = None
    param_dtype: mu.Dtype = jnp.float32
    precision: lax.PrecisionLike = None
    kernel_init: mu.Initializer = mu.default_depthwise_init
    bias_init: mu.Initializer = mu.default_bias_init
    implementation: str = "auto"

    @nn.compact
    def __call__(self, x: ArrayLike) -> jax.Array:
        """Applies the layer to `x: (N, *spatial, C)`; returns `(N, *out_spatial, C*m)`.

        Raises:
          ValueError: `x` not of rank 3-5, a `kernel_size` of the wrong length, a non-positive
            `channel_multiplier`, or bad strides, padding or dilation.
        """
        where = _where(self)
        x = jnp.asarray(x)
        window = mu.window(self.kernel_size, mu.spatial_dims(x, where), where)
        m = mu.positive_int(self.channel_multiplier, "channel_multiplier", where)
        features = x.shape[-1] * m
        kernel = self.param(
            "depthwise_kernel", self.kernel_init, (*window, 1, features), self.param_dtype
        )
        bias = None
        if self.use_bias:
            bias = self.param("bias", self.bias_init, (features,), self.param_dtype)
        x, kernel, bias = mu.promote(x, kernel, bias, dtype=self.dtype)
        y = ops.depthwise_conv(
            x,
            kernel,
            strides=self.strides,
            padding=self.padding,
            dilation=self.dilation,
            precision=self.precision,
            implementation=self.implementation,
        )
        return mu.add_bias(y, bias)


class PointwiseConv(nn.Module):
    """Pointwise (1×1) convolution: a Dense over the channel axis, `ops.pointwise_conv`.

    Holds `pointwise_kernel` `(C_in, features)` and (if `use_bias`) `bias` `(features,)`.

    Attributes:
      features: output channels.
      use_bias: whether to add a bias. Defaults to True.
      dtype: compute dtype. Defaults to `None` (the promoted type of `x` and params).
      param_dtype: parameter dtype. Defaults to float32.
      precision: passed to `lax.dot_general`.
      kernel_init: defaults to LeCun normal (`nn.Dense`'s).
      bias_init: defaults to zeros.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> layer = PointwiseConv(16)
      >>> x = jnp.ones((2, 8, 8, 4))
      >>> variables = layer.init(jax.random.key(0), x)
      >>> variables["params"]["pointwise_kernel"].shape, layer.apply(variables, x).shape
      ((4, 16), (2, 8, 8, 16))
    """

    features: int
    use_bias: bool = True
    dtype: mu.Dtype | None = None
    param_dtype: mu.Dtype = jnp.float32
    precision: lax.PrecisionLike = None
    kernel_init: mu.Initializer = mu.default_pointwise_init
    bias_init: mu.Initializer = mu.default_bias_init

    @nn.compact
    def __call__(self, x: ArrayLike) -> jax.Array:
        """Applies the layer to `x: (..., C_in)`; returns `(..., features)`.

        Raises:
          ValueError: non-positive `features`, or `x` without a channel axis.
        """
        where = _where(self)
        features = mu.positive_int(self.features, "features", where)
        x = jnp.asarray(x)
        if x.ndim < 1:
            raise ValueError(f"{where}: x must have a channel (last) axis, got shape {x.shape}")
        kernel = self.param(
            "pointwise_kernel", self.kernel_init, (x.shape[-1], features), self.param_dtype
        )
        bias = None
        if self.use_bias:
            bias = self.param("bias", self.bias_init, (features,), self.param_dtype)
        x, kernel, bias = mu.promote(x, kernel, bias, dtype=self.dtype)
        return mu.add_bias(ops.pointwise_conv(x, kernel, precision=self.precision), bias)


class SeparableConv(nn.Module):
    """Depthwise-separable convolution (depthwise then pointwise) plus a bias.

    Holds `depthwise_kernel` `(*window, 1, C*m)`, `pointwise_kernel` `(C*m, features)` and (if
    `use_bias`) `bias` `(features,)` on this module itself, and calls `ops.separable_conv` (which
    may fuse the two convs). Equal to `nn.Conv(features, window)` whose kernel is
    `ops.separable_to_full(depthwise_kernel, pointwise_kernel, m)`, with the same bias.

    Attributes:
      features: output channels.
      kernel_size, channel_multiplier, strides, padding, dilation, implementation: as
        `DepthwiseConv`.
      use_bias: whether to add a bias after the pointwise conv. Defaults to True.
      dtype: compute dtype. Defaults to `None` (the promoted type of `x` and params).
      param_dtype: parameter dtype. Defaults to float32.
      precision: passed to both convolutions.
      depthwise_init: defaults to He normal with fan_in = prod(window).
      pointwise_init: defaults to LeCun normal (the pair then has a He full conv's variance).
      bias_init: defaults to zeros.

    References:
      Chollet, "Xception: Deep Learning with Depthwise Separable Convolutions", 2017.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> layer = SeparableConv(16, 3)
      >>> x = jnp.ones((2, 8, 8, 4))
      >>> variables = layer.init(jax.random.key(0), x)
      >>> sorted(variables["params"])
      ['bias', 'depthwise_kernel', 'pointwise_kernel']
      >>> layer.apply(variables, x).shape
      (2, 8, 8, 16)
    """

    features: int
    kernel_size: int | Sequence[int]
    channel_multiplier: int = 1
    strides: int | Sequence[int] = 1
    padding: PaddingLike = "SAME"
    dilation: int | Sequence[int] = 1
    use_bias: bool = True
    dtype: mu.Dtype | None = None
    param_dtype: mu.Dtype = jnp.float32
    precision: lax.PrecisionLike = None
    depthwise_init: mu.Initializer = mu.default_depthwise_init
    pointwise_init: mu.Initializer = mu.default_pointwise_init
    bias_init: mu.Initializer = mu.default_bias_init
    implementation: str = "auto"

    @nn.compact
    def __call__(self, x: ArrayLike) -> jax.Array:
        """Applies the layer to `x: (N, *spatial, C)`; returns `(N, *out_spatial, features)`.

        Raises:
          ValueError: as `DepthwiseConv`, or non-positive `features`.
        """
        where = _where(self)
        features = mu.positive_int(self.features, "features", where)
        x = jnp.asarray(x)
        window = mu.window(self.kernel_size, mu.spatial_dims(x, where), where)
        m = mu.positive_int(self.channel_multiplier, "channel_multiplier", where)
        hidden = x.shape[-1] * m
        dw = self.param(
            "depthwise_kernel", self.depthwise_init, (*window, 1, hidden), self.param_dtype
        )
        pw = self.param(
            "pointwise_kernel", self.pointwise_init, (hidden, features), self.param_dtype
        )
        bias = None
        if self.use_bias:
            bias = self.param("bias", self.bias_init, (features,), self.param_dtype)
        x, dw, pw, bias = mu.promote(x, dw, pw, bias, dtype=self.dtype)
        y = ops.separable_conv(
            x,
            dw,
            pw,
            strides=self.strides,
            padding=self.padding,
            dilation=self.dilation,
            precision=self.precision,
            implementation=self.implementation,
        )
        return mu.add_bias(y, bias)
