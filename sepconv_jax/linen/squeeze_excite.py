"""Squeeze-and-excitation (linen): channel gates from the global average of a feature map."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

from sepconv_jax import _args, activations
from sepconv_jax import _layer_specs as specs
from sepconv_jax._block_specs import squeeze_excite
from sepconv_jax.linen.convs import PointwiseConv
from sepconv_jax.linen.spec_module import describe


class SqueezeExcite(nn.Module):
    """`x * gate(expand(act(reduce(mean_hw(x)))))`: MobileNetV3's and EfficientNet's SE block.

    The spatial mean `(N, 1, 1, C)` goes through a 1×1 conv to `features` channels (with bias) →
    `act` → a 1×1 conv back to `C` (with bias) → `gate`, and scales `x` channel by channel.

    Attributes:
      features: the squeezed channels (MobileNetV3: `make_divisible(C / 4)` of the expanded
        channels; EfficientNet: a quarter of the block's input channels).
      act: activation name between the two convs (`"relu"`, `"swish"`, ...; see
        `sepconv_jax.activations.ACTIVATIONS`). Defaults to `"relu"`.
      gate: gate activation name (`"sigmoid"` or `"hard_sigmoid"`). Defaults to `"sigmoid"`.
      dtype, param_dtype, precision: as `PointwiseConv`.

    Submodules: `reduce` and `expand` (`PointwiseConv` with bias).

    References:
      Hu et al., "Squeeze-and-Excitation Networks", 2018.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> se = SqueezeExcite(4, act="relu", gate="hard_sigmoid")
      >>> x = jnp.ones((2, 8, 8, 16))
      >>> variables = se.init(jax.random.key(0), x)
      >>> variables["params"]["reduce"]["pointwise_kernel"].shape, se.apply(variables, x).shape
      ((16, 4), (2, 8, 8, 16))
    """

    features: int
    act: str = "relu"
    gate: str = "sigmoid"
    dtype: specs.Dtype | None = None
    param_dtype: specs.Dtype = jnp.float32
    precision: lax.PrecisionLike = None

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """Applies the block to `x: (N, H, W, C)`; returns the gated `(N, H, W, C)`.

        Raises:
          ValueError: non-positive `features`, an unknown `act` or `gate`, or `x` not 4-D.
        """
        where = describe(self)
        features = _args.positive_int(self.features, "features", where)
        act, gate = activations.get(self.act), activations.get(self.gate)
        conv = dict(dtype=self.dtype, param_dtype=self.param_dtype, precision=self.precision)
        channels = jnp.shape(x)[-1]
        reduce = PointwiseConv(features, name="reduce", **conv)
        expand = PointwiseConv(channels, name="expand", **conv)
        return squeeze_excite(x, reduce, expand, act, gate, where)
