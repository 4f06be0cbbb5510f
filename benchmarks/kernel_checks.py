"""Correctness checks of the Pallas kernels against XLA at `Precision.HIGHEST`, and their error."""

from __future__ import annotations

import concurrent.futures

import jax
import jax.numpy as jnp
import numpy as np

from sepconv_jax import ops as sj_ops
from sepconv_jax.fused import fused_separable_conv


def rel_err(a: jax.Array, ref: jax.Array) -> float:
    """‖a − ref‖ / ‖ref‖ in float64 (NaN anywhere gives NaN, which fails every check)."""
    a, ref = np.asarray(a, np.float64), np.asarray(ref, np.float64)
    return float(np.linalg.norm(a - ref) / max(np.linalg.norm(ref), 1e-30))


CHECK_HEADERS = [
    "kernel",
    "dtype",
    "window",
    "stride",
    "padding",
    "extras",
    "rel err",
    "grad err",
    "ok",
]
#: (window, stride, padding) of the correctness checks: every supported kind of geometry.
CHECK_GEOMS = (
    (3, 1, "SAME"),
    (3, 2, "SAME"),
    (3, 1, "VALID"),
    (3, 2, "VALID"),
    (5, 1, "SAME"),
    (5, 2, "SAME"),
    (5, 1, "VALID"),
    (3, 2, ((1, 0), (0, 1))),
)
#: Max |err| / max |ref| allowed per dtype (float32 runs the dot at HIGHEST: IEEE fp32).
CHECK_TOL = {"float32": 1e-5, "bfloat16": 2e-2}


def _check_one(name, dtype, k, s, pad, extras, arrays, ct) -> list[str]:
    hi = jax.lax.Precision.HIGHEST

    def f(impl, *a):
        if name == "depthwise":
            return sj_ops.depthwise_conv(
                *a, strides=s, padding=pad, precision=hi, implementation=impl
            )
        return fused_separable_conv(
            *a, strides=s, padding=pad, precision=hi, implementation=impl, **extras
        )

    def loss(impl, *a):
        return jnp.sum(f(impl, *a).astype(jnp.float32) * ct)

    ref_args = [a.astype(jnp.float32) for a in arrays]
    ref = jax.jit(lambda *a: f("xla", *a))(*ref_args)
    out = jax.jit(lambda *a: f("pallas", *a))(*arrays)
    err = rel_err(out, ref)
    # The backward is XLA's by design: compare it with XLA's in the same dtype (against float32,
    # bf16 ReLU masks flip near 0 and 6 and XLA's own bf16 gradients differ by a few %).
    g_ref = jax.jit(jax.grad(lambda *a: loss("xla", *a), argnums=(0, 1)))(*arrays)
    g_out = jax.jit(jax.grad(lambda *a: loss("pallas", *a), argnums=(0, 1)))(*arrays)
    g_err = max(rel_err(a, b) for a, b in zip(g_out, g_ref))
    tol = CHECK_TOL[dtype]
    ok = out.shape == ref.shape and err <= tol and g_err <= tol
    return [
        name, dtype, f"{k}x{k}", str(s), str(pad), (name == "fused" and ",".join(extras)) or "-",
        f"{err:.1e}", f"{g_err:.1e}", "ok" if ok else "FAIL",
    ]  # fmt: skip


def run_checks(quick: bool, workers: int = 8) -> list[list[str]]:
    """Kernels (`implementation="pallas"`) against XLA at HIGHEST on fresh random inputs.

    The forward reference runs in float32 on the (upcast) same inputs, the gradient reference is
    XLA's in the input dtype; errors are ‖out − ref‖ / ‖ref‖.
    """
    geoms = CHECK_GEOMS[:2] if quick else CHECK_GEOMS
    jobs = []
    key = jax.random.key(7)
    for dtype in ("float32", "bfloat16"):
        for i, (k, s, pad) in enumerate(geoms):
            key, *ks = jax.random.split(key, 8)
            x = jax.random.normal(ks[0], (2, 13, 11, 40), jnp.float32).astype(dtype)
            dw = jax.random.normal(ks[1], (k, k, 1, 40), jnp.float32).astype(dtype)
            pw = jax.random.normal(ks[2], (40, 48), jnp.float32).astype(dtype)
            extras = {}
            if i % 2 == 0:
                extras = dict(
                    scale=jax.random.normal(ks[3], (40,)),
                    shift=jax.random.normal(ks[4], (40,)),
                    bias=jax.random.normal(ks[5], (48,)),
                    activation=("relu6", "relu")[i % 4 // 2],
                )
            for name, arrays in (("depthwise", (x, dw)), ("fused", (x, dw, pw))):
                y_shape = jax.eval_shape(
                    lambda *a, name=name, s=s, pad=pad: _ref_shape(name, s, pad, *a), *arrays
                ).shape
                ct = jax.random.normal(ks[6], y_shape, jnp.float32)
                jobs.append((name, dtype, k, s, pad, extras, arrays, ct))
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        return list(pool.map(lambda job: _check_one(*job), jobs))


def _ref_shape(name, s, pad, *a):
    if name == "depthwise":
        return sj_ops.depthwise_conv(*a, strides=s, padding=pad, implementation="xla")
    return fused_separable_conv(*a, strides=s, padding=pad, implementation="xla")
