"""Flax nnx MobileNet blocks: `SeparableBlock` (V1) and `InvertedResidual` (V2)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
from flax import nnx
from jax import lax
from jax.typing import ArrayLike

from sepconv_jax import _args, _norm
from sepconv_jax import _layer_specs as specs
from sepconv_jax._args import PaddingLike
from sepconv_jax.nnx.convs import DepthwiseConv, PointwiseConv

#: A block's `norm`: `"batch"`, `None`, or a factory called as `norm(num_features, rngs=rngs)`.
NormLike = str | Callable[..., nnx.Module] | None


def _make_norm(
    norm: NormLike,
    num_features: int,
    *,
    momentum: float,
    epsilon: float,
    axis_name: str | None,
    param_dtype: specs.Dtype,
    rngs: nnx.Rngs,
) -> nnx.Module | None:
    if norm is None:
        return nnx.data(None)
    if isinstance(norm, str):
        return _norm.BatchNorm(
            num_features,
            momentum=momentum,
            epsilon=epsilon,
            axis_name=axis_name,
            param_dtype=param_dtype,
            rngs=rngs,
        )
    return norm(num_features, rngs=rngs)


def _apply_norm(
    norm: nnx.Module | None, h: jax.Array, use_running_average: bool | None
) -> jax.Array:
    if norm is None:
        return h
    if use_running_average is not None and isinstance(norm, nnx.BatchNorm):
        return norm(h, use_running_average=use_running_average)
    return norm(h)


class SeparableBlock(nnx.Module):
    """Depthwise conv → norm → act → pointwise conv → norm → act: the MobileNetV1 block.

    The nnx twin of `sepconv_jax.linen.SeparableBlock`: same submodule names (`depthwise`,
    `depthwise_norm`, `pointwise`, `pointwise_norm`) and parameter shapes, so linen variables
    load by path. Convolutions have no bias when normed and one otherwise.

    Train/eval the nnx way: BatchNorm uses batch statistics (and updates its `nnx.BatchStat`s)
    while `use_running_average` is False, as after construction or `model.train()`, and the
    running averages after `model.eval()`. `__call__`'s `use_running_average` overrides that
    for one call, as in `nnx.BatchNorm`.

    Args:
      in_features: input channels `C`.
      out_features: output channels (linen's `features`).
      kernel_size, strides, channel_multiplier, padding, dilation, act, momentum, epsilon,
        axis_name, dtype, param_dtype, precision, implementation: as the linen class's fields
        (`act` defaults to `nnx.relu`).
      norm: `"batch"` (default: `nnx.BatchNorm`, computed in float32), `None` (no norm), or a
        factory called as `norm(num_features, rngs=rngs)` (e.g. `nnx.LayerNorm`).
      num_spatial_dims: as `DepthwiseConv` (an int `kernel_size` means 2-D unless given).
      rngs: `nnx.Rngs` with a `params` stream.

    Raises:
      ValueError: non-positive `in_features` or `out_features`, an unknown `norm`, or as
        `DepthwiseConv`.

    References:
      Howard et al., "MobileNets: Efficient Convolutional Neural Networks for Mobile Vision
      Applications", 2017.

    Examples:
      >>> import jax.numpy as jnp
      >>> from flax import nnx
      >>> block = SeparableBlock(4, 16, strides=2, rngs=nnx.Rngs(0))
      >>> block(jnp.ones((2, 8, 8, 4))).shape  # train mode: updates batch statistics
      (2, 4, 4, 16)
      >>> block.eval()
      >>> block(jnp.ones((2, 8, 8, 4))).shape  # running averages
      (2, 4, 4, 16)
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        kernel_size: int | Sequence[int] = 3,
        strides: int | Sequence[int] = 1,
        *,
        channel_multiplier: int = 1,
        padding: PaddingLike = "SAME",
        dilation: int | Sequence[int] = 1,
        norm: NormLike = "batch",
        act: specs.Act | None = nnx.relu,
        momentum: float = 0.9,
        epsilon: float = 1e-5,
        axis_name: str | None = None,
        dtype: specs.Dtype | None = None,
        param_dtype: specs.Dtype = jnp.float32,
        precision: lax.PrecisionLike = None,
        implementation: str = "auto",
        num_spatial_dims: int | None = None,
        rngs: nnx.Rngs,
    ):
        where = type(self).__name__
        self.in_features = _args.positive_int(in_features, "in_features", where)
        self.out_features = _args.positive_int(out_features, "out_features", where)
        _norm.check_norm(norm, where)
        normed = norm is not None
        conv = dict(dtype=dtype, param_dtype=param_dtype, precision=precision, rngs=rngs)
        bn = dict(
            momentum=momentum,
            epsilon=epsilon,
            axis_name=axis_name,
            param_dtype=param_dtype,
            rngs=rngs,
        )
        self.depthwise = DepthwiseConv(
            in_features,
            kernel_size,
            strides,
            channel_multiplier=channel_multiplier,
            padding=padding,
            dilation=dilation,
            use_bias=not normed,
            implementation=implementation,
            num_spatial_dims=num_spatial_dims,
            **conv,
        )
        hidden = self.depthwise.out_features
        self.depthwise_norm = _make_norm(norm, hidden, **bn)
        self.pointwise = PointwiseConv(hidden, out_features, use_bias=not normed, **conv)
        self.pointwise_norm = _make_norm(norm, out_features, **bn)
        self.act = specs.identity if act is None else act

    def __call__(self, x: ArrayLike, *, use_running_average: bool | None = None) -> jax.Array:
        """Applies the block to `x: (N, *spatial, in_features)`; returns `(N, *out, out_features)`.

        Args:
          x: input `(N, *spatial, in_features)`.
          use_running_average: overrides the BatchNorms' mode for this call when not `None`.

        Raises:
          ValueError: `x` of the wrong rank or with other than `in_features` channels.
        """
        x = specs.check_input(
            x, self.depthwise.num_spatial_dims, self.in_features, type(self).__name__
        )
        h = _apply_norm(self.depthwise_norm, self.depthwise(x), use_running_average)
        h = _apply_norm(self.pointwise_norm, self.pointwise(self.act(h)), use_running_average)
        return self.act(h)


class InvertedResidual(nnx.Module):
    """The MobileNetV2 block: expand 1×1 → depthwise → linear 1×1 projection (+ residual).

    The nnx twin of `sepconv_jax.linen.InvertedResidual`: submodules `expand`, `expand_norm`
    (`None` when `expansion == 1`), `depthwise`, `depthwise_norm`, `project`, `project_norm`,
    same shapes. The input is added back when `strides == 1` and
    `in_features == out_features`. Train/eval as `SeparableBlock` (`model.train()` /
    `model.eval()`, or `use_running_average` per call).

    Args:
      in_features: input channels `C`.
      out_features: output channels.
      expansion: hidden channels per input channel. Defaults to 6.
      strides: depthwise stride. Defaults to 1.
      kernel_size: depthwise window. Defaults to 3.
      act: activation after the expand and depthwise norms. Defaults to `nnx.relu6`.
      momentum, epsilon, axis_name: BatchNorm settings (0.9, 1e-5, None).
      dtype: compute dtype. Defaults to `None` (the promoted type of `x` and params).
      param_dtype: parameter dtype. Defaults to float32.
      precision: passed to every convolution.
      implementation: passed to `ops.depthwise_conv`. Defaults to `"auto"`.
      num_spatial_dims: as `DepthwiseConv` (an int `kernel_size` means 2-D unless given).
      rngs: `nnx.Rngs` with a `params` stream.

    Raises:
      ValueError: non-positive `in_features`, `out_features` or `expansion`, or as
        `DepthwiseConv`.

    References:
      Sandler et al., "MobileNetV2: Inverted Residuals and Linear Bottlenecks", 2018.

    Examples:
      >>> import jax.numpy as jnp
      >>> from flax import nnx
      >>> block = InvertedResidual(8, 8, expansion=6, rngs=nnx.Rngs(0))
      >>> block.expand.pointwise_kernel.shape, block.residual
      ((8, 48), True)
      >>> block(jnp.ones((2, 8, 8, 8)), use_running_average=True).shape
      (2, 8, 8, 8)
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        expansion: int = 6,
        strides: int | Sequence[int] = 1,
        *,
        kernel_size: int | Sequence[int] = 3,
        act: specs.Act = nnx.relu6,
        momentum: float = 0.9,
        epsilon: float = 1e-5,
        axis_name: str | None = None,
        dtype: specs.Dtype | None = None,
        param_dtype: specs.Dtype = jnp.float32,
        precision: lax.PrecisionLike = None,
        implementation: str = "auto",
        num_spatial_dims: int | None = None,
        rngs: nnx.Rngs,
    ):
        where = type(self).__name__
        self.in_features = in_features = _args.positive_int(in_features, "in_features", where)
        self.out_features = out_features = _args.positive_int(out_features, "out_features", where)
        expansion = _args.positive_int(expansion, "expansion", where)
        conv = dict(dtype=dtype, param_dtype=param_dtype, precision=precision, rngs=rngs)
        bn = dict(
            momentum=momentum,
            epsilon=epsilon,
            axis_name=axis_name,
            param_dtype=param_dtype,
            rngs=rngs,
        )
        hidden = in_features * expansion
        self.expand: PointwiseConv | None = nnx.data(None)
        self.expand_norm: nnx.BatchNorm | None = nnx.data(None)
        if expansion != 1:
            self.expand = PointwiseConv(in_features, hidden, use_bias=False, **conv)
            self.expand_norm = _make_norm("batch", hidden, **bn)
        self.depthwise = DepthwiseConv(
            hidden,
            kernel_size,
            strides=strides,
            use_bias=False,
            implementation=implementation,
            num_spatial_dims=num_spatial_dims,
            **conv,
        )
        self.depthwise_norm = _make_norm("batch", hidden, **bn)
        self.project = PointwiseConv(hidden, out_features, use_bias=False, **conv)
        self.project_norm = _make_norm("batch", out_features, **bn)
        self.act = act
        self.residual = all(s == 1 for s in self.depthwise.strides) and in_features == out_features

    def __call__(self, x: ArrayLike, *, use_running_average: bool | None = None) -> jax.Array:
        """Applies the block to `x: (N, *spatial, in_features)`; returns `(N, *out, out_features)`.

        Args:
          x: input `(N, *spatial, in_features)`.
          use_running_average: overrides the BatchNorms' mode for this call when not `None`.

        Raises:
          ValueError: `x` of the wrong rank or with other than `in_features` channels.
        """
        x = specs.check_input(
            x, self.depthwise.num_spatial_dims, self.in_features, type(self).__name__
        )
        h = x
        if self.expand is not None:
            h = self.act(_apply_norm(self.expand_norm, self.expand(h), use_running_average))
        h = self.act(_apply_norm(self.depthwise_norm, self.depthwise(h), use_running_average))
        h = _apply_norm(self.project_norm, self.project(h), use_running_average)
        if self.residual:
            h = h + x.astype(h.dtype)
        return h
