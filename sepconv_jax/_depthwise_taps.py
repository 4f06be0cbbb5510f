"""Depthwise conv as a sum over window taps of strided slices times per-channel weights.

XLA:CPU lowers grouped convolutions, and above all their gradients, to slow generic loops
(jax-ml/jax#23713). Summing `prod(window)` strided slices times per-channel weights is one fused
elementwise loop (its gradient is pads and sums, fused too): on a 2-core CPU, f32 3×3, 29–38×
faster forward and 5.1–9.6× faster forward+backward (`python -m benchmarks.ops --cpu-small`,
`benchmarks/results/ops_cpu.md`, columns `dw:auto` vs `dw:xla`). The result is
the same sum in another order. `depthwise_conv(implementation="taps")` takes it on any backend,
`"auto"` on the CPU backend only: other backends keep XLA's convolution until the taps path is
measured faster there (`benchmarks.ops`'s `taps` contender on a GPU).
"""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
from jax import lax

from sepconv_jax import _args


def depthwise_by_taps(
    x: jax.Array,
    kernel: jax.Array,
    strides: tuple[int, ...],
    padding: _args.Padding,
    dilation: tuple[int, ...],
) -> jax.Array:
    """`ops.depthwise_conv` on validated, promoted arguments, as a sum over the window's taps.

    Args:
      x: `(N, *spatial, C)`.
      kernel: `(*window, 1, C*m)`.
      strides, padding, dilation: as resolved by `ops.depthwise_conv`.

    Returns:
      `(N, *out_spatial, C*m)` in `x.dtype`; half-precision inputs accumulate in float32.
    """
    if padding.pre_pad is not None:
        x = jnp.pad(x, ((0, 0), *padding.pre_pad, (0, 0)), mode=padding.mode)
    window = kernel.shape[:-2]
    extent = tuple((k - 1) * d + 1 for k, d in zip(window, dilation))
    pads = _args.explicit_pads(padding.lax, x.shape[1:-1], extent, strides)
    x = lax.pad(
        x, jnp.zeros((), x.dtype), [(0, 0, 0), *[(lo, hi, 0) for lo, hi in pads], (0, 0, 0)]
    )
    multiplier = kernel.shape[-1] // x.shape[-1]
    if multiplier > 1:  # output channel c*m + k reads input channel c
        x = jnp.repeat(x, multiplier, axis=-1)
    out = tuple(max(0, (p - e) // s + 1) for p, e, s in zip(x.shape[1:-1], extent, strides))
    shape = (x.shape[0], *out, kernel.shape[-1])
    if 0 in out:
        return jnp.zeros(shape, x.dtype)
    acc = jnp.float32 if jnp.finfo(x.dtype).bits < 32 else x.dtype
    total = None
    for tap in itertools.product(*(range(k) for k in window)):
        start = (0, *(t * d for t, d in zip(tap, dilation)), 0)
        limit = (shape[0], *(b + (o - 1) * s + 1 for b, o, s in zip(start[1:], out, strides)))
        piece = lax.slice(x, start, (*limit, shape[-1]), (1, *strides, 1))
        weights = kernel[(*tap, 0)].astype(acc).reshape((1,) * (x.ndim - 1) + (-1,))
        term = piece.astype(acc) * weights
        total = term if total is None else total + term
    return total.astype(x.dtype)
