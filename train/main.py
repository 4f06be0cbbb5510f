"""Command line: `python -m train --config=train/configs/NAME.py --workdir=DIR [--config.KEY=VALUE]`."""

import logging

from absl import app, flags
from ml_collections import config_flags

from train.trainer import train_and_evaluate

_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, logs and results.")
config_flags.DEFINE_config_file(
    "config", None, "A training config file (see train/configs/).", lock_config=True
)
flags.mark_flags_as_required(["config", "workdir"])


class _QuietOrbax(logging.Filter):
    """Drops orbax's INFO chatter (a dozen lines per checkpoint); its warnings still show."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING or "/orbax/" not in record.pathname


def main(argv: list[str]) -> None:
    """Parses the flags and runs `train_and_evaluate(config, workdir)`."""
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    logging.getLogger("absl").addFilter(_QuietOrbax())
    train_and_evaluate(flags.FLAGS.config, _WORKDIR.value)


def run() -> None:
    """The console entry point."""
    app.run(main)


if __name__ == "__main__":
    run()
