"""sepconv_jax: depthwise-separable convolutions for JAX and Flax."""

from sepconv_jax.ops import (
    depthwise_conv,
    full_to_separable,
    pointwise_conv,
    separable_conv,
    separable_to_full,
)

__version__ = "0.1.0"

__all__ = [
    "depthwise_conv",
    "full_to_separable",
    "pointwise_conv",
    "separable_conv",
    "separable_to_full",
]
