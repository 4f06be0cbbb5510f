"""What the op benchmark measures and with what: shapes, one `Problem`, and the contenders.

A `Problem` is one op (3×3 depthwise, separable or full conv) at one shape, dtype and pass, with
its bandwidth-floor bytes and FLOPs; the contenders are sepconv_jax's implementations, stock Flax,
`lax.conv` and PyTorch, each with its random input sets.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn
from jax import lax

import sepconv_jax as sj
from benchmarks import common
from sepconv_jax import cost

# ---------------------------------------------------------------------------------------------
# Problems: shapes, dtypes, bytes and FLOPs.

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
    # The first three fit in a CPU's cache; the last two are MobileNet-sized (the second is
    # MobileNetV2-CIFAR's widest 3×3 layer at batch 32).
    "cpu-small": (
        (16, 32, 32, 32, 32),
        (16, 16, 16, 64, 64),
        (8, 8, 8, 128, 128),
        (8, 28, 28, 96, 96),
        (32, 32, 32, 144, 144),
    ),
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


# ---------------------------------------------------------------------------------------------
# JAX. Each contender is `f(x, *weights) -> y` in sepconv_jax's layouts.


def _flax_dw(x: jax.Array, k: jax.Array) -> jax.Array:
    c = x.shape[-1]
    conv = nn.Conv(c, (KERNEL, KERNEL), feature_group_count=c, use_bias=False, dtype=x.dtype)
    return conv.apply({"params": {"kernel": k}}, x)


def _flax_sep(x: jax.Array, k: jax.Array, p: jax.Array) -> jax.Array:
    h = _flax_dw(x, k)
    dense = nn.Dense(p.shape[-1], use_bias=False, dtype=x.dtype)
    return dense.apply({"params": {"kernel": p}}, h)


def _lax_full(x: jax.Array, w: jax.Array) -> jax.Array:
    # What flax.linen.Conv lowers to: one lax.conv_general_dilated.
    return lax.conv_general_dilated(
        x, w, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
    )


JAX_CONTENDERS: dict[tuple[str, str], Callable[..., jax.Array]] = {
    ("dw", "auto"): lambda x, k: sj.depthwise_conv(x, k),
    ("sep", "auto"): lambda x, k, p: sj.separable_conv(x, k, p),
    ("dw", "xla"): lambda x, k: sj.depthwise_conv(x, k, implementation="xla"),
    ("dw", "taps"): lambda x, k: sj.depthwise_conv(x, k, implementation="taps"),
    ("dw", "pallas"): lambda x, k: sj.depthwise_conv(x, k, implementation="pallas"),
    ("dw", "flax"): _flax_dw,
    ("sep", "xla"): lambda x, k, p: sj.separable_conv(x, k, p, implementation="xla"),
    ("sep", "taps"): lambda x, k, p: sj.separable_conv(x, k, p, implementation="taps"),
    ("sep", "pallas"): lambda x, k, p: sj.separable_conv(x, k, p, implementation="pallas"),
    ("sep", "flax"): _flax_sep,
    ("full", "xla"): _lax_full,
}
#: Column order of the summary table; "auto" is sepconv_jax's default (on the CPU backend the
#: sum over taps, elsewhere XLA's conv unless a kernel was measured faster), "xla" its ops with
#: implementation="xla" for dw and sep, and lax.conv (= flax.linen.Conv) for full; "taps" the
#: sum over window taps on any backend (on a CPU the same program as "auto").
CONTENDER_ORDER = ("auto", "xla", "taps", "pallas", "flax", "torch")
#: Contenders left out by default off GPU: "pallas" (interpret mode), "taps" (= "auto" there).
GPU_ONLY_BY_DEFAULT = ("pallas", "taps")


def fwdbwd(f: Callable[..., jax.Array]) -> Callable[..., Any]:
    """`(x, *weights, dy) -> (loss, (dx, *dweights))`: `value_and_grad` of `loss = sum(y * dy)`
    (float32 sum) in every input, as a training step runs it (`jit` it; the cotangent of `y` is
    `dy`)."""

    def loss(x: jax.Array, *rest: jax.Array) -> jax.Array:
        *weights, dy = rest
        y = f(x, *weights)
        return jnp.sum(y.astype(jnp.float32) * dy.astype(jnp.float32))

    def run(x: jax.Array, *rest: jax.Array) -> Any:
        return jax.value_and_grad(loss, argnums=tuple(range(len(rest))))(x, *rest)

    return run


def jax_inputs(problem: Problem, n: int, seed: int) -> list[tuple[jax.Array, ...]]:
    """`n` fresh random input sets `(x, *weights[, dy])` for `problem`, in its dtype."""
    dtype = DTYPES[problem.dtype]
    b, h, w, c, _ = problem.shape
    sets = []
    key = jax.random.key(seed)
    for _ in range(n):
        key, *ks = jax.random.split(key, 5)
        x = jax.random.normal(ks[0], (b, h, w, c), jnp.float32).astype(dtype)
        arrays = [x]
        for i, s in enumerate(problem.weight_shapes()):
            fan_in = math.prod(s[:-1])
            scale = jnp.asarray(1.0 / math.sqrt(fan_in), jnp.float32)
            arrays.append((jax.random.normal(ks[1 + i], s, jnp.float32) * scale).astype(dtype))
        if problem.passes == "fwdbwd":
            y_shape = (b, h, w, problem.out_channels)
            arrays.append(jax.random.normal(ks[3], y_shape, jnp.float32).astype(dtype))
        sets.append(tuple(arrays))
    return sets


# ---------------------------------------------------------------------------------------------
# PyTorch: conv2d(groups=C) + 1×1 conv, channels_last, cudnn.benchmark, TF32 allowed in float32
# (XLA's DEFAULT precision uses TF32 on this GPU too).


def torch_setup() -> Any:
    """PyTorch with cudnn.benchmark and TF32 on, or `None` where it is not importable."""
    torch = common.torch_or_none()
    if torch is None:
        return None
    torch.backends.cudnn.benchmark = True
    torch.backends.cudnn.allow_tf32 = True
    torch.backends.cuda.matmul.allow_tf32 = True
    return torch


def torch_fn(torch: Any, problem: Problem) -> Callable[..., Any]:
    """`(x, *weights) -> y` (fwd) or `(x, *weights, dy) -> (loss, grads)` (fwdbwd) in PyTorch."""
    functional = torch.nn.functional
    c = problem.shape[3]

    def fwd(x, *ws):
        if problem.op == "dw":
            return functional.conv2d(x, ws[0], padding=1, groups=c)
        if problem.op == "sep":
            return functional.conv2d(functional.conv2d(x, ws[0], padding=1, groups=c), ws[1])
        return functional.conv2d(x, ws[0], padding=1)

    if problem.passes == "fwd":

        def run_fwd(x, *ws):
            with torch.no_grad():
                return fwd(x, *ws)

        return run_fwd

    def run_fwdbwd(x, *rest):  # the same loss as `fwdbwd`: sum(y * dy) in float32
        *ws, dy = rest
        loss = (fwd(x, *ws).float() * dy.float()).sum()
        return loss, torch.autograd.grad(loss, (x, *ws))

    return run_fwdbwd


def torch_inputs(torch: Any, problem: Problem, n: int, device: str) -> list[tuple[Any, ...]]:
    """`n` random PyTorch input sets for `problem`, channels_last (with grad for fwdbwd)."""
    dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16}[problem.dtype]
    b, h, w, c, co = problem.shape
    cl = torch.channels_last
    grad = problem.passes == "fwdbwd"
    shapes = {"dw": [(c, 1, 3, 3)], "sep": [(c, 1, 3, 3), (co, c, 1, 1)], "full": [(co, c, 3, 3)]}
    sets = []
    for _ in range(n):
        x = torch.randn(b, c, h, w, device=device, dtype=dtype).to(memory_format=cl)
        arrays = [x.requires_grad_(grad)]
        for s in shapes[problem.op]:
            wt = torch.randn(*s, device=device, dtype=dtype) / math.sqrt(math.prod(s[1:]))
            arrays.append(wt.to(memory_format=cl).requires_grad_(grad))
        if grad:
            dy = torch.randn(b, problem.out_channels, h, w, device=device, dtype=dtype)
            arrays.append(dy.to(memory_format=cl))
        sets.append(tuple(arrays))
    return sets
