"""Linen's side of the layer contract: a `_layer_specs` spec as a linen module's variables."""

from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from sepconv_jax import _args


def describe(module: nn.Module) -> str:
    """`"DepthwiseConv 'block0/depthwise'"`: the class and, when bound, the module path."""
    path = "/".join(module.scope.path) if module.scope is not None else ""
    return f"{type(module).__name__} {path!r}" if path else type(module).__name__


def fields(module: nn.Module) -> dict[str, Any]:
    """The module's dataclass fields as spec arguments (`features` is `out_features`)."""
    out = {
        f.name: getattr(module, f.name)
        for f in dataclasses.fields(module)
        if f.name not in ("parent", "name")
    }
    if "features" in out:
        out["out_features"] = out.pop("features")
    return out


def apply(module: nn.Module, spec_type: type, x: ArrayLike, *, spatial: bool = True) -> jax.Array:
    """Builds `spec_type` from the module's fields and `x`, declares its variables, applies it.

    Args:
      module: the calling `nn.compact` module; its fields are the spec's `build` arguments.
      spec_type: a `_layer_specs` spec class.
      x: the input; its last dim is `in_features`, its rank gives `num_spatial_dims` when
        `spatial`.
      spatial: whether the layer has a window (`x` must be `(N, *spatial, C)`).

    Returns:
      `spec.apply(variables, x)`. Parameters are passed as arrays; other collections as their
      linen `Variable` (read and write `.value`).
    """
    where = describe(module)
    x = jnp.asarray(x)
    n = _args.spatial_dims(x.shape, "x", where) if spatial else None
    if not spatial and x.ndim < 1:
        raise ValueError(f"{where}: x must have a channel (last) axis, got shape {x.shape}")
    extra = {"num_spatial_dims": n} if spatial else {}
    spec = spec_type.build(in_features=x.shape[-1], where=where, **extra, **fields(module))
    return spec.apply(declare(module, spec), x)


def declare(module: nn.Module, spec: Any) -> dict[str, Any]:
    """Declares `spec.variables()` in the calling compact module; returns them by name.

    Parameters come back as arrays; other collections as their linen `Variable` (read and write
    `.value`).
    """
    values = {}
    for v in spec.variables():
        if v.collection == "params":
            values[v.name] = module.param(v.name, v.init, v.shape, v.dtype)
        else:
            values[v.name] = module.variable(v.collection, v.name, v.init, None, v.shape, v.dtype)
    return values
