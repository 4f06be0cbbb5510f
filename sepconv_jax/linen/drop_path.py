"""Stochastic depth (linen): drop a residual branch per sample, scale the kept ones by 1/keep."""

from __future__ import annotations

import flax.linen as nn
import jax

from sepconv_jax._block_specs import check_rate, drop_path
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
        rate = check_rate(self.rate, describe(self))
        deterministic = nn.merge_param("deterministic", self.deterministic, deterministic)
        key = None if deterministic or rate == 0.0 else self.make_rng("dropout")
        return drop_path(x, rate, key)
