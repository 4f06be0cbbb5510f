"""Flax linen modules over `sepconv_jax.ops`: conv layers and MobileNet blocks.

Layers: `DepthwiseConv`, `PointwiseConv`, `SeparableConv` (depthwise then pointwise, as in
MobileNet and Xception; not Haiku's `SeparableDepthwiseConv2D`, a k×1 then 1×k depthwise conv).
Blocks: `SeparableBlock` (MobileNetV1) and `InvertedResidual` (MobileNetV2). Sequences
`(N, T, C)` with a decode cache: `CausalDepthwiseConv1D`, `CausalSeparableConv1D`,
`ConformerConv`. `sepconv_jax.nnx` has the same classes with the same parameter names and shapes.
"""

from sepconv_jax.linen.blocks import InvertedResidual, SeparableBlock
from sepconv_jax.linen.causal import CausalDepthwiseConv1D, CausalSeparableConv1D, ConformerConv
from sepconv_jax.linen.convs import DepthwiseConv, PointwiseConv, SeparableConv

__all__ = [
    "CausalDepthwiseConv1D",
    "CausalSeparableConv1D",
    "ConformerConv",
    "DepthwiseConv",
    "InvertedResidual",
    "PointwiseConv",
    "SeparableBlock",
    "SeparableConv",
]
