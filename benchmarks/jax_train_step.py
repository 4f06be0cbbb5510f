"""The JAX training step that `benchmarks/train_step.py` times: the project's own, built for one device."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from train import setup
from train.configs import default

IMAGE_SHAPE = (32, 32, 3)
NUM_CLASSES = 10


@dataclasses.dataclass
class Runner:
    """A ready-to-time step.

    Attributes:
      state: the initial train state (donated to `step`).
      step: `(state, batch) -> (state, metrics)`; already compiled where `compiled` is set.
      batches: synthetic `(images (B, 32, 32, 3), labels (B,))` batches on the device.
      num_params: parameter count of the model.
      source: which step this is (for the results table).
      compiled: the `jax.stages.Compiled` step, or `None` where the step is not a plain `jit`.
    """

    state: Any
    step: Callable[[Any, Any], tuple[Any, Any]]
    batches: list[Any]
    num_params: int
    source: str
    compiled: Any = None

    def compiled_bytes(self) -> int | None:
        """Arguments + temporaries + outputs − aliased bytes of the compiled step (XLA's view)."""
        if self.compiled is None:
            return None
        try:
            mem = self.compiled.memory_analysis()
            return int(
                mem.argument_size_in_bytes
                + mem.temp_size_in_bytes
                + mem.output_size_in_bytes
                - mem.alias_size_in_bytes
            )
        except Exception:  # noqa: BLE001 - not every backend reports it
            return None


def build(model_name: str, batch: int, dtype: Any, *, num_batches: int = 4) -> Runner:
    """The trainer's own step (`train.setup.build` on the default config) for `model_name`.

    One device, the default config's recipe and driver, `dtype` the compute dtype
    (`"float32"`/`"bfloat16"` or the jnp dtype); synthetic uint8 batches of random pixels.
    """
    config = default.get_config()
    config.model = model_name
    config.batch_size = batch
    config.dtype = jnp.dtype(dtype).name
    config.num_devices = 1
    devices = jax.local_devices()[:1]
    built = setup.build(config, devices, steps_per_epoch=10_000, image_shape=IMAGE_SHAPE)
    driver = built.driver
    state = driver.put_state(built.state)
    rng = np.random.default_rng(0)
    batches = [
        driver.put_batch(
            {
                "image": rng.integers(0, 256, (batch, *IMAGE_SHAPE), np.uint8),
                "label": rng.integers(0, NUM_CLASSES, (batch,)).astype(np.int32),
            }
        )
        for _ in range(num_batches)
    ]
    try:  # compile once, use the executable for the steps and its memory analysis
        compiled = driver.train_step.lower(state, batches[0]).compile()
        step_fn = compiled
    except Exception:  # noqa: BLE001 - a driver that is not a plain jit (pmap)
        compiled, step_fn = None, driver.train_step
    n = int(sum(x.size for x in jax.tree.leaves(built.state.params)))
    source = (
        f"train.setup.build (train/configs/default.py: {config.optimizer}, "
        f"{config.parallel} driver) on 1 device"
    )
    return Runner(state, step_fn, batches, n, source, compiled)
