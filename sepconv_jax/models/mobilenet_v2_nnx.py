"""MobileNetV2 for CIFAR built from `sepconv_jax.nnx` modules: the linen model's structure in nnx.

The nnx MobileNetV2 is nnx-native (nnx variable paths, `model.train()` / `model.eval()`) and
shares with the linen model what defines it: the plan (`block_plan`, `channels`,
`check_fields`), the library's nnx `InvertedResidual` and the one float32 BatchNorm (`_norm`);
`load_linen` maps linen variables onto it path for path. Flax's `nnx.bridge.ToNNX` would wrap
the linen model instead, with linen's variable paths and its `train` argument: the way to run
MobileNetV1 (which has no nnx twin) under nnx.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx, traverse_util
from jax import lax
from jax.typing import ArrayLike

from sepconv_jax import _norm
from sepconv_jax import nnx as snnx
from sepconv_jax.models import common
from sepconv_jax.models import mobilenet_v2 as v2


class _Settings:
    """BatchNorm, dtype and precision settings shared by every layer of one model."""

    def __init__(self, model: MobileNetV2, dtype: common.Dtype):
        self.act = model.act
        self.norm = dict(
            momentum=model.bn_momentum,
            epsilon=model.bn_epsilon,
            axis_name=model.axis_name,
            param_dtype=model.param_dtype,
        )
        self.dense = dict(dtype=dtype, param_dtype=model.param_dtype, precision=model.precision)


def _expansion(
    in_features: int, out_features: int, present: bool, settings: _Settings, rngs: nnx.Rngs
) -> tuple[snnx.PointwiseConv | None, _norm.BatchNorm | None]:
    """A 1×1 conv (no bias) and its BatchNorm, or `(None, None)` where the block has none."""
    if not present:
        return None, None
    conv = snnx.PointwiseConv(
        in_features, out_features, use_bias=False, rngs=rngs, **settings.dense
    )
    return conv, _norm.BatchNorm(out_features, rngs=rngs, **settings.norm)


class ConvNormAct(nnx.Module):
    """nnx twin of `common.ConvNormAct`: full K×K conv (no bias) → BatchNorm → act (or none)."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        kernel_size: int,
        strides: int,
        act: common.Act | None,
        settings: _Settings,
        *,
        rngs: nnx.Rngs,
    ):
        k = kernel_size
        self.conv = nnx.Conv(
            in_features, out_features, (k, k), strides, use_bias=False, rngs=rngs, **settings.dense
        )
        self.norm = _norm.BatchNorm(out_features, rngs=rngs, **settings.norm)
        self.act = act

    def __call__(self, x: jax.Array) -> jax.Array:
        x = self.norm(self.conv(x))
        return x if self.act is None else self.act(x)


class FullInvertedResidual(nnx.Module):
    """nnx twin of `mobilenet_v2.FullInvertedResidual` (expand → full 3×3 conv → BN)."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        expansion: int,
        strides: int,
        settings: _Settings,
        *,
        rngs: nnx.Rngs,
    ):
        hidden = in_features * expansion
        self.expand, self.expand_norm = _expansion(
            in_features, hidden, expansion != 1, settings, rngs
        )
        self.conv = nnx.Conv(
            hidden, out_features, (3, 3), strides, use_bias=False, rngs=rngs, **settings.dense
        )
        self.conv_norm = _norm.BatchNorm(out_features, rngs=rngs, **settings.norm)
        self.act = settings.act
        self.residual = strides == 1 and in_features == out_features

    def __call__(self, x: jax.Array) -> jax.Array:
        h = x if self.expand is None else self.act(self.expand_norm(self.expand(x)))
        h = self.conv_norm(self.conv(h))
        return h + x if self.residual else h


class CifarBlock(nnx.Module):
    """nnx twin of `mobilenet_v2.CifarBlock`: pre-expansion, `core`, projection shortcut."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        expansion: int,
        strides: int,
        model: MobileNetV2,
        settings: _Settings,
        *,
        rngs: nnx.Rngs,
    ):
        self.act = settings.act
        pre = expansion == 1 and model.always_expand
        self.expand, self.expand_norm = _expansion(in_features, in_features, pre, settings, rngs)
        if model.conv == "full":
            self.core = FullInvertedResidual(
                in_features, out_features, expansion, strides, settings, rngs=rngs
            )
        else:
            self.core = snnx.InvertedResidual(
                in_features,
                out_features,
                expansion=expansion,
                strides=strides,
                kernel_size=3,
                act=settings.act,
                dtype=settings.dense["dtype"],
                precision=model.precision,
                implementation=model.implementation,
                rngs=rngs,
                **settings.norm,
            )
        project = model.shortcut == "projection" and strides == 1 and in_features != out_features
        self.shortcut, self.shortcut_norm = _expansion(
            in_features, out_features, project, settings, rngs
        )

    def __call__(self, x: jax.Array) -> jax.Array:
        h = x if self.expand is None else self.act(self.expand_norm(self.expand(x)))
        y = self.core(h)
        if self.shortcut is not None:
            y = y + self.shortcut_norm(self.shortcut(x))
        return y


class MobileNetV2(nnx.Module):
    """MobileNetV2 for 32×32 images in nnx: the linen `mobilenet_v2.MobileNetV2`, same layout.

    Same fields, defaults, parameter names and shapes as the linen model (2,296,922 parameters at
    `num_classes=10`, `width=1.0`), so `load_linen` copies trained linen variables in. Blocks
    live in `blocks` (an `nnx.List`; linen's `block{i}`).

    Differences from linen, by nnx's design: the constructor needs `rngs` and the input channels
    (`in_features`, default 3); `__call__(x)` has no `train` argument: BatchNorm and dropout
    follow `model.train()` / `model.eval()` (a fresh model is in train mode).

    Args:
      num_classes, width, dropout, conv, shortcut, always_expand, cfg, act, dtype,
        param_dtype, precision, axis_name, bn_momentum, bn_epsilon, implementation: as the
        linen `MobileNetV2`.
      in_features: input channels. Defaults to 3.
      rngs: `nnx.Rngs` for parameter init (and a `"dropout"` stream when `dropout > 0`).

    Raises:
      ValueError: bad field values, as the linen model.

    Examples:
      >>> import jax
      >>> from flax import nnx
      >>> model = nnx.eval_shape(lambda: MobileNetV2(rngs=nnx.Rngs(0)))  # shapes only
      >>> sum(p.size for p in jax.tree.leaves(nnx.state(model, nnx.Param)))
      2296922

      A concrete model: `model = MobileNetV2(rngs=nnx.Rngs(0))`, then `model.eval()` and
      `logits = model(x)` with `x: (N, 32, 32, 3)`.
    """

    def __init__(
        self,
        num_classes: int = 10,
        width: float = 1.0,
        dropout: float = 0.0,
        conv: str = "separable",
        shortcut: str = "projection",
        always_expand: bool = True,
        cfg: tuple[tuple[int, int, int, int], ...] = v2.CIFAR_CFG,
        act: common.Act = nnx.relu,
        dtype: common.Dtype | None = None,
        param_dtype: common.Dtype = jnp.float32,
        precision: lax.PrecisionLike = None,
        axis_name: str | None = None,
        bn_momentum: float = 0.9,
        bn_epsilon: float = 1e-5,
        implementation: str = "auto",
        in_features: int = 3,
        *,
        rngs: nnx.Rngs,
    ):
        self.num_classes, self.width, self.dropout = num_classes, width, dropout
        self.conv, self.shortcut, self.always_expand = conv, shortcut, always_expand
        self.act, self.param_dtype, self.precision = act, param_dtype, precision
        self.axis_name, self.bn_momentum, self.bn_epsilon = axis_name, bn_momentum, bn_epsilon
        self.implementation = implementation
        v2.check_fields(self, "nnx MobileNetV2")
        self.dtype = dtype if dtype is not None else param_dtype
        settings = _Settings(self, self.dtype)
        stem, last = v2.channels(width)
        self.stem = ConvNormAct(in_features, stem, 3, 1, act, settings, rngs=rngs)
        blocks, c_in = [], stem
        for t, c, s in v2.block_plan(cfg, width):
            blocks.append(CifarBlock(c_in, c, t, s, self, settings, rngs=rngs))
            c_in = c
        self.blocks = nnx.List(blocks)
        self.last = ConvNormAct(c_in, last, 1, 1, act, settings, rngs=rngs)
        # A dropout rng stream only where dropout is on: no RngState to carry (or to load) else.
        self.dropout_layer = nnx.Dropout(dropout, rngs=rngs if dropout > 0 else None)
        self.classifier = nnx.Linear(
            last, num_classes, dtype=jnp.float32, param_dtype=param_dtype, rngs=rngs
        )

    def __call__(self, x: ArrayLike) -> jax.Array:
        """Classifies `x: (N, H, W, C)` floating images; returns float32 `(N, num_classes)`.

        Raises:
          ValueError: `x` not 4-D. TypeError: `x` not floating.
        """
        x = self.stem(common.check_images(x, self.dtype, "nnx MobileNetV2"))
        for block in self.blocks:
            x = block(x)
        x = self.last(x)
        pooled = jnp.mean(x.astype(jnp.float32), axis=(1, 2))
        return self.classifier(self.dropout_layer(pooled))


def _linen_key(path: tuple[Any, ...], variable: nnx.Variable) -> tuple[str, ...]:
    """The linen `(collection, *names)` of an nnx variable path (`blocks, i` is `block{i}`)."""
    names: list[str] = []
    for part in path:
        if isinstance(part, int) and names and names[-1] == "blocks":
            names[-1] = f"block{part}"
        else:
            names.append(str(part))
    collection = "batch_stats" if isinstance(variable, nnx.BatchStat) else "params"
    return (collection, *names)


def load_linen(model: MobileNetV2, variables: Mapping[str, Any]) -> MobileNetV2:
    """Copies a linen `MobileNetV2`'s variables into an nnx `MobileNetV2` of the same config.

    `model` may be abstract (built under `nnx.eval_shape`, skipping its initialisers): loading
    makes its parameters and statistics concrete (with `dropout > 0` its dropout rng state stays
    abstract: build it concretely then).

    Args:
      model: the nnx model, changed in place.
      variables: `{"params": ..., "batch_stats": ...}` of the linen model.

    Returns:
      `model`, for chaining.

    Raises:
      ValueError: a variable missing on either side or of a different shape (configs differ).
    """
    flat = {
        (collection, *path): value
        for collection in ("params", "batch_stats")
        for path, value in traverse_util.flatten_dict(dict(variables.get(collection, {}))).items()
    }
    seen = set()
    for path, variable in nnx.iter_graph(model):
        if not isinstance(variable, (nnx.Param, nnx.BatchStat)):
            continue
        key = _linen_key(path, variable)
        if key not in flat:
            raise ValueError(f"linen variables have no {'/'.join(key)} for nnx {path}")
        value = jnp.asarray(flat[key])
        current = variable.get_value()  # an array, or a ShapeDtypeStruct if built abstractly
        if value.shape != current.shape:
            raise ValueError(
                f"{'/'.join(key)} has shape {value.shape} in linen but "
                f"{current.shape} in nnx: the two models are configured differently"
            )
        variable.set_value(value.astype(current.dtype))
        seen.add(key)
    if missing := sorted("/".join(k) for k in flat.keys() - seen):
        raise ValueError(f"linen variables not in the nnx model: {missing[:5]}")
    return model
