"""ConvNeXt for ImageNet (Keras's `keras.applications` layout) from the library's depthwise and
pointwise convs and its channels-last LayerNorm."""

from __future__ import annotations

from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.typing import ArrayLike

from sepconv_jax import activations
from sepconv_jax import linen as sl
from sepconv_jax.models import common
from sepconv_jax.models import imagenet_common as ic

#: `(blocks per stage, channels per stage)` per variant.
VARIANTS: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = {
    "tiny": ((3, 3, 9, 3), (96, 192, 384, 768)),
    "small": ((3, 3, 27, 3), (96, 192, 384, 768)),
    "base": ((3, 3, 27, 3), (128, 256, 512, 1024)),
    "large": ((3, 3, 27, 3), (192, 384, 768, 1536)),
}
#: The ImageNet weights' input normalisation (inputs in [0, 255]).
IMAGENET_PREPROCESSING: tuple[ic.Step, ...] = (
    (
        "normalize",
        (0.485 * 255, 0.456 * 255, 0.406 * 255),
        ((0.229 * 255) ** 2, (0.224 * 255) ** 2, (0.225 * 255) ** 2),
    ),
)


class BlockSpec(NamedTuple):
    """One ConvNeXt block: its stage, index in the stage, channels and stochastic-depth rate."""

    stage: int
    index: int
    features: int
    drop_path: float


def block_plan(variant: str, drop_path_rate: float = 0.0) -> tuple[BlockSpec, ...]:
    """One `BlockSpec` per block; stochastic depth grows linearly from 0 to `drop_path_rate`."""
    depths, dims = VARIANTS[variant]
    rates = np.linspace(0.0, drop_path_rate, sum(depths))
    ids = [(i, j) for i, d in enumerate(depths) for j in range(d)]
    return tuple(
        BlockSpec(i, j, dims[i], float(rate)) for (i, j), rate in zip(ids, rates, strict=True)
    )


class LayerScale(nn.Module):
    """`x * gamma` with a learned per-channel `gamma` `(C,)`, initialised to `init_value`.

    References:
      Touvron et al., "Going deeper with Image Transformers", 2021.
    """

    init_value: float = 1e-6
    param_dtype: common.Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """Scales `x: (..., C)` channel by channel."""
        gamma = self.param(
            "gamma", nn.initializers.constant(self.init_value), (x.shape[-1],), self.param_dtype
        )
        return x * jnp.reshape(gamma.astype(x.dtype), (1,) * (x.ndim - 1) + gamma.shape)


class ConvNeXtBlock(nn.Module):
    """7×7 depthwise conv (bias) → LayerNorm → 1×1 to 4C (bias) → GELU → 1×1 to C (bias) →
    layer scale → stochastic depth, + the input.

    Attributes:
      spec: the block (`BlockSpec`).
      padding: convention of the depthwise conv (equal for both at stride 1).
      layer_scale: initial layer scale, or `None` for none. Defaults to 1e-6.
      dtype, param_dtype, precision, implementation: as the library's blocks.

    Submodules: `depthwise`, `norm`, `pointwise_1`, `pointwise_2`, `layer_scale`, `drop_path`.
    """

    spec: BlockSpec
    padding: str = "tf"
    layer_scale: float | None = 1e-6
    dtype: common.Dtype | None = None
    param_dtype: common.Dtype = jnp.float32
    precision: lax.PrecisionLike = None
    implementation: str = "auto"

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        """Applies the block to `x: (N, H, W, C)`; returns `(N, H, W, C)`."""
        c = self.spec.features
        conv = dict(dtype=self.dtype, param_dtype=self.param_dtype, precision=self.precision)
        h = sl.DepthwiseConv(
            7,
            padding=ic.conv_padding(7, self.padding),
            use_bias=True,
            implementation=self.implementation,
            name="depthwise",
            **conv,
        )(x)
        h = sl.LayerNorm(1e-6, param_dtype=self.param_dtype, name="norm")(h)
        h = activations.get("gelu")(sl.PointwiseConv(4 * c, name="pointwise_1", **conv)(h))
        h = sl.PointwiseConv(c, name="pointwise_2", **conv)(h)
        if self.layer_scale is not None:
            h = LayerScale(self.layer_scale, self.param_dtype, name="layer_scale")(h)
        return sl.DropPath(self.spec.drop_path, name="drop_path")(h, deterministic=not train) + x


class ConvNeXt(nn.Module):
    """ConvNeXt (tiny, small, base, large) for ImageNet, Keras's layout; any input size ≥ 32.

    Stem: 4×4 conv, stride 4 (bias) → LayerNorm; four stages of `ConvNeXtBlock`s, each after
    the first entered by LayerNorm → 2×2 conv, stride 2; then global average pool → LayerNorm →
    Dense. Tiny with 1000 classes: 28,589,128 parameters (Keras's count). No BatchNorm: nothing
    for `fold_batchnorm` to fold.

    Attributes:
      variant: one of `VARIANTS`. Defaults to `"tiny"`.
      num_classes, include_top, pooling, classifier_activation, padding, dtype, param_dtype,
        precision, implementation: as `MobileNetV2Imagenet` (without the top, the LayerNorm is
        still applied, to the feature map or to its pool, as Keras does).
      dropout: before the classifier (train only). Defaults to 0.0 (Keras has none).
      drop_path_rate: the last block's stochastic-depth rate. Defaults to 0.0 (Keras's).
      layer_scale: initial layer scale, or `None` for none. Defaults to 1e-6.
      preprocessing: defaults to the ImageNet weights' (`IMAGENET_PREPROCESSING`).

    References:
      Liu et al., "A ConvNet for the 2020s", 2022.
    """

    variant: str = "tiny"
    num_classes: int = 1000
    dropout: float = 0.0
    drop_path_rate: float = 0.0
    layer_scale: float | None = 1e-6
    include_top: bool = True
    pooling: str | None = None
    classifier_activation: str | None = None
    padding: str = "tf"
    preprocessing: tuple[ic.Step, ...] = IMAGENET_PREPROCESSING
    dtype: common.Dtype | None = None
    param_dtype: common.Dtype = jnp.float32
    precision: lax.PrecisionLike = None
    implementation: str = "auto"

    def __post_init__(self) -> None:
        if self.variant not in VARIANTS:
            raise ValueError(
                f"ConvNeXt: variant must be one of {sorted(VARIANTS)}, got {self.variant!r}"
            )
        if not isinstance(self.drop_path_rate, (int, float)) or not 0 <= self.drop_path_rate < 1:
            raise ValueError(
                f"ConvNeXt: drop_path_rate must be in [0, 1), got {self.drop_path_rate!r}"
            )
        ic.check_fields(self, "ConvNeXt")
        super().__post_init__()

    @nn.compact
    def __call__(self, x: ArrayLike, train: bool) -> jax.Array:
        """Classifies `x: (N, H, W, 3)` floating images (features without the top), as
        `MobileNetV2Imagenet`; stochastic depth needs a `"dropout"` rng in training."""
        dtype = common.compute_dtype(self.dtype, self.param_dtype)
        x = ic.preprocess(common.check_images(x, dtype, "ConvNeXt"), self.preprocessing)
        conv = dict(dtype=dtype, param_dtype=self.param_dtype, precision=self.precision)
        norm = dict(epsilon=1e-6, param_dtype=self.param_dtype)
        _, dims = VARIANTS[self.variant]
        x = nn.Conv(dims[0], (4, 4), strides=4, padding="VALID", name="stem", **conv)(x)
        x = sl.LayerNorm(name="stem_norm", **norm)(x)
        for spec in block_plan(self.variant, self.drop_path_rate):
            if spec.index == 0 and spec.stage > 0:
                x = sl.LayerNorm(name=f"down{spec.stage}_norm", **norm)(x)
                down = nn.Conv(
                    spec.features,
                    (2, 2),
                    strides=2,
                    padding="VALID",
                    name=f"down{spec.stage}",
                    **conv,
                )
                x = down(x)
            x = ConvNeXtBlock(
                spec,
                padding=self.padding,
                layer_scale=self.layer_scale,
                implementation=self.implementation,
                name=f"stage{spec.stage}_block{spec.index}",
                **conv,
            )(x, train)
        if not self.include_top:
            return sl.LayerNorm(name="head_norm", **norm)(ic.pool(x, self.pooling))
        h = sl.LayerNorm(name="head_norm", **norm)(jnp.mean(x.astype(jnp.float32), axis=(1, 2)))
        h = nn.Dropout(self.dropout, deterministic=not train)(h)
        logits = nn.Dense(
            self.num_classes, dtype=jnp.float32, param_dtype=self.param_dtype, name="classifier"
        )(h)
        return ic.finish(logits, self.classifier_activation)
