"""The inverted-residual block of MobileNetV2/V3 and EfficientNet, and its plan entry `MBConvSpec`."""

from __future__ import annotations

from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

from sepconv_jax import _norm, activations
from sepconv_jax import linen as sl
from sepconv_jax.linen.drop_path import DropPath
from sepconv_jax.linen.squeeze_excite import SqueezeExcite
from sepconv_jax.models import common
from sepconv_jax.models import imagenet_common as ic


class MBConvSpec(NamedTuple):
    """One block of a block plan.

    Attributes:
      features: output channels.
      expanded: hidden channels of the 1×1 expansion, or `None` for a block without one (the
        depthwise conv then runs on the input channels).
      kernel_size: depthwise window.
      strides: depthwise stride.
      act: activation name after the expansion and the depthwise conv.
      se_features: squeezed channels of the squeeze-excite, or 0 for none.
      se_act: the squeeze-excite's inner activation name.
      se_gate: the squeeze-excite's gate name.
      drop_path: stochastic-depth rate of the residual branch (training only).
    """

    features: int
    expanded: int | None
    kernel_size: int
    strides: int
    act: str
    se_features: int = 0
    se_act: str = "relu"
    se_gate: str = "sigmoid"
    drop_path: float = 0.0


class MBConv(nn.Module):
    """expand 1×1 → BN → act → depthwise K×K → BN → act → [SE] → project 1×1 → BN (+ residual).

    The residual (through `DropPath` when `spec.drop_path > 0`) is added at stride 1 when the
    input has `spec.features` channels. Convs have no bias (BN follows).

    Attributes:
      spec: the block (`MBConvSpec`).
      padding: convention of the depthwise conv, one of `imagenet_common.PADDINGS`.
      momentum, epsilon, axis_name, dtype, param_dtype, precision, implementation: as the
        library's `InvertedResidual`.

    Submodules: `expand`, `expand_norm` (absent when `spec.expanded is None`), `depthwise`,
    `depthwise_norm`, `se` (`SqueezeExcite`, when `spec.se_features`), `project`,
    `project_norm`.
    """

    spec: MBConvSpec
    padding: str = "tf"
    momentum: float = 0.99
    epsilon: float = 1e-3
    axis_name: str | None = None
    dtype: common.Dtype | None = None
    param_dtype: common.Dtype = jnp.float32
    precision: lax.PrecisionLike = None
    implementation: str = "auto"

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        """Applies the block to `x: (N, H, W, C_in)`; returns `(N, H/s, W/s, features)`."""
        spec = self.spec
        act = activations.get(spec.act)
        conv = dict(dtype=self.dtype, param_dtype=self.param_dtype, precision=self.precision)
        h = x
        if spec.expanded is not None:
            h = sl.PointwiseConv(spec.expanded, use_bias=False, name="expand", **conv)(h)
            h = act(self._norm(h, train, "expand_norm"))
        h = sl.DepthwiseConv(
            spec.kernel_size,
            strides=spec.strides,
            padding=ic.conv_padding(spec.kernel_size, self.padding),
            implementation=self.implementation,
            name="depthwise",
            **conv,
        )(h)
        h = act(self._norm(h, train, "depthwise_norm"))
        if spec.se_features:
            se = SqueezeExcite(
                spec.se_features, act=spec.se_act, gate=spec.se_gate, name="se", **conv
            )
            h = se(h)
        h = sl.PointwiseConv(spec.features, use_bias=False, name="project", **conv)(h)
        h = self._norm(h, train, "project_norm")
        if spec.strides == 1 and x.shape[-1] == spec.features:
            h = DropPath(spec.drop_path, name="drop_path")(h, deterministic=not train) + x
        return h

    def _norm(self, h: jax.Array, train: bool, name: str) -> jax.Array:
        return _norm.batch_norm(
            h,
            train,
            name=name,
            momentum=self.momentum,
            epsilon=self.epsilon,
            axis_name=self.axis_name,
            param_dtype=self.param_dtype,
        )


def run_blocks(
    x: jax.Array, train: bool, plan: tuple[MBConvSpec, ...], model: nn.Module, dtype
) -> jax.Array:
    """Applies one `MBConv` per entry of `plan`, named `block{i}`, with `model`'s settings."""
    for i, spec in enumerate(plan):
        x = MBConv(
            spec,
            padding=model.padding,
            momentum=model.bn_momentum,
            epsilon=model.bn_epsilon,
            axis_name=model.axis_name,
            dtype=dtype,
            param_dtype=model.param_dtype,
            precision=model.precision,
            implementation=model.implementation,
            name=f"block{i}",
        )(x, train)
    return x
