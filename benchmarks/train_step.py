"""Training-step benchmark: MobileNetV2-CIFAR images/s and peak memory, separable vs full twin vs PyTorch.

Run from the repository root:

    python -m benchmarks.train_step --quick                # CI: tiny models, 2 steps
    python -m benchmarks.train_step                        # GPU: batch 256 and 512, bf16 and f32

Synthetic data (a few random batches rotated), warm-up (compilation, autotuning) first, then the
median over windows of steps (each window timed end to end, so steps overlap as in training). Each
JAX configuration runs in its own process (`--isolate`, the default off `--quick`) so that the
device's `peak_bytes_in_use` belongs to that configuration alone. PyTorch runs pytorch-cifar's
MobileNetV2 (`benchmarks/torch_mobilenet_v2.py`) eager and under `torch.compile`, channels_last,
autocast bf16, cudnn.benchmark, in the same run on the same device.

This file reads top to bottom: the records, the JAX timer (the step is built in
`jax_train_step.py`), the PyTorch timer, the plan and the processes, the table, the command line.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import subprocess
import sys
import time
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp

from benchmarks import common
from benchmarks import jax_train_step as jts

# ---------------------------------------------------------------------------------------------
# Records


IMPLS = ("jax", "torch", "torch-compile")
DTYPES = ("bfloat16", "float32")
NUM_BATCHES = 4  # distinct synthetic batches rotated through
TORCH_MODEL = "pytorch-cifar MobileNetV2"


@dataclasses.dataclass(frozen=True)
class Config:
    """One configuration to time: implementation, model, batch size and compute dtype."""

    impl: str  # one of IMPLS
    model: str  # registry name; torch rows always run pytorch-cifar's (separable) MobileNetV2
    batch: int
    dtype: str


@dataclasses.dataclass
class Result:
    """What one configuration measured (times in ms, memory in bytes), or why it did not."""

    config: Config
    step_ms: float | None = None
    spread_pct: float | None = None
    peak_bytes: int | None = None
    compiled_bytes: int | None = None
    params: int | None = None
    warmup_s: float | None = None
    step_source: str = ""
    error: str = ""

    @property
    def images_per_s(self) -> float | None:
        if self.step_ms is None:
            return None
        return self.config.batch / (self.step_ms * 1e-3)


# ---------------------------------------------------------------------------------------------
# The JAX step


def bench_jax(cfg: Config, *, warmup: int, windows: int, steps: int) -> Result:
    """Times the project's own train step (`train/step.py`) on `cfg`."""
    result = Result(cfg)
    dtype = jnp.bfloat16 if cfg.dtype == "bfloat16" else jnp.float32
    t0 = time.perf_counter()
    runner = jts.build(cfg.model, cfg.batch, dtype, num_batches=NUM_BATCHES)
    result.params, result.step_source = runner.num_params, runner.source
    result.compiled_bytes = runner.compiled_bytes()
    state = runner.state
    for i in range(warmup):
        state, metrics = runner.step(state, runner.batches[i % NUM_BATCHES])
    jax.block_until_ready((state, metrics))
    result.warmup_s = time.perf_counter() - t0

    def window() -> float:
        nonlocal state
        start = time.perf_counter()
        out = None
        for i in range(steps):
            state, out = runner.step(state, runner.batches[i % NUM_BATCHES])
        jax.block_until_ready((state, out))
        return 1e3 * (time.perf_counter() - start) / steps

    result.step_ms, result.spread_pct = common.time_windows(window, windows)
    result.peak_bytes = common.peak_memory_bytes()
    return result


# ---------------------------------------------------------------------------------------------
# The PyTorch step: pytorch-cifar's MobileNetV2, eager or compiled


def bench_torch(cfg: Config, *, warmup: int, windows: int, steps: int) -> Result:
    """Times an SGD-Nesterov step of pytorch-cifar's MobileNetV2 (eager or `torch.compile`)."""
    # Here, not at the top: PyTorch is optional (the JAX rows run without it).
    import torch

    from benchmarks import torch_mobilenet_v2 as tm

    result = Result(cfg, step_source="benchmarks/torch_mobilenet_v2.py")
    cuda = torch.cuda.is_available()
    model, step = tm.train_step(
        cfg.batch, cfg.dtype, compiled=cfg.impl == "torch-compile", num_batches=NUM_BATCHES
    )
    result.params = tm.num_params(model)
    if result.params != tm.NUM_PARAMS:
        raise RuntimeError(
            f"torch MobileNetV2 has {result.params} parameters, want {tm.NUM_PARAMS}"
        )

    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    for i in range(warmup):
        step(i)
    if cuda:
        torch.cuda.synchronize()
    result.warmup_s = time.perf_counter() - t0

    def window() -> float:
        if cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            for i in range(steps):
                step(i)
            end.record()
            end.synchronize()
            return start.elapsed_time(end) / steps
        start_t = time.perf_counter()
        for i in range(steps):
            step(i)
        return 1e3 * (time.perf_counter() - start_t) / steps

    result.step_ms, result.spread_pct = common.time_windows(window, windows)
    if cuda:
        result.peak_bytes = torch.cuda.max_memory_allocated()
    return result


# ---------------------------------------------------------------------------------------------
# Plan and processes


def run_one(cfg: Config, args: argparse.Namespace) -> Result:
    kw = dict(warmup=args.warmup, windows=args.windows, steps=args.steps)
    try:
        if cfg.impl == "jax":
            return bench_jax(cfg, **kw)
        return bench_torch(cfg, **kw)
    except Exception as err:  # noqa: BLE001 - one failing configuration must not end the table
        return Result(cfg, error=common.short_error(err))


def run_isolated(cfg: Config, args: argparse.Namespace) -> Result:
    """Runs one configuration in a fresh process (its own device-memory peak)."""
    cmd = [
        sys.executable,
        "-m",
        "benchmarks.train_step",
        "--worker",
        json.dumps(dataclasses.asdict(cfg)),
        f"--warmup={args.warmup}",
        f"--windows={args.windows}",
        f"--steps={args.steps}",
    ]
    proc = subprocess.run(cmd, cwd=common.REPO_ROOT, capture_output=True, text=True, check=False)
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            data = json.loads(line[len("RESULT ") :])
            data["config"] = Config(**data["config"])
            return Result(**data)
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
    return Result(cfg, error=f"worker exited {proc.returncode}: {tail[0][:200]}")


def plan(args: argparse.Namespace, torch_ok: bool) -> list[Config]:
    """Configurations in priority order, so that a run cut short by `--time-limit-s` still has
    the headline rows: per dtype, the separable net, PyTorch eager (the `vs torch` reference),
    the full twin, then `torch.compile` (slowest to warm up)."""
    configs = []
    models_first, models_rest = args.models[:1], args.models[1:]
    for dtype in args.dtype:
        groups: list[list[Config]] = [[], [], [], []]
        for batch in args.batch:
            if "jax" in args.impls:
                groups[0] += [Config("jax", m, batch, dtype) for m in models_first]
                groups[2] += [Config("jax", m, batch, dtype) for m in models_rest]
            if torch_ok and "torch" in args.impls:
                groups[1].append(Config("torch", TORCH_MODEL, batch, dtype))
            if torch_ok and "torch-compile" in args.impls:
                groups[3].append(Config("torch-compile", TORCH_MODEL, batch, dtype))
        configs += [c for g in groups for c in g]
    return configs


# ---------------------------------------------------------------------------------------------
# Table and markdown


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


TITLE = "sepconv_jax training-step benchmark: MobileNetV2-CIFAR, synthetic data"


def sections(results: Sequence[Result]) -> tuple[list[tuple[str, str]], list[str]]:
    """The markdown sections (legend and table, errors) and the error lines."""
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
    body = [
        ("Results", legend + "\n\n" + common.markdown_table(headers, rows)),
        ("Errors", "\n".join(errors) or "none"),
    ]
    return body, errors


# ---------------------------------------------------------------------------------------------
# Command line


def _int_list(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"expected comma-separated ints, got {text!r}") from err
    if not values or min(values) <= 0:
        raise argparse.ArgumentTypeError(f"expected positive ints, got {text!r}")
    return values


def _choice_list(allowed: Sequence[str], name: str) -> Callable[[str], list[str]]:
    def parse(text: str) -> list[str]:
        items = [s.strip() for s in text.split(",") if s.strip()]
        if not items or any(s not in allowed for s in items):
            raise argparse.ArgumentTypeError(f"{name} must be from {list(allowed)}, got {text!r}")
        return items

    return parse


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny models, batch 8, 2 steps (CI)")
    parser.add_argument("--batch", type=_int_list, default=None, help="default 256,512")
    parser.add_argument("--dtype", type=_choice_list(DTYPES, "--dtype"), default=list(DTYPES))
    parser.add_argument(
        "--impls", type=_choice_list(IMPLS, "--impls"), default=None, help="default all"
    )
    parser.add_argument(
        "--models", default=None, help="JAX registry names (default mobilenet_v2,mobilenet_v2_full)"
    )
    parser.add_argument("--warmup", type=int, default=None, help="untimed steps (default 5)")
    parser.add_argument("--windows", type=int, default=None, help="timed windows (default 5)")
    parser.add_argument("--steps", type=int, default=None, help="steps per window (default 10)")
    parser.add_argument(
        "--isolate",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="one process per JAX configuration (default: on, off with --quick)",
    )
    parser.add_argument(
        "--time-limit-s",
        type=float,
        default=480.0,
        help="start no configuration after this many seconds (default 480: one device call)",
    )
    parser.add_argument("--out", default=None, help="markdown path (default under results/)")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    quick = args.quick
    defaults = dict(
        batch=[8] if quick else [256, 512],
        impls=["jax", "torch"] if quick else list(IMPLS),
        models="mobilenet_v1_tiny,mobilenet_v1_tiny_full"
        if quick
        else "mobilenet_v2,mobilenet_v2_full",
        warmup=1 if quick else 5,
        windows=1 if quick else 5,
        steps=2 if quick else 10,
        isolate=not quick,
    )
    for name, value in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    if quick and "float32" in args.dtype and len(args.dtype) > 1:
        args.dtype = ["float32"]
    args.models = [m.strip() for m in args.models.split(",") if m.strip()]
    if args.out is None and not quick and args.worker is None:
        args.out = str(common.RESULTS_DIR / f"train_step_{jax.default_backend()}.md")
    return args


def main(argv: Sequence[str] | None = None) -> list[Result]:
    # JAX grows its GPU memory on demand: PyTorch runs in the same process, and peaks are measured.
    common.gpu_memory(preallocate=False)
    args = parse_args(argv)
    if args.worker is not None:  # child process of run_isolated
        result = run_one(Config(**json.loads(args.worker)), args)
        print("RESULT " + json.dumps(dataclasses.asdict(result)), flush=True)
        return [result]
    start = time.perf_counter()
    env = common.environment()
    torch = common.torch_or_none()
    torch_ok = torch is not None and (torch.cuda.is_available() or not common.on_gpu())
    if not torch_ok and any(i != "jax" for i in args.impls):
        common.log("torch: not importable (or no CUDA beside a GPU JAX); PyTorch rows skipped")
    results: list[Result] = []
    for cfg in plan(args, torch_ok):
        if time.perf_counter() - start > args.time_limit_s:
            results.append(Result(cfg, error=f"skipped: --time-limit-s {args.time_limit_s:.0f}"))
            continue
        isolate = args.isolate and cfg.impl == "jax"
        r = run_isolated(cfg, args) if isolate else run_one(cfg, args)
        results.append(r)
        if cfg.impl != "jax" and torch.cuda.is_available():
            torch.cuda.empty_cache()  # leave the memory to the next JAX process
        done = f"{r.images_per_s:,.0f} img/s" if r.images_per_s else f"FAILED {r.error}"
        common.log(
            f"[{time.perf_counter() - start:6.1f}s] {cfg.impl:13s} {cfg.model:26s} "
            f"b={cfg.batch:<4d} {cfg.dtype:8s} {done}"
        )
        if args.out:  # after every configuration, so a run cut short keeps what it measured
            body, _ = sections(results)
            common.write_markdown(
                args.out,
                title=TITLE,
                command=common.command_line("benchmarks.train_step"),
                env=env,
                sections=body,
            )
    body, errors = sections(results)
    common.finish(
        args.out,
        module="benchmarks.train_step",
        title=TITLE,
        env=env,
        start=start,
        sections=body,
        headline="MobileNetV2-CIFAR train step, synthetic data",
        tables=[table(results)],
        notes=errors,
    )
    return results


if __name__ == "__main__":
    main()
