"""Tests of the nnx modules: shapes, names, equality with the ops, train/eval, dtypes, errors."""

from __future__ import annotations

import math
from collections.abc import Callable

import _modules as M  # noqa: I001 - the tests' shared helpers
import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from absl.testing import parameterized
from flax import nnx

from sepconv_jax import nnx as sn
from sepconv_jax import ops

_normal, _shapes, _channels = M.normal, M.shapes, M.channels
_spatial_out, _grid = M.spatial_out, M.conv_grid


def _rngs() -> nnx.Rngs:
    """Fresh rngs (RBG keys, as `_modules.key`)."""
    return nnx.Rngs(M.key())


def _build(make: Callable[[nnx.Rngs], nnx.Module]) -> nnx.Module:
    """`make(rngs)` with every variable set to fresh random values (positive variances).

    Built abstractly (`nnx.eval_shape`) and filled from NumPy: no random-number kernels to
    compile. `test_default_init_variances` runs a real initialisation.
    """
    graphdef, state = nnx.split(nnx.eval_shape(lambda: make(_rngs())))
    pure = nnx.to_pure_dict(state)
    nnx.replace_by_pure_dict(state, jax.tree_util.tree_map_with_path(M.fill, pure))
    return nnx.merge(graphdef, state)


def _pure(module: nnx.Module) -> dict:
    return nnx.to_pure_dict(nnx.state(module))


def _bn_eval(h: jax.Array, bn: nnx.BatchNorm) -> jax.Array:
    """BatchNorm with running statistics, by hand."""
    return M.bn_by_hand(h, bn.mean[...], bn.var[...], bn.scale[...], bn.bias[...])


class ConvLayerTest(parameterized.TestCase):
    @parameterized.parameters(*_grid())
    def test_depthwise_shapes_and_matches_op(self, nd, strides, m, use_bias):
        c, size = 3, 6
        x = _normal((2, *(size,) * nd, c))
        layer = _build(
            lambda rngs: sn.DepthwiseConv(
                c,
                (3,) * nd,
                strides,
                channel_multiplier=m,
                use_bias=use_bias,
                precision=M.HIGHEST,
                rngs=rngs,
            )
        )
        expected = {"depthwise_kernel": (*(3,) * nd, 1, c * m)}
        if use_bias:
            expected["bias"] = (c * m,)
        self.assertEqual(_shapes(_pure(layer)), expected)
        y = layer(x)
        chex.assert_shape(y, (2, *(_spatial_out(size, strides),) * nd, c * m))
        ref = ops.depthwise_conv(
            x, layer.depthwise_kernel[...], strides=strides, precision=M.HIGHEST
        )
        if use_bias:
            ref = ref + _channels(layer.bias[...], ref.ndim)
        chex.assert_trees_all_close(y, ref, **M.SAME_OP_TOL)

    @parameterized.parameters(
        dict(kernel_size=3, num_spatial_dims=None, window=(3, 3)),
        dict(kernel_size=3, num_spatial_dims=1, window=(3,)),
        dict(kernel_size=3, num_spatial_dims=3, window=(3, 3, 3)),
        dict(kernel_size=(5, 1), num_spatial_dims=None, window=(5, 1)),
        dict(kernel_size=[2, 3, 1], num_spatial_dims=3, window=(2, 3, 1)),
    )
    def test_kernel_size_forms(self, kernel_size, num_spatial_dims, window):
        layer = nnx.eval_shape(
            lambda: sn.DepthwiseConv(
                2,
                kernel_size,
                num_spatial_dims=num_spatial_dims,
                padding=[1] * len(window),
                rngs=_rngs(),
            )
        )
        self.assertEqual(layer.depthwise_kernel.shape, (*window, 1, 2))
        self.assertEqual(layer.kernel_size, window)
        hash(nnx.graphdef(layer))  # static attributes are hashable (nnx.jit caches on them)

    @parameterized.parameters(*M.POINTWISE_CASES)
    def test_pointwise_matches_op_and_linear(self, shape, use_bias):
        x = _normal(shape)
        layer = _build(
            lambda rngs: sn.PointwiseConv(3, 5, use_bias=use_bias, precision=M.HIGHEST, rngs=rngs)
        )
        expected = {"pointwise_kernel": (3, 5), **({"bias": (5,)} if use_bias else {})}
        self.assertEqual(_shapes(_pure(layer)), expected)
        y = layer(x)
        chex.assert_shape(y, (*shape[:-1], 5))
        ref = ops.pointwise_conv(x, layer.pointwise_kernel[...], precision=M.HIGHEST)
        if use_bias:
            ref = ref + _channels(layer.bias[...], ref.ndim)
        chex.assert_trees_all_close(y, ref, **M.SAME_OP_TOL)
        linear = nnx.eval_shape(
            lambda: nnx.Linear(3, 5, use_bias=use_bias, precision=M.HIGHEST, rngs=_rngs())
        )
        linear.kernel = nnx.Param(layer.pointwise_kernel[...])
        if use_bias:
            linear.bias = nnx.Param(layer.bias[...])
        chex.assert_trees_all_close(y, linear(x), **M.F32_TOL)

    @parameterized.parameters(*_grid())
    def test_separable_matches_op_and_full_conv(self, nd, strides, m, use_bias):
        c, features = 3, 4
        x, geometry = _normal((2, *(6,) * nd, c)), M.separable_geometry(nd, strides)
        layer = _build(
            lambda rngs: sn.SeparableConv(
                c,
                features,
                (3,) * nd,
                channel_multiplier=m,
                use_bias=use_bias,
                **geometry,
                precision=M.HIGHEST,
                rngs=rngs,
            )
        )
        expected = {
            "depthwise_kernel": (*(3,) * nd, 1, c * m),
            "pointwise_kernel": (c * m, features),
            **({"bias": (features,)} if use_bias else {}),
        }
        self.assertEqual(_shapes(_pure(layer)), expected)
        y = layer(x)
        out = M.separable_out(6, geometry)
        chex.assert_shape(y, (2, *(out,) * nd, features))
        dw, pw = layer.depthwise_kernel[...], layer.pointwise_kernel[...]
        bias = layer.bias[...] if use_bias else None
        ref = M.separable_op(x, dw, pw, bias, **geometry)
        chex.assert_trees_all_close(y, ref, **M.SAME_OP_TOL)
        conv = nnx.eval_shape(
            lambda: nnx.Conv(
                c,
                features,
                (3,) * nd,
                **M.flax_conv_args(geometry, use_bias),
                rngs=_rngs(),
            )
        )
        conv.kernel = nnx.Param(ops.separable_to_full(dw, pw, m))
        if use_bias:
            conv.bias = nnx.Param(layer.bias[...])
        chex.assert_trees_all_close(y, conv(x), **M.F32_TOL)

    def test_default_init_variances(self):
        # He normal with fan_in = prod(window) for the depthwise kernel; LeCun for pointwise.
        layer = sn.SeparableConv(256, 8, (5, 5), channel_multiplier=2, rngs=_rngs())
        dw, pw = layer.depthwise_kernel[...], layer.pointwise_kernel[...]
        np.testing.assert_allclose(float(jnp.std(dw)), math.sqrt(2 / 25), rtol=0.05)
        np.testing.assert_allclose(float(jnp.std(pw)), math.sqrt(1 / 512), rtol=0.05)
        np.testing.assert_array_equal(layer.bias[...], np.zeros(8, np.float32))


def _bn(c: int) -> dict:
    return {"scale": (c,), "bias": (c,), "mean": (c,), "var": (c,)}


class SeparableBlockTest(parameterized.TestCase):
    @parameterized.parameters(*M.SEPARABLE_BLOCK_CASES)
    def test_names_and_shapes(self, nd, strides, m):
        c, f = 3, 5
        x = _normal((2, *(4,) * nd, c))
        block = _build(
            lambda rngs: sn.SeparableBlock(
                c, f, (3,) * nd, strides=strides, channel_multiplier=m, rngs=rngs
            )
        )
        self.assertEqual(
            _shapes(_pure(block)),
            {
                "depthwise": {"depthwise_kernel": (*(3,) * nd, 1, c * m)},
                "depthwise_norm": _bn(c * m),
                "pointwise": {"pointwise_kernel": (c * m, f)},
                "pointwise_norm": _bn(f),
            },
        )
        self.assertIsInstance(block.depthwise_norm, nnx.BatchNorm)
        self.assertEqual(block.depthwise_norm.momentum, 0.9)
        chex.assert_shape(block(x), (2, *(_spatial_out(4, strides),) * nd, f))

    def test_norm_none_and_factory(self):
        x = _normal((2, 4, 4, 3))
        block = _build(lambda rngs: sn.SeparableBlock(3, 5, norm=None, rngs=rngs))
        self.assertEqual(
            _shapes(_pure(block)),
            {
                "depthwise": {"depthwise_kernel": (3, 3, 1, 3), "bias": (3,)},
                "pointwise": {"pointwise_kernel": (3, 5), "bias": (5,)},
            },
        )
        self.assertIsNone(block.depthwise_norm)
        block = _build(lambda rngs: sn.SeparableBlock(3, 5, norm=nnx.LayerNorm, rngs=rngs))
        self.assertIsInstance(block.pointwise_norm, nnx.LayerNorm)
        self.assertEqual(_shapes(_pure(block))["pointwise_norm"], {"scale": (5,), "bias": (5,)})
        chex.assert_shape(block(x, use_running_average=True), (2, 4, 4, 5))

    def test_eval_matches_ops(self):
        x = _normal((2, 5, 5, 3))
        block = _build(
            lambda rngs: sn.SeparableBlock(
                3, 4, strides=2, channel_multiplier=2, precision=M.HIGHEST, rngs=rngs
            )
        )
        block.eval()
        dw = block.depthwise.depthwise_kernel[...]
        h = ops.depthwise_conv(x, dw, strides=2, precision=M.HIGHEST)
        h = nnx.relu(_bn_eval(h, block.depthwise_norm))
        h = ops.pointwise_conv(h, block.pointwise.pointwise_kernel[...], precision=M.HIGHEST)
        ref = nnx.relu(_bn_eval(h, block.pointwise_norm))
        chex.assert_trees_all_close(block(x), ref, **M.F32_TOL)

    def test_train_mode_normalises_and_updates_with_momentum(self):
        x = _normal((4, 6, 6, 3))
        block = _build(
            lambda rngs: sn.SeparableBlock(3, 5, act=None, precision=M.HIGHEST, rngs=rngs)
        )
        for norm in (block.depthwise_norm, block.pointwise_norm):
            norm.scale[...] = jnp.ones_like(norm.scale[...])
            norm.bias[...] = jnp.zeros_like(norm.bias[...])
        old = _pure(block)
        # Expected, by hand: batch statistics of each conv's output, 0.9 / 0.1 updates.
        h_dw = block.depthwise(x)
        mean_dw, var_dw = jnp.mean(h_dw, axis=(0, 1, 2)), jnp.var(h_dw, axis=(0, 1, 2))
        normed = (h_dw - _channels(mean_dw, 4)) / jnp.sqrt(_channels(var_dw, 4) + M.EPS)
        h_pw = block.pointwise(normed)
        y = block(x)  # a fresh nnx module is in train mode
        chex.assert_trees_all_close(jnp.mean(y, axis=(0, 1, 2)), 0.0, atol=1e-5)
        chex.assert_trees_all_close(jnp.var(y, axis=(0, 1, 2)), 1.0, atol=1e-3)
        new = _pure(block)
        for name, h in (("depthwise_norm", h_dw), ("pointwise_norm", h_pw)):
            expected_mean = 0.9 * old[name]["mean"] + 0.1 * jnp.mean(h, axis=(0, 1, 2))
            expected_var = 0.9 * old[name]["var"] + 0.1 * jnp.var(h, axis=(0, 1, 2))
            chex.assert_trees_all_close(new[name]["mean"], expected_mean, **M.F32_TOL)
            chex.assert_trees_all_close(new[name]["var"], expected_var, **M.F32_TOL)

    def test_eval_mode_and_override_use_running_averages(self):
        x = _normal((2, 5, 5, 3))
        block = _build(
            lambda rngs: sn.SeparableBlock(3, 4, act=None, precision=M.HIGHEST, rngs=rngs)
        )
        before = _pure(block)
        h = block.pointwise(_bn_eval(block.depthwise(x), block.depthwise_norm))
        ref = _bn_eval(h, block.pointwise_norm)
        y_override = block(x, use_running_average=True)  # train mode, overridden for one call
        chex.assert_trees_all_equal(_pure(block), before)
        block.eval()
        y_eval = block(x)
        chex.assert_trees_all_equal(_pure(block), before)
        chex.assert_trees_all_close(y_eval, ref, **M.F32_TOL)
        chex.assert_trees_all_close(y_override, y_eval, **M.SAME_OP_TOL)
        block.train()
        block(x)
        after = _pure(block)["pointwise_norm"]["mean"]
        self.assertFalse(np.allclose(after, before["pointwise_norm"]["mean"]))

    def test_jit_matches_eager_and_real_init(self):
        x = _normal((2, 4, 4, 3))
        block = sn.SeparableBlock(3, 4, rngs=_rngs())
        twin = nnx.clone(block)

        @nnx.jit
        def step(module, x):
            return module(x)

        chex.assert_trees_all_close(step(block, x), twin(x), **M.F32_TOL)
        chex.assert_trees_all_close(_pure(block), _pure(twin), **M.F32_TOL)

    def test_axis_name_gives_cross_device_statistics(self):
        x = _normal((8, 4, 4, 3))
        block = _build(lambda rngs: sn.SeparableBlock(3, 4, axis_name="batch", rngs=rngs))
        graphdef, state = nnx.split(block)
        local = nnx.clone(block)
        local.set_attributes(axis_name=None)  # the same block, statistics over its own batch
        y = local(x)

        def shard(xs, state):
            module = nnx.merge(graphdef, state)
            return module(xs), nnx.to_pure_dict(nnx.state(module))

        shards = jax.vmap(shard, in_axes=(0, None), axis_name="batch")
        ys, stats = jax.jit(shards)(x.reshape(2, 4, 4, 4, 3), state)
        chex.assert_trees_all_close(ys.reshape(y.shape), y, **M.F32_TOL)
        chex.assert_trees_all_close(jax.tree.map(lambda a: a[1], stats), _pure(local), **M.F32_TOL)


class InvertedResidualTest(parameterized.TestCase):
    @parameterized.parameters(*M.INVERTED_RESIDUAL_CASES)
    def test_structure_and_residual(self, c, f, strides, expansion, residual, nd=2):
        x = _normal((2, *(4,) * nd, c))
        block = _build(
            lambda rngs: sn.InvertedResidual(
                c, f, expansion, strides, num_spatial_dims=nd, rngs=rngs
            )
        )
        hidden = c * expansion
        expected = {
            "depthwise": {"depthwise_kernel": (*(3,) * nd, 1, hidden)},
            "depthwise_norm": _bn(hidden),
            "project": {"pointwise_kernel": (hidden, f)},
            "project_norm": _bn(f),
        }
        if expansion != 1:
            expected["expand"] = {"pointwise_kernel": (c, hidden)}
            expected["expand_norm"] = _bn(hidden)
        else:
            self.assertIsNone(block.expand)
        self.assertEqual(_shapes(_pure(block)), expected)
        self.assertEqual(block.residual, residual)
        chex.assert_shape(block(x), (2, *(_spatial_out(4, strides),) * nd, f))
        # With the projection's BN scale and shift at zero the block is its shortcut alone.
        block.project_norm.scale[...] = jnp.zeros(f)
        block.project_norm.bias[...] = jnp.zeros(f)
        for mode in (block.eval, block.train):
            mode()
            y = block(x)
            chex.assert_trees_all_close(y, x if residual else jnp.zeros_like(y), atol=0.0)

    def test_eval_matches_ops(self):
        x = _normal((2, 5, 5, 4))
        block = _build(
            lambda rngs: sn.InvertedResidual(4, 4, expansion=3, precision=M.HIGHEST, rngs=rngs)
        )
        block.eval()

        def conv_bn(h, conv, norm):
            return _bn_eval(
                ops.pointwise_conv(h, conv.pointwise_kernel[...], precision=M.HIGHEST), norm
            )

        h = nnx.relu6(conv_bn(x, block.expand, block.expand_norm))
        h = ops.depthwise_conv(h, block.depthwise.depthwise_kernel[...], precision=M.HIGHEST)
        h = nnx.relu6(_bn_eval(h, block.depthwise_norm))
        ref = conv_bn(h, block.project, block.project_norm) + x
        chex.assert_trees_all_close(block(x), ref, **M.F32_TOL)


class DtypeTest(parameterized.TestCase):
    @parameterized.parameters(
        (sn.DepthwiseConv, dict(in_features=3, kernel_size=3, use_bias=True)),
        (sn.PointwiseConv, dict(in_features=3, out_features=4)),
        (
            sn.SeparableConv,
            dict(in_features=3, out_features=4, kernel_size=3, channel_multiplier=2),
        ),
        (sn.SeparableBlock, dict(in_features=3, out_features=4)),
        (sn.InvertedResidual, dict(in_features=3, out_features=3, expansion=2)),
    )
    def test_compute_and_param_dtypes(self, cls, kwargs):
        x = _normal((2, 4, 4, 3))
        module = _build(lambda rngs: cls(dtype=jnp.bfloat16, **kwargs, rngs=rngs))
        for leaf in jax.tree.leaves(_pure(module)):
            self.assertEqual(leaf.dtype, jnp.float32)
        reference = nnx.clone(module)
        reference.set_attributes(dtype=None)  # same params, float32 compute
        y = module(x)
        self.assertEqual(y.dtype, jnp.bfloat16)
        y32 = reference(x)
        np.testing.assert_allclose(np.asarray(y, np.float32), np.asarray(y32), atol=0.1, rtol=0.05)

        module = _build(lambda rngs: cls(param_dtype=jnp.bfloat16, **kwargs, rngs=rngs))
        params = nnx.to_pure_dict(nnx.state(module, nnx.Param))
        for leaf in jax.tree.leaves(params):
            self.assertEqual(leaf.dtype, jnp.bfloat16)
        self.assertEqual(module(x.astype(jnp.bfloat16)).dtype, jnp.bfloat16)


class BadInputTest(parameterized.TestCase):
    @parameterized.parameters(
        (lambda r: sn.DepthwiseConv(0, 3, rngs=r), "in_features must be a positive int, got 0"),
        (lambda r: sn.PointwiseConv(3, 0, rngs=r), "out_features must be a positive int, got 0"),
        (lambda r: sn.SeparableConv(3, -1, 3, rngs=r), "out_features must be a positive int"),
        (
            lambda r: sn.DepthwiseConv(3, (3, 3), num_spatial_dims=1, rngs=r),
            r"kernel_size must have one entry per spatial dim \(1\)",
        ),
        (lambda r: sn.DepthwiseConv(3, (3,) * 4, rngs=r), "kernel_size must have 1, 2 or 3"),
        (
            lambda r: sn.DepthwiseConv(3, 3, channel_multiplier=0, rngs=r),
            "channel_multiplier must be a positive",
        ),
        (lambda r: sn.DepthwiseConv(3, 3, strides=(1, 2, 2), rngs=r), "strides"),
        (lambda r: sn.SeparableConv(3, 4, 3, padding="FULL", rngs=r), "padding must be one of"),
        (lambda r: sn.SeparableConv(3, 4, 3, implementation="cuda", rngs=r), "implementation"),
        (lambda r: sn.SeparableBlock(3, 0, rngs=r), "SeparableBlock: out_features must be"),
        (lambda r: sn.SeparableBlock(3, 4, norm="layer", rngs=r), "norm must be one of"),
        (lambda r: sn.InvertedResidual(3, 3, 0, rngs=r), "expansion must be a positive int"),
    )
    def test_constructor_errors(self, make, match):
        with pytest.raises(ValueError, match=match):
            nnx.eval_shape(lambda: make(_rngs()))

    @parameterized.parameters(
        (lambda r: sn.DepthwiseConv(4, 3, rngs=r), "DepthwiseConv: x has shape"),
        (lambda r: sn.PointwiseConv(4, 5, rngs=r), "3 channels, but in_features=4"),
        (lambda r: sn.SeparableConv(4, 5, 3, rngs=r), "but in_features=4"),
        (lambda r: sn.SeparableBlock(4, 5, rngs=r), "SeparableBlock: x has shape"),
        (lambda r: sn.InvertedResidual(4, 4, rngs=r), "InvertedResidual: x has shape"),
    )
    def test_channel_mismatch(self, make, match):
        module = _build(make)
        with pytest.raises(ValueError, match=match):
            module(_normal((1, 4, 4, 3)))

    def test_rank_mismatch_names_the_fix(self):
        layer = _build(lambda r: sn.SeparableConv(16, 24, kernel_size=5, rngs=r))
        with pytest.raises(ValueError, match=r"built for 2 spatial dims.*num_spatial_dims=1"):
            layer(_normal((2, 9, 16)))


def test_int_kernel_size_with_num_spatial_dims_on_sequences():
    # An int kernel size is the same size along every spatial dim; nnx counts num_spatial_dims.
    layer = sn.SeparableConv(
        16, 24, kernel_size=5, padding="CAUSAL", num_spatial_dims=1, rngs=_rngs()
    )
    x = _normal((2, 9, 16))
    layer.bias[...] = _normal((24,))
    dw, pw = layer.depthwise_kernel[...], layer.pointwise_kernel[...]
    ref = ops.separable_conv(x, dw, pw, padding="CAUSAL", precision=M.HIGHEST)
    ref = ref + layer.bias[...][None, None]
    layer.precision = M.HIGHEST
    chex.assert_trees_all_close(layer(x), ref, **M.F32_TOL)
    assert dw.shape == (5, 1, 16)
