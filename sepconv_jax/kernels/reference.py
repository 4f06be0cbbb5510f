"""XLA reference of what the kernels compute: the fused path's `xla` implementation and backward."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

from sepconv_jax import _args, _depthwise_paths


def activate(h: jax.Array, activation: str | None) -> jax.Array:
    """`None`, `"relu"` or `"relu6"` applied elementwise (dtype kept)."""
    if activation == "relu":
        return jnp.maximum(h, jnp.zeros((), h.dtype))
    if activation == "relu6":
        return jnp.clip(h, jnp.zeros((), h.dtype), jnp.full((), 6, h.dtype))
    return h


def after_depthwise(
    h: jax.Array,
    pw: jax.Array,
    scale: jax.Array | None,
    shift: jax.Array | None,
    bias: jax.Array | None,
    activation: str | None,
    precision: lax.PrecisionLike,
) -> jax.Array:
    """`act(h * scale + shift) @ pw + bias` on the depthwise output `h` `(N, *spatial, C)`.

    `scale`, `shift` `(C,)` and `bias` `(C_out,)` are already in `h`'s dtype (or `None`).
    """
    lead = (1,) * (h.ndim - 1)
    if scale is not None:
        h = h * scale.reshape(*lead, -1)
    if shift is not None:
        h = h + shift.reshape(*lead, -1)
    h = activate(h, activation)
    y = lax.dot_general(h, pw, (((h.ndim - 1,), (0,)), ((), ())), precision=precision)
    if bias is not None:
        y = y + bias.reshape(*lead, -1)
    return y


def depthwise(
    x: jax.Array,
    dw: jax.Array,
    strides: tuple[int, ...],
    padding: _args.Padding,
    precision: lax.PrecisionLike,
) -> jax.Array:
    """The XLA depthwise conv (dilation 1) on validated arguments."""
    return _depthwise_paths.xla_depthwise(x, dw, strides, padding, (1,) * len(strides), precision)


def fused(
    x: jax.Array,
    dw: jax.Array,
    pw: jax.Array,
    scale: jax.Array | None,
    shift: jax.Array | None,
    bias: jax.Array | None,
    activation: str | None,
    strides: tuple[int, ...],
    padding: _args.Padding,
    precision: lax.PrecisionLike,
) -> jax.Array:
    """Depthwise, then `after_depthwise`, as two XLA ops (the intermediate goes through HBM)."""
    h = depthwise(x, dw, strides, padding, precision)
    return after_depthwise(h, pw, scale, shift, bias, activation, precision)
