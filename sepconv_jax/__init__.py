"""sepconv_jax: depthwise-separable convolutions for JAX and Flax.

The functional ops live at the top level (`causal_depthwise_conv1d` with its streaming state for
sequences); `linen` and `nnx` hold the Flax modules over them, `models` the CIFAR MobileNets with
their full-conv twins and the ImageNet nets (MobileNetV2/V3, EfficientNet, ConvNeXt), `interop`
Keras import and BatchNorm folding, `cost` the parameter / FLOP / byte accounting, and `kernels`
the Pallas GPU kernels (`implementation="pallas"`, and `"auto"` where the routing table lists
them).
"""

from sepconv_jax import activations, cost, interop, linen, models, nnx
from sepconv_jax.causal import causal_depthwise_conv1d, init_causal_state
from sepconv_jax.conv_general import conv_general_dilated, make_conv_general_dilated
from sepconv_jax.fused import fused_separable_conv
from sepconv_jax.ops import (
    depthwise_conv,
    full_to_separable,
    pointwise_conv,
    separable_conv,
    separable_to_full,
)

__version__ = "0.1.0"

__all__ = [
    "activations",
    "causal_depthwise_conv1d",
    "conv_general_dilated",
    "cost",
    "depthwise_conv",
    "full_to_separable",
    "fused_separable_conv",
    "init_causal_state",
    "interop",
    "linen",
    "make_conv_general_dilated",
    "models",
    "nnx",
    "pointwise_conv",
    "separable_conv",
    "separable_to_full",
]
