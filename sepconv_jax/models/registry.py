"""Model registry: resolves a model name (e.g. `config.model`) to a constructed module."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

import flax.linen as nn
from flax import nnx

from sepconv_jax.models import (
    convnext,
    efficientnet,
    mobilenet_v1,
    mobilenet_v2,
    mobilenet_v2_imagenet,
    mobilenet_v2_nnx,
    mobilenet_v3,
)

_V1_TINY = dict(width=0.25, cfg=mobilenet_v1.TINY_CFG)
_V2_TINY = dict(width=0.25, cfg=mobilenet_v2.TINY_CFG)


_MODELS: dict[str, Callable[..., nn.Module | nnx.Module]] = {
    "mobilenet_v1": mobilenet_v1.MobileNetV1,
    "mobilenet_v1_full": functools.partial(mobilenet_v1.MobileNetV1, conv="full"),
    "mobilenet_v1_tiny": functools.partial(mobilenet_v1.MobileNetV1, **_V1_TINY),
    "mobilenet_v1_tiny_full": functools.partial(mobilenet_v1.MobileNetV1, **_V1_TINY, conv="full"),
    "mobilenet_v2": mobilenet_v2.MobileNetV2,
    "mobilenet_v2_full": functools.partial(mobilenet_v2.MobileNetV2, conv="full"),
    "mobilenet_v2_paper": functools.partial(
        mobilenet_v2.MobileNetV2, shortcut="paper", always_expand=False
    ),
    "mobilenet_v2_tiny": functools.partial(mobilenet_v2.MobileNetV2, **_V2_TINY),
    "mobilenet_v2_tiny_full": functools.partial(mobilenet_v2.MobileNetV2, **_V2_TINY, conv="full"),
    "mobilenet_v2_nnx": mobilenet_v2_nnx.MobileNetV2,
    "mobilenet_v2_tiny_nnx": functools.partial(mobilenet_v2_nnx.MobileNetV2, **_V2_TINY),
    "mobilenet_v2_imagenet": mobilenet_v2_imagenet.MobileNetV2Imagenet,
    "mobilenet_v3_small": functools.partial(mobilenet_v3.MobileNetV3, variant="small"),
    "mobilenet_v3_large": functools.partial(mobilenet_v3.MobileNetV3, variant="large"),
    **{
        f"efficientnet_{v}": functools.partial(efficientnet.EfficientNet, variant=v)
        for v in ("b0", "b1", "b2", "b3")
    },
    "convnext_tiny": functools.partial(convnext.ConvNeXt, variant="tiny"),
}


def _fixed(name: str) -> dict[str, Any]:
    """The fields a linen `name` fixes: its `conv` ("full" for the `*_full` twins, else
    "separable"). The nnx names have no `_full` twin registered: they take `conv`; models
    without a `conv` field fix nothing."""
    fields = _fields(name)
    if name.endswith("_nnx") or fields is None or "conv" not in fields:
        return {}
    return {"conv": "full" if name.endswith("_full") else "separable"}


def _fields(name: str) -> list[str] | None:
    """The keyword arguments the model `name` accepts (its dataclass fields), or None if unknown."""
    factory = _MODELS[name]
    cls = factory.func if isinstance(factory, functools.partial) else factory
    if not dataclasses.is_dataclass(cls):
        return None
    return sorted(f.name for f in dataclasses.fields(cls) if f.init and f.name not in ("parent",))


def list_models() -> list[str]:
    """Returns the registered model names, sorted.

    Examples:
      >>> "mobilenet_v2" in list_models()
      True
    """
    return sorted(_MODELS)


def create(name: str, **kwargs: Any) -> nn.Module | nnx.Module:
    """Builds a registered model by name.

    Linen models (every name without `_nnx`) return an unbound `flax.linen.Module` called as
    `model.apply(variables, x, train=...)`. The `*_nnx` names return an initialised
    `flax.nnx.Module` and need `rngs=nnx.Rngs(seed)` among the keyword arguments.

    Args:
      name: one of `list_models()`, e.g. `"mobilenet_v2"`, `"mobilenet_v2_full"` (the full-conv
        twin), `"mobilenet_v2_tiny"` (width 0.25, one block per stage: for tests).
      **kwargs: model fields overriding the variant's, e.g. `num_classes=100`, `dtype=jnp.bfloat16`.

    Returns:
      The model.

    Raises:
      ValueError: unknown `name` (the message lists the known ones), a `conv` that contradicts
        the name (`create("mobilenet_v2_full", conv="separable")`), or bad field values.
      TypeError: an unknown keyword (the message lists the fields), or `rngs` missing for an
        nnx model.

    Examples:
      >>> model = create("mobilenet_v2", num_classes=100)
      >>> model.num_classes, model.conv
      (100, 'separable')
      >>> create("mobilenet_v2_full").conv
      'full'
    """
    if name not in _MODELS:
        raise ValueError(f"unknown model {name!r}; known models: {', '.join(list_models())}")
    for key, value in _fixed(name).items():
        if key in kwargs and kwargs[key] != value:
            twin = name.removesuffix("_full") if value == "full" else f"{name}_full"
            hint = f"use {twin!r}" if twin in _MODELS else "use the name of the other variant"
            raise ValueError(
                f"model {name!r} has {key}={value!r}; got {key}={kwargs[key]!r}: {hint} "
                f"(or drop {key})"
            )
    fields = _fields(name)
    unknown = sorted(set(kwargs) - set(fields)) if fields is not None else []
    if unknown:
        raise TypeError(
            f"model {name!r} got unknown keyword(s) {unknown}; its fields are: {', '.join(fields)}"
        )
    return _MODELS[name](**kwargs)
