"""The training-step benchmark's records: one configuration, its result, windowed step timing."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np

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


def time_windows(run_window: Callable[[], float], windows: int) -> tuple[float, float]:
    """Median and interquartile spread (% of median) of per-step ms over timed windows."""
    times = [run_window() for _ in range(windows)]
    q25, q50, q75 = np.percentile(times, [25, 50, 75])
    return float(q50), float(100 * (q75 - q25) / q50)
