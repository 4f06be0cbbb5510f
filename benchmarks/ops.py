"""Op-level benchmark: 3×3 depthwise, separable (dw+pw) and full convs in XLA, Flax and PyTorch.

Run from the repository root:

    python -m benchmarks.ops --quick                 # seconds, proves the script runs (CI)
    python -m benchmarks.ops --cpu-small             # a few minutes on a laptop CPU
    python -m benchmarks.ops                         # on a GPU: the GPU set (≈ 4 min on an H100)

Every row: median ms and interquartile spread over input sets rotated so that nothing is served
from cache, achieved GB/s and % of the bandwidth floor (one read of every input, one write of
every output, at the copy bandwidth measured in the same run), FLOPs, and the time over the full
3×3 conv of the same framework that the separable conv replaces.

This file reads top to bottom: the result rows and their tables, the measuring loop, the command
line. What is measured (shapes, bytes, FLOPs) and the contenders with their inputs are in
`op_contenders.py`.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from collections.abc import Callable, Sequence

import jax

from benchmarks import common
from benchmarks.op_contenders import (
    CONTENDER_ORDER,
    DTYPES,
    GPU_ONLY_BY_DEFAULT,
    JAX_CONTENDERS,
    OPS,
    SHAPE_SETS,
    Problem,
    fwdbwd,
    jax_inputs,
    torch_fn,
    torch_inputs,
    torch_setup,
)

# ---------------------------------------------------------------------------------------------
# Result rows and tables


@dataclasses.dataclass
class Row:
    """One (problem, contender) measured: its timing, or the error that stopped it."""

    problem: Problem
    contender: str
    timing: common.Timing | None = None
    error: str = ""


def _find(rows: Sequence[Row], problem: Problem, contender: str) -> Row | None:
    for r in rows:
        if r.problem == problem and r.contender == contender:
            return r
    return None


def _full_ratio(rows: Sequence[Row], row: Row) -> float | None:
    """Median over the full 3×3 conv's median, same framework (torch vs torch, JAX vs XLA)."""
    ref_name = "torch" if row.contender == "torch" else "xla"
    full = _find(rows, dataclasses.replace(row.problem, op="full"), ref_name)
    if row.timing is None or full is None or full.timing is None:
        return None
    return row.timing.median_ms / full.timing.median_ms


def detail_table(rows: Sequence[Row], bandwidth: float) -> tuple[list[str], list[list[str]]]:
    headers = [
        "op",
        "contender",
        "B×H×W×C→Co",
        "dtype",
        "pass",
        "median ms",
        "IQR %",
        "samples×sets",
        "GB/s",
        "floor ms",
        "% of floor",
        "GFLOP",
        "TFLOP/s",
        "t / full",
    ]
    out = []
    for r in rows:
        p = r.problem
        floor_ms = 1e3 * p.floor_bytes() / bandwidth
        flops = p.flops()
        if r.timing is None:
            status = "skipped" if r.error.startswith("skipped") else "error"
            cells = [status, "—", "—", "—", common.fmt(floor_ms), "—", fmt_g(flops), "—", "—"]
        else:
            t = r.timing.median_ms
            cells = [
                f"{t:.4f}",
                f"{r.timing.spread_pct:.1f}",
                f"{r.timing.n}×{r.timing.sets}",
                common.fmt(p.floor_bytes() / (t * 1e-3) / 1e9),
                common.fmt(floor_ms),
                f"{100 * floor_ms / t:.0f}",
                fmt_g(flops),
                common.fmt(flops / (t * 1e-3) / 1e12),
                common.fmt(_full_ratio(rows, r), 2),
            ]
        out.append([p.op, r.contender, p.label, p.dtype, p.passes, *cells])
    return headers, out


def fmt_g(flops: int) -> str:
    return common.fmt(flops / 1e9)


def summary_table(
    rows: Sequence[Row], bandwidth: float, contenders: Sequence[str]
) -> tuple[list[str], list[list[str]]]:
    """One line per (dtype, pass, shape): median ms of every contender, % of floor for dw/sep."""
    groups: list[Problem] = []
    for r in rows:
        key = dataclasses.replace(r.problem, op="dw")
        if key not in groups:
            groups.append(key)
    cols = [
        (op, name)
        for op in OPS
        for name in CONTENDER_ORDER
        if name in contenders and (name == "torch" or (op, name) in JAX_CONTENDERS)
    ]
    headers = ["dtype", "pass", "B×H×W×C→Co", "dw floor"]
    headers += [f"{op}:{name}" for op, name in cols]
    out = []
    for g in groups:
        floor = 1e3 * g.floor_bytes() / bandwidth
        line = [g.dtype, g.passes, dataclasses.replace(g, op="sep").label, common.fmt(floor)]
        for op, name in cols:
            p = dataclasses.replace(g, op=op)
            r = _find(rows, p, name)
            if r is None or r.timing is None:
                if r is None:
                    line.append("—")
                else:
                    line.append("skipped" if r.error.startswith("skipped") else "error")
                continue
            t = r.timing.median_ms
            cell = f"{t:.3f}"
            if op != "full":
                cell += f" ({100 * 1e3 * p.floor_bytes() / bandwidth / t:.0f}%)"
            line.append(cell)
        out.append(line)
    return headers, out


# ---------------------------------------------------------------------------------------------
# Measuring


def plan(args: argparse.Namespace) -> list[tuple[Problem, list[str]]]:
    """Every problem (dtype, then pass, shape, op in the order given) and its contenders."""
    problems = [
        Problem(op, shape, dtype, passes)
        for dtype in args.dtype
        for passes in args.passes
        for shape in args.shapes
        for op in OPS
    ]
    out = []
    for p in problems:
        names = [
            name
            for name in CONTENDER_ORDER
            if name in args.contenders and (name == "torch" or (p.op, name) in JAX_CONTENDERS)
        ]
        if names:
            out.append((p, names))
    return out


def torch_or_skip(args: argparse.Namespace) -> tuple[object | None, str | None]:
    """PyTorch and its device for the `torch` contender, or `(None, None)` (then dropped)."""
    torch = torch_setup() if "torch" in args.contenders else None
    device = None
    if torch is not None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
        if common.on_gpu() and device == "cpu":
            torch = None  # a CPU PyTorch against a GPU JAX says nothing
    if "torch" in args.contenders and torch is None:
        args.contenders = [c for c in args.contenders if c != "torch"]
        common.log("torch: not importable (or no CUDA beside a GPU JAX); contender skipped")
    return torch, device


def run(args: argparse.Namespace) -> list[Row]:
    """Measures every (shape, dtype, pass, op, contender) and returns the rows.

    Rows share `--budget-s` for their timed samples; no row starts after `--time-limit-s`. One
    failing contender is a row with its error, not the end of the table.
    """
    torch, torch_device = torch_or_skip(args)
    todo = plan(args)
    budget = common.Budget(args.budget_s, sum(len(names) for _, names in todo))
    cache = common.L2_BYTES if common.on_gpu() else 32 * 2**20
    min_s, max_s = (2, 2) if args.quick else (3, args.max_samples)
    rows: list[Row] = []
    start = time.perf_counter()
    for seed, (p, names) in enumerate(todo, start=1):
        n = common.num_sets(p.bytes_per_set(), max_sets=args.max_sets, cache_bytes=cache)
        jax_sets = None  # made once per problem, shared by its JAX contenders
        for name in names:
            row = Row(p, name)
            rows.append(row)
            if time.perf_counter() - start > args.time_limit_s:
                row.error = f"skipped: --time-limit-s {args.time_limit_s:.0f}"
                continue
            timing = dict(
                budget_s=0.0 if args.quick else budget.next_row(),
                min_samples=min_s,
                max_samples=max_s,
            )
            try:
                if name == "torch":
                    sets = torch_inputs(torch, p, n, torch_device)
                    row.timing = common.time_torch(torch_fn(torch, p), sets, **timing)
                    del sets
                else:
                    if jax_sets is None:
                        jax_sets = jax_inputs(p, n, seed)
                    fn = JAX_CONTENDERS[(p.op, name)]
                    fn = fn if p.passes == "fwd" else fwdbwd(fn)
                    row.timing = common.time_jax(
                        fn, jax_sets, per_call=p.passes == "fwdbwd" or not common.on_gpu(), **timing
                    )
            except Exception as err:  # noqa: BLE001 - one failing contender must not end the table
                row.error = common.short_error(err, limit=160)
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
        args.max_sets = 2 if args.quick else 16 if gpu else 4
    if args.out is None and not args.quick:
        args.out = str(common.RESULTS_DIR / f"ops_{jax.default_backend()}.md")
    return args


LEGEND = (
    "Median ms per call; in brackets the % of the bandwidth floor (dw floor for the dw "
    "columns, the separable conv's own floor for sep). `auto` = sepconv_jax's default "
    "(implementation='auto': on a CPU the sum over window taps); `xla` = sepconv_jax ops with "
    "implementation='xla' (dw, sep) and lax.conv = flax.linen.Conv (full); `taps` = "
    "implementation='taps' (the sum over taps on any backend); `pallas` = "
    "implementation='pallas'; `flax` = nn.Conv(feature_group_count=C) + nn.Dense; `torch` = "
    "F.conv2d(groups=C) + 1×1 conv, channels_last, cudnn.benchmark, eager. The `dw floor` "
    "column is the depthwise conv's floor in ms."
)


def error_notes(rows: Sequence[Row]) -> list[str]:
    """Printed after the table: how many rows were skipped, and the distinct errors."""
    failed = [r for r in rows if r.error and not r.error.startswith("skipped")]
    skipped = sum(1 for r in rows if r.error.startswith("skipped"))
    notes = [f"{skipped} row(s) skipped: --time-limit-s reached"] if skipped else []
    if failed:
        notes.append(f"{len(failed)} row(s) failed; distinct errors:")
        seen: dict[str, int] = {}
        for r in failed:
            seen[f"{r.contender}: {r.error}"] = seen.get(f"{r.contender}: {r.error}", 0) + 1
        notes += [f"  {count}× {msg}" for msg, count in list(seen.items())[:8]]
    return notes


def main(argv: Sequence[str] | None = None) -> list[Row]:
    common.gpu_memory(fraction=0.45)  # leave GPU memory for PyTorch in the same process
    start = time.perf_counter()
    args = parse_args(argv)
    env = common.environment()
    bandwidth = common.copy_bandwidth(8 * 2**20 if args.quick else None)
    common.log(f"copy bandwidth {bandwidth / 1e9:.0f} GB/s (read + write)")
    rows = run(args)
    env.append(("copy bandwidth (read + write)", f"{bandwidth / 1e9:.0f} GB/s"))
    summary = summary_table(rows, bandwidth, args.contenders)
    errors = [
        f"- {r.problem.op} {r.contender} {r.problem.label} {r.problem.dtype} "
        f"{r.problem.passes}: {r.error}"
        for r in rows
        if r.error
    ]
    common.finish(
        args.out,
        module="benchmarks.ops",
        title="sepconv_jax op benchmark: 3×3 depthwise, separable and full convs (NHWC)",
        env=env,
        start=start,
        sections=[
            ("Summary", LEGEND + "\n\n" + common.markdown_table(*summary)),
            ("All rows", common.markdown_table(*detail_table(rows, bandwidth))),
            ("Errors", "\n".join(errors) or "none"),
        ],
        headline=f"copy bandwidth {bandwidth / 1e9:.0f} GB/s; median ms (% of floor)",
        tables=[summary],
        notes=error_notes(rows),
    )
    return rows


if __name__ == "__main__":
    main()
