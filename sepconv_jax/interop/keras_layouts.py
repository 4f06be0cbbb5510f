"""Where each Keras `keras.applications` weight goes in the matching sepconv_jax net, per family.

A layout is a list of `(keras_layer_name, kind, path)`: the Keras layer's weights, converted as
`kind` says (see `keras._CONVERT`), land at `path` (a tuple of module names) in the net's
variables. A family also says how to recognise its Keras model, which model fields to try and
where a `.weights.h5` file keeps its layers.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, NamedTuple

from sepconv_jax.models import convnext, efficientnet, mobilenet_v2_imagenet, mobilenet_v3
from sepconv_jax.models.mbconv import MBConvSpec

Layout = list[tuple[str, str, tuple[str, ...]]]


def _mbconv(prefix: str, i: int, spec: MBConvSpec, names: dict[str, str]) -> Layout:
    """The layout of block `i` (`block{i}` here) whose Keras layers are `prefix + names[role]`."""
    out = []
    roles = ["expand", "expand_norm"] if spec.expanded is not None else []
    roles += ["depthwise", "depthwise_norm"]
    roles += ["se_reduce", "se_expand"] if spec.se_features else []
    roles += ["project", "project_norm"]
    for role in roles:
        kind = (
            "bn" if role.endswith("_norm") else "depthwise" if role == "depthwise" else "pointwise"
        )
        path = ("se", role[3:]) if role.startswith("se_") else (role,)
        out.append((prefix + names[role], kind, (f"block{i}", *path)))
    return out


def _head(model: Any, dense: str, path: tuple[str, ...] = ("classifier",)) -> Layout:
    return [(dense, "dense", path)] if model.include_top else []


# MobileNetV2 ---------------------------------------------------------------------------------

_V2_NAMES = {
    "expand": "expand",
    "expand_norm": "expand_BN",
    "depthwise": "depthwise",
    "depthwise_norm": "depthwise_BN",
    "project": "project",
    "project_norm": "project_BN",
}


def mobilenet_v2_layout(model: Any, prefix: str) -> Layout:
    del prefix
    out = [("Conv1", "conv", ("stem", "conv")), ("bn_Conv1", "bn", ("stem", "norm"))]
    for i, spec in enumerate(mobilenet_v2_imagenet.block_plan(model.width)):
        block_prefix = "expanded_conv_" if i == 0 else f"block_{i}_"
        out += _mbconv(block_prefix, i, spec, _V2_NAMES)
    out += [("Conv_1", "conv", ("last", "conv")), ("Conv_1_bn", "bn", ("last", "norm"))]
    return out + _head(model, "predictions")


def _mobilenet_v2_widths(names: set[str], model_name: str) -> list[float]:
    widths = list(mobilenet_v2_imagenet.WIDTHS)
    if m := re.match(r"mobilenetv2_(\d+\.\d+)_", model_name):
        widths.insert(0, float(m.group(1)))
    return widths


# MobileNetV3 ---------------------------------------------------------------------------------

_V3_NAMES = {
    "expand": "expand",
    "expand_norm": "expand_bn",
    "depthwise": "depthwise",
    "depthwise_norm": "depthwise_bn",
    "se_reduce": "squeeze_excite_conv",
    "se_expand": "squeeze_excite_conv_1",
    "project": "project",
    "project_norm": "project_bn",
}


def mobilenet_v3_layout(model: Any, prefix: str) -> Layout:
    del prefix
    out = [("conv", "conv", ("stem", "conv")), ("conv_bn", "bn", ("stem", "norm"))]
    plan = mobilenet_v3.block_plan(model.variant, model.width, model.minimalistic)
    for i, spec in enumerate(plan):
        block_prefix = "expanded_conv_" if i == 0 else f"expanded_conv_{i}_"
        out += _mbconv(block_prefix, i, spec, _V3_NAMES)
    out += [("conv_1", "conv", ("last", "conv")), ("conv_1_bn", "bn", ("last", "norm"))]
    if model.include_top:
        out += [("conv_2", "pointwise", ("head",)), ("logits", "pointwise", ("classifier",))]
    return out


# EfficientNet --------------------------------------------------------------------------------

_EFFICIENTNET_NAMES = {
    "expand": "expand_conv",
    "expand_norm": "expand_bn",
    "depthwise": "dwconv",
    "depthwise_norm": "bn",
    "se_reduce": "se_reduce",
    "se_expand": "se_expand",
    "project": "project_conv",
    "project_norm": "project_bn",
}


def efficientnet_layout(model: Any, prefix: str) -> Layout:
    del prefix
    out = [("stem_conv", "conv", ("stem", "conv")), ("stem_bn", "bn", ("stem", "norm"))]
    plan = efficientnet.block_plan(model.variant)
    for i, (spec, (stage, j)) in enumerate(zip(plan, efficientnet.block_ids(model.variant))):
        out += _mbconv(f"block{stage + 1}{chr(97 + j)}_", i, spec, _EFFICIENTNET_NAMES)
    out += [("top_conv", "conv", ("last", "conv")), ("top_bn", "bn", ("last", "norm"))]
    return out + _head(model, "predictions")


# ConvNeXt ------------------------------------------------------------------------------------


def convnext_layout(model: Any, prefix: str) -> Layout:
    p = prefix
    out = [(f"{p}_stem_conv", "conv", ("stem",)), (f"{p}_stem_layernorm", "ln", ("stem_norm",))]
    for spec in convnext.block_plan(model.variant):
        i, j = spec.stage, spec.index
        if j == 0 and i > 0:
            out += [
                (f"{p}_downsampling_layernorm_{i - 1}", "ln", (f"down{i}_norm",)),
                (f"{p}_downsampling_conv_{i - 1}", "conv", (f"down{i}",)),
            ]
        block, name = f"stage{i}_block{j}", f"{p}_stage_{i}_block_{j}_"
        out += [
            (name + "depthwise_conv", "depthwise", (block, "depthwise")),
            (name + "layernorm", "ln", (block, "norm")),
            (name + "pointwise_conv_1", "pointwise", (block, "pointwise_1")),
            (name + "pointwise_conv_2", "pointwise", (block, "pointwise_2")),
        ]
        if model.layer_scale is not None:
            out.append((name + "layer_scale", "scale", (block, "layer_scale")))
    out.append((f"{p}_head_layernorm", "ln", ("head_norm",)))
    return out + _head(model, f"{p}_head_dense")


def convnext_h5_scope(name: str) -> str:
    """The nested `Sequential` group of a `.weights.h5` file that holds ConvNeXt layer `name`.

    Keras builds the stem and each downsampling block as a `Sequential` (`sequential`, then
    `sequential_{i + 1}` for downsampling block `i`); every other layer is at the top level (`""`).
    """
    if "_stem_" in name:
        return "sequential"
    if m := re.search(r"_downsampling_[a-z]+_(\d+)$", name):
        return f"sequential_{int(m.group(1)) + 1}"
    return ""


def _top_level(name: str) -> str:
    del name
    return ""


def _convnext_candidates(names: set[str], model_name: str) -> list[tuple[str, dict[str, Any]]]:
    layer_scale = any(n.endswith("_layer_scale") for n in names)
    return [("convnext_tiny", {"layer_scale": 1e-6 if layer_scale else None})]


class Family(NamedTuple):
    """A Keras application family: how to spot it, which configs to try, its layout."""

    label: str
    #: Layer names that identify the family; `{p}` stands for the model-name prefix.
    signature: tuple[str, ...]
    #: The candidate `(registry name, model fields)` for a Keras model with these layer names.
    candidates: Callable[[set[str], str], list[tuple[str, dict[str, Any]]]]
    layout: Callable[[Any, str], Layout]
    #: The Keras layer whose presence means `include_top=True` (its kernel gives the classes).
    top: str
    #: The Keras layer whose activation is the classifier activation.
    activation: str
    #: In a `.weights.h5` file: the Keras class (snake case) of the layout kinds whose class
    #: is not the usual one (`keras._H5_CLASS`), as `(kind, class)` pairs.
    h5_classes: tuple[tuple[str, str], ...] = ()
    #: In a `.weights.h5` file: the nested-model group holding a Keras layer (`""`: top level).
    h5_scope: Callable[[str], str] = _top_level

    def prefix(self, names: list[str]) -> str | None:
        """The model-name prefix if `names` hold this family's signature, else `None`."""
        first = self.signature[0]
        if "{p}" in first:
            suffix = first.replace("{p}", "")
            prefixes = [n[: -len(suffix)] for n in names if n.endswith(suffix)]
        else:
            prefixes = [""]
        present = set(names)
        for p in prefixes:
            if all(s.format(p=p) in present for s in self.signature):
                return p
        return None


def _v2_candidates(names: set[str], model_name: str) -> list[tuple[str, dict[str, Any]]]:
    return [
        ("mobilenet_v2_imagenet", {"width": w}) for w in _mobilenet_v2_widths(names, model_name)
    ]


def _v3_candidates(names: set[str], model_name: str) -> list[tuple[str, dict[str, Any]]]:
    n_blocks = sum(1 for n in names if re.fullmatch(r"expanded_conv(_\d+)?_depthwise", n))
    variant = "small" if n_blocks == 11 else "large"
    minimalistic = not any("squeeze_excite" in n for n in names)
    return [
        (f"mobilenet_v3_{variant}", {"width": w, "minimalistic": minimalistic})
        for w in mobilenet_v3.WIDTHS
    ]


def _efficientnet_candidates(names: set[str], model_name: str) -> list[tuple[str, dict[str, Any]]]:
    return [(f"efficientnet_{v}", {}) for v in ("b0", "b1", "b2", "b3")]


FAMILIES = (
    Family(
        "MobileNetV2",
        ("Conv1", "bn_Conv1", "expanded_conv_depthwise"),
        _v2_candidates,
        mobilenet_v2_layout,
        "predictions",
        "predictions",
    ),
    Family(
        "MobileNetV3",
        ("conv", "conv_bn", "expanded_conv_depthwise"),
        _v3_candidates,
        mobilenet_v3_layout,
        "logits",
        "predictions",
    ),
    Family(
        "EfficientNet",
        ("stem_conv", "stem_bn", "block1a_dwconv"),
        _efficientnet_candidates,
        efficientnet_layout,
        "predictions",
        "predictions",
    ),
    Family(
        "ConvNeXt",
        ("{p}_stem_conv", "{p}_stage_0_block_0_depthwise_conv"),
        _convnext_candidates,
        convnext_layout,
        "{p}_head_dense",
        "{p}_head_dense",
        # The block's depthwise conv is a grouped `Conv2D`, its pointwise convs `Dense` layers.
        (("depthwise", "conv2d"), ("pointwise", "dense")),
        convnext_h5_scope,
    ),
)
