"""CIFAR MobileNets (V1, V2) with their full-conv twins, ImageNet MobileNetV2/V3, EfficientNet, ConvNeXt, a registry."""

from sepconv_jax.models.common import make_divisible
from sepconv_jax.models.convnext import ConvNeXt
from sepconv_jax.models.efficientnet import EfficientNet
from sepconv_jax.models.mbconv import MBConv, MBConvSpec
from sepconv_jax.models.mobilenet_v1 import MobileNetV1
from sepconv_jax.models.mobilenet_v2 import MobileNetV2
from sepconv_jax.models.mobilenet_v2_imagenet import MobileNetV2Imagenet
from sepconv_jax.models.mobilenet_v3 import MobileNetV3
from sepconv_jax.models.registry import create, list_models

__all__ = [
    "ConvNeXt",
    "EfficientNet",
    "MBConv",
    "MBConvSpec",
    "MobileNetV1",
    "MobileNetV2",
    "MobileNetV2Imagenet",
    "MobileNetV3",
    "create",
    "list_models",
    "make_divisible",
]
