"""End-to-end test of `python -m train`: a tiny tfds-format dataset in, the run's files out."""

import json

import _train_utils  # noqa: I001 - the tests' own helper module (tests/ is on sys.path)
import pytest

from train.metrics import read_events


def _cli(*args):
    return _train_utils.run_python("-m", "train", "--config=train/configs/tiny.py", *args)


@pytest.mark.slow
def test_cli_trains_and_writes_metrics_curves_and_results(tmp_path):
    data_dir = _train_utils.tiny_dataset(tmp_path)
    workdir = tmp_path / "run"
    run = _cli(
        f"--workdir={workdir}",
        f"--config.data_dir={data_dir}",
        "--config.num_devices=2",
        "--config.log_every_steps=2",
    )
    assert run.returncode == 0, run.stderr[-3000:]

    events = read_events(workdir / "metrics.jsonl")
    kinds = {e["event"] for e in events}
    assert {"info", "train", "eval"} <= kinds
    evals = [e for e in events if e["event"] == "eval"]
    assert len(evals) == 2  # tiny.py: 2 epochs, eval every epoch
    assert (workdir / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    results = _train_utils.results(workdir)
    steps_per_epoch = _train_utils.NUM_TRAIN // 16
    assert results["steps"] == 2 * steps_per_epoch
    assert results["final_test_accuracy"] == evals[-1]["test_accuracy"]
    assert results["device_count"] == 2 and results["parallel"] == "shard_map"
    for key in ("params", "flops_per_image", "time_to_first_step_s", "train_images_per_sec"):
        assert results[key] > 0, key
    config = json.loads((workdir / "config.json").read_text())
    assert config["model"] == "mobilenet_v2_tiny" and config["num_devices"] == 2
    # The compilation cache is inside the workdir (the default's relative path), logged, and
    # recorded relative to the workdir.
    assert results["compilation_cache_dir"] == "jax_cache" and (workdir / "jax_cache").is_dir()
    assert f"compilation cache: {workdir / 'jax_cache'}" in run.stderr
    assert str(tmp_path) not in (workdir / "results.json").read_text()
    # Quiet without a terminal: no progress bar in captured output.
    assert "step/s" not in run.stderr and "it/s" not in run.stderr


@pytest.mark.slow
def test_cli_reports_a_missing_dataset_and_a_locked_config_in_one_line(tmp_path):
    """Errors a user can fix: one line, exit 1, no traceback, no workdir left behind."""
    workdir = tmp_path / "run"
    missing = _cli(f"--workdir={workdir}", f"--config.data_dir={tmp_path / 'nothing'}")
    assert missing.returncode == 1
    assert "Traceback" not in missing.stderr and "orbax" not in missing.stderr
    assert (
        missing.stderr.strip()
        .splitlines()[-1]
        .startswith("train: error: dataset 'cifar10' not found")
    ), missing.stderr[-2000:]
    assert not workdir.exists()
    typo = _cli(f"--workdir={workdir}", "--config.learning_rat=0.1")
    assert typo.returncode != 0 and "learning_rat" in typo.stderr


def test_help_shows_usage_flags_and_where_the_config_keys_are():
    run = _train_utils.run_python("-m", "train", "--help")  # absl's --help exits 1
    text = run.stdout + run.stderr
    for expected in (
        "usage: python -m train --config=train/configs/NAME.py --workdir=DIR",
        "train/configs/default.py lists every key",
        "--config.KEY=VALUE",
        "--workdir: Directory for checkpoints",
        "--config: A training config file",
    ):
        assert expected in text, expected
