"""Helpers for the training tests: a tiny cifar10-format tfds dataset and the run's results."""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile

import numpy as np
import PIL.Image

from train import prepare_data

#: The repository root.
REPO = pathlib.Path(__file__).resolve().parents[1]
#: Examples in the tiny dataset's train split (4 steps per epoch at batch 16).
NUM_TRAIN = 64
#: Examples in its test split (not a multiple of 16: the last eval batch is padded).
NUM_TEST = 40
NUM_CLASSES = 10
CLASS_NAMES = tuple(f"class{c}" for c in range(NUM_CLASSES))

_cache: pathlib.Path | None = None


def run_python(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """`python *args` from the repository root, in this environment plus `env`; 300 s at most."""
    return subprocess.run(
        [sys.executable, *args],
        env=dict(os.environ, **(env or {})),
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
    )


# `python -m train` in a fresh interpreter; with STOP_AT=[epoch, index, signal] set, the process
# sends itself that signal when the data pipeline hands out that batch (the prefetch thread runs
# up to two batches ahead of the step).
_CLI_SCRIPT = """
import json, os, sys
from train import data, main

stop_at = json.loads(os.environ.get("STOP_AT", "null"))
original = data.train_batches

def train_batches(*args, epoch, start_step=0, **kwargs):
    for i, batch in enumerate(original(*args, epoch=epoch, start_step=start_step, **kwargs), start_step):
        if stop_at is not None and stop_at[:2] == [epoch, i]:
            os.kill(os.getpid(), stop_at[2])
        yield batch

data.train_batches = train_batches
sys.argv = ["train", *sys.argv[1:]]
main.run()
"""


def run_cli(
    workdir: str | pathlib.Path,
    overrides: dict[str, object],
    config: str = "train/configs/tiny.py",
    stop_at: tuple[int, int, int] | None = None,
) -> subprocess.CompletedProcess[str]:
    """`python -m train --config=CONFIG --workdir=WORKDIR --config.KEY=VALUE...` in a subprocess.

    Args:
      workdir: the run's directory.
      overrides: config keys and values.
      config: the config file.
      stop_at: `(epoch, batch index, signal number)`: the run signals itself there.
    """
    flags = [f"--config.{k}={v}" for k, v in overrides.items()]
    env = {"STOP_AT": json.dumps(None if stop_at is None else [int(v) for v in stop_at])}
    return run_python(
        "-c", _CLI_SCRIPT, f"--config={config}", f"--workdir={workdir}", *flags, env=env
    )


def write_image_folder(root: pathlib.Path, counts: dict[str, int], seed: int = 0) -> None:
    """Writes `root/<split>/class<c>/<i>.png`: noise plus a class-coloured 12×12 square.

    The class is learnable from the square's colour (one hue per class) wherever it sits.
    """
    rng = np.random.default_rng(seed)
    colours = (
        np.stack([np.roll([255, 128, 0], c % 3) for c in range(NUM_CLASSES)])
        + 23 * np.arange(NUM_CLASSES)[:, None]
    ) % 256
    for split, n in counts.items():
        for i in range(n):
            c = i % NUM_CLASSES
            image = rng.integers(0, 96, (32, 32, 3), dtype=np.uint8)
            y, x = rng.integers(0, 21, size=2)
            image[y : y + 12, x : x + 12] = colours[c].astype(np.uint8)
            folder = root / split / CLASS_NAMES[c]
            folder.mkdir(parents=True, exist_ok=True)
            PIL.Image.fromarray(image).save(folder / f"{i:04d}.png")


def tiny_dataset(tmp_path: pathlib.Path) -> str:
    """A tfds data dir under `tmp_path` holding the tiny "cifar10" (built once per process)."""
    global _cache
    if _cache is None:
        cache = pathlib.Path(tempfile.mkdtemp(prefix="tiny_cifar10_"))
        write_image_folder(cache / "images", {"train": NUM_TRAIN, "test": NUM_TEST})
        prepare_data.prepare(cache / "images", cache / "tfds", name="cifar10", log=lambda _: None)
        _cache = cache / "tfds"
    data_dir = pathlib.Path(tmp_path) / "tfds"
    shutil.copytree(_cache, data_dir)
    return str(data_dir)


def results(workdir: str | pathlib.Path) -> dict:
    """The run's `results.json`."""
    return json.loads((pathlib.Path(workdir) / "results.json").read_text())
