"""The one place that picks the Pallas GPU backend (Triton) for every kernel in this package.

Every kernel here runs on **Pallas' Triton backend** (`jax.experimental.pallas.triton`). Why:
the kernels are gathers of `(pixels × channels)` tiles with per-pixel border masks followed by a
`jnp.dot`, which is the programming model of Triton (pointer tensors, masked loads, `tl.dot`);
it runs on the H100 image (jax 0.11.2) and, in interpret mode, on a CPU. Mosaic GPU is the
backend JAX recommends going forward (the Triton backend is deprecated), but it needs a
different kernel shape (explicit SMEM staging, warpgroup `wgmma`, TMA copies): swapping means
re-writing the kernel bodies against this module's three functions, nothing else in the
package. `NAME` says which backend is in use; tests and benchmarks print it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
from jax.experimental import pallas as pl
from jax.experimental.pallas import triton as pltriton

#: The Pallas GPU backend every kernel of this package uses.
NAME = "triton"


def on_gpu() -> bool:
    """Whether JAX's default backend is a GPU (else kernels must run in interpret mode)."""
    return jax.default_backend() == "gpu"


def call(
    kernel: Callable[..., None],
    out_shape: jax.ShapeDtypeStruct,
    *,
    grid: int,
    num_warps: int,
    num_stages: int,
    interpret: bool,
    name: str,
) -> Callable[..., Any]:
    """`pallas_call` over a 1-D grid; every ref is the whole (flattened) array.

    Args:
      kernel: body taking `(*in_refs, out_ref)`; it reads `program_id(0)` for its tile.
      out_shape: the single output.
      grid: number of programs.
      num_warps, num_stages: Triton's launch and software-pipelining parameters.
      interpret: run as a JAX program (CPU, tests) instead of compiling for the GPU.
      name: kernel name in profiles.
    """
    return pl.pallas_call(
        kernel,
        out_shape=out_shape,
        grid=(grid,),
        interpret=interpret,
        name=name,
        compiler_params=pltriton.CompilerParams(num_warps=num_warps, num_stages=num_stages),
    )


def program_id() -> jax.Array:
    """This program's index in the 1-D grid."""
    return pl.program_id(0)


def load(ref: Any, offsets: jax.Array, mask: jax.Array | None = None) -> jax.Array:
    """Gathers `ref[offsets]` from a flat ref; masked-off lanes read 0 (offsets must be in range)."""
    if mask is None:
        return pltriton.load(ref.at[offsets])
    return pltriton.load(ref.at[offsets], mask=mask, other=0)


def store(ref: Any, offsets: jax.Array, value: jax.Array, mask: jax.Array) -> None:
    """Scatters `value` to `ref[offsets]` where `mask`.

    Masked-off lanes must carry an out-of-range offset (e.g. `ref.size`): the GPU skips them by
    the mask, interpret mode drops them as out-of-bounds updates, so they never race with a
    real lane that has the same offset.
    """
    pltriton.store(ref.at[offsets], value, mask=mask)


def fori(lo: int, hi: int, body: Callable[[Any, Any], Any], init: Any) -> Any:
    """A loop kept as a loop in the kernel (`scf.for`, pipelined by `num_stages`)."""
    if hi - lo == 1:
        return body(lo, init)
    return jax.lax.fori_loop(lo, hi, body, init)


__all__: Sequence[str] = ("NAME", "call", "fori", "load", "on_gpu", "program_id", "store")
