"""Channels-last LayerNorm (linen), computed in float32: ConvNeXt's norm over the channel axis."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from sepconv_jax import _layer_specs as specs
from sepconv_jax._block_specs import LayerNormSpec
from sepconv_jax.linen import spec_module


class LayerNorm(nn.Module):
    """LayerNorm over the last (channel) axis of `(N, ..., C)`, in float32, cast back.

    `(x - mean_c(x)) / sqrt(var_c(x) + epsilon) * scale + bias` per position: ConvNeXt's
    "channels_last" LayerNorm (and Keras's `LayerNormalization(axis=-1)`). The statistics are
    taken in float32 whatever the compute dtype, as the library's BatchNorm does.
    `sepconv_jax.nnx.LayerNorm` is the same layer (`_block_specs.LayerNormSpec`).

    Attributes:
      epsilon: added to the variance. Defaults to 1e-6 (ConvNeXt's).
      param_dtype: dtype of `scale` and `bias`. Defaults to float32.

    Params: `scale` and `bias`, `(C,)`.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> x = jax.random.normal(jax.random.key(0), (2, 4, 4, 8))
      >>> y = LayerNorm().apply(LayerNorm().init(jax.random.key(1), x), x)
      >>> bool(jnp.allclose(y.mean(-1), 0, atol=1e-5)), y.shape
      (True, (2, 4, 4, 8))
    """

    epsilon: float = 1e-6
    param_dtype: specs.Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: ArrayLike) -> jax.Array:
        """Normalises `x: (N, ..., C)` over `C`; returns the same shape and dtype."""
        return spec_module.apply(self, LayerNormSpec, x, spatial=False)
