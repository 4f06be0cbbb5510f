"""Flax nnx depthwise, pointwise and separable conv layers: parameters around `sepconv_jax.ops`."""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx
from jax import lax
from jax.typing import ArrayLike

from sepconv_jax import _args, ops
from sepconv_jax import _module_utils as mu
from sepconv_jax._args import PaddingLike


def _check_x(x: jax.Array, num_spatial_dims: int | None, in_features: int, where: str) -> None:
    """Raises `ValueError` unless `x` has `num_spatial_dims` spatial dims and `in_features`."""
    if num_spatial_dims is not None and x.ndim != num_spatial_dims + 2:
        raise ValueError(
            f"{where} was built for {num_spatial_dims} spatial dims, so x must have shape "
            f"(N, *spatial, {in_features}) of rank {num_spatial_dims + 2}; got shape {x.shape}"
        )
    if x.ndim < 1 or x.shape[-1] != in_features:
        raise ValueError(
            f"{where}: x has shape {x.shape}, so {x.shape[-1] if x.ndim else 0} channels, "
            f"but in_features={in_features}"
        )


class _Spatial(nnx.Module):
    """Validated window, strides, padding and dilation shared by the depthwise layers."""

    def _set_spatial(
        self,
        kernel_size: int | Sequence[int],
        strides: int | Sequence[int],
        padding: PaddingLike,
        dilation: int | Sequence[int],
        implementation: str,
        num_spatial_dims: int | None,
        where: str,
    ) -> tuple[int, ...]:
        window = mu.window(kernel_size, num_spatial_dims, where)
        n = len(window)
        self.num_spatial_dims = n
        self.kernel_size = window
        self.strides = _args.normalize_tuple(strides, n, f"{where}: strides")
        self.dilation = _args.normalize_tuple(dilation, n, f"{where}: dilation")
        _args.resolve_padding(padding, window, self.dilation)  # raises on a bad padding
        self.padding = mu.freeze_padding(padding)
        self.implementation = mu.check_implementation(implementation, where)
        return window


class DepthwiseConv(_Spatial):
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
        channel_multiplier: int = 1,
        strides: int | Sequence[int] = 1,
        padding: PaddingLike = "SAME",
        dilation: int | Sequence[int] = 1,
        use_bias: bool = False,
        dtype: mu.Dtype | None = None,
        param_dtype: mu.Dtype = jnp.float32,
        precision: lax.PrecisionLike = None,
        kernel_init: mu.Initializer = mu.default_depthwise_init,
        bias_init: mu.Initializer = mu.default_bias_init,
        implementation: str = "auto",
        num_spatial_dims: int | None = None,
        *,
        rngs: nnx.Rngs,
    ):
        where = type(self).__name__
        self.in_features = mu.positive_int(in_features, "in_features", where)
        self.channel_multiplier = mu.positive_int(channel_multiplier, "channel_multiplier", where)
        window = self._set_spatial(
            kernel_size, strides, padding, dilation, implementation, num_spatial_dims, where
        )
        features = self.in_features * self.channel_multiplier
        self.out_features = features
        self.use_bias = use_bias
        self.dtype, self.param_dtype, self.precision = dtype, param_dtype, precision
        self.depthwise_kernel = nnx.Param(
            kernel_init(rngs.params(), (*window, 1, features), param_dtype)
        )
        self.bias: nnx.Param | None = nnx.data(None)
        if use_bias:
            self.bias = nnx.Param(bias_init(rngs.params(), (features,), param_dtype))

    def __call__(self, x: ArrayLike) -> jax.Array:
        """Applies the layer to `x: (N, *spatial, in_features)`; returns `(N, *out, C*m)`.

        Raises:
          ValueError: `x` of the wrong rank or with other than `in_features` channels.
        """
        x = jnp.asarray(x)
        _check_x(x, self.num_spatial_dims, self.in_features, type(self).__name__)
        bias = None if self.bias is None else self.bias[...]
        x, kernel, bias = mu.promote(x, self.depthwise_kernel[...], bias, dtype=self.dtype)
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


class PointwiseConv(nnx.Module):
    """Pointwise (1×1) convolution: a Dense over the channel axis, `ops.pointwise_conv`.

    The nnx twin of `sepconv_jax.linen.PointwiseConv`: `pointwise_kernel`
    `(in_features, out_features)` and, if `use_bias`, `bias` `(out_features,)`.

    Args:
      in_features: input channels.
      out_features: output channels.
      use_bias: whether to add a bias. Defaults to True.
      dtype: compute dtype. Defaults to `None` (the promoted type of `x` and params).
      param_dtype: parameter dtype. Defaults to float32.
      precision: passed to `lax.dot_general`.
      kernel_init: defaults to LeCun normal (`nnx.Linear`'s).
      bias_init: defaults to zeros.
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
        use_bias: bool = True,
        dtype: mu.Dtype | None = None,
        param_dtype: mu.Dtype = jnp.float32,
        precision: lax.PrecisionLike = None,
        kernel_init: mu.Initializer = mu.default_pointwise_init,
        bias_init: mu.Initializer = mu.default_bias_init,
        *,
        rngs: nnx.Rngs,
    ):
        where = type(self).__name__
        self.in_features = mu.positive_int(in_features, "in_features", where)
        self.out_features = mu.positive_int(out_features, "out_features", where)
        self.use_bias = use_bias
        self.dtype, self.param_dtype, self.precision = dtype, param_dtype, precision
        shape = (self.in_features, self.out_features)
        self.pointwise_kernel = nnx.Param(kernel_init(rngs.params(), shape, param_dtype))
        self.bias: nnx.Param | None = nnx.data(None)
        if use_bias:
            self.bias = nnx.Param(bias_init(rngs.params(), (self.out_features,), param_dtype))

    def __call__(self, x: ArrayLike) -> jax.Array:
        """Applies the layer to `x: (..., in_features)`; returns `(..., out_features)`.

        Raises:
          ValueError: `x` with other than `in_features` channels.
        """
        x = jnp.asarray(x)
        _check_x(x, None, self.in_features, type(self).__name__)
        bias = None if self.bias is None else self.bias[...]
        x, kernel, bias = mu.promote(x, self.pointwise_kernel[...], bias, dtype=self.dtype)
        return mu.add_bias(ops.pointwise_conv(x, kernel, precision=self.precision), bias)


class SeparableConv(_Spatial):
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
        channel_multiplier: int = 1,
        strides: int | Sequence[int] = 1,
        padding: PaddingLike = "SAME",
        dilation: int | Sequence[int] = 1,
        use_bias: bool = True,
        dtype: mu.Dtype | None = None,
        param_dtype: mu.Dtype = jnp.float32,
        precision: lax.PrecisionLike = None,
        depthwise_init: mu.Initializer = mu.default_depthwise_init,
        pointwise_init: mu.Initializer = mu.default_pointwise_init,
        bias_init: mu.Initializer = mu.default_bias_init,
        implementation: str = "auto",
        num_spatial_dims: int | None = None,
        *,
        rngs: nnx.Rngs,
    ):
        where = type(self).__name__
        self.in_features = mu.positive_int(in_features, "in_features", where)
        self.out_features = mu.positive_int(out_features, "out_features", where)
        self.channel_multiplier = mu.positive_int(channel_multiplier, "channel_multiplier", where)
        window = self._set_spatial(
            kernel_size, strides, padding, dilation, implementation, num_spatial_dims, where
        )
        hidden = self.in_features * self.channel_multiplier
        self.use_bias = use_bias
        self.dtype, self.param_dtype, self.precision = dtype, param_dtype, precision
        self.depthwise_kernel = nnx.Param(
            depthwise_init(rngs.params(), (*window, 1, hidden), param_dtype)
        )
        self.pointwise_kernel = nnx.Param(
            pointwise_init(rngs.params(), (hidden, self.out_features), param_dtype)
        )
        self.bias: nnx.Param | None = nnx.data(None)
        if use_bias:
            self.bias = nnx.Param(bias_init(rngs.params(), (self.out_features,), param_dtype))

    def __call__(self, x: ArrayLike) -> jax.Array:
        """Applies the layer to `x: (N, *spatial, in_features)`; returns `(N, *out, out_features)`.

        Raises:
          ValueError: `x` of the wrong rank or with other than `in_features` channels.
        """
        x = jnp.asarray(x)
        _check_x(x, self.num_spatial_dims, self.in_features, type(self).__name__)
        bias = None if self.bias is None else self.bias[...]
        x, dw, pw, bias = mu.promote(
            x, self.depthwise_kernel[...], self.pointwise_kernel[...], bias, dtype=self.dtype
        )
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
