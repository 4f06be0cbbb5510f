"""Op-level benchmark: 3×3 depthwise, separable (dw+pw) and full convs in XLA, Flax and PyTorch.

Run from the repository root:

    python -m benchmarks.ops --quick                 # seconds, proves the script runs (CI)
    python -m benchmarks.ops --cpu-small             # a few minutes on a laptop CPU
    python -m benchmarks.ops --out $OUT/ops.md       # the GPU set (about 4 minutes on an H100)

Every row: median ms and interquartile spread over input sets rotated so that nothing is served
from cache, achieved GB/s and % of the bandwidth floor (one read of every input, one write of
every output, at the copy bandwidth measured in the same run), FLOPs, and the time over the full
3×3 conv of the same framework that the separable conv replaces.

This file is the driver and command line; the problems (shapes, bytes, FLOPs) are in
`op_problems.py`, the contenders and their inputs in `op_contenders.py`, the tables in
`op_tables.py`.
"""

from __future__ import annotations

import os

# Leave GPU memory for PyTorch in the same process (JAX takes 75% by default).
os.environ.setdefault("XLA_PYTHON_CLIENT_MEM_FRACTION", "0.45")

import argparse  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable, Sequence  # noqa: E402

if __package__ in (None, ""):  # `python benchmarks/ops.py`: make the repo importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402

from benchmarks import common  # noqa: E402
from benchmarks.op_contenders import (  # noqa: E402
    CONTENDER_ORDER,
    GPU_ONLY_BY_DEFAULT,
    JAX_CONTENDERS,
    fwdbwd,
    jax_inputs,
    torch_fn,
    torch_inputs,
    torch_setup,
)
from benchmarks.op_problems import (  # noqa: E402
    DTYPES,
    OPS,
    SHAPE_SETS,
    Problem,
)
from benchmarks.op_tables import Row, detail_table, summary_table  # noqa: E402


def run(args: argparse.Namespace) -> list[Row]:
    """Measures every (shape, dtype, pass, op, contender) and returns the rows."""
    gpu = common.on_gpu()
    torch = torch_setup() if "torch" in args.contenders else None
    torch_device = None
    if torch is not None:
        torch_device = "cuda" if torch.cuda.is_available() else "cpu"
        if gpu and torch_device == "cpu":
            torch = None  # a CPU PyTorch against a GPU JAX says nothing
    contenders = list(args.contenders)
    if "torch" in contenders and torch is None:
        contenders.remove("torch")
        common.log("torch: not importable (or no CUDA beside a GPU JAX); contender skipped")
    args.contenders = contenders

    problems = [
        Problem(op, shape, dtype, passes)
        for dtype in args.dtype
        for passes in args.passes
        for shape in args.shapes
        for op in OPS
    ]
    plan = []
    for p in problems:
        for name in CONTENDER_ORDER:
            if name not in contenders:
                continue
            if name == "torch" or (p.op, name) in JAX_CONTENDERS:
                plan.append((p, name))
    budget = common.Budget(args.budget_s, len(plan))
    cache = common.L2_BYTES if gpu else 32 * 2**20
    max_sets = 2 if args.quick else args.max_sets
    rows: list[Row] = []
    start = time.perf_counter()
    seed = 0
    for p in problems:
        todo = [name for q, name in plan if q == p]
        if not todo:
            continue
        n = common.num_sets(p.bytes_per_set(), max_sets=max_sets, cache_bytes=cache)
        seed += 1
        jax_sets = None
        for name in todo:
            row = Row(p, name)
            if time.perf_counter() - start > args.time_limit_s:
                row.error = f"skipped: --time-limit-s {args.time_limit_s:.0f}"
                rows.append(row)
                continue
            slice_s = 0.0 if args.quick else budget.next_row()
            min_s, max_s = (2, 2) if args.quick else (3, args.max_samples)
            try:
                if name == "torch":
                    sets = torch_inputs(torch, p, n, torch_device)
                    row.timing = common.time_torch(
                        torch_fn(torch, p),
                        sets,
                        budget_s=slice_s,
                        min_samples=min_s,
                        max_samples=max_s,
                    )
                    del sets
                else:
                    if jax_sets is None:
                        jax_sets = jax_inputs(p, n, seed)
                    fn = JAX_CONTENDERS[(p.op, name)]
                    fn = fn if p.passes == "fwd" else fwdbwd(fn)
                    row.timing = common.time_jax(
                        fn,
                        jax_sets,
                        budget_s=slice_s,
                        min_samples=min_s,
                        max_samples=max_s,
                        per_call=p.passes == "fwdbwd" or not gpu,
                    )
            except Exception as err:  # noqa: BLE001 - one failing contender must not end the table
                row.error = common.short_error(err, limit=160)
            rows.append(row)
            status = f"{row.timing.median_ms:.4f} ms" if row.timing else f"FAILED {row.error}"
            common.log(
                f"[{time.perf_counter() - start:6.1f}s] {p.dtype:8s} {p.passes:6s} {p.label:22s} "
                f"{p.op:4s} {name:6s} {status}"
            )
        del jax_sets
    return rows


def _parse_shapes(text: str) -> tuple[tuple[int, int, int, int, int], ...]:
    if text in SHAPE_SETS:
        return SHAPE_SETS[text]
    shapes = []
    for item in text.split(","):
        parts = item.strip().lower().replace("->", "x").split("x")
        if len(parts) != 5 or not all(s.isdigit() for s in parts):
            raise argparse.ArgumentTypeError(
                f"--shapes entries must look like 256x32x32x128x128 (B,H,W,C,Co), got {item!r}"
            )
        shapes.append(tuple(int(s) for s in parts))
    return tuple(shapes)


def _parse_list(allowed: Sequence[str], name: str) -> Callable[[str], list[str]]:
    def parse(text: str) -> list[str]:
        items = [s.strip() for s in text.split(",") if s.strip()]
        bad = [s for s in items if s not in allowed]
        if bad or not items:
            raise argparse.ArgumentTypeError(f"{name} must be from {list(allowed)}, got {text!r}")
        return items

    return parse


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny shape, 2 samples (CI)")
    parser.add_argument(
        "--cpu-small", action="store_true", help="the small shape set, for a CPU run"
    )
    parser.add_argument(
        "--shapes",
        type=_parse_shapes,
        default=None,
        help=f"a set name {list(SHAPE_SETS)} or 'BxHxWxCxCo,...' (default: gpu)",
    )
    parser.add_argument("--dtype", type=_parse_list(list(DTYPES), "--dtype"), default=list(DTYPES))
    parser.add_argument(
        "--passes", type=_parse_list(["fwd", "fwdbwd"], "--passes"), default=["fwd", "fwdbwd"]
    )
    parser.add_argument(
        "--contenders",
        type=_parse_list(CONTENDER_ORDER, "--contenders"),
        default=None,
        help="subset of auto,xla,taps,pallas,flax,torch (default: all; taps, pallas on GPU only)",
    )
    parser.add_argument("--out", default=None, help="markdown path (default under results/)")
    parser.add_argument(
        "--budget-s",
        type=float,
        default=None,
        help="wall-clock seconds to share among the rows' timed samples (default 150 on GPU)",
    )
    parser.add_argument(
        "--time-limit-s",
        type=float,
        default=420.0,
        help="start no row after this many seconds (default 420: one device call)",
    )
    parser.add_argument("--max-samples", type=int, default=30)
    parser.add_argument("--max-sets", type=int, default=None, help="cap on rotated input sets")
    args = parser.parse_args(argv)
    gpu = common.on_gpu()
    if args.shapes is None:
        args.shapes = SHAPE_SETS[
            "quick" if args.quick else "cpu-small" if args.cpu_small or not gpu else "gpu"
        ]
    if args.contenders is None:
        args.contenders = [c for c in CONTENDER_ORDER if gpu or c not in GPU_ONLY_BY_DEFAULT]
    if args.budget_s is None:
        args.budget_s = 150.0 if gpu else 60.0
    if args.max_sets is None:
        args.max_sets = 16 if gpu else 4
    if args.out is None and not args.quick:
        args.out = str(common.RESULTS_DIR / f"ops_{jax.default_backend()}.md")
    return args


def main(argv: Sequence[str] | None = None) -> list[Row]:
    args = parse_args(argv)
    t0 = time.perf_counter()
    env = common.environment()
    bandwidth = common.copy_bandwidth(8 * 2**20 if args.quick else None)
    common.log(f"copy bandwidth {bandwidth / 1e9:.0f} GB/s (read + write)")
    rows = run(args)
    env.append(("copy bandwidth (read + write)", f"{bandwidth / 1e9:.0f} GB/s"))
    env.append(("wall time", f"{time.perf_counter() - t0:.0f} s"))
    sh, srows = summary_table(rows, bandwidth, args.contenders)
    dh, drows = detail_table(rows, bandwidth)
    errors = [
        f"- {r.problem.op} {r.contender} {r.problem.label} {r.problem.dtype} "
        f"{r.problem.passes}: {r.error}"
        for r in rows
        if r.error
    ]
    legend = (
        "Median ms per call; in brackets the % of the bandwidth floor (dw floor for the dw "
        "columns, the separable conv's own floor for sep). `auto` = sepconv_jax's default "
        "(implementation='auto': on a CPU the sum over window taps); `xla` = sepconv_jax ops with "
        "implementation='xla' (dw, sep) and lax.conv = flax.linen.Conv (full); `taps` = "
        "implementation='taps' (the sum over taps on any backend); `pallas` = "
        "implementation='pallas'; `flax` = nn.Conv(feature_group_count=C) + nn.Dense; `torch` = "
        "F.conv2d(groups=C) + 1×1 conv, channels_last, cudnn.benchmark, eager. The `dw floor` "
        "column is the depthwise conv's floor in ms."
    )
    if args.out:
        path = common.write_markdown(
            args.out,
            title="sepconv_jax op benchmark: 3×3 depthwise, separable and full convs (NHWC)",
            command=common.command_line("benchmarks.ops"),
            env=env,
            sections=[
                ("Summary", legend + "\n\n" + common.markdown_table(sh, srows)),
                ("All rows", common.markdown_table(dh, drows)),
                ("Errors", "\n".join(errors) or "none"),
            ],
        )
        common.log(f"wrote {path}")
    device = dict(env)["device"]
    print(f"\ncopy bandwidth {bandwidth / 1e9:.0f} GB/s; {device}; median ms (% of floor)")
    print(common.text_table(sh, srows))
    failed = [r for r in rows if r.error and not r.error.startswith("skipped")]
    skipped = sum(1 for r in rows if r.error.startswith("skipped"))
    if skipped:
        print(f"{skipped} row(s) skipped: --time-limit-s reached")
    if failed:
        print(f"{len(failed)} row(s) failed; distinct errors:")
        seen: dict[str, int] = {}
        for r in failed:
            seen[f"{r.contender}: {r.error}"] = seen.get(f"{r.contender}: {r.error}", 0) + 1
        for msg, count in list(seen.items())[:8]:
            print(f"  {count}× {msg}")
    return rows


if __name__ == "__main__":
    main()
