"""Checkpoints, interrupts and reruns: exact resume after SIGKILL, SIGINT/SIGTERM and a mid-epoch
stop; a finished run left intact; a different run refused; best/last-K; NaN and missing data.

One finished run (`finished`, module scope) is the reference every resumed run must reproduce
bit for bit, and the workdir the rerun tests copy.
"""

import hashlib
import json
import shutil
import signal

import _train_utils  # noqa: I001 - the tests' own helper module (tests/ is on sys.path)
import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from train import checkpoint, setup, trainer
from train.configs import tiny
from train.metrics import read_events

#: The runs' overrides of train/configs/tiny.py: 4 steps per epoch, 2 epochs, async checkpoints.
_OVERRIDES = dict(
    model="mobilenet_v1_tiny",
    num_devices=2,
    num_epochs=2,
    checkpoint_every_steps=2,
    log_every_steps=2,
    async_checkpointing=True,
    progress_bar=False,
)
_TOTAL = 2 * _train_utils.NUM_TRAIN // 16


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """`(data_dir, workdir, overrides)` of one uninterrupted run to the end."""
    root = tmp_path_factory.mktemp("runs")
    data_dir = _train_utils.tiny_dataset(root)
    # One persistent compilation cache for every run of this module: later runs skip compiling.
    overrides = dict(_OVERRIDES, data_dir=data_dir, compilation_cache_dir=str(root / "jax_cache"))
    workdir = root / "straight"
    run = _train_utils.run_cli(workdir, overrides)
    assert run.returncode == 0, run.stderr[-3000:]
    return data_dir, workdir, overrides


def _final_state(workdir):
    return checkpoint.Checkpoints(workdir / "checkpoints", keep=3).restore_arrays(_TOTAL)


def _config(data_dir, **overrides):
    config = tiny.get_config()
    config.update(_OVERRIDES)
    config.update(data_dir=str(data_dir), **overrides)
    return config


def _digest(workdir):
    """Every file under `workdir` → its sha256 (a workdir left untouched keeps it)."""
    return {
        str(p.relative_to(workdir)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(workdir.rglob("*"))
        if p.is_file()
    }


@pytest.mark.slow
def test_resume_after_sigkill_matches_an_uninterrupted_run(finished, tmp_path):
    """Kill mid-epoch (async checkpoints on), resume: the final state is bitwise the same.

    Tolerance: exact equality of every array (params, batch_stats, opt_state, rng, step). Both
    runs execute the same compiled programs on the same CPU, and resuming restores the state and
    the data position (epoch, step in epoch), so nothing may differ.
    """
    _, straight, overrides = finished
    workdir = tmp_path / "killed"
    killed = _train_utils.run_cli(workdir, overrides, stop_at=(1, 2, signal.SIGKILL))
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    assert not (workdir / "results.json").exists()
    latest = checkpoint.latest_step(workdir / "checkpoints")
    assert latest is not None and latest < _TOTAL

    resumed = _train_utils.run_cli(workdir, overrides)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    chex.assert_trees_all_equal(_final_state(straight), _final_state(workdir))
    # The log was cut back to the checkpoint and continued: one train event per logged step.
    events = read_events(workdir / "metrics.jsonl")
    train_steps = [e["step"] for e in events if e["event"] == "train"]
    assert train_steps == sorted(set(train_steps)) and train_steps[-1] == _TOTAL
    assert _train_utils.results(workdir)["resumed_from"] == latest


@pytest.mark.slow
def test_sigint_and_sigterm_save_at_the_step_and_resume_exactly(finished, tmp_path):
    """SIGINT, then SIGTERM in the resumed run: each saves a checkpoint at the step it reached,
    draws the curves, exits 130 / 143 with one line; the third start ends bitwise as the
    uninterrupted run (exact equality, as above)."""
    _, straight, overrides = finished
    workdir = tmp_path / "interrupted"
    reached = []
    for stop_at, code in (((0, 1, signal.SIGINT), 130), ((1, 2, signal.SIGTERM), 143)):
        run = _train_utils.run_cli(workdir, overrides, stop_at=stop_at)
        assert run.returncode == code, run.stderr[-3000:]
        last = run.stderr.strip().splitlines()[-1]
        step = int(last.split("interrupted at step ")[1].split(",")[0])
        assert last == f"interrupted at step {step}, rerun the same command to resume"
        assert "Traceback" not in run.stderr
        assert checkpoint.latest_step(workdir / "checkpoints") == step < _TOTAL
        assert (workdir / "curves.png").is_file() and not (workdir / "results.json").exists()
        reached.append(step)
    assert reached[0] < reached[1]
    resumed = _train_utils.run_cli(workdir, overrides)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert _train_utils.results(workdir)["resumed_from"] == reached[1]
    chex.assert_trees_all_equal(_final_state(straight), _final_state(workdir))


@pytest.mark.slow
def test_resume_from_a_mid_epoch_checkpoint_matches_an_uninterrupted_run(finished, tmp_path):
    """Stop at step 6 (`max_steps`: epoch 1, batch 2), continue without the limit: the final state
    equals the uninterrupted run's exactly, so the data resumes at the right batch (a resume
    one batch early or late trains on other examples). `max_steps` is operational: logged."""
    _, straight, overrides = finished
    workdir = tmp_path / "mid_epoch"
    first = _train_utils.run_cli(workdir, dict(overrides, max_steps=6))
    assert first.returncode == 0, first.stderr[-3000:]
    assert checkpoint.latest_step(workdir / "checkpoints") == 6
    second = _train_utils.run_cli(workdir, overrides)
    assert second.returncode == 0, second.stderr[-3000:]
    assert _train_utils.results(workdir)["resumed_from"] == 6
    chex.assert_trees_all_equal(_final_state(straight), _final_state(workdir))
    info = [e for e in read_events(workdir / "metrics.jsonl") if e["event"] == "info"][-1]
    assert info["config_changes"] == {"max_steps": [6, 0]}


def test_rerun_of_a_finished_run_says_so_and_keeps_its_results(finished, tmp_path):
    data_dir, straight, overrides = finished
    workdir = tmp_path / "rerun"
    shutil.copytree(straight, workdir)
    before = _digest(workdir)
    config = _config(data_dir, compilation_cache_dir=overrides["compilation_cache_dir"])
    results = trainer.train_and_evaluate(config, workdir)
    assert results == json.loads((straight / "results.json").read_text())
    assert results["train_images_per_sec"] is not None
    assert _digest(workdir) == before


def test_resume_with_other_run_defining_keys_refuses_and_touches_nothing(finished, tmp_path):
    """Run-defining keys refuse (one message naming each); operational ones are accepted."""
    data_dir, straight, overrides = finished
    workdir = tmp_path / "other"
    shutil.copytree(straight, workdir)
    before = _digest(workdir)
    config = _config(data_dir, model="mobilenet_v2_tiny", batch_size=8, log_every_steps=5)
    with pytest.raises(setup.ConfigError, match="other run-defining keys") as info:
        trainer.train_and_evaluate(config, workdir)
    message = str(info.value)
    assert "model ('mobilenet_v1_tiny' -> 'mobilenet_v2_tiny')" in message
    assert "batch_size (16 -> 8)" in message and "log_every_steps" not in message
    assert "\n" not in message
    assert _digest(workdir) == before


def test_checkpoints_keep_the_last_k_and_the_best(tmp_path):
    ckpts = checkpoint.Checkpoints(tmp_path, keep=2, async_save=False)
    state = {"w": jnp.arange(3.0)}
    for step, accuracy in [(1, 0.1), (2, 0.9), (3, 0.2), (4, None), (5, 0.3)]:
        ckpts.save(step, state, {"step": step}, test_accuracy=accuracy)
    ckpts.wait()
    assert ckpts.all_steps() == [2, 4, 5]
    assert ckpts.best_step() == 2 and checkpoint.latest_step(tmp_path) == 5
    restored, meta = ckpts.restore(5, state)
    assert meta == {"step": 5}
    np.testing.assert_array_equal(restored["w"], np.arange(3.0))
    ckpts.close()


def test_non_finite_loss_stops_with_the_step_and_keeps_the_last_good_checkpoint(tmp_path):
    data_dir = _train_utils.tiny_dataset(tmp_path)
    config = _config(
        data_dir,
        parallel="jit",
        learning_rate=1e30,
        warmup_epochs=0.0,
        checkpoint_every_steps=1,
        async_checkpointing=False,
        compilation_cache_dir="",
    )
    workdir = tmp_path / "run"
    with pytest.raises(trainer.NonFiniteLossError, match=r"is (nan|inf) at step \d+") as info:
        trainer.train_and_evaluate(config, workdir)
    assert "last good checkpoint:" in str(info.value)
    ckpts = checkpoint.Checkpoints(workdir / "checkpoints", keep=3)
    assert ckpts.all_steps(), "the good checkpoints before the failure are kept"
    bad_step = int(str(info.value).split(" at step ")[1].split()[0])
    assert max(ckpts.all_steps()) <= bad_step
    for s in ckpts.all_steps():
        params = ckpts.restore_arrays(s)["params"]
        assert all(np.all(np.isfinite(x)) for x in jax.tree.leaves(params))
    # A second start without resume refuses to mix runs in one workdir, and leaves it as it was.
    ckpts.close()
    before = _digest(workdir)
    config.resume = False
    with pytest.raises(setup.ConfigError, match="config.resume is False"):
        trainer.train_and_evaluate(config, workdir)
    assert _digest(workdir) == before


def test_bad_config_or_missing_data_fail_before_anything_is_written(tmp_path):
    """Each refused start names the key; no workdir (nor checkpoints/) is left behind."""
    workdir = tmp_path / "run"
    cases = [
        (dict(data_dir=str(tmp_path / "no_such_dir")), "dataset 'cifar10' not found"),
        (dict(data_dir=""), "config.data_dir is empty"),
        (dict(dtype="float16"), "config.dtype must be one of"),
        (dict(batch_size=15, parallel="shard_map"), "config.batch_size must be a positive mult"),
        (dict(model="resnet9"), "config.model='resnet9': unknown model"),
        (dict(model="mobilenet_v2_tiny_full", conv="separable"), "has conv='full'"),
        (dict(optimizer="lamb"), "config.optimizer must be one of"),
        (dict(num_devices=99), "config.num_devices must be in"),
        (dict(label_smoothing=1.5), "config.label_smoothing must be in"),
    ]
    for overrides, message in cases:
        config = _config(tmp_path, parallel="jit")
        config.update(overrides)
        with pytest.raises((setup.ConfigError, FileNotFoundError), match=message):
            trainer.train_and_evaluate(config, workdir)
        assert not workdir.exists(), overrides
