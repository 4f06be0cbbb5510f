"""Helpers shared by the linen and nnx module tests: fresh inputs, tolerances, references."""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from sepconv_jax import ops

HIGHEST = lax.Precision.HIGHEST
# The module and the op run the same XLA computation: equal up to float32 rounding.
SAME_OP_TOL = dict(atol=1e-6, rtol=1e-6)
# Different but exact-in-maths computations (full conv vs separable, BN by hand), float32.
F32_TOL = dict(atol=1e-5, rtol=1e-5)
EPS = 1e-5  # the blocks' default BatchNorm epsilon

_seed = itertools.count(2000)


def key() -> jax.Array:
    """A fresh key per call. RBG keys: threefry's XLA:CPU compile is ~0.5 s per new shape."""
    return jax.random.key(next(_seed), impl="rbg")


def normal(shape, dtype=jnp.float32) -> jax.Array:
    """Fresh standard-normal values (drawn by NumPy: nothing to compile)."""
    return jnp.asarray(np.random.default_rng(next(_seed)).standard_normal(shape), dtype)


def fill(path, a) -> jax.Array:
    """A fresh random value for the variable at `path` (running variances positive)."""
    v = normal(a.shape, a.dtype)
    return jnp.abs(v) + jnp.asarray(0.5, a.dtype) if path[-1].key == "var" else v


def shapes(tree) -> dict:
    return jax.tree.map(lambda a: a.shape, tree)


def channels(v: jax.Array, ndim: int) -> jax.Array:
    """A per-channel vector `(C,)` reshaped to broadcast against a rank-`ndim` array."""
    return v.reshape((1,) * (ndim - 1) + v.shape)


def bn_by_hand(h, mean, var, scale, bias) -> jax.Array:
    """BatchNorm with running statistics `mean`, `var` and affine `scale`, `bias`, by hand."""
    mean, var = channels(mean, h.ndim), channels(var, h.ndim)
    return (h - mean) / jnp.sqrt(var + EPS) * channels(scale, h.ndim) + channels(bias, h.ndim)


def spatial_out(size: int, stride: int) -> int:
    return -(-size // stride)  # SAME padding


def conv_grid() -> list[dict]:
    """Rank × stride × multiplier × bias, the conv layers' grid in both APIs."""
    return [
        dict(nd=nd, strides=s, m=m, use_bias=b)
        for nd, s, m, b in itertools.product((1, 2, 3), (1, 2), (1, 2), (False, True))
    ]


#: InvertedResidual structures: input and output channels, stride, expansion, residual or not.
INVERTED_RESIDUAL_CASES = (
    dict(c=4, f=4, strides=1, expansion=6, residual=True),
    dict(c=4, f=8, strides=1, expansion=6, residual=False),
    dict(c=4, f=4, strides=2, expansion=6, residual=False),
    dict(c=4, f=4, strides=1, expansion=1, residual=True),
    dict(c=4, f=6, strides=2, expansion=1, residual=False),
    dict(c=3, f=3, strides=1, expansion=2, residual=True, nd=1),
)

#: SeparableBlock structures: rank, stride, channel multiplier.
SEPARABLE_BLOCK_CASES = (
    dict(nd=2, strides=1, m=1),
    dict(nd=2, strides=2, m=2),
    dict(nd=1, strides=2, m=1),
    dict(nd=3, strides=1, m=2),
)

#: PointwiseConv inputs of every rank, with and without bias.
POINTWISE_CASES = (
    dict(shape=(2, 7, 3), use_bias=True),
    dict(shape=(2, 4, 5, 3), use_bias=False),
    dict(shape=(2, 2, 3, 4, 3), use_bias=True),
)


def separable_op(x, dw, pw, bias, **geometry) -> jax.Array:
    """`ops.separable_conv` at HIGHEST precision, plus `bias` when not `None`."""
    y = ops.separable_conv(x, dw, pw, precision=HIGHEST, **geometry)
    return y if bias is None else y + channels(bias, y.ndim)


def separable_geometry(nd: int, strides: int) -> dict:
    """Strides, padding and dilation of the separable-layer grid: VALID in 1-D, SAME else,
    dilated in 2-D."""
    padding, dilation = ("VALID", 1) if nd == 1 else ("SAME", 2 if nd == 2 else 1)
    return dict(strides=strides, padding=padding, dilation=dilation)


def separable_out(size: int, geometry: dict) -> int:
    """The output size along a dim of `size` of a 3-wide window with `separable_geometry`."""
    if geometry["padding"] == "SAME":
        return spatial_out(size, geometry["strides"])
    return (size - 3) // geometry["strides"] + 1


def flax_conv_args(geometry: dict, use_bias: bool) -> dict:
    """The keyword arguments of the stock Flax `Conv` (linen and nnx) with this geometry."""
    return dict(
        strides=geometry["strides"],
        padding=geometry["padding"],
        kernel_dilation=geometry["dilation"],
        use_bias=use_bias,
        precision=HIGHEST,
    )
