"""Multi-process training (jax.distributed, gloo CPU collectives): same result as one process."""

import json
import re
import signal
import socket

import _train_utils  # noqa: I001 - the tests' own helper module (tests/ is on sys.path)
import chex
import numpy as np
import pytest

from train import checkpoint, distributed, launch, process_data
from train.metrics import read_events

# `python -m train`, except that process 1 sends itself signal S when handed batch I of epoch E
# (KILL_AT=[E, I, S]).
_KILL_HOOK = """
import json, os, sys
from train import process_data

kill_at = json.loads(os.environ.get("KILL_AT", "null"))
original = process_data.Split.train_batches

def train_batches(self, *, epoch, start_step, **kwargs):
    batches = original(self, epoch=epoch, start_step=start_step, **kwargs)
    for i, batch in enumerate(batches, start_step):
        if kill_at and kill_at[:2] == [epoch, i] and "--process_id=1" in sys.argv:
            os.kill(os.getpid(), kill_at[2])
        yield batch

process_data.Split.train_batches = train_batches
from train.main import run
run()
"""

_OVERRIDES = dict(max_steps=6, log_every_steps=2, checkpoint_every_steps=2, progress_bar=False)


def _launch(tmp_path, workdir, data_dir, *args, processes=2, kill_at=None):
    """`python -m train.launch` of the tiny config over 8 CPU devices in all, via `_KILL_HOOK`."""
    (tmp_path / "kill_hook.py").write_text(_KILL_HOOK)
    flags = [f"--config.{k}={v}" for k, v in _OVERRIDES.items()]
    return _train_utils.run_python(
        "-m",
        "train.launch",
        f"--num_processes={processes}",
        f"--devices_per_process={8 // processes}",
        "--module=kill_hook",
        "--grace_s=2",
        "--",
        "--config=train/configs/tiny.py",
        f"--workdir={workdir}",
        f"--config.data_dir={data_dir}",
        f"--config.compilation_cache_dir={tmp_path / 'jax_cache'}",  # the restart reuses it
        *flags,
        *args,
        env={
            "PYTHONPATH": str(tmp_path),
            "KILL_AT": json.dumps(kill_at),
        },
    )


@pytest.mark.slow
def test_two_processes_stopped_killed_and_resumed_match_one_process(tmp_path):
    """2 processes × 4 devices: SIGTERM to one, restarted, SIGKILL to one, restarted: the final
    state is that of an uninterrupted 1-process run on 8 devices.

    One series of runs serves four claims: SIGTERM to one process stops both at the same step
    with a checkpoint there (JAX's preemption service); the launcher reports a killed process
    and exits non-zero; each restart resumes from the last checkpoint; and the result does not
    depend on the process count. Both sides run under `jax.distributed`, so both all-reduce
    with gloo: JAX's in-process CPU collectives sum in another order, and this tiny config
    amplifies that (its first step's gradient norm differs by 4e-5 relative, README). Tolerance:
    rtol 1e-6, atol 1e-7 in float32 (gloo may sum the shards in another order with another
    process count).
    """
    data_dir = _train_utils.tiny_dataset(tmp_path)
    total = _OVERRIDES["max_steps"]
    single = _launch(tmp_path, tmp_path / "single", data_dir, processes=1)
    assert single.returncode == 0, single.stdout[-3000:]

    workdir = tmp_path / "multi"
    stopped = _launch(tmp_path, workdir, data_dir, kill_at=(0, 1, signal.SIGTERM))
    assert stopped.returncode == 1, stopped.stdout[-3000:]
    steps = {
        int(m.group(2))
        for m in re.finditer(r"^\[([01])\] interrupted at step (\d+)", stopped.stdout, re.M)
    }
    assert len(steps) == 1, stopped.stdout[-3000:]  # both processes, one step
    assert checkpoint.latest_step(workdir / "checkpoints") == steps.pop()
    assert stopped.stdout.count("interrupted at step") == 2, stopped.stdout[-3000:]

    killed = _launch(tmp_path, workdir, data_dir, kill_at=(1, 1, signal.SIGKILL))
    assert killed.returncode == 1, killed.stdout[-3000:]
    assert "[launch] process 1 was killed by SIGKILL" in killed.stdout, killed.stdout[-3000:]
    assert not (workdir / "results.json").exists()
    resumed_from = checkpoint.latest_step(workdir / "checkpoints")
    assert resumed_from is not None and 0 < resumed_from < total

    resumed = _launch(tmp_path, workdir, data_dir)
    assert resumed.returncode == 0, resumed.stdout[-3000:]
    results = _train_utils.results(workdir)
    assert results["resumed_from"] == resumed_from
    assert results["process_count"] == 2 and results["device_count"] == 8
    assert results["steps"] == total

    a = checkpoint.Checkpoints(tmp_path / "single" / "checkpoints", keep=3).restore_arrays(total)
    b = checkpoint.Checkpoints(workdir / "checkpoints", keep=3).restore_arrays(total)
    chex.assert_trees_all_close(a, b, rtol=1e-6, atol=1e-7)
    # Process 0 alone logs: one train event per logged step; the evaluations (each over the
    # whole test set: the trainer checks the count) agree with the 1-process run.
    events = read_events(workdir / "metrics.jsonl")
    train_steps = [e["step"] for e in events if e["event"] == "train"]
    assert train_steps == sorted(set(train_steps)) and train_steps[-1] == total
    evals = [e for e in events if e["event"] == "eval"]
    single_evals = [
        e for e in read_events(tmp_path / "single" / "metrics.jsonl") if e["event"] == "eval"
    ]
    assert [e["step"] for e in evals] == [e["step"] for e in single_evals]
    np.testing.assert_allclose(
        [e["test_loss"] for e in evals], [e["test_loss"] for e in single_evals], rtol=1e-6
    )


def test_process_rows_of_every_batch_make_the_one_process_batches(tmp_path):
    """Each of 2 processes reads its half of each batch by random access; together they are the
    batches of one process (train: the epoch's permutation; eval: every example once)."""
    data_dir = _train_utils.tiny_dataset(tmp_path)
    whole = process_data.Split("cifar10", "train", data_dir, in_memory=True)
    parts = process_data.Split("cifar10", "train", data_dir, in_memory=False)
    assert parts.num_examples == whole.num_examples and parts.image_shape == whole.image_shape
    kwargs = dict(batch_size=16, seed=3, epoch=1, start_step=1, num_devices=8)
    halves = [
        list(parts.train_batches(rows=rows, **kwargs)) for rows in (slice(0, 8), slice(8, 16))
    ]
    expected = list(whole.train_batches(rows=slice(0, 16), **kwargs))
    assert len(expected) == _train_utils.NUM_TRAIN // 16 - 1
    for batch, first, second in zip(expected, *halves, strict=True):
        for key in batch:
            np.testing.assert_array_equal(np.concatenate([first[key], second[key]]), batch[key])

    whole = process_data.Split("cifar10", "test", data_dir, in_memory=True)
    parts = process_data.Split("cifar10", "test", data_dir, in_memory=False)
    halves = [
        list(parts.eval_batches(batch_size=16, rows=r, num_devices=8))
        for r in (slice(0, 8), slice(8, 16))
    ]
    expected = list(whole.eval_batches(batch_size=16, rows=slice(0, 16), num_devices=8))
    count = 0
    for batch, first, second in zip(expected, *halves, strict=True):
        for key in batch:
            np.testing.assert_array_equal(np.concatenate([first[key], second[key]]), batch[key])
        count += first["mask"].sum() + second["mask"].sum()
    assert count == _train_utils.NUM_TEST


@pytest.mark.slow
def test_batch_not_divisible_by_the_global_device_count_fails_every_process(tmp_path):
    run = _launch(
        tmp_path, tmp_path / "run", _train_utils.tiny_dataset(tmp_path), "--config.batch_size=12"
    )
    assert run.returncode == 1
    assert (
        "config.batch_size must be a positive multiple of the device count (8), got 12"
        in run.stdout
    )
    assert "[launch] process" in run.stdout and "exited with code 1" in run.stdout


def test_bad_process_flags_and_an_unreachable_coordinator_raise():
    with pytest.raises(ValueError, match=r"--process_id must be in \[0, 2\).*got 2"):
        distributed.initialize(coordinator_address="localhost:1234", num_processes=2, process_id=2)
    with pytest.raises(ValueError, match="go together"):
        distributed.initialize(num_processes=2, process_id=0)
    with pytest.raises(ValueError, match="HOST:PORT"):
        distributed.initialize(coordinator_address="localhost", num_processes=2, process_id=1)
    assert not distributed.initialize()  # one process: nothing to start
    with socket.socket() as s:  # bound, not listening: connections are refused
        s.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{s.getsockname()[1]}"
        with pytest.raises(distributed.CoordinatorUnreachableError, match=address):
            distributed.initialize(
                coordinator_address=address, num_processes=2, process_id=1, timeout_s=1
            )


def test_launcher_sets_each_process_devices():
    env = launch.child_env(4, {"XLA_FLAGS": "--xla_force_host_platform_device_count=8 --foo=1"})
    assert env["XLA_FLAGS"].split() == ["--foo=1", "--xla_force_host_platform_device_count=4"]
    assert env["JAX_PLATFORMS"] == "cpu"
    with pytest.raises(ValueError, match="--num_processes must be >= 1, got 0"):
        launch.launch([], num_processes=0)
