"""`train_and_evaluate`: the CIFAR training loop (data, steps, eval, checkpoints, logs, results)."""

from __future__ import annotations

import functools
import json
import math
import os
import pathlib
import time
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging

from sepconv_jax import cost, models
from train import checkpoint, distributed, optim, parallel, plots, process_data, step
from train.metrics import (
    MetricsLog,
    NonFiniteLossError,
    TrainMeter,
    format_summary,
    progress_bar,
    write_text_atomic,
)

__all__ = ["DTYPES", "NonFiniteLossError", "enable_compilation_cache", "train_and_evaluate"]

#: Values of `config.dtype` (the compute dtype; parameters and optimizer state stay float32).
DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


def _check_config(config: ml_collections.ConfigDict, num_devices: int) -> None:
    """Raises ValueError naming the first bad config key."""
    if config.dtype not in DTYPES:
        raise ValueError(f"config.dtype must be one of {tuple(DTYPES)}, got {config.dtype!r}")
    for key in ("batch_size", "eval_batch_size"):
        if config[key] <= 0 or config[key] % num_devices:
            raise ValueError(
                f"config.{key} must be a positive multiple of the device count "
                f"({num_devices}), got {config[key]}"
            )
    for key in ("num_epochs", "log_every_steps", "checkpoint_every_steps", "eval_every_epochs"):
        if config[key] < 1:
            raise ValueError(f"config.{key} must be >= 1, got {config[key]}")
    if config.max_steps < 0:
        raise ValueError(f"config.max_steps must be >= 0 (0: no limit), got {config.max_steps}")
    if not config.data_dir:
        raise ValueError("config.data_dir is empty: pass --config.data_dir=DIR (a tfds data dir)")


def _devices(kind: str, num_devices: int) -> list[jax.Device]:
    """The first `num_devices` local devices (0: all; always one for `"jit"`).

    With several processes: every device of every process, under `"shard_map"` only.
    """
    parallel.axis_name_for(kind)  # validates config.parallel
    if jax.process_count() > 1:
        if kind != "shard_map":
            raise ValueError(
                f"config.parallel={kind!r} runs in one process; a multi-process run "
                f"({jax.process_count()} processes) needs config.parallel='shard_map'"
            )
        if num_devices not in (0, jax.device_count()):
            raise ValueError(
                f"config.num_devices must be 0 (all) or {jax.device_count()} in a "
                f"{jax.process_count()}-process run, got {num_devices}"
            )
        return jax.devices()
    available = jax.local_devices()
    if not 0 <= num_devices <= len(available):
        raise ValueError(
            f"config.num_devices must be in [0, {len(available)}] (0: all), got {num_devices}"
        )
    return available[: 1 if kind == "jit" else (num_devices or None)]


def enable_compilation_cache(directory: str) -> str | None:
    """Turns on JAX's persistent compilation cache (it also keeps XLA's GPU autotune results).

    Effective when set before this process compiles anything; an already configured directory
    (e.g. from `JAX_COMPILATION_CACHE_DIR`) wins. Returns the directory in use, or `None`.
    """
    if jax.config.jax_compilation_cache_dir:
        return jax.config.jax_compilation_cache_dir
    if not directory:
        return None
    path = os.path.abspath(os.path.expanduser(directory))
    os.makedirs(path, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", path)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
    return path


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


def train_and_evaluate(
    config: ml_collections.ConfigDict, workdir: str | os.PathLike
) -> dict[str, Any]:
    """Trains `config.model` on `config.dataset`, evaluating on the test split; resumable.

    Writes to `workdir`: `config.json`, `checkpoints/`, `metrics.jsonl` (one JSON object per
    log, eval or info event), `curves.png`, and at the end `results.json` (also returned).

    Args:
      config: see `train/configs/default.py` for every key.
      workdir: the run's directory. If it holds a checkpoint and `config.resume`, the run
        continues from the latest one exactly: same state, RNG and data order.

    Returns:
      The results written to `results.json`.

    Raises:
      ValueError: a bad config value, or checkpoints in `workdir` with `config.resume=False`.
      FileNotFoundError: the dataset is missing under `config.data_dir`.
      NonFiniteLossError: the loss, gradient or parameters became NaN/inf. The message names the
        step and the last good checkpoint, which is kept (the bad state is never saved).
    """
    return _Run(config, pathlib.Path(workdir).expanduser().absolute()).run()


class _Run:
    """One call of `train_and_evaluate`: the setup in `__init__`, the loop in `run`."""

    def __init__(self, config: ml_collections.ConfigDict, workdir: pathlib.Path):
        self.t_start = time.perf_counter()
        self.config = config
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.cache_dir = enable_compilation_cache(config.compilation_cache_dir)
        self.devices = _devices(config.parallel, config.num_devices)
        _check_config(config, len(self.devices))
        # Before anything slow or anything written: a refused start leaves the workdir as it was.
        self.ckpts = checkpoint.Checkpoints(
            workdir / "checkpoints",
            keep=config.keep_checkpoints,
            async_save=config.async_checkpointing,
        )
        self.resumed_from = self.ckpts.latest_step()
        if self.resumed_from is not None and not config.resume:
            self.ckpts.close()
            raise ValueError(
                f"{self.ckpts.directory} has checkpoints (latest step {self.resumed_from}) "
                "but config.resume is False: use a new workdir or resume"
            )

        self.train_split = process_data.Split(config.dataset, "train", config.data_dir)
        self.test_split = process_data.Split(config.dataset, "test", config.data_dir)
        self.image_shape = self.train_split.image_shape
        self.steps_per_epoch = self.train_split.num_examples // config.batch_size
        if self.steps_per_epoch < 1:
            raise ValueError(
                f"config.batch_size ({config.batch_size}) exceeds the training set "
                f"({self.train_split.num_examples} examples)"
            )
        schedule_steps = config.num_epochs * self.steps_per_epoch
        self.total_steps = min(schedule_steps, config.max_steps or schedule_steps)

        schedule = optim.learning_rate_schedule(
            optim.peak_learning_rate(
                config.learning_rate, config.batch_size, config.lr_reference_batch_size
            ),
            total_steps=schedule_steps,
            warmup_steps=round(config.warmup_epochs * self.steps_per_epoch),
        )
        tx = optim.create_optimizer(
            config.optimizer, schedule, momentum=config.momentum, weight_decay=config.weight_decay
        )
        self.model_args = dict(
            num_classes=config.num_classes,
            conv=config.conv,
            dropout=config.dropout,
            dtype=DTYPES[config.dtype],
            bn_momentum=config.bn_momentum,
        )
        if config.width is not None:  # else the registry variant's own width
            self.model_args["width"] = config.width
        axis_name = parallel.axis_name_for(config.parallel)
        model = models.create(config.model, axis_name=axis_name, **self.model_args)
        train_step = functools.partial(
            step.train_step,
            model=model,
            tx=tx,
            learning_rate_fn=schedule,
            num_classes=config.num_classes,
            label_smoothing=config.label_smoothing,
            augment=config.augment,
        )
        eval_step = functools.partial(step.eval_step, model=model, num_classes=config.num_classes)
        self.driver = parallel.make_driver(config.parallel, train_step, eval_step, self.devices)
        state = step.create_train_state(model, tx, config.seed, self.image_shape)
        self.num_params = int(sum(x.size for x in jax.tree.leaves(state.params)))
        if distributed.is_primary():
            write_text_atomic(workdir / "config.json", config.to_json_best_effort(indent=2) + "\n")

        self.log = MetricsLog(workdir / "metrics.jsonl", enabled=distributed.is_primary())
        self.best = {"test_accuracy": -1.0, "step": None}
        self.state = self.driver.put_state(state)
        if self.resumed_from is not None:  # restored as laid out by the driver (all processes)
            state, meta = self.ckpts.restore(self.resumed_from, self.driver.get_state(self.state))
            self.state = self.driver.put_state(state)
            self.best = meta["best"]
            self.log.truncate_after(self.resumed_from)
            logging.info("resumed from %s", self.ckpts.path(self.resumed_from))
        else:  # a fresh start: drop what a killed first attempt logged
            self.log.truncate_after(-1)
        self.step = int(jax.device_get(self.driver.get_state(self.state).step))
        self.log.write(
            "info",
            self.step,
            model=config.model,
            conv=config.conv,
            params=self.num_params,
            devices=[str(d) for d in self.devices],
            parallel=config.parallel,
            steps_per_epoch=self.steps_per_epoch,
            total_steps=self.total_steps,
            train_examples=self.train_split.num_examples,
            test_examples=self.test_split.num_examples,
            resumed_from=self.resumed_from,
        )
        self.meter = TrainMeter(config.batch_size)
        self.timing: dict[str, float | None] = {"time_to_first_step_s": None}
        self.last_eval: dict[str, float] | None = None
        self.last_plot = -math.inf

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
        title = f"{self.config.model} ({self.config.conv})"
        plots.plot_curves(self.log.read(), self.workdir / "curves.png", title=title)
        self.last_plot = time.perf_counter()

    def _train_epoch(self) -> None:
        """Steps to the end of the current epoch (or `total_steps`), from wherever it stands."""
        config = self.config
        epoch, offset = divmod(self.step, self.steps_per_epoch)
        batches = self.train_split.train_batches(  # uint8; the step augments and normalises
            batch_size=config.batch_size,
            seed=config.seed,
            epoch=epoch,
            start_step=offset,
            rows=distributed.process_rows(self.devices, config.batch_size),
            num_devices=len(self.devices),
        )
        batches = (
            self.driver.put_batch({"image": b["image"], "label": b["label"]}) for b in batches
        )
        for batch in parallel.prefetch(batches):
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
            if self.step % config.log_every_steps == 0:
                self._flush()
            if self.step % self.steps_per_epoch == 0 or self.step == self.total_steps:
                return
            if self.step % config.checkpoint_every_steps == 0:
                self._save()
        raise RuntimeError(
            f"train_batches ended at step {self.step}, before the end of epoch {epoch} "
            f"({self.steps_per_epoch} steps per epoch)"
        )

    def run(self) -> dict[str, Any]:
        """Trains to `total_steps`, evaluating and checkpointing; writes `results.json`."""
        self.bar = progress_bar(self.total_steps, self.step, self.config.progress_bar)
        try:
            while self.step < self.total_steps:
                self._train_epoch()
                epochs_done = self.step // self.steps_per_epoch
                if (
                    self.step == self.total_steps
                    or epochs_done % self.config.eval_every_epochs == 0
                ):
                    self._evaluate_and_save()
                else:
                    self._save()
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
            "conv": self.config.conv,
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
            "compilation_cache_dir": self.cache_dir,
        }
        model = models.create(self.config.model, axis_name=None, **self.model_args)
        results["flops_per_image"] = flops_per_image(model, self.image_shape)
        results["flops_source"] = "sepconv_jax.cost.model_cost (multiply-add = 2 FLOPs)"
        if distributed.is_primary():
            write_text_atomic(self.workdir / "results.json", json.dumps(results, indent=2) + "\n")
        return results
