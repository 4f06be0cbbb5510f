"""Depthwise conv as a sum over window taps of strided slices times per-channel weights.

XLA:CPU lowers grouped convolutions, and above all their gradients, to slow generic loops
(jax-ml/jax#23713). Summing `prod(window)` strided slices times per-channel weights is one fused
elementwise loop; the input gradient (its transpose: pads and sums) fuses too. The kernel
gradient, a per-tap reduction over `N * prod(out)` positions, is what XLA:CPU runs slowly in
any direct form (a reduce per tap copies each shifted slice first). So the conv carries a
`jax.custom_jvp` whose tangent in the kernel is written as a spread of `dk` by repeated
doubling; JAX transposes that into a halving tree (one fused elementwise loop per tap, reading
the shifted slice in place) followed by one short reduction. Forward mode, reverse mode and
higher orders all go through ordinary linear JAX ops.

Under differentiation, the conv's result and its kernel tangent run over cache-sized batch
chunks in a `lax.scan` (`_over_batch_chunks`; the undifferentiated conv stays one fused sum): at MobileNetV2-CIFAR's 32×32×144 activations (batch 32, 19 MB) the
per-tap passes otherwise stream the whole batch from memory nine times, and XLA fuses (and so
recomputes) the sum over taps into every consumer. Measured with `python -m benchmarks.ops
--cpu-small` and `python -m benchmarks.train_step` (`benchmarks/results/ops_cpu.md`,
`train_step_cpu.md`).

The result is the same sum in another order. `depthwise_conv(implementation="taps")` takes it on
any backend, `"auto"` on the CPU backend only: other backends keep XLA's convolution until the
taps path is measured faster there (`benchmarks.ops`'s `taps` contender on a GPU).
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
from jax import lax
from jax.custom_derivatives import SymbolicZero

from sepconv_jax import _args

Pairs = tuple[tuple[int, int], ...]

#: Rows left per tap after the halving tree of the kernel gradient (then one reduction).
_TREE_ROWS = 1024


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
      `(N, *out_spatial, C*m)` in `x.dtype`; half-precision inputs accumulate in float32, and
      so does the kernel gradient.
    """
    if padding.pre_pad is not None:
        x = jnp.pad(x, ((0, 0), *padding.pre_pad, (0, 0)), mode=padding.mode)
    window = kernel.shape[:-2]
    extent = tuple((k - 1) * d + 1 for k, d in zip(window, dilation))
    pads = tuple(_args.explicit_pads(padding.lax, x.shape[1:-1], extent, strides))
    out = tuple(
        max(0, (n + lo + hi - e) // s + 1)
        for n, (lo, hi), e, s in zip(x.shape[1:-1], pads, extent, strides)
    )
    if 0 in out:
        return jnp.zeros((x.shape[0], *out, kernel.shape[-1]), x.dtype)
    return _taps_conv(x, kernel, tuple(strides), pads, tuple(dilation))


def _accumulator(dtype: jnp.dtype) -> jnp.dtype:
    """float32 for half-precision inputs, else the input dtype."""
    return jnp.dtype(jnp.float32) if jnp.finfo(dtype).bits < 32 else jnp.dtype(dtype)


def _pieces(
    x: jax.Array,
    kernel_shape: tuple[int, ...],
    strides: tuple[int, ...],
    pads: Pairs,
    dilation: tuple[int, ...],
) -> list[tuple[tuple[int, ...], jax.Array]]:
    """Per tap (row-major over the window): the tap and the strided slice of the zero-padded
    `x` (channels repeated to the kernel's `C*m`) it multiplies, `(N, *out, C*m)`, in the
    accumulation dtype."""
    window, channels = kernel_shape[:-2], kernel_shape[-1]
    zero = jnp.zeros((), x.dtype)
    x = lax.pad(x, zero, [(0, 0, 0), *[(lo, hi, 0) for lo, hi in pads], (0, 0, 0)])
    if channels > x.shape[-1]:  # output channel c*m + k reads input channel c
        x = jnp.repeat(x, channels // x.shape[-1], axis=-1)
    x = x.astype(_accumulator(x.dtype))
    extent = tuple((k - 1) * d + 1 for k, d in zip(window, dilation))
    out = tuple((p - e) // s + 1 for p, e, s in zip(x.shape[1:-1], extent, strides))
    pieces = []
    for tap in itertools.product(*(range(k) for k in window)):
        start = (0, *(t * d for t, d in zip(tap, dilation)), 0)
        limit = (x.shape[0], *(b + (o - 1) * s + 1 for b, o, s in zip(start[1:], out, strides)))
        pieces.append((tap, lax.slice(x, start, (*limit, channels), (1, *strides, 1))))
    return pieces


def _taps_sum(
    x: jax.Array,
    kernel: jax.Array,
    strides: tuple[int, ...],
    pads: Pairs,
    dilation: tuple[int, ...],
) -> jax.Array:
    """The conv itself: the sum over taps of slice times weights, `(N, *out, C*m)`."""
    acc = _accumulator(x.dtype)
    total = None
    for tap, piece in _pieces(x, kernel.shape, strides, pads, dilation):
        term = piece * kernel[(*tap, 0)].astype(acc).reshape((1,) * (piece.ndim - 1) + (-1,))
        total = term if total is None else total + term
    return _opaque(total.astype(x.dtype))


def _opaque(y: jax.Array) -> jax.Array:
    """`y` unchanged (a `reduce_precision` to its own format), as an op XLA:CPU's library (YNN)
    fusions do not take.

    Without it XLA:CPU may pull the sum over taps into a consumer's reduction (a loss, batch-norm
    statistics) as one library fusion whose operands, every shifted slice and broadcast weight,
    it first writes out: `jit(value_and_grad)` of `sum(depthwise(x, k) * dy)` at
    16×32×32×32 float32 took 66 ms with the fusion and 3.7 ms without, on a 2-core CPU. Linear
    (JAX transposes it to itself), so it also guards the input gradient (`_taps_conv_jvp`).
    """
    info = jnp.finfo(y.dtype)
    return lax.reduce_precision(y, exponent_bits=info.nexp, mantissa_bits=info.nmant)


#: Float32 bytes one batch chunk may take: about one core's L2 cache.
_CHUNK_BYTES = 1 << 20


def _batch_chunk(x: jax.Array) -> int:
    """Images per chunk of `x` (`(N, ...)`): the largest proper divisor of `N` whose chunk fits
    `_CHUNK_BYTES` in float32, else 1; `N` when `N == 1`."""
    n = x.shape[0]
    per_image = math.prod(x.shape[1:]) * 4
    fits = [d for d in range(1, n) if n % d == 0 and d * per_image <= _CHUNK_BYTES]
    return max(fits, default=1) if n > 1 else n


def _over_batch_chunks(
    fn: Callable[[jax.Array], jax.Array], x: jax.Array, *, remat: bool = False
) -> jax.Array:
    """`fn(x)` for an `fn` that treats images independently, computed chunk by chunk
    (`_batch_chunk`) in a `lax.scan`.

    The loop is the one fusion boundary XLA:CPU keeps: its input and output are written out
    whole, so neither the producer of `x` nor the consumers of the result are fused into (and
    recomputed by) the sum over taps, and each chunk's shifted slices are read from cache.
    `remat=True` wraps the loop's body in `jax.checkpoint`, so that differentiating through it
    recomputes each chunk's intermediates from `x` rather than storing them for all chunks.
    """
    n, chunk = x.shape[0], _batch_chunk(x)
    if chunk == n:
        return fn(x)
    body = jax.checkpoint(fn) if remat else fn
    _, ys = lax.scan(
        lambda carry, xc: (carry, body(xc)), None, x.reshape(n // chunk, chunk, *x.shape[1:])
    )
    return ys.reshape(n, *ys.shape[2:])


def _spread(v: jax.Array, shape: tuple[int, ...]) -> jax.Array:
    """`v` (`(C,)`) broadcast to `shape` (`(..., C)`) by repeated doubling along the flattened
    leading axis.

    The value is a broadcast; the form is for the transpose: JAX turns each doubling
    (`concatenate([z, z])`) into "add the two halves", so the cotangent of `v` becomes a halving
    tree, each level a fused elementwise loop, down to `_TREE_ROWS` rows and one reduction.
    """
    rows = math.prod(shape[:-1])
    levels = max(0, math.ceil(math.log2(rows / _TREE_ROWS))) if rows > _TREE_ROWS else 0
    z = jnp.broadcast_to(v, (-(-rows // 2**levels), shape[-1]))
    for _ in range(levels):
        z = jnp.concatenate([z, z], axis=0)
    return z[:rows].reshape(shape)


def _kernel_tangent(
    x: jax.Array,
    dk: jax.Array,
    strides: tuple[int, ...],
    pads: Pairs,
    dilation: tuple[int, ...],
) -> jax.Array:
    """The conv's tangent in its kernel, `sum_t slice_t(x) * dk[t]`, written for a fast transpose.

    Over batch chunks (`_over_batch_chunks`, rematerialising each chunk's slices from `x`),
    the transpose is one loop whose every step reduces all
    taps of one chunk of `x` and of the cotangent while they are in cache, each tap by the
    halving tree that the doubling spread (`_spread`) transposes into.
    """
    acc = _accumulator(x.dtype)

    def tangent(xc: jax.Array) -> jax.Array:
        total = None
        for tap, piece in _pieces(xc, dk.shape, strides, pads, dilation):
            term = piece * _spread(dk[(*tap, 0)].astype(acc), piece.shape)
            total = term if total is None else total + term
        return total.astype(xc.dtype)

    return _over_batch_chunks(tangent, x, remat=True)


@functools.partial(jax.custom_jvp, nondiff_argnums=(2, 3, 4))
def _taps_conv(
    x: jax.Array,
    kernel: jax.Array,
    strides: tuple[int, ...],
    pads: Pairs,
    dilation: tuple[int, ...],
) -> jax.Array:
    """`_taps_sum` with the tangent rule below (zero padding `pads` already resolved)."""
    return _taps_sum(x, kernel, strides, pads, dilation)


def _taps_conv_jvp(
    strides: tuple[int, ...],
    pads: Pairs,
    dilation: tuple[int, ...],
    primals: tuple[jax.Array, jax.Array],
    tangents: tuple[jax.Array | SymbolicZero, jax.Array | SymbolicZero],
) -> tuple[jax.Array, jax.Array]:
    """Linear in `(dx, dk)`: the conv of `dx` (transpose: pads and sums) plus `_kernel_tangent`."""
    x, kernel = primals
    dx, dk = tangents
    # Under differentiation the result is written out whole (`_over_batch_chunks`) for the
    # backward pass to read; undifferentiated, `_taps_conv` stays fusible into its consumers.
    y = _over_batch_chunks(lambda xc: _taps_conv(xc, kernel, strides, pads, dilation), x)
    dy = jnp.zeros_like(y)
    if not isinstance(dx, SymbolicZero):
        dy = _taps_sum(_opaque(dx), kernel, strides, pads, dilation)
    if not isinstance(dk, SymbolicZero):
        dk_term = _kernel_tangent(x, dk, strides, pads, dilation)
        dy = dk_term if isinstance(dx, SymbolicZero) else dy + dk_term
    return y, dy


_taps_conv.defjvp(_taps_conv_jvp, symbolic_zeros=True)
