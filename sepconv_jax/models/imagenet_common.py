"""Pieces the ImageNet nets share: padding conventions, input preprocessing, conv → BN, the head."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

from sepconv_jax import _norm, activations
from sepconv_jax.models import common

#: Padding conventions: `"tf"` is TensorFlow/Keras `"SAME"` (at stride 2 on even sizes it pads
#: (0, 1), as Keras's `correct_pad` does), `"torch"` PyTorch's symmetric `(K-1)/2` on each side.
PADDINGS = ("tf", "torch")
#: `include_top=False` outputs: the feature map (`None`), or its spatial average or maximum.
POOLINGS = (None, "avg", "max")
CLASSIFIER_ACTIVATIONS = (None, "softmax")
#: One preprocessing step: `("rescale", scale, offset)` computes `x * scale + offset`;
#: `("normalize", mean, variance)` computes `(x - mean) / max(sqrt(variance), 1e-7)` (Keras's
#: `Normalization`). Scale, offset, mean and variance are floats or one float per channel.
Step = tuple


def conv_padding(kernel_size: int, convention: str) -> str | tuple[tuple[int, int], ...]:
    """The padding argument of a square `kernel_size` conv under `convention` (one of `PADDINGS`)."""
    if convention == "tf":
        return "SAME"
    p = (kernel_size - 1) // 2
    return ((p, p), (p, p))


def check_fields(model: nn.Module, name: str) -> None:
    """Validates the fields every ImageNet net shares.

    Raises:
      ValueError: a bad `num_classes`, `width` or `dropout` (see `common.check_model_fields`),
        or an unknown `padding`, `pooling` or `classifier_activation`, or a malformed
        `preprocessing` step.
    """
    common.check_model_fields(
        num_classes=model.num_classes,
        width=getattr(model, "width", 1.0),
        dropout=model.dropout,
        conv="separable",
        model=name,
    )
    if model.padding not in PADDINGS:
        raise ValueError(f"{name}: padding must be one of {PADDINGS}, got {model.padding!r}")
    if model.pooling not in POOLINGS:
        raise ValueError(f"{name}: pooling must be one of {POOLINGS}, got {model.pooling!r}")
    if model.classifier_activation not in CLASSIFIER_ACTIVATIONS:
        raise ValueError(
            f"{name}: classifier_activation must be one of {CLASSIFIER_ACTIVATIONS}, "
            f"got {model.classifier_activation!r}"
        )
    for step in model.preprocessing:
        if not (isinstance(step, tuple) and len(step) == 3 and step[0] in ("rescale", "normalize")):
            raise ValueError(
                f"{name}: each preprocessing step must be ('rescale', scale, offset) or "
                f"('normalize', mean, variance), got {step!r}"
            )


def preprocess(x: jax.Array, steps: tuple[Step, ...]) -> jax.Array:
    """Applies the `preprocessing` steps (see `Step`) to `x: (N, H, W, C)` in its dtype."""

    def const(v: float | tuple[float, ...]) -> jax.Array:
        a = jnp.asarray(v, x.dtype)
        return jnp.reshape(a, (1, 1, 1, -1)) if a.ndim else a

    for kind, a, b in steps:
        if kind == "rescale":
            x = x * const(a) + const(b)
        else:
            x = (x - const(a)) / jnp.maximum(jnp.sqrt(const(b)), jnp.asarray(1e-7, x.dtype))
    return x


class ConvBN(nn.Module):
    """Full K×K conv (no bias) → BatchNorm → activation: the nets' stems and last convs.

    Attributes:
      features, kernel_size, strides: the conv's `C_out`, square window and stride.
      act: activation name, or `None` for none.
      padding: convention, one of `PADDINGS`. Defaults to `"tf"`.
      momentum, epsilon: BatchNorm settings (Flax's momentum convention). Defaults to Keras's
        0.99 and 1e-3.
      axis_name, dtype, param_dtype, precision: as the library's blocks.

    Submodules: `conv` (`nn.Conv`) and `norm` (`nn.BatchNorm`).
    """

    features: int
    kernel_size: int = 3
    strides: int = 1
    act: str | None = None
    padding: str = "tf"
    momentum: float = 0.99
    epsilon: float = 1e-3
    axis_name: str | None = None
    dtype: common.Dtype | None = None
    param_dtype: common.Dtype = jnp.float32
    precision: lax.PrecisionLike = None

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        """Applies the block to `x: (N, H, W, C_in)`; returns `(N, H/s, W/s, features)`."""
        k = self.kernel_size
        x = nn.Conv(
            self.features,
            (k, k),
            strides=self.strides,
            padding=conv_padding(k, self.padding),
            use_bias=False,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            precision=self.precision,
            name="conv",
        )(x)
        x = _norm.batch_norm(
            x,
            train,
            name="norm",
            momentum=self.momentum,
            epsilon=self.epsilon,
            axis_name=self.axis_name,
            param_dtype=self.param_dtype,
        )
        return x if self.act is None else activations.get(self.act)(x)


def conv_bn_fields(model: nn.Module, dtype: common.Dtype) -> dict[str, object]:
    """The `ConvBN` arguments an ImageNet net passes to its stem and last conv: its padding
    convention, BatchNorm settings, compute `dtype`, parameter dtype and precision."""
    return dict(
        padding=model.padding,
        momentum=model.bn_momentum,
        epsilon=model.bn_epsilon,
        axis_name=model.axis_name,
        dtype=dtype,
        param_dtype=model.param_dtype,
        precision=model.precision,
    )


def pool(x: jax.Array, pooling: str | None) -> jax.Array:
    """`x: (N, H, W, C)` unchanged (`None`), or its spatial mean / max `(N, C)`, in float32."""
    if pooling is None:
        return x
    x = x.astype(jnp.float32)
    return jnp.mean(x, axis=(1, 2)) if pooling == "avg" else jnp.max(x, axis=(1, 2))


def finish(logits: jax.Array, classifier_activation: str | None) -> jax.Array:
    """float32 `logits`, or their softmax when `classifier_activation == "softmax"`."""
    logits = logits.astype(jnp.float32)
    return jax.nn.softmax(logits, axis=-1) if classifier_activation == "softmax" else logits
