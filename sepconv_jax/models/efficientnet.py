"""EfficientNet B0–B7 for ImageNet (Keras's `keras.applications` layout) from `MBConv` blocks."""

from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax
from jax.typing import ArrayLike

from sepconv_jax.models import common
from sepconv_jax.models import imagenet_common as ic
from sepconv_jax.models.mbconv import MBConvSpec, run_blocks

#: B0's stages as `(kernel, repeats, features_in, features_out, expansion, strides)`; every
#: block has a squeeze-excite to a quarter of its input channels and swish.
STAGES: tuple[tuple[int, int, int, int, int, int], ...] = (
    (3, 1, 32, 16, 1, 1),
    (3, 2, 16, 24, 6, 2),
    (5, 2, 24, 40, 6, 2),
    (3, 3, 40, 80, 6, 2),
    (5, 3, 80, 112, 6, 1),
    (5, 4, 112, 192, 6, 2),
    (3, 1, 192, 320, 6, 1),
)
#: `(width coefficient, depth coefficient, default size, dropout)` per variant.
VARIANTS: dict[str, tuple[float, float, int, float]] = {
    "b0": (1.0, 1.0, 224, 0.2),
    "b1": (1.0, 1.1, 240, 0.2),
    "b2": (1.1, 1.2, 260, 0.3),
    "b3": (1.2, 1.4, 300, 0.3),
    "b4": (1.4, 1.8, 380, 0.4),
    "b5": (1.6, 2.2, 456, 0.4),
    "b6": (1.8, 2.6, 528, 0.5),
    "b7": (2.0, 3.1, 600, 0.5),
}
#: The input normalisation of the ImageNet weights: x/255, then per-channel mean and std.
IMAGENET_PREPROCESSING: tuple[ic.Step, ...] = (
    ("rescale", 1.0 / 255.0, 0.0),
    ("normalize", (0.485, 0.456, 0.406), (0.229**2, 0.224**2, 0.225**2)),
)
DROP_CONNECT_RATE = 0.2


def _filters(variant: str, c: int) -> int:
    return common.make_divisible(c * VARIANTS[variant][0])


def _repeats(variant: str, n: int) -> int:
    return int(math.ceil(VARIANTS[variant][1] * n))


def block_ids(variant: str) -> list[tuple[int, int]]:
    """`(stage, index in stage)` of each block (Keras names them `block{stage+1}{a, b, ...}`)."""
    return [(i, j) for i, st in enumerate(STAGES) for j in range(_repeats(variant, st[1]))]


def block_plan(variant: str) -> tuple[MBConvSpec, ...]:
    """One `MBConvSpec` per block; stochastic depth grows linearly to 0.2 (Keras's schedule)."""
    ids = block_ids(variant)
    plan = []
    for b, (stage, j) in enumerate(ids):
        k, _, c_in, c_out, t, s = STAGES[stage]
        c_in, c_out = _filters(variant, c_in), _filters(variant, c_out)
        c_in = c_in if j == 0 else c_out
        spec = MBConvSpec(
            features=c_out,
            expanded=None if t == 1 else c_in * t,
            kernel_size=k,
            strides=s if j == 0 else 1,
            act="swish",
            se_features=max(1, int(c_in * 0.25)),
            se_act="swish",
            se_gate="sigmoid",
            drop_path=DROP_CONNECT_RATE * b / len(ids),
        )
        plan.append(spec)
    return tuple(plan)


class EfficientNet(nn.Module):
    """EfficientNet (B0–B7) for ImageNet, Keras's layout; any input size ≥ 32.

    Stem: 3×3 conv (stride 2) → BN → swish; the MBConv blocks of `block_plan` (expand →
    depthwise → squeeze-excite → project, stochastic depth on the residual); a 1×1 conv to
    `1280 × width` → BN → swish; global average pool → dropout → Dense. B0 with 1000 classes:
    5,288,548 parameters without BN statistics (Keras's 5,330,571 counts them and the input
    normalisation's).

    Attributes:
      variant: `"b0"` … `"b7"`. Defaults to `"b0"`.
      num_classes, include_top, pooling, classifier_activation, padding, dtype, param_dtype,
        precision, axis_name, implementation: as `MobileNetV2Imagenet`.
      dropout: before the classifier (train only). Defaults to `None`: the variant's (0.2–0.5).
      preprocessing: defaults to the ImageNet weights' (`IMAGENET_PREPROCESSING`: inputs in
        [0, 255]).
      bn_momentum, bn_epsilon: defaults to 0.99 and 1e-3 (Keras's).

    References:
      Tan and Le, "EfficientNet: Rethinking Model Scaling for Convolutional Neural Networks",
      2019.
    """

    variant: str = "b0"
    num_classes: int = 1000
    dropout: float | None = None
    include_top: bool = True
    pooling: str | None = None
    classifier_activation: str | None = None
    padding: str = "tf"
    preprocessing: tuple[ic.Step, ...] = IMAGENET_PREPROCESSING
    dtype: common.Dtype | None = None
    param_dtype: common.Dtype = jnp.float32
    precision: lax.PrecisionLike = None
    axis_name: str | None = None
    bn_momentum: float = 0.99
    bn_epsilon: float = 1e-3
    implementation: str = "auto"

    def __post_init__(self) -> None:
        if self.variant not in VARIANTS:
            raise ValueError(
                f"EfficientNet: variant must be one of {sorted(VARIANTS)}, got {self.variant!r}"
            )
        if self.dropout is None:
            object.__setattr__(self, "dropout", VARIANTS[self.variant][3])
        ic.check_fields(self, "EfficientNet")
        super().__post_init__()

    @nn.compact
    def __call__(self, x: ArrayLike, train: bool) -> jax.Array:
        """Classifies `x: (N, H, W, 3)` floating images (features without the top), as
        `MobileNetV2Imagenet`; stochastic depth and dropout need a `"dropout"` rng in training."""
        dtype = common.compute_dtype(self.dtype, self.param_dtype)
        x = ic.preprocess(common.check_images(x, dtype, "EfficientNet"), self.preprocessing)
        bn = ic.conv_bn_fields(self, dtype)
        x = ic.ConvBN(_filters(self.variant, 32), 3, 2, "swish", name="stem", **bn)(x, train)
        x = run_blocks(x, train, block_plan(self.variant), self, dtype)
        x = ic.ConvBN(_filters(self.variant, 1280), 1, 1, "swish", name="last", **bn)(x, train)
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
