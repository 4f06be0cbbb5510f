"""Tests for checkpoints and failures: exact resume after SIGKILL, best/last-K, NaN and missing data."""

import signal
import textwrap

import _train_utils  # noqa: I001 - the tests' own helper module (tests/ is on sys.path)
import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from train import checkpoint, trainer
from train.configs import tiny
from train.metrics import read_events

# Runs training in a fresh interpreter; with KILL_AT=(epoch, index) set, SIGKILLs itself when
# the data pipeline hands out that batch: mid-epoch, after the previous epoch's checkpoint.
_SCRIPT = textwrap.dedent(
    """
    import json, os, signal, sys
    from train import data, trainer

    kill_at = json.loads(os.environ.get("KILL_AT", "null"))
    original = data.train_batches

    def train_batches(*args, epoch, start_step=0, **kwargs):
        batches = original(*args, epoch=epoch, start_step=start_step, **kwargs)
        for i, batch in enumerate(batches, start_step):
            if kill_at == [epoch, i]:
                os.kill(os.getpid(), signal.SIGKILL)
            yield batch

    data.train_batches = train_batches
    import ml_collections
    config = ml_collections.ConfigDict(json.loads(sys.argv[1]))
    trainer.train_and_evaluate(config, sys.argv[2])
    """
)


def _config(data_dir, **overrides):
    config = tiny.get_config()
    config.update(
        model="mobilenet_v1_tiny",
        data_dir=str(data_dir),
        num_devices=2,
        num_epochs=3,
        checkpoint_every_steps=2,
        log_every_steps=2,
        progress_bar=False,
    )
    config.update(overrides)
    return config


def _train_subprocess(config, workdir, kill_at=None):
    kill = "null" if kill_at is None else f"[{kill_at[0]}, {kill_at[1]}]"
    return _train_utils.run_python(
        "-c", _SCRIPT, config.to_json(), str(workdir), env={"KILL_AT": kill}
    )


@pytest.mark.slow
def test_resume_after_sigkill_matches_an_uninterrupted_run(tmp_path):
    """Kill mid-epoch (async checkpoints on), resume: the final state is bitwise the same.

    Tolerance: exact equality of every array (params, batch_stats, opt_state, rng, step). Both
    runs execute the same compiled programs on the same CPU, and resuming restores the state and
    the data position (epoch, step in epoch), so nothing may differ.
    """
    data_dir = _train_utils.tiny_dataset(tmp_path)
    # One persistent compilation cache for the three runs: the second and third skip compiling.
    config = _config(
        data_dir, async_checkpointing=True, compilation_cache_dir=str(tmp_path / "jax_cache")
    )
    steps_per_epoch = _train_utils.NUM_TRAIN // config.batch_size
    total = config.num_epochs * steps_per_epoch

    straight = _train_subprocess(config, tmp_path / "straight")
    assert straight.returncode == 0, straight.stderr[-3000:]

    killed = _train_subprocess(config, tmp_path / "killed", kill_at=(1, 2))
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    assert not (tmp_path / "killed" / "results.json").exists()
    ckpts = checkpoint.Checkpoints(tmp_path / "killed" / "checkpoints", keep=3)
    assert ckpts.latest_step() is not None and ckpts.latest_step() < total

    resumed = _train_subprocess(config, tmp_path / "killed")
    assert resumed.returncode == 0, resumed.stderr[-3000:]

    a = checkpoint.Checkpoints(tmp_path / "straight" / "checkpoints", keep=3).restore_arrays(total)
    b = checkpoint.Checkpoints(tmp_path / "killed" / "checkpoints", keep=3).restore_arrays(total)
    chex.assert_trees_all_equal(a, b)
    # The log was cut back to the checkpoint and continued: one train event per logged step.
    events = read_events(tmp_path / "killed" / "metrics.jsonl")
    train_steps = [e["step"] for e in events if e["event"] == "train"]
    assert train_steps == sorted(set(train_steps)) and train_steps[-1] == total
    assert _train_utils.results(tmp_path / "killed")["resumed_from"] is not None


def test_checkpoints_keep_the_last_k_and_the_best(tmp_path):
    ckpts = checkpoint.Checkpoints(tmp_path, keep=2, async_save=False)
    state = {"w": jnp.arange(3.0)}
    for step, accuracy in [(1, 0.1), (2, 0.9), (3, 0.2), (4, None), (5, 0.3)]:
        ckpts.save(step, state, {"step": step}, test_accuracy=accuracy)
    ckpts.wait()
    assert ckpts.all_steps() == [2, 4, 5]
    assert ckpts.best_step() == 2
    restored, meta = ckpts.restore(5, state)
    assert meta == {"step": 5}
    np.testing.assert_array_equal(restored["w"], np.arange(3.0))
    ckpts.close()


def test_non_finite_loss_stops_with_the_step_and_keeps_the_last_good_checkpoint(tmp_path):
    data_dir = _train_utils.tiny_dataset(tmp_path)
    config = _config(
        data_dir, parallel="jit", learning_rate=1e30, warmup_epochs=0.0, checkpoint_every_steps=1
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
    saved_config = (workdir / "config.json").read_text()
    config.resume = False
    with pytest.raises(ValueError, match="config.resume is False"):
        trainer.train_and_evaluate(config, workdir)
    assert (workdir / "config.json").read_text() == saved_config


def test_missing_dataset_and_bad_config_give_clear_errors(tmp_path):
    config = _config(tmp_path / "no_such_dir", parallel="jit")
    with pytest.raises((FileNotFoundError, ValueError), match="cifar10"):
        trainer.train_and_evaluate(config, tmp_path / "run")
    config = _config("", parallel="jit")
    with pytest.raises(ValueError, match="config.data_dir is empty"):
        trainer.train_and_evaluate(config, tmp_path / "run")
    config = _config(tmp_path, dtype="float16")
    with pytest.raises(ValueError, match="config.dtype must be one of"):
        trainer.train_and_evaluate(config, tmp_path / "run")
    config = _config(tmp_path, batch_size=15)
    with pytest.raises(ValueError, match="config.batch_size must be a positive multiple"):
        trainer.train_and_evaluate(config, tmp_path / "run")
