"""The ImageNet nets' parts on the layer contract: LayerNorm's spec, squeeze-excite and drop path.

`LayerNormSpec` is a `_layer_specs`-style spec (`build`, `variables`, `apply`): the linen and
nnx `LayerNorm` wrap it. `squeeze_excite` and `drop_path` are the computations of the
`SqueezeExcite` and `DropPath` modules of both APIs, which only differ in how they hold their
two pointwise convs (linen submodules, nnx attributes; same names) and their rng.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import ClassVar

import jax
import jax.numpy as jnp
from flax.linen import initializers
from jax import lax
from jax.typing import ArrayLike

from sepconv_jax import _args
from sepconv_jax import _layer_specs as specs


@dataclasses.dataclass(frozen=True)
class LayerNormSpec:
    """`LayerNorm` over the last (channel) axis: `scale` and `bias` `(C,)`, float32 statistics."""

    OPTIONAL: ClassVar[tuple[str, ...]] = ()

    in_features: int
    epsilon: float
    param_dtype: specs.Dtype
    where: str

    @classmethod
    def build(
        cls,
        *,
        in_features: int,
        epsilon: float = 1e-6,
        param_dtype: specs.Dtype = jnp.float32,
        where: str = "LayerNorm",
    ) -> LayerNormSpec:
        """Validates the layer's arguments (see `linen.LayerNorm`).

        Raises:
          ValueError: a non-positive `in_features` or `epsilon`.
        """
        if not isinstance(epsilon, (int, float)) or not epsilon > 0:
            raise ValueError(f"{where}: epsilon must be a positive number, got {epsilon!r}")
        return cls(
            in_features=_args.positive_int(in_features, "in_features", where),
            epsilon=float(epsilon),
            param_dtype=param_dtype,
            where=where,
        )

    def variables(self) -> tuple[specs.Variable, ...]:
        """`scale` (ones) and `bias` (zeros), in creation order."""
        c = (self.in_features,)
        return (
            specs.Variable("scale", c, initializers.ones_init(), self.param_dtype),
            specs.Variable("bias", c, initializers.zeros_init(), self.param_dtype),
        )

    def apply(self, values: Mapping[str, jax.Array], x: ArrayLike) -> jax.Array:
        """`(..., C)` → `(..., C)` in `x`'s dtype, normalised over `C` in float32."""
        x = specs.check_input(x, None, self.in_features, self.where)
        h = x.astype(jnp.float32)
        mean = jnp.mean(h, axis=-1, keepdims=True)
        var = jnp.mean(jnp.square(h - mean), axis=-1, keepdims=True)
        y = (h - mean) * lax.rsqrt(var + jnp.float32(self.epsilon))
        scale = values["scale"].astype(jnp.float32)
        y = y * jnp.reshape(scale, (1,) * (y.ndim - 1) + scale.shape)
        return specs.add_bias(y, values["bias"].astype(jnp.float32)).astype(x.dtype)


def squeeze_excite(
    x: jax.Array,
    reduce: Callable[[jax.Array], jax.Array],
    expand: Callable[[jax.Array], jax.Array],
    act: Callable[[jax.Array], jax.Array],
    gate: Callable[[jax.Array], jax.Array],
    where: str,
) -> jax.Array:
    """`x * gate(expand(act(reduce(mean_hw(x)))))` for `x: (N, H, W, C)`.

    Raises:
      ValueError: `x` not 4-D.
    """
    x = jnp.asarray(x)
    if x.ndim != 4:
        raise ValueError(f"{where}: x must have shape (N, H, W, C), got shape {x.shape}")
    s = gate(expand(act(reduce(jnp.mean(x, axis=(1, 2), keepdims=True)))))
    return x * s.astype(x.dtype)


def check_rate(rate: float, where: str) -> float:
    """`rate` as a float; raises `ValueError` unless it is in `[0, 1)`."""
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0.0 <= rate < 1.0:
        raise ValueError(f"{where}: rate must be in [0, 1), got {rate!r}")
    return float(rate)


def drop_path(x: jax.Array, rate: float, key: jax.Array | None) -> jax.Array:
    """Zeroes whole samples of `x: (N, ...)` with probability `rate`, scales the rest by
    `1/(1-rate)`; identity when `key` is `None` or `rate == 0`."""
    if key is None or rate == 0.0:
        return x
    keep = 1.0 - rate
    mask = jax.random.bernoulli(key, keep, (x.shape[0],) + (1,) * (x.ndim - 1))
    return jnp.where(mask, x / jnp.asarray(keep, x.dtype), jnp.zeros_like(x))
