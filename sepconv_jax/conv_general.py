"""A drop-in `lax.conv_general_dilated` that routes 2-D depthwise convs as `depthwise_conv` does.

`flax.linen.Conv(..., conv_general_dilated=sepconv_jax.conv_general_dilated)` and
`flax.nnx.Conv(..., conv_general_dilated=...)` then get the library's depthwise paths for their
depthwise layers (`feature_group_count == C_in`) without other code changes: the Pallas kernel
where `implementation` takes it, the sum over taps on the CPU backend (`auto`) or everywhere
(`taps`); every other conv goes to `lax`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

from sepconv_jax import _args, _routing
from sepconv_jax.kernels import config

_NHWC = lax.ConvDimensionNumbers(
    lhs_spec=(0, 3, 1, 2), rhs_spec=(3, 2, 0, 1), out_spec=(0, 3, 1, 2)
)


def _is_ones(v: Sequence[int] | None) -> bool:
    return v is None or all(int(d) == 1 for d in v)


def _routable(lhs, rhs, padding, lhs_dilation, dimension_numbers, feature_group_count,
              batch_group_count, preferred_element_type) -> _args.Padding | None:  # fmt: skip
    """The padding as `_args.Padding` when this call is a 2-D NHWC/HWIO depthwise conv, else `None`."""
    if lhs.ndim != 4 or rhs.ndim != 4 or batch_group_count != 1 or not _is_ones(lhs_dilation):
        return None
    try:
        dn = lax.conv_dimension_numbers(lhs.shape, rhs.shape, dimension_numbers)
    except (TypeError, ValueError):
        return None
    c = lhs.shape[3]
    if dn != _NHWC or feature_group_count != c or rhs.shape[2] != 1:
        return None
    if lhs.dtype != rhs.dtype or not jnp.issubdtype(lhs.dtype, jnp.floating):
        return None
    if preferred_element_type is not None and jnp.dtype(preferred_element_type) != lhs.dtype:
        return None
    if isinstance(padding, str):
        if padding.upper() not in ("SAME", "VALID"):
            return None
        return _args.Padding(padding.upper(), None, None)
    try:
        pads = tuple((int(lo), int(hi)) for lo, hi in padding)
    except (TypeError, ValueError):
        return None
    if len(pads) != 2 or any(lo < 0 or hi < 0 for lo, hi in pads):
        return None
    return _args.Padding(pads, None, None)


def make_conv_general_dilated(implementation: str = "auto") -> Callable[..., jax.Array]:
    """`conv_general_dilated` routing depthwise convs with the given `implementation`.

    `"pallas"` forces the kernel for the depthwise convs it supports (interpret mode off GPU;
    unsupported depthwise configurations still go to `lax`), e.g. to test that a model uses it.
    """
    _args.check_implementation(implementation)

    def conv_general_dilated(
        lhs: jax.Array,
        rhs: jax.Array,
        window_strides: Sequence[int],
        padding: str | Sequence[tuple[int, int]],
        lhs_dilation: Sequence[int] | None = None,
        rhs_dilation: Sequence[int] | None = None,
        dimension_numbers: Any = None,
        feature_group_count: int = 1,
        batch_group_count: int = 1,
        precision: lax.PrecisionLike = None,
        preferred_element_type: Any = None,
        out_sharding: Any = None,
    ) -> jax.Array:
        """`lax.conv_general_dilated`, with 2-D depthwise convs routed as `depthwise_conv` routes them."""
        if implementation != "xla" and out_sharding is None:
            lhs_a, rhs_a = jnp.asarray(lhs), jnp.asarray(rhs)
            pad = _routable(lhs_a, rhs_a, padding, lhs_dilation, dimension_numbers,
                            feature_group_count, batch_group_count, preferred_element_type)  # fmt: skip
            if pad is not None:
                strides = tuple(int(s) for s in window_strides)
                dilation = (1, 1) if rhs_dilation is None else tuple(int(d) for d in rhs_dilation)
                mode = implementation
                if mode == "pallas" and config.unsupported_reason(
                    lhs_a, rhs_a, strides, pad, dilation
                ):
                    mode = "auto"  # a drop-in never raises for a valid lax call
                return _routing.depthwise(lhs_a, rhs_a, strides, pad, dilation, precision, mode)
        extra = {} if out_sharding is None else {"out_sharding": out_sharding}
        return lax.conv_general_dilated(
            lhs,
            rhs,
            window_strides,
            padding,
            lhs_dilation=lhs_dilation,
            rhs_dilation=rhs_dilation,
            dimension_numbers=dimension_numbers,
            feature_group_count=feature_group_count,
            batch_group_count=batch_group_count,
            precision=precision,
            preferred_element_type=preferred_element_type,
            **extra,
        )

    return conv_general_dilated


#: `lax.conv_general_dilated` with depthwise convs on the kernel where `auto` takes it.
conv_general_dilated = make_conv_general_dilated("auto")
