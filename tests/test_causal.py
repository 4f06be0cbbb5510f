"""Tests of `causal_depthwise_conv1d`: definition, streaming state, packed sequences, gradients."""

from __future__ import annotations

import itertools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from absl.testing import parameterized
from jax import lax
from jax.test_util import check_grads

import sepconv_jax as sj

HIGHEST = lax.Precision.HIGHEST
# Relative error (Frobenius) of chunked decoding against one full call: the same sum per step.
CHUNK_RTOL = {jnp.float32: 1e-6, jnp.bfloat16: 1e-2}
# (W, dilation, m, implementation): every width 1-8 once; dilations 1-3, multipliers 1-3 and the
# three implementations spread over them so that each implementation meets several of each.
CASES = [(w, 1 + w % 3, 1 + (2 * w) % 3, ("auto", "xla", "taps")[w // 3]) for w in range(1, 9)]

_seed = itertools.count(3000)
# One compiled program per shape (op-by-op dispatch would compile every primitive on its own).
_conv = jax.jit(
    sj.causal_depthwise_conv1d,
    static_argnames=("dilation", "activation", "return_state", "precision", "implementation"),
)


def _normal(shape, dtype=jnp.float32) -> jax.Array:
    return jax.random.normal(jax.random.key(next(_seed)), shape, jnp.float32).astype(dtype)


def _rel_err(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def _reference(x, kernel, bias, dilation, state=None):
    """y[n, t, c*m+k] = Σ_j kernel[j, c*m+k] · h[n, L + t - (W-1-j)·d, c], in float64 numpy."""
    x, kernel = np.asarray(x, np.float64), np.asarray(kernel, np.float64)
    n, t, c = x.shape
    width, cm = kernel.shape[0], kernel.shape[-1]
    context = (width - 1) * dilation
    past = np.zeros((n, context, c)) if state is None else np.asarray(state, np.float64)
    h = np.repeat(np.concatenate([past, x], axis=1), cm // c, axis=-1)
    y = np.zeros((n, t, cm))
    for j in range(width):
        back = (width - 1 - j) * dilation
        y += kernel[j, 0] * h[:, context - back : context - back + t]
    return y if bias is None else y + np.asarray(bias, np.float64)


def _split(total: int, rng: np.random.Generator) -> list[int]:
    """Random chunk sizes 1 … total summing to `total`, with at least one chunk of 1."""
    sizes = [1]
    while sum(sizes) < total:
        sizes.append(int(rng.integers(1, total - sum(sizes) + 1)))
    rng.shuffle(sizes)
    return sizes


class DefinitionTest(parameterized.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    def test_matches_definition_and_causal_depthwise_conv(self):
        x, k, b = _normal((2, 9, 3)), _normal((4, 1, 6)), _normal((6,))
        conv = self.variant(
            lambda a, w, c: sj.causal_depthwise_conv1d(a, w, c, dilation=2, precision=HIGHEST)
        )
        y = conv(x, k, b)
        chex.assert_shape(y, (2, 9, 6))
        np.testing.assert_allclose(y, _reference(x, k, b, 2), rtol=1e-5, atol=1e-5)
        plain = sj.depthwise_conv(x, k, padding="CAUSAL", dilation=2, precision=HIGHEST)
        np.testing.assert_allclose(
            sj.causal_depthwise_conv1d(x, k, dilation=2, precision=HIGHEST), plain, rtol=1e-6
        )

    def test_silu_is_applied_after_the_bias(self):
        x, k, b = _normal((1, 7, 2)), _normal((3, 1, 2)), _normal((2,))
        y = sj.causal_depthwise_conv1d(x, k, b, activation="silu", precision=HIGHEST)
        pre = _reference(x, k, b, 1)
        np.testing.assert_allclose(y, pre / (1 + np.exp(-pre)), rtol=1e-5, atol=1e-6)

    def test_init_causal_state(self):
        s = sj.init_causal_state(3, 4, 5, dilation=2)
        chex.assert_shape(s, (3, 6, 5))
        assert s.dtype == jnp.float32 and not s.any()
        assert sj.init_causal_state(1, 1, 2, dtype=jnp.bfloat16).shape == (1, 0, 2)


class StreamingTest(parameterized.TestCase):
    @parameterized.parameters(*CASES)
    def test_chunks_of_random_sizes_equal_one_call(self, width, dilation, m, implementation):
        rng = np.random.default_rng(width * 100 + dilation * 10 + m)
        n, t, c = 2, 13, 3
        x, k, b = _normal((n, t, c)), _normal((width, 1, c * m)), _normal((c * m,))
        past = _normal((n, (width - 1) * dilation, c))  # not the start of the sequence
        kw = dict(dilation=dilation, implementation=implementation)
        full, last = _conv(x, k, b, state=past, return_state=True, **kw)
        np.testing.assert_allclose(full, _reference(x, k, b, dilation, past), rtol=1e-5, atol=1e-5)
        state, outs, at = past, [], 0
        for size in _split(t, rng):
            y, state = _conv(x[:, at : at + size], k, b, state=state, return_state=True, **kw)
            outs.append(y)
            at += size
        got = jnp.concatenate(outs, axis=1)
        assert _rel_err(got, full) <= CHUNK_RTOL[jnp.float32], _rel_err(got, full)
        chex.assert_trees_all_equal(state, last)
        expected = np.concatenate([np.asarray(past), np.asarray(x)], axis=1)[:, t:]
        np.testing.assert_array_equal(last, expected)

    def test_chunks_bfloat16(self):
        n, t, c, width = 2, 11, 4, 4
        x, k = _normal((n, t, c), jnp.bfloat16), _normal((width, 1, c), jnp.bfloat16)
        full = _conv(x, k, dilation=2)
        state, outs = sj.init_causal_state(n, width, c, dilation=2, dtype=jnp.bfloat16), []
        for a, z in ((0, 1), (1, 5), (5, 6), (6, 11)):
            y, state = _conv(x[:, a:z], k, dilation=2, state=state, return_state=True)
            outs.append(y)
        got = jnp.concatenate(outs, axis=1)
        assert got.dtype == jnp.bfloat16 and state.dtype == jnp.bfloat16
        assert _rel_err(got, full) <= CHUNK_RTOL[jnp.bfloat16]
        assert _rel_err(full, _reference(x, k, None, 2)) <= 1e-2

    def test_scan_decode_under_jit_equals_full_forward(self):
        n, t, c, m, width, d = 2, 12, 3, 2, 4, 2
        x, k, b = _normal((n, t, c)), _normal((width, 1, c * m)), _normal((c * m,))

        @jax.jit
        def decode(x, k, b):
            def step(state, token):  # token: (N, C)
                y, state = _conv(
                    token[:, None],
                    k,
                    b,
                    dilation=d,
                    state=state,
                    activation="silu",
                    return_state=True,
                )
                return state, y[:, 0]

            start = sj.init_causal_state(n, width, c, dilation=d)
            _, ys = lax.scan(step, start, jnp.swapaxes(x, 0, 1))
            return jnp.swapaxes(ys, 0, 1)

        full = _conv(x, k, b, dilation=d, activation="silu")
        assert _rel_err(decode(x, k, b), full) <= CHUNK_RTOL[jnp.float32]

    def test_decode_step_does_not_grow_with_history(self):
        # The step after 10 and after 10,000 tokens: one program, one cost.
        n, c, width = 1, 4, 4
        k = _normal((width, 1, c))

        def step(state, token):
            y, state = _conv(token, k, state=state, return_state=True)
            return state, y

        @jax.jit
        def run(tokens):
            start = sj.init_causal_state(n, width, c)
            return lax.scan(step, start, tokens[:, :, None])[0]

        short = run(_normal((10, n, c)))
        long = run(_normal((10_000, n, c)))
        token = _normal((n, 1, c))
        jaxprs = [str(jax.make_jaxpr(step)(s, token)) for s in (short, long)]
        assert jaxprs[0] == jaxprs[1]
        costs = [jax.jit(step).lower(s, token).compile().cost_analysis() for s in (short, long)]
        costs = [c[0] if isinstance(c, list) else c for c in costs]
        assert costs[0]["flops"] == costs[1]["flops"]
        assert costs[0]["bytes accessed"] == costs[1]["bytes accessed"]
        assert costs[0]["flops"] < 10 * 2 * width * c  # a few ops per tap, not per history step


class SegmentTest(parameterized.TestCase):
    @parameterized.parameters(("auto", 1, 1), ("taps", 2, 2), ("auto", 3, 1))
    def test_each_document_as_if_alone(self, implementation, dilation, m):
        c, width = 3, 4
        k, b = _normal((width, 1, c * m)), _normal((c * m,))
        # Row 0: documents of 5, 1, 6; row 1: ids 7, 7, 2, 2, 2, 7, ... (a repeated id after a
        # change is a new document).
        runs = [[5, 1, 6], [2, 3, 4, 3]]
        ids = np.stack([np.repeat(np.arange(len(r)) * 3, r) for r in runs])
        ids[1] = np.where(ids[1] % 6 == 0, 7, 2)
        x = _normal((2, 12, c))
        y = _conv(
            x,
            k,
            b,
            dilation=dilation,
            segment_ids=jnp.asarray(ids, jnp.int32),
            implementation=implementation,
            precision=HIGHEST,
        )
        for row, lengths in enumerate(runs):
            at = 0
            for length in lengths:
                alone = _conv(
                    x[row : row + 1, at : at + length], k, b, dilation=dilation, precision=HIGHEST
                )
                np.testing.assert_allclose(
                    y[row : row + 1, at : at + length], alone, rtol=1e-5, atol=1e-6
                )
                at += length

    def test_one_segment_is_the_plain_conv(self):
        x, k = _normal((2, 8, 2)), _normal((3, 1, 4))
        ids = jnp.full((2, 8), 5, jnp.int32)
        np.testing.assert_allclose(
            _conv(x, k, segment_ids=ids),
            _conv(x, k),
            rtol=1e-6,
        )


def test_gradients_wrt_x_kernel_bias_and_state():
    with jax.enable_x64(True):
        x, k = _normal((2, 6, 2), jnp.float64), _normal((3, 1, 4), jnp.float64)
        b, s = _normal((4,), jnp.float64), _normal((2, 4, 2), jnp.float64)

        @jax.jit
        def f(x, k, b, s):
            y, new = sj.causal_depthwise_conv1d(
                x, k, b, dilation=2, state=s, activation="silu", return_state=True
            )
            return jnp.sum(y * y) + jnp.sum(jnp.sin(new))

        check_grads(f, (x, k, b, s), order=1, modes=("rev", "fwd"))
        ids = jnp.asarray([[0, 0, 0, 1, 1, 1], [0, 1, 1, 1, 2, 2]])
        check_grads(
            jax.jit(lambda x, k, b: sj.causal_depthwise_conv1d(x, k, b, segment_ids=ids)),
            (x, k, b),
            order=1,
            modes=("rev",),
        )


def test_agrees_with_pytorch_conv1d():
    torch = pytest.importorskip("torch")
    import torch.nn.functional as F  # noqa: N812

    rng = np.random.default_rng(5)
    for width, d, m in ((4, 1, 1), (3, 3, 2), (7, 2, 3)):
        n, t, c = 2, 10, 3
        x, k, b = _normal((n, t, c)), _normal((width, 1, c * m)), _normal((c * m,))
        xt = torch.from_numpy(np.array(x)).permute(0, 2, 1)  # (N, C, T)
        wt = torch.from_numpy(np.array(k)).permute(2, 1, 0)  # (C*m, 1, W)
        bt = torch.from_numpy(np.array(b))
        ref = F.conv1d(F.pad(xt, ((width - 1) * d, 0)), wt, bt, dilation=d, groups=c)
        impl = ("auto", "xla", "taps")[int(rng.integers(3))]
        y = _conv(x, k, b, dilation=d, implementation=impl, precision=HIGHEST)
        np.testing.assert_allclose(y, ref.permute(0, 2, 1).numpy(), rtol=1e-5, atol=1e-5)


_X, _K = jnp.ones((2, 5, 3)), jnp.ones((4, 1, 3))
_BAD = [
    (ValueError, "state must have shape", dict(state=jnp.ones((2, 2, 3)))),
    (ValueError, "state must have shape", dict(state=jnp.ones((2, 3, 6)))),
    (TypeError, "state has dtype bfloat16", dict(state=jnp.ones((2, 3, 3), jnp.bfloat16))),
    (
        ValueError,
        "segment_ids cannot be combined with state",
        dict(segment_ids=jnp.zeros((2, 5), jnp.int32), state=jnp.ones((2, 3, 3))),
    ),
    (
        ValueError,
        "segment_ids cannot be combined",
        dict(segment_ids=jnp.zeros((2, 5), jnp.int32), return_state=True),
    ),
    (ValueError, "segment_ids must have shape", dict(segment_ids=jnp.zeros((2, 4), jnp.int32))),
    (TypeError, "segment_ids must have an integer dtype", dict(segment_ids=jnp.zeros((2, 5)))),
    (
        ValueError,
        "segment_ids needs implementation",
        dict(segment_ids=jnp.zeros((2, 5), jnp.int32), implementation="xla"),
    ),
    (ValueError, "implementation='pallas' is not supported", dict(implementation="pallas")),
    (ValueError, "implementation must be one of", dict(implementation="cuda")),
    (ValueError, "activation must be None or", dict(activation="relu")),
    (ValueError, "dilation must be positive", dict(dilation=0)),
    (ValueError, r"bias must have shape \(C\*m,\) = \(3,\)", dict(bias=jnp.ones((4,)))),
]


@pytest.mark.parametrize("error, match, kwargs", _BAD)
def test_bad_arguments_name_the_argument(error, match, kwargs):
    with pytest.raises(error, match=match):
        sj.causal_depthwise_conv1d(_X, _K, **kwargs)


@pytest.mark.parametrize(
    "x, kernel, match",
    [
        (jnp.ones((2, 5, 5, 3)), jnp.ones((4, 1, 3)), r"x must have shape \(N, T, C\)"),
        (jnp.ones((5, 3)), jnp.ones((4, 1, 3)), "x must have shape"),
        (_X, jnp.ones((0, 1, 3)), "depthwise kernel window must be positive"),
        (_X, jnp.ones((4, 1, 4)), "depthwise kernel has 4 channels but x has 3"),
        (_X, jnp.ones((4, 3)), "depthwise kernel has shape"),
    ],
)
def test_bad_shapes_name_the_argument(x, kernel, match):
    with pytest.raises(ValueError, match=match):
        sj.causal_depthwise_conv1d(x, kernel)


def test_init_causal_state_rejects_bad_sizes():
    with pytest.raises(ValueError, match="kernel_size must be positive"):
        sj.init_causal_state(1, 0, 3)
    with pytest.raises(TypeError, match="dtype must have a floating-point dtype"):
        sj.init_causal_state(1, 3, 3, dtype=jnp.int32)
