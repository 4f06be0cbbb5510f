"""BatchNorm computed in float32 for the linen and nnx blocks and models (the one copy)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax import nnx

#: Norm names the blocks accept besides `None` and a factory.
NORMS = ("batch",)


def check_norm(norm: Any, where: str) -> None:
    """Raises `ValueError` unless `norm` is `"batch"`, `None` or a callable factory."""
    if norm is None or callable(norm) or (isinstance(norm, str) and norm in NORMS):
        return
    raise ValueError(
        f"{where}: norm must be one of {NORMS}, None, or a callable returning a norm module; "
        f"got {norm!r}"
    )


def in_float32(norm: Callable[[jax.Array], jax.Array], x: jax.Array) -> jax.Array:
    """Applies a norm to `x` in float32 and casts back to `x.dtype`.

    Flax's BatchNorm mixes a bfloat16 input or bfloat16 params with its float32 statistics,
    which strict dtype promotion rejects; normalising in float32 is the more accurate anyway
    (XLA fuses the casts).
    """
    with jax.numpy_dtype_promotion("standard"):
        return norm(x.astype(jnp.float32)).astype(x.dtype)


def batch_norm(
    x: jax.Array,
    train: bool,
    *,
    name: str,
    momentum: float,
    epsilon: float,
    axis_name: str | None,
    param_dtype: Any,
) -> jax.Array:
    """linen: `nn.BatchNorm` named `name` in the calling compact module, in float32.

    Args:
      x: `(..., C)`.
      train: batch statistics (updating `batch_stats`) when True, running averages else.
      name, momentum, epsilon, axis_name, param_dtype: as `nn.BatchNorm`'s.

    Returns:
      The normalised `x`, in `x.dtype`.
    """
    bn = nn.BatchNorm(
        use_running_average=not train,
        momentum=momentum,
        epsilon=epsilon,
        axis_name=axis_name,
        dtype=jnp.float32,
        param_dtype=param_dtype,
        name=name,
    )
    return in_float32(bn, x)


class BatchNorm(nnx.BatchNorm):
    """nnx: `nnx.BatchNorm` computed in float32, returned in the input's dtype (same variables)."""

    def __init__(self, num_features: int, **kwargs: Any):
        super().__init__(num_features, dtype=jnp.float32, **kwargs)

    def __call__(
        self,
        x: jax.Array,
        use_running_average: bool | None = None,
        *,
        mask: jax.Array | None = None,
    ) -> jax.Array:
        parent = super().__call__
        return in_float32(lambda h: parent(h, use_running_average, mask=mask), x)
