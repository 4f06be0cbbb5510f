"""Pallas kernels (interpret mode on CPU) against XLA; routing; the conv_general_dilated drop-in.

The kernels run here in Pallas interpret mode: the same kernel bodies the GPU compiles, on
tiny shapes. Reference: XLA at `Precision.HIGHEST` on float32 copies of the inputs.
Tolerances (‖out − ref‖ / ‖ref‖): float32 1e-5 (exact FMAs, fp32 dot at HIGHEST); bfloat16
2e-2 (bf16 inputs, one bf16 rounding of the depthwise intermediate as in XLA's two ops).
"""

from __future__ import annotations

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax import lax

import sepconv_jax as sj
from sepconv_jax import _args, _auto_routes, _routing, conv_general
from sepconv_jax.fused import fused_separable_conv

HI = lax.Precision.HIGHEST
TOL = {"float32": 1e-5, "bfloat16": 2e-2}
GEOMS = [  # (window, stride, padding)
    (3, 1, "SAME"),
    (3, 2, "SAME"),
    (3, 1, "VALID"),
    (5, 1, "SAME"),
    (5, 2, "VALID"),
    (3, 2, ((1, 0), (0, 1))),
]


def _rel(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def _inputs(seed, c=20, co=24, window=3, dtype="float32", hw=(7, 9)):
    ks = jax.random.split(jax.random.key(seed), 6)
    x = jax.random.normal(ks[0], (2, *hw, c), jnp.float32).astype(dtype)
    dw = jax.random.normal(ks[1], (window, window, 1, c), jnp.float32).astype(dtype)
    pw = jax.random.normal(ks[2], (c, co), jnp.float32).astype(dtype)
    extras = dict(
        scale=jax.random.normal(ks[3], (c,)),
        shift=jax.random.normal(ks[4], (c,)),
        bias=jax.random.normal(ks[5], (co,)),
    )
    return x, dw, pw, extras


def _f32(*arrays):
    return [a.astype(jnp.float32) for a in arrays]


@pytest.mark.parametrize("window,stride,padding", GEOMS)
def test_depthwise_matches_xla_float32(window, stride, padding):
    x, dw, _, _ = _inputs(window * 10 + stride, window=window)
    kw = dict(strides=stride, padding=padding, precision=HI)
    out = sj.depthwise_conv(x, dw, implementation="pallas", **kw)
    ref = sj.depthwise_conv(x, dw, implementation="xla", **kw)
    assert out.shape == ref.shape and out.dtype == ref.dtype
    assert _rel(out, ref) < TOL["float32"]


@pytest.mark.parametrize("window,stride,padding", GEOMS)
def test_fused_matches_xla_float32(window, stride, padding):
    x, dw, pw, extras = _inputs(window * 10 + stride + 1, window=window)
    act = "relu6" if stride == 1 else "relu"
    kw = dict(strides=stride, padding=padding, precision=HI, activation=act, **extras)
    out = fused_separable_conv(x, dw, pw, implementation="pallas", **kw)
    ref = fused_separable_conv(x, dw, pw, implementation="xla", **kw)
    assert out.shape == ref.shape
    assert _rel(out, ref) < TOL["float32"]


@pytest.mark.parametrize("stride", [1, 2])
def test_bfloat16_matches_float32_reference(stride):
    x, dw, pw, extras = _inputs(40 + stride, c=16, co=32, dtype="bfloat16", hw=(6, 6))
    kw = dict(strides=stride, padding="SAME", precision=HI)
    out_dw = sj.depthwise_conv(x, dw, implementation="pallas", **kw)
    ref_dw = sj.depthwise_conv(*_f32(x, dw), implementation="xla", **kw)
    assert out_dw.dtype == jnp.bfloat16 and _rel(out_dw, ref_dw) < TOL["bfloat16"]
    out = fused_separable_conv(x, dw, pw, implementation="pallas", **extras, **kw)
    ref = fused_separable_conv(*_f32(x, dw, pw), implementation="xla", **extras, **kw)
    assert out.dtype == jnp.bfloat16 and _rel(out, ref) < TOL["bfloat16"]


def test_separable_conv_routes_to_fused_kernel():
    x, dw, pw, _ = _inputs(5)
    out = sj.separable_conv(x, dw, pw, strides=2, precision=HI, implementation="pallas")
    ref = sj.separable_conv(x, dw, pw, strides=2, precision=HI, implementation="xla")
    assert _rel(out, ref) < TOL["float32"]
    jaxpr = str(
        jax.make_jaxpr(lambda *a: sj.separable_conv(*a, implementation="pallas"))(x, dw, pw)
    )
    assert "pallas_call" in jaxpr


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_gradients_match_xla(dtype):
    x, dw, pw, extras = _inputs(7, c=16, co=16, dtype=dtype, hw=(5, 6))
    ct = jax.random.normal(jax.random.key(8), (2, 3, 3, 16), jnp.float32)

    def loss(impl, x, dw, pw, scale, shift, bias):
        y = fused_separable_conv(
            x, dw, pw, scale=scale, shift=shift, bias=bias, activation="relu6", strides=2,
            precision=HI, implementation=impl,
        )  # fmt: skip
        return jnp.sum(y.astype(jnp.float32) * ct)

    args = (x, dw, pw, extras["scale"], extras["shift"], extras["bias"])
    g_out = jax.jit(jax.grad(lambda *a: loss("pallas", *a), argnums=tuple(range(6))))(*args)
    g_ref = jax.jit(jax.grad(lambda *a: loss("xla", *a), argnums=tuple(range(6))))(*args)
    for a, b in zip(g_out, g_ref):
        assert a.shape == b.shape and a.dtype == b.dtype
        assert _rel(a, b) < TOL[dtype]
    g_dw = jax.grad(
        lambda x, k: jnp.sum(sj.depthwise_conv(x, k, implementation="pallas") ** 2), (0, 1)
    )(x, dw)
    r_dw = jax.grad(
        lambda x, k: jnp.sum(sj.depthwise_conv(x, k, implementation="xla") ** 2), (0, 1)
    )(x, dw)
    for a, b in zip(g_dw, r_dw):
        assert _rel(a, b) < TOL[dtype]


_OPS = {
    "depthwise": lambda x, dw, pw, e, **kw: sj.depthwise_conv(x, dw, **kw),
    "separable": lambda x, dw, pw, e, **kw: sj.separable_conv(x, dw, pw, **kw),
    "fused": lambda x, dw, pw, e, **kw: fused_separable_conv(
        x, dw, pw, activation="relu", **e, **kw
    ),
}


@functools.partial(jax.jit, static_argnums=(0, 1))
def _value_and_grad(op, impl, x, *rest):
    """`op(x, ...)` (3×3, stride 1, padding 1) and the gradient of `sum(sin(y))` by `x`."""
    kw = dict(implementation=impl, strides=1, padding=1, precision=HI)
    y, vjp = jax.vjp(lambda x: _OPS[op](x, *rest, **kw), x)
    return y, vjp(jnp.cos(y))[0]


@functools.cache
def _x64_case(op):
    """Float32 inputs and the float64 XLA reference of `_value_and_grad` (under x64)."""
    with jax.enable_x64(True):
        args = _inputs(60, c=8, co=8, hw=(5, 5))
        args64 = jax.tree.map(lambda a: a.astype(jnp.float64), args)
        return args, jax.device_get(_value_and_grad(op, "xla", *args64))


@pytest.mark.parametrize("implementation", ["xla", "taps", "pallas", "auto"])
@pytest.mark.parametrize("op", list(_OPS))
def test_float32_under_x64(op, implementation):
    """With `jax_enable_x64` on, float32 inputs stay float32 on every path (the Pallas kernels'
    int32 index arithmetic included), value and input gradient equal to a float64 reference."""
    args, (ref, g_ref) = _x64_case(op)
    with jax.enable_x64(True):
        y, g = _value_and_grad(op, implementation, *args)
    assert y.dtype == g.dtype == jnp.float32 and y.shape == ref.shape
    assert _rel(y, ref) < TOL["float32"] and _rel(g, g_ref) < TOL["float32"]


def test_auto_on_cpu_is_xla():
    x, dw, pw, extras = _inputs(9)
    assert jax.default_backend() == "cpu"
    for f in (
        lambda: sj.depthwise_conv(x, dw),
        lambda: sj.separable_conv(x, dw, pw),
        lambda: fused_separable_conv(x, dw, pw, activation="relu", **extras),
    ):
        assert "pallas_call" not in str(jax.make_jaxpr(f)())
    out = sj.depthwise_conv(x, dw, precision=HI)  # CPU: the sum over taps (_depthwise_taps)
    ref = sj.depthwise_conv(x, dw, precision=HI, implementation="xla")
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5 * float(np.max(np.abs(ref))))


def test_auto_routes_by_backend_and_shape(monkeypatch):
    x = jnp.zeros((256, 8, 8, 512), jnp.bfloat16)
    pad, one = _args.Padding("SAME", None, None), (1, 1)

    def path(x, implementation="auto"):
        dw = jnp.zeros((3, 3, 1, 512), x.dtype)
        return _routing.depthwise_path(x, dw, one, pad, one, implementation)

    assert path(x) == "taps"  # the CPU row
    with sj.ops.grouped_conv_only():
        assert path(x) == "xla"
    monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
    assert path(x) == "xla"  # no GPU row: no kernel has won twice yet
    row = _auto_routes.AutoRoute(
        "gpu", "depthwise", "pallas", frozenset({(8, 8, 512, 3, 3, 1, 1, 1, 1, "bfloat16")}), 128
    )
    monkeypatch.setattr(_auto_routes, "AUTO_ROUTES", (*_auto_routes.AUTO_ROUTES, row))
    assert path(x) == "pallas"
    assert path(x.astype(jnp.float32)) == "xla"  # another shape key
    assert path(x[:8]) == "xla"  # below min_batch
    assert path(x, "taps") == "taps"


@pytest.mark.parametrize(
    "x_shape,k_shape,kwargs,match",
    [
        ((2, 8, 4), (3, 1, 4), {}, "2-D only"),
        ((1, 6, 6, 4), (3, 3, 1, 8), {}, "channel multiplier"),
        ((1, 6, 6, 4), (3, 3, 1, 4), {"dilation": 2}, "dilation"),
        ((1, 6, 6, 4), (3, 3, 1, 4), {"padding": "CIRCULAR"}, "padding mode"),
        ((1, 12, 12, 4), (9, 9, 1, 4), {}, "larger than"),
    ],
)
def test_pallas_unsupported_raises(x_shape, k_shape, kwargs, match):
    x, k = jnp.ones(x_shape), jnp.ones(k_shape)
    with pytest.raises(ValueError, match=match):
        sj.depthwise_conv(x, k, implementation="pallas", **kwargs)
    pw = jnp.ones((k_shape[-1], 3))
    with pytest.raises(ValueError, match=match):
        sj.separable_conv(x, k, pw, implementation="pallas", **kwargs)
    sj.depthwise_conv(x, k, **kwargs)  # auto: XLA, no error


def test_pallas_unsupported_dtype_raises():
    x, k = jnp.ones((1, 6, 6, 4), jnp.float16), jnp.ones((3, 3, 1, 4), jnp.float16)
    with pytest.raises(ValueError, match="float16"):
        sj.depthwise_conv(x, k, implementation="pallas")


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"activation": "gelu"}, "activation"),
        ({"scale": jnp.ones((3,))}, "scale"),
        ({"shift": jnp.ones((4, 1))}, "shift"),
        ({"bias": jnp.ones((4,))}, "bias"),
        ({"implementation": "cuda"}, "implementation"),
    ],
)
def test_fused_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        fused_separable_conv(
            jnp.ones((1, 6, 6, 4)), jnp.ones((3, 3, 1, 4)), jnp.ones((4, 5)), **kwargs
        )


def test_fused_xla_path_any_rank_and_padding_mode():
    x = jax.random.normal(jax.random.key(1), (2, 9, 4))
    dw, pw = jax.random.normal(jax.random.key(2), (3, 1, 8)), jnp.ones((8, 5))
    y = fused_separable_conv(x, dw, pw, padding="CAUSAL", activation="relu")
    ref = sj.pointwise_conv(jax.nn.relu(sj.depthwise_conv(x, dw, padding="CAUSAL")), pw)
    np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-5)


def test_conv_general_dilated_drop_in_linen():
    x = jax.random.normal(jax.random.key(3), (2, 9, 9, 16))
    make = conv_general.make_conv_general_dilated
    stock = nn.Conv(16, (3, 3), strides=2, feature_group_count=16, precision=HI)
    params = stock.init(jax.random.key(4), x)
    ref = stock.apply(params, x)
    # On the CPU backend "auto" takes the sum over taps, as ops.depthwise_conv does.
    expected = {"auto": "add", "taps": "add", "pallas": "pallas_call", "xla": "conv_general"}
    for impl, primitive in expected.items():
        conv = nn.Conv(16, (3, 3), strides=2, feature_group_count=16, precision=HI,
                       conv_general_dilated=make(impl))  # fmt: skip
        out = conv.apply(params, x)
        assert _rel(out, ref) < TOL["float32"]
        jaxpr = str(jax.make_jaxpr(lambda x, c=conv: c.apply(params, x))(x))
        assert primitive in jaxpr
        assert ("pallas_call" in jaxpr) == (impl == "pallas")
        assert ("conv_general_dilated" in jaxpr) == (impl == "xla")
    # A dense conv goes to lax unchanged, even when "pallas" is forced.
    dense = nn.Conv(8, (3, 3), conv_general_dilated=make("pallas"))
    p = dense.init(jax.random.key(5), x)
    jaxpr = str(jax.make_jaxpr(lambda x: dense.apply(p, x))(x))
    assert "pallas_call" not in jaxpr and "conv_general_dilated" in jaxpr


@pytest.mark.parametrize(
    "shape,kernel_size,kwargs",
    [  # (x shape, window, nn.Conv arguments): every rank, Flax's padding modes, strides, dilation
        ((2, 16, 8), (5,), dict(padding="CAUSAL")),
        ((2, 13, 4), (3,), dict(padding="CIRCULAR", strides=2, kernel_dilation=2, m=3)),
        ((1, 6, 5, 7, 4), (3, 3, 3), dict(padding="SAME", strides=(2, 1, 2), m=2)),
        (
            (1, 5, 6, 4, 3),
            (2, 3, 1),
            dict(padding=((1, 0), (0, 2), (1, 1)), kernel_dilation=(2, 1, 1)),
        ),
    ],
)
def test_conv_general_dilated_drop_in_routes_1d_and_3d(shape, kernel_size, kwargs):
    """`nn.Conv`'s 1-D and 3-D depthwise convs take the sum over taps under `auto` on the CPU
    backend (no grouped conv left), equal to stock `nn.Conv` (`lax`) in float64."""
    kwargs = dict(kwargs)
    c, m = shape[-1], kwargs.pop("m", 1)
    conv_args = dict(features=c * m, kernel_size=kernel_size, feature_group_count=c, **kwargs)
    rng = np.random.default_rng(sum(shape))  # NumPy: no compile per shape

    def normal(*s):
        return jnp.asarray(rng.standard_normal(s), jnp.float32)

    x = normal(*shape)
    params = {"params": {"kernel": normal(*kernel_size, 1, c * m), "bias": normal(c * m)}}
    ours = nn.Conv(**conv_args, conv_general_dilated=conv_general.conv_general_dilated)
    out = jax.jit(ours.apply)(params, x)
    jaxpr = str(jax.make_jaxpr(ours.apply)(params, x))
    assert "conv_general_dilated" not in jaxpr and "pallas_call" not in jaxpr
    with jax.enable_x64(True):
        to64 = functools.partial(jax.tree.map, lambda a: np.asarray(a, np.float64))
        ref = nn.Conv(**conv_args).apply(to64(params), to64(x))
        assert ref.dtype == jnp.float64
    assert out.shape == ref.shape and out.dtype == jnp.float32
    assert _rel(out, ref) < TOL["float32"]


def test_conv_general_dilated_drop_in_leaves_other_layouts_to_lax():
    """Channels-first depthwise convs go to `lax` unchanged; a bad call raises `lax`'s error."""
    x, k = jnp.ones((2, 4, 9)), jnp.ones((4, 1, 3))  # NCW / OIW
    ncw = dict(dimension_numbers=("NCW", "OIW", "NCW"), feature_group_count=4)
    jaxpr = jax.make_jaxpr(
        lambda x, k: conv_general.conv_general_dilated(x, k, (1,), "SAME", **ncw)
    )
    assert "conv_general_dilated" in str(jaxpr(x, k))
    nwc = dict(dimension_numbers=("NWC", "WIO", "NWC"), feature_group_count=4)
    x, k = jnp.ones((2, 9, 4)), jnp.ones((3, 1, 4))
    for call in (conv_general.conv_general_dilated, lax.conv_general_dilated):
        with pytest.raises(ValueError, match="window_strides"):
            call(x, k, (1, 1), "SAME", **nwc)  # two strides for one spatial dim


def test_conv_general_dilated_drop_in_nnx():
    x = jax.random.normal(jax.random.key(6), (1, 6, 6, 8))
    conv = nnx.Conv(8, 8, (3, 3), feature_group_count=8, precision=HI, rngs=nnx.Rngs(0),
                    conv_general_dilated=conv_general.make_conv_general_dilated("pallas"))  # fmt: skip
    ref = lax.conv_general_dilated(
        x, conv.kernel[...], (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"),
        feature_group_count=8, precision=HI,
    ) + conv.bias[...].reshape(1, 1, 1, -1)  # fmt: skip
    assert _rel(conv(x), ref) < TOL["float32"]


def test_conv_general_dilated_signature_matches_lax():
    import inspect

    ours = inspect.signature(conv_general.conv_general_dilated).parameters
    theirs = inspect.signature(lax.conv_general_dilated).parameters
    assert list(ours) == list(theirs)
    assert [p.default for p in ours.values()] == [p.default for p in theirs.values()]
