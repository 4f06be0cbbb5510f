"""nnx's side of the layer contract: a `_layer_specs` spec as an nnx module's variables."""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
from flax import nnx
from jax.typing import ArrayLike

#: The nnx variable type of each collection a spec may declare.
VARIABLE_TYPES: dict[str, type[nnx.Variable]] = {
    "params": nnx.Param,
    "batch_stats": nnx.BatchStat,
    "cache": nnx.Cache,
}

#: Spec fields readable on the module itself (`layer.strides`, `layer.out_features`, ...).
_SPEC_ATTRIBUTES = (
    "in_features",
    "out_features",
    "kernel_size",
    "num_spatial_dims",
    "channel_multiplier",
    "strides",
    "padding",
    "dilation",
    "use_bias",
    "param_dtype",
)
#: Spec fields kept as plain attributes: set them (e.g. `nnx.set_attributes(dtype=None)`) to
#: change how the layer computes; its parameters stay as they are.
SETTABLE = ("dtype", "precision", "implementation")


class SpecLayer(nnx.Module):
    """An nnx layer that holds the variables of a spec and applies it.

    The spec is kept as a static attribute (`self.spec`); its variables are created in
    `spec.variables()` order, as `nnx.Param` (a `params` key each) or the `VARIABLE_TYPES` of
    their collection (initialised with key `None`); an optional variable the spec does not
    create (`spec.OPTIONAL`, e.g. `bias` without `use_bias`) is `None`. The spec's fields are
    readable on the layer; those of `SETTABLE` are plain attributes that may be set.

    Args:
      spec: a built `_layer_specs` spec.
      rngs: `nnx.Rngs` with a `params` stream.
    """

    def __init__(self, spec: Any, *, rngs: nnx.Rngs):
        self.spec = spec
        for name in SETTABLE:
            if hasattr(spec, name):
                setattr(self, name, getattr(spec, name))
        created = set()
        for v in spec.variables():
            key = rngs.params() if v.collection == "params" else None
            setattr(self, v.name, VARIABLE_TYPES[v.collection](v.init(key, v.shape, v.dtype)))
            created.add(v.name)
        for name in getattr(spec, "OPTIONAL", ()):
            if name not in created:
                setattr(self, name, nnx.data(None))

    def __call__(self, x: ArrayLike) -> jax.Array:
        """Applies the spec; parameters are passed as arrays, other state as its variable."""
        spec, values = self.bound()
        return spec.apply(values, x)

    def bound(self) -> tuple[Any, dict[str, Any]]:
        """The spec with the current `SETTABLE` attributes, and the values `apply` takes."""
        spec = self.spec
        changed = {k: getattr(self, k) for k in SETTABLE if hasattr(spec, k)}
        if any(getattr(spec, k) is not v for k, v in changed.items()):
            spec = dataclasses.replace(spec, **changed)
        values = {}
        for v in spec.variables():
            variable = getattr(self, v.name)
            values[v.name] = variable[...] if v.collection == "params" else variable
        return spec, values


def _spec_attribute(name: str) -> property:
    return property(lambda self: getattr(self.spec, name), doc=f"The spec's `{name}`.")


for _name in _SPEC_ATTRIBUTES:
    setattr(SpecLayer, _name, _spec_attribute(_name))
