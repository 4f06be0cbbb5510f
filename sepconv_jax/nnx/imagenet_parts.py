"""nnx twins of the ImageNet nets' parts: `SqueezeExcite`, `DropPath`, `LayerNorm`."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx
from jax import lax
from jax.typing import ArrayLike

from sepconv_jax import _args, activations
from sepconv_jax import _layer_specs as specs
from sepconv_jax._block_specs import LayerNormSpec, check_rate, drop_path, squeeze_excite
from sepconv_jax.nnx.convs import PointwiseConv
from sepconv_jax.nnx.spec_module import SpecLayer


class LayerNorm(SpecLayer):
    """nnx twin of `sepconv_jax.linen.LayerNorm`: `scale`, `bias` `(num_features,)`.

    Args:
      num_features: channels `C` of `x: (..., C)`.
      epsilon: added to the variance. Defaults to 1e-6.
      param_dtype: dtype of `scale` and `bias`. Defaults to float32.
      rngs: `nnx.Rngs` (unused by the initialisers, kept for nnx's convention).

    Examples:
      >>> import jax.numpy as jnp
      >>> from flax import nnx
      >>> LayerNorm(8, rngs=nnx.Rngs(0))(jnp.ones((2, 3, 3, 8))).shape
      (2, 3, 3, 8)
    """

    def __init__(
        self,
        num_features: int,
        *,
        epsilon: float = 1e-6,
        param_dtype: specs.Dtype = jnp.float32,
        rngs: nnx.Rngs,
    ):
        spec = LayerNormSpec.build(
            in_features=num_features, epsilon=epsilon, param_dtype=param_dtype
        )
        super().__init__(spec, rngs=rngs)


class SqueezeExcite(nnx.Module):
    """nnx twin of `sepconv_jax.linen.SqueezeExcite` (same submodules `reduce`, `expand`).

    Args:
      in_features: channels `C` of `x: (N, H, W, C)`.
      features: squeezed channels.
      act, gate: activation names, as the linen module. Defaults to `"relu"`, `"sigmoid"`.
      dtype, param_dtype, precision: as `PointwiseConv`.
      rngs: `nnx.Rngs` for the two convs' kernels.
    """

    def __init__(
        self,
        in_features: int,
        features: int,
        *,
        act: str = "relu",
        gate: str = "sigmoid",
        dtype: specs.Dtype | None = None,
        param_dtype: specs.Dtype = jnp.float32,
        precision: lax.PrecisionLike = None,
        rngs: nnx.Rngs,
    ):
        where = "SqueezeExcite"
        features = _args.positive_int(features, "features", where)
        self.act, self.gate = activations.get(act), activations.get(gate)
        conv = dict(dtype=dtype, param_dtype=param_dtype, precision=precision, rngs=rngs)
        self.reduce = PointwiseConv(in_features, features, **conv)
        self.expand = PointwiseConv(features, in_features, **conv)

    def __call__(self, x: ArrayLike) -> jax.Array:
        """Gates `x: (N, H, W, C)` channel by channel; returns the same shape."""
        return squeeze_excite(x, self.reduce, self.expand, self.act, self.gate, "SqueezeExcite")


class DropPath(nnx.Module):
    """nnx twin of `sepconv_jax.linen.DropPath`: identity under `model.eval()`.

    Args:
      rate: drop probability in `[0, 1)`.
      deterministic: identity when `True` (`model.eval()` sets it). Defaults to False.
      rngs: `nnx.Rngs` with a `"dropout"` stream (needed when `rate > 0` in training).
    """

    def __init__(self, rate: float, *, deterministic: bool = False, rngs: nnx.Rngs | None = None):
        self.rate = check_rate(rate, "DropPath")
        self.deterministic = deterministic
        self.rngs = rngs if rngs is not None and rate > 0 else None

    def __call__(self, x: ArrayLike) -> jax.Array:
        """Applies the layer to `x: (N, ...)`; returns the same shape and dtype."""
        x = jnp.asarray(x)
        if self.deterministic or self.rate == 0.0:
            return x
        if self.rngs is None:
            raise ValueError("DropPath: training with rate > 0 needs rngs with a 'dropout' stream")
        return drop_path(x, self.rate, self.rngs.dropout())
