"""Picks each conv's path once (Pallas kernel, sum over taps or XLA's conv) and runs it (private).

The unchecked core under the public ops and the modules: every function here takes arguments
already validated and promoted to one dtype (by `ops`, `fused`, `conv_general` or a layer spec)
and does no checking of its own. `implementation`:

* `"xla"`: XLA's grouped convolution.
* `"taps"`: the depthwise conv as a sum over the window's taps (`_depthwise_taps`).
* `"pallas"`: the Pallas kernel; a configuration it cannot run raises `ValueError`.
* `"auto"`: the row of `_auto_routes.AUTO_ROUTES` for this backend and shape, else XLA.

Inside `grouped_conv_only()`, `"auto"` and `"taps"` trace XLA's grouped conv.
"""

from __future__ import annotations

import jax
from jax import lax

from sepconv_jax import _args, _auto_routes, _depthwise_paths, kernels
from sepconv_jax.kernels import config, reference

_NO_EPILOGUE = config.Epilogue()
_RUN = {"xla": _depthwise_paths.xla_depthwise, "taps": _depthwise_paths.taps_depthwise}


def depthwise_path(
    x: jax.Array,
    kernel: jax.Array,
    strides: tuple[int, ...],
    padding: _args.Padding,
    dilation: tuple[int, ...],
    implementation: str,
) -> str:
    """`"pallas"`, `"taps"` or `"xla"`: where this depthwise conv runs.

    Raises:
      ValueError: `implementation="pallas"` for a configuration the kernel does not support.
    """
    if implementation == "pallas":
        reason = kernels.unsupported_reason(x, kernel, strides, padding, dilation)
        if reason is not None:
            raise ValueError(f"implementation='pallas' cannot run this depthwise conv: {reason}")
        return "pallas"
    if implementation == "xla" or _depthwise_paths.grouped_only():
        return "xla"
    if implementation == "taps":
        return "taps"
    supported = lambda: kernels.unsupported_reason(x, kernel, strides, padding, dilation) is None  # noqa: E731
    path = _auto_routes.lookup(
        jax.default_backend(),
        "depthwise",
        x.shape[0],
        lambda: kernels.shape_key(x, kernel, strides, padding) if supported() else None,
    )
    if path is None or (path == "pallas" and not supported()):
        return "xla"
    return path


def depthwise(
    x: jax.Array,
    kernel: jax.Array,
    strides: tuple[int, ...],
    padding: _args.Padding,
    dilation: tuple[int, ...],
    precision: lax.PrecisionLike,
    implementation: str,
) -> jax.Array:
    """`ops.depthwise_conv` on validated, promoted arguments, on the path `depthwise_path` picks.

    Raises:
      ValueError: as `depthwise_path`.
    """
    path = depthwise_path(x, kernel, strides, padding, dilation, implementation)
    if path == "pallas":
        return kernels.run_depthwise(x, kernel, strides, padding, precision)
    return _RUN[path](x, kernel, strides, padding, dilation, precision)


def takes_fused_kernel(
    x: jax.Array,
    dw: jax.Array,
    pw: jax.Array,
    strides: tuple[int, ...],
    padding: _args.Padding,
    dilation: tuple[int, ...],
    implementation: str,
) -> bool:
    """Whether a separable conv runs as the fused kernel (else depthwise, then the rest).

    Raises:
      ValueError: `implementation="pallas"` for a configuration the kernel does not support.
    """
    if implementation == "pallas":
        reason = kernels.unsupported_reason(x, dw, strides, padding, dilation, pw)
        if reason is not None:
            raise ValueError(f"implementation='pallas' cannot run this separable conv: {reason}")
        return True
    if implementation != "auto" or _depthwise_paths.grouped_only():
        return False
    supported = lambda: kernels.unsupported_reason(x, dw, strides, padding, dilation, pw) is None  # noqa: E731
    path = _auto_routes.lookup(
        jax.default_backend(),
        "fused",
        x.shape[0],
        lambda: kernels.shape_key(x, dw, strides, padding, pw) if supported() else None,
    )
    return path == "pallas" and supported()


def separable(
    x: jax.Array,
    dw: jax.Array,
    pw: jax.Array,
    strides: tuple[int, ...],
    padding: _args.Padding,
    dilation: tuple[int, ...],
    precision: lax.PrecisionLike,
    implementation: str,
    epilogue: config.Epilogue = _NO_EPILOGUE,
) -> jax.Array:
    """`act(depthwise(x) * scale + shift) @ pw + bias` on validated, promoted arguments.

    The fused kernel where `takes_fused_kernel`, else the depthwise step on the path
    `depthwise_path` picks (`"pallas"` falls back to XLA there) and the rest in XLA.

    Raises:
      ValueError: as `takes_fused_kernel`.
    """
    if takes_fused_kernel(x, dw, pw, strides, padding, dilation, implementation):
        return kernels.run_fused(x, dw, pw, epilogue, strides, padding, precision)
    h = depthwise(
        x,
        dw,
        strides,
        padding,
        dilation,
        precision,
        "xla" if implementation == "pallas" else implementation,
    )
    return reference.after_depthwise(h, pw, *epilogue[:3], epilogue.activation, precision)


def pointwise(x: jax.Array, kernel: jax.Array, precision: lax.PrecisionLike) -> jax.Array:
    """`ops.pointwise_conv` on validated, promoted arguments: a dot over the last axis."""
    return lax.dot_general(x, kernel, (((x.ndim - 1,), (0,)), ((), ())), precision=precision)
