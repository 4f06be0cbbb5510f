"""Pallas GPU kernels for depthwise and fused depthwise-separable convs.

What the router (`sepconv_jax._routing`) needs: `unsupported_reason` (can the kernels run this
conv), `shape_key` (the key of `_auto_routes.AUTO_ROUTES` rows for the kernels), and
`depthwise` / `fused`, which run a kernel on validated, promoted arguments (compiled on a GPU,
in Pallas interpret mode elsewhere: slow, for tests). The kernels run on Pallas' Triton backend
(see `backend.py` for why, and how to swap it).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

from sepconv_jax import _args
from sepconv_jax.kernels import backend, config, depthwise, fused

unsupported_reason = config.unsupported_reason


def shape_key(
    x: jax.Array,
    dw: jax.Array,
    strides: tuple[int, ...],
    padding: _args.Padding,
    pw: jax.Array | None = None,
) -> tuple:
    """`(H, W, C, kh, kw, sh, sw, pad_top, pad_left, dtype[, C_out])` of a supported 2-D conv."""
    g = config.geometry(x.shape, dw.shape[:2], strides, padding)
    key = (g.h, g.w, g.c, g.kh, g.kw, g.sh, g.sw, g.pt, g.pl, jnp.dtype(x.dtype).name)
    return key if pw is None else (*key, pw.shape[-1])


def run_depthwise(
    x: jax.Array,
    kernel: jax.Array,
    strides: tuple[int, ...],
    padding: _args.Padding,
    precision: lax.PrecisionLike,
) -> jax.Array:
    """The depthwise kernel on a supported conv (see `unsupported_reason`)."""
    g = config.geometry(x.shape, kernel.shape[:2], strides, padding)
    s = depthwise.Static(
        g,
        config.depthwise_tiles(g),
        strides,
        padding,
        config.canonical_precision(precision),
        not backend.on_gpu(),
    )
    return depthwise.depthwise_conv2d(x, kernel, s)


def run_fused(
    x: jax.Array,
    dw: jax.Array,
    pw: jax.Array,
    epilogue: config.Epilogue,
    strides: tuple[int, ...],
    padding: _args.Padding,
    precision: lax.PrecisionLike,
) -> jax.Array:
    """The fused kernel on a supported conv (see `unsupported_reason`)."""
    g = config.geometry(x.shape, dw.shape[:2], strides, padding)
    c_out = pw.shape[-1]
    s = fused.Static(
        g,
        c_out,
        config.fused_tiles(g, c_out),
        config.depthwise_tiles(g),
        epilogue.activation,
        strides,
        padding,
        config.canonical_precision(precision),
        not backend.on_gpu(),
    )
    return fused.fused_conv2d(x, dw, pw, epilogue.scale, epilogue.shift, epilogue.bias, s)


__all__ = ["run_depthwise", "run_fused", "shape_key", "unsupported_reason"]
