"""Conv geometry, what the kernels support, their tile sizes and epilogue."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from sepconv_jax import _args

#: Dtypes the kernels compute in (float32 accumulation inside).
KERNEL_DTYPES = (jnp.dtype(jnp.float32), jnp.dtype(jnp.bfloat16))
#: Largest window side: every tap is unrolled into the kernel.
MAX_WINDOW = 7
ACTIVATIONS = (None, "relu", "relu6")


class Epilogue(NamedTuple):
    """What the fused kernel applies between and after its two convs:
    `act(depthwise * scale + shift) @ pw + bias`; `None` fields are skipped.

    `scale`, `shift` `(C*m,)` and `bias` `(C_out,)` are in the compute dtype.
    """

    scale: jax.Array | None = None
    shift: jax.Array | None = None
    bias: jax.Array | None = None
    activation: str | None = None


class Geometry(NamedTuple):
    """A 2-D NHWC conv's sizes with padding resolved to explicit `(top, left)` offsets."""

    n: int
    h: int
    w: int
    c: int
    kh: int
    kw: int
    sh: int
    sw: int
    pt: int
    pl: int
    ho: int
    wo: int

    @property
    def pixels(self) -> int:
        """Output pixels `N * Ho * Wo`."""
        return self.n * self.ho * self.wo


class Tiles(NamedTuple):
    """One program's work and Triton launch parameters.

    Attributes:
      pixels: output pixels per program (power of 2, >= 16).
      channels: input channels per inner step (power of 2, >= 16).
      out_channels: output channels per program of the fused kernel (power of 2, >= 16);
        unused by the depthwise kernel, whose programs own `channels` channels each.
      num_warps, num_stages: Triton's warps per program and pipelining depth.
    """

    pixels: int
    channels: int
    out_channels: int = 16
    num_warps: int = 4
    num_stages: int = 2


def geometry(
    x_shape: tuple[int, ...],
    window: tuple[int, ...],
    strides: tuple[int, ...],
    padding: _args.Padding,
) -> Geometry:
    """Resolves `padding` (`"SAME"`, `"VALID"` or explicit pairs) for a 2-D conv."""
    n, h, w, c = x_shape
    (pt, pb), (pl, pr) = _args.explicit_pads(padding.lax, (h, w), window, strides)
    kh, kw = window
    sh, sw = strides
    ho = (h + pt + pb - kh) // sh + 1
    wo = (w + pl + pr - kw) // sw + 1
    return Geometry(n, h, w, c, kh, kw, sh, sw, pt, pl, ho, wo)


def unsupported_reason(
    x: jax.Array,
    dw: jax.Array,
    strides: tuple[int, ...],
    padding: _args.Padding,
    dilation: tuple[int, ...],
    pw: jax.Array | None = None,
) -> str | None:
    """Why the kernels cannot run this conv (a message naming the argument), or `None`."""
    if x.ndim != 4:
        return f"x has shape {x.shape}; the Pallas kernels are 2-D only (x of shape (N, H, W, C))"
    if jnp.dtype(x.dtype) not in KERNEL_DTYPES:
        return f"dtype {x.dtype} is not supported; the Pallas kernels take float32 or bfloat16"
    c = x.shape[-1]
    if dw.shape[-1] != c:
        return (
            f"depthwise kernel has {dw.shape[-1]} channels for C={c} (channel multiplier "
            f"{dw.shape[-1] // c}); the Pallas kernels support channel multiplier 1 only"
        )
    if any(d != 1 for d in dilation):
        return f"dilation={dilation} is not supported; the Pallas kernels need dilation 1"
    if padding.pre_pad is not None:
        return (
            f"padding mode {padding.mode!r} is not supported; the Pallas kernels take 'SAME', "
            "'VALID' or explicit zero padding"
        )
    if any(k > MAX_WINDOW for k in dw.shape[:2]):
        return f"window {dw.shape[:2]} is larger than {MAX_WINDOW}×{MAX_WINDOW}"
    g = geometry(x.shape, dw.shape[:2], strides, padding)
    if g.ho <= 0 or g.wo <= 0 or g.n == 0 or c == 0:
        return f"the output of x {x.shape} with window {dw.shape[:2]} is empty"
    c_out = c if pw is None else pw.shape[-1]
    if max(x.size, g.pixels * c_out, g.pixels * c) >= 2**31 - 2**20:
        return f"x {x.shape} is too large for the kernels' 32-bit offsets"
    if pw is not None and pw.shape[-1] == 0:
        return "pointwise kernel has no output channels"
    return None


def _pow2(v: int, lo: int, hi: int) -> int:
    p = lo
    while p < v and p < hi:
        p *= 2
    return p


def depthwise_tiles(g: Geometry) -> Tiles:
    """Tile sizes of the depthwise kernel for one geometry (see kernel-notes.md)."""
    channels = _pow2(g.c, 16, 128)
    return Tiles(pixels=max(16, 4096 // channels), channels=channels, num_warps=4, num_stages=1)


def fused_tiles(g: Geometry, c_out: int) -> Tiles:
    """Tile sizes of the fused kernel for one geometry (see kernel-notes.md)."""
    out_channels = _pow2(c_out, 16, 128)
    channels = _pow2(g.c, 16, 64)
    return Tiles(pixels=64, channels=channels, out_channels=out_channels, num_warps=4, num_stages=2)


def canonical_precision(precision: lax.PrecisionLike) -> object:
    """`precision` as a hashable value `jnp.dot` takes: `None`, a pair of `lax.Precision`, or
    a `lax.DotAlgorithmPreset`."""
    if precision is None or isinstance(precision, lax.DotAlgorithmPreset):
        return precision
    if isinstance(precision, (str, lax.Precision)):
        p = lax.Precision(precision)
        return (p, p)
    return tuple(lax.Precision(p) for p in precision)
