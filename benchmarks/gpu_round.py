"""One command for a short time on a GPU: op and training-step benchmarks and a timed CIFAR-10 run.

Run from the repository root on a machine with one GPU:

    python -m benchmarks.gpu_round --data cifar10-jpeg.tar.gz          # about 5 minutes
    python -m benchmarks.gpu_round --quick --data IMAGES --out DIR     # tiny, on a CPU (CI)
    python -m benchmarks.gpu_round --bundle gpu_bundle --data cifar10-jpeg.tar.gz

It runs, each as its own process and its own command line (written into its table):

1. `benchmarks.ops`: 3×3 depthwise, separable and full convs, fwd+bwd and fwd, float32 and
   bfloat16, contenders xla / taps / pallas / Flax / PyTorch (where importable), with the copy
   bandwidth measured in the same run;
2. `benchmarks.train_step`: MobileNetV2-CIFAR training step, separable vs its full twin vs
   PyTorch eager, batch 512, bfloat16;
3. a timed CIFAR-10 run of the current recipe (`train/configs/cifar10_mobilenet_v2.py`, a few
   epochs) on `--data` — an image folder or tar (`train|test/<class>/<image>`, turned into a
   tensorflow-datasets dataset first by `train.prepare_data`) or an already prepared tfds data dir.

Every table is markdown headed by its command, the device and the software versions, all in
`--out` (default `benchmarks/results/gpu_round_<backend>/`), with `summary.md` listing the parts.
Each part has a time limit (`--ops-s`, `--train-step-s`, `--cifar-s`; what a part leaves unused
passes to the next); a part past its limit plus a grace period is stopped and the others still run.
XLA's convolution autotuning results and JAX's compiled programs are cached in `--cache-dir`, so
the CIFAR run reuses the training-step benchmark's autotuning and a rerun compiles little.

`--bundle DIR` does not measure: it puts into DIR what a bare GPU machine needs beyond
jax/flax/optax/chex/orbax/torch — wheels of the missing packages at the versions installed here
(linux x86_64, this Python unless `--python-version`), downloaded with `pip download`, and the
data archive — and prints the one command to run there.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.metadata
import importlib.util
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import jax

from benchmarks import common

#: The parts' environment is the caller's, untouched by this process's GPU memory setting.
_CHILD_ENV = dict(os.environ)

#: The op benchmark's shapes: the four of `results/ops_gpu_bf16_fwd.md`, so its rows compare.
GPU_SHAPES = "256x32x32x128x128,256x8x8x512x512,128x56x56x128x128,128x7x7x1024x1024"
#: Seconds a part may run past its limit (finishing a row, writing its table) before it is stopped.
GRACE_S = 60.0
#: Modules the CIFAR run needs beyond the GPU machine's jax/flax/optax/chex/orbax.
TRAIN_MODULES = ("tensorflow_datasets", "grain", "array_record", "ml_collections", "PIL")
#: What a bare GPU machine already has (with everything these depend on).
BASE_PACKAGES = ("jax", "jaxlib", "flax", "optax", "chex", "orbax-checkpoint", "torch")
#: What the benchmarks and the trainer need (the project's `train` extra).
NEEDED_PACKAGES = (
    "tensorflow-datasets",
    "importlib-resources",
    "array-record",
    "grain",
    "orbax-checkpoint",
    "ml-collections",
    "absl-py",
    "pillow",
    "matplotlib",
    "tqdm",
)
#: Declared by tensorflow-datasets but imported only for formats this project does not read
#: (pyarrow: Parquet, ~40 MiB).
NOT_BUNDLED = ("pyarrow",)
#: Wheel platforms tried for a linux x86_64 machine.
WHEEL_PLATFORMS = (
    "manylinux2014_x86_64",
    "manylinux_2_17_x86_64",
    "manylinux_2_28_x86_64",
    "linux_x86_64",
)


# ---------------------------------------------------------------------------------------------
# The parts


@dataclasses.dataclass
class Part:
    """One measured part: a command line, its time limit and what happened.

    Attributes:
      name: short name (also the log file's).
      argv: the command, run from the repository root.
      limit_s: seconds the part is given (it is stopped at `limit_s + GRACE_S`).
      table: the markdown file it writes, relative to the output folder.
      needs: a part that must have succeeded first.
      rc: exit status (`None` until run); `wall_s`: seconds it took; `note`: why it did not run.
    """

    name: str
    argv: list[str]
    limit_s: float
    table: str
    needs: str = ""
    rc: int | None = None
    wall_s: float = 0.0
    note: str = ""


def _rel(path: Path) -> str:
    """`path` relative to the repository root where it lies inside it (tables name no host path)."""
    path = path.resolve()
    try:
        return str(path.relative_to(common.REPO_ROOT))
    except ValueError:
        return str(path)


def ops_part(out: Path, quick: bool, limit_s: float) -> Part:
    """The op benchmark: owed rows first (f32, fwd+bwd), bf16 fwd (already measured) last."""
    argv = ["-m", "benchmarks.ops", "--out", _rel(out / "ops.md")]
    if quick:
        argv += ["--quick", "--contenders", "xla,taps,flax,torch"]
    else:
        argv += [
            "--shapes",
            GPU_SHAPES,
            "--dtype",
            "float32,bfloat16",
            "--passes",
            "fwdbwd,fwd",
            "--contenders",
            "xla,taps,pallas,flax,torch",
            "--budget-s",
            f"{0.35 * limit_s:.0f}",
            "--time-limit-s",
            f"{0.85 * limit_s:.0f}",
        ]
    return Part("ops", argv, limit_s, "ops.md")


def train_step_part(out: Path, quick: bool, limit_s: float) -> Part:
    """The training-step benchmark: separable, PyTorch eager, full twin (bf16, batch 512)."""
    argv = ["-m", "benchmarks.train_step", "--out", _rel(out / "train_step.md")]
    if quick:
        argv += ["--quick"]
    else:
        argv += [
            "--batch",
            "512",
            "--dtype",
            "bfloat16",
            "--impls",
            "jax,torch",
            "--warmup",
            "3",
            "--windows",
            "5",
            "--steps",
            "10",
            "--time-limit-s",  # starts no configuration after this; the last one may run over
            f"{limit_s:.0f}",
        ]
    return Part("train_step", argv, limit_s, "train_step.md")


def prepared_data_dir(path: Path) -> bool:
    """Whether `path` is a tfds data dir that already holds a prepared `cifar10`."""
    return path.is_dir() and any(path.glob("cifar10/*/dataset_info.json"))


def cifar_parts(
    data: Path, out: Path, cache: Path, quick: bool, epochs: int, limit_s: float
) -> list[Part]:
    """`train.prepare_data` (unless `data` is prepared already) and the timed training run.

    `prepare_data` is given `limit_s`; the run gets what it leaves.
    """
    parts = []
    data_dir = data
    if not prepared_data_dir(data):
        data_dir = cache / "tfds"
        parts.append(
            Part(
                "prepare_data",
                [
                    "-m",
                    "train.prepare_data",
                    f"--source={_rel(data)}",
                    f"--data_dir={_rel(data_dir)}",
                ],
                limit_s,
                "",
            )
        )
    workdir = cache / "runs" / time.strftime("%Y%m%d-%H%M%S")
    config = "train/configs/tiny.py" if quick else "train/configs/cifar10_mobilenet_v2.py"
    argv = [
        "-m",
        "train",
        f"--config={config}",
        f"--workdir={_rel(workdir)}",
        f"--config.data_dir={_rel(data_dir)}",
        f"--config.num_epochs={epochs}",
    ]
    if quick:  # the tiny MobileNetV1 compiles fastest
        argv += ["--config.model=mobilenet_v1_tiny", "--config.max_steps=2"]
    else:
        argv += [f"--config.compilation_cache_dir={_rel(cache / 'jax_cache')}"]
    needs = parts[0].name if parts else ""
    parts.append(Part("cifar10", argv, 0.0 if parts else limit_s, "cifar10.md", needs))
    return parts


def child_env(cache: Path, gpu: bool, autotune_cache: bool) -> dict[str, str]:
    """The parts' environment: the caller's, unbuffered; on a GPU the shared compilation caches."""
    env = dict(_CHILD_ENV, PYTHONUNBUFFERED="1")
    if gpu:
        env.setdefault("JAX_COMPILATION_CACHE_DIR", str((cache / "jax_cache").resolve()))
    if gpu and autotune_cache:
        flag = f"--xla_gpu_per_fusion_autotune_cache_dir={(cache / 'autotune').resolve()}"
        env["XLA_FLAGS"] = f"{env.get('XLA_FLAGS', '')} {flag}".strip()
    return env


def autotune_cache_supported(env: Mapping[str, str]) -> bool:
    """Whether this jaxlib knows the autotune-cache flag (an unknown XLA flag aborts the process)."""
    probe = subprocess.run(
        [sys.executable, "-c", "import jax; jax.devices()"],
        env=dict(env),
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    return probe.returncode == 0


def run_part(part: Part, env: Mapping[str, str], logs: Path) -> None:
    """Runs `part` from the repository root, stdout and stderr to `logs/<name>.{out,log}`.

    Past `limit_s + GRACE_S` its process group gets SIGTERM (the trainer then checkpoints and
    stops), and SIGKILL 30 s later.
    """
    logs.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    common.log(f"== {part.name}: python {' '.join(part.argv)} (limit {part.limit_s:.0f} s)")
    with open(logs / f"{part.name}.out", "w") as out, open(logs / f"{part.name}.log", "w") as err:
        proc = subprocess.Popen(
            [sys.executable, *part.argv],
            cwd=common.REPO_ROOT,
            env=dict(env),
            stdout=out,
            stderr=err,
            start_new_session=True,  # its own process group: train_step's workers stop with it
        )
        try:
            part.rc = proc.wait(timeout=part.limit_s + GRACE_S)
        except subprocess.TimeoutExpired:
            part.note = f"stopped after {part.limit_s + GRACE_S:.0f} s"
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                part.rc = proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                part.rc = proc.wait()
    part.wall_s = time.perf_counter() - start
    status = "ok" if part.rc == 0 else f"exit {part.rc} {part.note}".strip()
    common.log(f"== {part.name}: {status} in {part.wall_s:.0f} s")


def run_parts(parts: Sequence[Part], env: Mapping[str, str], logs: Path) -> None:
    """Runs `parts` in order; what one leaves of its time limit passes to the next."""
    carry, failed = 0.0, set()
    for part in parts:
        if part.needs in failed:
            part.note = f"not run: {part.needs} failed"
            failed.add(part.name)
            continue
        part.limit_s += carry
        run_part(part, env, logs)
        if part.rc != 0:
            failed.add(part.name)
        carry = max(part.limit_s - part.wall_s, 0.0)


# ---------------------------------------------------------------------------------------------
# The CIFAR-10 table


def read_jsonl(path: Path) -> list[dict]:
    """The records of a `metrics.jsonl` (a torn last line, from a stopped run, is skipped)."""
    records = []
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return records


def cifar_table(records: Sequence[dict], results: Mapping) -> tuple[list[str], list[list[str]]]:
    """One row: the run's accuracy and times from its `metrics.jsonl` and `results.json`.

    The steady step is the median of the logged windows after the first (which holds the
    compilation); `results.json` is absent when the run was stopped, and its cells are `—`.
    """
    info = next((r for r in records if r.get("event") == "info"), {})
    train = [r for r in records if r.get("event") == "train" and "step_time_ms" in r]
    evals = [r for r in records if r.get("event") == "eval"]
    steady = [r["step_time_ms"] for r in train[1:]] or [r["step_time_ms"] for r in train]
    step_ms = statistics.median(steady) if steady else None
    batch = results.get("batch_size")
    last = evals[-1] if evals else {}
    headers = [
        "model",
        "params",
        "epochs done",
        "test acc.",
        "best",
        "steady step ms",
        "images/s",
        "to first step s",
        "first step s",
        "wall s",
    ]
    row = [
        f"{info.get('model', '?')} ({info.get('conv', '?')})",
        f"{info['params']:,}" if "params" in info else "—",
        common.fmt(last.get("epoch")),
        f"{100 * last['test_accuracy']:.2f} %" if "test_accuracy" in last else "—",
        f"{100 * last['best_test_accuracy']:.2f} %" if "best_test_accuracy" in last else "—",
        common.fmt(step_ms),
        common.fmt(1e3 * batch / step_ms) if batch and step_ms else "—",
        common.fmt(results.get("time_to_first_step_s")),
        common.fmt(results.get("first_step_s")),
        common.fmt(results.get("wall_time_s")),
    ]
    return headers, [row]


def write_cifar_report(
    part: Part, prepare: Part | None, data: Path, out: Path, env: list[tuple[str, str]]
) -> str:
    """Copies the run's log, results and curves into `out/cifar10/`; writes `out/cifar10.md`.

    Returns:
      The compact table for the terminal.
    """
    workdir = (
        common.REPO_ROOT / next(a for a in part.argv if a.startswith("--workdir=")).split("=", 1)[1]
    )
    keep = out / "cifar10"
    keep.mkdir(parents=True, exist_ok=True)
    for name in ("metrics.jsonl", "results.json", "curves.png", "config.json"):
        if (workdir / name).exists():
            shutil.copy2(workdir / name, keep / name)
    records = read_jsonl(workdir / "metrics.jsonl")
    results_path = workdir / "results.json"
    results = json.loads(results_path.read_text()) if results_path.exists() else {}
    headers, rows = cifar_table(records, results)
    evals = [r for r in records if r.get("event") == "eval"]
    curve = [
        [common.fmt(r.get("epoch")), str(r.get("step")), f"{100 * r['test_accuracy']:.2f} %"]
        for r in evals
        if "test_accuracy" in r
    ]
    commands = [f"python {' '.join(p.argv)}" for p in (prepare, part) if p is not None]
    timings = [
        f"- `{p.name}`: {p.wall_s:.0f} s, exit {p.rc} {p.note}".rstrip()
        for p in (prepare, part)
        if p is not None
    ]
    common.write_markdown(
        out / "cifar10.md",
        title="CIFAR-10: a timed run of the current recipe",
        command=" && ".join(commands),
        env=[*env, ("data", data.name)],
        sections=[
            ("Result", common.markdown_table(headers, rows)),
            (
                "Test accuracy per evaluation",
                common.markdown_table(["epoch", "step", "test acc."], curve) if curve else "none",
            ),
            ("Wall time of each command", "\n".join(timings)),
            (
                "Files",
                "`cifar10/metrics.jsonl`, `cifar10/results.json`, `cifar10/curves.png` (copied "
                "from the run's workdir).",
            ),
        ],
    )
    return common.text_table(headers, rows)


# ---------------------------------------------------------------------------------------------
# The bundle


def _marker_env(python_version: str) -> dict[str, str]:
    return {
        "python_version": python_version,
        "python_full_version": f"{python_version}.0",
        "sys_platform": "linux",
        "platform_system": "Linux",
        "platform_machine": "x86_64",
        "os_name": "posix",
        "implementation_name": "cpython",
        "platform_python_implementation": "CPython",
    }


def requirement_closure(
    roots: Iterable[str], python_version: str, *, distribution=importlib.metadata.distribution
) -> dict[str, str]:
    """Installed versions of `roots` and everything they require (markers for linux x86_64).

    Args:
      roots: distribution names.
      python_version: `"3.11"`: the Python the markers are evaluated for.
      distribution: looks a name up (`importlib.metadata.distribution`; tests pass a fake).

    Returns:
      `{canonical name: installed version}`; a requirement not installed here is left out.
    """
    # Here, not at the top: only the bundle step (run where the wheels come from) needs packaging.
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    env = _marker_env(python_version)
    found: dict[str, str] = {}
    extras_seen: set[tuple[str, str]] = set()
    todo = [(name, "") for name in roots]
    while todo:
        name, extra = todo.pop()
        key = canonicalize_name(name)
        if (key, extra) in extras_seen:
            continue
        extras_seen.add((key, extra))
        try:
            dist = distribution(name)
        except importlib.metadata.PackageNotFoundError:
            continue
        found[key] = dist.version
        for line in dist.requires or []:
            req = Requirement(line)
            if req.marker is None or req.marker.evaluate({**env, "extra": extra}):
                todo += [(req.name, "")] + [(req.name, e) for e in sorted(req.extras)]
    return found


def missing_packages(python_version: str, *, distribution=importlib.metadata.distribution):
    """`{name: version}` the project needs that a machine with `BASE_PACKAGES` lacks."""
    need = requirement_closure(NEEDED_PACKAGES, python_version, distribution=distribution)
    base = requirement_closure(BASE_PACKAGES, python_version, distribution=distribution)
    skip = {n.lower().replace("_", "-") for n in NOT_BUNDLED}
    return {k: v for k, v in sorted(need.items()) if k not in base and k not in skip}


def _pip(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pip", *args], capture_output=True, text=True, check=False
    )


def download_wheels(packages: Mapping[str, str], dest: Path, python_version: str) -> list[str]:
    """`pip download`s a linux x86_64 wheel of each `name==version` into `dest`.

    A package published only as a source archive is built into a wheel here (`pip wheel`), which
    works for pure-Python ones. Returns the packages that could not be had.
    """
    dest.mkdir(parents=True, exist_ok=True)
    abi = "cp" + python_version.replace(".", "")
    platform_args = [a for p in WHEEL_PLATFORMS for a in ("--platform", p)]
    target = [
        *platform_args,
        "--python-version",
        python_version,
        "--implementation",
        "cp",
        "--abi",
        abi,
        "--abi",
        "abi3",
        "--abi",
        "none",
        "--only-binary=:all:",
    ]
    pins = [f"{name}=={version}" for name, version in packages.items()]
    if _pip("download", "--no-deps", "--quiet", "-d", str(dest), *target, *pins).returncode == 0:
        return []
    failed = []
    for pin in pins:  # one at a time, to find which
        if _pip("download", "--no-deps", "--quiet", "-d", str(dest), *target, pin).returncode:
            if _pip("wheel", "--no-deps", "--quiet", "-w", str(dest), pin).returncode:
                failed.append(pin)
    return failed


def bundle(args: argparse.Namespace) -> int:
    """Writes the bundle for a bare GPU machine into `args.bundle` and prints how to run it."""
    dest = Path(args.bundle)
    dest.mkdir(parents=True, exist_ok=True)
    wheels = dest / "wheels"
    packages = missing_packages(args.python_version)
    run = ["python -m benchmarks.gpu_round"]
    install = ""
    if args.wheels:
        common.log(
            f"pip download: {len(packages)} wheels for linux x86_64, "
            f"Python {args.python_version}: {', '.join(packages)}"
        )
        failed = download_wheels(packages, wheels, args.python_version)
        if failed:
            common.log(f"no wheel for: {', '.join(failed)}")
            return 1
        (wheels / "requirements.txt").write_text(
            "".join(f"{n}=={v}\n" for n, v in packages.items())
        )
        install = (
            f"python -m pip install --no-index --no-deps --find-links {_rel(wheels)} "
            f"-r {_rel(wheels / 'requirements.txt')} && "
        )
    if args.data:
        data = Path(args.data)
        if data.is_dir():
            shutil.copytree(data, dest / "data" / data.name, dirs_exist_ok=True)
        else:
            (dest / "data").mkdir(exist_ok=True)
            shutil.copy2(data, dest / "data" / data.name)
        run.append(f"--data {_rel(dest / 'data' / data.name)}")
    size = sum(f.stat().st_size for f in dest.rglob("*") if f.is_file())
    common.log(f"bundle {_rel(dest)}: {size / 2**20:.1f} MiB")
    wheels_for = f"wheels for linux x86_64, CPython {args.python_version}; " if args.wheels else ""
    print(f"On the GPU machine ({wheels_for}from the repository root, {_rel(dest)}/ in it):")
    print(f"  {install}{' '.join(run)}")
    return 0


# ---------------------------------------------------------------------------------------------
# Command line


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="everything in tiny form (CPU, CI)")
    parser.add_argument("--data", default=None, help="image folder/tar, or a prepared tfds dir")
    parser.add_argument("--out", default=None, help="folder for the tables")
    parser.add_argument(
        "--cache-dir",
        default="workdirs/gpu_round",
        help="prepared data, the CIFAR run's workdir, compilation caches",
    )
    parser.add_argument("--ops-s", type=float, default=90.0, help="op benchmark's seconds")
    parser.add_argument("--train-step-s", type=float, default=110.0, help="train-step seconds")
    parser.add_argument("--cifar-s", type=float, default=100.0, help="CIFAR-10 run's seconds")
    parser.add_argument("--epochs", type=int, default=5, help="epochs of the CIFAR run")
    parser.add_argument(
        "--parts",
        default="ops,train_step,cifar10",
        help="which parts to run (comma-separated, default all)",
    )
    parser.add_argument(
        "--autotune-cache",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="share XLA's autotuning results between the parts (GPU)",
    )
    parser.add_argument("--bundle", default=None, help="write the bundle into this folder, exit")
    parser.add_argument(
        "--wheels",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="with --bundle: download the wheels (--no-wheels: data only, no network)",
    )
    parser.add_argument(
        "--python-version",
        default=f"{sys.version_info.major}.{sys.version_info.minor}",
        help="with --bundle: the GPU machine's Python (default: this one)",
    )
    args = parser.parse_args(argv)
    args.parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    unknown = set(args.parts) - {"ops", "train_step", "cifar10"}
    if unknown:
        parser.error(f"--parts must be from ops,train_step,cifar10, got {sorted(unknown)}")
    if args.data and not Path(args.data).exists():
        parser.error(f"--data {args.data!r} does not exist")
    return args


def plan(args: argparse.Namespace, out: Path, cache: Path) -> tuple[list[Part], list[str]]:
    """The parts to run, in order, and the lines saying why any was left out."""
    parts, skipped = [], []
    if "ops" in args.parts:
        parts.append(ops_part(out, args.quick, args.ops_s))
    if "train_step" in args.parts:
        parts.append(train_step_part(out, args.quick, args.train_step_s))
    if "cifar10" in args.parts:
        missing = [m for m in TRAIN_MODULES if importlib.util.find_spec(m) is None]
        if not args.data:
            skipped.append("cifar10: skipped, no --data given")
        elif missing:
            skipped.append(f"cifar10: skipped, not importable: {', '.join(missing)} (--bundle)")
        else:
            data = Path(args.data)
            parts += cifar_parts(data, out, cache, args.quick, args.epochs, args.cifar_s)
    return parts, skipped


def status(part: Part) -> str:
    if part.rc is None:
        return part.note
    return "ok" if part.rc == 0 else f"exit {part.rc} {part.note}".strip()


def main(argv: Sequence[str] | None = None) -> int:
    common.gpu_memory(preallocate=False)  # this process only reads the device's name
    start = time.perf_counter()
    args = parse_args(argv)
    if args.bundle:
        return bundle(args)
    backend = jax.default_backend()
    if backend != "gpu" and not args.quick:
        common.log(f"no GPU (JAX backend {backend!r}): run with --quick for the tiny CPU form")
        return 2
    out = Path(args.out or common.RESULTS_DIR / f"gpu_round_{backend}")
    out.mkdir(parents=True, exist_ok=True)
    cache = Path(args.cache_dir)
    gpu = backend == "gpu"
    env = child_env(cache, gpu, args.autotune_cache)
    if gpu and args.autotune_cache and not autotune_cache_supported(env):
        common.log("this jaxlib lacks --xla_gpu_per_fusion_autotune_cache_dir: not shared")
        env = child_env(cache, gpu, False)

    parts, skipped = plan(args, out, cache)
    run_parts(parts, env, out / "logs")

    header = common.environment()
    header.append(("the parts' XLA_FLAGS", env.get("XLA_FLAGS", "") or "(none)"))
    for part in parts:  # each part's own printed tables, then the summary last
        if part.name == "cifar10":
            prepare = next((p for p in parts if p.name == part.needs), None)
            text = write_cifar_report(part, prepare, Path(args.data), out, header)
        elif part.table and part.rc is not None:
            text = (out / "logs" / f"{part.name}.out").read_text().strip()
        else:
            continue
        print(f"== {part.name} ({part.table})\n{text}\n")
    rows = [
        [
            p.name,
            f"`python {' '.join(p.argv)}`",
            status(p),
            f"{p.wall_s:.0f}",
            f"[{p.table}]({p.table})" if p.table else "—",
        ]
        for p in parts
    ]
    failed = [p.name for p in parts if p.rc != 0]
    notes = skipped + ([f"not complete: {', '.join(failed)}"] if failed else [])
    common.finish(
        out / "summary.md",
        module="benchmarks.gpu_round",
        title="GPU round: what ran, for how long, where its table is",
        env=header,
        start=start,
        sections=[
            ("Parts", common.markdown_table(["part", "command", "status", "s", "table"], rows)),
            ("Not run", "\n".join(f"- {n}" for n in skipped) or "none"),
            ("Logs", "`logs/<part>.log` (progress, stderr) and `logs/<part>.out` (stdout)."),
        ],
        headline=f"the parts, their tables in {_rel(out)}/",
        tables=[(["part", "status", "s", "table"], [[r[0], r[2], r[3], r[4]] for r in rows])],
        notes=notes,
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
