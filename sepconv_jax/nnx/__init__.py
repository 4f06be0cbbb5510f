"""Flax nnx modules over `sepconv_jax.ops`: the `sepconv_jax.linen` classes, nnx-style.

Same class names, parameter names and shapes, and submodule names as `sepconv_jax.linen`, so
linen variables load into these modules path for path (`nnx.state` / `nnx.update`). nnx
differences: constructors take `in_features` and `rngs`; an int `kernel_size` means a 2-D window
unless `num_spatial_dims` says otherwise; blocks follow `model.train()` / `model.eval()`.
"""

from sepconv_jax.nnx.blocks import InvertedResidual, SeparableBlock
from sepconv_jax.nnx.causal import CausalDepthwiseConv1D, CausalSeparableConv1D, ConformerConv
from sepconv_jax.nnx.convs import DepthwiseConv, PointwiseConv, SeparableConv
from sepconv_jax.nnx.imagenet_parts import DropPath, LayerNorm, SqueezeExcite

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
