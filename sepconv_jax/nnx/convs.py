"""Flax nnx depthwise, pointwise and separable conv layers: parameters around `sepconv_jax.ops`."""

from __future__ import annotations

from collections.abc import Sequence

import jax.numpy as jnp
from flax import nnx
from jax import lax

from sepconv_jax import _layer_specs as specs
from sepconv_jax._args import PaddingLike
from sepconv_jax.nnx.spec_module import SpecLayer


class DepthwiseConv(SpecLayer):
    """Depthwise convolution: each input channel convolved on its own with `m` filters.

    The nnx twin of `sepconv_jax.linen.DepthwiseConv` (same parameters, names and shapes):
    `depthwise_kernel` `(*window, 1, in_features*m)` and, if `use_bias`, `bias`
    `(in_features*m,)`, both `nnx.Param`; calls `ops.depthwise_conv`.

    Args:
      in_features: input channels `C`.
      kernel_size: the window: a sequence (one entry per spatial dim), or an int used for
        `num_spatial_dims` dims.
      channel_multiplier: filters per input channel, `m`. Defaults to 1.
      strides: int or one per spatial dim. Defaults to 1.
      padding: as `ops.depthwise_conv`. Defaults to `"SAME"`.
      dilation: kernel dilation, int or one per spatial dim. Defaults to 1.
      use_bias: whether to add a bias. Defaults to False (a norm usually follows).
      dtype: compute dtype. Defaults to `None` (the promoted type of `x` and params).
      param_dtype: parameter dtype. Defaults to float32.
      precision: passed to the convolution.
      kernel_init: defaults to He normal with fan_in = prod(window).
      bias_init: defaults to zeros.
      implementation: `"auto"`, `"xla"`, `"pallas"` or `"taps"`, as `ops.depthwise_conv`.
      num_spatial_dims: 1, 2 or 3. Defaults to `None`: `len(kernel_size)` for a sequence, 2 for
        an int (images; unlike `nnx.Conv`, where an int kernel size means 1-D).
      rngs: `nnx.Rngs` with a `params` stream.

    Raises:
      ValueError: a non-positive `in_features`, `channel_multiplier` or window, a
        `kernel_size` whose length disagrees with `num_spatial_dims`, or bad strides, padding,
        dilation or implementation.

    Examples:
      >>> import jax.numpy as jnp
      >>> from flax import nnx
      >>> layer = DepthwiseConv(4, 3, channel_multiplier=2, rngs=nnx.Rngs(0))
      >>> layer.depthwise_kernel.shape, layer(jnp.ones((2, 8, 8, 4))).shape
      ((3, 3, 1, 8), (2, 8, 8, 8))
    """

    def __init__(
        self,
        in_features: int,
        kernel_size: int | Sequence[int],
        strides: int | Sequence[int] = 1,
        *,
        channel_multiplier: int = 1,
        padding: PaddingLike = "SAME",
        dilation: int | Sequence[int] = 1,
        use_bias: bool = False,
        dtype: specs.Dtype | None = None,
        param_dtype: specs.Dtype = jnp.float32,
        precision: lax.PrecisionLike = None,
        kernel_init: specs.Initializer = specs.default_depthwise_init,
        bias_init: specs.Initializer = specs.default_bias_init,
        implementation: str = "auto",
        num_spatial_dims: int | None = None,
        rngs: nnx.Rngs,
    ):
        spec = specs.DepthwiseSpec.build(
            in_features=in_features,
            kernel_size=kernel_size,
            num_spatial_dims=num_spatial_dims,
            channel_multiplier=channel_multiplier,
            strides=strides,
            padding=padding,
            dilation=dilation,
            use_bias=use_bias,
            dtype=dtype,
            param_dtype=param_dtype,
            precision=precision,
            kernel_init=kernel_init,
            bias_init=bias_init,
            implementation=implementation,
            where=type(self).__name__,
        )
        super().__init__(spec, rngs=rngs)


class PointwiseConv(SpecLayer):
    """Pointwise (1×1) convolution: a Dense over the channel axis, `ops.pointwise_conv`.

    The nnx twin of `sepconv_jax.linen.PointwiseConv`: `pointwise_kernel`
    `(in_features, out_features)` and, if `use_bias`, `bias` `(out_features,)`.

    Args:
      in_features: input channels.
      out_features: output channels (linen's `features`).
      use_bias, dtype, param_dtype, precision, kernel_init, bias_init: as the linen class's
        fields.
      rngs: `nnx.Rngs` with a `params` stream.

    Raises:
      ValueError: non-positive `in_features` or `out_features`.

    Examples:
      >>> import jax.numpy as jnp
      >>> from flax import nnx
      >>> layer = PointwiseConv(4, 16, rngs=nnx.Rngs(0))
      >>> layer.pointwise_kernel.shape, layer(jnp.ones((2, 8, 8, 4))).shape
      ((4, 16), (2, 8, 8, 16))
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        use_bias: bool = True,
        dtype: specs.Dtype | None = None,
        param_dtype: specs.Dtype = jnp.float32,
        precision: lax.PrecisionLike = None,
        kernel_init: specs.Initializer = specs.default_pointwise_init,
        bias_init: specs.Initializer = specs.default_bias_init,
        rngs: nnx.Rngs,
    ):
        spec = specs.PointwiseSpec.build(
            in_features=in_features,
            out_features=out_features,
            use_bias=use_bias,
            dtype=dtype,
            param_dtype=param_dtype,
            precision=precision,
            kernel_init=kernel_init,
            bias_init=bias_init,
            where=type(self).__name__,
        )
        super().__init__(spec, rngs=rngs)


class SeparableConv(SpecLayer):
    """Depthwise-separable convolution (depthwise then pointwise) plus a bias.

    The nnx twin of `sepconv_jax.linen.SeparableConv`: `depthwise_kernel`
    `(*window, 1, in_features*m)`, `pointwise_kernel` `(in_features*m, out_features)` and, if
    `use_bias`, `bias` `(out_features,)` on this module itself; calls `ops.separable_conv`.

    Args:
      in_features: input channels `C`.
      out_features: output channels.
      kernel_size, channel_multiplier, strides, padding, dilation, implementation,
        num_spatial_dims: as `DepthwiseConv`.
      use_bias: whether to add a bias after the pointwise conv. Defaults to True.
      dtype: compute dtype. Defaults to `None` (the promoted type of `x` and params).
      param_dtype: parameter dtype. Defaults to float32.
      precision: passed to both convolutions.
      depthwise_init: defaults to He normal with fan_in = prod(window).
      pointwise_init: defaults to LeCun normal.
      bias_init: defaults to zeros.
      rngs: `nnx.Rngs` with a `params` stream.

    Raises:
      ValueError: as `DepthwiseConv`, or a non-positive `out_features`.

    Examples:
      >>> import jax.numpy as jnp
      >>> from flax import nnx
      >>> layer = SeparableConv(4, 16, 3, rngs=nnx.Rngs(0))
      >>> layer(jnp.ones((2, 8, 8, 4))).shape
      (2, 8, 8, 16)
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        kernel_size: int | Sequence[int],
        strides: int | Sequence[int] = 1,
        *,
        channel_multiplier: int = 1,
        padding: PaddingLike = "SAME",
        dilation: int | Sequence[int] = 1,
        use_bias: bool = True,
        dtype: specs.Dtype | None = None,
        param_dtype: specs.Dtype = jnp.float32,
        precision: lax.PrecisionLike = None,
        depthwise_init: specs.Initializer = specs.default_depthwise_init,
        pointwise_init: specs.Initializer = specs.default_pointwise_init,
        bias_init: specs.Initializer = specs.default_bias_init,
        implementation: str = "auto",
        num_spatial_dims: int | None = None,
        rngs: nnx.Rngs,
    ):
        spec = specs.SeparableSpec.build(
            in_features=in_features,
            out_features=out_features,
            kernel_size=kernel_size,
            num_spatial_dims=num_spatial_dims,
            channel_multiplier=channel_multiplier,
            strides=strides,
            padding=padding,
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
        super().__init__(spec, rngs=rngs)
