"""linen and nnx modules agree: same variable paths and shapes, same outputs, same BN updates."""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from absl.testing import parameterized
from flax import nnx

from sepconv_jax import linen as sl
from sepconv_jax import nnx as sn

# Both sides call the same ops on the same values; BatchNorm statistics are computed by two
# copies of Flax's code, so allow float32 rounding.
TOL = dict(atol=1e-5, rtol=1e-5)

_seed = itertools.count(4000)


def _key() -> jax.Array:
    return jax.random.key(next(_seed), impl="rbg")


def _normal(shape, dtype=jnp.float32) -> jax.Array:
    return jnp.asarray(np.random.default_rng(next(_seed)).standard_normal(shape), dtype)


def _linen_variables(module: nn.Module, x: jax.Array, **kwargs) -> dict:
    """Random linen variables (positive running variances), from the abstract init."""

    def fill(path, a):
        v = _normal(a.shape, a.dtype)
        return jnp.abs(v) + 0.5 if path[-1].key == "var" else v

    abstract = jax.eval_shape(functools.partial(module.init, **kwargs), _key(), x)
    return jax.tree_util.tree_map_with_path(fill, abstract)


def _as_nnx_dict(variables: dict) -> dict:
    """linen `{"params": ..., "batch_stats": ...}` as one nested dict, as nnx holds them."""

    def merge(a: dict, b: dict) -> dict:
        out = dict(a)
        for k, v in b.items():
            out[k] = merge(out[k], v) if k in out and isinstance(v, dict) else v
        return out

    return merge(dict(variables.get("params", {})), dict(variables.get("batch_stats", {})))


def _load(make: Callable[[nnx.Rngs], nnx.Module], variables: dict) -> nnx.Module:
    """Builds the nnx module and loads linen `variables` into it, path for path."""
    graphdef, state = nnx.split(nnx.eval_shape(lambda: make(nnx.Rngs(_key()))))
    pure = _as_nnx_dict(variables)
    shapes = lambda tree: jax.tree.map(jnp.shape, tree)  # noqa: E731
    chex.assert_trees_all_equal_structs(nnx.to_pure_dict(state), pure)
    assert shapes(nnx.to_pure_dict(state)) == shapes(pure)
    nnx.replace_by_pure_dict(state, pure)
    return nnx.merge(graphdef, state)


LAYERS = {
    "depthwise_1d_bias": (
        (1, 9, 3),
        sl.DepthwiseConv(3, use_bias=True),
        lambda r: sn.DepthwiseConv(3, 3, use_bias=True, num_spatial_dims=1, rngs=r),
    ),
    "depthwise_2d_m2_s2_reflect": (
        (2, 6, 6, 3),
        sl.DepthwiseConv((3, 2), 2, strides=2, padding="REFLECT"),
        lambda r: sn.DepthwiseConv(
            3, (3, 2), channel_multiplier=2, strides=2, padding="REFLECT", rngs=r
        ),
    ),
    "depthwise_2d_reflect_amount": (  # torch's Conv2d(k=5, padding=1, padding_mode="reflect")
        (2, 7, 6, 3),
        sl.DepthwiseConv(5, padding=("REFLECT", 1)),
        lambda r: sn.DepthwiseConv(3, 5, padding=("REFLECT", [1, (1, 1)]), rngs=r),
    ),
    "depthwise_3d_dilated": (
        (1, 5, 5, 5, 2),
        sl.DepthwiseConv(3, dilation=2),
        lambda r: sn.DepthwiseConv(2, (3, 3, 3), dilation=2, rngs=r),
    ),
    "pointwise_bias": ((2, 4, 4, 3), sl.PointwiseConv(5), lambda r: sn.PointwiseConv(3, 5, rngs=r)),
    "pointwise_no_bias": (
        (2, 7, 3),
        sl.PointwiseConv(5, use_bias=False),
        lambda r: sn.PointwiseConv(3, 5, use_bias=False, rngs=r),
    ),
    "separable_2d_m2_s2": (
        (2, 6, 6, 3),
        sl.SeparableConv(4, 3, 2, strides=2),
        lambda r: sn.SeparableConv(3, 4, 3, channel_multiplier=2, strides=2, rngs=r),
    ),
    "separable_1d_valid_no_bias": (
        (2, 8, 3),
        sl.SeparableConv(4, 5, padding="VALID", use_bias=False),
        lambda r: sn.SeparableConv(3, 4, (5,), padding="VALID", use_bias=False, rngs=r),
    ),
    "separable_3d": (
        (1, 4, 4, 4, 2),
        sl.SeparableConv(3, 3),
        lambda r: sn.SeparableConv(2, 3, 3, num_spatial_dims=3, rngs=r),
    ),
}

BLOCKS = {
    "separable_block": (
        (4, 5, 5, 3),
        sl.SeparableBlock(4),
        lambda r: sn.SeparableBlock(3, 4, rngs=r),
    ),
    "separable_block_m2_s2": (
        (4, 6, 6, 3),
        sl.SeparableBlock(5, strides=2, channel_multiplier=2),
        lambda r: sn.SeparableBlock(3, 5, strides=2, channel_multiplier=2, rngs=r),
    ),
    "separable_block_1d_no_norm": (
        (2, 8, 3),
        sl.SeparableBlock(4, norm=None),
        lambda r: sn.SeparableBlock(3, 4, norm=None, num_spatial_dims=1, rngs=r),
    ),
    "inverted_residual": (
        (4, 5, 5, 4),
        sl.InvertedResidual(4),
        lambda r: sn.InvertedResidual(4, 4, rngs=r),
    ),
    "inverted_residual_e1_s2": (
        (4, 6, 6, 4),
        sl.InvertedResidual(6, expansion=1, strides=2),
        lambda r: sn.InvertedResidual(4, 6, expansion=1, strides=2, rngs=r),
    ),
    "inverted_residual_1d_widen": (
        (4, 8, 3),
        sl.InvertedResidual(5, expansion=2),
        lambda r: sn.InvertedResidual(3, 5, expansion=2, num_spatial_dims=1, rngs=r),
    ),
}


class EquivalenceTest(parameterized.TestCase):
    @parameterized.named_parameters(*((k, *v) for k, v in LAYERS.items()))
    def test_layers(self, shape, linen_module, make_nnx):
        x = _normal(shape)
        variables = _linen_variables(linen_module, x)
        nnx_module = _load(make_nnx, variables)
        chex.assert_trees_all_close(nnx_module(x), linen_module.apply(variables, x), **TOL)

    @parameterized.named_parameters(*((k, *v) for k, v in BLOCKS.items()))
    def test_blocks_train_and_eval(self, shape, linen_module, make_nnx):
        x = _normal(shape)
        variables = _linen_variables(linen_module, x, train=False)
        nnx_module = _load(make_nnx, variables)

        nnx_module.eval()
        y_eval = linen_module.apply(variables, x, train=False)
        chex.assert_trees_all_close(nnx_module(x), y_eval, **TOL)

        y, updates = linen_module.apply(variables, x, train=True, mutable=["batch_stats"])
        nnx_module.train()
        chex.assert_trees_all_close(nnx_module(x), y, **TOL)
        updated = _as_nnx_dict({**variables, **updates})
        chex.assert_trees_all_close(nnx.to_pure_dict(nnx.state(nnx_module)), updated, **TOL)
        if "batch_stats" in variables:  # the update did change something
            self.assertFalse(
                np.allclose(
                    jax.tree.leaves(updates["batch_stats"])[0],
                    jax.tree.leaves(variables["batch_stats"])[0],
                )
            )
