"""Local launcher: `python -m train.launch --num_processes=N -- ARGS` runs one job as N processes.

Starts `python -m train ARGS --coordinator_address=127.0.0.1:PORT --num_processes=N
--process_id=I` for each `I` on this machine (a free port), prints their output line by line
prefixed with `[I]`, and exits 0 once all succeed. If one fails, the launcher says which and
how, stops the others (SIGTERM, then SIGKILL) and exits 1. For tests and for trying a
multi-process run on one machine; clusters start one process per host themselves (README).
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from typing import TextIO

from absl import app, flags

__all__ = ["child_env", "free_port", "launch"]

_DEVICE_FLAG = "--xla_force_host_platform_device_count"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listened on a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def child_env(
    devices_per_process: int | None, base: dict[str, str] | None = None
) -> dict[str, str]:
    """The environment of each process: `base` (default: this one), with K CPU devices if given."""
    env = dict(os.environ if base is None else base)
    if devices_per_process is not None:
        if devices_per_process < 1:
            raise ValueError(f"--devices_per_process must be >= 1, got {devices_per_process}")
        xla = re.sub(rf"{_DEVICE_FLAG}=\S*", "", env.get("XLA_FLAGS", ""))
        env["XLA_FLAGS"] = f"{xla} {_DEVICE_FLAG}={devices_per_process}".strip()
        env["JAX_PLATFORMS"] = "cpu"
    return env


def _describe(code: int) -> str:
    if code < 0:
        return f"was killed by {signal.Signals(-code).name}"
    return f"exited with code {code}"


def launch(
    args: Sequence[str],
    *,
    num_processes: int,
    devices_per_process: int | None = None,
    module: str = "train",
    grace_s: float = 10.0,
    out: TextIO | None = None,
) -> int:
    """Runs `python -m module ARGS` as `num_processes` cooperating processes; returns 0 or 1.

    Args:
      args: the arguments every process gets (the usual `python -m train` ones).
      num_processes: `N >= 1`.
      devices_per_process: simulated CPU devices per process, or None (the environment's).
      module: the module to run. Defaults to `"train"`.
      grace_s: after a failure, how long the others get to exit on SIGTERM before SIGKILL.
      out: where the prefixed output goes. Defaults to stdout.

    Returns:
      0 if every process exited with 0, else 1 (the first failure is reported in `out`).

    Raises:
      ValueError: `num_processes < 1` or `devices_per_process < 1`.
    """
    if num_processes < 1:
        raise ValueError(f"--num_processes must be >= 1, got {num_processes}")
    out = out or sys.stdout
    env = child_env(devices_per_process)
    address = f"127.0.0.1:{free_port()}"
    lock = threading.Lock()

    def say(line: str) -> None:
        with lock:
            out.write(line)
            out.flush()

    def pump(i: int, stream: TextIO) -> None:
        for line in stream:
            say(f"[{i}] {line}")

    procs, pumps = [], []
    for i in range(num_processes):
        command = [sys.executable, "-u", "-m", module, *args]
        command += [
            f"--coordinator_address={address}",
            f"--num_processes={num_processes}",
            f"--process_id={i}",
        ]
        proc = subprocess.Popen(
            command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        procs.append(proc)
        pumps.append(threading.Thread(target=pump, args=(i, proc.stdout), daemon=True))
        pumps[-1].start()
        say(f"[launch] process {i}: pid {proc.pid}, coordinator {address}\n")
    failed = None
    try:
        while failed is None and any(p.poll() is None for p in procs):
            failed = next((i for i, p in enumerate(procs) if p.poll()), None)
            time.sleep(0.05)
        failed = next((i for i, p in enumerate(procs) if p.poll()), failed)
    finally:
        if failed is not None or any(p.poll() is None for p in procs):
            _stop(procs, grace_s)
        for t in pumps:
            t.join(timeout=5)
    if failed is None:
        say(f"[launch] all {num_processes} processes finished\n")
        return 0
    say(
        f"[launch] process {failed} {_describe(procs[failed].returncode)}; stopped the others "
        f"({', '.join(f'{i}: {_describe(p.returncode)}' for i, p in enumerate(procs))})\n"
    )
    return 1


def _stop(procs: list[subprocess.Popen], grace_s: float) -> None:
    """SIGTERM to those still running, SIGKILL to those still running `grace_s` later."""
    for p in procs:
        if p.poll() is None:
            p.terminate()
    deadline = time.monotonic() + grace_s
    for p in procs:
        try:
            p.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def _main() -> None:
    """Parses the launcher's flags (defined here only: importing the module defines none)."""
    _NUM_PROCESSES = flags.DEFINE_integer("num_processes", 2, "How many processes to start.")
    _DEVICES = flags.DEFINE_integer(
        "devices_per_process",
        None,
        "Simulated CPU devices per process (sets JAX_PLATFORMS=cpu and XLA's host device count); "
        "default: what the environment gives each process.",
    )
    _MODULE = flags.DEFINE_string("module", "train", "The module each process runs (`python -m`).")
    _GRACE = flags.DEFINE_float(
        "grace_s",
        10.0,
        "After a failure, seconds the others get to exit on SIGTERM before SIGKILL.",
    )

    def main(argv: list[str]) -> None:
        sys.exit(
            launch(
                argv[1:],
                num_processes=_NUM_PROCESSES.value,
                devices_per_process=_DEVICES.value,
                module=_MODULE.value,
                grace_s=_GRACE.value,
            )
        )

    app.run(main)


if __name__ == "__main__":
    _main()
