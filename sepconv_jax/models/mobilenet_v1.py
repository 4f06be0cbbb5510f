"""MobileNetV1 for CIFAR (pytorch-cifar's layout) from `SeparableBlock`s, and its full-conv twin.

Linen only: under nnx, wrap it with `flax.nnx.bridge.ToNNX` (README, "Training").
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax
from jax.typing import ArrayLike

from sepconv_jax import linen as sl
from sepconv_jax.models import common

#: pytorch-cifar's MobileNet blocks as `(features, strides)`; the stem gives 32 channels.
CIFAR_CFG: tuple[tuple[int, int], ...] = (
    (64, 1),
    (128, 2),
    (128, 1),
    (256, 2),
    (256, 1),
    (512, 2),
    (512, 1),
    (512, 1),
    (512, 1),
    (512, 1),
    (512, 1),
    (1024, 2),
    (1024, 1),
)
#: A short stack for tests: same stem and head, four blocks, still down to 2×2 from 32×32.
TINY_CFG: tuple[tuple[int, int], ...] = ((64, 2), (128, 2), (256, 2), (512, 2))
STEM_FEATURES = 32


class MobileNetV1(nn.Module):
    """MobileNetV1 for 32×32 images, as pytorch-cifar's `MobileNet`.

    Stem: 3×3 conv (32 channels, stride 1) → BN → ReLU. Then one `SeparableBlock`
    (3×3 depthwise → BN → ReLU → 1×1 pointwise → BN → ReLU) per entry of `cfg`, a global average
    pool (over the final 2×2 map for 32×32 inputs) and a Dense classifier. Convolutions have no
    bias (BN follows). 3,217,226 parameters at `num_classes=10`, `width=1.0` (the count of
    pytorch-cifar's net); the full twin has 28,279,338.

    `conv="full"` builds the twin: every `SeparableBlock` becomes a full 3×3 conv with the same
    input/output channels and stride → BN → ReLU (`common.ConvNormAct`), for comparing the
    separable net with the standard-conv net it approximates.

    Padding is `"SAME"`: at stride 2 on even inputs it pads (0, 1) where PyTorch pads (1, 1);
    parameter counts and shapes are unaffected.

    Attributes:
      num_classes: classifier outputs. Defaults to 10.
      width: width multiplier on every channel count, rounded with `make_divisible(…, 8)`.
        Defaults to 1.0.
      dropout: dropout rate before the classifier (train only; needs a `"dropout"` rng when > 0).
        Defaults to 0.0.
      conv: `"separable"` (default) or `"full"` (the twin).
      cfg: blocks as `(features, strides)` at width 1. Defaults to `CIFAR_CFG`.
      dtype: compute dtype; `None` (default) computes in `param_dtype`. Logits are float32 always.
      param_dtype: parameter dtype. Defaults to float32.
      precision: passed to every convolution.
      axis_name: BatchNorm's cross-device axis (synchronised batch statistics), or `None`.
      bn_momentum: BatchNorm running-average momentum (PyTorch's 0.9; Flax's default 0.99 lags
        at high learning rates). Defaults to 0.9.
      bn_epsilon: BatchNorm epsilon. Defaults to 1e-5.
      implementation: depthwise implementation passed to the library (`"auto"`, `"xla"`,
        `"pallas"`). Defaults to `"auto"`.

    References:
      Howard et al., "MobileNets: Efficient Convolutional Neural Networks for Mobile Vision
      Applications", 2017. https://github.com/kuangliu/pytorch-cifar (models/mobilenet.py).

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> model = MobileNetV1()
      >>> x = jax.ShapeDtypeStruct((8, 32, 32, 3), jnp.float32)  # shapes only: no compute
      >>> variables = jax.eval_shape(lambda x: model.init(jax.random.key(0), x, train=False), x)
      >>> sum(p.size for p in jax.tree.leaves(variables["params"]))
      3217226
      >>> jax.eval_shape(lambda v, x: model.apply(v, x, train=False), variables, x).shape
      (8, 10)

      Training applies with `train=True, mutable=["batch_stats"]` and gets
      `(logits, {"batch_stats": ...})` back.
    """

    num_classes: int = 10
    width: float = 1.0
    dropout: float = 0.0
    conv: str = "separable"
    cfg: tuple[tuple[int, int], ...] = CIFAR_CFG
    dtype: common.Dtype | None = None
    param_dtype: common.Dtype = jnp.float32
    precision: lax.PrecisionLike = None
    axis_name: str | None = None
    bn_momentum: float = 0.9
    bn_epsilon: float = 1e-5
    implementation: str = "auto"

    def __post_init__(self) -> None:
        common.check_model_fields(
            num_classes=self.num_classes,
            width=self.width,
            dropout=self.dropout,
            conv=self.conv,
            model="MobileNetV1",
        )
        super().__post_init__()

    @nn.compact
    def __call__(self, x: ArrayLike, train: bool) -> jax.Array:
        """Classifies a batch of images.

        Args:
          x: `(N, H, W, C)` floating images, e.g. `(N, 32, 32, 3)`.
          train: batch statistics and dropout when `True` (apply with
            `mutable=["batch_stats"]`); running averages when `False`.

        Returns:
          float32 logits `(N, num_classes)`.

        Raises:
          ValueError: `x` not 4-D. TypeError: `x` not floating.
        """
        dtype = common.compute_dtype(self.dtype, self.param_dtype)
        x = common.check_images(x, dtype, "MobileNetV1")
        shared = dict(
            momentum=self.bn_momentum,
            epsilon=self.bn_epsilon,
            axis_name=self.axis_name,
            dtype=dtype,
            param_dtype=self.param_dtype,
            precision=self.precision,
        )
        x = common.ConvNormAct(self._ch(STEM_FEATURES), 3, name="stem", **shared)(x, train)
        for i, (features, strides) in enumerate(self.cfg):
            if self.conv == "full":
                block = common.ConvNormAct(
                    self._ch(features), 3, strides, name=f"block{i}", **shared
                )
            else:
                block = sl.SeparableBlock(
                    self._ch(features),
                    kernel_size=3,
                    strides=strides,
                    implementation=self.implementation,
                    name=f"block{i}",
                    **shared,
                )
            x = block(x, train)
        return common.classifier_head(
            x,
            train,
            num_classes=self.num_classes,
            dropout=self.dropout,
            param_dtype=self.param_dtype,
        )

    def _ch(self, features: int) -> int:
        return common.make_divisible(features * self.width)
