"""The JAX training step that `benchmarks/train_step.py` times: the project's own, built for one device."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from sepconv_jax import models

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


def synthetic_batches(batch: int, num_batches: int, seed: int = 0) -> list[tuple[Any, Any]]:
    """Random standard-normal images and uniform labels (never zeros), on the default device."""
    out = []
    key = jax.random.key(seed)
    for _ in range(num_batches):
        key, k1, k2 = jax.random.split(key, 3)
        images = jax.random.normal(k1, (batch, *IMAGE_SHAPE), jnp.float32)
        labels = jax.random.randint(k2, (batch,), 0, NUM_CLASSES, jnp.int32)
        out.append((images, labels))
    return out


def build(model_name: str, batch: int, dtype: Any, *, num_batches: int = 4) -> Runner:
    """The project's train step for `model_name` at `batch` and compute `dtype`.

    Uses `train/step.py` and `train/optim.py` where they exist; otherwise a minimal optax step
    with the same recipe (SGD Nesterov 0.9, weight decay 5e-4, label smoothing 0.1).
    """
    try:
        import train.parallel  # noqa: F401
        import train.step  # noqa: F401
    except ImportError:
        return _minimal(model_name, batch, dtype, num_batches)
    return _project(model_name, batch, dtype, num_batches)


#: The recipe of `train/configs/default.py` (PEERS.md), used where ml_collections is missing.
RECIPE = dict(
    optimizer="sgd",
    learning_rate=0.4,
    lr_reference_batch_size=512,
    momentum=0.9,
    weight_decay=5e-3,
    label_smoothing=0.1,
    bn_momentum=0.9,
    parallel="shard_map",
)


def _recipe() -> dict[str, Any]:
    """The training recipe's values from `train/configs/default.py`, else `RECIPE`."""
    try:
        from train.configs import default
    except ImportError:
        return dict(RECIPE)
    config = default.get_config()
    return {key: config[key] for key in RECIPE}


def _project(model_name: str, batch: int, dtype: Any, num_batches: int) -> Runner:
    """`train/step.py`'s step through `train/parallel.py`'s driver on one device, as training runs it."""
    import functools

    from train import optim, parallel, step

    r = _recipe()
    devices = jax.local_devices()[:1]
    schedule = optim.learning_rate_schedule(
        optim.peak_learning_rate(r["learning_rate"], batch, r["lr_reference_batch_size"]),
        total_steps=10_000,
        warmup_steps=100,
    )
    tx = optim.create_optimizer(
        r["optimizer"], schedule, momentum=r["momentum"], weight_decay=r["weight_decay"]
    )
    model = models.create(
        model_name,
        num_classes=NUM_CLASSES,
        dtype=dtype,
        bn_momentum=r["bn_momentum"],
        axis_name=parallel.axis_name_for(r["parallel"]),
    )
    driver = parallel.make_driver(
        r["parallel"],
        functools.partial(
            step.train_step,
            model=model,
            tx=tx,
            learning_rate_fn=schedule,
            num_classes=NUM_CLASSES,
            label_smoothing=r["label_smoothing"],
        ),
        functools.partial(step.eval_step, model=model, num_classes=NUM_CLASSES),
        devices,
    )
    state = driver.put_state(step.create_train_state(model, tx, 0, IMAGE_SHAPE))
    rng = np.random.default_rng(0)
    batches = [
        driver.put_batch(
            {
                "image": rng.standard_normal((batch, *IMAGE_SHAPE), np.float32),
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
    n = int(sum(x.size for x in jax.tree.leaves(state.params)))
    source = (
        f"train/step.py train_step, train/optim.py {r['optimizer']}, "
        f"train/parallel.py {r['parallel']} driver on 1 device"
    )
    return Runner(state, step_fn, batches, n, source, compiled)


def _minimal(model_name: str, batch: int, dtype: Any, num_batches: int) -> Runner:
    """A plain optax step (used only where the project's `train/` package is absent)."""
    model = models.create(model_name, dtype=dtype)
    batches = synthetic_batches(batch, num_batches)
    init = jax.jit(lambda key, x: model.init(key, x, train=False))
    variables = init(jax.random.key(0), batches[0][0])
    params, batch_stats = variables["params"], variables.get("batch_stats", {})
    tx = optax.chain(optax.add_decayed_weights(5e-4), optax.sgd(0.1, momentum=0.9, nesterov=True))
    state = (params, batch_stats, tx.init(params))

    def loss_fn(p: Any, bs: Any, images: jax.Array, labels: jax.Array) -> Any:
        logits, updates = model.apply(
            {"params": p, "batch_stats": bs}, images, train=True, mutable=["batch_stats"]
        )
        targets = optax.smooth_labels(jax.nn.one_hot(labels, NUM_CLASSES, dtype=jnp.float32), 0.1)
        loss = optax.softmax_cross_entropy(logits, targets).mean()
        return loss, updates["batch_stats"]

    def step(state: Any, data: Any) -> tuple[Any, Any]:
        p, bs, opt_state = state
        (loss, bs), grads = jax.value_and_grad(loss_fn, has_aux=True)(p, bs, *data)
        updates, opt_state = tx.update(grads, opt_state, p)
        return (optax.apply_updates(p, updates), bs, opt_state), {"loss": loss}

    compiled = jax.jit(step, donate_argnums=0).lower(state, batches[0]).compile()
    n = int(sum(np.prod(x.shape) for x in jax.tree.leaves(params)))
    source = "minimal optax step (benchmarks/jax_train_step.py)"
    return Runner(state, compiled, batches, n, source, compiled)
