"""Stochastic depth (linen): drop a residual branch per sample, scale the kept ones by 1/keep."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from sepconv_jax.linen.spec_module import describe


class DropPath(nn.Module):
    """Zeroes a residual branch for a random `rate` of the samples and scales the rest by 1/(1-rate).

    Identity when `deterministic` (inference) or `rate == 0`. Otherwise it draws from the
    `"dropout"` rng stream, one Bernoulli per sample (timm's `DropPath`; Keras EfficientNet's
    `Dropout(noise_shape=(None, 1, 1, 1))`).

    Attributes:
      rate: the drop probability, in `[0, 1)`.
      deterministic: identity when `True`; may be given at call time instead. Defaults to
        `None`.

    References:
      Huang et al., "Deep Networks with Stochastic Depth", 2016.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> x = jnp.ones((4, 2, 2, 3))
      >>> DropPath(0.5).apply({}, x, deterministic=True).sum().item()
      48.0
      >>> y = DropPath(0.5).apply({}, x, deterministic=False, rngs={"dropout": jax.random.key(0)})
      >>> sorted(set(y[:, 0, 0, 0].tolist())) in ([0.0, 2.0], [0.0], [2.0])
      True
    """

    rate: float
    deterministic: bool | None = None

    @nn.compact
    def __call__(self, x: jax.Array, deterministic: bool | None = None) -> jax.Array:
        """Applies the layer to `x: (N, ...)`; returns an array of the same shape and dtype.

        Raises:
          ValueError: `rate` outside `[0, 1)`, or `deterministic` given nowhere.
        """
        where = describe(self)
        if not isinstance(self.rate, (int, float)) or not 0.0 <= self.rate < 1.0:
            raise ValueError(f"{where}: rate must be in [0, 1), got {self.rate!r}")
        deterministic = nn.merge_param("deterministic", self.deterministic, deterministic)
        if deterministic or self.rate == 0.0:
            return x
        keep = 1.0 - self.rate
        shape = (x.shape[0],) + (1,) * (x.ndim - 1)
        mask = jax.random.bernoulli(self.make_rng("dropout"), keep, shape)
        return jnp.where(mask, x / jnp.asarray(keep, x.dtype), jnp.zeros_like(x))
