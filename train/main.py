"""Command line of the trainer: flags, quiet logging, one-line errors and signal exit codes.

Multi-process runs add `--coordinator_address=HOST:PORT --num_processes=N --process_id=I` (or
`--distributed` on a TPU/SLURM/Open MPI cluster): see `train/distributed.py`.
"""

import sys

from absl import app, flags
from ml_collections import config_flags

from train import data, distributed, setup
from train.quiet import quiet_libraries
from train.trainer import Interrupted, NonFiniteLossError, train_and_evaluate

#: What `python -m train --help` prints above the flags.
USAGE = """\
Trains a model on CIFAR-10 (or any tfds image dataset) and writes its results.

usage: python -m train --config=train/configs/NAME.py --workdir=DIR [--config.KEY=VALUE ...]

  --config     a config file; train/configs/default.py lists every key with its meaning, the
               other files there override a few (cifar10_quick.py: minutes on a CPU).
  --workdir    the run's directory: config.json, checkpoints/, metrics.jsonl, curves.png,
               results.json. Rerun the same command to resume an interrupted run.
  --config.KEY=VALUE   override one key, e.g. --config.data_dir=workdirs/tfds
               --config.batch_size=256 (`--helpfull` lists every --config.KEY flag).

Ctrl-C (SIGINT) or SIGTERM saves a checkpoint at the current step and exits 130 / 143.
"""

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
    "distributed_timeout_s", 300, "Seconds to wait for the coordinator and for all processes."
)


def main(argv: list[str]) -> None:
    """Runs `train_and_evaluate(config, workdir)`; errors a user can fix exit with one line."""
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    quiet_libraries()
    try:
        distributed.initialize(  # before any other JAX call
            coordinator_address=_COORDINATOR.value,
            num_processes=_NUM_PROCESSES.value,
            process_id=_PROCESS_ID.value,
            auto=_AUTO.value,
            timeout_s=_TIMEOUT.value,
        )
    except (ValueError, distributed.CoordinatorUnreachableError) as e:
        sys.exit(f"train: error: {e}")
    # Errors every process meets alike exit as usual; any other ends a process of several at once.
    with distributed.exit_on_error():
        try:
            train_and_evaluate(flags.FLAGS.config, _WORKDIR.value)
        except Interrupted as e:
            print(e, file=sys.stderr)
            sys.exit(e.exit_code)
        except (
            setup.ConfigError,
            data.DatasetNotFoundError,
            data.CorruptDatasetError,
            NonFiniteLossError,
        ) as e:
            sys.exit(f"train: error: {e}")
        except KeyboardInterrupt:  # before training started (data loading, compiling)
            print("interrupted before training started; rerun the same command", file=sys.stderr)
            sys.exit(130)


def run() -> None:
    """The console entry point."""
    app.run(main)


if __name__ == "__main__":
    run()
