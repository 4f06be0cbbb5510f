"""Pure functional depthwise, pointwise and depthwise-separable convolutions (channels-last).

Conventions (fixed; the modules, models and kernels rely on them):

* `x` is `(N, *spatial, C)` with 1, 2 or 3 spatial dims.
* A depthwise kernel is `(*window, 1, C*m)`: exactly what `flax.linen.Conv(feature_group_count=C)`
  holds. Output channel `c*m + k` (`k < m`) is computed from input channel `c` alone.
* A pointwise kernel is `(C_in, C_out)`, like `flax.linen.Dense`.
* A full kernel is `(*window, C_in, C_out)` (HWIO), like `flax.linen.Conv`.

"Separable" always means depthwise then pointwise (MobileNet, Xception). Haiku's
`SeparableDepthwiseConv2D` is something else (a k×1 then a 1×k depthwise conv).

References:
  Howard et al., "MobileNets: Efficient Convolutional Neural Networks for Mobile Vision
  Applications", 2017. Chollet, "Xception: Deep Learning with Depthwise Separable Convolutions",
  2017.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
from jax import lax
from jax.typing import ArrayLike

from sepconv_jax import _args, _routing
from sepconv_jax._args import IMPLEMENTATIONS, PaddingLike
from sepconv_jax._depthwise_paths import grouped_conv_only

Precision = lax.PrecisionLike

__all__ = [
    "IMPLEMENTATIONS",
    "depthwise_conv",
    "full_to_separable",
    "grouped_conv_only",
    "pointwise_conv",
    "separable_conv",
    "separable_to_full",
]


def depthwise_conv(
    x: ArrayLike,
    kernel: ArrayLike,
    *,
    strides: int | Sequence[int] = 1,
    padding: PaddingLike = "SAME",
    dilation: int | Sequence[int] = 1,
    precision: Precision = None,
    implementation: str = "auto",
) -> jax.Array:
    """Depthwise convolution: every input channel convolved on its own with `m` filters.

    Args:
      x: input, `(N, *spatial, C)` with 1, 2 or 3 spatial dims, floating dtype.
      kernel: `(*window, 1, C*m)`; output channel `c*m + k` reads input channel `c` only.
      strides: int or one per spatial dim. Defaults to 1.
      padding: `"SAME"` (default), `"VALID"`, `"CAUSAL"`, `"CIRCULAR"`, `"REFLECT"`,
        `"REPLICATE"` (the last three: that border by the window's own amount), an int, one
        int / `(lo, hi)` pair per spatial dim (zeros), or `(mode, amount)`: a border mode by an
        explicit amount, e.g. `("REFLECT", 1)` for PyTorch's `padding=1,
        padding_mode="reflect"` (see `_args.resolve_padding`).
      dilation: kernel dilation, int or one per spatial dim. Defaults to 1.
      precision: passed to `lax.conv_general_dilated`.
      implementation: `"auto"` (a GPU kernel where supported and faster; on the CPU backend
        `"taps"`, many times faster there than XLA:CPU's grouped conv; else XLA's conv), `"xla"`
        (always `lax.conv_general_dilated`), `"pallas"` (the Pallas kernel; interpret mode off
        GPU), or `"taps"` (on any backend: the sum over the window's taps of shifted slices times
        per-channel weights, one elementwise XLA fusion; `precision` does not apply). Defaults to
        `"auto"`.

    Returns:
      `(N, *out_spatial, C*m)` in the promoted dtype of `x` and `kernel`.

    Raises:
      ValueError: wrong rank, channel mismatch, bad kernel shape, padding, stride or dilation.
      TypeError: non-floating `x` or `kernel`.

    Examples:
      >>> import jax.numpy as jnp
      >>> x = jnp.ones((2, 8, 8, 3))
      >>> depthwise_conv(x, jnp.ones((3, 3, 1, 6))).shape
      (2, 8, 8, 6)
    """
    x, kernel = jnp.asarray(x), jnp.asarray(kernel)
    n = _args.check_input(x)
    _args.check_depthwise_kernel(kernel, x.shape)
    strides_t = _args.normalize_tuple(strides, n, "strides")
    dilation_t = _args.normalize_tuple(dilation, n, "dilation")
    pad = _args.resolve_padding(padding, kernel.shape[:-2], dilation_t)
    _args.check_implementation(implementation)
    x, kernel = _args.promote(x, kernel)
    return _routing.depthwise(x, kernel, strides_t, pad, dilation_t, precision, implementation)


def pointwise_conv(x: ArrayLike, kernel: ArrayLike, *, precision: Precision = None) -> jax.Array:
    """Pointwise (1×1) convolution: a Dense over the channel (last) axis.

    Args:
      x: `(..., C_in)`, floating dtype (any leading shape, e.g. `(N, *spatial, C_in)`).
      kernel: `(C_in, C_out)`.
      precision: passed to `lax.dot_general`.

    Returns:
      `(..., C_out)` in the promoted dtype of `x` and `kernel`.

    Raises:
      ValueError: `kernel` not 2-D or `C_in` mismatch. TypeError: non-floating dtypes.

    Examples:
      >>> import jax.numpy as jnp
      >>> pointwise_conv(jnp.ones((2, 4, 4, 3)), jnp.ones((3, 5))).shape
      (2, 4, 4, 5)
    """
    x, kernel = jnp.asarray(x), jnp.asarray(kernel)
    _args.check_floating("x", x.dtype)
    if x.ndim < 1:
        raise ValueError(f"x must have a channel axis, got shape {x.shape}")
    _args.check_pointwise_kernel(kernel, x.shape[-1])
    x, kernel = _args.promote(x, kernel)
    return _routing.pointwise(x, kernel, precision)


def separable_conv(
    x: ArrayLike,
    depthwise_kernel: ArrayLike,
    pointwise_kernel: ArrayLike,
    *,
    strides: int | Sequence[int] = 1,
    padding: PaddingLike = "SAME",
    dilation: int | Sequence[int] = 1,
    precision: Precision = None,
    implementation: str = "auto",
) -> jax.Array:
    """Depthwise-separable convolution: `pointwise_conv(depthwise_conv(x, D), P)`.

    Equal to a full convolution with kernel `separable_to_full(D, P, m)`.

    Args:
      x: `(N, *spatial, C)`, floating dtype.
      depthwise_kernel: `(*window, 1, C*m)`.
      pointwise_kernel: `(C*m, C_out)`.
      strides, padding, dilation, precision: as in `depthwise_conv`.
      implementation: `"auto"`, `"xla"` or `"pallas"` (a fused kernel), as in `depthwise_conv`.

    Returns:
      `(N, *out_spatial, C_out)`.

    Raises:
      ValueError, TypeError: as `depthwise_conv` and `pointwise_conv`.

    Examples:
      >>> import jax.numpy as jnp
      >>> y = separable_conv(jnp.ones((1, 8, 8, 4)), jnp.ones((3, 3, 1, 4)), jnp.ones((4, 16)))
      >>> y.shape
      (1, 8, 8, 16)
    """
    x = jnp.asarray(x)
    dw, pw = jnp.asarray(depthwise_kernel), jnp.asarray(pointwise_kernel)
    n = _args.check_input(x)
    _args.check_depthwise_kernel(dw, x.shape)
    _args.check_pointwise_kernel(pw, dw.shape[-1], what="the depthwise output")
    strides_t = _args.normalize_tuple(strides, n, "strides")
    dilation_t = _args.normalize_tuple(dilation, n, "dilation")
    pad = _args.resolve_padding(padding, dw.shape[:-2], dilation_t)
    _args.check_implementation(implementation)
    x, dw, pw = _args.promote(x, dw, pw)
    return _routing.separable(x, dw, pw, strides_t, pad, dilation_t, precision, implementation)


def separable_to_full(
    depthwise_kernel: ArrayLike, pointwise_kernel: ArrayLike, channel_multiplier: int = 1
) -> jax.Array:
    """The full kernel of a separable conv: `W[..., c, o] = Σ_k D[..., 0, c*m+k] P[c*m+k, o]`.

    Args:
      depthwise_kernel: `(*window, 1, C*m)`.
      pointwise_kernel: `(C*m, C_out)`.
      channel_multiplier: `m`; needed because `C*m` alone does not say `C`. Defaults to 1.

    Returns:
      `(*window, C, C_out)`: a full conv with it equals `separable_conv(x, D, P)`.

    Raises:
      ValueError: shapes not of the conventions, or `C*m` not divisible by `m`.

    Examples:
      >>> import jax.numpy as jnp
      >>> separable_to_full(jnp.ones((3, 3, 1, 8)), jnp.ones((8, 5)), 2).shape
      (3, 3, 4, 5)
    """
    dw, pw = jnp.asarray(depthwise_kernel), jnp.asarray(pointwise_kernel)
    m = _args.positive_int(channel_multiplier, "channel_multiplier")
    _args.check_floating("depthwise kernel", dw.dtype)
    if dw.ndim < 3 or dw.shape[-2] != 1:
        raise ValueError(f"depthwise kernel must have shape (*window, 1, C*m), got {dw.shape}")
    cm = dw.shape[-1]
    if cm % m:
        raise ValueError(
            f"depthwise kernel has {cm} output channels, not divisible by channel_multiplier={m}"
        )
    _args.check_pointwise_kernel(pw, cm, what="the depthwise kernel")
    dw, pw = _args.promote(dw, pw)
    window, c = dw.shape[:-2], cm // m
    d = dw.reshape(*window, c, m)
    p = pw.reshape(c, m, pw.shape[-1])
    return jnp.einsum("...ck,cko->...co", d, p, precision=lax.Precision.HIGHEST)


def full_to_separable(
    full_kernel: ArrayLike, channel_multiplier: int
) -> tuple[jax.Array, jax.Array]:
    """Best separable approximation (Frobenius norm) of a full kernel.

    Each input channel's `prod(window) × C_out` slice of `W` is replaced by its truncated SVD of
    rank `m`; the singular values are split evenly (`√s`) between the two factors. Exact when
    `m >= min(prod(window), C_out)`; extra components beyond that rank are zero.

    Args:
      full_kernel: `(*window, C, C_out)`.
      channel_multiplier: `m`, the rank kept per input channel.

    Returns:
      `(depthwise_kernel (*window, 1, C*m), pointwise_kernel (C*m, C_out))`.

    Raises:
      ValueError: `full_kernel` rank < 3 or a non-positive multiplier.

    Examples:
      >>> import jax
      >>> w = jax.random.normal(jax.random.key(0), (3, 3, 4, 8))
      >>> d, p = full_to_separable(w, 8)
      >>> bool(jnp.allclose(separable_to_full(d, p, 8), w, atol=1e-4))
      True
    """
    w = jnp.asarray(full_kernel)
    m = _args.positive_int(channel_multiplier, "channel_multiplier")
    _args.check_floating("full kernel", w.dtype)
    if w.ndim < 3:
        raise ValueError(f"full kernel must have shape (*window, C_in, C_out), got {w.shape}")
    window, c, co = w.shape[:-2], w.shape[-2], w.shape[-1]
    k = math.prod(window)
    mats = jnp.moveaxis(w.reshape(k, c, co), 1, 0)  # (C, K, C_out)
    u, s, vt = jnp.linalg.svd(mats, full_matrices=False)
    r = min(m, s.shape[-1])
    root = jnp.sqrt(s[:, :r])
    d = u[:, :, :r] * root[:, None, :]  # (C, K, r)
    p = vt[:, :r, :] * root[:, :, None]  # (C, r, C_out)
    if r < m:
        d = jnp.pad(d, ((0, 0), (0, 0), (0, m - r)))
        p = jnp.pad(p, ((0, 0), (0, m - r), (0, 0)))
    dw = jnp.moveaxis(d, 0, 1).reshape(*window, 1, c * m)
    pw = p.reshape(c * m, co)
    return dw, pw
