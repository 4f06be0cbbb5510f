"""Derivatives of the taps depthwise conv (custom JVP, kernel gradient as a halving tree, both
over batch chunks)."""

from __future__ import annotations

import functools
import itertools
import random

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

import sepconv_jax as sj
from sepconv_jax import _depthwise_taps

_seed = itertools.count(5000)

PADDINGS = ("SAME", "VALID", "CAUSAL", "CIRCULAR", "REFLECT", "REPLICATE", "explicit")
#: Spatial sizes per rank. With batch 3 and `_TREE_ROWS` patched to `TREE_ROWS`, every rank
#: runs the halving tree of the kernel gradient (odd row counts included).
SPATIAL = {1: (23,), 2: (7, 6), 3: (4, 4, 3)}
TREE_ROWS = 8


@pytest.fixture
def small_tree(monkeypatch):
    """A short `_TREE_ROWS`, so that tiny shapes take several halving levels."""
    monkeypatch.setattr(_depthwise_taps, "_TREE_ROWS", TREE_ROWS)


def _grid(n: int, seed: int) -> list[tuple[int, str, int, int, int]]:
    """`n` configurations `(rank, padding, stride, dilation, multiplier)` drawn with a fixed
    seed, every padding mode and rank at least once."""
    rng = random.Random(seed)
    grid = []
    for i in range(n):
        padding = PADDINGS[i % len(PADDINGS)]
        rank = 1 + i % 3
        grid.append((rank, padding, rng.choice((1, 2)), rng.choice((1, 2)), rng.choice((1, 3))))
    return grid


def _inputs(rank: int, multiplier: int, dtype=jnp.float64, channels: int = 2):
    key = jax.random.key(next(_seed))
    kx, kk = jax.random.split(key)
    x = jax.random.normal(kx, (3, *SPATIAL[rank], channels), dtype)
    dw = jax.random.normal(kk, (*(3,) * rank, 1, channels * multiplier), dtype)
    return x, dw


def _padding(padding: str, rank: int):
    return ((2, 0),) * rank if padding == "explicit" else padding


def _conv(impl: str, rank: int, padding: str, stride: int, dilation: int):
    return functools.partial(
        sj.depthwise_conv,
        strides=stride,
        padding=_padding(padding, rank),
        dilation=dilation,
        implementation=impl,
    )


def _rel_err(a: jax.Array, b: jax.Array) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


@pytest.mark.parametrize("rank,padding,stride,dilation,m", _grid(7, seed=15))
def test_vjp_and_jvp_match_grouped_conv_float64(rank, padding, stride, dilation, m, small_tree):
    """Float64: the taps path's VJP (both arguments, and each alone) and JVP equal those of
    `implementation="xla"` (one grouped conv) to 1e-12."""
    with jax.enable_x64(True):
        x, dw = _inputs(rank, m)
        taps, xla = (_conv(i, rank, padding, stride, dilation) for i in ("taps", "xla"))
        y, pull_taps = jax.vjp(taps, x, dw)
        y_ref, pull_xla = jax.vjp(xla, x, dw)
        assert _rel_err(y, y_ref) <= 1e-12
        dy = jax.random.normal(jax.random.key(next(_seed)), y.shape, jnp.float64)
        for got, want in zip(pull_taps(dy), pull_xla(dy)):
            assert _rel_err(got, want) <= 1e-12
        g_k = jax.grad(lambda k: jnp.vdot(taps(x, k), dy))(dw)  # x not differentiated
        g_x = jax.grad(lambda v: jnp.vdot(taps(v, dw), dy))(x)  # kernel not differentiated
        assert _rel_err(g_k, pull_xla(dy)[1]) <= 1e-12
        assert _rel_err(g_x, pull_xla(dy)[0]) <= 1e-12
        tx, tk = _inputs(rank, m)
        _, jvp_taps = jax.jvp(taps, (x, dw), (tx, tk))
        _, jvp_xla = jax.jvp(xla, (x, dw), (tx, tk))
        assert _rel_err(jvp_taps, jvp_xla) <= 1e-12


@pytest.mark.parametrize("rank,padding,stride,dilation,m", _grid(3, seed=16))
def test_check_grads_second_order(rank, padding, stride, dilation, m, small_tree):
    """Forward and reverse mode to second order against finite differences (float64)."""
    with jax.enable_x64(True):
        x, dw = _inputs(rank, m)
        check_grads(_conv("taps", rank, padding, stride, dilation), (x, dw), 2, ("fwd", "rev"))


def test_kernel_gradient_accumulates_bfloat16_in_float32():
    """bf16 inputs over 8192 rows (the default tree): the kernel gradient is the float64 one of the same (rounded)
    inputs to bf16's own rounding (rel. 1e-2), which accumulation in bf16 would miss."""
    kx, kk, ky = jax.random.split(jax.random.key(next(_seed)), 3)
    x = jax.random.normal(kx, (8, 32, 32, 8)).astype(jnp.bfloat16)
    dw = jax.random.normal(kk, (3, 3, 1, 8)).astype(jnp.bfloat16)
    dy = jax.random.normal(ky, (8, 32, 32, 8)).astype(jnp.bfloat16)
    g = jax.grad(lambda k: jnp.vdot(sj.depthwise_conv(x, k, implementation="taps"), dy))(dw)
    assert g.dtype == jnp.bfloat16
    with jax.enable_x64(True):
        x64, dw64, dy64 = (a.astype(jnp.float64) for a in (x, dw, dy))
        ref = jax.grad(lambda k: jnp.vdot(sj.depthwise_conv(x64, k, implementation="xla"), dy64))(
            dw64
        )
    assert _rel_err(g, ref) <= 1e-2


def _eqns(jaxpr):
    """Every equation of `jaxpr` and of the jaxprs nested in its equations (scan bodies...)."""
    for eqn in jaxpr.eqns:
        yield eqn
        for sub in jax.extend.core.jaxprs_in_params(eqn.params):
            yield from _eqns(sub)


def test_kernel_gradient_is_a_halving_tree(small_tree, monkeypatch):
    """The kernel gradient never reduces more than `_TREE_ROWS` rows of a product at once
    (here over one chunk of two images)."""
    monkeypatch.setattr(_depthwise_taps, "_CHUNK_BYTES", 2 * 7 * 6 * 2 * 4)
    key = jax.random.key(next(_seed))
    x = jax.random.normal(key, (4, *SPATIAL[2], 2))
    dw = jax.random.normal(jax.random.key(next(_seed)), (3, 3, 1, 2))
    jaxpr = jax.make_jaxpr(
        jax.grad(lambda k: jnp.sum(sj.depthwise_conv(x, k, implementation="taps") ** 2))
    )(dw)
    assert "split" in str(jaxpr)
    assert 2 * np.prod(SPATIAL[2]) > TREE_ROWS
    sums = [e for e in _eqns(jaxpr.jaxpr) if e.primitive.name == "reduce_sum"]
    assert sums
    for eqn in sums:
        assert eqn.invars[0].aval.shape[0] <= TREE_ROWS


@pytest.mark.parametrize("batch,chunk_bytes,chunk", [(1, 1 << 20, 1), (6, 1 << 20, 3), (6, 720, 2)])
def test_batch_chunks(batch, chunk_bytes, chunk, monkeypatch):
    """Under differentiation the conv and its kernel tangent loop over batch chunks (a scan of
    `batch / chunk` steps, none for one image), with VJP and JVP still those of
    `implementation="xla"` to 1e-12 (float64)."""
    monkeypatch.setattr(_depthwise_taps, "_CHUNK_BYTES", chunk_bytes)
    with jax.enable_x64(True):
        kx, kk, kt, ku, ky = jax.random.split(jax.random.key(next(_seed)), 5)
        x = jax.random.normal(kx, (batch, 5, 6, 3), jnp.float64)  # 360 float32 bytes per image
        dw = jax.random.normal(kk, (3, 3, 1, 6), jnp.float64)
        assert _depthwise_taps._batch_chunk(x) == chunk
        taps, xla = (_conv(i, 2, "SAME", 1, 1) for i in ("taps", "xla"))
        jaxpr = jax.make_jaxpr(jax.grad(lambda k, v: jnp.sum(taps(v, k) ** 2), (0, 1)))(dw, x)
        lengths = {e.params["length"] for e in _eqns(jaxpr.jaxpr) if e.primitive.name == "scan"}
        assert lengths == (set() if chunk == batch else {batch // chunk})
        dy = jax.random.normal(ky, (batch, 5, 6, 6), jnp.float64)
        for got, want in zip(jax.vjp(taps, x, dw)[1](dy), jax.vjp(xla, x, dw)[1](dy)):
            assert _rel_err(got, want) <= 1e-12
        tangents = (jax.random.normal(kt, x.shape, x.dtype), jax.random.normal(ku, dw.shape))
        got = jax.jvp(taps, (x, dw), tangents)[1]
        assert _rel_err(got, jax.jvp(xla, (x, dw), tangents)[1]) <= 1e-12
