"""Ctrl-C during `python -m train.prepare_data`'s decoding: a prompt exit, nothing written."""

import os
import signal
import subprocess
import sys
import time

import _train_utils  # noqa: I001 - the tests' own helper module (tests/ is on sys.path)
import pytest

# The CLI with the worker pool used from the first image (normally from 4096 on).
_SCRIPT = (
    "from absl import app; from train import prepare_data; "
    "prepare_data._MIN_IMAGES_FOR_POOL = 1; app.run(prepare_data.main)"
)


@pytest.mark.slow
def test_ctrl_c_while_decoding_exits_promptly_and_leaves_nothing(tmp_path):
    """SIGINT to the whole process group (what a terminal's Ctrl-C does) while the spawned
    decoding workers start: exit 130 within seconds with one line, no dataset or staging folder,
    no process of the group left."""
    images = tmp_path / "images"
    _train_utils.write_image_folder(images, {"train": 60, "test": 20})
    data_dir = tmp_path / "tfds"
    proc = subprocess.Popen(
        [sys.executable, "-u", "-c", _SCRIPT, f"--source={images}", f"--data_dir={data_dir}"]
        + ["--workers=2"],
        cwd=_train_utils.REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        line = proc.stdout.readline()
        assert line.startswith("read "), line + proc.stderr.read()[-2000:]
        time.sleep(0.5)  # the workers are starting (each imports the module)
        t = time.monotonic()
        os.killpg(proc.pid, signal.SIGINT)
        _, err = proc.communicate(timeout=60)
        elapsed = time.monotonic() - t
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130, err[-3000:]
    assert err.strip().splitlines()[-1] == "prepare_data: interrupted; no dataset was written"
    assert elapsed < 20, elapsed
    assert not data_dir.exists() or not any(data_dir.iterdir())
    time.sleep(0.5)
    ps = ["ps", "-o", "stat=,args=", "-g", str(proc.pid)]
    alive = [p for p in subprocess.run(ps, capture_output=True, text=True).stdout.splitlines()]
    assert all(p.strip().startswith("Z") for p in alive), alive  # no worker left running
