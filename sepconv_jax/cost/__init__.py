"""Cost accounting: parameters, multiply-adds, FLOPs and bytes of convs, layers and whole models.

Two sources of numbers:

* From shapes alone: `depthwise_cost`, `pointwise_cost`, `separable_cost`, `full_cost` and
  `separable_full_ratio` (closed forms, no tracing).
* From a traced forward pass: `model_cost` walks the jaxpr of a linen or nnx model and counts
  every `conv_general_dilated` and `dot_general`; `xla_cost` asks XLA's own cost analysis.

MACs count only convolutions and matrix products (the papers' convention); bias adds, batch
norm, activations and pooling are not counted, though XLA's FLOPs include them. FLOPs are
`2 * MACs` (a multiply-add is two operations, as XLA counts them).

By default (`count_padding=True`) every output element costs `prod(window)` taps, as in
MobileNet's `D_K² · M · D_F²`. XLA counts only the taps that read `x`, not its zero padding;
`count_padding=False` counts the same and then equals XLA's FLOPs exactly (for float32 on CPU:
XLA computes bfloat16 convs there in float32 and counts the casts too).

References:
  Howard et al., "MobileNets: Efficient Convolutional Neural Networks for Mobile Vision
  Applications", 2017 (section 3.1, the cost ratio `1/N + 1/D_K²`).
"""

from sepconv_jax.cost.closed_form import (
    Cost,
    depthwise_cost,
    full_cost,
    pointwise_cost,
    separable_cost,
    separable_full_ratio,
)
from sepconv_jax.cost.traced import model_cost, xla_cost

__all__ = [
    "Cost",
    "depthwise_cost",
    "full_cost",
    "model_cost",
    "pointwise_cost",
    "separable_cost",
    "separable_full_ratio",
    "xla_cost",
]
