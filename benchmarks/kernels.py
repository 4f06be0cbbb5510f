"""GPU benchmark of the Pallas kernels (depthwise, fused separable) against XLA and cuDNN.

Run from the repository root:

    python -m benchmarks.kernels --quick                  # CPU/interpret: proves the script runs
    python -m benchmarks.kernels --out kernels.md         # the GPU set (≈ 6 min on an H100)
    python -m benchmarks.kernels --few-checks --rows 4,5,6 --out k.md   # a subset

One command does everything for one round: correctness of every kernel configuration against
XLA at `Precision.HIGHEST` (small shapes, float32 and bfloat16, forward and gradients), then per
benchmark shape (3×3, stride 1, SAME, bf16): a sweep of tile sizes for each kernel, the best
tiles against XLA and PyTorch cuDNN (channels_last, cudnn.benchmark), fwd and fwd+bwd, and the
error of the timed kernels at that shape. Times are medians of wall-clock samples of one
compiled program that runs the op once on each of `S` distinct input sets (together ≥ 3× the
50 MB L2, and long enough that dispatch is a few % of the sample), divided by `S`.

This file reads top to bottom: the correctness checks, the timing of one shape, the table, the
command line.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import math
import sys
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import common
from benchmarks.op_contenders import SHAPE_SETS, fwdbwd
from sepconv_jax import _args
from sepconv_jax import ops as sj_ops
from sepconv_jax.fused import fused_separable_conv
from sepconv_jax.kernels import backend, config, depthwise, fused, reference
from sepconv_jax.kernels.config import Tiles

# ---------------------------------------------------------------------------------------------
# Correctness checks of every kernel configuration against XLA


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


# ---------------------------------------------------------------------------------------------
# Timing one shape: tile sweep, XLA and cuDNN, fwd+bwd, errors


#: Depthwise tiles tried per shape: (pixels, channels, warps).
DW_SWEEP = ((32, 128, 4), (16, 128, 4), (64, 128, 8), (64, 64, 4))
#: Fused tiles tried per shape: (pixels, channels, out_channels, warps, stages). num_stages=2
#: pipelines every gather through shared memory (up to 180 KB: one program per SM).
FUSED_SWEEP = (
    (64, 32, 128, 8, 1),
    (128, 16, 128, 8, 1),
    (64, 64, 128, 8, 1),
    (64, 64, 128, 8, 2),
    (64, 32, 256, 8, 1),
)
SAME = _args.Padding("SAME", None, None)


def _statics(shape, dw_t: Tiles, fu_t: Tiles, interpret: bool):
    b, h, w, c, co = shape
    g = config.geometry((b, h, w, c), (3, 3), (1, 1), SAME)
    ds = depthwise.Static(g, dw_t, (1, 1), SAME, None, interpret)
    fs = fused.Static(g, co, fu_t, dw_t, None, (1, 1), SAME, None, interpret)
    return g, ds, fs


def _sets(shape, n: int, seed: int) -> list[tuple[jax.Array, ...]]:
    b, h, w, c, co = shape
    out = []
    key = jax.random.key(seed)
    for _ in range(n):
        key, k1, k2, k3, k4 = jax.random.split(key, 5)
        x = jax.random.normal(k1, (b, h, w, c), jnp.float32).astype(jnp.bfloat16)
        dw = (jax.random.normal(k2, (3, 3, 1, c), jnp.float32) / 3.0).astype(jnp.bfloat16)
        pw = (jax.random.normal(k3, (c, co), jnp.float32) / math.sqrt(c)).astype(jnp.bfloat16)
        dy = jax.random.normal(k4, (b, h, w, co), jnp.float32).astype(jnp.bfloat16)
        out.append((x, dw, pw, dy))
    return out


def _compile(fn, sets):
    program = jax.jit(lambda all_sets: [fn(*s) for s in all_sets])
    return program.lower(sets).compile()


REPEATS = 8


def _time(exe, sets, budget_s: float) -> common.Timing:
    """Per-call seconds: each sample enqueues the program `REPEATS` times back to back (JAX
    dispatch is asynchronous) and waits once, so the host round trip (≈ 0.3 ms on the device
    VM) is paid once per `REPEATS × len(sets)` calls."""

    def once() -> float:
        start = time.perf_counter()
        for _ in range(REPEATS):
            out = exe(sets)
        jax.block_until_ready(out)
        return (time.perf_counter() - start) / (REPEATS * len(sets))

    jax.block_until_ready(exe(sets))
    once()
    return common.Timing(tuple(common.timed_samples(once, budget_s, 5, 30)), len(sets))


def _compile_all(named: dict[str, Any], sets, workers: int) -> dict[str, Any]:
    """Compiles every `name -> fn` in threads (XLA/Triton compile off the GIL); errors kept."""

    def one(item):
        name, fn = item
        try:
            return name, _compile(fn, sets)
        except Exception as err:  # noqa: BLE001 - a tile that does not compile is a result
            return name, err

    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        return dict(pool.map(one, named.items()))


def _torch_times(shape, n_sets: int, budget_s: float) -> dict[str, float]:
    torch = common.torch_or_none()
    if torch is None or not torch.cuda.is_available():
        return {}
    torch.backends.cudnn.benchmark = True
    fn = torch.nn.functional
    b, h, w, c, co = shape
    cl, dev, dt = torch.channels_last, "cuda", torch.bfloat16
    sets = []
    for _ in range(n_sets):
        x = torch.randn(b, c, h, w, device=dev, dtype=dt).to(memory_format=cl)
        k = (torch.randn(c, 1, 3, 3, device=dev, dtype=dt) / 3).to(memory_format=cl)
        p = (torch.randn(co, c, 1, 1, device=dev, dtype=dt) / math.sqrt(c)).to(memory_format=cl)
        sets.append((x, k, p))

    def dw(x, k, p):
        with torch.no_grad():
            return fn.conv2d(x, k, padding=1, groups=c)

    def sep(x, k, p):
        with torch.no_grad():
            return fn.conv2d(fn.conv2d(x, k, padding=1, groups=c), p)

    out = {}
    for name, f in (("dw", dw), ("sep", sep)):
        out[name] = common.time_torch(f, sets, budget_s=budget_s, min_samples=5).median_ms
    del sets
    torch.cuda.empty_cache()
    return out


def measure_shape(shape, bw: float, args, sweep_rows: list) -> dict[str, Any]:
    """All the numbers of one table row (times in ms)."""
    b, h, w, c, co = shape
    item = 2
    x_bytes, y_bytes = b * h * w * c * item, b * h * w * co * item
    floor_dw = 2 * x_bytes / bw * 1e3
    floor_sep = (x_bytes + y_bytes + (9 * c + c * co) * item) / bw * 1e3
    per_set = x_bytes + y_bytes + b * h * w * c * item
    n_sets = min(common.num_sets(per_set, max_sets=args.max_sets), max(2, int(3e9 // per_set)))
    sets = _sets(shape, n_sets, seed=sum(shape))
    interpret = not backend.on_gpu()
    row: dict[str, Any] = {"shape": shape, "floor_dw": floor_dw, "floor_sep": floor_sep}
    row["sets"] = n_sets

    def xla_dw(x, dw, pw, dy):
        return reference.depthwise(x, dw, (1, 1), SAME, None)

    def xla_sep(x, dw, pw):
        return reference.fused(x, dw, pw, None, None, None, None, (1, 1), SAME, None)

    named: dict[str, Any] = {"xla_dw": xla_dw, "xla_sep": lambda x, dw, pw, dy: xla_sep(x, dw, pw)}
    sweep = {}
    for p, bc, nw in DW_SWEEP[: args.sweep]:
        t = Tiles(p, bc, 16, nw, 1)
        g, ds, _ = _statics(shape, t, t, interpret)
        sweep[f"dw:{p}x{bc}w{nw}"] = t
        named[f"dw:{p}x{bc}w{nw}"] = lambda x, dw, pw, dy, ds=ds: depthwise.depthwise_conv2d(
            x, dw, ds
        )
    co_cap = max(16, 2 ** math.ceil(math.log2(co)))
    fused_sweep = list(
        dict.fromkeys((p, bc, min(bco, co_cap), nw, ns) for p, bc, bco, nw, ns in FUSED_SWEEP)
    )
    for p, bc, bco, nw, ns in fused_sweep[: args.sweep]:
        t = Tiles(p, bc, bco, nw, ns)
        _, _, fs = _statics(
            shape,
            config.depthwise_tiles(config.geometry((b, h, w, c), (3, 3), (1, 1), SAME)),
            t,
            interpret,
        )
        key = f"fu:{p}x{bc}x{bco}w{nw}s{ns}"
        sweep[key] = t
        named[key] = lambda x, dw, pw, dy, fs=fs: fused.fused_conv2d(
            x, dw, pw, None, None, None, fs
        )
    exes = _compile_all(named, sets, args.workers)
    times = {}
    for name, exe in exes.items():
        if isinstance(exe, Exception):
            times[name] = None
            sweep_rows.append((shape, name, "—", f"{type(exe).__name__}: {str(exe)[:120]}"))
            continue
        times[name] = _time(exe, sets, args.budget).median_ms
        common.log(f"  {name}: {times[name]:.4f} ms")
        if name in sweep:
            sweep_rows.append((shape, name, common.fmt(times[name]), ""))
    row["xla_dw"], row["xla_sep"] = times["xla_dw"], times["xla_sep"]
    best = {}
    for kind in ("dw", "fu"):
        ok = {k: v for k, v in times.items() if k.startswith(kind + ":") and v is not None}
        best[kind] = min(ok, key=ok.get) if ok else None
        row[f"best_{kind}"] = best[kind]
        row[f"pallas_{kind}"] = ok[best[kind]] if ok else None
    del exes
    # fwd+bwd with the best tiles; errors of the timed kernels against XLA HIGHEST in float32.
    if best["dw"] and best["fu"]:
        _, ds, fs = _statics(shape, sweep[best["dw"]], sweep[best["fu"]], interpret)
        fb = {
            "xla_fb": fwdbwd(xla_sep),
            "pallas_fb": fwdbwd(
                lambda x, dw, pw: fused.fused_conv2d(x, dw, pw, None, None, None, fs)
            ),
        }
        exes = _compile_all(fb, sets, 2)
        for name, exe in exes.items():
            row[name] = (
                None if isinstance(exe, Exception) else _time(exe, sets, args.budget).median_ms
            )
        x, dw, pw, _ = sets[0]
        f32 = [a.astype(jnp.float32) for a in (x, dw, pw)]
        hi = jax.lax.Precision.HIGHEST
        ref_h = jax.jit(lambda a, k: reference.depthwise(a, k, (1, 1), SAME, hi))(*f32[:2])
        ref_y = jax.jit(
            lambda a, k, p: reference.fused(a, k, p, None, None, None, None, (1, 1), SAME, hi)
        )(*f32)
        row["err_dw"] = rel_err(
            jax.jit(lambda a, k: depthwise.depthwise_conv2d(a, k, ds))(x, dw), ref_h
        )
        row["err_fu"] = rel_err(
            jax.jit(lambda a, k, p: fused.fused_conv2d(a, k, p, None, None, None, fs))(x, dw, pw),
            ref_y,
        )
        row["err_xla_sep"] = rel_err(jax.jit(xla_sep)(x, dw, pw), ref_y)
    del sets
    if args.torch:
        tt = _torch_times(shape, n_sets, args.budget)
        row["torch_dw"], row["torch_sep"] = tt.get("dw"), tt.get("sep")
    return row


# ---------------------------------------------------------------------------------------------
# Table and command line


GPU_SHAPES = SHAPE_SETS["gpu"]  # the GPU shape set, shared with ops.py
QUICK_SHAPES = ((2, 8, 8, 32, 32),)


def _pct(floor, t):
    return "—" if t is None else f"{common.fmt(t)} ({100 * floor / t:.0f}%)"


def table(rows) -> tuple[list[str], list[list[str]]]:
    headers = [
        "B,H,W,C→Co",
        "floor dw",
        "XLA dw",
        "pallas dw (%floor)",
        "cuDNN dw",
        "floor sep",
        "XLA sep",
        "cuDNN sep",
        "pallas fused (%floor)",
        "XLA/fused",
        "cuDNN/fused",
        "XLA fwd+bwd",
        "pallas fwd+bwd",
        "err dw",
        "err fused",
        "err XLA sep",
        "tiles dw | fused",
    ]
    out = []
    for r in rows:
        b, h, w, c, co = r["shape"]
        fu = r.get("pallas_fu")

        def ratio(t, fu=fu):
            return "—" if (t is None or fu is None) else f"{t / fu:.2f}×"

        out.append(
            [
                f"{b},{h},{w},{c}→{co}",
                common.fmt(r["floor_dw"]),
                common.fmt(r.get("xla_dw")),
                _pct(r["floor_dw"], r.get("pallas_dw")),
                common.fmt(r.get("torch_dw")),
                common.fmt(r["floor_sep"]),
                common.fmt(r.get("xla_sep")),
                common.fmt(r.get("torch_sep")),
                _pct(r["floor_sep"], fu),
                ratio(r.get("xla_sep")),
                ratio(r.get("torch_sep")),
                common.fmt(r.get("xla_fb")),
                common.fmt(r.get("pallas_fb")),
                f"{r.get('err_dw', float('nan')):.1e}",
                f"{r.get('err_fu', float('nan')):.1e}",
                f"{r.get('err_xla_sep', float('nan')):.1e}",
                f"{r.get('best_dw')} | {r.get('best_fu')}",
            ]
        )
    return headers, out


TITLE = "Pallas kernels benchmark"
SWEEP_HEADERS = ["shape", "variant", "ms", "error"]


def sweep_table(sweep_rows: list) -> list[list]:
    return [[",".join(map(str, s)), n, t, e] for s, n, t, e in sweep_rows]


def results(rows: list, sweep_rows: list) -> list[tuple[str, str]]:
    """The markdown sections of the measured shapes: kernels vs XLA and cuDNN, the tile sweep."""
    return [
        (
            "Kernels vs XLA and cuDNN (3×3, stride 1, SAME, bf16; median ms)",
            common.markdown_table(*table(rows)),
        ),
        ("Tile sweep (median ms)", common.markdown_table(SWEEP_HEADERS, sweep_table(sweep_rows))),
    ]


def main(argv=None) -> int:
    common.gpu_memory(fraction=0.45)  # leave GPU memory for PyTorch in the same process
    start = time.perf_counter()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny shape, interpret mode on CPU")
    parser.add_argument("--out", default=None, help="markdown file to write")
    parser.add_argument("--budget", type=float, default=0.25, help="seconds of samples per time")
    parser.add_argument("--sweep", type=int, default=99, help="tile variants per kernel")
    parser.add_argument("--max-sets", type=int, default=8)
    parser.add_argument("--workers", type=int, default=12)
    parser.add_argument("--no-torch", dest="torch", action="store_false")
    parser.add_argument("--no-checks", dest="checks", action="store_false")
    parser.add_argument("--few-checks", action="store_true", help="2 geometries, not 8")
    parser.add_argument("--rows", default="", help="comma-separated indices into the GPU shapes")
    parser.add_argument(
        "--deadline", type=float, default=240.0, help="seconds after which shapes skip the sweep"
    )
    args = parser.parse_args(argv)
    shapes = QUICK_SHAPES if args.quick else GPU_SHAPES
    if args.rows and not args.quick:
        shapes = tuple(GPU_SHAPES[int(i)] for i in args.rows.split(","))
    if args.quick:
        args.sweep, args.max_sets, args.budget, args.torch = 1, 2, 0.0, False
    env = common.environment() + [("Pallas backend", backend.NAME)]
    bw = common.copy_bandwidth(2**30 if backend.on_gpu() else 2**24)
    env.append(("copy bandwidth (read+write)", f"{bw / 1e12:.2f} TB/s"))
    for k, v in env:
        common.log(f"{k}: {v}")
    sections = []
    if args.checks:
        check_rows = run_checks(args.quick or args.few_checks, args.workers)
        bad = [r for r in check_rows if r[-1] != "ok"]
        common.log(f"checks: {len(check_rows) - len(bad)}/{len(check_rows)} ok")
        for r in bad:
            print("CHECK FAILED", r)
        sections.append(
            (
                "Correctness checks (vs XLA, Precision.HIGHEST)",
                common.markdown_table(CHECK_HEADERS, check_rows),
            )
        )
    rows, sweep_rows = [], []
    for shape in shapes:
        t0 = time.perf_counter()
        if t0 - start > args.deadline:
            args.sweep, args.torch = 1, False
            common.log("deadline passed: first tiles only, no PyTorch")
        rows.append(measure_shape(shape, bw, args, sweep_rows))
        common.log(f"{shape}: {time.perf_counter() - t0:.0f} s {rows[-1]}")
        if args.out:  # after every shape, so a run cut short still leaves its rows
            common.write_markdown(
                args.out,
                title=TITLE,
                command=common.command_line("benchmarks.kernels"),
                env=env,
                sections=sections + results(rows, sweep_rows),
            )
    common.finish(
        args.out,
        module="benchmarks.kernels",
        title=TITLE,
        env=env,
        start=start,
        sections=sections + results(rows, sweep_rows),
        headline="3×3, stride 1, SAME, bf16; median ms",
        tables=[(SWEEP_HEADERS, sweep_table(sweep_rows)), table(rows)],
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
