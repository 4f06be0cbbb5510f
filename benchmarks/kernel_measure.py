"""Times the Pallas kernels, XLA and cuDNN at one benchmark shape: tile sweep, fwd+bwd, errors."""

from __future__ import annotations

import concurrent.futures
import math
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import common
from benchmarks.kernel_checks import rel_err
from benchmarks.op_contenders import fwdbwd
from sepconv_jax import _args
from sepconv_jax.kernels import backend, config, depthwise, fused, reference
from sepconv_jax.kernels.config import Tiles

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
    return common.Timing(tuple(common._samples(once, budget_s, 5, 30)), len(sets))


def copy_bandwidth(nbytes: int) -> float:
    """Bytes/s of `x + 1` over `nbytes` of float32, read + write, timed like the kernels."""
    x = jax.random.normal(jax.random.key(0), (nbytes // 4,), jnp.float32)
    exe = jax.jit(lambda sets: [a + jnp.ones((), jnp.float32) for (a,) in sets]).lower([(x,)])
    t = _time(exe.compile(), [(x,)], 0.3)
    return 2 * nbytes / (float(np.median(t.samples_s)))


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
