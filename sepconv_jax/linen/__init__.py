"""Flax linen modules over `sepconv_jax.ops`: conv layers, MobileNet blocks and their parts.

Layers: `DepthwiseConv`, `PointwiseConv`, `SeparableConv` (depthwise then pointwise, as in
MobileNet and Xception; not Haiku's `SeparableDepthwiseConv2D`, a k×1 then 1×k depthwise conv).
Blocks: `SeparableBlock` (MobileNetV1) and `InvertedResidual` (MobileNetV2). Sequences
`(N, T, C)` with a decode cache: `CausalDepthwiseConv1D`, `CausalSeparableConv1D`,
`ConformerConv`. `sepconv_jax.nnx` has the same classes with the same parameter names and
shapes. Parts of the ImageNet nets: `SqueezeExcite`, `DropPath` (stochastic depth) and a
channels-last `LayerNorm` (also in `sepconv_jax.nnx`).
"""

from sepconv_jax.linen.blocks import InvertedResidual, SeparableBlock
from sepconv_jax.linen.causal import CausalDepthwiseConv1D, CausalSeparableConv1D, ConformerConv
from sepconv_jax.linen.convs import DepthwiseConv, PointwiseConv, SeparableConv
from sepconv_jax.linen.drop_path import DropPath
from sepconv_jax.linen.layer_norm import LayerNorm
from sepconv_jax.linen.squeeze_excite import SqueezeExcite

__all__ = [
    "CausalDepthwiseConv1D",
    "CausalSeparableConv1D",
    "ConformerConv",
    "DepthwiseConv",
    "DropPath",
    "InvertedResidual",
    "LayerNorm",
    "PointwiseConv",
    "SeparableBlock",
    "SeparableConv",
    "SqueezeExcite",
]
