"""Piecewise-linear activations of MobileNetV3: `hard_sigmoid` and `hard_swish` (Keras's forms)."""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike


def hard_sigmoid(x: ArrayLike) -> jax.Array:
    """`relu6(x + 3) / 6`: 0 below -3, 1 above 3, linear in between.

    The gate of MobileNetV3's squeeze-excite, exactly as Keras and PyTorch define it (JAX's
    `jax.nn.hard_sigmoid` is the same function; this one keeps the input's dtype under strict
    promotion).

    Args:
      x: any floating array.

    Returns:
      An array of the shape and dtype of `x`.

    Examples:
      >>> import jax.numpy as jnp
      >>> hard_sigmoid(jnp.array([-4.0, 0.0, 1.5, 4.0])).tolist()
      [0.0, 0.5, 0.75, 1.0]
    """
    x = jnp.asarray(x)
    three = jnp.asarray(3, x.dtype)
    return jnp.clip(x + three, 0, 6) / jnp.asarray(6, x.dtype)


def hard_swish(x: ArrayLike) -> jax.Array:
    """`x * hard_sigmoid(x)`: MobileNetV3's activation.

    Args:
      x: any floating array.

    Returns:
      An array of the shape and dtype of `x`.

    References:
      Howard et al., "Searching for MobileNetV3", 2019.

    Examples:
      >>> import jax.numpy as jnp
      >>> hard_swish(jnp.array([-4.0, 1.5, 4.0])).tolist()
      [-0.0, 1.125, 4.0]
    """
    x = jnp.asarray(x)
    return x * hard_sigmoid(x)


#: Activations by the names the model block plans use.
ACTIVATIONS = {
    "relu": jax.nn.relu,
    "relu6": jax.nn.relu6,
    "hard_swish": hard_swish,
    "hard_sigmoid": hard_sigmoid,
    "swish": jax.nn.silu,
    "sigmoid": jax.nn.sigmoid,
    "gelu": lambda x: jax.nn.gelu(x, approximate=False),
}


def get(name: str) -> Callable[[jax.Array], jax.Array]:
    """The activation called `name` (one of `ACTIVATIONS`).

    Raises:
      ValueError: an unknown name (the message lists the known ones).
    """
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; expected one of {sorted(ACTIVATIONS)}")
    return ACTIVATIONS[name]
