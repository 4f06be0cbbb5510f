"""Fused depthwise → folded BatchNorm → activation → pointwise conv, one GPU kernel where it pays."""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from jax import lax
from jax.typing import ArrayLike

from sepconv_jax import _args, _routing
from sepconv_jax._args import PaddingLike
from sepconv_jax.kernels import config


def _vector(name: str, v: ArrayLike | None, size: int, what: str) -> jax.Array | None:
    if v is None:
        return None
    v = jnp.asarray(v)
    _args.check_floating(name, v.dtype)
    if v.shape != (size,):
        raise ValueError(f"{name} must have shape ({size},) ({what}), got shape {v.shape}")
    return v


def fused_separable_conv(
    x: ArrayLike,
    depthwise_kernel: ArrayLike,
    pointwise_kernel: ArrayLike,
    *,
    bias: ArrayLike | None = None,
    scale: ArrayLike | None = None,
    shift: ArrayLike | None = None,
    activation: str | None = None,
    strides: int | Sequence[int] = 1,
    padding: PaddingLike = "SAME",
    precision: lax.PrecisionLike = None,
    implementation: str = "auto",
) -> jax.Array:
    """`act(depthwise_conv(x, D) * scale + shift) @ P + bias`, fused into one kernel on a GPU.

    The MobileNet block's depthwise conv, its inference-mode BatchNorm folded into a per-channel
    `scale`/`shift`, its ReLU/ReLU6 and the following pointwise conv. The Pallas kernel (Triton
    backend, `sepconv_jax.kernels`) keeps the depthwise output in registers: it reads `x` once
    and writes `y` once. `scale`, `shift` and `bias` are cast to the compute dtype (the promoted
    dtype of `x` and the kernels), as the XLA path computes in it too.

    Args:
      x: `(N, *spatial, C)`, floating dtype.
      depthwise_kernel: `(*window, 1, C*m)`.
      pointwise_kernel: `(C*m, C_out)`.
      bias: `(C_out,)` added after the pointwise conv, or `None` (default).
      scale: `(C*m,)` multiplying the depthwise output (folded BN `gamma / sqrt(var + eps)`),
        or `None` (default).
      shift: `(C*m,)` added after `scale` (folded BN `beta - mean * scale`), or `None` (default).
      activation: `None` (default), `"relu"` or `"relu6"`, between the two convs.
      strides: int or one per spatial dim. Defaults to 1.
      padding: as in `ops.depthwise_conv`. Defaults to `"SAME"`.
      precision: passed to the convolution and the dot.
      implementation: `"auto"` (the kernel on a GPU where supported and measured faster, else
        unfused with the depthwise step as `ops.depthwise_conv` picks it), `"xla"`, `"pallas"`
        (the kernel; interpret mode off GPU) or `"taps"` (unfused, depthwise as a sum over
        taps), as in `ops.depthwise_conv`. Defaults to `"auto"`.

    Returns:
      `(N, *out_spatial, C_out)` in the promoted dtype of `x` and the kernels.

    Raises:
      ValueError: shapes or arguments as `ops.separable_conv`; a bad `activation`, `scale`,
        `shift` or `bias` shape; `implementation="pallas"` for a configuration the kernel does
        not support (3-D input, channel multiplier > 1, padding modes other than zero).
      TypeError: non-floating arrays.

    Examples:
      >>> import jax.numpy as jnp
      >>> y = fused_separable_conv(jnp.ones((1, 8, 8, 4)), jnp.ones((3, 3, 1, 4)),
      ...                          jnp.ones((4, 16)), activation="relu6", implementation="xla")
      >>> y.shape, float(y[0, 4, 4, 0])
      ((1, 8, 8, 16), 24.0)
    """
    x = jnp.asarray(x)
    dw, pw = jnp.asarray(depthwise_kernel), jnp.asarray(pointwise_kernel)
    n = _args.check_input(x)
    _args.check_depthwise_kernel(dw, x.shape)
    _args.check_pointwise_kernel(pw, dw.shape[-1], what="the depthwise output")
    if activation not in config.ACTIVATIONS:
        raise ValueError(f"activation must be one of {config.ACTIVATIONS}, got {activation!r}")
    _args.check_implementation(implementation)
    cm, co = dw.shape[-1], pw.shape[-1]
    scale_a = _vector("scale", scale, cm, "one per depthwise output channel")
    shift_a = _vector("shift", shift, cm, "one per depthwise output channel")
    bias_a = _vector("bias", bias, co, "one per output channel")
    strides_t = _args.normalize_tuple(strides, n, "strides")
    pad = _args.resolve_padding(padding, dw.shape[:-2], (1,) * n)
    x, dw, pw = _args.promote(x, dw, pw)
    scale_a, shift_a, bias_a = (
        None if v is None else v.astype(x.dtype) for v in (scale_a, shift_a, bias_a)
    )
    epilogue = config.Epilogue(scale_a, shift_a, bias_a, activation)
    return _routing.separable(
        x, dw, pw, strides_t, pad, (1,) * n, precision, implementation, epilogue
    )
