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

This file is the command line and the tables; the timing of one shape is in `kernel_measure.py`,
the correctness checks in `kernel_checks.py`.
"""

from __future__ import annotations

import os

os.environ.setdefault("XLA_PYTHON_CLIENT_MEM_FRACTION", "0.45")  # leave room for PyTorch

import argparse  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import common  # noqa: E402
from benchmarks.kernel_checks import CHECK_HEADERS, run_checks  # noqa: E402
from benchmarks.kernel_measure import copy_bandwidth, measure_shape  # noqa: E402
from benchmarks.op_problems import SHAPE_SETS  # noqa: E402
from sepconv_jax.kernels import backend  # noqa: E402

GPU_SHAPES = SHAPE_SETS["gpu"]  # the benchmarks issue's shapes, shared with ops.py
QUICK_SHAPES = ((2, 8, 8, 32, 32),)
START = time.perf_counter()


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


def main(argv=None) -> int:
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
    bw = copy_bandwidth(2**30 if backend.on_gpu() else 2**24)
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
        if t0 - START > args.deadline:
            args.sweep, args.torch = 1, False
            common.log("deadline passed: first tiles only, no PyTorch")
        rows.append(measure_shape(shape, bw, args, sweep_rows))
        common.log(f"{shape}: {time.perf_counter() - t0:.0f} s {rows[-1]}")
        headers, body = table(rows)
        sweep_body = [[",".join(map(str, s)), n, t, e] for s, n, t, e in sweep_rows]
        results = [
            ("Kernels vs XLA and cuDNN (3×3, stride 1, SAME, bf16; median ms)",
             common.markdown_table(headers, body)),
            ("Tile sweep (median ms)",
             common.markdown_table(["shape", "variant", "ms", "error"], sweep_body)),
        ]  # fmt: skip
        if args.out:  # after every shape, so a run cut short still leaves its rows
            common.write_markdown(
                args.out,
                title="Pallas kernels benchmark",
                command=common.command_line("benchmarks.kernels"),
                env=env,
                sections=sections + results,
            )
    print(common.text_table(["shape", "variant", "ms", "error"], sweep_body))
    print(common.text_table(headers, body))
    return 0


if __name__ == "__main__":
    sys.exit(main())
