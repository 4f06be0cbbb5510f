"""What every benchmark script shares: its start and report tail, environment, timing, tables."""

from __future__ import annotations

import dataclasses
import datetime
import math
import os
import platform
import shlex
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = REPO_ROOT / "benchmarks" / "results"
#: L2 cache of an H100 (50 MB); input sets are rotated so that their total is a few times this.
L2_BYTES = 50 * 2**20


# ---------------------------------------------------------------------------------------------
# Environment


def short_error(err: BaseException, limit: int = 200) -> str:
    """`Type: message`, first line only, cut at `limit` characters (for a table's error cell)."""
    return f"{type(err).__name__}: {err}".splitlines()[0][:limit]


def on_gpu() -> bool:
    """Whether JAX's default backend is a GPU."""
    return jax.default_backend() == "gpu"


def torch_or_none() -> Any:
    """Returns the `torch` module, or `None` when it is not installed or fails to import."""
    try:
        import torch
    except Exception:  # noqa: BLE001 - any import failure means "no torch contender"
        return None
    return torch


def _git_commit() -> str:
    """The checked-out commit read from `.git` (no git command), or `"unknown"`.

    `.git` is a folder, or a file `gitdir: PATH` (a worktree or submodule checkout).
    """
    git = REPO_ROOT / ".git"
    try:
        if git.is_file():
            git = (REPO_ROOT / git.read_text().split(":", 1)[1].strip()).resolve()
        head = (git / "HEAD").read_text().strip()
        if not head.startswith("ref:"):
            return head[:12]
        ref = head.split(" ", 1)[1]
        common_dir = git
        if (git / "commondir").exists():  # a worktree keeps its refs in the main .git
            common_dir = (git / (git / "commondir").read_text().strip()).resolve()
        for root in (git, common_dir):
            if (root / ref).exists():
                return (root / ref).read_text().strip()[:12]
        for line in (common_dir / "packed-refs").read_text().splitlines():
            if line.endswith(ref):
                return line.split()[0][:12]
    except (OSError, IndexError):
        pass
    return "unknown"


def _cpu_model() -> str:
    """The CPU's model name and its vector extensions that matter here (Linux), else
    `platform.processor()`."""
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or "?"
    fields = {
        k.strip(): v.strip()
        for k, v in (line.split(":", 1) for line in info.splitlines() if ":" in line)
    }
    name = fields.get("model name", "?")
    flags = set(fields.get("flags", "").split())
    isa = [f for f in ("avx2", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16") if f in flags]
    return f"{name} ({', '.join(isa) or 'no AVX2'})"


def _load() -> str:
    try:
        return " / ".join(f"{v:.2f}" for v in os.getloadavg())
    except (AttributeError, OSError):
        return "?"


def environment() -> list[tuple[str, str]]:
    """Device and software versions, as `(name, value)` rows for the header of every table."""
    import flax
    import jaxlib
    import optax

    devices = jax.devices()
    dev = devices[0]
    try:
        platform_version = dev.client.platform_version
    except Exception:  # noqa: BLE001
        platform_version = "?"
    rows = [
        ("date (UTC)", datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M")),
        ("commit", _git_commit()),
        ("device", f"{dev.platform}: {dev.device_kind} × {len(devices)}"),
        ("backend", str(platform_version).splitlines()[0][:80]),
        ("host", f"{platform.node()} ({os.cpu_count()} CPUs, {platform.machine()})"),
        ("CPU", _cpu_model()),
        ("load average (1, 5, 15 min) at start", _load()),
        ("python", platform.python_version()),
        (
            "jax / jaxlib / flax / optax / numpy",
            f"{jax.__version__} / {jaxlib.__version__} / {flax.__version__} / "
            f"{optax.__version__} / {np.__version__}",
        ),
        ("XLA_FLAGS", os.environ.get("XLA_FLAGS", "") or "(none)"),
        ("OMP_WAIT_POLICY", os.environ.get("OMP_WAIT_POLICY", "") or "(unset)"),
    ]
    torch = torch_or_none()
    if torch is None:
        rows.append(("torch", "not installed"))
    else:
        desc = f"{torch.__version__}"
        if torch.cuda.is_available():
            desc += (
                f", CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}, "
                f"{torch.cuda.get_device_name(0)}"
            )
        else:
            desc += ", no CUDA (CPU)"
        rows.append(("torch", desc))
    return rows


def command_line(module: str) -> str:
    """The command that reproduces this run, e.g. `python -m benchmarks.ops --quick`."""
    return " ".join(["python", "-m", module, *map(shlex.quote, sys.argv[1:])])


# ---------------------------------------------------------------------------------------------
# Start and end of every script


def gpu_memory(*, fraction: float | None = None, preallocate: bool | None = None) -> None:
    """Sets how much GPU memory JAX takes; call before the first use of a device (read then).

    A value already in the environment wins.

    Args:
      fraction: of the GPU's memory to reserve (JAX's default 0.75): less leaves room for
        PyTorch in the same process.
      preallocate: `False` grows on demand, so that the device's peak memory is the program's.
    """
    if fraction is not None and not os.environ.get("XLA_CLIENT_MEM_FRACTION"):
        os.environ.setdefault("XLA_PYTHON_CLIENT_MEM_FRACTION", str(fraction))
    if preallocate is not None:
        os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", str(preallocate).lower())


def finish(
    out: str | os.PathLike[str] | None,
    *,
    module: str,
    title: str,
    env: list[tuple[str, str]],
    start: float,
    sections: Sequence[tuple[str, str]],
    headline: str,
    tables: Sequence[tuple[Sequence[str], Sequence[Sequence[Any]]]],
    notes: Sequence[str] = (),
) -> None:
    """The report tail of every script: the markdown file, then the compact tables printed last.

    Args:
      out: markdown path, or `None` to print only.
      module: the script's module (`benchmarks.ops`), for the command line in the file.
      title: the file's `#` heading.
      env: `environment()` rows (and measured facts); the wall time since `start` is appended.
      start: `time.perf_counter()` at the script's start.
      sections: `(heading, markdown body)` pairs for the file.
      headline: what the printed tables are, after the device's name.
      tables: `(headers, rows)` printed as fixed-width text (a run's output tail is its result).
      notes: lines printed after the tables (errors, skipped rows).
    """
    env.append(("wall time", f"{time.perf_counter() - start:.0f} s"))
    if out:
        path = write_markdown(
            out, title=title, command=command_line(module), env=env, sections=sections
        )
        log(f"wrote {path}")
    print(f"\n{dict(env)['device']}; {headline}")
    for i, (headers, rows) in enumerate(tables):
        print(("\n" if i else "") + text_table(headers, rows))
    for line in notes:
        print(line)


# ---------------------------------------------------------------------------------------------
# Timing


@dataclasses.dataclass(frozen=True)
class Timing:
    """Per-call times of one benchmarked function.

    Attributes:
      samples_s: seconds per call (one op on one input set), one entry per timed sample.
      sets: number of distinct input sets rotated through.
    """

    samples_s: tuple[float, ...]
    sets: int

    @property
    def median_ms(self) -> float:
        return 1e3 * float(np.median(self.samples_s))

    @property
    def spread_pct(self) -> float:
        """Interquartile range over the median, in percent."""
        q25, q50, q75 = np.percentile(self.samples_s, [25, 50, 75])
        return 100.0 * float(q75 - q25) / float(q50)

    @property
    def n(self) -> int:
        return len(self.samples_s)


def time_windows(run_window: Callable[[], float], windows: int) -> tuple[float, float]:
    """Median and interquartile spread (% of median) of `windows` calls of `run_window`, each
    returning per-step ms of one timed window of consecutive steps."""
    times = [run_window() for _ in range(windows)]
    q25, q50, q75 = np.percentile(times, [25, 50, 75])
    return float(q50), float(100 * (q75 - q25) / q50)


def timed_samples(
    run_once: Callable[[], float], budget_s: float, min_samples: int, max_samples: int
) -> list[float]:
    """Calls `run_once` (returns seconds) until the budget or `max_samples`, at least `min_samples`."""
    first = run_once()
    samples = [first]
    wanted = min_samples if first <= 0 else int(budget_s / first)
    wanted = max(min_samples, min(max_samples, wanted))
    while len(samples) < wanted:
        samples.append(run_once())
    return samples


def time_jax(
    fn: Callable[..., Any],
    arg_sets: Sequence[Sequence[jax.Array]],
    *,
    budget_s: float = 0.5,
    min_samples: int = 3,
    max_samples: int = 50,
    per_call: bool = False,
) -> Timing:
    """Median time of `fn` on device, one call per input set.

    The sets are distinct arrays (together larger than the L2 cache on a GPU), so no call reads
    its inputs from cache. By default all of them run in one `jit`, which keeps Python dispatch
    out of the time; with `per_call` `fn` is compiled alone and called once per set, as a
    training loop calls its step (dispatch counts; independent copies of `fn` cannot run
    interleaved in one program, which on a 2-core CPU made each fwd+bwd 3-4× slower). Each
    sample is the wall time of all `R` calls divided by `R`.

    Args:
      fn: traceable function of one input set, `fn(*arg_sets[i])`.
      arg_sets: `R` tuples of arrays.
      budget_s: seconds of timed samples to aim for (compilation and warm-up not counted).
      min_samples, max_samples: bounds on the number of timed samples.
      per_call: one compiled call per set instead of one program over all sets.

    Returns:
      A `Timing` with per-call seconds.
    """
    sets = [tuple(s) for s in arg_sets]
    if per_call:
        step = jax.jit(fn)

        def program(all_sets: list[tuple[jax.Array, ...]]) -> list[Any]:
            return [step(*s) for s in all_sets]

    else:
        program = jax.jit(lambda all_sets: [fn(*s) for s in all_sets])

    def run_once() -> float:
        start = time.perf_counter()
        out = program(sets)
        jax.block_until_ready(out)
        elapsed = time.perf_counter() - start
        del out
        return elapsed / len(sets)

    jax.block_until_ready(program(sets))  # compile + first run
    run_once()  # warm (allocator, autotuned plans)
    return Timing(tuple(timed_samples(run_once, budget_s, min_samples, max_samples)), len(sets))


def time_torch(
    fn: Callable[..., Any],
    arg_sets: Sequence[Sequence[Any]],
    *,
    budget_s: float = 0.5,
    min_samples: int = 3,
    max_samples: int = 50,
) -> Timing:
    """Median time of a PyTorch `fn`, timed with CUDA events on a GPU (host clock on the CPU).

    Each sample launches `fn` once per input set back to back (eager, so launch gaps count, as
    they do for a PyTorch user) and divides by the number of sets.
    """
    import torch

    sets = [tuple(s) for s in arg_sets]
    cuda = any(getattr(a, "is_cuda", False) for s in sets for a in s)

    def run_once() -> float:
        if cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            for s in sets:
                fn(*s)
            end.record()
            end.synchronize()
            return 1e-3 * start.elapsed_time(end) / len(sets)
        start_t = time.perf_counter()
        for s in sets:
            fn(*s)
        return (time.perf_counter() - start_t) / len(sets)

    for _ in range(2):  # warm-up: cudnn.benchmark autotuning, allocator
        for s in sets:
            fn(*s)
    if cuda:
        torch.cuda.synchronize()
    return Timing(tuple(timed_samples(run_once, budget_s, min_samples, max_samples)), len(sets))


def num_sets(bytes_per_set: int, *, max_sets: int, cache_bytes: int = L2_BYTES) -> int:
    """How many input sets to rotate so that together they are ≥ 3× the cache (at least 2)."""
    want = math.ceil(3 * cache_bytes / max(bytes_per_set, 1))
    return max(2, min(max_sets, want))


class Budget:
    """Shares a wall-clock budget between the rows still to measure.

    Compilation is not controllable, so each row gets a slice of what is left for its timed
    samples; when the budget is spent every row still gets `min_samples`.
    """

    def __init__(self, total_s: float, rows: int, *, share: float = 0.4, cap_s: float = 1.0):
        self.end = time.perf_counter() + total_s
        self.rows_left = max(rows, 1)
        self.share, self.cap_s = share, cap_s

    def next_row(self) -> float:
        """Seconds of timed samples for the next row."""
        left = max(0.0, self.end - time.perf_counter())
        slice_s = self.share * left / max(self.rows_left, 1)
        self.rows_left = max(self.rows_left - 1, 1)
        return min(self.cap_s, slice_s)

    def elapsed_left(self) -> float:
        return self.end - time.perf_counter()


def copy_bandwidth(nbytes: int | None = None, *, reps: int = 10) -> float:
    """Device memory bandwidth in bytes/s: an elementwise `x + 1` over a large float32 buffer.

    Counts the bytes read plus the bytes written (2 × `nbytes`), like the METHOD's copy. Uses
    1 GiB on a GPU and 64 MiB elsewhere unless `nbytes` is given.
    """
    if nbytes is None:
        nbytes = 2**30 if on_gpu() else 64 * 2**20
    x = jax.random.normal(jax.random.key(0), (nbytes // 4,), jnp.float32)
    one = jnp.ones((), jnp.float32)
    f = jax.jit(lambda a: a + one)
    jax.block_until_ready(f(x))
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        jax.block_until_ready(f(x))
        times.append(time.perf_counter() - start)
    return 2 * nbytes / float(np.median(times))


def peak_memory_bytes(device: Any = None) -> int | None:
    """`peak_bytes_in_use` of a JAX device where its backend reports it (GPU), else `None`."""
    device = device or jax.devices()[0]
    try:
        stats = device.memory_stats()
    except Exception:  # noqa: BLE001
        return None
    if not stats:
        return None
    return stats.get("peak_bytes_in_use")


# ---------------------------------------------------------------------------------------------
# Formatting and output


def fmt(value: float | None, digits: int = 3) -> str:
    """A number for a table: `—` for missing, otherwise about `digits` significant figures."""
    if value is None or not math.isfinite(value):
        return "—"
    mag = abs(value)
    if mag >= 10 ** (digits - 1):
        return f"{value:,.0f}"
    if mag == 0:
        return "0"
    decimals = max(0, digits - 1 - math.floor(math.log10(mag)))
    return f"{value:.{decimals}f}"


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub-markdown table."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def text_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A compact fixed-width table for the terminal (the device reply keeps only the tail)."""
    cells = [list(map(str, headers))] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    return "\n".join(
        "  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths)))
        for r in cells
    )


def write_markdown(
    path: str | os.PathLike[str],
    *,
    title: str,
    command: str,
    env: Sequence[tuple[str, str]],
    sections: Sequence[tuple[str, str]],
) -> Path:
    """Writes a results file: title, the command that made it, the environment, then sections.

    Args:
      path: where to write (parent folders are created).
      title: the `#` heading.
      command: the exact command line.
      env: `(name, value)` rows from `environment()` (and any extra measured facts).
      sections: `(heading, markdown body)` pairs.

    Returns:
      The path written.
    """
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    parts = [f"# {title}", "", f"Command: `{command}`", ""]
    parts += [markdown_table(["", ""], [(k, v) for k, v in env]), ""]
    for heading, body in sections:
        parts += [f"## {heading}", "", body.rstrip(), ""]
    out.write_text("\n".join(parts))
    return out


def log(message: str) -> None:
    """Progress to stderr (the final table goes to stdout)."""
    print(message, file=sys.stderr, flush=True)
