"""MobileNetV2 for CIFAR (pytorch-cifar's layout) from `InvertedResidual`s, and its full-conv twin."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax
from jax.typing import ArrayLike

from sepconv_jax import _args, _norm
from sepconv_jax import linen as sl
from sepconv_jax.models import common
from sepconv_jax.models import imagenet_common as ic

#: pytorch-cifar's blocks as `(expansion, features, num_blocks, strides)`; the second stage has
#: stride 1 (the paper's ImageNet net: 2) so that 32×32 inputs end on a 4×4 map.
CIFAR_CFG: tuple[tuple[int, int, int, int], ...] = (
    (1, 16, 1, 1),
    (6, 24, 2, 1),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)
#: One block per stage, for tests: covers identity, projection and strided blocks at width 0.25.
TINY_CFG: tuple[tuple[int, int, int, int], ...] = tuple((t, c, 1, s) for t, c, _, s in CIFAR_CFG)
STEM_FEATURES = 32
LAST_FEATURES = 1280
SHORTCUTS = ("projection", "paper")


def check_fields(model: object, name: str) -> None:
    """Validates a MobileNetV2's fields (shared by the linen and nnx builds).

    Raises:
      ValueError: a bad shared field (see `common.check_model_fields`) or an unknown `shortcut`.
    """
    common.check_model_fields(
        num_classes=model.num_classes,
        width=model.width,
        dropout=model.dropout,
        conv=model.conv,
        model=name,
    )
    if model.shortcut not in SHORTCUTS:
        raise ValueError(f"{name}: shortcut must be one of {SHORTCUTS}, got {model.shortcut!r}")


def block_plan(
    cfg: tuple[tuple[int, int, int, int], ...], width: float
) -> list[tuple[int, int, int]]:
    """Expands `cfg` into one `(expansion, features, strides)` per block, channels rounded."""
    return [
        (t, common.make_divisible(c * width), s if i == 0 else 1)
        for t, c, n, s in cfg
        for i in range(n)
    ]


def channels(width: float) -> tuple[int, int]:
    """The stem and last-conv channels at `width` (the last never below 1280, as torchvision)."""
    stem = common.make_divisible(STEM_FEATURES * width)
    return stem, common.make_divisible(LAST_FEATURES * max(1.0, width))


class FullInvertedResidual(nn.Module):
    """The full-conv twin of `InvertedResidual`: expand 1×1 → BN → act → full K×K conv → BN.

    The depthwise K×K → BN → act → projection 1×1 of `InvertedResidual` (together a separable
    conv `C_exp → C_out`) is replaced by one full K×K conv `C_exp → C_out` → BN; the expansion
    and the linear bottleneck (no activation after the last BN) are kept, and so is the identity
    residual at stride 1 with `C_in == features`.

    Submodules: `expand`, `expand_norm` (absent when `expansion == 1`), `conv` (`nn.Conv`,
    kernel `(K, K, C_exp, features)`, padded by `padding`), `conv_norm`.
    """

    features: int
    expansion: int = 6
    strides: int = 1
    kernel_size: int = 3
    padding: _args.PaddingLike = "SAME"
    act: common.Act = nn.relu6
    momentum: float = 0.9
    epsilon: float = 1e-5
    axis_name: str | None = None
    dtype: common.Dtype | None = None
    param_dtype: common.Dtype = jnp.float32
    precision: lax.PrecisionLike = None

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        """Applies the block to `x: (N, H, W, C_in)`; returns `(N, H/s, W/s, features)`."""
        norm = dict(
            momentum=self.momentum,
            epsilon=self.epsilon,
            axis_name=self.axis_name,
            param_dtype=self.param_dtype,
        )
        h = x
        if self.expansion != 1:
            h = sl.PointwiseConv(
                x.shape[-1] * self.expansion,
                use_bias=False,
                dtype=self.dtype,
                param_dtype=self.param_dtype,
                precision=self.precision,
                name="expand",
            )(h)
            h = self.act(_norm.batch_norm(h, train, name="expand_norm", **norm))
        h = common.conv_norm(
            h,
            train,
            self.features,
            self.kernel_size,
            self.strides,
            names=("conv", "conv_norm"),
            padding=self.padding,
            dtype=self.dtype,
            precision=self.precision,
            **norm,
        )
        if self.strides == 1 and x.shape[-1] == self.features:
            h = h + x
        return h


class CifarBlock(nn.Module):
    """One MobileNetV2 block as pytorch-cifar builds it, around the library's `InvertedResidual`.

    pytorch-cifar's block differs from the paper's (and `InvertedResidual`'s) in two ways, both
    kept here by default because they set its parameter count (2,296,922):

    * `shortcut="projection"`: at stride 1 with `C_in != C_out` it adds a 1×1 conv → BN of the
      block input (`shortcut`, `shortcut_norm`). `"paper"` drops it (no residual there).
    * `always_expand=True`: at expansion 1 it still has the 1×1 expansion conv → BN → act
      (`expand`, `expand_norm`, here applied before `core`, which then skips its own). When this
      block also has `C_in == C_out` at stride 1 (only at widths below 0.28), `core`'s identity
      residual is taken from the expanded activations.

    `padding` is the K×K conv's convention (`imagenet_common.PADDINGS`): `"tf"` (`"SAME"`) or
    `"torch"` (`(K-1)/2` on each side, as pytorch-cifar).

    Submodules: `core` (`InvertedResidual`, or `FullInvertedResidual` when `conv="full"`), and the
    optional `expand`, `expand_norm`, `shortcut`, `shortcut_norm`.
    """

    features: int
    expansion: int
    strides: int = 1
    conv: str = "separable"
    shortcut: str = "projection"
    always_expand: bool = True
    kernel_size: int = 3
    padding: str = "tf"
    act: common.Act = nn.relu
    momentum: float = 0.9
    epsilon: float = 1e-5
    axis_name: str | None = None
    dtype: common.Dtype | None = None
    param_dtype: common.Dtype = jnp.float32
    precision: lax.PrecisionLike = None
    implementation: str = "auto"

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        """Applies the block to `x: (N, H, W, C_in)`; returns `(N, H/s, W/s, features)`."""
        c_in = x.shape[-1]
        norm = dict(
            momentum=self.momentum,
            epsilon=self.epsilon,
            axis_name=self.axis_name,
            param_dtype=self.param_dtype,
        )
        dense = dict(dtype=self.dtype, param_dtype=self.param_dtype, precision=self.precision)
        h = x
        if self.expansion == 1 and self.always_expand:
            h = sl.PointwiseConv(c_in, use_bias=False, name="expand", **dense)(h)
            h = self.act(_norm.batch_norm(h, train, name="expand_norm", **norm))
        core_args = dict(
            expansion=self.expansion,
            strides=self.strides,
            kernel_size=self.kernel_size,
            padding=ic.conv_padding(self.kernel_size, self.padding),
            act=self.act,
            dtype=self.dtype,
            precision=self.precision,
            name="core",
            **norm,
        )
        if self.conv == "full":
            y = FullInvertedResidual(self.features, **core_args)(h, train)
        else:
            core = sl.InvertedResidual(
                self.features, implementation=self.implementation, **core_args
            )
            y = core(h, train)
        if self.shortcut == "projection" and self.strides == 1 and c_in != self.features:
            s = sl.PointwiseConv(self.features, use_bias=False, name="shortcut", **dense)(x)
            y = y + _norm.batch_norm(s, train, name="shortcut_norm", **norm)
        return y


class MobileNetV2(nn.Module):
    """MobileNetV2 for 32×32 images, as pytorch-cifar's `MobileNetV2` (2,296,922 parameters).

    Stem: 3×3 conv (32 channels, stride 1) → BN → act. Then the blocks of `cfg` (see
    `CifarBlock`: the library's `InvertedResidual` plus pytorch-cifar's projection shortcut and
    expansion conv at expansion 1), a 1×1 conv 320 → 1280 → BN → act, a global average pool
    (over the final 4×4 map for 32×32 inputs), dropout and a Dense classifier. The activation is
    ReLU as in pytorch-cifar (the paper: ReLU6). Parameters at `num_classes=10`, `width=1.0`:
    2,296,922 (exactly pytorch-cifar's); the full twin 9,924,026; `shortcut="paper"` 2,237,770;
    the paper's blocks (`shortcut="paper", always_expand=False`, registry `mobilenet_v2_paper`)
    2,236,682.

    `conv="full"` builds the twin: in every block the depthwise K×K → BN → act → projection 1×1
    (a separable conv `C_exp → C_out`) becomes one full K×K conv `C_exp → C_out` → BN
    (`FullInvertedResidual`); expansion, linear bottleneck and shortcuts are kept.

    Padding is `"SAME"` by default (`padding="tf"`): at stride 2 it pads (0, 1) where PyTorch
    pads (1, 1); `padding="torch"` pads (1, 1) as pytorch-cifar (for its weights, see
    `interop.from_torch`). Parameter counts and shapes are the same either way.

    Attributes:
      num_classes: classifier outputs. Defaults to 10.
      width: width multiplier on every channel count (rounded with `make_divisible(…, 8)`; the
        last conv keeps at least 1280). Defaults to 1.0.
      dropout: dropout rate before the classifier (train only; needs a `"dropout"` rng when > 0).
        Defaults to 0.0.
      conv: `"separable"` (default) or `"full"` (the twin).
      shortcut: `"projection"` (default, pytorch-cifar) or `"paper"` (no projection shortcut).
      always_expand: keep pytorch-cifar's 1×1 expansion at expansion 1. Defaults to `True`.
      cfg: stages as `(expansion, features, num_blocks, strides)`. Defaults to `CIFAR_CFG`.
      act: activation. Defaults to `nn.relu`.
      dtype: compute dtype; `None` (default) computes in `param_dtype`. Logits are float32 always.
      param_dtype: parameter dtype. Defaults to float32.
      precision: passed to every convolution.
      axis_name: BatchNorm's cross-device axis (synchronised batch statistics), or `None`.
      bn_momentum: BatchNorm momentum (PyTorch's 0.9). Defaults to 0.9.
      bn_epsilon: BatchNorm epsilon. Defaults to 1e-5.
      implementation: depthwise implementation passed to the library. Defaults to `"auto"`.
      padding: the 3×3 convs' convention, `"tf"` (TensorFlow `"SAME"`) or `"torch"` (symmetric,
        for PyTorch weights). Defaults to `"tf"`.

    References:
      Sandler et al., "MobileNetV2: Inverted Residuals and Linear Bottlenecks", 2018.
      https://github.com/kuangliu/pytorch-cifar (models/mobilenetv2.py).

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> model = MobileNetV2()
      >>> x = jax.ShapeDtypeStruct((8, 32, 32, 3), jnp.float32)  # shapes only: no compute
      >>> variables = jax.eval_shape(lambda x: model.init(jax.random.key(0), x, train=False), x)
      >>> sum(p.size for p in jax.tree.leaves(variables["params"]))
      2296922
      >>> jax.eval_shape(lambda v, x: model.apply(v, x, train=False), variables, x).shape
      (8, 10)

      Training applies with `train=True, mutable=["batch_stats"]` and gets
      `(logits, {"batch_stats": ...})` back.
    """

    num_classes: int = 10
    width: float = 1.0
    dropout: float = 0.0
    conv: str = "separable"
    shortcut: str = "projection"
    always_expand: bool = True
    cfg: tuple[tuple[int, int, int, int], ...] = CIFAR_CFG
    act: common.Act = nn.relu
    dtype: common.Dtype | None = None
    param_dtype: common.Dtype = jnp.float32
    precision: lax.PrecisionLike = None
    axis_name: str | None = None
    bn_momentum: float = 0.9
    bn_epsilon: float = 1e-5
    implementation: str = "auto"
    padding: str = "tf"

    def __post_init__(self) -> None:
        check_fields(self, "MobileNetV2")
        if self.padding not in ic.PADDINGS:
            raise ValueError(
                f"MobileNetV2: padding must be one of {ic.PADDINGS}, got {self.padding!r}"
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
        x = common.check_images(x, dtype, "MobileNetV2")
        shared = dict(
            act=self.act,
            momentum=self.bn_momentum,
            epsilon=self.bn_epsilon,
            axis_name=self.axis_name,
            dtype=dtype,
            param_dtype=self.param_dtype,
            precision=self.precision,
        )
        stem, last = channels(self.width)
        pad = ic.conv_padding(3, self.padding)
        x = common.ConvNormAct(stem, 3, padding=pad, name="stem", **shared)(x, train)
        for i, (t, c, s) in enumerate(block_plan(self.cfg, self.width)):
            x = CifarBlock(
                c,
                t,
                s,
                conv=self.conv,
                shortcut=self.shortcut,
                always_expand=self.always_expand,
                padding=self.padding,
                implementation=self.implementation,
                name=f"block{i}",
                **shared,
            )(x, train)
        x = common.ConvNormAct(last, 1, name="last", **shared)(x, train)
        return common.classifier_head(
            x,
            train,
            num_classes=self.num_classes,
            dropout=self.dropout,
            param_dtype=self.param_dtype,
        )
