"""Causal 1-D depthwise convolution over sequences, with a streaming state and packed sequences.

The short causal depthwise conv of Mamba, Griffin/RecurrentGemma, Hyena and Conformer: trained
on whole sequences, then decoded a token (or a chunk) at a time carrying the last
`(W - 1) * dilation` inputs as a state. The kernel layout is `depthwise_conv`'s `(W, 1, C*m)`;
tap `W - 1` multiplies the current step (PyTorch's `F.conv1d` with left padding, the
`causal-conv1d` package and recurrentgemma use the same order).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax
from jax.typing import ArrayLike

from sepconv_jax import _args, ops

#: Activations `causal_depthwise_conv1d` can apply after the bias (fused into the same program).
ACTIVATIONS = {"silu": jax.nn.silu}


def init_causal_state(
    batch: int,
    kernel_size: int,
    channels: int,
    *,
    dilation: int = 1,
    dtype: jnp.dtype = jnp.float32,
) -> jax.Array:
    """The state of a sequence's start: zeros of shape `(batch, (kernel_size - 1) * dilation,
    channels)`.

    Args:
      batch: `N`.
      kernel_size: the window length `W` (at least 1; `W = 1` gives an empty state).
      channels: `C`, the input channels of the conv (not `C*m`).
      dilation: the conv's dilation. Defaults to 1.
      dtype: the dtype of the `x` it will be used with. Defaults to float32.

    Returns:
      `(batch, (kernel_size - 1) * dilation, channels)` zeros.

    Raises:
      ValueError: a non-positive `batch`, `kernel_size`, `channels` or `dilation`.
      TypeError: a non-floating `dtype`.

    Examples:
      >>> init_causal_state(2, 4, 8, dilation=2).shape
      (2, 6, 8)
    """
    (batch,) = _args.normalize_tuple(batch, 1, "batch")
    (kernel_size,) = _args.normalize_tuple(kernel_size, 1, "kernel_size")
    (channels,) = _args.normalize_tuple(channels, 1, "channels")
    (dilation,) = _args.normalize_tuple(dilation, 1, "dilation")
    _args.check_floating("dtype", dtype)
    return jnp.zeros((batch, (kernel_size - 1) * dilation, channels), dtype)


def causal_depthwise_conv1d(
    x: ArrayLike,
    kernel: ArrayLike,
    bias: ArrayLike | None = None,
    *,
    dilation: int = 1,
    state: ArrayLike | None = None,
    segment_ids: ArrayLike | None = None,
    activation: str | None = None,
    return_state: bool = False,
    precision: ops.Precision = None,
    implementation: str = "auto",
) -> jax.Array | tuple[jax.Array, jax.Array]:
    """Causal depthwise conv over time: `y[t] = act(Σ_j kernel[j] · x[t - (W-1-j)·d] + bias)`.

    Without `state` and `segment_ids` this is `depthwise_conv(x, kernel, padding="CAUSAL",
    dilation=d)`. With `state` the inputs before `x` are the state's instead of zeros, so a
    sequence fed in chunks of any sizes (1 included), each call taking the previous call's
    `new_state`, gives exactly the outputs of one call on the whole sequence. A call costs
    `O((L + T) · W · C·m)` with `L = (W-1)·d`, whatever the length of the history.

    Args:
      x: `(N, T, C)`, floating dtype.
      kernel: `(W, 1, C*m)`, `W >= 1`; output channel `c*m + k` reads input channel `c`, tap
        `W - 1` multiplies the current step.
      bias: `(C*m,)` or `None`. Defaults to `None`.
      dilation: positive int. Defaults to 1.
      state: `(N, (W-1)*dilation, C)` with exactly `x`'s dtype: the inputs that precede `x`
        (`init_causal_state` gives the start of a sequence). Defaults to `None` (zeros).
      segment_ids: `(N, T)` integer ids of packed sequences: no tap reaches back across a
        change of id, so each run of equal ids is computed as if alone (from zeros). Needs
        `state=None` and `return_state=False`. Defaults to `None`.
      activation: `None` or `"silu"` (applied after the bias, as in Mamba). Defaults to `None`.
      return_state: also return `new_state`. Defaults to False.
      precision: passed to `lax.conv_general_dilated` where XLA's conv runs.
      implementation: as `depthwise_conv`: `"auto"` (the sum over taps on a CPU, XLA's conv
        elsewhere), `"xla"` or `"taps"`. `"pallas"` is not supported (the kernels are 2-D), and
        `segment_ids` needs `"auto"` or `"taps"` (a masked sum over taps). Defaults to `"auto"`.

    Returns:
      `y` `(N, T, C*m)` in the promoted dtype of `x`, `kernel` and `bias`; with
      `return_state=True`, `(y, new_state)` where `new_state` `(N, (W-1)*dilation, C)`, in
      `x`'s dtype, is the last `(W-1)*dilation` steps of `concat(state, x)` along time.

    Raises:
      ValueError: `x` not of rank 3, a bad kernel, bias, dilation or state shape,
        `segment_ids` of the wrong shape or with `state` / `return_state`, an unknown
        `activation`, or an unsupported `implementation`.
      TypeError: non-floating `x`, `kernel` or `bias`; a `state` whose dtype is not `x`'s;
        non-integer `segment_ids`.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> x = jax.random.normal(jax.random.key(0), (2, 10, 8))
      >>> k = jax.random.normal(jax.random.key(1), (4, 1, 8))
      >>> y = causal_depthwise_conv1d(x, k)
      >>> state = init_causal_state(2, 4, 8)
      >>> y1, state = causal_depthwise_conv1d(x[:, :7], k, state=state, return_state=True)
      >>> y2, state = causal_depthwise_conv1d(x[:, 7:], k, state=state, return_state=True)
      >>> bool(jnp.allclose(jnp.concatenate([y1, y2], axis=1), y, atol=1e-5)), state.shape
      (True, (2, 3, 8))
    """
    x, kernel = jnp.asarray(x), jnp.asarray(kernel)
    _args.check_input(x)
    if x.ndim != 3:
        raise ValueError(f"x must have shape (N, T, C) (rank 3), got rank {x.ndim}: {x.shape}")
    _args.check_depthwise_kernel(kernel, x.shape)
    (d,) = _args.normalize_tuple(dilation, 1, "dilation")
    n, t, c = x.shape
    width, features = kernel.shape[0], kernel.shape[-1]
    context = (width - 1) * d
    bias = _check_bias(bias, features)
    if activation is not None and activation not in ACTIVATIONS:
        raise ValueError(
            f"activation must be None or one of {sorted(ACTIVATIONS)}, got {activation!r}"
        )
    _check_implementation(implementation, segment_ids is not None)
    if segment_ids is not None:
        if state is not None or return_state:
            raise ValueError(
                "segment_ids cannot be combined with state or return_state=True: packed "
                "sequences start from zeros and their state is not defined; got "
                f"state={'None' if state is None else 'an array'}, return_state={return_state}"
            )
        segment_ids = _check_segment_ids(segment_ids, (n, t))
    if state is None:
        state = jnp.zeros((n, context, c), x.dtype)
    else:
        state = _check_state(state, x, context)
    history = jnp.concatenate([state, x], axis=1)  # (N, L + T, C)
    new_state = lax.slice_in_dim(history, t, t + context, axis=1)
    args = (history, kernel) if bias is None else (history, kernel, bias)
    history, kernel, *rest = _args.promote(*args)
    if segment_ids is None:
        y = ops.depthwise_conv(
            history,
            kernel,
            padding="VALID",
            dilation=d,
            precision=precision,
            implementation=implementation,
        )
    else:
        y = _masked_taps(history, kernel, segment_ids, d)
    if rest:
        y = y + rest[0].reshape(1, 1, features)
    if activation is not None:
        y = ACTIVATIONS[activation](y)
    return (y, new_state) if return_state else y


def _masked_taps(
    history: jax.Array, kernel: jax.Array, segment_ids: jax.Array, dilation: int
) -> jax.Array:
    """The causal conv as a sum over taps, each tap zeroed where it reaches before its segment.

    Args:
      history: `(N, L + T, C)`, the `L = (W-1)*dilation` zeros then `x`.
      kernel: `(W, 1, C*m)`.
      segment_ids: `(N, T)`.
      dilation: `d`.

    Returns:
      `(N, T, C*m)` in `history.dtype`; half-precision inputs accumulate in float32.
    """
    n, t = segment_ids.shape
    width, features = kernel.shape[0], kernel.shape[-1]
    context = (width - 1) * dilation
    m = features // history.shape[-1]
    if m > 1:  # output channel c*m + k reads input channel c
        history = jnp.repeat(history, m, axis=-1)
    steps = lax.broadcasted_iota(jnp.int32, (n, t), 1)
    change = jnp.concatenate(
        [jnp.ones((n, 1), bool), segment_ids[:, 1:] != segment_ids[:, :-1]], axis=1
    )
    start = lax.cummax(jnp.where(change, steps, 0), axis=1)  # first step of each one's segment
    acc = jnp.float32 if jnp.finfo(history.dtype).bits < 32 else history.dtype
    total = jnp.zeros((n, t, features), acc)
    for j in range(width):
        back = (width - 1 - j) * dilation
        piece = lax.slice_in_dim(history, context - back, context - back + t, axis=1)
        inside = (steps - back >= start)[:, :, None]
        weights = kernel[j, 0].astype(acc).reshape(1, 1, features)
        total = total + jnp.where(inside, piece.astype(acc), jnp.zeros((), acc)) * weights
    return total.astype(history.dtype)


def _check_implementation(implementation: str, segmented: bool) -> None:
    _args.check_implementation(implementation)
    if implementation == "pallas":
        raise ValueError(
            "implementation='pallas' is not supported by causal_depthwise_conv1d (the Pallas "
            "kernels are 2-D only); use 'auto', 'xla' or 'taps'"
        )
    if segmented and implementation == "xla":
        raise ValueError(
            "segment_ids needs implementation='auto' or 'taps' (a masked sum over taps; XLA's "
            "conv cannot mask taps per step); got implementation='xla'"
        )


def _check_bias(bias: ArrayLike | None, features: int) -> jax.Array | None:
    if bias is None:
        return None
    bias = jnp.asarray(bias)
    _args.check_floating("bias", bias.dtype)
    if bias.shape != (features,):
        raise ValueError(
            f"bias must have shape (C*m,) = ({features},) to match the kernel, got {bias.shape}"
        )
    return bias


def _check_segment_ids(segment_ids: ArrayLike, shape: tuple[int, int]) -> jax.Array:
    segment_ids = jnp.asarray(segment_ids)
    if not jnp.issubdtype(segment_ids.dtype, jnp.integer):
        raise TypeError(f"segment_ids must have an integer dtype, got {segment_ids.dtype}")
    if segment_ids.shape != shape:
        raise ValueError(
            f"segment_ids must have shape (N, T) = {shape} to match x, got {segment_ids.shape}"
        )
    return segment_ids


def _check_state(state: ArrayLike, x: jax.Array, context: int) -> jax.Array:
    state = jnp.asarray(state)
    n, _, c = x.shape
    if state.dtype != x.dtype:
        raise TypeError(
            f"state has dtype {state.dtype} but x has {x.dtype}; state must have exactly x's "
            f"dtype (init_causal_state(..., dtype=x.dtype))"
        )
    if state.shape != (n, context, c):
        raise ValueError(
            f"state must have shape (N, (W-1)*dilation, C) = {(n, context, c)} for x of shape "
            f"{x.shape} and this kernel and dilation, got {state.shape}"
        )
    return state
