"""Shared model helpers: channel rounding, checks, conv → BN, the classifier head, the twin block."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax
from jax.typing import ArrayLike

from sepconv_jax import _args, _norm
from sepconv_jax import _layer_specs as specs

Dtype = specs.Dtype
Act = specs.Act

#: Values of the models' `conv` field: the separable net, or its full-conv twin.
CONVS = ("separable", "full")


def make_divisible(value: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Rounds a channel count to the nearest multiple of `divisor`, never dropping more than 10 %.

    The rounding of the TensorFlow MobileNet reference (and torchvision's `_make_divisible`).

    Args:
      value: the unrounded channel count, e.g. `32 * width`.
      divisor: the multiple to round to. Defaults to 8.
      min_value: the smallest result allowed. Defaults to `divisor`.

    Returns:
      A positive multiple of `divisor`, at least `min_value` and at least `0.9 * value`.

    Examples:
      >>> make_divisible(32 * 0.75), make_divisible(16 * 0.25), make_divisible(1280 * 1.0)
      (24, 8, 1280)
    """
    min_value = divisor if min_value is None else min_value
    rounded = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded


def check_model_fields(
    *, num_classes: int, width: float, dropout: float, conv: str, model: str
) -> None:
    """Validates the fields every model shares.

    Raises:
      ValueError: non-positive `num_classes` or `width`, `dropout` outside `[0, 1)`, or an
        unknown `conv`.
    """
    _args.positive_int(num_classes, "num_classes", model)
    if isinstance(width, bool) or not isinstance(width, (int, float)) or not width > 0:
        raise ValueError(f"{model}: width must be a positive number, got {width!r}")
    if not isinstance(dropout, (int, float)) or not 0.0 <= dropout < 1.0:
        raise ValueError(f"{model}: dropout must be in [0, 1), got {dropout!r}")
    if conv not in CONVS:
        raise ValueError(f"{model}: conv must be one of {CONVS}, got {conv!r}")


def check_images(x: ArrayLike, dtype: Dtype, model: str) -> jax.Array:
    """Checks a batch of images and casts it to the compute dtype.

    Args:
      x: `(N, H, W, C)` images, floating dtype (normalise integer images first).
      dtype: the compute dtype to cast to.
      model: the model's name, for the messages.

    Returns:
      `x` as a `jax.Array` of `dtype`.

    Raises:
      ValueError: `x` is not 4-D. TypeError: `x` is not floating.
    """
    x = jnp.asarray(x)
    if x.ndim != 4:
        raise ValueError(
            f"{model} expects images of shape (N, H, W, C) (e.g. (N, 32, 32, 3) for CIFAR), "
            f"got shape {x.shape}"
        )
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise TypeError(
            f"{model} expects floating images (normalise integer pixels first), got {x.dtype}"
        )
    return x.astype(dtype)


def compute_dtype(dtype: Dtype | None, param_dtype: Dtype) -> Dtype:
    """A model's compute dtype: `dtype`, or `param_dtype` when `dtype` is `None`."""
    return dtype if dtype is not None else param_dtype


def conv_norm(
    x: jax.Array,
    train: bool,
    features: int,
    kernel_size: int,
    strides: int,
    *,
    names: tuple[str, str],
    padding: _args.PaddingLike = "SAME",
    momentum: float,
    epsilon: float,
    axis_name: str | None,
    dtype: Dtype | None,
    param_dtype: Dtype,
    precision: lax.PrecisionLike,
) -> jax.Array:
    """Full K×K conv (no bias) → BatchNorm, as submodules `names` of the calling module.

    Args:
      x: `(N, H, W, C_in)`.
      train: BatchNorm uses batch statistics when `True`.
      features, kernel_size, strides: `C_out`, `K` (square window) and the spatial stride.
      names: the conv's and the BatchNorm's names (they name the parameters in checkpoints).
      padding: the conv's padding, as `nn.Conv`'s. Defaults to `"SAME"`.

    Returns:
      `(N, H/s, W/s, features)`, linear (no activation).
    """
    k = kernel_size
    x = nn.Conv(
        features,
        (k, k),
        strides=strides,
        padding=padding,
        use_bias=False,
        dtype=dtype,
        param_dtype=param_dtype,
        precision=precision,
        name=names[0],
    )(x)
    return _norm.batch_norm(
        x,
        train,
        name=names[1],
        momentum=momentum,
        epsilon=epsilon,
        axis_name=axis_name,
        param_dtype=param_dtype,
    )


def classifier_head(
    x: jax.Array, train: bool, *, num_classes: int, dropout: float, param_dtype: Dtype
) -> jax.Array:
    """Global average pool → dropout (train only) → Dense `classifier`, all in float32.

    Args:
      x: `(N, H, W, C)` features.
      train: dropout is applied when `True` (needs a `"dropout"` rng when `dropout > 0`).

    Returns:
      float32 logits `(N, num_classes)`.
    """
    pooled = jnp.mean(x.astype(jnp.float32), axis=(1, 2))
    pooled = nn.Dropout(dropout, deterministic=not train)(pooled)
    dense = nn.Dense(num_classes, dtype=jnp.float32, param_dtype=param_dtype, name="classifier")
    return dense(pooled)


class ConvNormAct(nn.Module):
    """Full K×K convolution (no bias) → BatchNorm → activation: the stem and the twin block.

    The full-conv twin of a `SeparableBlock` (MobileNetV1 with `conv="full"`) is this block with
    the same input/output channels and stride: one `(K, K, C_in, C_out)` kernel instead of a
    `(K, K, 1, C_in)` depthwise and a `(C_in, C_out)` pointwise kernel.

    Attributes:
      features: output channels `C_out`.
      kernel_size: `K` (square window). Defaults to 3.
      strides: spatial stride. Defaults to 1.
      act: activation, or `None` for a linear block (BN only). Defaults to `nn.relu`.
      padding: the conv's padding, as `nn.Conv`'s. Defaults to `"SAME"`.
      momentum, epsilon, axis_name: BatchNorm settings (PyTorch's 0.9 / 1e-5 by default).
      dtype: compute dtype. Defaults to `None` (inferred from input and params).
      param_dtype: parameter dtype. Defaults to float32.
      precision: passed to the convolution.

    Submodules: `conv` (`nn.Conv`, kernel `(K, K, C_in, C_out)`) and `norm` (`nn.BatchNorm`).
    """

    features: int
    kernel_size: int = 3
    strides: int = 1
    act: Act | None = nn.relu
    padding: _args.PaddingLike = "SAME"
    momentum: float = 0.9
    epsilon: float = 1e-5
    axis_name: str | None = None
    dtype: Dtype | None = None
    param_dtype: Dtype = jnp.float32
    precision: lax.PrecisionLike = None

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        """Applies the block to `x: (N, H, W, C_in)`; returns `(N, H/s, W/s, features)`."""
        x = conv_norm(
            x,
            train,
            self.features,
            self.kernel_size,
            self.strides,
            names=("conv", "norm"),
            padding=self.padding,
            momentum=self.momentum,
            epsilon=self.epsilon,
            axis_name=self.axis_name,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            precision=self.precision,
        )
        return x if self.act is None else self.act(x)
