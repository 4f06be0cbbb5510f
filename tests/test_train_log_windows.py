"""Runs whose length is not a whole number of log windows: both multi-device drivers log them."""

import _train_utils  # noqa: I001 - the tests' own helper module (tests/ is on sys.path)
import pytest

from train import trainer
from train.configs import tiny
from train.metrics import read_events


@pytest.mark.slow
@pytest.mark.parametrize("parallel", ["shard_map", "pmap"])
def test_runs_shorter_than_and_not_a_multiple_of_a_log_window(tmp_path, parallel):
    """3 steps logged every 5 (one partial window), then resumed to 5 logged every 2.

    The second run logs at 4 (a full window) and 5 (a partial one) and evaluates at the epoch
    end (4) and the last step.

    The final flush of a partial window must read the per-device metrics of either driver
    (pmap's carry a leading device axis).
    """
    config = tiny.get_config()
    config.update(
        data_dir=_train_utils.tiny_dataset(tmp_path),
        parallel=parallel,
        num_devices=2,
        max_steps=3,
        log_every_steps=5,
        checkpoint_every_steps=100,
        progress_bar=False,
    )
    workdir = tmp_path / "run"
    assert trainer.train_and_evaluate(config, workdir)["steps"] == 3
    config.update(max_steps=5, log_every_steps=2)
    results = trainer.train_and_evaluate(config, workdir)
    assert results["steps"] == 5 and results["resumed_from"] == 3
    events = read_events(workdir / "metrics.jsonl")
    assert [e["step"] for e in events if e["event"] == "train"] == [3, 4, 5]
    assert [e["step"] for e in events if e["event"] == "eval"] == [3, 4, 5]
    for e in events:
        if e["event"] == "train":
            assert isinstance(e["loss"], float) and isinstance(e["grad_norm"], float)
