"""The two XLA paths of a depthwise conv (one grouped conv, or the sum over taps) (private).

A leaf: it imports only `_args` and `_depthwise_taps`, so that both the router (`_routing`) and
the kernels' XLA reference (`kernels.reference`) can use it without an import cycle. Arguments
are validated and promoted by the caller.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator

import jax
import jax.numpy as jnp
from jax import lax

from sepconv_jax import _args, _depthwise_taps

_GROUPED_CONV_ONLY = contextvars.ContextVar("sepconv_jax_grouped_conv_only", default=False)


@contextlib.contextmanager
def grouped_conv_only() -> Iterator[None]:
    """Within this context `implementation="auto"` and `"taps"` trace every depthwise conv as one
    grouped `lax.conv_general_dilated`, on every backend (no sum over taps).

    For tools that read the traced program, e.g. `sepconv_jax.cost.model_cost` and XLA's cost
    analysis, so that their counts do not depend on the backend. Affects tracing only: a function
    jitted and traced before entering keeps its program.
    """
    token = _GROUPED_CONV_ONLY.set(True)
    try:
        yield
    finally:
        _GROUPED_CONV_ONLY.reset(token)


def grouped_only() -> bool:
    """Whether the caller is inside `grouped_conv_only()`."""
    return _GROUPED_CONV_ONLY.get()


def xla_depthwise(
    x: jax.Array,
    kernel: jax.Array,
    strides: tuple[int, ...],
    padding: _args.Padding,
    dilation: tuple[int, ...],
    precision: lax.PrecisionLike,
) -> jax.Array:
    """One grouped `lax.conv_general_dilated`: `(N, *spatial, C)` → `(N, *out, C*m)`."""
    if padding.pre_pad is not None:
        x = jnp.pad(x, ((0, 0), *padding.pre_pad, (0, 0)), mode=padding.mode)
    return lax.conv_general_dilated(
        x,
        kernel,
        window_strides=strides,
        padding=padding.lax,
        rhs_dilation=dilation,
        dimension_numbers=_args.DIMENSION_NUMBERS[x.ndim - 2],
        feature_group_count=x.shape[-1],
        precision=precision,
    )


def taps_depthwise(
    x: jax.Array,
    kernel: jax.Array,
    strides: tuple[int, ...],
    padding: _args.Padding,
    dilation: tuple[int, ...],
    precision: lax.PrecisionLike,
) -> jax.Array:
    """The sum over the window's taps (`precision` does not apply), as `xla_depthwise`."""
    del precision
    return _depthwise_taps.depthwise_by_taps(x, kernel, strides, padding, dilation)
