"""Pallas GPU kernels for depthwise and fused depthwise-separable convs, and their routing.

`implementation` (every op that reaches here):

* `"auto"`: the kernel only where JAX runs on a GPU, the configuration is supported and the
  kernel was measured faster than XLA (`config.auto_takes_*`); XLA everywhere else.
* `"pallas"`: the kernel always (Pallas interpret mode off GPU: slow, for tests); a
  configuration the kernels do not support raises `ValueError` naming the argument.
* `"xla"`: never reaches the kernels.

The kernels run on Pallas' Triton backend (see `backend.py` for why, and how to swap it).
"""

from __future__ import annotations

import jax
from jax import lax

from sepconv_jax import _args
from sepconv_jax.kernels import backend, config, depthwise, separable

BACKEND = backend.NAME


def route_depthwise(
    x: jax.Array,
    kernel: jax.Array,
    strides: tuple[int, ...],
    padding: _args.Padding,
    dilation: tuple[int, ...],
    precision: lax.PrecisionLike,
    implementation: str,
) -> jax.Array | None:
    """Returns the kernel's result where `implementation` selects it, else `None` (use XLA).

    Arguments are validated and promoted by `ops.depthwise_conv`.

    Raises:
      ValueError: `implementation="pallas"` for a configuration the kernel does not support.
    """
    if implementation not in ("auto", "pallas"):  # "xla", "taps": no kernel
        return None
    reason = config.unsupported_reason(x, kernel, strides, padding, dilation)
    if implementation == "pallas" and reason is not None:
        raise ValueError(f"implementation='pallas' cannot run this depthwise conv: {reason}")
    if implementation != "pallas" and reason is not None:
        return None
    g = config.geometry(x.shape, kernel.shape[:2], strides, padding)
    gpu = backend.on_gpu()
    if implementation != "pallas" and not (gpu and config.auto_takes_depthwise(g, x.dtype)):
        return None
    s = depthwise.Static(
        g,
        config.depthwise_tiles(g),
        strides,
        padding,
        config.canonical_precision(precision),
        not gpu,
    )
    return depthwise.depthwise_conv2d(x, kernel, s)


def route_fused(
    x: jax.Array,
    dw: jax.Array,
    pw: jax.Array,
    scale: jax.Array | None,
    shift: jax.Array | None,
    bias: jax.Array | None,
    activation: str | None,
    strides: tuple[int, ...],
    padding: _args.Padding,
    precision: lax.PrecisionLike,
    implementation: str,
) -> jax.Array | None:
    """The fused kernel's result where `implementation` selects it, else `None` (use XLA).

    Arguments are validated and cast to one dtype by the caller.

    Raises:
      ValueError: `implementation="pallas"` for a configuration the kernel does not support.
    """
    if implementation not in ("auto", "pallas"):  # "xla", "taps": no kernel
        return None
    reason = config.unsupported_reason(x, dw, strides, padding, (1,) * len(strides), pw)
    if implementation == "pallas" and reason is not None:
        raise ValueError(f"implementation='pallas' cannot run this separable conv: {reason}")
    if implementation != "pallas" and reason is not None:
        return None
    g = config.geometry(x.shape, dw.shape[:2], strides, padding)
    c_out = pw.shape[-1]
    gpu = backend.on_gpu()
    if implementation != "pallas" and not (gpu and config.auto_takes_fused(g, c_out, x.dtype)):
        return None
    s = separable.Static(
        g,
        c_out,
        config.fused_tiles(g, c_out),
        config.depthwise_tiles(g),
        activation,
        strides,
        padding,
        config.canonical_precision(precision),
        not gpu,
    )
    return separable.fused_conv2d(x, dw, pw, scale, shift, bias, s)


def route_separable(
    x: jax.Array,
    dw: jax.Array,
    pw: jax.Array,
    strides: tuple[int, ...],
    padding: _args.Padding,
    dilation: tuple[int, ...],
    precision: lax.PrecisionLike,
    implementation: str,
) -> jax.Array | None:
    """Returns the fused kernel's result where `implementation` selects it, else `None`.

    Raises:
      ValueError: `implementation="pallas"` for a configuration the kernel does not support.
    """
    if any(d != 1 for d in dilation):
        if implementation == "pallas":
            raise ValueError(
                f"implementation='pallas' cannot run this separable conv: dilation={dilation} "
                "is not supported; the Pallas kernels need dilation 1"
            )
        return None
    return route_fused(
        x, dw, pw, None, None, None, None, strides, padding, precision, implementation
    )


__all__ = ["BACKEND", "route_depthwise", "route_fused", "route_separable"]
