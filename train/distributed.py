"""Multi-process JAX: starting `jax.distributed` safely, and the batch rows each process feeds.

One process per host (JAX's multi-controller runtime): every process runs the same program on
its own devices; the mesh spans the devices of all processes, and each process feeds only its
rows of each global batch. A single process needs none of this: `initialize` then does nothing.
"""

from __future__ import annotations

import contextlib
import os
import socket
import sys
import time
from collections.abc import Iterator, Sequence

import jax
import numpy as np
from absl import logging
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from train.parallel import AXIS

__all__ = [
    "CoordinatorUnreachableError",
    "exit_on_error",
    "initialize",
    "is_primary",
    "preempted",
    "process_rows",
]


class CoordinatorUnreachableError(TimeoutError):
    """No coordinator answered at `--coordinator_address` within the timeout."""


def _parse_address(address: str) -> tuple[str, int]:
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"--coordinator_address must be HOST:PORT, got {address!r}")
    return host.strip("[]"), int(port)


def _wait_for_coordinator(address: str, timeout_s: float) -> None:
    """Blocks until something accepts TCP connections at `address`, or raises.

    `jax.distributed.initialize` aborts the whole interpreter (a C++ fatal error, no Python
    exception) when the coordinator never answers; this check turns that into an error.
    """
    host, port = _parse_address(address)
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with socket.create_connection((host, port), timeout=min(1.0, timeout_s)):
                return
        except OSError as e:
            if time.monotonic() >= deadline:
                raise CoordinatorUnreachableError(
                    f"no coordinator answered at --coordinator_address={address} within "
                    f"{timeout_s:g} s ({type(e).__name__}: {e}); start process 0 with the same "
                    "address, or check the host, port and firewall"
                ) from None
            time.sleep(0.2)


def initialize(
    *,
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    auto: bool = False,
    timeout_s: int = 300,
) -> bool:
    """Starts `jax.distributed` if asked to; call it before any other JAX call.

    Args:
      coordinator_address: `HOST:PORT` where process 0 serves the coordinator.
      num_processes: the number of processes, `N >= 1`.
      process_id: this process's index in `[0, N)`.
      auto: start even with the three above unset, letting JAX detect them from the cluster
        (TPU pod slice, SLURM, Open MPI). Defaults to False.
      timeout_s: seconds to wait for the coordinator and for the other processes. Defaults to
        300.

    Returns:
      Whether `jax.distributed` was started (False: a single process, nothing given).

    Raises:
      ValueError: some but not all of the three given (without `auto`), `num_processes < 1`,
        `process_id` outside `[0, num_processes)`, or a malformed address.
      CoordinatorUnreachableError: a process other than 0 found no coordinator in time.
    """
    given = {
        "coordinator_address": coordinator_address,
        "num_processes": num_processes,
        "process_id": process_id,
    }
    if not auto and all(v is None for v in given.values()):
        return False
    if timeout_s < 1:
        raise ValueError(f"--distributed_timeout_s must be >= 1, got {timeout_s}")
    if num_processes is not None and num_processes < 1:
        raise ValueError(f"--num_processes must be >= 1, got {num_processes}")
    if process_id is not None and (
        process_id < 0 or (num_processes is not None and process_id >= num_processes)
    ):
        raise ValueError(
            f"--process_id must be in [0, {num_processes}) (--num_processes={num_processes}), "
            f"got {process_id}"
        )
    if not auto and None in given.values():
        missing = [f"--{k}" for k, v in given.items() if v is None]
        raise ValueError(
            "--coordinator_address, --num_processes and --process_id go together (or pass "
            f"--distributed to detect them on a TPU/SLURM/Open MPI cluster); missing {missing}"
        )
    if coordinator_address is not None:
        _parse_address(coordinator_address)
        if process_id not in (None, 0):
            _wait_for_coordinator(coordinator_address, timeout_s)
    logging.info(
        "jax.distributed: process %s of %s, coordinator %s (waiting up to %d s for all)",
        process_id,
        num_processes,
        coordinator_address,
        timeout_s,
    )
    jax.distributed.initialize(
        coordinator_address=coordinator_address,
        num_processes=num_processes,
        process_id=process_id,
        initialization_timeout=timeout_s,
    )
    return True


@contextlib.contextmanager
def exit_on_error() -> Iterator[None]:
    """In a multi-process run, an exception ends this process at once (exit status 1).

    Otherwise the interpreter's exit would wait in `jax.distributed.shutdown` for the other
    processes (minutes), which are themselves blocked waiting for this one in a collective.
    With one process the exception propagates as usual.
    """
    try:
        yield
    except Exception:
        if jax.process_count() == 1:
            raise
        logging.exception("process %d failed; exiting", jax.process_index())
        logging.flush()
        sys.stderr.flush()
        os._exit(1)


def preempted(step: int) -> bool:
    """Several processes: True in all of them at one same step once any received SIGTERM.

    JAX's preemption service (on with `jax.distributed`) catches SIGTERM and agrees on the
    step after the largest any process reported; call this after every step, in every process.
    With one process: False (the trainer's own signal handler serves).
    """
    return jax.process_count() > 1 and multihost_utils.reached_preemption_sync_point(step)


def is_primary() -> bool:
    """True in the process that writes the run's logs, plots and results (process 0)."""
    return jax.process_index() == 0


def process_rows(devices: Sequence[jax.Device], batch_size: int) -> slice:
    """The rows of a global batch split over `devices` (a 1-D mesh) that this process feeds.

    Args:
      devices: the mesh's devices, in mesh order (those of all processes).
      batch_size: the global batch size, a multiple of `len(devices)`.

    Returns:
      A contiguous `slice` of `range(batch_size)`: the shards of this process's devices.

    Raises:
      ValueError: this process's shards are not contiguous in the mesh order.
    """
    sharding = NamedSharding(Mesh(np.asarray(devices), (AXIS,)), P(AXIS))
    shards = sorted(
        (index[0].start or 0, index[0].stop or batch_size)
        for index in sharding.addressable_devices_indices_map((batch_size,)).values()
    )
    start, stop = shards[0][0], shards[-1][1]
    if sum(b - a for a, b in shards) != stop - start:
        raise ValueError(
            f"process {jax.process_index()} holds rows {shards} of the batch: not contiguous; "
            "order the mesh's devices by process"
        )
    return slice(start, stop)
