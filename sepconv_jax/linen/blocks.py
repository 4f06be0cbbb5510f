"""Flax linen MobileNet blocks: `SeparableBlock` (V1) and `InvertedResidual` (V2)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

from sepconv_jax import _args, _norm
from sepconv_jax import _layer_specs as specs
from sepconv_jax._args import PaddingLike
from sepconv_jax.linen.convs import DepthwiseConv, PointwiseConv
from sepconv_jax.linen.spec_module import describe

#: A block's `norm`: `"batch"`, `None`, or a factory called as `norm(name=...)`.
NormLike = str | Callable[..., nn.Module] | None


def _batch_norm(block: Any, x: jax.Array, train: bool, name: str) -> jax.Array:
    """The block's float32 BatchNorm named `name`, with the block's settings."""
    return _norm.batch_norm(
        x,
        train,
        name=name,
        momentum=block.momentum,
        epsilon=block.epsilon,
        axis_name=block.axis_name,
        param_dtype=block.param_dtype,
    )


class SeparableBlock(nn.Module):
    """Depthwise conv → norm → act → pointwise conv → norm → act: the MobileNetV1 block.

    The pointwise conv maps the `C*m` depthwise channels to `features` (not back to `C`).
    Convolutions have no bias when normed (the norm's shift replaces it) and one otherwise.
    BatchNorm is computed in float32 and cast back to the compute dtype.

    Attributes:
      features: output channels.
      kernel_size: depthwise window, int or one per spatial dim. Defaults to 3.
      strides: depthwise stride. Defaults to 1.
      channel_multiplier: depthwise filters per input channel. Defaults to 1.
      padding: depthwise padding, as `ops.depthwise_conv`. Defaults to `"SAME"`.
      dilation: depthwise dilation. Defaults to 1.
      norm: `"batch"` (default: `nn.BatchNorm`), `None` (no norm), or a factory called as
        `norm(name=...)` returning a module applied as `module(h)` (e.g.
        `lambda name: nn.LayerNorm(name=name)`; bake any train-dependence into the factory).
      act: activation after each norm, or `None` for none. Defaults to `nn.relu`.
      momentum: BatchNorm running-average momentum. Defaults to 0.9 (PyTorch's; Flax's 0.99
        lags far behind the weights at high learning rates in short runs).
      epsilon: BatchNorm epsilon. Defaults to 1e-5.
      axis_name: BatchNorm's named axis for cross-device statistics, or `None`.
      dtype: compute dtype. Defaults to `None` (the promoted type of `x` and params).
      param_dtype: parameter dtype. Defaults to float32.
      precision: passed to both convolutions.
      implementation: passed to `ops.depthwise_conv`. Defaults to `"auto"`.

    Submodules: `depthwise` (`DepthwiseConv`), `depthwise_norm`, `pointwise` (`PointwiseConv`),
    `pointwise_norm`.

    References:
      Howard et al., "MobileNets: Efficient Convolutional Neural Networks for Mobile Vision
      Applications", 2017.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> block = SeparableBlock(16, strides=2)
      >>> x = jnp.ones((2, 8, 8, 4))
      >>> variables = block.init(jax.random.key(0), x, train=False)
      >>> sorted(variables["params"]), sorted(variables["batch_stats"])
      (['depthwise', 'depthwise_norm', 'pointwise', 'pointwise_norm'], ['depthwise_norm', 'pointwise_norm'])
      >>> y, updates = block.apply(variables, x, train=True, mutable=["batch_stats"])
      >>> y.shape
      (2, 4, 4, 16)
    """

    features: int
    kernel_size: int | Sequence[int] = 3
    strides: int | Sequence[int] = 1
    channel_multiplier: int = 1
    padding: PaddingLike = "SAME"
    dilation: int | Sequence[int] = 1
    norm: NormLike = "batch"
    act: specs.Act | None = nn.relu
    momentum: float = 0.9
    epsilon: float = 1e-5
    axis_name: str | None = None
    dtype: specs.Dtype | None = None
    param_dtype: specs.Dtype = jnp.float32
    precision: lax.PrecisionLike = None
    implementation: str = "auto"

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        """Applies the block to `x: (N, *spatial, C)`; returns `(N, *out_spatial, features)`.

        Args:
          x: input `(N, *spatial, C)`.
          train: BatchNorm uses batch statistics and updates `batch_stats` when True (apply
            with `mutable=["batch_stats"]`), and the running averages when False.

        Raises:
          ValueError: non-positive `features`, an unknown `norm`, or as `DepthwiseConv`.
        """
        where = describe(self)
        _args.positive_int(self.features, "features", where)
        _norm.check_norm(self.norm, where)
        normed = self.norm is not None
        act = specs.identity if self.act is None else self.act
        conv = dict(dtype=self.dtype, param_dtype=self.param_dtype, precision=self.precision)
        h = DepthwiseConv(
            self.kernel_size,
            channel_multiplier=self.channel_multiplier,
            strides=self.strides,
            padding=self.padding,
            dilation=self.dilation,
            use_bias=not normed,
            implementation=self.implementation,
            name="depthwise",
            **conv,
        )(x)
        h = act(self._norm(h, train, "depthwise_norm"))
        h = PointwiseConv(self.features, use_bias=not normed, name="pointwise", **conv)(h)
        return act(self._norm(h, train, "pointwise_norm"))

    def _norm(self, h: jax.Array, train: bool, name: str) -> jax.Array:
        if self.norm is None:
            return h
        if isinstance(self.norm, str):
            return _batch_norm(self, h, train, name)
        return self.norm(name=name)(h)


class InvertedResidual(nn.Module):
    """The MobileNetV2 block: expand 1×1 → depthwise → linear 1×1 projection (+ residual).

    expand (`PointwiseConv` to `C*expansion`) → BN → act, skipped when `expansion == 1`;
    depthwise (`DepthwiseConv`, `kernel_size`, `strides`) → BN → act; project (`PointwiseConv`
    to `features`) → BN with no activation (the linear bottleneck). The input is added back
    when `strides == 1` and `C == features`. Convolutions have no bias.
    BatchNorm is computed in float32 and cast back to the compute dtype.

    Attributes:
      features: output channels.
      expansion: hidden channels per input channel. Defaults to 6.
      strides: depthwise stride. Defaults to 1.
      kernel_size: depthwise window. Defaults to 3.
      padding: depthwise padding, as `ops.depthwise_conv`. Defaults to `"SAME"`.
      act: activation after the expand and depthwise norms. Defaults to `nn.relu6`.
      momentum, epsilon, axis_name: BatchNorm settings, as `SeparableBlock` (0.9, 1e-5, None).
      dtype: compute dtype. Defaults to `None` (the promoted type of `x` and params).
      param_dtype: parameter dtype. Defaults to float32.
      precision: passed to every convolution.
      implementation: passed to `ops.depthwise_conv`. Defaults to `"auto"`.

    Submodules: `expand`, `expand_norm` (absent when `expansion == 1`), `depthwise`,
    `depthwise_norm`, `project`, `project_norm`.

    References:
      Sandler et al., "MobileNetV2: Inverted Residuals and Linear Bottlenecks", 2018.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> block = InvertedResidual(8, expansion=6)
      >>> x = jnp.ones((2, 8, 8, 8))
      >>> variables = block.init(jax.random.key(0), x, train=False)
      >>> variables["params"]["expand"]["pointwise_kernel"].shape
      (8, 48)
      >>> block.apply(variables, x, train=False).shape
      (2, 8, 8, 8)
    """

    features: int
    expansion: int = 6
    strides: int | Sequence[int] = 1
    kernel_size: int | Sequence[int] = 3
    padding: PaddingLike = "SAME"
    act: specs.Act = nn.relu6
    momentum: float = 0.9
    epsilon: float = 1e-5
    axis_name: str | None = None
    dtype: specs.Dtype | None = None
    param_dtype: specs.Dtype = jnp.float32
    precision: lax.PrecisionLike = None
    implementation: str = "auto"

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        """Applies the block to `x: (N, *spatial, C)`; returns `(N, *out_spatial, features)`.

        Args:
          x: input `(N, *spatial, C)`.
          train: as `SeparableBlock`.

        Raises:
          ValueError: non-positive `features` or `expansion`, or as `DepthwiseConv`.
        """
        where = describe(self)
        features = _args.positive_int(self.features, "features", where)
        expansion = _args.positive_int(self.expansion, "expansion", where)
        x = jnp.asarray(x)
        strides = _args.normalize_tuple(
            self.strides, _args.spatial_dims(x.shape, "x", where), "strides"
        )
        conv = dict(dtype=self.dtype, param_dtype=self.param_dtype, precision=self.precision)
        h = x
        if expansion != 1:
            h = PointwiseConv(x.shape[-1] * expansion, use_bias=False, name="expand", **conv)(h)
            h = self.act(_batch_norm(self, h, train, "expand_norm"))
        h = DepthwiseConv(
            self.kernel_size,
            strides=strides,
            padding=self.padding,
            use_bias=False,
            implementation=self.implementation,
            name="depthwise",
            **conv,
        )(h)
        h = self.act(_batch_norm(self, h, train, "depthwise_norm"))
        h = PointwiseConv(features, use_bias=False, name="project", **conv)(h)
        h = _batch_norm(self, h, train, "project_norm")
        if all(s == 1 for s in strides) and x.shape[-1] == features:
            h = h + x.astype(h.dtype)
        return h
