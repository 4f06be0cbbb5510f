"""Leaves the terminal to the project's own progress: the libraries' INFO lines are dropped."""

import logging


class _QuietLibraries(logging.Filter):
    """Drops the INFO records of orbax (a dozen lines per checkpoint) and tensorflow-datasets
    ("Load dataset info", "fields ... differ on disk and in the code", "Done writing");
    their warnings still show."""

    def filter(self, record: logging.LogRecord) -> bool:
        path = record.pathname
        quiet = "/orbax/" in path or "/tensorflow_datasets/" in path
        return record.levelno >= logging.WARNING or not quiet


def quiet_libraries() -> None:
    """Installs the filter on absl's logger (the libraries log through it) and raises JAX's
    backend logger to WARNING ("Unable to initialize backend 'tpu'" on every machine without
    one is INFO)."""
    logging.getLogger("absl").addFilter(_QuietLibraries())
    logging.getLogger("jax._src.xla_bridge").setLevel(logging.WARNING)
