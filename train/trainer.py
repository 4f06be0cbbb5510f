"""`train_and_evaluate`: the CIFAR training loop (data, steps, eval, checkpoints, logs, results)."""

from __future__ import annotations

import contextlib
import functools
import json
import math
import os
import pathlib
import signal
import threading
import time
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging

from sepconv_jax import cost
from train import checkpoint, data, distributed, parallel, plots, process_data, setup
from train.atomic import write_text_atomic
from train.metrics import (
    MetricsLog,
    NonFiniteLossError,
    TrainMeter,
    format_summary,
    progress_bar,
)

__all__ = [
    "DTYPES",
    "Interrupted",
    "NonFiniteLossError",
    "enable_compilation_cache",
    "train_and_evaluate",
]

DTYPES = setup.DTYPES


class Interrupted(Exception):  # noqa: N818 - what happened, not an error
    """SIGINT or SIGTERM stopped the run; a checkpoint at `step` was saved first.

    Attributes:
      step: the step the run reached and saved.
      exit_code: `128 + signal number` (130 for SIGINT, 143 for SIGTERM), the shell's convention.
    """

    def __init__(self, step: int, signum: int):
        self.step = step
        self.exit_code = 128 + signum
        super().__init__(f"interrupted at step {step}, rerun the same command to resume")


def enable_compilation_cache(directory: str | None, workdir: pathlib.Path) -> str | None:
    """Turns on JAX's persistent compilation cache (it also keeps XLA's GPU autotune results).

    Effective when set before this process compiles anything; an already configured directory
    (e.g. from `JAX_COMPILATION_CACHE_DIR`) wins.

    Args:
      directory: `config.compilation_cache_dir`: `None` (`workdir/jax_cache`), `""` (off), or
        a folder.
      workdir: the run's directory.

    Returns:
      The directory in use, or `None`.
    """
    if jax.config.jax_compilation_cache_dir:
        return jax.config.jax_compilation_cache_dir
    if directory == "":
        return None
    path = workdir / "jax_cache" if directory is None else pathlib.Path(directory).expanduser()
    path = path.absolute()
    path.mkdir(parents=True, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", str(path))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
    return str(path)


@jax.jit
def _all_finite(tree: Any) -> jax.Array:
    """True when every leaf of `tree` is finite (one compiled reduction)."""
    leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)]
    return functools.reduce(jnp.logical_and, leaves, jnp.bool_(True))


def evaluate(
    driver: parallel.Driver, state: Any, split: process_data.Split, batch_size: int
) -> dict[str, float]:
    """Test loss and accuracy over every example exactly once (fixed-shape, masked batches).

    Each process feeds its rows of every batch; the sums are over all processes' devices.

    Raises:
      RuntimeError: the masked count differs from the number of examples.
    """
    sums = []
    rows = distributed.process_rows(driver.devices, batch_size)
    for batch in split.eval_batches(
        batch_size=batch_size, rows=rows, num_devices=driver.num_devices
    ):
        batch = driver.put_batch({k: batch[k] for k in ("image", "label", "mask")})
        sums.append(driver.get_metrics(driver.eval_step(state, batch)))
    sums = jax.device_get(sums)
    total = {k: float(np.sum([s[k] for s in sums])) for k in ("loss", "correct", "count")}
    if round(total["count"]) != split.num_examples:
        raise RuntimeError(f"eval counted {total['count']} examples, expected {split.num_examples}")
    return {
        "test_loss": total["loss"] / total["count"],
        "test_accuracy": total["correct"] / total["count"],
    }


def flops_per_image(model: Any, image_shape: tuple[int, ...]) -> float:
    """Forward FLOPs of one image, counted by `sepconv_jax.cost.model_cost` (multiply-add = 2)."""
    return float(cost.model_cost(model, (1, *image_shape)).flops)


def _relative(path: str | None, workdir: pathlib.Path) -> str | None:
    """`path` relative to the workdir (what results.json records: no machine's absolute paths)."""
    return None if path is None else os.path.relpath(path, workdir)


def _check_workdir(config: ml_collections.ConfigDict, workdir: pathlib.Path) -> int | None:
    """Refuses a start that would mix runs in `workdir`, touching nothing; the latest step.

    Returns:
      The latest checkpoint's step, or `None` (a fresh start).

    Raises:
      setup.ConfigError: `workdir` is a file; checkpoints there with `config.resume=False`; or a
        saved config whose run-defining keys (`setup.RUN_KEYS`) differ from `config`.
    """
    if workdir.exists() and not workdir.is_dir():
        raise setup.ConfigError(f"--workdir={workdir} exists and is not a directory")
    latest = checkpoint.latest_step(workdir / "checkpoints")
    if latest is None:
        return None
    if not config.resume:
        raise setup.ConfigError(
            f"{workdir / 'checkpoints'} has checkpoints (latest step {latest}) but config.resume "
            "is False: use a new workdir or resume"
        )
    saved = workdir / "config.json"
    if saved.is_file():
        run, _ = setup.changed_keys(json.loads(saved.read_text()), config)
        if run:
            changes = ", ".join(f"{k} ({old!r} -> {new!r})" for k, (old, new) in run.items())
            raise setup.ConfigError(
                f"{workdir} holds a run with other run-defining keys: {changes}; resume it with "
                "its own values or use a new workdir"
            )
    return latest


def train_and_evaluate(
    config: ml_collections.ConfigDict, workdir: str | os.PathLike
) -> dict[str, Any]:
    """Trains `config.model` on `config.dataset`, evaluating on the test split; resumable.

    The whole config and the workdir are checked first: a refused start loads nothing and
    writes nothing. Writes to `workdir`: `config.json`, `checkpoints/`, `metrics.jsonl` (one
    JSON object per log, eval or info event), `curves.png`, and at the end `results.json` (also
    returned). SIGINT and SIGTERM save a checkpoint at the current step, redraw the curves and
    raise `Interrupted`; the same call then resumes.

    Args:
      config: see `train/configs/default.py` for every key.
      workdir: the run's directory. If it holds a checkpoint and `config.resume`, the run
        continues from the latest one exactly (same state, RNG and data order); the keys that
        define the run (`setup.RUN_KEYS`) must then be the saved ones, the others may change
        (logged). A run already complete is not redone: its `results.json` is returned as is.

    Returns:
      The results written to `results.json`.

    Raises:
      setup.ConfigError: a bad config value, or a workdir holding another run (a `ValueError`).
      data.DatasetNotFoundError: the dataset is missing under `config.data_dir`.
      NonFiniteLossError: the loss, gradient or parameters became NaN/inf. The message names the
        step and the last good checkpoint, which is kept (the bad state is never saved).
      Interrupted: SIGINT/SIGTERM (in the main thread), after the checkpoint.
    """
    t_start = time.perf_counter()
    workdir = pathlib.Path(workdir).expanduser().absolute()
    devices = setup.check_config(config)
    data.check_dataset(config.dataset, config.data_dir)
    latest = _check_workdir(config, workdir)
    splits = {
        split: process_data.Split(config.dataset, split, config.data_dir)
        for split in ("train", "test")
    }
    steps_per_epoch = splits["train"].num_examples // config.batch_size
    if steps_per_epoch < 1:
        raise setup.ConfigError(
            f"config.batch_size ({config.batch_size}) exceeds the training set "
            f"({splits['train'].num_examples} examples)"
        )
    schedule_steps = round(config.num_epochs * steps_per_epoch)
    total_steps = min(schedule_steps, config.max_steps or schedule_steps)
    results = workdir / "results.json"
    if latest is not None and latest >= total_steps and results.is_file():
        logging.info(
            "%s: the run is complete (step %d of %d); its results.json is kept as it was "
            "(a new workdir starts another run)",
            workdir,
            latest,
            total_steps,
        )
        return json.loads(results.read_text())
    run = _Run(config, workdir, devices, splits, steps_per_epoch, total_steps, latest, t_start)
    return run.run()


class _Run:
    """One call of `train_and_evaluate`: set up, resume, log the start; then `run` the loop."""

    def __init__(
        self,
        config: ml_collections.ConfigDict,
        workdir: pathlib.Path,
        devices: list[jax.Device],
        splits: dict[str, process_data.Split],
        steps_per_epoch: int,
        total_steps: int,
        resumed_from: int | None,
        t_start: float,
    ):
        self.t_start = t_start
        self.config = config
        self.workdir = workdir
        self.devices = devices
        self.train_split, self.test_split = splits["train"], splits["test"]
        self.image_shape = self.train_split.image_shape
        self.steps_per_epoch = steps_per_epoch
        self.total_steps = total_steps
        self.resumed_from = resumed_from
        self.eval_every = max(1, round(config.eval_every_epochs * steps_per_epoch))
        self.best = {"test_accuracy": -1.0, "step": None}
        self.meter = TrainMeter(config.batch_size)
        self.timing: dict[str, float | None] = {"time_to_first_step_s": None}
        self.last_eval: dict[str, float] | None = None
        self.last_plot = -math.inf
        self.stop_signal: int | None = None
        self._setup()
        config_changes = self._resume()
        self._log_start(config_changes)

    def _setup(self) -> None:
        """Creates the workdir, the checkpoint manager, the model, optimizer, driver and state."""
        config = self.config
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.cache_dir = enable_compilation_cache(config.compilation_cache_dir, self.workdir)
        self.ckpts = checkpoint.Checkpoints(
            self.workdir / "checkpoints",
            keep=config.keep_checkpoints,
            async_save=config.async_checkpointing,
        )
        built = setup.build(
            config, self.devices, steps_per_epoch=self.steps_per_epoch, image_shape=self.image_shape
        )
        self.model, self.driver = built.model, built.driver
        self.num_params = int(sum(x.size for x in jax.tree.leaves(built.state.params)))
        self.log = MetricsLog(self.workdir / "metrics.jsonl", enabled=distributed.is_primary())
        self.state = built.state

    def _resume(self) -> dict[str, list[Any]]:
        """Restores the latest checkpoint (or cuts a killed first attempt's log); the changed
        operational keys (key → [saved, new])."""
        changes: dict[str, list[Any]] = {}
        if self.resumed_from is not None:  # restored as the driver lays it out (all processes)
            target = self.driver.get_state(self.driver.put_state(self.state))
            state, meta = self.ckpts.restore(self.resumed_from, target)
            self.best = meta["best"]
            _, operational = setup.changed_keys(meta["config"], self.config)
            changes = {k: list(v) for k, v in operational.items()}
            self.log.truncate_after(self.resumed_from)
            logging.info("resumed from %s", self.ckpts.path(self.resumed_from))
            if changes:
                logging.info("config keys changed since the checkpoint: %s", changes)
        else:  # a fresh start: drop what a killed first attempt logged
            state = self.state
            self.log.truncate_after(-1)
        self.state = self.driver.put_state(state)
        self.step = int(jax.device_get(self.driver.get_state(self.state).step))
        return changes

    def _log_start(self, config_changes: dict[str, list[Any]]) -> None:
        """Writes config.json and the run's info event."""
        config = self.config
        if distributed.is_primary():
            write_text_atomic(
                self.workdir / "config.json", config.to_json_best_effort(indent=2) + "\n"
            )
        logging.info(
            "compilation cache: %s",
            self.cache_dir or "off (set config.compilation_cache_dir to keep compiled steps)",
        )
        self.log.write(
            "info",
            self.step,
            model=config.model,
            conv=self.model.conv,
            params=self.num_params,
            devices=[str(d) for d in self.devices],
            parallel=config.parallel,
            steps_per_epoch=self.steps_per_epoch,
            total_steps=self.total_steps,
            train_examples=self.train_split.num_examples,
            test_examples=self.test_split.num_examples,
            resumed_from=self.resumed_from,
            config_changes=config_changes or None,
            compilation_cache_dir=_relative(self.cache_dir, self.workdir),
        )

    def _last_good(self) -> str:
        self.ckpts.wait()
        latest = self.ckpts.latest_step()
        return "none" if latest is None else f"{self.ckpts.path(latest)} (step {latest})"

    def _flush(self) -> None:
        """Fetches and checks the pending step metrics; logs one train event."""
        summary = self.meter.fetch(self._last_good)
        if summary is not None:
            epoch = self.step / self.steps_per_epoch
            self.log.write("train", self.step, epoch=epoch, **summary)
            self.bar.set_postfix_str(f"loss={summary['loss']:.3f} acc={summary['accuracy']:.3f}")
            if self.bar.disable:  # no terminal (CI, a log file): a line per log event instead
                logging.info("step %d/%d %s", self.step, self.total_steps, format_summary(summary))

    def _save(self, eval_metrics: dict[str, float] | None = None) -> None:
        """Checkpoints the current state, once its metrics were checked finite."""
        self._flush()
        single = self.driver.get_state(self.state)
        if not bool(_all_finite(single.params)):
            raise NonFiniteLossError(
                f"parameters are not finite after step {self.step} (the loss was still finite: "
                f"learning rate too high?); last good checkpoint: {self._last_good()}"
            )
        meta = {
            "step": self.step,
            "epoch": self.step / self.steps_per_epoch,
            "best": self.best,
            "config": json.loads(self.config.to_json_best_effort()),
        }
        accuracy = None if eval_metrics is None else eval_metrics["test_accuracy"]
        self.ckpts.save(self.step, single, meta, test_accuracy=accuracy)
        self.meter.restart_clock()

    def _evaluate_and_save(self) -> None:
        self._flush()
        t = time.perf_counter()
        metrics = evaluate(self.driver, self.state, self.test_split, self.config.eval_batch_size)
        eval_s = time.perf_counter() - t
        self.timing.setdefault("first_eval_s", eval_s)
        if metrics["test_accuracy"] >= self.best["test_accuracy"]:  # ties: the later, as orbax
            self.best = {"test_accuracy": metrics["test_accuracy"], "step": self.step}
        record = self.log.write(
            "eval",
            self.step,
            epoch=self.step / self.steps_per_epoch,
            eval_time_s=eval_s,
            best_test_accuracy=self.best["test_accuracy"],
            **metrics,
        )
        logging.info("eval %s", format_summary(record))
        self._save(metrics)
        final = self.step == self.total_steps
        if final or time.perf_counter() - self.last_plot >= self.config.plot_every_s:
            self._plot()
        self.last_eval = metrics
        self.meter.restart_clock()  # step times exclude the eval, the checkpoint and the plot

    def _plot(self) -> None:
        """Redraws `curves.png` from the log (~0.5-1 s of matplotlib: throttled by the config)."""
        if not distributed.is_primary():
            return
        title = f"{self.config.model} ({self.model.conv})"
        plots.plot_curves(self.log.read(), self.workdir / "curves.png", title=title)
        self.last_plot = time.perf_counter()

    def _after_step(self) -> None:
        """Logs, evaluates or checkpoints as the step's number calls for."""
        step, config = self.step, self.config
        if step % config.log_every_steps == 0:
            self._flush()
        if step == self.total_steps or step % self.eval_every == 0:
            self._evaluate_and_save()
        elif step % self.steps_per_epoch == 0 or step % config.checkpoint_every_steps == 0:
            self._save()

    def _train_epoch(self) -> None:
        """Steps to the end of the current epoch (or `total_steps`), from wherever it stands."""
        epoch, offset = divmod(self.step, self.steps_per_epoch)
        batches = self.train_split.train_batches(
            batch_size=self.config.batch_size,
            seed=self.config.seed,
            epoch=epoch,
            start_step=offset,
            rows=distributed.process_rows(self.devices, self.config.batch_size),
            num_devices=len(self.devices),
        )
        batches = (
            self.driver.put_batch({"image": b["image"], "label": b["label"]}) for b in batches
        )
        with contextlib.closing(parallel.prefetch(batches)) as prefetched:
            for batch in prefetched:
                t = time.perf_counter()
                self.state, metrics = self.driver.train_step(self.state, batch)
                first = self.timing["time_to_first_step_s"] is None
                self.meter.add(self.step, self.driver.get_metrics(metrics), timed=not first)
                self.step += 1
                self.bar.update()
                if first:
                    jax.block_until_ready(metrics)
                    self.timing["first_step_s"] = time.perf_counter() - t
                    self.timing["time_to_first_step_s"] = time.perf_counter() - self.t_start
                    self.meter.restart_clock()
                self._after_step()
                if distributed.preempted(self.step):  # SIGTERM to any of several processes
                    self.stop_signal = signal.SIGTERM
                if self.stop_signal is not None and self.step < self.total_steps:
                    self._interrupt()
                if self.step % self.steps_per_epoch == 0 or self.step == self.total_steps:
                    return
        raise RuntimeError(
            f"train_batches ended at step {self.step}, before the end of epoch {epoch} "
            f"({self.steps_per_epoch} steps per epoch)"
        )

    def _interrupt(self) -> None:
        """Saves a checkpoint at the current step, redraws the curves, raises `Interrupted`."""
        self._save()
        self.ckpts.wait()
        self._plot()
        raise Interrupted(self.step, self.stop_signal)

    @contextlib.contextmanager
    def _signals(self):
        """SIGINT/SIGTERM set `stop_signal` (acted on after the running step); a second SIGINT
        interrupts at once. Only in the main thread (where Python delivers signals), and in one
        process: with several, JAX's preemption service takes SIGTERM (`distributed.preempted`)
        so that every process stops at the same step."""
        if threading.current_thread() is not threading.main_thread() or jax.process_count() > 1:
            yield
            return

        def handler(signum: int, frame: Any) -> None:
            del frame
            if self.stop_signal is not None and signum == signal.SIGINT:
                raise KeyboardInterrupt
            self.stop_signal = signum

        previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for s, h in previous.items():
                signal.signal(s, h)

    def run(self) -> dict[str, Any]:
        """Trains to `total_steps`, evaluating and checkpointing; writes `results.json`."""
        self.bar = progress_bar(self.total_steps, self.step, self.config.progress_bar)
        try:
            with self._signals():
                while self.step < self.total_steps:
                    self._train_epoch()
                if self.last_eval is None:  # resumed at the end: nothing left to train
                    self._evaluate_and_save()
                self.ckpts.wait()
        finally:
            self.bar.close()
            self.ckpts.close()
        return self._results()

    def _results(self) -> dict[str, Any]:
        meter = self.meter
        results = {
            "model": self.config.model,
            "conv": self.model.conv,
            "dataset": self.config.dataset,
            "final_test_accuracy": self.last_eval["test_accuracy"],
            "final_test_loss": self.last_eval["test_loss"],
            "best_test_accuracy": self.best["test_accuracy"],
            "best_step": self.best["step"],
            "params": self.num_params,
            "steps": self.step,
            "epochs": self.step / self.steps_per_epoch,
            "wall_time_s": time.perf_counter() - self.t_start,
            **self.timing,
            "train_images_per_sec": (
                meter.train_steps * meter.batch_size / meter.train_s if meter.train_steps else None
            ),
            "step_time_ms": 1e3 * meter.train_s / meter.train_steps if meter.train_steps else None,
            "device_kind": self.devices[0].device_kind,
            "device_count": len(self.devices),
            "process_count": jax.process_count(),
            "parallel": self.config.parallel,
            "dtype": self.config.dtype,
            "batch_size": self.config.batch_size,
            "jax_version": jax.__version__,
            "resumed_from": self.resumed_from,
            "compilation_cache_dir": _relative(self.cache_dir, self.workdir),
        }
        model = setup.create_model(self.config, axis_name=None)
        results["flops_per_image"] = flops_per_image(model, self.image_shape)
        results["flops_source"] = "sepconv_jax.cost.model_cost (multiply-add = 2 FLOPs)"
        if distributed.is_primary():
            write_text_atomic(self.workdir / "results.json", json.dumps(results, indent=2) + "\n")
        return results
