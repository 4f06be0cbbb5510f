"""Argument normalisers and validators shared by every op (private)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

#: Dimension numbers (lhs, rhs, out) per number of spatial dims: channels-last, HWIO kernels.
DIMENSION_NUMBERS: dict[int, tuple[str, str, str]] = {
    1: ("NWC", "WIO", "NWC"),
    2: ("NHWC", "HWIO", "NHWC"),
    3: ("NDHWC", "DHWIO", "NDHWC"),
}

#: The `implementation` values every op and module takes (see `ops.depthwise_conv`).
IMPLEMENTATIONS = ("auto", "xla", "pallas", "taps")

#: Padding strings the ops accept, and how the explicit ones extend the border.
PADDING_MODES: dict[str, str | None] = {
    "SAME": None,
    "VALID": None,
    "CAUSAL": "constant",
    "CIRCULAR": "wrap",
    "REFLECT": "reflect",
    "REPLICATE": "edge",
}

#: Modes that take an explicit amount, `(mode, amount)`: how `jnp.pad` extends the border.
BORDER_MODES: dict[str, str] = {"CIRCULAR": "wrap", "REFLECT": "reflect", "REPLICATE": "edge"}

#: Zero padding: a string, an int or one int / `(lo, hi)` pair per spatial dim; or a border mode
#: with an explicit amount, e.g. `("REFLECT", 1)` or `("CIRCULAR", [(0, 1), 2])`.
PaddingLike = (
    str | int | Sequence[int | tuple[int, int]] | tuple[str, int | Sequence[int | tuple[int, int]]]
)


class Padding(NamedTuple):
    """A padding argument resolved for one op call.

    Attributes:
      lax: what `lax.conv_general_dilated` gets: `"SAME"`, `"VALID"` or one `(lo, hi)` per dim.
      pre_pad: `(lo, hi)` per spatial dim to apply with `jnp.pad` before the conv, or `None`.
      mode: the `jnp.pad` mode for `pre_pad` (`"wrap"`, `"reflect"`, `"edge"`, `"constant"`).
    """

    lax: str | tuple[tuple[int, int], ...]
    pre_pad: tuple[tuple[int, int], ...] | None
    mode: str | None


def _at(where: str) -> str:
    """`"where: "` (a message prefix naming the layer), or `""`."""
    return f"{where}: " if where else ""


def positive_int(value: Any, name: str, where: str = "") -> int:
    """Returns `value` as an int; raises `ValueError` unless it is a positive int (not a bool)."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise ValueError(f"{_at(where)}{name} must be a positive int, got {value!r}")
    return int(value)


def check_implementation(implementation: str, where: str = "") -> str:
    """Raises `ValueError` unless `implementation` is one of `IMPLEMENTATIONS`."""
    if implementation not in IMPLEMENTATIONS:
        raise ValueError(
            f"{_at(where)}implementation must be one of {IMPLEMENTATIONS}, got {implementation!r}"
        )
    return implementation


def spatial_dims(shape: tuple[int, ...], name: str = "x", where: str = "") -> int:
    """The number of spatial dims of a `(N, *spatial, C)` shape; `ValueError` unless 1-3."""
    n = len(shape) - 2
    if n not in DIMENSION_NUMBERS:
        raise ValueError(
            f"{_at(where)}{name} must have shape (N, *spatial, C) with 1, 2 or 3 spatial dims "
            f"(rank 3, 4 or 5), got rank {len(shape)} with shape {tuple(shape)}"
        )
    return n


def window(
    kernel_size: int | Sequence[int], n: int | None, where: str = "", name: str = "kernel_size"
) -> tuple[int, ...]:
    """`kernel_size` as `n` positive ints; `n=None`: a sequence's length, 2 for an int.

    The one meaning of a window argument where there is no `x` to count spatial dims on (nnx
    constructors, `cost.separable_full_ratio`): an int is the same size along every spatial
    dim, the number of dims is `num_spatial_dims` (`n`), and without it a sequence's length or 2.

    Raises:
      ValueError: a non-positive entry, or a sequence whose length is not `n` or not 1-3.
    """
    if n is not None:
        n = positive_int(n, "num_spatial_dims", where)
        if n not in DIMENSION_NUMBERS:
            raise ValueError(f"{_at(where)}num_spatial_dims must be 1, 2 or 3, got {n}")
    elif isinstance(kernel_size, (int, np.integer)):
        n = 2
    else:
        try:
            n = len(kernel_size)
        except TypeError as err:
            raise ValueError(
                f"{_at(where)}{name} must be a positive int or a sequence of them, "
                f"got {kernel_size!r}"
            ) from err
        if n not in DIMENSION_NUMBERS:
            raise ValueError(
                f"{_at(where)}{name} must have 1, 2 or 3 entries (one per spatial dim), "
                f"got {kernel_size!r}"
            )
    return normalize_tuple(kernel_size, n, f"{_at(where)}{name}")


def normalize_tuple(value: int | Sequence[int], n: int, name: str) -> tuple[int, ...]:
    """Returns `value` as `n` positive ints, broadcasting a scalar.

    Raises:
      ValueError: if `value` has the wrong length or an entry is not a positive int.
    """
    if isinstance(value, (int, np.integer)):
        values = (int(value),) * n
    else:
        try:
            values = tuple(int(v) for v in value)
        except TypeError as err:
            raise ValueError(
                f"{name} must be a positive int or a sequence of {n} positive ints, got {value!r}"
            ) from err
        if len(values) != n:
            raise ValueError(f"{name} must have one entry per spatial dim ({n}), got {value!r}")
    if any(v <= 0 for v in values):
        raise ValueError(f"{name} must be positive, got {value!r}")
    return values


def explicit_pads(
    padding: str | tuple[tuple[int, int], ...],
    spatial: Sequence[int],
    extent: Sequence[int],
    strides: Sequence[int],
) -> tuple[tuple[int, int], ...]:
    """`Padding.lax` as one `(lo, hi)` zero-padding pair per spatial dim.

    Args:
      padding: `"SAME"`, `"VALID"` or the pairs themselves.
      spatial: the input's spatial sizes.
      extent: the dilated window, `(k - 1) * d + 1` per dim.
      strides: one per dim.
    """
    if isinstance(padding, str):
        return tuple(lax.padtype_to_pads(tuple(spatial), tuple(extent), tuple(strides), padding))
    return tuple(padding)


def resolve_padding(
    padding: PaddingLike, window: Sequence[int], dilation: Sequence[int]
) -> Padding:
    """Resolves a padding argument against the (dilated) window: the one definition.

    * `"SAME"`, `"VALID"`: as `lax.conv_general_dilated`.
    * `"CAUSAL"`: zeros, all `(k-1)*d` before and none after.
    * `"CIRCULAR"`, `"REFLECT"`, `"REPLICATE"`: that border, `(k-1)*d` split as SAME splits it
      at stride 1: `(k-1)*d // 2` before, the rest after (the output keeps the input's size).
    * `(mode, amount)` with a mode of `BORDER_MODES`: that border by an explicit amount, an int
      for every side or one int / `(lo, hi)` pair per spatial dim (PyTorch's
      `Conv2d(k, padding=p, padding_mode="reflect")` is `("REFLECT", p)`).
    * an int, or one int / `(lo, hi)` pair per spatial dim: zeros.

    Args:
      padding: one of the above.
      window: the kernel's spatial shape.
      dilation: the kernel dilation per spatial dim.

    Raises:
      ValueError: for an unknown string, a wrong length or a negative pad.
    """
    n = len(window)
    if _has_mode(padding):
        mode, amount = padding
        if mode.upper() not in BORDER_MODES:
            raise ValueError(
                f"padding (mode, amount) takes a mode of {sorted(BORDER_MODES)}, got {padding!r}"
            )
        return Padding("VALID", _zero_pads(amount, n), BORDER_MODES[mode.upper()])
    if isinstance(padding, str):
        key = padding.upper()
        if key not in PADDING_MODES:
            raise ValueError(
                f"padding must be one of {sorted(PADDING_MODES)}, an int or one (lo, hi) pair "
                f"per spatial dim; got {padding!r}"
            )
        if key in ("SAME", "VALID"):
            return Padding(key, None, None)
        total = [(k - 1) * d for k, d in zip(window, dilation)]
        if key == "CAUSAL":
            pads = tuple((t, 0) for t in total)
        else:
            pads = tuple((t // 2, t - t // 2) for t in total)
        return Padding("VALID", pads, PADDING_MODES[key])
    return Padding(_zero_pads(padding, n), None, None)


def _has_mode(padding: Any) -> bool:
    """Whether `padding` is a `(mode, amount)` pair."""
    return isinstance(padding, (tuple, list)) and len(padding) == 2 and isinstance(padding[0], str)


def _zero_pads(amount: Any, n: int) -> tuple[tuple[int, int], ...]:
    """An int or one int / `(lo, hi)` pair per dim as `n` non-negative `(lo, hi)` pairs."""
    if isinstance(amount, (int, np.integer)):
        pads = ((int(amount), int(amount)),) * n
    else:
        try:
            pads = tuple(_pair(p, amount) for p in amount)
        except TypeError as err:
            raise ValueError(
                f"padding must be a string, an int, one int or (lo, hi) pair per spatial dim, "
                f"or (mode, amount); got {amount!r}"
            ) from err
        if len(pads) != n:
            raise ValueError(
                f"padding must have one (lo, hi) pair per spatial dim ({n}), got {amount!r}"
            )
    if any(lo < 0 or hi < 0 for lo, hi in pads):
        raise ValueError(f"padding must be non-negative, got {amount!r}")
    return pads


def freeze_padding(padding: PaddingLike) -> PaddingLike:
    """`padding` with lists turned into tuples (hashable: a static attribute of a module)."""
    if isinstance(padding, (str, int, np.integer)):
        return padding
    if _has_mode(padding):
        return (padding[0], freeze_padding(padding[1]))
    return tuple(p if isinstance(p, (int, np.integer)) else tuple(p) for p in padding)


def _pair(p: Any, whole: Any) -> tuple[int, int]:
    if isinstance(p, (int, np.integer)):
        return (int(p), int(p))
    try:
        lo, hi = p
        return (int(lo), int(hi))
    except (TypeError, ValueError) as err:
        raise ValueError(
            f"padding entries must be ints or (lo, hi) pairs, got {p!r} in {whole!r}"
        ) from err


def check_floating(name: str, dtype: Any) -> None:
    """Raises `TypeError` unless `dtype` is a floating-point dtype."""
    if not jnp.issubdtype(dtype, jnp.floating):
        raise TypeError(f"{name} must have a floating-point dtype, got {jnp.dtype(dtype)}")


def check_input(x: jnp.ndarray, name: str = "x") -> int:
    """Checks `x` is a floating `(N, *spatial, C)` array; returns the number of spatial dims."""
    check_floating(name, x.dtype)
    return spatial_dims(x.shape, name)


def check_depthwise_kernel(kernel: jnp.ndarray, x_shape: tuple[int, ...]) -> int:
    """Checks a depthwise kernel `(*window, 1, C*m)` against `x` `(N, *spatial, C)`.

    Returns:
      The channel multiplier `m`.
    """
    check_floating("depthwise kernel", kernel.dtype)
    n, c = len(x_shape) - 2, x_shape[-1]
    expected = f"(*window, 1, C*m) with {n} window dims and C={c}"
    if kernel.ndim != n + 2:
        raise ValueError(
            f"depthwise kernel has shape {kernel.shape} (rank {kernel.ndim}) but x has "
            f"{n} spatial dims; expected {expected}"
        )
    if kernel.shape[-2] != 1:
        raise ValueError(
            f"depthwise kernel has shape {kernel.shape}; its second-to-last dim must be 1: "
            f"expected {expected}"
        )
    if kernel.shape[-1] == 0 or kernel.shape[-1] % c:
        raise ValueError(
            f"depthwise kernel has {kernel.shape[-1]} channels but x has {c}; "
            f"a depthwise kernel must be {expected} (a multiple of {c})"
        )
    if any(k <= 0 for k in kernel.shape[:-2]):
        raise ValueError(f"depthwise kernel window must be positive, got {kernel.shape}")
    return kernel.shape[-1] // c


def check_pointwise_kernel(kernel: jnp.ndarray, channels: int, what: str = "x") -> None:
    """Checks a pointwise kernel `(C_in, C_out)` against `channels` input channels."""
    check_floating("pointwise kernel", kernel.dtype)
    if kernel.ndim != 2:
        raise ValueError(
            f"pointwise kernel must have shape (C_in, C_out), got shape {kernel.shape}"
        )
    if kernel.shape[0] != channels:
        raise ValueError(
            f"pointwise kernel has shape {kernel.shape} but {what} has {channels} channels; "
            f"expected ({channels}, C_out)"
        )


def promote(*arrays: jnp.ndarray) -> tuple[jnp.ndarray, ...]:
    """Casts arrays to their common floating dtype (explicit, so strict promotion is fine)."""
    dtype = arrays[0].dtype
    with jax.numpy_dtype_promotion("standard"):  # JAX's lattice, whatever the user's config
        for a in arrays[1:]:
            dtype = jnp.promote_types(dtype, a.dtype)
    return tuple(a.astype(dtype) for a in arrays)
