"""The table of where `implementation="auto"` leaves XLA's grouped conv, per backend and shape.

A leaf of data (it imports nothing of the package), read by `_routing` and open to any path
that needs a per-backend choice. One row per decision measured to pay; a backend, op or shape
without a row keeps XLA's convolution. Measurements behind the rows are kept in
`benchmarks/results/` (`ops_cpu.md`, `kernel-notes.md`), not here.

To add an entry: append an `AutoRoute` to `AUTO_ROUTES`, e.g.
`AutoRoute("gpu", "depthwise", "pallas", shapes=frozenset({(8, 8, 512, 3, 3, 1, 1, 1, 1,
"bfloat16")}), min_batch=128)` for the depthwise kernel on one measured shape (the key is
`kernels.shape_key`). A new `op` name is read by whoever calls `lookup` with it.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import NamedTuple


class AutoRoute(NamedTuple):
    """One row of `AUTO_ROUTES`.

    Attributes:
      backend: the `jax.default_backend()` the row applies to: `"cpu"`, `"gpu"` or `"tpu"`.
      op: `"depthwise"` (every depthwise conv, including the depthwise step of an unfused
        separable conv) or `"fused"` (a separable conv as one kernel).
      path: where `auto` sends it: `"taps"` (depthwise only) or `"pallas"`.
      shapes: the shape keys the row covers (see the caller's key), or `None` for every shape.
      min_batch: the smallest batch the row covers. Defaults to 1.
    """

    backend: str
    op: str
    path: str
    shapes: frozenset[Hashable] | None = None
    min_batch: int = 1


#: Measured on a 2-core AMD EPYC (AVX-512): the sum over taps beats XLA:CPU's grouped conv 4–62×
#: on every shape of `benchmarks/results/ops_cpu.md` (up to MobileNetV2-CIFAR's 32×32×32×144 at
#: batch 32), forward and backward, float32 and bfloat16. With its batch-chunked backward the
#: MobileNetV2-CIFAR float32 training step runs at 0.64× PyTorch's speed there
#: (`train_step_cpu.md`; 0.36× with the whole-batch backward, same command and machine). No GPU
#: kernel has won twice yet.
AUTO_ROUTES: tuple[AutoRoute, ...] = (AutoRoute("cpu", "depthwise", "taps"),)


def lookup(
    backend: str,
    op: str,
    batch: int,
    key: Callable[[], Hashable],
    routes: tuple[AutoRoute, ...] | None = None,
) -> str | None:
    """The path of the first row for `backend` and `op` that covers this call, else `None`.

    Args:
      backend: `jax.default_backend()`.
      op: the row's `op`.
      batch: the call's batch size.
      key: computes the call's shape key, called only when a row lists shapes.
      routes: the table to read. Defaults to `AUTO_ROUTES` (as it is at call time).
    """
    for row in AUTO_ROUTES if routes is None else routes:
        if row.backend != backend or row.op != op or batch < row.min_batch:
            continue
        if row.shapes is None or key() in row.shapes:
            return row.path
    return None
