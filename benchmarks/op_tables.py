"""The op benchmark's result rows and the summary and detail tables built from them."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from benchmarks import common
from benchmarks.op_contenders import CONTENDER_ORDER, JAX_CONTENDERS
from benchmarks.op_problems import OPS, Problem


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
