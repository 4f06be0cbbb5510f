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

This file is the driver, the JAX timer and the command line; the records are in
`train_step_records.py`, the PyTorch timer in `train_step_torch.py`, the table and markdown in
`train_step_tables.py`.
"""

from __future__ import annotations

import os

# JAX must not grab 75% of the GPU: PyTorch runs in the same process, and peaks are measured.
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

import argparse  # noqa: E402
import dataclasses  # noqa: E402
import json  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable, Sequence  # noqa: E402

if __package__ in (None, ""):  # `python benchmarks/train_step.py`: make the repo importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from benchmarks import common  # noqa: E402
from benchmarks import jax_train_step as jts  # noqa: E402
from benchmarks.train_step_records import (  # noqa: E402
    DTYPES,
    IMPLS,
    NUM_BATCHES,
    TORCH_MODEL,
    Config,
    Result,
    time_windows,
)
from benchmarks.train_step_tables import report  # noqa: E402
from benchmarks.train_step_torch import bench_torch  # noqa: E402


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

    result.step_ms, result.spread_pct = time_windows(window, windows)
    result.peak_bytes = common.peak_memory_bytes()
    return result


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
    args = parse_args(argv)
    if args.worker is not None:  # child process of run_isolated
        result = run_one(Config(**json.loads(args.worker)), args)
        print("RESULT " + json.dumps(dataclasses.asdict(result)), flush=True)
        return [result]
    t0 = time.perf_counter()
    env = common.environment()
    torch = common.torch_or_none()
    torch_ok = torch is not None and (torch.cuda.is_available() or not common.on_gpu())
    if not torch_ok and any(i != "jax" for i in args.impls):
        common.log("torch: not importable (or no CUDA beside a GPU JAX); PyTorch rows skipped")
    results: list[Result] = []
    for cfg in plan(args, torch_ok):
        elapsed = time.perf_counter() - t0
        if elapsed > args.time_limit_s:
            results.append(Result(cfg, error=f"skipped: --time-limit-s {args.time_limit_s:.0f}"))
            continue
        isolate = args.isolate and cfg.impl == "jax"
        r = run_isolated(cfg, args) if isolate else run_one(cfg, args)
        results.append(r)
        if cfg.impl != "jax" and torch.cuda.is_available():
            torch.cuda.empty_cache()  # leave the memory to the next JAX process
        done = f"{r.images_per_s:,.0f} img/s" if r.images_per_s else f"FAILED {r.error}"
        common.log(
            f"[{time.perf_counter() - t0:6.1f}s] {cfg.impl:13s} {cfg.model:26s} "
            f"b={cfg.batch:<4d} {cfg.dtype:8s} {done}"
        )
        report(results, env, args)  # partial results survive a run cut short
    env.append(("wall time", f"{time.perf_counter() - t0:.0f} s"))
    text = report(results, env, args)
    if args.out:
        common.log(f"wrote {args.out}")
    print(f"\n{dict(env)['device']}; MobileNetV2-CIFAR train step, synthetic data")
    print(text)
    return results


if __name__ == "__main__":
    main()
