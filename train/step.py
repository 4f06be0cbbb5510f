"""The train state and the per-device train/eval steps, written once with a named data axis."""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import optax
from jax import lax

from train import augment as augment_lib

Batch = dict[str, jax.Array]
Metrics = dict[str, jax.Array]

#: `fold_in` data of the augmentation stream under a step's key (dropout uses device indices).
_AUGMENT_STREAM = 2**31 - 1


@flax.struct.dataclass
class TrainState:
    """Everything a run needs to continue exactly: checkpointed as is.

    Attributes:
      step: int32 scalar, the number of steps taken (the data order and schedule derive from it).
      params: float32 parameters.
      batch_stats: BatchNorm running statistics.
      opt_state: the optax state (float32, like the parameters).
      rng: uint32 `(2,)` raw key; step `t` on device `d` uses `fold_in(fold_in(rng, t), d)` for
        dropout, and example `i` of the global batch `fold_in(augment_key(rng, t), i)` for
        its augmentation.
    """

    step: jax.Array
    params: Any
    batch_stats: Any
    opt_state: optax.OptState
    rng: jax.Array


def create_train_state(
    model: nn.Module,
    tx: optax.GradientTransformation,
    seed: int,
    image_shape: tuple[int, int, int],
) -> TrainState:
    """Initialises parameters, BatchNorm statistics and optimizer state (on the default device).

    Args:
      model: a linen model called as `model(x, train=...)` with `params` and `batch_stats`.
      tx: the optimizer.
      seed: the run's seed (initialisation and dropout keys derive from it).
      image_shape: `(H, W, C)` of one image.

    Returns:
      The state at step 0.
    """
    init_key, dropout_key = jax.random.split(jax.random.PRNGKey(seed))

    @jax.jit
    def init(key: jax.Array) -> TrainState:
        x = jnp.zeros((1, *image_shape), jnp.float32)
        variables = model.init({"params": key}, x, train=False)
        params = variables["params"]
        return TrainState(
            step=jnp.zeros((), jnp.int32),
            params=params,
            batch_stats=variables.get("batch_stats", {}),
            opt_state=tx.init(params),
            rng=dropout_key,
        )

    return init(init_key)


def cross_entropy(
    logits: jax.Array, labels: jax.Array, num_classes: int, label_smoothing: float = 0.0
) -> jax.Array:
    """Per-example softmax cross-entropy with label smoothing.

    Args:
      logits: `(B, num_classes)` float32.
      labels: `(B,)` integer class ids.
      num_classes: the number of classes.
      label_smoothing: mass spread uniformly over all classes. Defaults to 0.

    Returns:
      `(B,)` float32 losses.
    """
    targets = jax.nn.one_hot(labels, num_classes, dtype=jnp.float32)
    targets = optax.smooth_labels(targets, label_smoothing)
    return optax.softmax_cross_entropy(logits.astype(jnp.float32), targets)


def _pmean(tree: Any, axis_name: str | None) -> Any:
    return tree if axis_name is None else lax.pmean(tree, axis_name)


def augment_key(rng: jax.Array, step: jax.Array) -> jax.Array:
    """The augmentation key of step `step`: the same on every device (a function of the run)."""
    return jax.random.fold_in(jax.random.fold_in(rng, step), _AUGMENT_STREAM)


def _first_index(batch_size: int, axis_name: str | None) -> jax.Array | int:
    """Global index of this device's first example (its shard of the global batch)."""
    return 0 if axis_name is None else lax.axis_index(axis_name) * batch_size


def prepare_images(
    images: jax.Array,
    *,
    augment: bool,
    key: jax.Array | None = None,
    axis_name: str | None = None,
) -> jax.Array:
    """The model's float32 input from a uint8 batch shard: augmented (or not) and normalised.

    Args:
      images: uint8 `(B_local, H, W, 3)` raw pixels.
      augment: pad-4 random crop + flip, example `i` of the global batch drawn from
        `fold_in(key, i)`, so every driver splitting the same global batch draws the same.
      key: the step's augmentation key (`augment_key`); needed when `augment`.
      axis_name: the data axis, or `None` (this shard is the whole batch).

    Returns:
      float32 `(B_local, H, W, 3)`.

    Raises:
      TypeError: `images` is not uint8.
      ValueError: `augment` without `key`.
    """
    if images.dtype != jnp.uint8:
        raise TypeError(
            f"images must be uint8 raw pixels (data.train_batches / data.eval_batches), got "
            f"{images.dtype}"
        )
    if not augment:
        return augment_lib.normalize(images)
    if key is None:
        raise ValueError("augment=True needs the step's augmentation key, got key=None")
    offset = _first_index(images.shape[0], axis_name)
    return augment_lib.augment(images, key, index_offset=offset)


def train_step(
    state: TrainState,
    batch: Batch,
    *,
    model: nn.Module,
    tx: optax.GradientTransformation,
    learning_rate_fn: optax.Schedule,
    num_classes: int,
    label_smoothing: float,
    axis_name: str | None,
    augment: bool = False,
) -> tuple[TrainState, Metrics]:
    """One optimisation step on this device's shard of the global batch.

    Written in per-device (pmap) semantics: the gradient of the local mean loss, then
    `pmean` over `axis_name`. `model` must be built with the same `axis_name`, so BatchNorm
    normalises with statistics of the *global* batch; the new running statistics are
    `pmean`-ed too (equal on every device already; this keeps replicas bit-identical). The
    result equals one device stepping on the whole global batch.

    Args:
      state: the replicated train state.
      batch: `image` `(B_local, H, W, C)` uint8 raw pixels (augmented and normalised here),
        `label` `(B_local,)` int32.
      model: the linen model (built with `axis_name`).
      tx: the optimizer.
      learning_rate_fn: the schedule (for the logged `learning_rate` only; `tx` has its own).
      num_classes: number of classes.
      label_smoothing: label smoothing of the training loss.
      axis_name: the data axis, or `None` on one device without a named axis.
      augment: pad-4 random crop + horizontal flip of uint8 images on the device, per example
        of the global batch (`prepare_images`). Defaults to False.

    Returns:
      `(new_state, metrics)`; metrics are float32 scalars averaged over devices: `loss`
      (smoothed training loss), `accuracy`, `learning_rate` (used by this step), `grad_norm`.
    """
    key = jax.random.fold_in(state.rng, state.step)
    key = jax.random.fold_in(key, 0 if axis_name is None else lax.axis_index(axis_name))
    images = prepare_images(
        batch["image"],
        augment=augment,
        key=augment_key(state.rng, state.step) if augment else None,
        axis_name=axis_name,
    )

    def loss_fn(params: Any) -> tuple[jax.Array, tuple[jax.Array, Any]]:
        variables = {"params": params, "batch_stats": state.batch_stats}
        logits, updates = model.apply(
            variables, images, train=True, mutable=["batch_stats"], rngs={"dropout": key}
        )
        loss = jnp.mean(cross_entropy(logits, batch["label"], num_classes, label_smoothing))
        return loss, (logits, updates["batch_stats"])

    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
    (loss, (logits, batch_stats)), grads = grad_fn(state.params)
    grads = _pmean(grads, axis_name)
    batch_stats = _pmean(batch_stats, axis_name)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    accuracy = jnp.mean((jnp.argmax(logits, axis=-1) == batch["label"]).astype(jnp.float32))
    metrics = {
        "loss": loss,
        "accuracy": accuracy,
        "learning_rate": jnp.asarray(learning_rate_fn(state.step), jnp.float32),
        "grad_norm": optax.tree_utils.tree_norm(grads),  # float32: the grads of float32 params
    }
    new_state = state.replace(
        step=state.step + 1, params=params, batch_stats=batch_stats, opt_state=opt_state
    )
    return new_state, _pmean(metrics, axis_name)


def eval_step(
    state: TrainState,
    batch: Batch,
    *,
    model: nn.Module,
    num_classes: int,
    axis_name: str | None,
) -> Metrics:
    """Masked sums over this device's shard of an eval batch, summed over devices.

    Args:
      state: the replicated train state.
      batch: `image` `(B_local, H, W, C)` uint8 raw pixels (normalised here), `label`
        `(B_local,)`, `mask` `(B_local,)` (1 for real examples, 0 for the padding that keeps
        every eval batch the same shape).
      model: the linen model.
      num_classes: number of classes.
      axis_name: the data axis, or `None`.

    Returns:
      float32 sums `loss` (unsmoothed cross-entropy), `correct` and `count` over real examples.
    """
    variables = {"params": state.params, "batch_stats": state.batch_stats}
    images = prepare_images(batch["image"], augment=False)
    logits = model.apply(variables, images, train=False)
    mask = batch["mask"].astype(jnp.float32)
    loss = cross_entropy(logits, batch["label"], num_classes)
    correct = (jnp.argmax(logits, axis=-1) == batch["label"]).astype(jnp.float32)
    sums = {
        "loss": jnp.sum(loss * mask),
        "correct": jnp.sum(correct * mask),
        "count": jnp.sum(mask),
    }
    return sums if axis_name is None else lax.psum(sums, axis_name)
