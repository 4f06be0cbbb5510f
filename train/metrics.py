"""The run's event log (`metrics.jsonl`, one JSON object a line) and its progress bar."""

from __future__ import annotations

import json
import math
import pathlib
import sys
import time
from collections.abc import Callable, Mapping
from typing import Any

import jax
import numpy as np
import tqdm

from train.atomic import write_text_atomic


class NonFiniteLossError(RuntimeError):
    """Training produced a non-finite loss, gradient or parameters; the bad state was not saved."""


def _jsonable(value: Any) -> Any:
    """Plain Python numbers (NaN/inf as strings, which strict JSON readers accept)."""
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


class MetricsLog:
    """Appends events to `<workdir>/metrics.jsonl`.

    Every event has `event` (`"train"`, `"eval"` or `"info"`) and `step`; see `trainer.py` for
    the fields of each.

    Args:
      path: the file (created if missing).
      enabled: False in the processes of a multi-process run other than the first: events are
        returned but not written, and `read` gives none. Defaults to True.
    """

    def __init__(self, path: str | pathlib.Path, enabled: bool = True):
        self.path = pathlib.Path(path)
        self.enabled = enabled
        if enabled:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.touch()

    def write(self, event: str, step: int, **fields: Any) -> dict[str, Any]:
        """Appends one event and returns it."""
        record = {"event": event, "step": int(step), **{k: _jsonable(v) for k, v in fields.items()}}
        if self.enabled:
            with self.path.open("a") as f:
                f.write(json.dumps(record) + "\n")
        return record

    def read(self) -> list[dict[str, Any]]:
        """All events so far, in order."""
        return read_events(self.path) if self.enabled else []

    def truncate_after(self, step: int) -> None:
        """Drops the events after `step` (from a run killed after its last checkpoint)."""
        if not self.enabled:
            return
        kept = [e for e in self.read() if e["step"] <= step]
        write_text_atomic(self.path, "".join(json.dumps(e) + "\n" for e in kept))


def read_events(path: str | pathlib.Path) -> list[dict[str, Any]]:
    """Reads a `metrics.jsonl` (a torn last line from a killed run is skipped)."""
    events = []
    for line in pathlib.Path(path).read_text().splitlines():
        try:
            events.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return events


def progress_bar(total: int, initial: int, enabled: bool) -> tqdm.tqdm:
    """A tqdm bar over steps on stderr; silent when disabled or stderr is not a terminal (CI)."""
    return tqdm.tqdm(
        total=total,
        initial=initial,
        unit="step",
        dynamic_ncols=True,
        file=sys.stderr,
        disable=None if enabled else True,
    )


def format_summary(record: Mapping[str, Any]) -> str:
    """A one-line human summary of an event, e.g. for the progress bar or the log."""
    parts = []
    for key, value in record.items():
        if key == "event":
            continue
        parts.append(f"{key}={value:.4g}" if isinstance(value, float) else f"{key}={value}")
    return " ".join(parts)


class TrainMeter:
    """Collects the step metrics on device and fetches them in groups: no host sync per step.

    `fetch` (at log, checkpoint and eval points) brings the pending steps' metrics to the host,
    raises `NonFiniteLossError` naming the first step whose loss or gradient norm is NaN/inf, and
    summarises them with the throughput since the clock last restarted (sync point to sync point,
    so it measures finished device work).

    Args:
      batch_size: the global batch size, for images/s.
    """

    def __init__(self, batch_size: int):
        self.batch_size = batch_size
        self.pending: list[tuple[int, Any]] = []
        self.train_s = 0.0
        self.train_steps = 0
        self._t = time.perf_counter()
        self._steps = 0

    def add(self, step: int, metrics: Any, timed: bool = True) -> None:
        """Records the metrics of (0-based) step `step`; `timed=False` for a compile step."""
        self.pending.append((step, metrics))
        self._steps += int(timed)

    def restart_clock(self) -> None:
        """Starts a new timing window (after compilation, eval or a checkpoint)."""
        self._t = time.perf_counter()
        self._steps = 0

    def fetch(self, last_good: Callable[[], str]) -> dict[str, float] | None:
        """Fetches and checks the pending metrics; returns their summary (None if none pending).

        Args:
          last_good: returns a description of the last good checkpoint, for the error message.

        Raises:
          NonFiniteLossError: a non-finite loss or gradient norm; the message names the step.
        """
        if not self.pending:
            return None
        host = jax.device_get([m for _, m in self.pending])
        for (step, _), m in zip(self.pending, host):
            for key in ("loss", "grad_norm"):
                if not math.isfinite(float(m[key])):
                    raise NonFiniteLossError(
                        f"{key} is {float(m[key])} at step {step} (0-based; learning rate "
                        f"{float(m['learning_rate']):.4g}); last good checkpoint: {last_good()}"
                    )
        summary = {
            "loss": float(np.mean([m["loss"] for m in host])),
            "accuracy": float(np.mean([m["accuracy"] for m in host])),
            "learning_rate": float(host[-1]["learning_rate"]),
            "grad_norm": float(host[-1]["grad_norm"]),
        }
        elapsed = time.perf_counter() - self._t
        if self._steps:
            summary["images_per_sec"] = self._steps * self.batch_size / elapsed
            summary["step_time_ms"] = 1e3 * elapsed / self._steps
            self.train_s += elapsed
            self.train_steps += self._steps
        self.pending.clear()
        self.restart_clock()
        return summary
