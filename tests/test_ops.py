"""Tests of the functional core: closed forms, equivalence with full convolution, gradients."""

from __future__ import annotations

import functools
import itertools
import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from absl.testing import parameterized
from jax import lax
from jax.test_util import check_grads

import sepconv_jax as sj
from sepconv_jax._args import DIMENSION_NUMBERS

HIGHEST = lax.Precision.HIGHEST
# Relative error (Frobenius) allowed against a HIGHEST-precision f32 reference.
RTOL = {jnp.float32: 1e-5, jnp.bfloat16: 2e-2}

_seed = itertools.count(1000)


def _key() -> jax.Array:
    """A fresh key per call: every test draws new random inputs."""
    return jax.random.key(next(_seed))


def _normal(shape, dtype=jnp.float32) -> jax.Array:
    return jax.random.normal(_key(), shape, jnp.float32).astype(dtype)


def _rel_err(a: jax.Array, b: jax.Array) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


#: numpy.pad's names of the border modes.
_NP_BORDER = {"CIRCULAR": "wrap", "REFLECT": "reflect", "REPLICATE": "edge"}


def _pairs(amount, n):
    if isinstance(amount, int):
        return [(amount, amount)] * n
    return [(p, p) if isinstance(p, int) else tuple(p) for p in amount]


def _reference_pads(padding, spatial, window, strides, dilation):
    """`((lo, hi) per spatial dim, numpy.pad mode)`, from each padding's definition (written
    out here, not taken from the library)."""
    n = len(window)
    extent = [(k - 1) * d + 1 for k, d in zip(window, dilation)]
    if isinstance(padding, tuple) and isinstance(padding[0], str):  # (mode, amount)
        return _pairs(padding[1], n), _NP_BORDER[padding[0]]
    if padding == "VALID":
        return [(0, 0)] * n, "constant"
    if padding == "SAME":  # output ceil(s / stride), the odd one of the padding after
        totals = [
            max((-(-s // st) - 1) * st + e - s, 0) for s, e, st in zip(spatial, extent, strides)
        ]
        return [(t // 2, t - t // 2) for t in totals], "constant"
    if padding == "CAUSAL":  # everything before
        return [(e - 1, 0) for e in extent], "constant"
    if (
        isinstance(padding, str) and padding in _NP_BORDER
    ):  # SAME at stride 1: e - 1 in all, the odd one after
        return [((e - 1) // 2, (e - 1) - (e - 1) // 2) for e in extent], _NP_BORDER[padding]
    return _pairs(padding, n), "constant"


def _full_conv(x, w, strides, padding, dilation):
    """Reference full convolution: numpy.pad by `_reference_pads`, then a VALID conv at HIGHEST."""
    nd = x.ndim - 2
    pads, mode = _reference_pads(padding, x.shape[1:-1], w.shape[:nd], strides, dilation)
    xp = np.pad(np.asarray(x), ((0, 0), *pads, (0, 0)), mode=mode)
    return lax.conv_general_dilated(
        jnp.asarray(xp),
        w,
        window_strides=strides,
        padding="VALID",
        rhs_dilation=dilation,
        dimension_numbers=DIMENSION_NUMBERS[nd],
        precision=HIGHEST,
    )


class ClosedFormTest(parameterized.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    @parameterized.parameters(1, 2, 3)
    def test_uniform_answer(self, nd):
        # Ones input with channel c set to c+1; a constant kernel: every VALID output of
        # depthwise channel c*m+k is (c+1) * K * value, and the pointwise sums channels.
        c, m, co, k, value = 3, 2, 4, 3, 0.5
        x = jnp.broadcast_to(jnp.arange(1, c + 1, dtype=jnp.float32), (2, *(6,) * nd, c))
        dw = jnp.full((*(k,) * nd, 1, c * m), value)
        pw = jnp.ones((c * m, co))
        y_dw = self.variant(lambda a, b: sj.depthwise_conv(a, b, padding="VALID"))(x, dw)
        expected_dw = np.repeat(np.arange(1, c + 1), m) * value * k**nd
        chex.assert_shape(y_dw, (2, *(6 - k + 1,) * nd, c * m))
        np.testing.assert_allclose(y_dw, np.broadcast_to(expected_dw, y_dw.shape), rtol=1e-6)
        y = self.variant(lambda a, b, p: sj.separable_conv(a, b, p, padding="VALID"))(x, dw, pw)
        np.testing.assert_allclose(y, np.full(y.shape, expected_dw.sum()), rtol=1e-6)

    def test_causal_1d_matches_definition(self):
        # y[t, c] = sum_j w[j, c] * x[t - (K-1-j)*d, c], with x = 0 before the start.
        x, w, d = _normal((1, 11, 2)), _normal((3, 1, 2)), 2
        y = sj.depthwise_conv(x, w, padding="CAUSAL", dilation=d, precision=HIGHEST)
        xn, wn = np.asarray(x, np.float64), np.asarray(w, np.float64)
        ref = np.zeros((1, 11, 2))
        for t in range(11):
            for j in range(3):
                s = t - (2 - j) * d
                if s >= 0:
                    ref[0, t] += wn[j, 0] * xn[0, s]
        np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-5)

    @parameterized.parameters(
        ("CIRCULAR", (3, 5), ((1, 1), (2, 2))),
        ("REFLECT", (2, 4), ((0, 1), (1, 2))),  # even windows: the odd pad goes after
        ("REPLICATE", (4, 2), ((1, 2), (0, 1))),
        ("CIRCULAR", (2, 3), ((0, 1), (1, 1))),
    )
    def test_border_modes_match_numpy_pad(self, padding, window, pads):
        x, w = _normal((2, 7, 6, 3)), _normal((*window, 1, 3))
        y = sj.depthwise_conv(x, w, padding=padding, precision=HIGHEST)
        xp = np.pad(np.asarray(x), ((0, 0), *pads, (0, 0)), mode=_NP_BORDER[padding])
        ref = sj.depthwise_conv(jnp.asarray(xp), w, padding="VALID", precision=HIGHEST)
        chex.assert_shape(y, x.shape)
        chex.assert_trees_all_close(y, ref, rtol=1e-6, atol=1e-6)

    @parameterized.parameters(
        (("REFLECT", 1), (5, 5)),  # torch Conv2d(k=5, padding=1, padding_mode="reflect")
        (("CIRCULAR", [(0, 1), 2]), (4, 3)),
        (("replicate", 2), (2, 2)),
    )
    def test_border_mode_with_amount_matches_numpy_pad(self, padding, window):
        x, w = _normal((2, 7, 6, 3)), _normal((*window, 1, 3))
        pads = _pairs(padding[1], 2)
        xp = np.pad(np.asarray(x), ((0, 0), *pads, (0, 0)), mode=_NP_BORDER[padding[0].upper()])
        ref = sj.depthwise_conv(jnp.asarray(xp), w, padding="VALID", precision=HIGHEST)
        for implementation in ("xla", "taps"):
            y = sj.depthwise_conv(
                x, w, padding=padding, precision=HIGHEST, implementation=implementation
            )
            chex.assert_trees_all_close(y, ref, rtol=1e-5, atol=1e-5)

    @parameterized.parameters(("ZEROS", 1), ("REFLECT", -1), ("REFLECT", (1, 1, 1)))
    def test_border_mode_with_bad_amount_raises(self, *padding):
        with pytest.raises(ValueError, match="padding"):
            sj.depthwise_conv(_normal((1, 6, 6, 2)), _normal((3, 3, 1, 2)), padding=padding)


def _grid():
    """Strides × padding × multiplier × dilation × rank, sampled to keep the suite fast."""
    cases = []
    paddings = ["SAME", "VALID", "CAUSAL", "CIRCULAR", "REFLECT", "REPLICATE", 1, "pairs", "mode"]
    rng = np.random.default_rng(0)
    for nd, pad, m in itertools.product((1, 2, 3), paddings, (1, 3)):
        stride = int(rng.integers(1, 3))
        dil = int(rng.integers(1, 3)) if stride == 1 else 1
        cases.append(dict(nd=nd, padding=pad, m=m, stride=stride, dilation=dil))
    return cases


class EquivalenceTest(parameterized.TestCase):
    @parameterized.parameters(*_grid())
    def test_separable_equals_full_conv(self, nd, padding, m, stride, dilation):
        c, co = 3, 5
        spatial = (9, 8, 7)[:nd]
        window = (3, 2, 3)[:nd]
        if padding == "pairs":
            padding = [(1, 0), (0, 2), (2, 1)][:nd]
        if padding == "mode":
            padding = (("REFLECT", "CIRCULAR", "REPLICATE")[nd - 1], [(1, 0), (0, 2), 2][:nd])
        x = _normal((2, *spatial, c))
        dw, pw = _normal((*window, 1, c * m)), _normal((c * m, co))
        y = sj.separable_conv(
            x, dw, pw, strides=stride, padding=padding, dilation=dilation, precision=HIGHEST
        )
        w = sj.separable_to_full(dw, pw, m)
        ref = _full_conv(x, w, (stride,) * nd, padding, (dilation,) * nd)
        chex.assert_equal_shape([y, ref])
        assert _rel_err(y, ref) <= RTOL[jnp.float32]

    def test_separable_equals_full_conv_bfloat16(self):
        # bf16 inputs, f32 reference on the same (rounded) values: error is the bf16 rounding
        # of the intermediate and output (~2^-8 relative), so 2e-2 in norm.
        x = _normal((2, 8, 8, 4), jnp.bfloat16)
        dw, pw = _normal((3, 3, 1, 4), jnp.bfloat16), _normal((4, 6), jnp.bfloat16)
        y = sj.separable_conv(x, dw, pw)
        assert y.dtype == jnp.bfloat16
        w = sj.separable_to_full(dw.astype(jnp.float32), pw.astype(jnp.float32))
        ref = _full_conv(x.astype(jnp.float32), w, (1, 1), "SAME", (1, 1))
        assert _rel_err(y, ref) <= RTOL[jnp.bfloat16]

    @parameterized.parameters(1, 2, 3)
    def test_depthwise_is_per_channel_conv(self, nd):
        c, m = 4, 2
        x = _normal((2, *(7,) * nd, c))
        k = _normal((*(3,) * nd, 1, c * m))
        y = sj.depthwise_conv(x, k, strides=2, padding="SAME", precision=HIGHEST)
        for ch in range(c):
            for j in range(m):
                single = lax.conv_general_dilated(
                    x[..., ch : ch + 1],
                    k[..., ch * m + j : ch * m + j + 1],
                    window_strides=(2,) * nd,
                    padding="SAME",
                    dimension_numbers=DIMENSION_NUMBERS[nd],
                    precision=HIGHEST,
                )
                chex.assert_trees_all_close(
                    y[..., ch * m + j], single[..., 0], rtol=1e-5, atol=1e-5
                )

    def test_depthwise_equals_block_diagonal_full_conv(self):
        c, m = 3, 2
        x, k = _normal((2, 6, 6, c)), _normal((3, 3, 1, c * m))
        y = sj.depthwise_conv(x, k, precision=HIGHEST)
        # W[..., c, c*m+j] = k[..., 0, c*m+j], zero elsewhere (broadcast over the input axis).
        mask = np.kron(np.eye(c), np.ones((1, m)))
        w = k * jnp.asarray(mask, jnp.float32).reshape(1, 1, c, c * m)
        ref = _full_conv(x, w, (1, 1), "SAME", (1, 1))
        assert _rel_err(y, ref) <= 1e-6

    @chex.variants(with_jit=True, without_jit=True)
    def test_pointwise_is_1x1_conv(self):
        x, p = _normal((2, 5, 4, 6)), _normal((6, 7))
        y = self.variant(lambda a, b: sj.pointwise_conv(a, b, precision=HIGHEST))(x, p)
        ref = _full_conv(x, p[None, None], (1, 1), "VALID", (1, 1))
        chex.assert_trees_all_close(y, ref, rtol=1e-6, atol=1e-6)

    def test_vmap(self):
        x = _normal((3, 2, 6, 6, 4))
        dw, pw = _normal((3, 3, 1, 4)), _normal((4, 5))
        y = jax.vmap(lambda a: sj.separable_conv(a, dw, pw, precision=HIGHEST))(x)
        ref = sj.separable_conv(x.reshape(6, 6, 6, 4), dw, pw, precision=HIGHEST)
        chex.assert_trees_all_close(y.reshape(ref.shape), ref, rtol=1e-6)

    def test_mixed_dtypes_promote(self):
        x = _normal((1, 5, 5, 2), jnp.bfloat16)
        y = sj.depthwise_conv(x, _normal((3, 3, 1, 2)))
        assert y.dtype == jnp.float32


class ConversionTest(parameterized.TestCase):
    @parameterized.parameters(((3, 3), 4), ((3, 3), 16), ((5,), 3), ((2, 2, 2), 6))
    def test_full_to_separable_exact_at_full_rank(self, window, co):
        c = 3
        w = _normal((*window, c, co))
        m = min(math.prod(window), co)
        for mult in (m, m + 1):
            dw, pw = sj.full_to_separable(w, mult)
            chex.assert_shape([dw, pw], [(*window, 1, c * mult), (c * mult, co)])
            back = sj.separable_to_full(dw, pw, mult)
            assert _rel_err(back, w) <= 1e-5

    def test_error_decreases_with_multiplier(self):
        w = _normal((3, 3, 4, 12))
        errs = []
        for m in range(1, 10):
            dw, pw = sj.full_to_separable(w, m)
            errs.append(_rel_err(sj.separable_to_full(dw, pw, m), w))
        assert all(a > b for a, b in zip(errs[:-1], errs[1:])), errs
        assert errs[-1] <= 1e-5
        assert errs[0] > 0.1

    def test_conversion_of_a_layer_keeps_its_output(self):
        # Converting an exactly-separable full conv recovers its function.
        dw, pw = _normal((3, 3, 1, 4)), _normal((4, 8))
        w = sj.separable_to_full(dw, pw)
        dw2, pw2 = sj.full_to_separable(w, 1)
        x = _normal((2, 8, 8, 4))
        y1 = sj.separable_conv(x, dw, pw, precision=HIGHEST)
        y2 = sj.separable_conv(x, dw2, pw2, precision=HIGHEST)
        assert _rel_err(y2, y1) <= 1e-5

    def test_ratio_of_parameter_counts(self):
        # separable / full weights = m/C_out + m/prod(window): 1/C_out + 1/K^2 for m = 1.
        for window, c, co, m in [((3, 3), 32, 64, 1), ((5, 5), 8, 16, 2), ((3,), 4, 4, 3)]:
            dw, pw = jnp.ones((*window, 1, c * m)), jnp.ones((c * m, co))
            full = sj.separable_to_full(dw, pw, m)
            ratio = (dw.size + pw.size) / full.size
            assert math.isclose(ratio, m / co + m / math.prod(window))


class ImplementationTest(parameterized.TestCase):
    """`auto` on the CPU backend sums shifted slices (`_depthwise_taps`); `xla` is one grouped
    `lax.conv_general_dilated`. Same maths, other summation order: f32 rel. error <= 1e-5."""

    @parameterized.parameters(
        # (nd, padding, stride, dilation, multiplier): every padding mode, rank, stride, dilation
        # and multiplier at least once (XLA:CPU's grouped-conv gradients are slow: keep it short).
        (1, "SAME", 1, 1, 1),
        (1, "CAUSAL", 2, 1, 3),
        (1, "CIRCULAR", 1, 2, 1),
        (2, "SAME", 2, 1, 3),
        (2, "VALID", 1, 2, 1),
        (2, "REFLECT", 2, 2, 3),
        (2, "REPLICATE", 1, 1, 1),
        (2, ((2, 0), (1, 3)), 1, 1, 3),
        (3, "SAME", 1, 1, 1),
        (3, "VALID", 2, 2, 3),
    )
    def test_taps_equal_grouped_conv_with_gradients(self, nd, padding, stride, dilation, m):
        assert jax.default_backend() == "cpu"
        spatial = {1: (11,), 2: (9, 8), 3: (6, 5, 7)}[nd]
        x = _normal((2, *spatial, 3))
        dw = _normal((*(3,) * nd, 1, 3 * m))
        kwargs = dict(strides=stride, padding=padding, dilation=dilation, precision=HIGHEST)

        def loss(impl, x, dw):
            y = sj.depthwise_conv(x, dw, implementation=impl, **kwargs)
            return jnp.sum(jnp.sin(y)), y

        (_, y_taps), g_taps = jax.value_and_grad(
            functools.partial(loss, "auto"), argnums=(0, 1), has_aux=True
        )(x, dw)
        (_, y_xla), g_xla = jax.value_and_grad(
            functools.partial(loss, "xla"), argnums=(0, 1), has_aux=True
        )(x, dw)
        chex.assert_equal_shape([y_taps, y_xla])
        assert "conv_general_dilated" not in str(
            jax.make_jaxpr(functools.partial(loss, "auto"))(x, dw)
        )
        assert _rel_err(y_taps, y_xla) <= RTOL[jnp.float32]
        for a, b in zip(g_taps, g_xla):
            assert _rel_err(a, b) <= RTOL[jnp.float32]

    def test_explicit_taps_separable_and_fused_and_grouped_conv_only(self):
        x, dw, pw = _normal((2, 9, 8, 3)), _normal((3, 3, 1, 6)), _normal((6, 5))
        kwargs = dict(strides=2, precision=HIGHEST)

        def sep(impl):
            return lambda x, dw, pw: sj.separable_conv(x, dw, pw, implementation=impl, **kwargs)

        def fused(impl):
            return lambda x, dw, pw: sj.fused_separable_conv(
                x, dw, pw, activation="relu", implementation=impl, **kwargs
            )

        def has_conv(f):
            return "conv_general_dilated" in str(jax.make_jaxpr(f)(x, dw, pw))

        assert not has_conv(sep("taps")) and not has_conv(fused("taps"))
        assert not has_conv(fused("auto"))  # CPU backend: auto = taps for the unfused path too
        assert has_conv(sep("xla")) and has_conv(fused("xla"))
        with sj.ops.grouped_conv_only():  # what cost accounting traces
            assert has_conv(sep("taps")) and has_conv(fused("auto"))
        assert _rel_err(sep("taps")(x, dw, pw), sep("xla")(x, dw, pw)) <= RTOL[jnp.float32]
        assert _rel_err(fused("taps")(x, dw, pw), fused("xla")(x, dw, pw)) <= RTOL[jnp.float32]

    def test_taps_accumulate_bfloat16_in_float32(self):
        x, dw = _normal((2, 8, 8, 4), jnp.bfloat16), _normal((5, 5, 1, 4), jnp.bfloat16)
        y = sj.depthwise_conv(x, dw)
        assert y.dtype == jnp.bfloat16
        ref = sj.depthwise_conv(x.astype(jnp.float32), dw.astype(jnp.float32), precision=HIGHEST)
        assert _rel_err(y, ref) <= RTOL[jnp.bfloat16]


class GradientTest(parameterized.TestCase):
    @parameterized.parameters(("SAME", 1, 1), ("VALID", 2, 1), ("REFLECT", 1, 2), ("CAUSAL", 1, 1))
    def test_check_grads_float64(self, padding, stride, m):
        with jax.enable_x64(True):
            key = jax.random.key(next(_seed))
            k1, k2, k3 = jax.random.split(key, 3)
            x = jax.random.normal(k1, (2, 6, 5, 3), jnp.float64)
            dw = jax.random.normal(k2, (3, 3, 1, 3 * m), jnp.float64)
            pw = jax.random.normal(k3, (3 * m, 4), jnp.float64)

            def f(x, dw, pw):
                return sj.separable_conv(x, dw, pw, strides=stride, padding=padding)

            check_grads(f, (x, dw, pw), order=2, modes=("fwd", "rev"))
            check_grads(sj.separable_to_full, (dw, pw), order=1, modes=("rev",))


class BadInputTest(parameterized.TestCase):
    def _raises(self, exc, match, fn, *args, **kwargs):
        with pytest.raises(exc, match=match):
            fn(*args, **kwargs)

    def test_errors(self):
        x, dw, pw = _normal((2, 8, 8, 4)), _normal((3, 3, 1, 4)), _normal((4, 5))
        self._raises(ValueError, r"rank 3, 4 or 5.*rank 2", sj.depthwise_conv, x[0, 0], dw)
        self._raises(ValueError, r"rank 6", sj.depthwise_conv, x[None, None], dw)
        self._raises(
            ValueError, r"6 channels but x has 4", sj.depthwise_conv, x, dw[..., :2].repeat(3, -1)
        )
        self._raises(
            ValueError,
            r"second-to-last dim must be 1",
            sj.depthwise_conv,
            x,
            dw.reshape(3, 3, 2, 2),
        )
        self._raises(ValueError, r"2 spatial dims", sj.depthwise_conv, x, dw[0])
        self._raises(
            ValueError, r"padding must be one of.*'SMAE'", sj.depthwise_conv, x, dw, padding="SMAE"
        )
        self._raises(
            ValueError, r"padding must have one", sj.depthwise_conv, x, dw, padding=[(1, 1)]
        )
        self._raises(ValueError, r"non-negative", sj.depthwise_conv, x, dw, padding=-1)
        self._raises(ValueError, r"strides must be positive", sj.depthwise_conv, x, dw, strides=0)
        self._raises(
            ValueError,
            r"dilation must have one entry",
            sj.depthwise_conv,
            x,
            dw,
            dilation=(1, 1, 1),
        )
        self._raises(
            ValueError,
            r"implementation must be one of",
            sj.depthwise_conv,
            x,
            dw,
            implementation="cuda",
        )
        self._raises(
            TypeError,
            r"x must have a floating-point dtype, got int32",
            sj.depthwise_conv,
            x.astype(jnp.int32),
            dw,
        )
        self._raises(
            TypeError,
            r"depthwise kernel must have a floating",
            sj.depthwise_conv,
            x,
            dw.astype(jnp.int32),
        )
        self._raises(
            ValueError,
            r"pointwise kernel has shape \(5, 5\).*4 channels",
            sj.pointwise_conv,
            x,
            _normal((5, 5)),
        )
        self._raises(ValueError, r"\(C_in, C_out\)", sj.pointwise_conv, x, _normal((4,)))
        self._raises(ValueError, r"depthwise output", sj.separable_conv, x, dw, _normal((8, 5)))
        self._raises(
            ValueError, r"not divisible by channel_multiplier=3", sj.separable_to_full, dw, pw, 3
        )
        self._raises(
            ValueError,
            r"channel_multiplier must be a positive int",
            sj.separable_to_full,
            dw,
            pw,
            0,
        )
        self._raises(
            ValueError,
            r"channel_multiplier must be a positive int",
            sj.full_to_separable,
            _normal((3, 3, 2, 2)),
            -1,
        )
        self._raises(
            ValueError, r"\(\*window, C_in, C_out\)", sj.full_to_separable, _normal((3, 3)), 1
        )

    def test_errors_raise_at_trace_time(self):
        # Under jit the same errors come from tracing, before any XLA compilation.
        x, dw = _normal((2, 8, 8, 4)), _normal((3, 3, 1, 3))
        with pytest.raises(ValueError, match="3 channels but x has 4"):
            jax.jit(sj.depthwise_conv).lower(x, dw)
