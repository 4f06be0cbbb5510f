"""The causal sequence layers' shared logic, called by their linen and nnx wrappers (private).

`CausalDepthwiseConv1D`, `CausalSeparableConv1D` and `ConformerConv` exist in both APIs with the
same parameters; the wrappers only create variables (parameters, the decode state) and call the
functions here, which validate the arguments and call `sepconv_jax.causal_depthwise_conv1d`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from sepconv_jax import _args, ops
from sepconv_jax import _layer_specs as specs
from sepconv_jax.causal import ACTIVATIONS, causal_depthwise_conv1d, init_causal_state

#: `ConformerConv`'s norms after the depthwise conv. BatchNorm mixes frames of the whole batch in
#: training mode (future frames included), so a causal (streaming) module takes LayerNorm only.
CONFORMER_NORMS = ("layer", "batch")


def kernel_width(kernel_size: int | Sequence[int], where: str) -> int:
    """The window length `W` from an int or a one-entry sequence.

    Raises:
      ValueError: a non-positive width or a sequence of other than one entry.
    """
    if not isinstance(kernel_size, (int, np.integer)):
        try:
            entries = tuple(kernel_size)
        except TypeError as err:
            raise ValueError(
                f"{where}: kernel_size must be a positive int (the window length), "
                f"got {kernel_size!r}"
            ) from err
        if len(entries) != 1:
            raise ValueError(
                f"{where}: kernel_size must be an int or one entry (a 1-D window), "
                f"got {kernel_size!r}"
            )
        kernel_size = entries[0]
    return _args.positive_int(kernel_size, "kernel_size", where)


def check_options(dilation: int, activation: str | None, implementation: str, where: str) -> int:
    """Validates a causal layer's constructor options; returns the dilation as an int."""
    d = _args.positive_int(dilation, "dilation", where)
    if activation is not None and activation not in ACTIVATIONS:
        raise ValueError(
            f"{where}: activation must be None or one of {sorted(ACTIVATIONS)}, got {activation!r}"
        )
    _args.check_implementation(implementation, where)
    if implementation == "pallas":
        raise ValueError(
            f"{where}: implementation='pallas' is not supported for causal 1-D convs (the "
            "Pallas kernels are 2-D); use 'auto', 'xla' or 'taps'"
        )
    return d


def check_x(x: jax.Array, in_features: int | None, where: str) -> None:
    """Raises `ValueError` unless `x` is `(N, T, C)` (with `C == in_features` when given)."""
    if x.ndim != 3:
        raise ValueError(f"{where}: x must have shape (N, T, C) (rank 3), got shape {x.shape}")
    if in_features is not None and x.shape[-1] != in_features:
        raise ValueError(
            f"{where}: x has shape {x.shape}, so {x.shape[-1]} channels, but "
            f"in_features={in_features}"
        )


def check_decode(decode: bool, segment_ids: Any, where: str) -> None:
    """Raises `ValueError` for `segment_ids` during decoding (packed sequences have no state)."""
    if decode and segment_ids is not None:
        raise ValueError(
            f"{where}: segment_ids cannot be used with decode=True (packed sequences are "
            "computed from zeros, without a cache); decode each sequence on its own"
        )


def depthwise(
    x: jax.Array,
    kernel: jax.Array,
    bias: jax.Array | None,
    *,
    dilation: int,
    activation: str | None,
    state: jax.Array | None,
    segment_ids: jax.Array | None,
    dtype: specs.Dtype | None,
    precision: lax.PrecisionLike,
    implementation: str,
) -> tuple[jax.Array, jax.Array | None]:
    """The causal depthwise conv of a layer; returns `(y, new_state)` (`None` without state).

    `x`, `kernel` and `bias` are cast to `dtype` (their promoted type if `None`); `state` must
    already have that dtype.
    """
    x, kernel, bias = specs.promote_to_compute(x, kernel, bias, dtype=dtype)
    out = causal_depthwise_conv1d(
        x,
        kernel,
        bias,
        dilation=dilation,
        state=state,
        segment_ids=segment_ids,
        activation=activation,
        return_state=state is not None,
        precision=precision,
        implementation=implementation,
    )
    return out if state is not None else (out, None)


def separable(
    x: jax.Array,
    depthwise_kernel: jax.Array,
    pointwise_kernel: jax.Array,
    bias: jax.Array | None,
    *,
    dilation: int,
    state: jax.Array | None,
    segment_ids: jax.Array | None,
    dtype: specs.Dtype | None,
    precision: lax.PrecisionLike,
    implementation: str,
) -> tuple[jax.Array, jax.Array | None]:
    """Causal depthwise then pointwise conv plus bias; returns `(y, new_state)`."""
    x, dw, pw, bias = specs.promote_to_compute(
        x, depthwise_kernel, pointwise_kernel, bias, dtype=dtype
    )
    h, new_state = depthwise(
        x,
        dw,
        None,
        dilation=dilation,
        activation=None,
        state=state,
        segment_ids=segment_ids,
        dtype=None,
        precision=precision,
        implementation=implementation,
    )
    return specs.add_bias(ops.pointwise_conv(h, pw, precision=precision), bias), new_state


def check_conformer(causal: bool, norm: str, where: str) -> None:
    """Raises `ValueError` for an unknown norm or BatchNorm in a causal `ConformerConv`."""
    if norm not in CONFORMER_NORMS:
        raise ValueError(f"{where}: norm must be one of {CONFORMER_NORMS}, got {norm!r}")
    if causal and norm == "batch":
        raise ValueError(
            f"{where}: norm='batch' cannot be causal (BatchNorm in training mode mixes every "
            "frame of the batch, future ones included); use norm='layer' or causal=False"
        )


def check_conformer_call(causal: bool, decode: bool, segment_ids: Any, where: str) -> None:
    """Raises `ValueError` for decoding or packing a non-causal `ConformerConv`."""
    check_decode(decode, segment_ids, where)
    if not causal and (decode or segment_ids is not None):
        raise ValueError(
            f"{where}: decode and segment_ids need causal=True (a centred window reads future "
            f"frames); got decode={decode}, segment_ids={'None' if segment_ids is None else 'an array'}"
        )


def glu(h: jax.Array) -> jax.Array:
    """Gated linear unit over channels: `a * sigmoid(b)` for `h = concat(a, b)`."""
    a, b = jnp.split(h, 2, axis=-1)
    return a * jax.nn.sigmoid(b)


def start_state(
    batch: int, kernel_size: int, channels: int, dilation: int, dtype: specs.Dtype
) -> jax.Array:
    """The decode cache at the start of a sequence (`init_causal_state`)."""
    return init_causal_state(batch, kernel_size, channels, dilation=dilation, dtype=dtype)
