"""Pallas (Triton backend) 2-D depthwise conv, NHWC, channel multiplier 1, with an XLA backward.

One program computes a tile of `Tiles.pixels` consecutive output pixels (flattened over
`N × Ho × Wo`, so tiles never waste lanes on a ragged W) by `Tiles.channels` channels. For each
of the `kh × kw` taps it gathers the input rows under that tap with a masked load (the border is
the mask: no padded copy of `x` is ever made) and accumulates in float32. Neighbouring taps and
tiles re-read the same lines from L1/L2, so HBM sees about one read of `x` and one write of `y`.

Measurements against XLA: `benchmarks/results/kernel-notes.md`; `implementation="auto"` takes the
kernel only where `_auto_routes.AUTO_ROUTES` has a row for it.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from sepconv_jax import _args
from sepconv_jax.kernels import backend, reference
from sepconv_jax.kernels.config import Geometry, Tiles


class Taps(NamedTuple):
    """Per tap `t = i * kw + j`: flat element offset of the pixel row (`(P, 1)`) and its mask."""

    rows: tuple[jax.Array, ...]
    valid: tuple[jax.Array, ...]


def index_divmod(i: jax.Array, n: int) -> tuple[jax.Array, jax.Array]:
    """`(i // n, i % n)` of non-negative int32 indices `i`, in int32 also under `jax_enable_x64`
    (a Python int divisor would be int64 there, and `lax.div` takes one dtype)."""
    d = np.int32(n)
    return lax.div(i, d), lax.rem(i, d)


def taps(g: Geometry, pix: jax.Array) -> Taps:
    """Row offsets (`pixel_index * C`, 0 where masked) and in-bounds masks of every tap.

    `pix` is `(P, 1)`: flat output pixel indices over `N × Ho × Wo`.
    """
    n, r = index_divmod(pix, g.ho * g.wo)
    oh, ow = index_divmod(r, g.wo)
    ih0 = oh * g.sh - g.pt
    iw0 = ow * g.sw - g.pl
    live = pix < g.pixels
    rows, valid = [], []
    for i in range(g.kh):
        ih = ih0 + i
        live_h = live & (ih >= 0) & (ih < g.h)
        for j in range(g.kw):
            iw = iw0 + j
            ok = live_h & (iw >= 0) & (iw < g.w)
            rows.append(jnp.where(ok, ((n * g.h + ih) * g.w + iw) * g.c, 0))
            valid.append(ok)
    return Taps(tuple(rows), tuple(valid))


def depthwise_tile(
    x_ref, w_ref, g: Geometry, t: Taps, c_idx: jax.Array, c_ok: jax.Array | None
) -> jax.Array:
    """`(P, BC)` float32 depthwise output of the pixels in `t` for channels `c_idx` `(1, BC)`.

    `c_ok` `(1, BC)` masks a ragged last channel tile (`None`: every lane is a channel). Every
    index array is built 2-D so that Triton proves the channel axis contiguous (16-byte loads)
    and needs no layout conversion.
    """
    acc = None
    shape = (t.rows[0].shape[0], c_idx.shape[1])
    # Weights are gathered at the tile's full shape (rows repeat the same address; the compiler
    # merges them): a (1, BC) load would get its own layout and a shared-memory round trip.
    w_ok = None if c_ok is None else jnp.broadcast_to(c_ok, shape)
    for k, (row, ok) in enumerate(zip(t.rows, t.valid)):
        mask = ok if c_ok is None else ok & c_ok
        xv = backend.load(x_ref, row + c_idx, mask).astype(jnp.float32)
        wv = backend.load(w_ref, jnp.broadcast_to(k * g.c + c_idx, shape), w_ok)
        wv = wv.astype(jnp.float32)
        term = xv * wv
        acc = term if acc is None else acc + term
    return acc


def channel_lanes(first: jax.Array, size: int, total: int) -> tuple[jax.Array, jax.Array | None]:
    """`(1, size)` channel indices from `first` and their mask (`None` when no tile is ragged)."""
    idx = first + lax.broadcasted_iota(jnp.int32, (1, size), 1)
    return idx, (None if total % size == 0 else idx < total)


def store_offsets(pix: jax.Array, width: int, idx: jax.Array, ok: jax.Array | None, total: int):
    """Offsets and mask of a `(P, BC)` output tile; masked lanes point past the end (`total`).

    The per-pixel sentinel is applied to the `(P, 1)` row so that the channel axis stays
    provably contiguous (vectorised stores); a ragged channel tile pays a per-lane select.
    """
    live = pix < total // width
    offs = jnp.where(live, pix * width, total) + idx
    mask = live if ok is None else live & ok
    if ok is not None:
        offs = jnp.where(mask, offs, total)
    return offs, mask


def _kernel(x_ref, w_ref, o_ref, *, g: Geometry, t: Tiles):
    n_ct = -(-g.c // t.channels)
    pid = backend.program_id()
    pix_tile, c_tile = index_divmod(pid, n_ct)
    pix = pix_tile * t.pixels + lax.broadcasted_iota(jnp.int32, (t.pixels, 1), 0)
    c_idx, c_ok = channel_lanes(c_tile * t.channels, t.channels, g.c)
    acc = depthwise_tile(x_ref, w_ref, g, taps(g, pix), c_idx, c_ok)
    offs, mask = store_offsets(pix, g.c, c_idx, c_ok, g.pixels * g.c)
    backend.store(o_ref, offs, acc.astype(o_ref.dtype), mask)


def call(x: jax.Array, w: jax.Array, g: Geometry, t: Tiles, interpret: bool) -> jax.Array:
    """Runs the kernel: `x` `(N, H, W, C)`, `w` `(kh, kw, 1, C)` → `(N, Ho, Wo, C)`."""
    n_prog = -(-g.pixels // t.pixels) * -(-g.c // t.channels)
    out = backend.call(
        functools.partial(_kernel, g=g, t=t),
        jax.ShapeDtypeStruct((g.pixels * g.c,), x.dtype),
        grid=n_prog,
        num_warps=t.num_warps,
        num_stages=t.num_stages,
        interpret=interpret,
        name=f"sepconv_depthwise_{g.kh}x{g.kw}_s{g.sh}",
    )(x.reshape(-1), w.reshape(-1))
    return out.reshape(g.n, g.ho, g.wo, g.c)


class Static(NamedTuple):
    """Hashable, non-differentiable arguments of `depthwise_conv2d`."""

    g: Geometry
    tiles: Tiles
    strides: tuple[int, ...]
    padding: _args.Padding
    precision: object
    interpret: bool


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def depthwise_conv2d(x: jax.Array, w: jax.Array, s: Static) -> jax.Array:
    """Depthwise conv by the Pallas kernel; gradients by XLA (the VJP of the grouped conv).

    Args:
      x: `(N, H, W, C)`, float32 or bfloat16.
      w: `(kh, kw, 1, C)`, same dtype.
      s: geometry, tiles and the XLA arguments for the backward.

    Returns:
      `(N, Ho, Wo, C)` in `x`'s dtype.
    """
    return call(x, w, s.g, s.tiles, s.interpret)


def _fwd(x, w, s):
    return call(x, w, s.g, s.tiles, s.interpret), (x, w)


def _bwd(s, res, g):
    x, w = res
    _, vjp = jax.vjp(
        lambda a, b: reference.depthwise(a, b, s.strides, s.padding, s.precision), x, w
    )
    return vjp(g)


depthwise_conv2d.defvjp(_fwd, _bwd)
