"""Flax linen depthwise, pointwise and separable conv layers: parameters around `sepconv_jax.ops`."""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax
from jax.typing import ArrayLike

from sepconv_jax import _layer_specs as specs
from sepconv_jax._args import PaddingLike
from sepconv_jax.linen import spec_module


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
      kernel_init: defaults to He normal with fan_in = prod(window) (see `_layer_specs`).
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
    dtype: specs.Dtype | None = None
    param_dtype: specs.Dtype = jnp.float32
    precision: lax.PrecisionLike = None
    kernel_init: specs.Initializer = specs.default_depthwise_init
    bias_init: specs.Initializer = specs.default_bias_init
    implementation: str = "auto"

    @nn.compact
    def __call__(self, x: ArrayLike) -> jax.Array:
        """Applies the layer to `x: (N, *spatial, C)`; returns `(N, *out_spatial, C*m)`.

        Raises:
          ValueError: `x` not of rank 3-5, a `kernel_size` of the wrong length, a non-positive
            `channel_multiplier`, or bad strides, padding or dilation.
        """
        return spec_module.apply(self, specs.DepthwiseSpec, x)


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
    dtype: specs.Dtype | None = None
    param_dtype: specs.Dtype = jnp.float32
    precision: lax.PrecisionLike = None
    kernel_init: specs.Initializer = specs.default_pointwise_init
    bias_init: specs.Initializer = specs.default_bias_init

    @nn.compact
    def __call__(self, x: ArrayLike) -> jax.Array:
        """Applies the layer to `x: (..., C_in)`; returns `(..., features)`.

        Raises:
          ValueError: non-positive `features`, or `x` without a channel axis.
        """
        return spec_module.apply(self, specs.PointwiseSpec, x, spatial=False)


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
    dtype: specs.Dtype | None = None
    param_dtype: specs.Dtype = jnp.float32
    precision: lax.PrecisionLike = None
    depthwise_init: specs.Initializer = specs.default_depthwise_init
    pointwise_init: specs.Initializer = specs.default_pointwise_init
    bias_init: specs.Initializer = specs.default_bias_init
    implementation: str = "auto"

    @nn.compact
    def __call__(self, x: ArrayLike) -> jax.Array:
        """Applies the layer to `x: (N, *spatial, C)`; returns `(N, *out_spatial, features)`.

        Raises:
          ValueError: as `DepthwiseConv`, or non-positive `features`.
        """
        return spec_module.apply(self, specs.SeparableSpec, x)
