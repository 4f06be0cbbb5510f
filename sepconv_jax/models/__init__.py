"""CIFAR MobileNets (V1, V2) built from sepconv_jax's blocks, their full-conv twins and a registry."""

from sepconv_jax.models.common import make_divisible
from sepconv_jax.models.mobilenet_v1 import MobileNetV1
from sepconv_jax.models.mobilenet_v2 import MobileNetV2
from sepconv_jax.models.registry import create, list_models

__all__ = [
    "MobileNetV1",
    "MobileNetV2",
    "create",
    "list_models",
    "make_divisible",
]
