"""Tests of the linen modules: shapes, names, equality with the ops, BatchNorm, dtypes, errors."""

from __future__ import annotations

import functools
import math

import _modules as M  # noqa: I001 - the tests' shared helpers
import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from absl.testing import parameterized

from sepconv_jax import linen as sl
from sepconv_jax import ops

BLOCKS = (sl.SeparableBlock, sl.InvertedResidual)
_key, _normal, _shapes, _channels = M.key, M.normal, M.shapes, M.channels
_spatial_out, _grid = M.spatial_out, M.conv_grid


def _variables(module: nn.Module, x: jax.Array, **kwargs) -> dict:
    """`module`'s variables filled with fresh random values (positive running variances).

    The structure comes from `jax.eval_shape(module.init, ...)`, the values from NumPy: no
    random-number kernels to compile (XLA:CPU takes ~0.5 s per new shape for those).
    """
    abstract = jax.eval_shape(functools.partial(module.init, **kwargs), _key(), x)
    return jax.tree_util.tree_map_with_path(M.fill, abstract)


def _bn_eval(h, stats, params):
    """BatchNorm with running statistics, by hand."""
    return M.bn_by_hand(h, stats["mean"], stats["var"], params["scale"], params["bias"])


class ConvLayerTest(parameterized.TestCase):
    @parameterized.parameters(*_grid())
    def test_depthwise_shapes_and_matches_op(self, nd, strides, m, use_bias):
        c, size = 3, 6
        x = _normal((2, *(size,) * nd, c))
        layer = sl.DepthwiseConv(3, channel_multiplier=m, strides=strides, use_bias=use_bias)
        variables = _variables(layer, x)
        expected = {"depthwise_kernel": (*(3,) * nd, 1, c * m)}
        if use_bias:
            expected["bias"] = (c * m,)
        self.assertEqual(_shapes(variables["params"]), expected)
        y = layer.apply(variables, x)
        chex.assert_shape(y, (2, *(_spatial_out(size, strides),) * nd, c * m))
        p = variables["params"]
        ref = ops.depthwise_conv(x, p["depthwise_kernel"], strides=strides)
        if use_bias:
            ref = ref + _channels(p["bias"], ref.ndim)
        chex.assert_trees_all_close(y, ref, **M.SAME_OP_TOL)

    def test_depthwise_kernel_size_forms(self):
        abstract = jax.eval_shape(sl.DepthwiseConv((3, 1)).init, _key(), _normal((1, 5, 6, 2)))
        chex.assert_shape(abstract["params"]["depthwise_kernel"], (3, 1, 1, 2))
        x = _normal((1, 4, 4, 4, 2))
        abstract = jax.eval_shape(sl.DepthwiseConv(3).init, _key(), x)
        chex.assert_shape(abstract["params"]["depthwise_kernel"], (3, 3, 3, 1, 2))

    @parameterized.parameters(*M.POINTWISE_CASES)
    def test_pointwise_matches_op_and_dense(self, shape, use_bias):
        x = _normal(shape)
        layer = sl.PointwiseConv(5, use_bias=use_bias, precision=M.HIGHEST)
        variables = _variables(layer, x)
        p = variables["params"]
        expected = {"pointwise_kernel": (3, 5), **({"bias": (5,)} if use_bias else {})}
        self.assertEqual(_shapes(p), expected)
        y = layer.apply(variables, x)
        chex.assert_shape(y, (*shape[:-1], 5))
        ref = ops.pointwise_conv(x, p["pointwise_kernel"], precision=M.HIGHEST)
        if use_bias:
            ref = ref + _channels(p["bias"], ref.ndim)
        chex.assert_trees_all_close(y, ref, **M.SAME_OP_TOL)
        dense = {"kernel": p["pointwise_kernel"], **({"bias": p["bias"]} if use_bias else {})}
        y_dense = nn.Dense(5, use_bias=use_bias, precision=M.HIGHEST).apply({"params": dense}, x)
        chex.assert_trees_all_close(y, y_dense, **M.F32_TOL)

    @parameterized.parameters(*_grid())
    def test_separable_matches_op_and_full_conv(self, nd, strides, m, use_bias):
        c, features = 3, 4
        x, geometry = _normal((2, *(6,) * nd, c)), M.separable_geometry(nd, strides)
        layer = sl.SeparableConv(
            features,
            3,
            channel_multiplier=m,
            use_bias=use_bias,
            **geometry,
            precision=M.HIGHEST,
        )
        variables = _variables(layer, x)
        p = variables["params"]
        expected = {
            "depthwise_kernel": (*(3,) * nd, 1, c * m),
            "pointwise_kernel": (c * m, features),
            **({"bias": (features,)} if use_bias else {}),
        }
        self.assertEqual(_shapes(p), expected)
        y = layer.apply(variables, x)
        out = M.separable_out(6, geometry)
        chex.assert_shape(y, (2, *(out,) * nd, features))
        dw, pw = p["depthwise_kernel"], p["pointwise_kernel"]
        bias = p["bias"] if use_bias else None
        ref = M.separable_op(x, dw, pw, bias, **geometry)
        chex.assert_trees_all_close(y, ref, **M.SAME_OP_TOL)
        full = {"kernel": ops.separable_to_full(dw, pw, m)}
        if use_bias:
            full["bias"] = p["bias"]
        conv = nn.Conv(
            features,
            (3,) * nd,
            **M.flax_conv_args(geometry, use_bias),
        )
        chex.assert_trees_all_close(y, conv.apply({"params": full}, x), **M.F32_TOL)

    def test_default_init_variances(self):
        # He normal with fan_in = prod(window) for the depthwise kernel; LeCun for pointwise.
        layer = sl.SeparableConv(8, (5, 5), channel_multiplier=2)
        v = layer.init(_key(), _normal((1, 5, 5, 256)))
        dw, pw = v["params"]["depthwise_kernel"], v["params"]["pointwise_kernel"]
        np.testing.assert_allclose(float(jnp.std(dw)), math.sqrt(2 / 25), rtol=0.05)
        np.testing.assert_allclose(float(jnp.std(pw)), math.sqrt(1 / 512), rtol=0.05)
        np.testing.assert_array_equal(v["params"]["bias"], np.zeros(8, np.float32))


class SeparableBlockTest(parameterized.TestCase):
    @parameterized.parameters(*M.SEPARABLE_BLOCK_CASES)
    def test_names_and_shapes(self, nd, strides, m):
        c, f = 3, 5
        x = _normal((2, *(4,) * nd, c))
        block = sl.SeparableBlock(f, strides=strides, channel_multiplier=m)
        v = _variables(block, x, train=False)
        self.assertEqual(
            _shapes(v["params"]),
            {
                "depthwise": {"depthwise_kernel": (*(3,) * nd, 1, c * m)},
                "depthwise_norm": {"scale": (c * m,), "bias": (c * m,)},
                "pointwise": {"pointwise_kernel": (c * m, f)},
                "pointwise_norm": {"scale": (f,), "bias": (f,)},
            },
        )
        self.assertEqual(
            _shapes(v["batch_stats"]),
            {
                "depthwise_norm": {"mean": (c * m,), "var": (c * m,)},
                "pointwise_norm": {"mean": (f,), "var": (f,)},
            },
        )
        y, _ = block.apply(v, x, train=True, mutable=["batch_stats"])
        chex.assert_shape(y, (2, *(_spatial_out(4, strides),) * nd, f))

    def test_norm_none_and_factory(self):
        x = _normal((2, 4, 4, 3))
        v = _variables(sl.SeparableBlock(5, norm=None), x, train=True)
        self.assertEqual(set(v), {"params"})
        self.assertEqual(
            _shapes(v["params"]),
            {
                "depthwise": {"depthwise_kernel": (3, 3, 1, 3), "bias": (3,)},
                "pointwise": {"pointwise_kernel": (3, 5), "bias": (5,)},
            },
        )
        block = sl.SeparableBlock(5, norm=lambda name: nn.LayerNorm(name=name))
        v = _variables(block, x, train=True)
        self.assertEqual(set(v), {"params"})
        self.assertEqual(v["params"]["pointwise_norm"]["scale"].shape, (5,))
        self.assertNotIn("bias", v["params"]["pointwise"])
        chex.assert_shape(block.apply(v, x, train=True), (2, 4, 4, 5))

    def test_eval_matches_ops(self):
        x = _normal((2, 5, 5, 3))
        block = sl.SeparableBlock(4, strides=2, channel_multiplier=2, precision=M.HIGHEST)
        v = _variables(block, x, train=False)
        p, s = v["params"], v["batch_stats"]
        h = ops.depthwise_conv(
            x, p["depthwise"]["depthwise_kernel"], strides=2, precision=M.HIGHEST
        )
        h = nn.relu(_bn_eval(h, s["depthwise_norm"], p["depthwise_norm"]))
        h = ops.pointwise_conv(h, p["pointwise"]["pointwise_kernel"], precision=M.HIGHEST)
        ref = nn.relu(_bn_eval(h, s["pointwise_norm"], p["pointwise_norm"]))
        chex.assert_trees_all_close(block.apply(v, x, train=False), ref, **M.F32_TOL)

    def test_batch_norm_train_normalises_and_updates_with_momentum(self):
        x = _normal((4, 6, 6, 3))
        block = sl.SeparableBlock(5, act=None, precision=M.HIGHEST)
        v = _variables(block, x, train=False)
        v["params"]["depthwise_norm"] = {"scale": jnp.ones(3), "bias": jnp.zeros(3)}
        v["params"]["pointwise_norm"] = {"scale": jnp.ones(5), "bias": jnp.zeros(5)}
        y, state = block.apply(
            v, x, train=True, mutable=["batch_stats", "intermediates"], capture_intermediates=True
        )
        inter = state["intermediates"]
        for out in (y, inter["depthwise_norm"]["__call__"][0]):
            chex.assert_trees_all_close(jnp.mean(out, axis=(0, 1, 2)), 0.0, atol=1e-5)
            chex.assert_trees_all_close(jnp.var(out, axis=(0, 1, 2)), 1.0, atol=1e-3)
        for conv, norm in (("depthwise", "depthwise_norm"), ("pointwise", "pointwise_norm")):
            h = inter[conv]["__call__"][0]
            old, new = v["batch_stats"][norm], state["batch_stats"][norm]
            expected_mean = 0.9 * old["mean"] + 0.1 * jnp.mean(h, axis=(0, 1, 2))
            expected_var = 0.9 * old["var"] + 0.1 * jnp.var(h, axis=(0, 1, 2))
            chex.assert_trees_all_close(new["mean"], expected_mean, **M.F32_TOL)
            chex.assert_trees_all_close(new["var"], expected_var, **M.F32_TOL)

    def test_batch_norm_eval_uses_running_averages(self):
        x = _normal((2, 5, 5, 3))
        block = sl.SeparableBlock(4, act=None, precision=M.HIGHEST)
        v = _variables(block, x, train=False)
        y, state = block.apply(
            v, x, train=False, mutable=["batch_stats", "intermediates"], capture_intermediates=True
        )
        chex.assert_trees_all_equal(state["batch_stats"], v["batch_stats"])
        h = state["intermediates"]["pointwise"]["__call__"][0]
        ref = _bn_eval(h, v["batch_stats"]["pointwise_norm"], v["params"]["pointwise_norm"])
        chex.assert_trees_all_close(y, ref, **M.F32_TOL)
        chex.assert_trees_all_close(block.apply(v, x, train=False), y, **M.SAME_OP_TOL)

    def test_axis_name_gives_cross_device_statistics(self):
        x = _normal((8, 4, 4, 3))
        block = sl.SeparableBlock(4, axis_name="batch")
        v = _variables(block, x, train=False)
        y, s = sl.SeparableBlock(4).apply(v, x, train=True, mutable=["batch_stats"])
        apply = jax.jit(
            jax.vmap(
                lambda xs: block.apply(v, xs, train=True, mutable=["batch_stats"]),
                axis_name="batch",
            )
        )
        ys, ss = apply(x.reshape(2, 4, 4, 4, 3))
        chex.assert_trees_all_close(ys.reshape(y.shape), y, **M.F32_TOL)
        chex.assert_trees_all_close(jax.tree.map(lambda a: a[1], ss), s, **M.F32_TOL)

    def test_jit_and_real_init(self):
        x = _normal((2, 4, 4, 3))
        block = sl.SeparableBlock(4)
        v = jax.jit(block.init, static_argnames="train")(_key(), x, train=False)
        apply = jax.jit(block.apply, static_argnames=("train", "mutable"))
        y, s = apply(v, x, train=True, mutable=("batch_stats",))
        y_ref, s_ref = block.apply(v, x, train=True, mutable=["batch_stats"])
        chex.assert_trees_all_close((y, s), (y_ref, s_ref), **M.F32_TOL)


class InvertedResidualTest(parameterized.TestCase):
    @parameterized.parameters(*M.INVERTED_RESIDUAL_CASES)
    def test_structure_and_residual(self, c, f, strides, expansion, residual, nd=2):
        x = _normal((2, *(4,) * nd, c))
        block = sl.InvertedResidual(f, expansion=expansion, strides=strides)
        v = _variables(block, x, train=False)
        hidden = c * expansion
        expected = {
            "depthwise": {"depthwise_kernel": (*(3,) * nd, 1, hidden)},
            "depthwise_norm": {"scale": (hidden,), "bias": (hidden,)},
            "project": {"pointwise_kernel": (hidden, f)},
            "project_norm": {"scale": (f,), "bias": (f,)},
        }
        if expansion != 1:
            expected["expand"] = {"pointwise_kernel": (c, hidden)}
            expected["expand_norm"] = {"scale": (hidden,), "bias": (hidden,)}
        self.assertEqual(_shapes(v["params"]), expected)
        y, _ = block.apply(v, x, train=True, mutable=["batch_stats"])
        chex.assert_shape(y, (2, *(_spatial_out(4, strides),) * nd, f))
        # With the projection's BN scale and shift at zero the block is its shortcut alone.
        v["params"]["project_norm"] = {"scale": jnp.zeros(f), "bias": jnp.zeros(f)}
        for train in (False, True):
            y, _ = block.apply(v, x, train=train, mutable=["batch_stats"])
            chex.assert_trees_all_close(y, x if residual else jnp.zeros_like(y), atol=0.0)

    def test_eval_matches_ops(self):
        x = _normal((2, 5, 5, 4))
        block = sl.InvertedResidual(4, expansion=3, precision=M.HIGHEST)
        v = _variables(block, x, train=False)
        p, s = v["params"], v["batch_stats"]

        def conv_bn(h, conv, norm):
            h = ops.pointwise_conv(h, p[conv]["pointwise_kernel"], precision=M.HIGHEST)
            return _bn_eval(h, s[norm], p[norm])

        h = nn.relu6(conv_bn(x, "expand", "expand_norm"))
        h = ops.depthwise_conv(h, p["depthwise"]["depthwise_kernel"], precision=M.HIGHEST)
        h = nn.relu6(_bn_eval(h, s["depthwise_norm"], p["depthwise_norm"]))
        ref = conv_bn(h, "project", "project_norm") + x
        chex.assert_trees_all_close(block.apply(v, x, train=False), ref, **M.F32_TOL)


class DtypeTest(parameterized.TestCase):
    @parameterized.parameters(
        (sl.DepthwiseConv, dict(kernel_size=3, use_bias=True)),
        (sl.PointwiseConv, dict(features=4)),
        (sl.SeparableConv, dict(features=4, kernel_size=3, channel_multiplier=2)),
        (sl.SeparableBlock, dict(features=4)),
        (sl.InvertedResidual, dict(features=3, expansion=2)),
    )
    def test_compute_and_param_dtypes(self, cls, kwargs):
        x = _normal((2, 4, 4, 3))
        call = {"train": True, "mutable": ["batch_stats"]} if cls in BLOCKS else {}

        def apply(module, v, x):
            y = module.apply(v, x, **call)
            return y[0] if call else y

        train = {"train": True} if call else {}
        module = cls(dtype=jnp.bfloat16, **kwargs)
        v = _variables(module, x, **train)
        for leaf in jax.tree.leaves(v):
            self.assertEqual(leaf.dtype, jnp.float32)
        y = apply(module, v, x)
        self.assertEqual(y.dtype, jnp.bfloat16)
        # The same params in float32: bfloat16 compute agrees to bfloat16 precision.
        y32 = apply(cls(**kwargs), v, x)
        np.testing.assert_allclose(np.asarray(y, np.float32), np.asarray(y32), atol=0.1, rtol=0.05)

        module = cls(param_dtype=jnp.bfloat16, **kwargs)
        v = _variables(module, x.astype(jnp.bfloat16), **train)
        for leaf in jax.tree.leaves(v.get("params")):
            self.assertEqual(leaf.dtype, jnp.bfloat16)
        self.assertEqual(apply(module, v, x.astype(jnp.bfloat16)).dtype, jnp.bfloat16)


class BadInputTest(parameterized.TestCase):
    @parameterized.parameters(
        (sl.PointwiseConv(0), "features must be a positive int, got 0"),
        (sl.SeparableConv(-2, 3), "features must be a positive int, got -2"),
        (sl.DepthwiseConv((3, 3)), r"kernel_size must have one entry per spatial dim \(1\)"),
        (sl.SeparableConv(4, (3, 3, 3)), "kernel_size"),
        (sl.DepthwiseConv(0), "kernel_size must be positive"),
        (sl.DepthwiseConv(3, channel_multiplier=0), "channel_multiplier must be a positive int"),
        (sl.DepthwiseConv(3, strides=(1, 2, 2)), "strides"),
        (sl.SeparableConv(4, 3, padding="FULL"), "padding must be one of"),
    )
    def test_layer_errors(self, module, match):
        with pytest.raises(ValueError, match=match):
            jax.eval_shape(module.init, _key(), _normal((1, 6, 3)))

    @parameterized.parameters(
        (sl.SeparableBlock(0), "SeparableBlock: features must be a positive int, got 0"),
        (sl.SeparableBlock(4, norm="layer"), "norm must be one of"),
        (sl.InvertedResidual(4, expansion=0), "expansion must be a positive int, got 0"),
        (sl.InvertedResidual(-1), "features must be a positive int, got -1"),
    )
    def test_block_errors(self, module, match):
        with pytest.raises(ValueError, match=match):
            _variables(module, _normal((1, 4, 4, 3)), train=False)

    def test_wrong_rank(self):
        with pytest.raises(ValueError, match=r"x must have shape \(N, \*spatial, C\)"):
            jax.eval_shape(sl.DepthwiseConv(3).init, _key(), _normal((4, 3)))

    def test_error_names_the_module_path(self):
        block = sl.SeparableBlock(4, kernel_size=(3, 3, 3))
        with pytest.raises(ValueError, match="DepthwiseConv 'depthwise': kernel_size"):
            _variables(block, _normal((1, 4, 4, 3)), train=False)
