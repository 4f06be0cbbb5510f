"""Orbax checkpoints of the train state: atomic, the last K kept plus the best by test accuracy.

Layout: `<workdir>/checkpoints/<step>/{state,meta[,metrics]}`. Orbax writes each step into
`<step>.orbax-checkpoint-tmp-<timestamp>` and renames it to `<step>` once complete
(`AtomicRenameTemporaryPath`, its default on local file systems), so a killed run leaves either a
complete checkpoint or a tmp directory that is ignored and removed on the next start
(`cleanup_tmp_directories=True`).
"""

from __future__ import annotations

import logging
import pathlib
from typing import Any

import jax
import orbax.checkpoint as ocp
from jax.sharding import SingleDeviceSharding
from orbax.checkpoint import checkpoint_managers as policies

#: The metric the best checkpoint is chosen by.
BEST_METRIC = "test_accuracy"


class _WithoutMetricsFilter(logging.Filter):
    """Drops orbax's warning for each save without metrics: mid-epoch checkpoints have none by
    design (only evaluated ones compete for "best")."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "did not provide metrics" not in record.getMessage()


logging.getLogger("absl").addFilter(_WithoutMetricsFilter())


def _best_metric(metrics: dict[str, float]) -> float:
    return float(metrics[BEST_METRIC])


def latest_step(directory: str | pathlib.Path) -> int | None:
    """The step of the newest complete checkpoint under `directory`, or `None`; creates nothing.

    Complete checkpoints are the folders named by their step alone (orbax renames its
    `<step>.orbax-checkpoint-tmp-*` folder into place once the save is whole).
    """
    directory = pathlib.Path(directory)
    if not directory.is_dir():
        return None
    steps = [int(p.name) for p in directory.iterdir() if p.name.isdigit() and p.is_dir()]
    return max(steps, default=None)


class Checkpoints:
    """The run's checkpoint directory.

    Args:
      directory: where checkpoints go (created if missing).
      keep: how many of the most recent checkpoints to keep; the one with the best
        `test_accuracy` is kept as well.
      async_save: write in a background thread (the device-to-host copy still happens in `save`).

    Raises:
      ValueError: `keep < 1`.
    """

    def __init__(self, directory: str | pathlib.Path, *, keep: int, async_save: bool = True):
        if keep < 1:
            raise ValueError(f"config.keep_checkpoints must be >= 1, got {keep}")
        preservation = policies.AnyPreservationPolicy(
            [
                policies.LatestN(n=keep),
                policies.BestN(
                    get_metric_fn=_best_metric, n=1, keep_checkpoints_without_metrics=False
                ),
            ]
        )
        options = ocp.CheckpointManagerOptions(
            best_fn=_best_metric,
            best_mode="max",
            preservation_policy=preservation,
            cleanup_tmp_directories=True,
            enable_async_checkpointing=async_save,
            create=True,
        )
        self.directory = pathlib.Path(directory).absolute()
        self._manager = ocp.CheckpointManager(
            self.directory, item_names=("state", "meta"), options=options
        )

    def latest_step(self) -> int | None:
        """The most recent complete checkpoint's step, or `None`."""
        return self._manager.latest_step()

    def best_step(self) -> int | None:
        """The step of the checkpoint with the best test accuracy, or `None`."""
        return self._manager.best_step()

    def all_steps(self) -> list[int]:
        """The steps of the complete checkpoints kept."""
        return sorted(self._manager.all_steps())

    def path(self, step: int) -> pathlib.Path:
        """The directory of the checkpoint at `step`."""
        return self.directory / str(step)

    def save(
        self,
        step: int,
        state: Any,
        meta: dict[str, Any],
        test_accuracy: float | None = None,
    ) -> None:
        """Saves `state` and the JSON-able `meta` at `step` (no-op if that step exists).

        Args:
          step: the train step the state has reached.
          state: the train state (a single copy: see `Driver.get_state`).
          meta: JSON-able facts to keep with it (epoch, config, best so far).
          test_accuracy: the test accuracy of `state` if it was evaluated; only such checkpoints
            compete for "best".
        """
        if step in self._manager.all_steps():
            return
        metrics = None if test_accuracy is None else {BEST_METRIC: float(test_accuracy)}
        self._manager.save(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)
            ),
            metrics=metrics,
        )

    def restore(self, step: int, target: Any) -> tuple[Any, dict[str, Any]]:
        """Restores the state (with `target`'s structure, shapes, dtypes, shardings) and meta.

        Args:
          step: the checkpoint to read.
          target: a state of the right structure, e.g. the freshly initialised one.

        Returns:
          `(state, meta)`.
        """
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, target)
        restored = self._manager.restore(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore()
            ),
        )
        return restored.state, dict(restored.meta)

    def restore_arrays(self, step: int) -> dict[str, Any]:
        """Reads the state at `step` as nested dicts of arrays on one device, without a target.

        For inspection (notebooks, tests): needs neither the model nor the run's device count.
        """
        path = self.path(step) / "state"
        checkpointer = ocp.StandardCheckpointer()
        tree = checkpointer.metadata(path).item_metadata
        device = jax.local_devices()[0]
        target = jax.tree.map(
            lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=SingleDeviceSharding(device)),
            dict(tree),
        )
        return checkpointer.restore(path, target)

    def wait(self) -> None:
        """Blocks until pending asynchronous saves are complete on disk."""
        self._manager.wait_until_finished()

    def close(self) -> None:
        """Waits for pending saves and releases the manager."""
        self._manager.close()
