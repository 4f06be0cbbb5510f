"""The training-step benchmark's results table and its markdown report."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from benchmarks import common
from benchmarks.train_step_records import Result


def _mib(nbytes: int | None) -> str:
    return common.fmt(nbytes / 2**20) if nbytes else "—"


def table(results: Sequence[Result]) -> tuple[list[str], list[list[str]]]:
    """Headers and one row per result; `vs torch` is against PyTorch eager at the same batch."""
    headers = [
        "impl",
        "model",
        "batch",
        "dtype",
        "img/s",
        "step ms",
        "IQR %",
        "vs torch",
        "peak MiB",
        "XLA MiB",
        "params",
        "warm-up s",
    ]
    eager = {
        (r.config.batch, r.config.dtype): r.images_per_s
        for r in results
        if r.config.impl == "torch" and r.images_per_s
    }
    rows = []
    for r in results:
        c = r.config
        if r.error:
            status = "skipped" if r.error.startswith("skipped") else "error"
            rows.append([c.impl, c.model, c.batch, c.dtype, status] + ["—"] * 7)
            continue
        ref = eager.get((c.batch, c.dtype))
        rows.append(
            [
                c.impl,
                c.model,
                c.batch,
                c.dtype,
                f"{r.images_per_s:,.0f}",
                common.fmt(r.step_ms),
                f"{r.spread_pct:.1f}",
                common.fmt(r.images_per_s / ref, 2) if ref else "—",
                _mib(r.peak_bytes),
                _mib(r.compiled_bytes),
                f"{r.params:,}" if r.params else "—",
                common.fmt(r.warmup_s),
            ]
        )
    return headers, rows


def report(results: Sequence[Result], env: list[tuple[str, str]], args: argparse.Namespace) -> str:
    """Writes the markdown (when `--out`) and returns the compact text table."""
    headers, rows = table(results)
    errors = [
        f"- {r.config.impl} {r.config.model} b={r.config.batch} {r.config.dtype}: {r.error}"
        for r in results
        if r.error
    ]
    sources = sorted({r.step_source for r in results if r.step_source})
    legend = (
        "img/s = batch / median step time (median over windows of consecutive steps). `vs torch` "
        "= img/s over PyTorch eager's at the same batch and dtype. `peak MiB` = the device's "
        "`peak_bytes_in_use` (JAX, one process per configuration) or "
        "`torch.cuda.max_memory_allocated` (PyTorch); `XLA MiB` = the compiled step's arguments "
        "+ temporaries + outputs − aliased (XLA's memory analysis, on any backend). bf16 = "
        "bfloat16 compute with float32 parameters (JAX `dtype=bfloat16`, PyTorch autocast). "
        "`warm-up s` = model build, compilation/autotuning and the untimed steps. "
        f"Steps: {', '.join(sources) or '—'}."
    )
    if args.out:
        common.write_markdown(
            args.out,
            title="sepconv_jax training-step benchmark: MobileNetV2-CIFAR, synthetic data",
            command=common.command_line("benchmarks.train_step"),
            env=env,
            sections=[
                ("Results", legend + "\n\n" + common.markdown_table(headers, rows)),
                ("Errors", "\n".join(errors) or "none"),
            ],
        )
    return "\n".join([common.text_table(headers, rows), *errors])
