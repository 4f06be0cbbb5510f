"""Default initialisers and argument checks shared by the linen and nnx modules (private)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax.linen import dtypes, initializers

from sepconv_jax import _args
from sepconv_jax._args import check_implementation, positive_int  # noqa: F401 (the modules use them)
from sepconv_jax._args import positive_int

Dtype = Any
Initializer = Callable[..., jax.Array]
Act = Callable[[jax.Array], jax.Array]

#: He (Kaiming) normal for a depthwise kernel `(*window, 1, C*m)`. With `in_axis=-2` (size 1)
#: and `out_axis=-1`, `variance_scaling` takes fan_in = 1 * prod(window): each output sums
#: prod(window) inputs of one channel, so the variance is 2 / prod(window), the He value for a
#: layer followed by ReLU. (PyTorch ignores groups in fan_out: torchvision's
#: `kaiming_normal_(mode="fan_out")` gives a depthwise kernel 2 / (C*m*prod(window)).)
default_depthwise_init: Initializer = initializers.variance_scaling(
    2.0, "fan_in", "truncated_normal", in_axis=-2, out_axis=-1
)
#: LeCun normal for a pointwise kernel `(C_in, C_out)`: `nn.Dense`'s default (variance 1/C_in).
#: After a He depthwise kernel, the separable pair has the variance of a He full conv (the
#: ReLU gain of 2 counted once: there is no nonlinearity between the two).
default_pointwise_init: Initializer = initializers.lecun_normal()
default_bias_init: Initializer = initializers.zeros_init()

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


def spatial_dims(x: jax.Array, where: str) -> int:
    """The number of spatial dims of `x: (N, *spatial, C)`; raises `ValueError` if not 1-3."""
    return _args.spatial_dims(x.shape, "x", where)


def window(kernel_size: int | Sequence[int], n: int | None, where: str) -> tuple[int, ...]:
    """`kernel_size` as a window of `n` positive ints (`n=None`: a tuple's length, else 2).

    Raises:
      ValueError: a non-positive entry, or a sequence whose length is not `n`.
    """
    if n is not None:
        n = positive_int(n, "num_spatial_dims", where)
        if n not in _args.DIMENSION_NUMBERS:
            raise ValueError(f"{where}: num_spatial_dims must be 1, 2 or 3, got {n}")
    elif isinstance(kernel_size, (int, np.integer)):
        n = 2
    else:
        try:
            n = len(kernel_size)
        except TypeError as err:
            raise ValueError(
                f"{where}: kernel_size must be a positive int or a sequence of them, "
                f"got {kernel_size!r}"
            ) from err
        if n not in _args.DIMENSION_NUMBERS:
            raise ValueError(
                f"{where}: kernel_size must have 1, 2 or 3 entries (one per spatial dim), "
                f"got {kernel_size!r}"
            )
    return _args.normalize_tuple(kernel_size, n, f"{where}: kernel_size")


def freeze_padding(padding: _args.PaddingLike) -> _args.PaddingLike:
    """`padding` with lists turned into tuples (hashable, for nnx's static attributes)."""
    if isinstance(padding, (str, int, np.integer)):
        return padding
    return tuple(p if isinstance(p, (int, np.integer)) else tuple(p) for p in padding)


def promote(*arrays: jax.Array | None, dtype: Dtype | None) -> list[jax.Array | None]:
    """`flax.linen.dtypes.promote_dtype`: all to `dtype`, or to their common type if `None`.

    Inference uses JAX's standard lattice (float32 params with a bfloat16 `x` give float32),
    whatever the user's promotion config; the casts themselves are explicit.
    """
    with jax.numpy_dtype_promotion("standard"):
        return dtypes.promote_dtype(*arrays, dtype=dtype)


def add_bias(y: jax.Array, bias: jax.Array | None) -> jax.Array:
    """`y + bias` over the last axis, with the rank made explicit (rank promotion may raise)."""
    if bias is None:
        return y
    return y + jnp.reshape(bias, (1,) * (y.ndim - 1) + bias.shape)


def in_float32(norm: Callable[[jax.Array], jax.Array], x: jax.Array) -> jax.Array:
    """Applies a norm to `x` in float32 and casts back to `x.dtype`.

    Flax's BatchNorm mixes a bfloat16 input or bfloat16 params with its float32 statistics,
    which strict dtype promotion rejects; normalising in float32 is the more accurate anyway
    (XLA fuses the casts).
    """
    with jax.numpy_dtype_promotion("standard"):
        return norm(x.astype(jnp.float32)).astype(x.dtype)


def identity(x: jax.Array) -> jax.Array:
    """The activation used where `act=None`."""
    return x
