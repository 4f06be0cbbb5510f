"""A drop-in `lax.conv_general_dilated` that routes depthwise convs as `depthwise_conv` does.

`flax.linen.Conv(..., conv_general_dilated=sepconv_jax.conv_general_dilated)` and
`flax.nnx.Conv(..., conv_general_dilated=...)` then get the library's depthwise paths for their
depthwise layers (`feature_group_count == C_in`; 1, 2 or 3 spatial dims, channels-last as Flax
lays them out) without other code changes: the Pallas kernel where `implementation` takes it,
the sum over taps on the CPU backend (`auto`) or everywhere (`taps`); every other conv goes to
`lax`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from sepconv_jax import _args, _routing
from sepconv_jax.kernels import config


def _positive_ints(v: Sequence[int] | None, n: int) -> tuple[int, ...] | None:
    """`v` as `n` positive ints (`None`: all ones), or `None` when it is not that."""
    if v is None:
        return (1,) * n
    try:
        t = tuple(int(d) for d in v)
    except (TypeError, ValueError):
        return None
    return t if len(t) == n and all(d > 0 for d in t) else None


class _Route(NamedTuple):
    """The `depthwise_conv` arguments of a routed call."""

    strides: tuple[int, ...]
    padding: _args.Padding
    dilation: tuple[int, ...]


def _routable(lhs, rhs, window_strides, padding, lhs_dilation, rhs_dilation, dimension_numbers,
              feature_group_count, batch_group_count, preferred_element_type):  # fmt: skip
    """The `_Route` of a channels-last depthwise conv (`NWC`/`WIO`, `NHWC`/`HWIO` or
    `NDHWC`/`DHWIO`, as `flax` passes them), else `None` (a call for `lax`)."""
    n = lhs.ndim - 2
    if n not in _args.DIMENSION_NUMBERS or rhs.ndim != lhs.ndim or batch_group_count != 1:
        return None
    strides, dilation = _positive_ints(window_strides, n), _positive_ints(rhs_dilation, n)
    if strides is None or dilation is None or _positive_ints(lhs_dilation, n) != (1,) * n:
        return None
    try:
        dn = lax.conv_dimension_numbers(lhs.shape, rhs.shape, dimension_numbers)
        channels_last = lax.conv_dimension_numbers(lhs.shape, rhs.shape, _args.DIMENSION_NUMBERS[n])
    except (TypeError, ValueError):
        return None
    c = lhs.shape[-1]
    if dn != channels_last or feature_group_count != c or rhs.shape[-2] != 1:
        return None
    if lhs.dtype != rhs.dtype or not jnp.issubdtype(lhs.dtype, jnp.floating):
        return None
    if preferred_element_type is not None and jnp.dtype(preferred_element_type) != lhs.dtype:
        return None
    if isinstance(padding, str):
        if padding.upper() not in ("SAME", "VALID"):
            return None
        return _Route(strides, _args.Padding(padding.upper(), None, None), dilation)
    try:
        pads = tuple((int(lo), int(hi)) for lo, hi in padding)
    except (TypeError, ValueError):
        return None
    if len(pads) != n or any(lo < 0 or hi < 0 for lo, hi in pads):
        return None
    return _Route(strides, _args.Padding(pads, None, None), dilation)


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
        """`lax.conv_general_dilated`; depthwise convs routed as `depthwise_conv` routes them."""
        if implementation != "xla" and out_sharding is None:
            lhs_a, rhs_a = jnp.asarray(lhs), jnp.asarray(rhs)
            route = _routable(lhs_a, rhs_a, window_strides, padding, lhs_dilation, rhs_dilation,
                              dimension_numbers, feature_group_count, batch_group_count,
                              preferred_element_type)  # fmt: skip
            if route is not None:
                mode = implementation
                if mode == "pallas" and config.unsupported_reason(lhs_a, rhs_a, *route):
                    mode = "auto"  # a drop-in never raises for a valid lax call
                return _routing.depthwise(lhs_a, rhs_a, *route, precision, mode)
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
