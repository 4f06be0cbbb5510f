"""Command line: `python -m train --config=train/configs/NAME.py --workdir=DIR [--config.KEY=VALUE]`.

Multi-process runs add `--coordinator_address=HOST:PORT --num_processes=N --process_id=I` (or
`--distributed` on a TPU/SLURM/Open MPI cluster): see `train/distributed.py`.
"""

import logging

from absl import app, flags
from ml_collections import config_flags

from train import distributed
from train.trainer import train_and_evaluate

_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, logs and results.")
config_flags.DEFINE_config_file(
    "config", None, "A training config file (see train/configs/).", lock_config=True
)
flags.mark_flags_as_required(["config", "workdir"])

_COORDINATOR = flags.DEFINE_string(
    "coordinator_address",
    None,
    "HOST:PORT of process 0's coordinator (multi-process runs; process 0 listens there).",
)
_NUM_PROCESSES = flags.DEFINE_integer(
    "num_processes", None, "Number of processes of a multi-process run (one per host)."
)
_PROCESS_ID = flags.DEFINE_integer(
    "process_id", None, "This process's index in [0, num_processes)."
)
_AUTO = flags.DEFINE_bool(
    "distributed",
    False,
    "Start jax.distributed, detecting what the three flags above leave unset from the cluster "
    "(TPU pod slice, SLURM, Open MPI).",
)
_TIMEOUT = flags.DEFINE_integer(
    "distributed_timeout_s",
    300,
    "Seconds to wait for the coordinator and for all processes to join.",
)


class _QuietOrbax(logging.Filter):
    """Drops orbax's INFO chatter (a dozen lines per checkpoint); its warnings still show."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING or "/orbax/" not in record.pathname


def main(argv: list[str]) -> None:
    """Parses the flags and runs `train_and_evaluate(config, workdir)`."""
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    logging.getLogger("absl").addFilter(_QuietOrbax())
    distributed.initialize(  # before any other JAX call
        coordinator_address=_COORDINATOR.value,
        num_processes=_NUM_PROCESSES.value,
        process_id=_PROCESS_ID.value,
        auto=_AUTO.value,
        timeout_s=_TIMEOUT.value,
    )
    with distributed.exit_on_error():
        train_and_evaluate(flags.FLAGS.config, _WORKDIR.value)


def run() -> None:
    """The console entry point."""
    app.run(main)


if __name__ == "__main__":
    run()
