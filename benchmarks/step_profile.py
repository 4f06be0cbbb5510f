"""Where a training step's time goes: the JAX step's XLA ops by layer and pass, beside PyTorch's.

Run from the repository root:

    python -m benchmarks.step_profile                      # MobileNetV2-CIFAR, batch 32, float32
    python -m benchmarks.step_profile --dtype bfloat16
    python -m benchmarks.step_profile --quick              # CI: a tiny model, batch 4

JAX: the trainer's own compiled step (`jax_train_step.build`), first timed (median of windows),
then traced with `jax.profiler.trace`. Each XLA op in the trace is matched to its instruction in
the compiled module's text, whose `op_name` metadata names the module path and whether it is in
the backward pass (`transpose(...)`); the op times are summed by layer (the first module under
the block: `depthwise`, `expand`, `project_norm`, ...; an activation's backward has no module and
shows as its primitive, `select_n` for ReLU), by pass and by top-level block. PyTorch: the same
number of steps of pytorch-cifar's MobileNetV2 (`torch_mobilenet_v2.train_step`) under
`torch.profiler`, self CPU time per aten op. Op times are summed over threads, so with several
cores they may add up to more than the step's wall time.
"""

from __future__ import annotations

import argparse
import collections
import gzip
import json
import re
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax

from benchmarks import common
from benchmarks import jax_train_step as jts

TITLE = "sepconv_jax training-step profile: XLA ops by layer and pass, beside PyTorch"
#: Parts of an `op_name` that name no module: transformations, the jitted step itself, and
#: grouped names (`(psum:psum:...)`).
_WRAPPERS = re.compile(r"^(\(|(p?jit)\(<|(jvp|transpose|vmap|remat|checkpoint|custom_jvp)\()")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="mobilenet_v2_tiny, batch 4, 2 steps (CI)")
    p.add_argument("--model", default="mobilenet_v2", help="JAX registry name")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"))
    p.add_argument("--steps", type=int, default=3, help="profiled steps")
    p.add_argument("--windows", type=int, default=5, help="timed windows of --steps steps")
    p.add_argument("--torch", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--out", default=None, help="markdown path (default under results/)")
    args = p.parse_args(argv)
    if args.quick:
        args.model, args.batch, args.steps, args.windows, args.torch = (
            "mobilenet_v2_tiny",
            4,
            2,
            1,
            False,
        )
    if args.out is None and not args.quick:
        suffix = "" if args.dtype == "float32" else f"_{args.dtype}"
        args.out = str(Path(__file__).parent / "results" / f"step_profile_cpu{suffix}.md")
    return args


# ---------------------------------------------------------------------------------------------
# JAX: trace the compiled step, name every op


def op_names(hlo_text: str) -> dict[str, str]:
    """Instruction name → its `op_name` metadata (`""` without one), from a module's text."""
    names = {}
    for m in re.finditer(r"^\s*%?([\w.\-]+) = [^\n]*$", hlo_text, re.MULTILINE):
        meta = re.search(r'op_name="([^"]*)"', m.group(0))
        names[m.group(1)] = meta.group(1) if meta else ""
    return names


def classify(op_name: str) -> tuple[str, str, str]:
    """`(block, layer, pass)` of one op from its `op_name`.

    `"jit(step)/transpose(jvp(MobileNetV2))/block2/core/expand_norm/add_any"` →
    `("block2", "expand_norm", "backward")`: the block is the first module, the layer the first
    module below the block (below a `core` wrapper) or else the primitive.
    """
    op_name = op_name.split(";")[0]  # a fused op's first source
    pass_ = "backward" if "transpose(" in op_name else "forward"
    parts = [
        re.sub(r"^p?jit\((\w+)\)$", r"\1", p)  # jit(relu) → relu
        for p in op_name.split("/")
        if p and not _WRAPPERS.match(p)
    ]
    if len(parts) < 2:
        return "(step)", parts[-1] if parts else "(no op_name)", pass_
    block, rest = parts[0], parts[1:]
    if rest[0] == "core" and len(rest) > 1:
        rest = rest[1:]
    return block, rest[0], pass_


def _trace_events(folder: Path) -> list[dict[str, Any]]:
    files = sorted(folder.rglob("*.trace.json.gz"), key=lambda f: f.stat().st_mtime)
    if not files:
        raise RuntimeError(f"jax.profiler wrote no *.trace.json.gz under {folder}")
    with gzip.open(files[-1]) as f:
        return [e for e in json.load(f)["traceEvents"] if e.get("ph") == "X"]


def profile_jax(model: str, batch: int, dtype: str, *, steps: int, windows: int) -> dict[str, Any]:
    """Times and traces the JAX step; returns step ms and per-op times (ms per step)."""
    runner = jts.build(model, batch, dtype)
    state = runner.state
    n = len(runner.batches)

    def run(k: int) -> None:
        nonlocal state
        for i in range(k):
            state, metrics = runner.step(state, runner.batches[i % n])
        jax.block_until_ready(metrics)

    def window() -> float:
        t = time.perf_counter()
        run(steps)
        return (time.perf_counter() - t) / steps * 1e3

    run(3)  # warm-up
    step_ms, _ = common.time_windows(window, windows)
    names = op_names(runner.compiled.as_text())
    with tempfile.TemporaryDirectory() as tmp:
        with jax.profiler.trace(tmp):
            run(steps)
        events = _trace_events(Path(tmp))
    per_op = collections.Counter()
    for e in events:
        if e["name"] in names:
            per_op[e["name"]] += e["dur"] / 1e3 / steps
    return {"step_ms": step_ms, "per_op": per_op, "names": names}


# ---------------------------------------------------------------------------------------------
# PyTorch: the peer's step under torch.profiler


def profile_torch(batch: int, dtype: str, *, steps: int, windows: int) -> dict[str, Any]:
    """Times and profiles PyTorch's step; returns step ms and self CPU ms per step by aten op."""
    import torch  # optional: only where the peer is installed

    from benchmarks import torch_mobilenet_v2 as tm

    _, step = tm.train_step(batch, dtype)

    def window() -> float:
        t = time.perf_counter()
        for i in range(steps):
            step(i)
        return (time.perf_counter() - t) / steps * 1e3

    for i in range(3):  # warm-up
        step(i)
    step_ms, _ = common.time_windows(window, windows)
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        for i in range(steps):
            step(i)
    per_op = collections.Counter()
    calls = collections.Counter()
    for avg in prof.key_averages():
        if avg.key.startswith("aten::"):
            per_op[avg.key] += avg.self_cpu_time_total / 1e3 / steps
            calls[avg.key] += avg.count // steps
    return {"step_ms": step_ms, "per_op": per_op, "calls": calls}


# ---------------------------------------------------------------------------------------------
# Tables


def jax_tables(res: dict[str, Any]) -> dict[str, tuple[list[str], list[list[Any]]]]:
    """By layer × pass, by block, and the slowest ops."""
    by_layer = collections.defaultdict(lambda: [0.0, 0.0])
    by_block = collections.Counter()
    for op, ms in res["per_op"].items():
        block, layer, pass_ = classify(res["names"][op])
        by_layer[layer][pass_ == "backward"] += ms
        by_block[block] += ms
    total = sum(res["per_op"].values())
    layers = sorted(by_layer.items(), key=lambda kv: -sum(kv[1]))
    layer_rows = [
        [k, common.fmt(f), common.fmt(b), common.fmt(f + b), f"{100 * (f + b) / total:.0f}"]
        for k, (f, b) in layers
    ]
    block_rows = [[k, common.fmt(v), f"{100 * v / total:.0f}"] for k, v in by_block.most_common()]
    op_rows = [
        [op, common.fmt(ms), res["names"][op][-90:]] for op, ms in res["per_op"].most_common(15)
    ]
    return {
        "layer": (["layer", "forward ms", "backward ms", "total ms", "%"], layer_rows),
        "block": (["block", "ms", "%"], block_rows),
        "ops": (["XLA op", "ms", "op_name (end)"], op_rows),
    }


def torch_table(res: dict[str, Any]) -> tuple[list[str], list[list[Any]]]:
    rows = [[op, common.fmt(ms), res["calls"][op]] for op, ms in res["per_op"].most_common(12)]
    return ["aten op", "self CPU ms", "calls"], rows


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    start = time.perf_counter()
    env = common.environment()
    common.log(f"JAX {args.model} batch {args.batch} {args.dtype}: timing and tracing")
    jres = profile_jax(args.model, args.batch, args.dtype, steps=args.steps, windows=args.windows)
    tres = None
    if args.torch and common.torch_or_none() is not None and not common.on_gpu():
        common.log("PyTorch eager: timing and profiling")
        tres = profile_torch(args.batch, args.dtype, steps=args.steps, windows=args.windows)
    tables = jax_tables(jres)
    op_sum = sum(jres["per_op"].values())
    summary = [
        ["JAX " + args.model, common.fmt(jres["step_ms"]), common.fmt(op_sum)],
    ]
    if tres is not None:
        summary.append(
            [
                "PyTorch eager (pytorch-cifar MobileNetV2)",
                common.fmt(tres["step_ms"]),
                common.fmt(sum(tres["per_op"].values())),
            ]
        )
    head = (["step", "wall ms (median)", "sum of op times, ms"], summary)
    sections = [
        (
            "Summary",
            f"Batch {args.batch}, {args.dtype}; op times per step, averaged over {args.steps} "
            "profiled steps and summed over threads.\n\n" + common.markdown_table(*head),
        ),
        ("JAX by layer and pass", common.markdown_table(*tables["layer"])),
        ("JAX by block", common.markdown_table(*tables["block"])),
        ("JAX: the slowest XLA ops", common.markdown_table(*tables["ops"])),
    ]
    printed = [head, tables["layer"]]
    if tres is not None:
        sections.append(
            ("PyTorch by aten op (self CPU)", common.markdown_table(*torch_table(tres)))
        )
        printed.append(torch_table(tres))
    common.finish(
        args.out,
        module="benchmarks.step_profile",
        title=TITLE,
        env=env,
        start=start,
        sections=sections,
        headline=f"{args.model} train step, batch {args.batch}, {args.dtype}",
        tables=printed,
    )
    return {"jax": jres, "torch": tres, "tables": tables}


if __name__ == "__main__":
    main()
