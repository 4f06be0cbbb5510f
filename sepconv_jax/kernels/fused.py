"""Pallas (Triton backend) fused depthwise → [scale, shift, activation] → pointwise [+ bias].

One program owns `Tiles.pixels` output pixels × `Tiles.out_channels` output channels. It walks
the input channels `Tiles.channels` at a time: the depthwise tile `(P, BC)` is computed in
registers from masked gathers of `x` (as in `depthwise.py`), folded-BatchNorm `scale`/`shift`
and ReLU/ReLU6 are applied, the tile is rounded to the input dtype (as XLA's two-op version
rounds its intermediate) and multiplied into the `(P, BCo)` float32 accumulator with a
`jnp.dot` (Triton `tl.dot`, tensor cores). The depthwise intermediate never goes to HBM.
Programs that share a pixel tile are adjacent in the grid, so when `C_out > BCo` the re-reads
of `x` (and the recomputed depthwise) come from L2. The backward is XLA's, recomputing the
depthwise intermediate with the Pallas depthwise kernel.

Measurements against XLA's two ops: `benchmarks/results/kernel-notes.md`; `implementation="auto"`
takes the kernel only where `_auto_routes.AUTO_ROUTES` has a row for it.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from sepconv_jax import _args
from sepconv_jax.kernels import backend, depthwise, reference
from sepconv_jax.kernels.config import Geometry, Tiles


class Static(NamedTuple):
    """Hashable, non-differentiable arguments of `fused_conv2d`."""

    g: Geometry
    c_out: int
    tiles: Tiles
    dw_tiles: Tiles
    activation: str | None
    strides: tuple[int, ...]
    padding: _args.Padding
    precision: object
    interpret: bool


def _kernel(x_ref, w_ref, pw_ref, *refs, s: Static, has: tuple[bool, bool, bool]):
    *extra_refs, o_ref = refs
    extra = iter(extra_refs)
    scale_ref, shift_ref, bias_ref = (next(extra) if h else None for h in has)
    g, t, co = s.g, s.tiles, s.c_out
    n_cot = -(-co // t.out_channels)
    pid = backend.program_id()
    pix_tile, o_tile = depthwise.index_divmod(pid, n_cot)
    pix = pix_tile * t.pixels + lax.broadcasted_iota(jnp.int32, (t.pixels, 1), 0)
    o_idx, o_ok = depthwise.channel_lanes(o_tile * t.out_channels, t.out_channels, co)
    tp = depthwise.taps(g, pix)
    # pointwise rows: (BC, 1) input-channel indices against the (1, BCo) output lanes
    rows_iota = lax.broadcasted_iota(jnp.int32, (t.channels, 1), 0)
    c_ragged = g.c % t.channels != 0

    def step(i, acc):
        c_idx, c_ok = depthwise.channel_lanes(i * t.channels, t.channels, g.c)
        h = depthwise.depthwise_tile(x_ref, w_ref, g, tp, c_idx, c_ok)
        if scale_ref is not None:
            h = h * backend.load(scale_ref, c_idx, c_ok).astype(jnp.float32)
        if shift_ref is not None:
            h = h + backend.load(shift_ref, c_idx, c_ok).astype(jnp.float32)
        h = reference.activate(h, s.activation).astype(x_ref.dtype)
        c_rows = i * t.channels + rows_iota
        p_ok = None
        if c_ragged:
            p_ok = c_rows < g.c
        if o_ok is not None:
            p_ok = o_ok if p_ok is None else p_ok & o_ok
        p_offs = c_rows * co + o_idx
        if p_ok is not None:
            p_offs = jnp.where(p_ok, p_offs, 0)
        p = backend.load(pw_ref, p_offs, p_ok)
        return acc + jnp.dot(h, p, precision=s.precision, preferred_element_type=jnp.float32)

    acc = jnp.zeros((t.pixels, t.out_channels), jnp.float32)
    acc = backend.fori(0, -(-g.c // t.channels), step, acc)
    if bias_ref is not None:
        acc = acc + backend.load(bias_ref, o_idx, o_ok).astype(jnp.float32)
    offs, mask = depthwise.store_offsets(pix, co, o_idx, o_ok, g.pixels * co)
    backend.store(o_ref, offs, acc.astype(o_ref.dtype), mask)


def call(x, w, pw, scale, shift, bias, s: Static) -> jax.Array:
    """Runs the fused kernel: `(N, H, W, C)` → `(N, Ho, Wo, C_out)` in `x`'s dtype."""
    g, t = s.g, s.tiles
    extras = [a for a in (scale, shift, bias) if a is not None]
    has = tuple(a is not None for a in (scale, shift, bias))
    n_prog = -(-g.pixels // t.pixels) * -(-s.c_out // t.out_channels)
    out = backend.call(
        functools.partial(_kernel, s=s, has=has),
        jax.ShapeDtypeStruct((g.pixels * s.c_out,), x.dtype),
        grid=n_prog,
        num_warps=t.num_warps,
        num_stages=t.num_stages,
        interpret=s.interpret,
        name=f"sepconv_fused_{g.kh}x{g.kw}_s{g.sh}",
    )(x.reshape(-1), w.reshape(-1), pw.reshape(-1), *(a.reshape(-1) for a in extras))
    return out.reshape(g.n, g.ho, g.wo, s.c_out)


@functools.partial(jax.custom_vjp, nondiff_argnums=(6,))
def fused_conv2d(x, w, pw, scale, shift, bias, s: Static) -> jax.Array:
    """Fused separable conv by the Pallas kernel; gradients by XLA.

    Args:
      x: `(N, H, W, C)`, float32 or bfloat16.
      w: `(kh, kw, 1, C)`; pw: `(C, C_out)`; scale, shift: `(C,)` or `None`; bias: `(C_out,)`
        or `None`; all in `x`'s dtype.
      s: geometry, tiles, activation and the XLA arguments for the backward.

    Returns:
      `(N, Ho, Wo, C_out)` in `x`'s dtype.
    """
    return call(x, w, pw, scale, shift, bias, s)


def _fwd(x, w, pw, scale, shift, bias, s):
    return call(x, w, pw, scale, shift, bias, s), (x, w, pw, scale, shift, bias)


def _bwd(s, res, g):
    x, w, pw, scale, shift, bias = res
    h = depthwise.call(x, w, s.g, s.dw_tiles, s.interpret)  # recompute, never stored

    def post(h, pw, scale, shift, bias):
        return reference.after_depthwise(h, pw, scale, shift, bias, s.activation, s.precision)

    _, vjp_post = jax.vjp(post, h, pw, scale, shift, bias)
    dh, dpw, dscale, dshift, dbias = vjp_post(g)
    _, vjp_dw = jax.vjp(
        lambda a, b: reference.depthwise(a, b, s.strides, s.padding, s.precision), x, w
    )
    dx, dw = vjp_dw(dh)
    return dx, dw, dpw, dscale, dshift, dbias


fused_conv2d.defvjp(_fwd, _bwd)
