"""MobileNetV2 for ImageNet (Keras's `keras.applications.MobileNetV2` layout) from `MBConv` blocks."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax
from jax.typing import ArrayLike

from sepconv_jax.models import common
from sepconv_jax.models import imagenet_common as ic
from sepconv_jax.models.mbconv import MBConvSpec, run_blocks

#: The paper's stages as `(expansion, features, num_blocks, strides)`, 3×3 depthwise, ReLU6.
STAGES: tuple[tuple[int, int, int, int], ...] = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)
#: The width multipliers Keras publishes ImageNet weights for.
WIDTHS = (0.35, 0.5, 0.75, 1.0, 1.3, 1.4)


def block_plan(width: float) -> tuple[MBConvSpec, ...]:
    """One `MBConvSpec` per block at `width` (channels rounded with `make_divisible(…, 8)`)."""
    c_in = common.make_divisible(32 * width)
    plan = []
    for t, c, n, s in STAGES:
        for i in range(n):
            features = common.make_divisible(c * width)
            expanded = None if t == 1 else c_in * t
            plan.append(MBConvSpec(features, expanded, 3, s if i == 0 else 1, "relu6"))
            c_in = features
    return tuple(plan)


def last_features(width: float) -> int:
    """Channels of the last 1×1 conv: 1280, scaled only for widths above 1 (as Keras)."""
    return common.make_divisible(1280 * width) if width > 1.0 else 1280


class MobileNetV2Imagenet(nn.Module):
    """MobileNetV2 for 224×224 ImageNet images (any size ≥ 32 works), Keras's layout.

    Stem: 3×3 conv (stride 2) → BN → ReLU6; 17 inverted-residual blocks (`block_plan`: expand
    1×1 → BN → ReLU6 → 3×3 depthwise → BN → ReLU6 → project 1×1 → BN, + residual); a 1×1 conv
    to `last_features(width)` → BN → ReLU6; global average pool → dropout → Dense. 3,504,872
    parameters at width 1.0 with 1000 classes (Keras's 3,538,984 counts the BN statistics).

    Attributes:
      num_classes: classifier outputs. Defaults to 1000.
      width: Keras's `alpha` (0.35, 0.5, 0.75, 1.0, 1.3, 1.4 have published weights; any
        positive value builds). Defaults to 1.0.
      dropout: dropout before the classifier (train only). Defaults to 0.0 (Keras has none).
      include_top: the pool and classifier; without it the output is the last feature map,
        or its pool (`pooling`). Defaults to True.
      pooling: with `include_top=False`: `None` (feature map `(N, H/32, W/32, C)`), `"avg"` or
        `"max"` (`(N, C)`). Defaults to `None`.
      classifier_activation: `None` (logits) or `"softmax"`. Defaults to `None`.
      padding: `"tf"` (TensorFlow `"SAME"`, for Keras weights) or `"torch"` (symmetric, for
        PyTorch weights). Defaults to `"tf"`.
      preprocessing: steps applied to the input first (see `imagenet_common.Step`). Defaults to
        none (Keras's MobileNetV2 expects inputs in [-1, 1]).
      dtype, param_dtype, precision, axis_name, implementation: as the CIFAR `MobileNetV2`.
      bn_momentum, bn_epsilon: BatchNorm settings. Defaults to 0.999 and 1e-3 (Keras's).

    References:
      Sandler et al., "MobileNetV2: Inverted Residuals and Linear Bottlenecks", 2018.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> model = MobileNetV2Imagenet()
      >>> x = jax.ShapeDtypeStruct((1, 224, 224, 3), jnp.float32)
      >>> variables = jax.eval_shape(lambda x: model.init(jax.random.key(0), x, train=False), x)
      >>> sum(p.size for p in jax.tree.leaves(variables["params"]))
      3504872
    """

    num_classes: int = 1000
    width: float = 1.0
    dropout: float = 0.0
    include_top: bool = True
    pooling: str | None = None
    classifier_activation: str | None = None
    padding: str = "tf"
    preprocessing: tuple[ic.Step, ...] = ()
    dtype: common.Dtype | None = None
    param_dtype: common.Dtype = jnp.float32
    precision: lax.PrecisionLike = None
    axis_name: str | None = None
    bn_momentum: float = 0.999
    bn_epsilon: float = 1e-3
    implementation: str = "auto"

    def __post_init__(self) -> None:
        ic.check_fields(self, "MobileNetV2Imagenet")
        super().__post_init__()

    @nn.compact
    def __call__(self, x: ArrayLike, train: bool) -> jax.Array:
        """Classifies `x: (N, H, W, 3)` floating images.

        Returns:
          float32 `(N, num_classes)` logits (probabilities with `classifier_activation`), or
          the features when `include_top=False`.

        Raises:
          ValueError: `x` not 4-D. TypeError: `x` not floating.
        """
        dtype = common.compute_dtype(self.dtype, self.param_dtype)
        x = ic.preprocess(common.check_images(x, dtype, "MobileNetV2Imagenet"), self.preprocessing)
        bn = ic.conv_bn_fields(self, dtype)
        x = ic.ConvBN(common.make_divisible(32 * self.width), 3, 2, "relu6", name="stem", **bn)(
            x, train
        )
        x = run_blocks(x, train, block_plan(self.width), self, dtype)
        x = ic.ConvBN(last_features(self.width), 1, 1, "relu6", name="last", **bn)(x, train)
        if not self.include_top:
            return ic.pool(x, self.pooling)
        logits = common.classifier_head(
            x,
            train,
            num_classes=self.num_classes,
            dropout=self.dropout,
            param_dtype=self.param_dtype,
        )
        return ic.finish(logits, self.classifier_activation)
