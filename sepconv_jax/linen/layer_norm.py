"""Channels-last LayerNorm (linen), computed in float32: ConvNeXt's norm over the channel axis."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

from sepconv_jax import _layer_specs as specs


class LayerNorm(nn.Module):
    """LayerNorm over the last (channel) axis of `(N, ..., C)`, in float32, cast back.

    `(x - mean_c(x)) / sqrt(var_c(x) + epsilon) * scale + bias` per position: ConvNeXt's
    "channels_last" LayerNorm (and Keras's `LayerNormalization(axis=-1)`). The statistics are
    taken in float32 whatever the compute dtype, as the library's BatchNorm does.

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
    def __call__(self, x: jax.Array) -> jax.Array:
        """Normalises `x: (N, ..., C)` over `C`; returns the same shape and dtype."""
        x = jnp.asarray(x)
        c = x.shape[-1]
        scale = self.param("scale", nn.initializers.ones_init(), (c,), self.param_dtype)
        bias = self.param("bias", nn.initializers.zeros_init(), (c,), self.param_dtype)
        h = x.astype(jnp.float32)
        mean = jnp.mean(h, axis=-1, keepdims=True)
        var = jnp.mean(jnp.square(h - mean), axis=-1, keepdims=True)
        y = (h - mean) * lax.rsqrt(var + jnp.float32(self.epsilon))
        y = specs.add_bias(
            y * jnp.reshape(scale.astype(jnp.float32), (1,) * (y.ndim - 1) + (c,)),
            bias.astype(jnp.float32),
        )
        return y.astype(x.dtype)
