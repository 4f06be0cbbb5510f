"""Tests for sepconv_jax.cost: closed forms, parameter counts, XLA agreement and model totals."""

from __future__ import annotations

import math
from fractions import Fraction

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import pytest
from flax import nnx
from jax import lax

from sepconv_jax import cost, models, ops
from sepconv_jax import linen as sl

F32 = jnp.float32


def _sds(*shape: int, dtype=F32) -> jax.ShapeDtypeStruct:
    return jax.ShapeDtypeStruct(shape, dtype)


def _n_params(module: nn.Module, x: jax.ShapeDtypeStruct) -> int:
    variables = jax.eval_shape(lambda x: module.init(jax.random.key(0), x), x)
    return sum(math.prod(p.shape) for p in jax.tree.leaves(variables["params"]))


# --- Cost arithmetic -------------------------------------------------------------------------


def test_cost_adds_sums_and_scales():
    a, b = cost.Cost(1, 2, 4, 8), cost.Cost(10, 20, 40, 80)
    assert a + b == cost.Cost(11, 22, 44, 88)
    assert sum([a, b]) == a + b
    assert a.scale(3) == a + a + a
    assert str(cost.Cost(2_296_922, 91_154_944, 182_309_888, 999)) == (
        "params 2.297M | MACs 91.15M | FLOPs 182.3M | bytes 999B"
    )
    with pytest.raises(ValueError, match="copies"):
        a.scale(-1)


# --- Closed forms ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "window, out_channels, m",
    [((3, 3), 32, 1), ((3, 3), 64, 2), ((5,), 7, 3), ((3, 3, 3), 16, 1), ((7, 7), 1, 4)],
)
def test_separable_full_ratio_is_exact(window, out_channels, m):
    shape = (2, *(9,) * len(window), 5)
    sep = cost.separable_cost(shape, window, out_channels, channel_multiplier=m)
    full = cost.full_cost(shape, window, out_channels)
    exact = Fraction(m, out_channels) + Fraction(m, math.prod(window))
    assert Fraction(sep.params, full.params) == exact
    assert Fraction(sep.macs, full.macs) == exact  # stride 1, SAME
    assert cost.separable_full_ratio(window, out_channels, m) == sep.params / full.params
    assert cost.separable_full_ratio(window, out_channels, m) == float(exact)
    # An int window: the same size along every spatial dim, `num_spatial_dims` of them.
    assert cost.separable_full_ratio(
        window[0], out_channels, m, num_spatial_dims=len(window)
    ) == float(exact)


def test_closed_forms_by_hand():
    dw = cost.depthwise_cost((2, 16, 16, 8), 3, channel_multiplier=2, strides=2, use_bias=True)
    assert dw.params == 9 * 16 + 16
    assert dw.macs == 2 * 8 * 8 * 16 * 9 and dw.flops == 2 * dw.macs
    assert dw.bytes == 4 * (2 * 16 * 16 * 8 + dw.params + 2 * 8 * 8 * 16)
    pw = cost.pointwise_cost(_sds(2, 8, 8, 16, dtype=jnp.bfloat16), 4)
    assert (pw.params, pw.macs, pw.bytes) == (64, 2 * 64 * 16 * 4, 2 * (2048 + 64 + 512))
    sep = cost.separable_cost((2, 16, 16, 8), 3, 4, channel_multiplier=2, strides=2)
    hidden = cost.pointwise_cost((2, 8, 8, 16), 4)
    assert sep == cost.depthwise_cost((2, 16, 16, 8), 3, channel_multiplier=2, strides=2) + hidden
    fused = cost.separable_cost((2, 16, 16, 8), 3, 4, channel_multiplier=2, strides=2, fused=True)
    assert sep.bytes - fused.bytes == 2 * 4 * (2 * 8 * 8 * 16)


@pytest.mark.parametrize(
    "padding, out",
    [
        ("SAME", 6),
        ("VALID", 4),
        ("CAUSAL", 6),
        ("CIRCULAR", 6),
        ("REFLECT", 6),
        ("REPLICATE", 6),
        (1, 6),
        ([(3, 0)], 7),
        (("CIRCULAR", 2), 8),
        (("REFLECT", [(0, 1)]), 5),
    ],
)
def test_output_size_follows_ops(padding, out):
    x = jnp.ones((1, 6, 2), F32)
    y = ops.depthwise_conv(x, jnp.ones((3, 1, 2), F32), padding=padding)
    assert y.shape[1] == out
    c = cost.depthwise_cost((1, 6, 2), 3, padding=padding)
    assert c.macs == out * 3 * 2


# --- Parameter counts against the real layers ------------------------------------------------


@pytest.mark.parametrize(
    "shape, window, features, m, use_bias",
    [
        ((1, 8, 8, 4), 3, 16, 1, True),
        ((1, 8, 8, 4), (3, 5), 6, 2, False),
        ((1, 10, 3), 5, 7, 3, True),
        ((1, 4, 4, 4, 2), 3, 5, 1, False),
    ],
)
def test_params_match_layers(shape, window, features, m, use_bias):
    x = _sds(*shape)
    n = len(shape) - 2
    win = (window,) * n if isinstance(window, int) else window
    sep = sl.SeparableConv(features, win, channel_multiplier=m, use_bias=use_bias)
    assert _n_params(sep, x) == (
        cost.separable_cost(shape, win, features, channel_multiplier=m, use_bias=use_bias).params
    )
    dw = sl.DepthwiseConv(win, channel_multiplier=m, use_bias=use_bias)
    assert _n_params(dw, x) == (
        cost.depthwise_cost(shape, win, channel_multiplier=m, use_bias=use_bias).params
    )
    pw = sl.PointwiseConv(features, use_bias=use_bias)
    assert _n_params(pw, x) == cost.pointwise_cost(shape, features, use_bias=use_bias).params
    full = nn.Conv(features, win, use_bias=use_bias)
    assert _n_params(full, x) == cost.full_cost(shape, win, features, use_bias=use_bias).params


# --- Agreement with XLA's cost analysis (CPU, float32) ---------------------------------------
# XLA counts 2 FLOPs per multiply-add and only the taps that read x (not its zero padding):
# `count_padding=False` equals it exactly. With the default count XLA's number is never larger,
# and equal where there is no zero padding (VALID, CIRCULAR, ...). Bytes: XLA's "bytes
# accessed" of one op is read x + read weights + write output: equal within 1%.

CONV_CASES = [
    # (input shape, window, multiplier, strides, padding, dilation)
    ((2, 32, 8), 5, 1, 1, "SAME", 1),
    ((2, 33, 4), 3, 2, 2, "VALID", 3),
    ((2, 16, 16, 8), 3, 1, 1, "SAME", 1),
    ((2, 16, 16, 8), 3, 2, 2, "SAME", 1),
    ((1, 15, 17, 4), (3, 5), 1, (2, 1), "SAME", (1, 2)),
    ((2, 16, 16, 8), 3, 1, 1, "VALID", 2),
    ((1, 12, 12, 4), 3, 1, 1, ((2, 0), (0, 1)), 1),
    ((1, 12, 12, 4), 3, 1, 1, "CAUSAL", 1),
    ((1, 12, 12, 4), 3, 1, 1, "CIRCULAR", 1),
    ((1, 8, 8, 8, 4), 3, 1, 1, "SAME", 1),
    ((1, 9, 8, 7, 2), (3, 1, 3), 2, 2, "SAME", 1),
]


def _check_against_xla(ours: cost.Cost, dense: cost.Cost, xla: dict[str, float], exact_bytes=True):
    assert ours.flops == int(xla["flops"]), (ours.flops, xla)
    assert dense.flops >= xla["flops"]
    if exact_bytes:
        assert ours.bytes == pytest.approx(xla["bytes accessed"], rel=0.01)


@pytest.mark.parametrize("shape, window, m, strides, padding, dilation", CONV_CASES)
def test_depthwise_and_separable_flops_match_xla(shape, window, m, strides, padding, dilation):
    n = len(shape) - 2
    win = (window,) * n if isinstance(window, int) else window
    geometry = dict(strides=strides, padding=padding, dilation=dilation)
    x, dk = _sds(*shape), _sds(*win, 1, shape[-1] * m)
    pk = _sds(shape[-1] * m, 6)

    def dw_fn(x, k):
        return ops.depthwise_conv(x, k, implementation="xla", **geometry)

    def sep_fn(x, d, p):
        return ops.separable_conv(x, d, p, implementation="xla", **geometry)

    kw = dict(channel_multiplier=m, **geometry)
    # Modes that pad x with jnp.pad move more bytes than the floor: flops only there.
    plain = padding in ("SAME", "VALID") or not isinstance(padding, str)
    _check_against_xla(
        cost.depthwise_cost(shape, win, count_padding=False, **kw),
        cost.depthwise_cost(shape, win, **kw),
        cost.xla_cost(dw_fn, x, dk),
        exact_bytes=plain,
    )
    _check_against_xla(
        cost.separable_cost(shape, win, 6, count_padding=False, **kw),
        cost.separable_cost(shape, win, 6, **kw),
        cost.xla_cost(sep_fn, x, dk, pk),
        exact_bytes=plain,
    )
    if padding in ("VALID", "CIRCULAR"):  # no zero padding: the two counts agree
        assert cost.depthwise_cost(shape, win, **kw) == cost.depthwise_cost(
            shape, win, count_padding=False, **kw
        )


@pytest.mark.parametrize("shape", [(2, 16, 16, 8), (3, 7, 5), (64, 10)])
def test_pointwise_flops_match_xla(shape):
    def fn(x, k):
        return ops.pointwise_conv(x, k)

    c = cost.pointwise_cost(shape, 12)
    _check_against_xla(c, c, cost.xla_cost(fn, _sds(*shape), _sds(shape[-1], 12)))


@pytest.mark.parametrize("shape, window, m, strides, padding, dilation", CONV_CASES[:7])
def test_full_flops_match_xla(shape, window, m, strides, padding, dilation):
    del m
    n = len(shape) - 2
    win = (window,) * n if isinstance(window, int) else window

    def fn(x, k):
        return lax.conv_general_dilated(
            x,
            k,
            (strides,) * n if isinstance(strides, int) else strides,
            padding,
            rhs_dilation=(dilation,) * n if isinstance(dilation, int) else dilation,
            dimension_numbers=("NWC", "WIO", "NWC") if n == 1 else ("NHWC", "HWIO", "NHWC"),
        )

    geometry = dict(strides=strides, padding=padding, dilation=dilation)
    _check_against_xla(
        cost.full_cost(shape, win, 6, count_padding=False, **geometry),
        cost.full_cost(shape, win, 6, **geometry),
        cost.xla_cost(fn, _sds(*shape), _sds(*win, shape[-1], 6)),
    )


# --- Whole models ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, params",
    [("mobilenet_v2", 2_296_922), ("mobilenet_v1", 3_217_226), ("mobilenet_v2_full", 9_924_026)],
)
def test_model_params(name, params):
    c = cost.model_cost(models.create(name), (1, 32, 32, 3))
    assert c.params == params
    assert c.flops == 2 * c.macs > 0


class _ConvStack(nn.Module):
    """Convs and matmuls only (no bias, norm or activation): XLA counts exactly what we do."""

    @nn.compact
    def __call__(self, x):
        x = sl.SeparableConv(16, 3, channel_multiplier=2, use_bias=False)(x)
        x = sl.DepthwiseConv((3, 5), strides=2, dilation=(1, 2))(x)
        x = nn.Conv(8, (3, 3), padding="VALID", use_bias=False)(x)
        x = sl.PointwiseConv(12, use_bias=False)(x)
        return nn.Dense(5, use_bias=False)(x.reshape(x.shape[0], -1))


def test_model_cost_equals_layer_sum_and_xla():
    x = _sds(2, 16, 16, 4)
    model = _ConvStack()
    expected = (
        cost.separable_cost(x, 3, 16, channel_multiplier=2)
        + cost.depthwise_cost((2, 16, 16, 16), (3, 5), strides=2, dilation=(1, 2))
        + cost.full_cost((2, 8, 8, 16), 3, 8, padding="VALID")
        + cost.pointwise_cost((2, 6, 6, 8), 12)
        + cost.pointwise_cost((2, 432), 5)
    )
    chex.assert_equal(cost.model_cost(model, x), expected)
    variables = jax.eval_shape(lambda x: model.init(jax.random.key(0), x), x)
    xla = cost.xla_cost(model.apply, variables, x)
    exact = cost.model_cost(model, x, count_padding=False)
    assert exact.flops == int(xla["flops"])
    assert exact.bytes == pytest.approx(xla["bytes accessed"], rel=0.01)


class _Control(nn.Module):
    """A pointwise conv under scan (3 times), remat, and a cond with a cheap and a costly arm."""

    @nn.compact
    def __call__(self, x):
        w = self.param("w", nn.initializers.lecun_normal(), (8, 8))
        h, _ = lax.scan(lambda h, _: (ops.pointwise_conv(h, w), None), x, None, length=3)
        h = jax.checkpoint(lambda h: ops.pointwise_conv(h, w))(h)
        costly = lambda h: ops.pointwise_conv(ops.pointwise_conv(h, w), w)  # noqa: E731
        return lax.cond(jnp.sum(h) > 0, costly, lambda h: h * 2.0, h)


def test_model_cost_walks_nested_jaxprs():
    c = cost.model_cost(_Control(), (4, 8))
    pw = cost.pointwise_cost((4, 8), 8)  # 3 (scan) + 1 (remat) + 2 (costlier cond branch)
    assert c == cost.Cost(64, 6 * pw.macs, 6 * pw.flops, 6 * pw.bytes)


def test_model_flops_vs_xla_on_tiny_mobilenet():
    # XLA also counts batch norm, ReLU, residual adds and the mean pool (1 FLOP per element;
    # 2.26M of XLA's 23.24M here). Ours: convs and matmuls only, ~90% of XLA's total; adding
    # one FLOP per element of every elementwise/reduce op in the jaxpr lands within 1%.
    model = models.create("mobilenet_v2_tiny", implementation="xla")
    x = _sds(2, 32, 32, 3)
    variables = jax.eval_shape(lambda x: model.init(jax.random.key(0), x, train=False), x)

    def forward(v, x):
        return model.apply(v, x, train=False)

    xla = cost.xla_cost(forward, variables, x)
    ours = cost.model_cost(model, x, count_padding=False)
    assert 0.85 * xla["flops"] < ours.flops < xla["flops"]
    elementwise = _elementwise_elements(jax.make_jaxpr(forward)(variables, x).jaxpr)
    assert ours.flops + elementwise == pytest.approx(xla["flops"], rel=0.01)


def _elementwise_elements(jaxpr) -> int:
    ops_ = {"add", "sub", "mul", "div", "max", "min", "rsqrt"}
    total = 0
    for eqn in jaxpr.eqns:
        if eqn.primitive.name in ops_:
            total += math.prod(eqn.outvars[0].aval.shape)
        elif eqn.primitive.name.startswith("reduce_"):
            total += math.prod(eqn.invars[0].aval.shape)
        for sub in cost.traced.sub_jaxprs(eqn.params):
            total += _elementwise_elements(sub)
    return total


def test_nnx_twin_matches_linen():
    x = (2, 32, 32, 3)
    linen = cost.model_cost(models.create("mobilenet_v2_tiny"), x)
    # Built abstractly: nnx's eager initialisation is slow on CPU and the cost needs shapes only.
    twin = nnx.eval_shape(lambda: models.create("mobilenet_v2_tiny_nnx", rngs=nnx.Rngs(0)))
    c = cost.model_cost(twin, x)
    assert (c.params, c.macs, c.flops) == (linen.params, linen.macs, linen.flops)
    assert c.bytes == linen.bytes


# --- Errors ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "call, name",
    [
        (lambda: cost.depthwise_cost((2, 8, 8), 3, strides=(1, 2)), "strides"),
        (lambda: cost.depthwise_cost((8, 8), 3), "input_shape"),
        (lambda: cost.depthwise_cost((1, 0, 8, 2), 3), "input_shape"),
        (lambda: cost.depthwise_cost("abc", 3), "input_shape"),
        (lambda: cost.depthwise_cost((1, 8, 8, 2), (3, 3, 3)), "window"),
        (lambda: cost.depthwise_cost((1, 8, 8, 2), 0), "window"),
        (lambda: cost.depthwise_cost((1, 8, 8, 2), 3, channel_multiplier=0), "channel_multiplier"),
        (lambda: cost.depthwise_cost((1, 8, 8, 2), 3, padding="HALF"), "padding"),
        (lambda: cost.depthwise_cost((1, 8, 8, 2), 3, dilation=-1), "dilation"),
        (lambda: cost.depthwise_cost((1, 2, 2, 2), 3, padding="VALID"), "window"),
        (lambda: cost.depthwise_cost((1, 8, 8, 2), 3, dtype="nope"), "dtype"),
        (lambda: cost.pointwise_cost((1, 8, 8, 2), 0), "out_channels"),
        (lambda: cost.full_cost((1, 8, 8, 2), 3, -4), "out_channels"),
        (lambda: cost.separable_cost((1, 8, 8, 2), 3, 4, channel_multiplier=1.5), "channel_mult"),
        (lambda: cost.separable_full_ratio((3, 3), 0), "out_channels"),
        (lambda: cost.separable_full_ratio((3, 0), 8), "window"),
        (lambda: cost.separable_full_ratio((3, 3), 8, num_spatial_dims=1), "window"),
    ],
)
def test_bad_arguments_raise_naming_them(call, name):
    with pytest.raises(ValueError, match=name):
        call()


def test_model_cost_rejects_non_modules():
    with pytest.raises(TypeError, match="model"):
        cost.model_cost(lambda x: x, (1, 4))


def test_model_cost_warns_on_opaque_pallas_kernels():
    with pytest.warns(UserWarning, match="pallas_call"):
        c = cost.model_cost(sl.DepthwiseConv(3, implementation="pallas"), (1, 8, 8, 16))
    assert (c.params, c.macs) == (144, 0)


def test_model_cost_does_not_depend_on_the_cpu_fast_path():
    # On the CPU backend `implementation="auto"` computes depthwise convs as a sum over taps
    # (no conv in the program); `model_cost` traces them as convs, so counts match "xla".
    x = _sds(1, 32, 32, 3)
    auto = cost.model_cost(models.create("mobilenet_v2_tiny"), x)
    xla = cost.model_cost(models.create("mobilenet_v2_tiny", implementation="xla"), x)
    assert auto == xla
