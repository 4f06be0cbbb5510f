"""MobileNetV3 small and large for ImageNet (Keras's `keras.applications` layout) from `MBConv`s."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax
from jax.typing import ArrayLike

from sepconv_jax import activations
from sepconv_jax import linen as sl
from sepconv_jax.models import common
from sepconv_jax.models import imagenet_common as ic
from sepconv_jax.models.mbconv import MBConvSpec, run_blocks

#: Blocks as `(expansion, features, kernel, strides, squeeze-excite, activation)`; `"k"` and
#: `"act"` stand for 5 and hard-swish (3 and ReLU when minimalistic).
SMALL: tuple[tuple, ...] = (
    (1, 16, 3, 2, True, "relu"),
    (72 / 16, 24, 3, 2, False, "relu"),
    (88 / 24, 24, 3, 1, False, "relu"),
    (4, 40, "k", 2, True, "act"),
    (6, 40, "k", 1, True, "act"),
    (6, 40, "k", 1, True, "act"),
    (3, 48, "k", 1, True, "act"),
    (3, 48, "k", 1, True, "act"),
    (6, 96, "k", 2, True, "act"),
    (6, 96, "k", 1, True, "act"),
    (6, 96, "k", 1, True, "act"),
)
LARGE: tuple[tuple, ...] = (
    (1, 16, 3, 1, False, "relu"),
    (4, 24, 3, 2, False, "relu"),
    (3, 24, 3, 1, False, "relu"),
    (3, 40, "k", 2, True, "relu"),
    (3, 40, "k", 1, True, "relu"),
    (3, 40, "k", 1, True, "relu"),
    (6, 80, 3, 2, False, "act"),
    (2.5, 80, 3, 1, False, "act"),
    (2.3, 80, 3, 1, False, "act"),
    (2.3, 80, 3, 1, False, "act"),
    (6, 112, 3, 1, True, "act"),
    (6, 112, 3, 1, True, "act"),
    (6, 160, "k", 2, True, "act"),
    (6, 160, "k", 1, True, "act"),
    (6, 160, "k", 1, True, "act"),
)
VARIANTS = {"small": (SMALL, 1024), "large": (LARGE, 1280)}
#: The width multipliers Keras publishes ImageNet weights for.
WIDTHS = (1.0, 0.75)
STEM_FEATURES = 16


def block_plan(variant: str, width: float, minimalistic: bool = False) -> tuple[MBConvSpec, ...]:
    """One `MBConvSpec` per block of `variant` (`"small"`/`"large"`) at `width`.

    Channels are rounded with `make_divisible(…, 8)` (expanded ones too); the squeeze-excite
    squeezes the expanded channels by 4 (rounded), with ReLU inside and a hard-sigmoid gate.
    """
    blocks, _ = VARIANTS[variant]
    md = common.make_divisible
    c_in, plan = STEM_FEATURES, []
    for i, (t, c, k, s, se, act) in enumerate(blocks):
        k = (3 if minimalistic else 5) if k == "k" else k
        act = ("relu" if minimalistic else "hard_swish") if act == "act" else act
        expanded = None if i == 0 else md(c_in * t)
        se_features = md((expanded or c_in) * 0.25) if se and not minimalistic else 0
        features = md(c * width)
        plan.append(MBConvSpec(features, expanded, k, s, act, se_features, "relu", "hard_sigmoid"))
        c_in = features
    return tuple(plan)


class MobileNetV3(nn.Module):
    """MobileNetV3 (small or large) for ImageNet, Keras's layout; any input size ≥ 32.

    Stem: 3×3 conv to 16 channels (stride 2) → BN → act; the blocks of `block_plan` (expand →
    depthwise 3×3/5×5 → [squeeze-excite] → project, hard-swish or ReLU); a 1×1 conv to 6× the
    last block's channels → BN → act; then global average pool → 1×1 conv (bias) to
    1024/1280 → act → dropout → 1×1 conv (bias) to the classes. Large at width 1.0 with 1000
    classes: 5,476,416 parameters without BN statistics (Keras's 5,507,432 counts them).

    Attributes:
      variant: `"small"` or `"large"`. Defaults to `"large"`.
      num_classes, width, include_top, pooling, classifier_activation, padding, dtype,
        param_dtype, precision, axis_name, bn_momentum, bn_epsilon, implementation: as
        `MobileNetV2Imagenet` (width = Keras's `alpha`; the stem keeps 16 channels).
      minimalistic: Keras's variant without squeeze-excite, hard-swish or 5×5 kernels.
        Defaults to False.
      dropout: before the classifier conv (train only). Defaults to 0.2 (Keras's).
      preprocessing: defaults to Keras's `Rescaling(1/127.5, offset=-1)` (inputs in [0, 255]).

    References:
      Howard et al., "Searching for MobileNetV3", 2019.
    """

    variant: str = "large"
    num_classes: int = 1000
    width: float = 1.0
    minimalistic: bool = False
    dropout: float = 0.2
    include_top: bool = True
    pooling: str | None = None
    classifier_activation: str | None = None
    padding: str = "tf"
    preprocessing: tuple[ic.Step, ...] = (("rescale", 1.0 / 127.5, -1.0),)
    dtype: common.Dtype | None = None
    param_dtype: common.Dtype = jnp.float32
    precision: lax.PrecisionLike = None
    axis_name: str | None = None
    bn_momentum: float = 0.999
    bn_epsilon: float = 1e-3
    implementation: str = "auto"

    def __post_init__(self) -> None:
        if self.variant not in VARIANTS:
            raise ValueError(
                f"MobileNetV3: variant must be one of {sorted(VARIANTS)}, got {self.variant!r}"
            )
        ic.check_fields(self, "MobileNetV3")
        super().__post_init__()

    @nn.compact
    def __call__(self, x: ArrayLike, train: bool) -> jax.Array:
        """Classifies `x: (N, H, W, 3)` floating images (features without the top), as
        `MobileNetV2Imagenet`."""
        dtype = common.compute_dtype(self.dtype, self.param_dtype)
        x = ic.preprocess(common.check_images(x, dtype, "MobileNetV3"), self.preprocessing)
        act = "relu" if self.minimalistic else "hard_swish"
        bn = ic.conv_bn_fields(self, dtype)
        x = ic.ConvBN(STEM_FEATURES, 3, 2, act, name="stem", **bn)(x, train)
        plan = block_plan(self.variant, self.width, self.minimalistic)
        x = run_blocks(x, train, plan, self, dtype)
        last = common.make_divisible(plan[-1].features * 6)
        x = ic.ConvBN(last, 1, 1, act, name="last", **bn)(x, train)
        if not self.include_top:
            return ic.pool(x, self.pooling)
        _, head = VARIANTS[self.variant]
        head = common.make_divisible(head * self.width) if self.width > 1.0 else head
        conv = dict(dtype=jnp.float32, param_dtype=self.param_dtype, precision=self.precision)
        h = jnp.mean(x.astype(jnp.float32), axis=(1, 2))
        h = activations.get(act)(sl.PointwiseConv(head, name="head", **conv)(h))
        h = nn.Dropout(self.dropout, deterministic=not train)(h)
        logits = sl.PointwiseConv(self.num_classes, name="classifier", **conv)(h)
        return ic.finish(logits, self.classifier_activation)
