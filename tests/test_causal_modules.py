"""The causal sequence modules: cached decoding equals the full forward, linen and nnx agree."""

from __future__ import annotations

import functools
import itertools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from sepconv_jax import linen as sl
from sepconv_jax import nnx as sn

# float32; the same ops on the same values on both sides (LayerNorm statistics per frame).
TOL = dict(atol=1e-5, rtol=1e-5)
N, T, C = 2, 11, 3

_seed = itertools.count(5000)


def _normal(shape) -> jax.Array:
    return jnp.asarray(np.random.default_rng(next(_seed)).standard_normal(shape), jnp.float32)


CASES = {
    "depthwise_m2_d2_silu": (
        sl.CausalDepthwiseConv1D(4, channel_multiplier=2, dilation=2, activation="silu"),
        lambda r: sn.CausalDepthwiseConv1D(
            C, 4, channel_multiplier=2, dilation=2, activation="silu", rngs=r
        ),
    ),
    "separable_d3": (
        sl.CausalSeparableConv1D(5, 3, dilation=3),
        lambda r: sn.CausalSeparableConv1D(C, 5, 3, dilation=3, rngs=r),
    ),
    "conformer_k5": (
        sl.ConformerConv(kernel_size=5),
        lambda r: sn.ConformerConv(C, kernel_size=5, rngs=r),
    ),
}


@functools.cache
def _setup(name: str):
    """The linen module, random params, a random input and the full forward (shared per case)."""
    module, make = CASES[name]
    x = _normal((N, T, C))
    abstract = jax.eval_shape(
        functools.partial(module.init, decode=True), jax.random.key(0), x[:, :1]
    )
    params = jax.tree.map(lambda a: _normal(a.shape), abstract["params"])
    cache = jax.tree.map(lambda a: jnp.zeros(a.shape, a.dtype), abstract["cache"])
    full = jax.jit(module.apply)({"params": params}, x)
    return module, make, x, params, cache, full


def _chunks(seed: int) -> list[tuple[int, int]]:
    """Random chunk bounds over T steps, one chunk of length 1 at least."""
    rng = np.random.default_rng(seed)
    cuts = sorted({1, *rng.choice(np.arange(2, T), 3, replace=False).tolist()})
    bounds = [0, *cuts, T]
    return list(zip(bounds[:-1], bounds[1:]))


@pytest.mark.parametrize("name", sorted(CASES))
def test_linen_cached_decode_equals_full_forward(name):
    module, _, x, params, cache, full = _setup(name)
    init_cache = module.init(jax.random.key(1), x[:, :1], decode=True)["cache"]
    chex.assert_trees_all_equal(init_cache, cache)  # init creates the zero (start) state
    step = jax.jit(functools.partial(module.apply, decode=True, mutable=["cache"]))
    outs = []
    for a, b in _chunks(len(name)):
        y, updated = step({"params": params, "cache": cache}, x[:, a:b])
        cache = updated["cache"]
        outs.append(y)
    chex.assert_trees_all_close(jnp.concatenate(outs, axis=1), full, **TOL)


@pytest.mark.parametrize("name", sorted(CASES))
def test_nnx_equals_linen_and_its_cached_decode_the_full_forward(name):
    _, make, x, params, cache, full = _setup(name)
    graphdef, state = nnx.split(nnx.eval_shape(lambda: make(nnx.Rngs(0))))
    chex.assert_trees_all_equal_shapes(nnx.to_pure_dict(state), params)  # same names, shapes
    nnx.replace_by_pure_dict(state, params)
    model = nnx.merge(graphdef, state)
    chex.assert_trees_all_close(model(x), full, **TOL)
    model.init_cache(N)
    chex.assert_trees_all_equal(nnx.to_pure_dict(nnx.state(model, nnx.Cache)), cache)
    step = nnx.jit(lambda m, chunk: m(chunk, decode=True))
    outs = [step(model, x[:, a:b]) for a, b in _chunks(len(name) + 1)]
    chex.assert_trees_all_close(jnp.concatenate(outs, axis=1), full, **TOL)


def test_segment_ids_in_a_module_equal_each_document_alone():
    module, _, x, params, _, _ = _setup("separable_d3")
    ids = jnp.asarray([[0] * 4 + [1] * 7, [0] * 9 + [1] * 2], jnp.int32)
    apply = jax.jit(module.apply)
    y = apply({"params": params}, x, segment_ids=ids)
    for row, cut in ((0, 4), (1, 9)):
        for a, b in ((0, cut), (cut, T)):
            alone = apply({"params": params}, x[row : row + 1, a:b])
            chex.assert_trees_all_close(y[row : row + 1, a:b], alone, **TOL)


def test_non_causal_conformer_with_batch_norm_linen_equals_nnx():
    module = sl.ConformerConv(kernel_size=5, causal=False, norm="batch")
    x = _normal((N, T, C))
    variables = module.init(jax.random.key(0), x)
    params = jax.tree.map(lambda a: _normal(a.shape), variables["params"])
    y, updated = module.apply(
        {"params": params, **{"batch_stats": variables["batch_stats"]}},
        x,
        train=True,
        mutable=["batch_stats"],
    )
    model = sn.ConformerConv(C, kernel_size=5, causal=False, norm="batch", rngs=nnx.Rngs(0))
    state = nnx.state(model, nnx.Param)
    nnx.replace_by_pure_dict(state, params)
    nnx.update(model, state)
    chex.assert_trees_all_close(model(x), y, **TOL)  # train mode after construction
    stats = nnx.to_pure_dict(nnx.state(model, nnx.BatchStat))
    chex.assert_trees_all_close(stats, updated["batch_stats"], **TOL)
    # The centred window reads the future: changing the last step changes earlier outputs.
    model.eval()
    later = model(x.at[:, -1].add(1.0))
    assert not np.allclose(model(x)[:, -2], later[:, -2])


_X = jnp.ones((N, T, C))


@pytest.mark.parametrize(
    "call, error, match",
    [
        (
            lambda: sl.CausalDepthwiseConv1D(3).init(
                jax.random.key(0), _X, segment_ids=jnp.zeros((N, T), jnp.int32), decode=True
            ),
            ValueError,
            "segment_ids cannot be used with decode=True",
        ),
        (
            lambda: sn.CausalDepthwiseConv1D(C, 3, rngs=nnx.Rngs(0))(_X, decode=True),
            ValueError,
            "call init_cache first",
        ),
        (
            lambda: sl.ConformerConv(norm="batch").init(jax.random.key(0), _X),
            ValueError,
            "norm='batch' cannot be causal",
        ),
        (
            lambda: sn.ConformerConv(C, causal=False, rngs=nnx.Rngs(0)).init_cache(N),
            ValueError,
            "init_cache needs causal=True",
        ),
        (
            lambda: sl.ConformerConv(causal=False).init(jax.random.key(0), _X, decode=True),
            ValueError,
            "decode and segment_ids need causal=True",
        ),
        (
            lambda: sl.CausalSeparableConv1D(4, (3, 3)).init(jax.random.key(0), _X),
            ValueError,
            "kernel_size must be an int or one entry",
        ),
        (
            lambda: sn.CausalSeparableConv1D(C, 4, 0, rngs=nnx.Rngs(0)),
            ValueError,
            "kernel_size must be a positive int",
        ),
        (
            lambda: sl.CausalDepthwiseConv1D(3).init(jax.random.key(0), jnp.ones((N, 4, 4, C))),
            ValueError,
            r"x must have shape \(N, T, C\)",
        ),
        (
            lambda: sn.CausalDepthwiseConv1D(C, 3, implementation="pallas", rngs=nnx.Rngs(0)),
            ValueError,
            "implementation='pallas' is not supported",
        ),
        (
            lambda: sn.CausalDepthwiseConv1D(C + 1, 3, rngs=nnx.Rngs(0))(_X),
            ValueError,
            "in_features=4",
        ),
    ],
)
def test_bad_arguments_name_the_argument(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_cache_of_another_dtype_is_a_type_error():
    layer = sn.CausalDepthwiseConv1D(C, 3, rngs=nnx.Rngs(0))
    layer.init_cache(N, jnp.bfloat16)
    with pytest.raises(TypeError, match="state has dtype bfloat16 but x has float32"):
        layer(_X, decode=True)


def test_nnx_cache_defaults_to_the_compute_dtype():
    layer = sn.CausalSeparableConv1D(C, 4, 3, dtype=jnp.bfloat16, rngs=nnx.Rngs(0))
    x = _normal((N, T, C))
    full = layer(x)
    layer.init_cache(N)
    assert layer.state[...].dtype == jnp.bfloat16 and full.dtype == jnp.bfloat16
    step = nnx.jit(lambda m, chunk: m(chunk, decode=True))
    y = jnp.concatenate([step(layer, x[:, :5]), step(layer, x[:, 5:])], axis=1)
    # bfloat16: the same sums in the same order, so equal up to a rounding of the output.
    chex.assert_trees_all_close(
        y.astype(jnp.float32), full.astype(jnp.float32), atol=2e-2, rtol=2e-2
    )
