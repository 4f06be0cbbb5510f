"""The optimizer and learning-rate schedule: SGD Nesterov or AdamW, warm-up + cosine, masked decay."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax

OPTIMIZERS = ("sgd", "adamw")


def peak_learning_rate(learning_rate: float, batch_size: int, reference_batch_size: int) -> float:
    """The linear scaling rule: `learning_rate * batch_size / reference_batch_size`.

    Args:
      learning_rate: the peak learning rate at `reference_batch_size`.
      batch_size: the global batch size of the run.
      reference_batch_size: the batch size `learning_rate` is quoted for (512 in the recipe).

    Returns:
      The peak learning rate of the run.

    Raises:
      ValueError: a non-positive batch size.

    Examples:
      >>> peak_learning_rate(0.4, 256, 512)
      0.2
    """
    if batch_size <= 0 or reference_batch_size <= 0:
        raise ValueError(
            "batch_size and lr_reference_batch_size must be positive, got "
            f"{batch_size} and {reference_batch_size}"
        )
    return learning_rate * batch_size / reference_batch_size


def learning_rate_schedule(peak: float, total_steps: int, warmup_steps: int) -> optax.Schedule:
    """Linear warm-up from 0 to `peak` over `warmup_steps`, then cosine decay to 0 at `total_steps`.

    Args:
      peak: the peak learning rate (see `peak_learning_rate`).
      total_steps: steps of the whole run (the schedule ends there; `max_steps` does not move it).
      warmup_steps: warm-up steps, clipped to `[0, total_steps]`.

    Returns:
      An optax schedule `step -> learning rate`.

    Raises:
      ValueError: `total_steps < 1`.

    Examples:
      >>> lr = learning_rate_schedule(0.4, total_steps=100, warmup_steps=10)
      >>> float(lr(0)), float(lr(10)), float(lr(100))
      (0.0, 0.4000000059604645, 0.0)
    """
    if total_steps < 1:
        raise ValueError(f"total_steps must be >= 1, got {total_steps}")
    warmup_steps = min(max(int(warmup_steps), 0), total_steps)
    joined = optax.join_schedules(
        [
            optax.linear_schedule(0.0, peak, warmup_steps),
            optax.cosine_decay_schedule(peak, max(total_steps - warmup_steps, 1)),
        ],
        boundaries=[warmup_steps],
    )

    def schedule(step: jax.typing.ArrayLike) -> jax.Array:
        # A float32 count: optax's cosine mixes the int32 count with a Python float, which
        # strict dtype promotion (the tests' setting) rejects.
        return jnp.asarray(joined(jnp.asarray(step, jnp.float32)), jnp.float32)

    return schedule


def decay_mask(params: Any) -> Any:
    """True for the leaves that take weight decay: kernels (rank > 1), not BN scales or biases."""
    return jax.tree.map(lambda p: p.ndim > 1, params)


def create_optimizer(
    name: str,
    schedule: optax.Schedule,
    *,
    momentum: float = 0.9,
    weight_decay: float = 0.0,
) -> optax.GradientTransformation:
    """Builds the optimizer.

    `"sgd"`: Nesterov momentum, then *decoupled* weight decay on the masked leaves (SGDW:
    `p -= lr_t * (nesterov_momentum(g) + weight_decay * p)`; the decay does not pass through the
    momentum, unlike PyTorch's `SGD(weight_decay=...)`). `"adamw"`: `optax.adamw` with
    `b1=momentum`, `b2=0.999` and the same mask. The optimizer state has the parameters' dtype
    (float32 here, whatever the compute dtype).

    Args:
      name: `"sgd"` or `"adamw"`.
      schedule: the learning-rate schedule.
      momentum: SGD momentum, or AdamW's `b1`. Defaults to 0.9.
      weight_decay: decoupled weight decay, applied to `decay_mask` leaves. Defaults to 0.

    Returns:
      The optax transformation.

    Raises:
      ValueError: an unknown `name`.
    """
    if name == "sgd":
        return optax.chain(
            optax.trace(decay=momentum, nesterov=True),
            optax.add_decayed_weights(weight_decay, mask=decay_mask),
            optax.scale_by_learning_rate(schedule),
        )
    if name == "adamw":
        return optax.adamw(
            schedule, b1=momentum, b2=0.999, weight_decay=weight_decay, mask=decay_mask
        )
    raise ValueError(f"config.optimizer must be one of {OPTIMIZERS}, got {name!r}")
