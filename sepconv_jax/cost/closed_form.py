"""Closed-form costs of depthwise, pointwise, separable and full conv layers from shapes alone."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from fractions import Fraction
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from sepconv_jax import _args
from sepconv_jax._args import PaddingLike

Shape = Sequence[int] | jax.ShapeDtypeStruct


@dataclasses.dataclass(frozen=True)
class Cost:
    """What a computation costs; costs of layers add up to the cost of the network.

    Attributes:
      params: number of parameters (scalars).
      macs: multiply-adds of the convolutions and matrix products.
      flops: `2 * macs`.
      bytes: minimum bytes moved when each op runs on its own: every op reads its input and
        weights once and writes its output once.

    Examples:
      >>> a = depthwise_cost((1, 32, 32, 16), 3)
      >>> b = pointwise_cost((1, 32, 32, 16), 32)
      >>> (a + b).params, (a + b).macs
      (656, 671744)
      >>> print(a + b)
      params 656 | MACs 671.7k | FLOPs 1.343M | bytes 330.3kB
    """

    params: int
    macs: int
    flops: int
    bytes: int

    def __add__(self, other: Cost) -> Cost:
        if not isinstance(other, Cost):
            return NotImplemented
        return Cost(*(a + b for a, b in zip(dataclasses.astuple(self), dataclasses.astuple(other))))

    def __radd__(self, other: Any) -> Cost:
        """Lets `sum(costs)` start from `0`."""
        if isinstance(other, int) and other == 0:
            return self
        return NotImplemented

    def scale(self, copies: int) -> Cost:
        """The cost of `copies` independent copies (every field times `copies`).

        Raises:
          ValueError: `copies` not a non-negative int.
        """
        if isinstance(copies, bool) or not isinstance(copies, (int, np.integer)) or copies < 0:
            raise ValueError(f"copies must be a non-negative int, got {copies!r}")
        return Cost(*(int(copies) * v for v in dataclasses.astuple(self)))

    def __str__(self) -> str:
        return (
            f"params {_si(self.params)} | MACs {_si(self.macs)} | FLOPs {_si(self.flops)} | "
            f"bytes {_si(self.bytes)}B"
        )


def _si(value: int) -> str:
    """`1342177` → `"1.342M"`: four significant digits with an SI prefix."""
    for prefix, scale in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(value) >= scale:
            return f"{value / scale:.4g}{prefix}"
    return str(value)


def _cost(params: int, macs: int, elements: int, itemsize: int) -> Cost:
    return Cost(int(params), int(macs), 2 * int(macs), int(elements) * itemsize)


def _itemsize(dtype: Any) -> int:
    try:
        return jnp.dtype(dtype).itemsize
    except TypeError as err:
        raise ValueError(f"dtype must be a dtype, got {dtype!r}") from err


def check_input_shape(
    input_shape: Shape, dtype: Any, conv: bool = True
) -> tuple[tuple[int, ...], int]:
    """Validates `(N, *spatial, C)` (any `(..., C)` if not `conv`); returns it and the itemsize."""
    if isinstance(input_shape, jax.ShapeDtypeStruct):
        input_shape, dtype = input_shape.shape, input_shape.dtype
    if isinstance(input_shape, str) or not all(
        isinstance(d, (int, np.integer)) and not isinstance(d, bool)
        for d in (input_shape if isinstance(input_shape, Sequence) else [None])
    ):
        raise ValueError(
            f"input_shape must be a sequence of ints or a ShapeDtypeStruct, got {input_shape!r}"
        )
    shape = tuple(int(d) for d in input_shape)
    if conv and len(shape) - 2 not in _args.DIMENSION_NUMBERS:
        raise ValueError(
            f"input_shape must be (N, *spatial, C) with 1, 2 or 3 spatial dims, got {shape}"
        )
    if not shape or any(d <= 0 for d in shape):
        raise ValueError(f"input_shape must be non-empty with positive dims, got {shape}")
    return shape, _itemsize(dtype)


def _conv_macs(
    shape: tuple[int, ...],
    window: int | Sequence[int],
    strides: int | Sequence[int],
    padding: PaddingLike,
    dilation: int | Sequence[int],
    count_padding: bool,
) -> tuple[tuple[int, ...], tuple[int, ...], int]:
    """Resolves a conv's geometry as the ops do.

    Returns:
      `(window, out_spatial, taps)`: `taps` is the number of (output position, window tap)
      pairs over the spatial dims, `prod(out_spatial) * prod(window)` if `count_padding`.
    """
    n = len(shape) - 2
    win = _args.normalize_tuple(window, n, "window")
    strides_t = _args.normalize_tuple(strides, n, "strides")
    dilation_t = _args.normalize_tuple(dilation, n, "dilation")
    pad = _args.resolve_padding(padding, win, dilation_t)
    spatial = shape[1:-1]
    if pad.pre_pad is not None:  # jnp.pad, then a VALID conv: only "constant" pads with zeros
        spatial = tuple(s + lo + hi for s, (lo, hi) in zip(spatial, pad.pre_pad))
        zero_pads = ((0, 0),) * n
        if pad.mode == "constant":
            spatial, zero_pads = shape[1:-1], pad.pre_pad
    else:
        dilated = [(k - 1) * d + 1 for k, d in zip(win, dilation_t)]
        zero_pads = _args.explicit_pads(pad.lax, spatial, dilated, strides_t)
    out, taps = [], 1
    for size, k, s, d, (lo, hi) in zip(spatial, win, strides_t, dilation_t, zero_pads):
        o = (size + lo + hi - (k - 1) * d - 1) // s + 1
        if o <= 0:
            raise ValueError(
                f"window {win} (dilation {dilation_t}) does not fit input_shape {shape} with "
                f"padding {padding!r}: an output spatial size would be {o}"
            )
        out.append(o)
        taps *= o * k if count_padding else taps_in_bounds(size, k, s, d, lo, o)
    return win, tuple(out), taps


def taps_in_bounds(size: int, k: int, s: int, d: int, lo: int, out: int, ld: int = 1) -> int:
    """Pairs (output `o`, tap `j`) in one dim whose input `o*s + j*d - lo` is in `x`.

    With input dilation `ld` the input occupies every `ld`-th of `(size - 1) * ld + 1` places.
    """
    last = (size - 1) * ld
    count = 0
    for j in range(k):
        offset = j * d - lo  # pos = o*s + offset must lie in [0, last]
        first = max(0, -(offset // s))  # ceil(-offset / s)
        final = min(out - 1, (last - offset) // s)
        if ld == 1:
            count += max(0, final - first + 1)
        else:
            count += sum((o * s + offset) % ld == 0 for o in range(first, final + 1))
    return count


def depthwise_cost(
    input_shape: Shape,
    window: int | Sequence[int],
    *,
    channel_multiplier: int = 1,
    strides: int | Sequence[int] = 1,
    padding: PaddingLike = "SAME",
    dilation: int | Sequence[int] = 1,
    use_bias: bool = False,
    dtype: Any = jnp.float32,
    count_padding: bool = True,
) -> Cost:
    """Cost of `ops.depthwise_conv` on `x: input_shape` (`(N, *spatial, C)`).

    Params `prod(window)·C·m` (+ `C·m` bias); MACs `N·prod(out_spatial)·C·m·prod(window)`;
    bytes: read `x`, the kernel (and bias), write `(N, *out_spatial, C·m)`.

    Args:
      input_shape: `(N, *spatial, C)` with 1-3 spatial dims, or a `jax.ShapeDtypeStruct` (whose
        dtype then replaces `dtype`).
      window: kernel spatial size, an int for every dim or one per spatial dim.
      channel_multiplier: `m`. Defaults to 1.
      strides, padding, dilation: as `ops.depthwise_conv` (padding `"SAME"` by default).
      use_bias: count a `(C·m,)` bias (its adds are not MACs). Defaults to False.
      dtype: dtype of `x`, weights and output, for `bytes`. Defaults to float32.
      count_padding: count taps on the zero padding (default); False counts as XLA does.

    Returns:
      The `Cost`.

    Raises:
      ValueError: a bad `input_shape`, `window`, `channel_multiplier`, `strides`, `padding`,
        `dilation` or `dtype`, or a window that does not fit.

    Examples:
      >>> c = depthwise_cost((1, 32, 32, 16), 3)
      >>> c.params, c.macs, c.flops, c.bytes
      (144, 147456, 294912, 131648)
      >>> depthwise_cost((1, 32, 32, 16), 3, count_padding=False).macs  # XLA's count
      141376
    """
    shape, itemsize = check_input_shape(input_shape, dtype)
    m = _args.positive_int(channel_multiplier, "channel_multiplier")
    win, out, taps = _conv_macs(shape, window, strides, padding, dilation, count_padding)
    cm = shape[-1] * m
    params = math.prod(win) * cm + (cm if use_bias else 0)
    n_out = shape[0] * math.prod(out) * cm
    return _cost(params, shape[0] * taps * cm, math.prod(shape) + params + n_out, itemsize)


def pointwise_cost(
    input_shape: Shape, out_channels: int, *, use_bias: bool = False, dtype: Any = jnp.float32
) -> Cost:
    """Cost of `ops.pointwise_conv` on `x: input_shape` (`(..., C_in)`).

    Params `C_in·C_out` (+ `C_out` bias); MACs `prod(input_shape[:-1])·C_in·C_out`.

    Args:
      input_shape: `(..., C_in)`, e.g. `(N, H, W, C_in)`, or a `jax.ShapeDtypeStruct`.
      out_channels: `C_out`.
      use_bias: count a `(C_out,)` bias. Defaults to False.
      dtype: for `bytes`. Defaults to float32.

    Returns:
      The `Cost`.

    Raises:
      ValueError: a bad `input_shape`, `out_channels` or `dtype`.

    Examples:
      >>> pointwise_cost((1, 32, 32, 16), 32).macs
      524288
    """
    shape, itemsize = check_input_shape(input_shape, dtype, conv=False)
    co = _args.positive_int(out_channels, "out_channels")
    rows, ci = math.prod(shape[:-1]), shape[-1]
    params = ci * co + (co if use_bias else 0)
    return _cost(params, rows * ci * co, rows * ci + params + rows * co, itemsize)


def separable_cost(
    input_shape: Shape,
    window: int | Sequence[int],
    out_channels: int,
    *,
    channel_multiplier: int = 1,
    strides: int | Sequence[int] = 1,
    padding: PaddingLike = "SAME",
    dilation: int | Sequence[int] = 1,
    use_bias: bool = False,
    dtype: Any = jnp.float32,
    fused: bool = False,
    count_padding: bool = True,
) -> Cost:
    """Cost of `ops.separable_conv`: `depthwise_cost` then `pointwise_cost` (bias after both).

    Args:
      input_shape, window, channel_multiplier, strides, padding, dilation, dtype,
        count_padding: as `depthwise_cost`.
      out_channels: `C_out` of the pointwise conv.
      use_bias: count a `(C_out,)` bias. Defaults to False.
      fused: `bytes` of one fused kernel (read `x` and the weights, write the output) instead
        of two ops that write and read back the `(N, *out_spatial, C·m)` intermediate.
        Defaults to False (what XLA runs).

    Returns:
      The `Cost`.

    Raises:
      ValueError: as `depthwise_cost` and `pointwise_cost`.

    Examples:
      >>> c = separable_cost((1, 32, 32, 16), 3, 32)
      >>> c.params, c.macs
      (656, 671744)
      >>> c.bytes - separable_cost((1, 32, 32, 16), 3, 32, fused=True).bytes  # 2 × 64 KiB
      131072
    """
    shape, itemsize = check_input_shape(input_shape, dtype)
    dtype = input_shape.dtype if isinstance(input_shape, jax.ShapeDtypeStruct) else dtype
    geometry = dict(strides=strides, padding=padding, dilation=dilation)
    dw = depthwise_cost(
        shape,
        window,
        channel_multiplier=channel_multiplier,
        dtype=dtype,
        count_padding=count_padding,
        **geometry,
    )
    out = _conv_macs(shape, window, count_padding=True, **geometry)[1]
    hidden = (shape[0], *out, shape[-1] * channel_multiplier)
    total = dw + pointwise_cost(hidden, out_channels, use_bias=use_bias, dtype=dtype)
    if fused:
        total = dataclasses.replace(total, bytes=total.bytes - 2 * math.prod(hidden) * itemsize)
    return total


def full_cost(
    input_shape: Shape,
    window: int | Sequence[int],
    out_channels: int,
    *,
    strides: int | Sequence[int] = 1,
    padding: PaddingLike = "SAME",
    dilation: int | Sequence[int] = 1,
    use_bias: bool = False,
    dtype: Any = jnp.float32,
    count_padding: bool = True,
) -> Cost:
    """Cost of a full convolution (`flax.linen.Conv`, kernel `(*window, C_in, C_out)`).

    Params `prod(window)·C_in·C_out` (+ `C_out`); MACs `N·prod(out_spatial)·prod(window)·C_in·C_out`.

    Args:
      input_shape, window, strides, padding, dilation, dtype, count_padding: as
        `depthwise_cost`.
      out_channels: `C_out`.
      use_bias: count a `(C_out,)` bias. Defaults to False.

    Returns:
      The `Cost`.

    Raises:
      ValueError: as `depthwise_cost`, or a bad `out_channels`.

    Examples:
      >>> c = full_cost((1, 32, 32, 16), 3, 32)
      >>> c.params, c.macs
      (4608, 4718592)
    """
    shape, itemsize = check_input_shape(input_shape, dtype)
    co = _args.positive_int(out_channels, "out_channels")
    win, out, taps = _conv_macs(shape, window, strides, padding, dilation, count_padding)
    ci = shape[-1]
    params = math.prod(win) * ci * co + (co if use_bias else 0)
    n_out = shape[0] * math.prod(out) * co
    return _cost(params, shape[0] * taps * ci * co, math.prod(shape) + params + n_out, itemsize)


def separable_full_ratio(
    window: int | Sequence[int],
    out_channels: int,
    channel_multiplier: int = 1,
    *,
    num_spatial_dims: int | None = None,
) -> float:
    """Weights of a separable conv over those of the full conv it replaces: `m/C_out + m/K`.

    `K = prod(window)`; no bias. The same ratio holds for MACs whenever taps on the padding
    count (the default; MobileNet's `1/N + 1/D_K²` at `m = 1`). Exact: the rational is rounded
    once.

    Args:
      window: kernel spatial size: one int per spatial dim, or an int for every spatial dim.
      out_channels: `C_out`.
      channel_multiplier: `m`. Defaults to 1.
      num_spatial_dims: the number of spatial dims. Defaults to `None`: the length of a
        sequence `window`, 2 for an int (as the nnx layers count them).

    Returns:
      The ratio, a float.

    Raises:
      ValueError: non-positive `window`, `out_channels` or `channel_multiplier`, or a `window`
        whose length is not `num_spatial_dims`.

    Examples:
      >>> separable_full_ratio((3, 3), 32)  # 1/32 + 1/9
      0.1423611111111111
      >>> separable_full_ratio(3, 32) == separable_full_ratio((3, 3), 32)
      True
    """
    k = math.prod(_args.window(window, num_spatial_dims, name="window"))
    m = _args.positive_int(channel_multiplier, "channel_multiplier")
    return float(Fraction(m, _args.positive_int(out_channels, "out_channels")) + Fraction(m, k))
