"""What the op benchmark measures: its shape sets and dtypes, one `Problem`, its bytes and FLOPs."""

from __future__ import annotations

import dataclasses
import math

import jax.numpy as jnp
import numpy as np

from sepconv_jax import cost

KERNEL = 3
#: (B, H, W, C, C_out) per named set; 3×3, stride 1, SAME padding throughout.
SHAPE_SETS: dict[str, tuple[tuple[int, int, int, int, int], ...]] = {
    "gpu": (
        (256, 32, 32, 128, 128),
        (256, 16, 16, 256, 256),
        (256, 8, 8, 512, 512),
        (128, 56, 56, 128, 128),
        (128, 28, 28, 256, 256),
        (128, 14, 14, 512, 512),
        (128, 7, 7, 1024, 1024),
    ),
    "cpu-small": ((16, 32, 32, 32, 32), (16, 16, 16, 64, 64), (8, 8, 8, 128, 128)),
    "quick": ((2, 8, 8, 8, 16),),
}
DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}
OPS = ("dw", "sep", "full")


@dataclasses.dataclass(frozen=True)
class Problem:
    """One op at one shape, dtype and pass."""

    op: str
    shape: tuple[int, int, int, int, int]
    dtype: str
    passes: str  # "fwd" or "fwdbwd"

    @property
    def label(self) -> str:
        return "×".join(map(str, self.shape[:3])) + f"×{self.shape[3]}→{self.shape[4]}"

    @property
    def out_channels(self) -> int:
        return self.shape[3] if self.op == "dw" else self.shape[4]

    def weight_shapes(self) -> list[tuple[int, ...]]:
        """Kernel shapes in sepconv_jax's layout: dw `(3,3,1,C)`, pw `(C,Co)`, full `(3,3,C,Co)`."""
        _, _, _, c, co = self.shape
        if self.op == "dw":
            return [(KERNEL, KERNEL, 1, c)]
        if self.op == "sep":
            return [(KERNEL, KERNEL, 1, c), (c, co)]
        return [(KERNEL, KERNEL, c, co)]

    def floor_bytes(self) -> int:
        """Fewest bytes moved: fwd reads x and weights and writes y; bwd reads x, weights and dy
        and writes dx and dweights (intermediates of the separable conv never leave the chip)."""
        b, h, w, c, _ = self.shape
        item = np.dtype(DTYPES[self.dtype]).itemsize
        x = b * h * w * c * item
        y = b * h * w * self.out_channels * item
        wts = sum(math.prod(s) for s in self.weight_shapes()) * item
        fwd = x + wts + y
        return fwd if self.passes == "fwd" else fwd + (y + x + wts) + (x + wts)

    def fwd_flops(self) -> int:
        """Forward FLOPs (2 per multiply-add), counted by `sepconv_jax.cost`."""
        return library_fwd_flops(self.op, self.shape)

    def flops(self) -> int:
        # Backward = grad wrt input + grad wrt weights, each as many FLOPs as the forward.
        return self.fwd_flops() * (1 if self.passes == "fwd" else 3)

    def bytes_per_set(self) -> int:
        b, h, w, c, _ = self.shape
        item = np.dtype(DTYPES[self.dtype]).itemsize
        x = b * h * w * c * item
        y = b * h * w * self.out_channels * item
        wts = sum(math.prod(s) for s in self.weight_shapes()) * item
        return x + wts + y * (2 if self.passes == "fwdbwd" else 1)


def formula_flops(op: str, shape: tuple[int, ...]) -> int:
    """The closed form (2 FLOPs per multiply-add, padding taps counted), for checking the library."""
    b, h, w, c, co = shape
    dw = 2 * b * h * w * c * KERNEL * KERNEL
    if op == "dw":
        return dw
    if op == "sep":
        return dw + 2 * b * h * w * c * co
    return 2 * b * h * w * KERNEL * KERNEL * c * co


def library_fwd_flops(op: str, shape: tuple[int, ...]) -> int:
    """Forward FLOPs from `sepconv_jax.cost` (the library's own accounting; SAME, stride 1)."""
    b, h, w, c, co = shape
    x_shape, window = (b, h, w, c), (KERNEL, KERNEL)
    if op == "dw":
        result = cost.depthwise_cost(x_shape, window)
    elif op == "sep":
        result = cost.separable_cost(x_shape, window, co)
    else:
        result = cost.full_cost(x_shape, window, co)
    return int(result.flops)
