"""`from_keras`, `from_keras_weights`: Keras 3 `keras.applications` nets as sepconv_jax nets."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from sepconv_jax import models
from sepconv_jax.interop import keras_layouts as kl
from sepconv_jax.interop._variables import expected_shapes, listed

Weights = Mapping[str, Mapping[str, np.ndarray]]


def _pointwise(k: np.ndarray) -> np.ndarray:
    """A Keras 1×1 `Conv2D` kernel `(1, 1, C, O)` as `(C, O)` (other shapes left to fail)."""
    return k.reshape(k.shape[-2:]) if math.prod(k.shape[:-2]) == 1 else k


def _depthwise(k: np.ndarray) -> np.ndarray:
    """A Keras `DepthwiseConv2D` kernel `(K, K, C, 1)` as `(K, K, 1, C)`; a grouped `Conv2D`
    kernel is that already."""
    return np.swapaxes(k, -1, -2) if k.shape[-1] == 1 and k.shape[-2] != 1 else k


def _rename(names: dict[str, tuple[str, str]], fn: Callable = lambda a: a) -> Callable:
    def convert(w: Mapping[str, np.ndarray]) -> dict[tuple[str, str], np.ndarray]:
        out = {}
        for key, value in w.items():
            collection, leaf = names.get(key, ("params", f"<unexpected Keras weight {key}>"))
            out[(collection, leaf)] = fn(value) if leaf.endswith("kernel") else value
        return out

    return convert


_P = "params"
#: Keras weight name → `(collection, leaf)` here, and the kernel's conversion, per layout kind.
_CONVERT: dict[str, Callable] = {
    "conv": _rename({"kernel": (_P, "kernel"), "bias": (_P, "bias")}),
    "dense": _rename({"kernel": (_P, "kernel"), "bias": (_P, "bias")}),
    "pointwise": _rename({"kernel": (_P, "pointwise_kernel"), "bias": (_P, "bias")}, _pointwise),
    "depthwise": _rename({"kernel": (_P, "depthwise_kernel"), "bias": (_P, "bias")}, _depthwise),
    "bn": _rename(
        {
            "gamma": (_P, "scale"),
            "beta": (_P, "bias"),
            "moving_mean": ("batch_stats", "mean"),
            "moving_variance": ("batch_stats", "var"),
        }
    ),
    "ln": _rename({"gamma": (_P, "scale"), "beta": (_P, "bias")}),
}


def _scale(w: Mapping[str, np.ndarray]) -> dict[tuple[str, str], np.ndarray]:
    """A `LayerScale`'s one weight (whatever Keras named it) as `gamma`."""
    return {
        (_P, "gamma" if len(w) == 1 else f"<unexpected Keras weights {sorted(w)}>"): v
        for v in w.values()
    }


_CONVERT["scale"] = _scale


def _convert(layout: kl.Layout, weights: Weights) -> tuple[dict, list[str]]:
    """Keras weights placed by `layout`: `(flat variables, problems)`."""
    flat, problems, used = {}, [], set()
    for name, kind, path in layout:
        if name not in weights:
            problems.append(f"Keras layer {name!r} missing (it would give {'/'.join(path)})")
            continue
        used.add(name)
        for (collection, leaf), value in _CONVERT[kind](weights[name]).items():
            flat[(collection, *path, leaf)] = np.asarray(value)
    problems += [
        f"Keras layer {n!r} has weights with no place here" for n in weights if n not in used
    ]
    return flat, problems


def _check(flat: dict, expected: dict) -> list[str]:
    problems = []
    for key, shape in expected.items():
        if key not in flat:
            problems.append(f"no Keras weight for {'/'.join(key)} {shape}")
        elif tuple(flat[key].shape) != tuple(shape):
            problems.append(
                f"{'/'.join(key)}: Keras gives shape {tuple(flat[key].shape)}, expected {shape}"
            )
    problems += [f"unexpected weight {'/'.join(k)}" for k in flat if k not in expected]
    return problems


def _load(
    family: kl.Family, prefix: str, weights: Weights, fields: dict[str, Any], model_name: str
) -> tuple[Any, dict]:
    """Tries the family's candidate configs; returns the first whose variables all match."""
    best: tuple[int, str, list[str]] | None = None
    for name, kwargs in family.candidates(set(weights), model_name):
        module = models.create(name, **kwargs, **fields)
        flat, problems = _convert(family.layout(module, prefix), weights)
        problems += _check(flat, expected_shapes(module))
        if not problems:
            variables = traverse_util.unflatten_dict(
                {k: jnp.asarray(v, jnp.float32) for k, v in flat.items()}
            )
            return module, variables
        if best is None or len(problems) < best[0]:
            best = (len(problems), f"{name}({kwargs})", problems)
    assert best is not None  # every family has candidates
    raise ValueError(
        f"the Keras {family.label} {model_name!r} does not match sepconv_jax's {best[1]} "
        f"(the closest configuration); first mismatches:{listed(best[2])}"
    )


def _family(names: list[str], model_name: str) -> tuple[kl.Family, str]:
    for family in kl.FAMILIES:
        prefix = family.prefix(names)
        if prefix is not None:
            return family, prefix
    expected = "; ".join(f"{f.label} (layers {', '.join(f.signature)})" for f in kl.FAMILIES)
    raise ValueError(
        f"from_keras: the Keras model {model_name!r} is none of the supported "
        f"keras.applications families; its first layers are {names[:8]}, expected one of: "
        f"{expected}"
    )


def _layers(model: Any) -> list[Any]:
    """Every leaf layer of a Keras model, nested models (e.g. `Sequential` stems) flattened."""
    out = []
    for layer in model.layers:
        out += _layers(layer) if hasattr(layer, "layers") else [layer]
    return out


def _values(v: Any) -> float | tuple[float, ...]:
    a = np.asarray(v, np.float64).reshape(-1)
    return float(a[0]) if a.size == 1 else tuple(float(t) for t in a)


def _activation_name(layer: Any) -> str | None:
    name = getattr(getattr(layer, "activation", None), "__name__", None)
    if name in ("linear", None):
        return None
    if name == "softmax":
        return "softmax"
    raise ValueError(
        f"from_keras: classifier activation {name!r} of layer {layer.name!r} is not supported; "
        "expected None (linear) or 'softmax'"
    )


def _fields(model: Any, layers: list[Any], family: kl.Family, prefix: str) -> dict[str, Any]:
    """The model fields a Keras model sets: head, pooling, classes, preprocessing."""
    by_name = {layer.name: layer for layer in layers}
    top = family.top.format(p=prefix)
    include_top = top in by_name
    fields: dict[str, Any] = {"include_top": include_top}
    if include_top:
        kernel = [w for w in by_name[top].weights if w.path.endswith("kernel")][0]
        fields["num_classes"] = int(kernel.shape[-1])
        fields["classifier_activation"] = _activation_name(
            by_name[family.activation.format(p=prefix)]
        )
    else:
        fields["pooling"] = None
        for layer in reversed(layers):
            kind = type(layer).__name__
            if kind in ("GlobalAveragePooling2D", "GlobalMaxPooling2D"):
                fields["pooling"] = "avg" if "Average" in kind else "max"
                break
            if kind != "LayerNormalization":
                break
    steps = []
    for layer in layers:
        if any(w.path.endswith("kernel") for w in layer.weights):
            break
        kind = type(layer).__name__
        if kind == "Rescaling":
            steps.append(("rescale", _values(layer.scale), _values(layer.offset)))
        elif kind == "Normalization":
            steps.append(("normalize", _values(layer.mean), _values(layer.variance)))
    fields["preprocessing"] = tuple(steps)
    return fields


def from_keras(keras_model: Any) -> tuple[Any, dict]:
    """The sepconv_jax net equal to a Keras 3 `keras.applications` model, with its weights.

    Supported: `MobileNetV2` (any `alpha`), `MobileNetV3Small`/`Large` (alpha 0.75 or 1.0,
    `minimalistic` or not), `EfficientNetB0`–`B3`, `ConvNeXtTiny` (with or without layer scale); `include_top` on or off
    (`pooling` None, `"avg"` or `"max"`), any input size, classifier activation `None` or
    `"softmax"`. The preprocessing layers the Keras model holds (`Rescaling`, `Normalization`)
    become the net's `preprocessing` field. Kernels are converted to the library's layouts
    (a depthwise `(K, K, C, 1)` to `(K, K, 1, C)`, a 1×1 conv to `(C, O)`).

    `module.apply(variables, x, train=False)` then equals `keras_model(x, training=False)` up to
    float32 rounding (the tests check it with every Keras variable randomised). The padding
    convention is `"tf"`: Keras's `correct_pad` + `"valid"` before a stride-2 conv is TensorFlow
    `"SAME"` on a model with a fixed input size. (A Keras model built with `None` spatial
    dimensions pads (0, 1) at stride 2 even on odd sizes; use even sizes with those.)

    Args:
      keras_model: a Keras 3 model from `keras.applications` (its layer names identify it).

    Returns:
      `(module, variables)`: an unbound linen module and `{"params", "batch_stats"}`.

    Raises:
      ValueError: a model of another architecture (naming its first layers), or one that
        matches a family but not any configuration of it (listing the first mismatching or
        missing weights), or an unsupported classifier activation.
      ImportError: Keras is not installed.
    """
    import keras  # noqa: F401  (imported here only: a test extra, not a dependency)

    layers = _layers(keras_model)
    names = [layer.name for layer in layers]
    family, prefix = _family(names, keras_model.name)
    weights = {
        layer.name: {w.path.split("/")[-1]: keras.ops.convert_to_numpy(w) for w in layer.weights}
        for layer in layers
        if layer.weights and type(layer).__name__ != "Normalization"
    }
    fields = _fields(keras_model, layers, family, prefix)
    last = layers[-1]
    if not fields["include_top"] and type(last).__name__ == "LayerNormalization":
        # ConvNeXt without its top still ends on a LayerNorm (auto-named): the head norm here.
        weights[f"{prefix}_head_layernorm"] = weights.pop(last.name)
    return _load(family, prefix, weights, fields, keras_model.name)


#: The Keras class (snake case, as `.weights.h5` files name their groups) of each layout kind,
#: and the order of its variables there.
_H5_CLASS = {
    "conv": "conv2d",
    "pointwise": "conv2d",
    "depthwise": "depthwise_conv2d",
    "bn": "batch_normalization",
    "dense": "dense",
    "ln": "layer_normalization",
    "scale": "layer_scale",
}
_H5_VARS = {
    "conv": ("kernel", "bias"),
    "pointwise": ("kernel", "bias"),
    "depthwise": ("kernel", "bias"),
    "bn": ("gamma", "beta", "moving_mean", "moving_variance"),
    "dense": ("kernel", "bias"),
    "ln": ("gamma", "beta"),
    "scale": ("gamma",),
}
#: Registry-name prefix → the family whose layout places a weights file's arrays.
_H5_FAMILIES = {
    "mobilenet_v2_imagenet": "MobileNetV2",
    "mobilenet_v3_": "MobileNetV3",
    "efficientnet_": "EfficientNet",
    "convnext_": "ConvNeXt",
}


def _h5_groups(layers: Any, path: str = "layers") -> dict[str, list[np.ndarray]]:
    """Every layer group holding weights under a file's `layers` group, by its path, nested
    models' (`layers/sequential/layers/conv2d`) included; the arrays in saving order."""
    out = {}
    for key, group in layers.items():
        if "vars" in group and len(group["vars"]):
            out[f"{path}/{key}"] = [
                np.asarray(group["vars"][str(i)]) for i in range(len(group["vars"]))
            ]
        if "layers" in group:
            out.update(_h5_groups(group["layers"], f"{path}/{key}/layers"))
    return out


def from_keras_weights(name: str, path: str, **fields: Any) -> tuple[Any, dict]:
    """Loads a Keras 3 `.weights.h5` file of a `keras.applications` model into net `name`.

    A `.weights.h5` file (`keras_model.save_weights(path)`) names its layers by class and
    creation order (`conv2d_3`, `batch_normalization_7`, ...), not by the Keras layer names, so
    the net is given by its registry name and fields, which must be those of the saved model
    (`width`, `include_top`, `num_classes`, ...). The file holds no preprocessing constants
    except EfficientNet's `Normalization` statistics, which replace the net's `"normalize"`
    step unless `preprocessing` is given. Supported: MobileNetV2, MobileNetV3, EfficientNet and
    ConvNeXt (its stem and downsampling blocks are read from the file's nested `Sequential`
    groups; pass `layer_scale=None` for a model built without layer scale).

    Args:
      name: a registry name, e.g. `"mobilenet_v3_large"`.
      path: the `.weights.h5` file.
      **fields: model fields, as `models.create(name, **fields)`.

    Returns:
      `(module, variables)`, as `from_keras`.

    Raises:
      ValueError: an unknown or unsupported `name`, a file that is not a Keras 3 weights
        file, or missing, unexpected or mis-shaped weights (the first ones listed).
      ImportError: h5py is not installed.
    """
    try:
        import h5py
    except ImportError as err:  # an optional dependency
        raise ImportError(
            "from_keras_weights reads .weights.h5 files with h5py: pip install h5py"
        ) from err
    label = next((v for k, v in _H5_FAMILIES.items() if name.startswith(k)), None)
    if label is None:
        models.create(name)  # an unknown name raises with the list of known ones
        raise ValueError(
            f"from_keras_weights: no Keras weights-file layout for {name!r}; supported: "
            f"{', '.join(n for n in models.list_models() if n.startswith(tuple(_H5_FAMILIES)))}"
        )
    family = next(f for f in kl.FAMILIES if f.label == label)
    with h5py.File(path, "r") as f:
        if "layers" not in f:
            raise ValueError(f"{path}: not a Keras 3 .weights.h5 file (no 'layers' group)")
        groups = _h5_groups(f["layers"])
    if "layers/normalization" in groups and "preprocessing" not in fields:
        mean, variance = groups.pop("layers/normalization")[:2]
        default = models.create(name).preprocessing
        fields["preprocessing"] = tuple(
            ("normalize", _values(mean), _values(variance)) if step[0] == "normalize" else step
            for step in default
        )
    groups.pop("layers/normalization", None)
    module = models.create(name, **fields)
    layout = family.layout(module, name)  # the Keras layer names, where a family prefixes them
    classes = {**_H5_CLASS, **dict(family.h5_classes)}
    weights, counters, used = {}, {}, set()
    for keras_name, kind, _ in layout:
        scope, cls = family.h5_scope(keras_name), classes[kind]
        n = counters.get((scope, cls), 0)
        counters[(scope, cls)] = n + 1
        group = (f"layers/{scope}/layers/" if scope else "layers/") + cls + (f"_{n}" if n else "")
        if group in groups:
            weights[keras_name] = dict(zip(_H5_VARS[kind], groups[group]))
            used.add(group)
    flat, problems = _convert(layout, weights)
    problems += _check(flat, expected_shapes(module))
    problems += [f"file group {g} has weights with no place here" for g in groups if g not in used]
    if problems:
        raise ValueError(
            f"{path} does not fit {name}({fields}); first mismatches:{listed(problems)}"
        )
    variables = traverse_util.unflatten_dict(
        {k: jnp.asarray(v, jnp.float32) for k, v in flat.items()}
    )
    return module, variables
