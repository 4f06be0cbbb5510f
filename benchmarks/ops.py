"""Op-level benchmark: 3×3 depthwise, separable (dw+pw) and full convs in XLA, Flax and PyTorch.

Run from the repository root:

    python -m benchmarks.ops --quick                 # seconds, proves the script runs (CI)
    python -m benchmarks.ops --cpu-small             # a few minutes on a laptop CPU
    python -m benchmarks.ops --out $OUT/ops.md       # the GPU set (about 4 minutes on an H100)

Every row: median ms and interquartile spread over input sets rotated so that nothing is served
from cache, achieved GB/s and % of the bandwidth floor (one read of every input, one write of
every output, at the copy bandwidth measured in the same run), FLOPs, and the time over the full
3×3 conv of the same framework that the separable conv replaces.
"""

from __future__ import annotations

import os

# Leave GPU memory for PyTorch in the same process (JAX takes 75% by default).
os.environ.setdefault("XLA_PYTHON_CLIENT_MEM_FRACTION", "0.45")

import argparse  # noqa: E402
import dataclasses  # noqa: E402
import math  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable, Sequence  # noqa: E402
from typing import Any  # noqa: E402

if __package__ in (None, ""):  # `python benchmarks/ops.py`: make the repo importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from flax import linen as nn  # noqa: E402
from jax import lax  # noqa: E402

import sepconv_jax as sj  # noqa: E402
from benchmarks import common  # noqa: E402
from sepconv_jax import cost  # noqa: E402

KERNEL = 3
#: (B, H, W, C, C_out) per named set; 3×3, stride 1, SAME padding throughout.
SHAPE_SETS: dict[str, tuple[tuple[int, int, int, int, int], ...]] = {
    "gpu": (
        (256, 32, 32, 128, 128),
        (256, 16, 16, 256, 256),
        (256, 8, 8, 512, 512),
        (128, 56, 56, 128, 128),
        (128, 28, 28, 256, 256),
        (128, 14, 14, 512, 512),
        (128, 7, 7, 1024, 1024),
    ),
    "cpu-small": ((16, 32, 32, 32, 32), (16, 16, 16, 64, 64), (8, 8, 8, 128, 128)),
    "quick": ((2, 8, 8, 8, 16),),
}
DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}
OPS = ("dw", "sep", "full")
OP_TITLES = {"dw": "depthwise 3×3", "sep": "separable (dw 3×3 + pw 1×1)", "full": "full 3×3"}


@dataclasses.dataclass(frozen=True)
class Problem:
    """One op at one shape, dtype and pass."""

    op: str
    shape: tuple[int, int, int, int, int]
    dtype: str
    passes: str  # "fwd" or "fwdbwd"

    @property
    def label(self) -> str:
        return "×".join(map(str, self.shape[:3])) + f"×{self.shape[3]}→{self.shape[4]}"

    @property
    def out_channels(self) -> int:
        return self.shape[3] if self.op == "dw" else self.shape[4]

    def weight_shapes(self) -> list[tuple[int, ...]]:
        """Kernel shapes in sepconv_jax's layout: dw `(3,3,1,C)`, pw `(C,Co)`, full `(3,3,C,Co)`."""
        _, _, _, c, co = self.shape
        if self.op == "dw":
            return [(KERNEL, KERNEL, 1, c)]
        if self.op == "sep":
            return [(KERNEL, KERNEL, 1, c), (c, co)]
        return [(KERNEL, KERNEL, c, co)]

    def floor_bytes(self) -> int:
        """Fewest bytes moved: fwd reads x and weights and writes y; bwd reads x, weights and dy
        and writes dx and dweights (intermediates of the separable conv never leave the chip)."""
        b, h, w, c, _ = self.shape
        item = np.dtype(DTYPES[self.dtype]).itemsize
        x = b * h * w * c * item
        y = b * h * w * self.out_channels * item
        wts = sum(math.prod(s) for s in self.weight_shapes()) * item
        fwd = x + wts + y
        return fwd if self.passes == "fwd" else fwd + (y + x + wts) + (x + wts)

    def fwd_flops(self) -> int:
        """Forward FLOPs (2 per multiply-add), from `sepconv_jax.cost` where it is available."""
        return _fwd_flops(self.op, self.shape)

    def flops(self) -> int:
        # Backward = grad wrt input + grad wrt weights, each as many FLOPs as the forward.
        return self.fwd_flops() * (1 if self.passes == "fwd" else 3)

    def bytes_per_set(self) -> int:
        b, h, w, c, _ = self.shape
        item = np.dtype(DTYPES[self.dtype]).itemsize
        x = b * h * w * c * item
        y = b * h * w * self.out_channels * item
        wts = sum(math.prod(s) for s in self.weight_shapes()) * item
        return x + wts + y * (2 if self.passes == "fwdbwd" else 1)


def _formula_flops(op: str, shape: tuple[int, ...]) -> int:
    """The closed form (2 FLOPs per multiply-add, padding taps counted), for checking the library."""
    b, h, w, c, co = shape
    dw = 2 * b * h * w * c * KERNEL * KERNEL
    if op == "dw":
        return dw
    if op == "sep":
        return dw + 2 * b * h * w * c * co
    return 2 * b * h * w * KERNEL * KERNEL * c * co


def _fwd_flops(op: str, shape: tuple[int, ...]) -> int:
    """Forward FLOPs from `sepconv_jax.cost` (the library's own accounting; SAME, stride 1)."""
    b, h, w, c, co = shape
    x_shape, window = (b, h, w, c), (KERNEL, KERNEL)
    if op == "dw":
        result = cost.depthwise_cost(x_shape, window)
    elif op == "sep":
        result = cost.separable_cost(x_shape, window, co)
    else:
        result = cost.full_cost(x_shape, window, co)
    return int(result.flops)


# ---------------------------------------------------------------------------------------------
# Contenders. Each JAX contender is `f(x, *weights) -> y` in sepconv_jax's layouts.


def _flax_dw(x: jax.Array, k: jax.Array) -> jax.Array:
    c = x.shape[-1]
    conv = nn.Conv(c, (KERNEL, KERNEL), feature_group_count=c, use_bias=False, dtype=x.dtype)
    return conv.apply({"params": {"kernel": k}}, x)


def _flax_sep(x: jax.Array, k: jax.Array, p: jax.Array) -> jax.Array:
    h = _flax_dw(x, k)
    dense = nn.Dense(p.shape[-1], use_bias=False, dtype=x.dtype)
    return dense.apply({"params": {"kernel": p}}, h)


def _lax_full(x: jax.Array, w: jax.Array) -> jax.Array:
    # What flax.linen.Conv lowers to: one lax.conv_general_dilated.
    return lax.conv_general_dilated(
        x, w, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
    )


JAX_CONTENDERS: dict[tuple[str, str], Callable[..., jax.Array]] = {
    ("dw", "xla"): lambda x, k: sj.depthwise_conv(x, k, implementation="xla"),
    ("dw", "pallas"): lambda x, k: sj.depthwise_conv(x, k, implementation="pallas"),
    ("dw", "flax"): _flax_dw,
    ("sep", "xla"): lambda x, k, p: sj.separable_conv(x, k, p, implementation="xla"),
    ("sep", "pallas"): lambda x, k, p: sj.separable_conv(x, k, p, implementation="pallas"),
    ("sep", "flax"): _flax_sep,
    ("full", "xla"): _lax_full,
}
TORCH_OPS = ("dw", "sep", "full")
#: Column order of the summary table; "xla" is sepconv_jax's ops (implementation="xla") for dw
#: and sep, and lax.conv (= flax.linen.Conv) for full.
CONTENDER_ORDER = ("xla", "pallas", "flax", "torch")


def pallas_available() -> bool:
    """Whether `sepconv_jax.kernels` has a real kernel.

    Without one it raises `ValueError("... not available ...")`; any other failure on this tiny
    probe is left for the rows to report (a kernel may not support every shape).
    """
    x = jnp.ones((1, 8, 8, 8), jnp.float32)
    try:
        jax.block_until_ready(
            sj.separable_conv(x, jnp.ones((3, 3, 1, 8)), jnp.ones((8, 8)), implementation="pallas")
        )
    except ValueError as err:
        return "not available" not in str(err)
    except Exception:  # noqa: BLE001
        return True
    return True


def _fwdbwd(f: Callable[..., jax.Array]) -> Callable[..., Any]:
    """`(x, *weights, dy) -> (y, (dx, *dweights))`: the forward is kept, as in training."""

    def run(x: jax.Array, *rest: jax.Array) -> Any:
        *weights, dy = rest
        y, pullback = jax.vjp(f, x, *weights)
        return y, pullback(dy)

    return run


def _jax_sets(problem: Problem, n: int, seed: int) -> list[tuple[jax.Array, ...]]:
    dtype = DTYPES[problem.dtype]
    b, h, w, c, _ = problem.shape
    sets = []
    key = jax.random.key(seed)
    for _ in range(n):
        key, *ks = jax.random.split(key, 5)
        x = jax.random.normal(ks[0], (b, h, w, c), jnp.float32).astype(dtype)
        arrays = [x]
        for i, s in enumerate(problem.weight_shapes()):
            fan_in = math.prod(s[:-1])
            scale = jnp.asarray(1.0 / math.sqrt(fan_in), jnp.float32)
            arrays.append((jax.random.normal(ks[1 + i], s, jnp.float32) * scale).astype(dtype))
        if problem.passes == "fwdbwd":
            y_shape = (b, h, w, problem.out_channels)
            arrays.append(jax.random.normal(ks[3], y_shape, jnp.float32).astype(dtype))
        sets.append(tuple(arrays))
    return sets


# ---------------------------------------------------------------------------------------------
# PyTorch: conv2d(groups=C) + 1×1 conv, channels_last, cudnn.benchmark, TF32 allowed in float32
# (XLA's DEFAULT precision uses TF32 on this GPU too).


def _torch_setup() -> Any:
    torch = common.torch_or_none()
    if torch is None:
        return None
    torch.backends.cudnn.benchmark = True
    torch.backends.cudnn.allow_tf32 = True
    torch.backends.cuda.matmul.allow_tf32 = True
    return torch


def _torch_fn(torch: Any, problem: Problem) -> Callable[..., Any]:
    functional = torch.nn.functional
    c = problem.shape[3]

    def fwd(x, *ws):
        if problem.op == "dw":
            return functional.conv2d(x, ws[0], padding=1, groups=c)
        if problem.op == "sep":
            return functional.conv2d(functional.conv2d(x, ws[0], padding=1, groups=c), ws[1])
        return functional.conv2d(x, ws[0], padding=1)

    if problem.passes == "fwd":

        def run_fwd(x, *ws):
            with torch.no_grad():
                return fwd(x, *ws)

        return run_fwd

    def run_fwdbwd(x, *rest):
        *ws, dy = rest
        y = fwd(x, *ws)
        return y, torch.autograd.grad(y, (x, *ws), dy)

    return run_fwdbwd


def _torch_sets(torch: Any, problem: Problem, n: int, device: str) -> list[tuple[Any, ...]]:
    dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16}[problem.dtype]
    b, h, w, c, co = problem.shape
    cl = torch.channels_last
    grad = problem.passes == "fwdbwd"
    shapes = {"dw": [(c, 1, 3, 3)], "sep": [(c, 1, 3, 3), (co, c, 1, 1)], "full": [(co, c, 3, 3)]}
    sets = []
    for _ in range(n):
        x = torch.randn(b, c, h, w, device=device, dtype=dtype).to(memory_format=cl)
        arrays = [x.requires_grad_(grad)]
        for s in shapes[problem.op]:
            wt = torch.randn(*s, device=device, dtype=dtype) / math.sqrt(math.prod(s[1:]))
            arrays.append(wt.to(memory_format=cl).requires_grad_(grad))
        if grad:
            dy = torch.randn(b, problem.out_channels, h, w, device=device, dtype=dtype)
            arrays.append(dy.to(memory_format=cl))
        sets.append(tuple(arrays))
    return sets


# ---------------------------------------------------------------------------------------------
# Driver


@dataclasses.dataclass
class Row:
    problem: Problem
    contender: str
    timing: common.Timing | None = None
    error: str = ""


def _short_error(err: BaseException) -> str:
    text = f"{type(err).__name__}: {err}".splitlines()[0]
    return text[:160]


def run(args: argparse.Namespace) -> list[Row]:
    """Measures every (shape, dtype, pass, op, contender) and returns the rows."""
    gpu = common.on_gpu()
    torch = _torch_setup() if "torch" in args.contenders else None
    torch_device = None
    if torch is not None:
        torch_device = "cuda" if torch.cuda.is_available() else "cpu"
        if gpu and torch_device == "cpu":
            torch = None  # a CPU PyTorch against a GPU JAX says nothing
    contenders = list(args.contenders)
    if "pallas" in contenders and not pallas_available():
        contenders.remove("pallas")
        common.log("pallas: no kernel in sepconv_jax.kernels; contender skipped")
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
                    sets = _torch_sets(torch, p, n, torch_device)
                    row.timing = common.time_torch(
                        _torch_fn(torch, p),
                        sets,
                        budget_s=slice_s,
                        min_samples=min_s,
                        max_samples=max_s,
                    )
                    del sets
                else:
                    if jax_sets is None:
                        jax_sets = _jax_sets(p, n, seed)
                    fn = JAX_CONTENDERS[(p.op, name)]
                    fn = fn if p.passes == "fwd" else _fwdbwd(fn)
                    row.timing = common.time_jax(
                        fn, jax_sets, budget_s=slice_s, min_samples=min_s, max_samples=max_s
                    )
            except Exception as err:  # noqa: BLE001 - one failing contender must not end the table
                row.error = _short_error(err)
            rows.append(row)
            status = f"{row.timing.median_ms:.4f} ms" if row.timing else f"FAILED {row.error}"
            common.log(
                f"[{time.perf_counter() - start:6.1f}s] {p.dtype:8s} {p.passes:6s} {p.label:22s} "
                f"{p.op:4s} {name:6s} {status}"
            )
        del jax_sets
    return rows


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
        help="subset of xla,pallas,flax,torch (default: all that run here; pallas on GPU only)",
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
        args.contenders = [c for c in CONTENDER_ORDER if gpu or c != "pallas"]
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
        "columns, the separable conv's own floor for sep). `xla` = sepconv_jax ops with "
        "implementation='xla' (dw, sep) and lax.conv = flax.linen.Conv (full); `pallas` = "
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
