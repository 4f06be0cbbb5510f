"""A run's wiring from its config: validation, then model, optimizer, schedule, driver, state."""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import optax

from sepconv_jax import models
from train import optim, parallel, step

__all__ = [
    "DTYPES",
    "RUN_KEYS",
    "ConfigError",
    "Setup",
    "build",
    "changed_keys",
    "check_config",
    "create_model",
    "select_devices",
]

#: Values of `config.dtype` (the compute dtype; parameters and optimizer state stay float32).
DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}

#: The keys that define a run: a checkpoint only continues under the same values. Every other
#: key (cadences, data_dir's location, the parallel driver, the device count, `max_steps`, the
#: progress bar, the compilation cache) is operational and may change on a resume.
RUN_KEYS = (
    "model",
    "conv",
    "width",
    "dropout",
    "bn_momentum",
    "dataset",
    "num_classes",
    "augment",
    "batch_size",
    "num_epochs",
    "optimizer",
    "learning_rate",
    "lr_reference_batch_size",
    "momentum",
    "weight_decay",
    "warmup_epochs",
    "label_smoothing",
    "dtype",
    "seed",
)


class ConfigError(ValueError):
    """A config value that cannot run (the message names the key, the value and what is valid)."""


class Setup(NamedTuple):
    """What a training run is built from.

    Attributes:
      model: the linen model, built with the driver's axis name.
      tx: the optimizer.
      schedule: the learning-rate schedule `tx` uses (for logging).
      driver: the compiled train/eval steps over the devices.
      state: the initial train state, one copy (`driver.put_state` lays it out).
    """

    model: nn.Module
    tx: optax.GradientTransformation
    schedule: optax.Schedule
    driver: parallel.Driver
    state: Any


def _model_kwargs(config: ml_collections.ConfigDict) -> dict[str, Any]:
    kwargs = dict(
        num_classes=config.num_classes,
        dropout=config.dropout,
        dtype=DTYPES[config.dtype],
        bn_momentum=config.bn_momentum,
    )
    if config.conv is not None:  # else the model name's own ("full" for the `*_full` twins)
        kwargs["conv"] = config.conv
    if config.width is not None:  # else the registry variant's own width
        kwargs["width"] = config.width
    return kwargs


def create_model(config: ml_collections.ConfigDict, axis_name: str | None) -> nn.Module:
    """`models.create(config.model, ...)` with the config's model fields.

    Raises:
      ConfigError: an unknown model name, a `config.conv` that contradicts it, a bad field.
    """
    try:
        return models.create(config.model, axis_name=axis_name, **_model_kwargs(config))
    except (ValueError, TypeError) as e:
        raise ConfigError(f"config.model={config.model!r}: {e}") from None


def select_devices(config: ml_collections.ConfigDict) -> list[jax.Device]:
    """The first `config.num_devices` local devices (0: all; always one for `"jit"`).

    With several processes: every device of every process (`"shard_map"` only).

    Raises:
      ConfigError: an unknown `config.parallel` or an out-of-range `config.num_devices`.
    """
    if config.parallel not in parallel.KINDS:
        raise ConfigError(
            f"config.parallel must be one of {parallel.KINDS}, got {config.parallel!r}"
        )
    if jax.process_count() > 1:  # every device of every process, under shard_map only
        return _all_processes_devices(config)
    available = jax.local_devices()
    if not 0 <= config.num_devices <= len(available):
        raise ConfigError(
            f"config.num_devices must be in [0, {len(available)}] (0: all), got "
            f"{config.num_devices}"
        )
    return available[: 1 if config.parallel == "jit" else (config.num_devices or None)]


def _all_processes_devices(config: ml_collections.ConfigDict) -> list[jax.Device]:
    if config.parallel != "shard_map":
        raise ConfigError(
            f"config.parallel={config.parallel!r} runs in one process; a multi-process run "
            f"({jax.process_count()} processes) needs config.parallel='shard_map'"
        )
    if config.num_devices not in (0, jax.device_count()):
        raise ConfigError(
            f"config.num_devices must be 0 (all) or {jax.device_count()} in a "
            f"{jax.process_count()}-process run, got {config.num_devices}"
        )
    return jax.devices()


def check_config(config: ml_collections.ConfigDict) -> list[jax.Device]:
    """Validates every key before anything is loaded or written; returns the devices to use.

    Raises:
      ConfigError: the first bad key, named with its value and what is valid.
    """
    devices = select_devices(config)
    if config.dtype not in DTYPES:
        raise ConfigError(f"config.dtype must be one of {tuple(DTYPES)}, got {config.dtype!r}")
    if config.optimizer not in optim.OPTIMIZERS:
        raise ConfigError(
            f"config.optimizer must be one of {optim.OPTIMIZERS}, got {config.optimizer!r}"
        )
    for key in ("batch_size", "eval_batch_size"):
        if config[key] <= 0 or config[key] % len(devices):
            raise ConfigError(
                f"config.{key} must be a positive multiple of the device count "
                f"({len(devices)}), got {config[key]}"
            )
    for key in ("log_every_steps", "checkpoint_every_steps", "keep_checkpoints"):
        if config[key] < 1:
            raise ConfigError(f"config.{key} must be >= 1, got {config[key]}")
    for key in ("num_epochs", "eval_every_epochs", "learning_rate", "lr_reference_batch_size"):
        if not config[key] > 0:
            raise ConfigError(f"config.{key} must be > 0, got {config[key]}")
    for key in ("max_steps", "warmup_epochs", "weight_decay", "dropout"):
        if config[key] < 0:
            raise ConfigError(f"config.{key} must be >= 0, got {config[key]}")
    if not 0 <= config.label_smoothing < 1:
        raise ConfigError(f"config.label_smoothing must be in [0, 1), got {config.label_smoothing}")
    if not config.data_dir:
        raise ConfigError("config.data_dir is empty: pass --config.data_dir=DIR (a tfds data dir)")
    create_model(config, parallel.axis_name_for(config.parallel))
    return devices


def changed_keys(
    saved: dict[str, Any], config: ml_collections.ConfigDict
) -> tuple[dict[str, tuple[Any, Any]], dict[str, tuple[Any, Any]]]:
    """The keys whose values differ from a saved config (JSON), split into run and operational.

    Returns:
      `(run, operational)`: key → `(saved value, new value)`; a key absent on one side has None.
    """
    new = config.to_dict()
    run, operational = {}, {}
    for key in sorted(set(saved) | set(new)):
        old, value = saved.get(key), new.get(key)
        if isinstance(old, list):
            old = tuple(old)
        if isinstance(value, list):
            value = tuple(value)
        if old != value:
            (run if key in RUN_KEYS else operational)[key] = (old, value)
    return run, operational


def build(
    config: ml_collections.ConfigDict,
    devices: list[jax.Device],
    *,
    steps_per_epoch: int,
    image_shape: tuple[int, int, int] = (32, 32, 3),
) -> Setup:
    """Builds the model, optimizer, schedule, driver and initial state of a run.

    The one place the training wiring lives: the trainer and `benchmarks/jax_train_step.py`
    both call it.

    Args:
      config: a checked config (`check_config`).
      devices: the devices the driver splits each batch over.
      steps_per_epoch: optimizer steps per epoch (the schedule spans `config.num_epochs` of them).
      image_shape: `(H, W, C)` of one image.

    Returns:
      The `Setup`.
    """
    schedule_steps = round(config.num_epochs * steps_per_epoch)
    schedule = optim.learning_rate_schedule(
        optim.peak_learning_rate(
            config.learning_rate, config.batch_size, config.lr_reference_batch_size
        ),
        total_steps=schedule_steps,
        warmup_steps=round(config.warmup_epochs * steps_per_epoch),
    )
    tx = optim.create_optimizer(
        config.optimizer, schedule, momentum=config.momentum, weight_decay=config.weight_decay
    )
    model = create_model(config, parallel.axis_name_for(config.parallel))
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
    driver = parallel.make_driver(config.parallel, train_step, eval_step, devices)
    state = step.create_train_state(model, tx, config.seed, image_shape)
    return Setup(model, tx, schedule, driver, state)
