"""`from_torch`: a PyTorch `state_dict` (pytorch-cifar's MobileNetV2) as a sepconv_jax net."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any

import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from sepconv_jax import models
from sepconv_jax.interop._variables import expected_shapes, listed
from sepconv_jax.models import mobilenet_v2 as mv2

#: The `source` values `from_torch` knows; only `"pytorch-cifar"` is converted so far.
SOURCES = ("timm", "torchvision", "pytorch-cifar")
#: BatchNorm epsilon of each source's nets (pytorch-cifar: PyTorch's `BatchNorm2d` default).
BN_EPSILON = {"pytorch-cifar": 1e-5}
#: Registry names with pytorch-cifar's MobileNetV2 layout.
CIFAR_NAMES = ("mobilenet_v2", "mobilenet_v2_tiny")
StateDict = Mapping[str, Any] | str | os.PathLike
#: One entry of a key map: `(torch module prefix, kind, path of the sepconv_jax module)`.
Layout = list[tuple[str, str, tuple[str, ...]]]


def _hwio(w: np.ndarray) -> np.ndarray:
    """OIHW → HWIO (a depthwise `(C·m, 1, kh, kw)` becomes `(kh, kw, 1, C·m)`)."""
    return np.transpose(w, (2, 3, 1, 0)) if w.ndim == 4 else w


def _pointwise(w: np.ndarray) -> np.ndarray:
    """A 1×1 conv `(O, I, 1, 1)` → `(I, O)` (other shapes left to fail the shape check)."""
    return w[:, :, 0, 0].T if w.ndim == 4 and w.shape[2:] == (1, 1) else _hwio(w)


def _linear(w: np.ndarray) -> np.ndarray:
    """Linear `(out, in)` → Dense `(in, out)`."""
    return w.T if w.ndim == 2 else w


_P, _S = "params", "batch_stats"
#: Per kind: torch parameter name → `(collection, leaf, conversion)`; `None`: dropped.
_LEAVES: dict[str, dict[str, tuple[str, str, Callable] | None]] = {
    "conv": {"weight": (_P, "kernel", _hwio)},
    "depthwise": {"weight": (_P, "depthwise_kernel", _hwio)},
    "pointwise": {"weight": (_P, "pointwise_kernel", _pointwise)},
    "dense": {"weight": (_P, "kernel", _linear), "bias": (_P, "bias", np.asarray)},
    "bn": {
        "weight": (_P, "scale", np.asarray),
        "bias": (_P, "bias", np.asarray),
        "running_mean": (_S, "mean", np.asarray),
        "running_var": (_S, "var", np.asarray),
        "num_batches_tracked": None,
    },
}


def _numpy(value: Any, key: str) -> np.ndarray:
    """A torch tensor or array-like as a NumPy array (torch is not imported)."""
    if hasattr(value, "detach"):
        value = value.detach().cpu()
        if str(value.dtype) == "torch.bfloat16":
            value = value.float()
        value = value.numpy()
    try:
        return np.asarray(value)
    except (TypeError, ValueError) as err:
        raise TypeError(
            f"state_dict[{key!r}] must be a tensor or array, got {type(value).__name__}"
        ) from err


def _read(path: str) -> Mapping[str, Any]:
    """The tensors of a `.safetensors` or `.pth` file (the optional reader imported here)."""
    if path.endswith(".safetensors"):
        try:
            from safetensors.numpy import load_file
        except ImportError as err:  # an optional dependency
            raise ImportError(
                "from_torch reads .safetensors files with safetensors: pip install safetensors"
            ) from err
        return load_file(path)
    try:
        import torch
    except ImportError as err:  # an optional dependency
        raise ImportError(
            f"from_torch reads {path} (a PyTorch file) with torch: pip install torch "
            "(the CPU build is enough), or save the state_dict as .safetensors"
        ) from err
    return torch.load(path, map_location="cpu", weights_only=True)


def read_state_dict(state_dict: StateDict) -> dict[str, np.ndarray]:
    """A `state_dict` (mapping, `.pth` or `.safetensors` path) as `{key: np.ndarray}`.

    A training checkpoint holding the weights under `"net"` (pytorch-cifar's `main.py`) or
    `"state_dict"` is unwrapped, and the `"module."` prefix of a `DataParallel` net dropped.

    Raises:
      TypeError: `state_dict` neither a mapping nor a path, or a value not an array.
      ImportError: the file's reader (torch, safetensors) is not installed.
    """
    if isinstance(state_dict, (str, os.PathLike)):
        state_dict = _read(os.fspath(state_dict))
    if not isinstance(state_dict, Mapping):
        raise TypeError(
            "state_dict must be a mapping of tensors or arrays, or the path of a .pth or "
            f".safetensors file; got {type(state_dict).__name__}"
        )
    for wrapper in ("net", "state_dict"):
        if isinstance(state_dict.get(wrapper), Mapping):
            state_dict = state_dict[wrapper]
    out = {str(k): _numpy(v, k) for k, v in state_dict.items()}
    if out and all(k.startswith("module.") for k in out):
        out = {k.removeprefix("module."): v for k, v in out.items()}
    return out


def cifar_layout(module: Any) -> Layout:
    """pytorch-cifar's MobileNetV2 key map onto the CIFAR `MobileNetV2` `module`."""

    layout: Layout = [("conv1", "conv", ("stem", "conv")), ("bn1", "bn", ("stem", "norm"))]
    c_in, _ = mv2.channels(module.width)
    for i, (t, c, s) in enumerate(mv2.block_plan(module.cfg, module.width)):
        p, b = f"layers.{i}", f"block{i}"
        expand = (b,) if t == 1 else (b, "core")
        layout += [
            (f"{p}.conv1", "pointwise", (*expand, "expand")),
            (f"{p}.bn1", "bn", (*expand, "expand_norm")),
            (f"{p}.conv2", "depthwise", (b, "core", "depthwise")),
            (f"{p}.bn2", "bn", (b, "core", "depthwise_norm")),
            (f"{p}.conv3", "pointwise", (b, "core", "project")),
            (f"{p}.bn3", "bn", (b, "core", "project_norm")),
        ]
        if s == 1 and c_in != c:
            layout += [
                (f"{p}.shortcut.0", "pointwise", (b, "shortcut")),
                (f"{p}.shortcut.1", "bn", (b, "shortcut_norm")),
            ]
        c_in = c
    layout += [
        ("conv2", "conv", ("last", "conv")),
        ("bn2", "bn", ("last", "norm")),
        ("linear", "dense", ("classifier",)),
    ]
    return layout


def convert(layout: Layout, weights: Mapping[str, np.ndarray], expected: dict) -> tuple:
    """`weights` placed by `layout`: `(flat variables, problems)`; problems name torch keys."""
    flat, problems, used, origin = {}, [], set(), {}
    for prefix, kind, path in layout:
        for name, leaf in _LEAVES[kind].items():
            key = f"{prefix}.{name}"
            if key not in weights:
                continue
            used.add(key)
            if leaf is not None:
                collection, leaf_name, fn = leaf
                flat[(collection, *path, leaf_name)] = fn(weights[key])
                origin[(collection, *path, leaf_name)] = key
    for key, shape in expected.items():
        where = "/".join(key)
        if key not in flat:
            problems.append(f"missing: no torch key gives {where} {tuple(shape)}")
        elif tuple(flat[key].shape) != tuple(shape):
            problems.append(
                f"mis-shaped: {origin[key]} {tuple(weights[origin[key]].shape)} gives {where} "
                f"{tuple(flat[key].shape)}, expected {tuple(shape)}"
            )
    problems += [f"unexpected: {k} {tuple(weights[k].shape)}" for k in weights if k not in used]
    return flat, problems


def _cifar_widths(weights: Mapping[str, np.ndarray], cfg: tuple) -> list[float]:
    """Candidate widths read from the shapes: last stage's and stem's channels over their base."""

    n = sum(stage[2] for stage in cfg)
    widths = []
    last = weights.get(f"layers.{n - 1}.conv3.weight")
    if last is not None and last.ndim:
        widths.append(last.shape[0] / cfg[-1][1])
    stem = weights.get("conv1.weight")
    if stem is not None and stem.ndim:
        widths.append(stem.shape[0] / mv2.STEM_FEATURES)
    return list(dict.fromkeys([w for w in widths if w > 0] + [1.0]))


def _from_cifar(name: str, weights: dict[str, np.ndarray], **fields: Any) -> tuple[Any, dict]:

    if name not in CIFAR_NAMES:
        raise ValueError(
            f"from_torch: source='pytorch-cifar' holds MobileNetV2 only; name must be one of "
            f"{CIFAR_NAMES}, got {name!r}"
        )
    linear = weights.get("linear.weight")
    if linear is not None and linear.ndim == 2 and "num_classes" not in fields:
        fields["num_classes"] = int(linear.shape[0])
    fields = dict(padding="torch", bn_epsilon=BN_EPSILON["pytorch-cifar"], **fields)
    cfg = fields.get("cfg", models.create(name).cfg)
    best = None
    for width in _cifar_widths(weights, cfg) if "width" not in fields else [fields["width"]]:
        module = models.create(name, **{**fields, "width": width})
        flat, problems = convert(cifar_layout(module), weights, expected_shapes(module))
        if not problems:
            break
        if best is None or len(problems) < len(best[1]):
            best = (module, problems)
    else:
        raise ValueError(
            f"from_torch: the state_dict does not fit {name} (pytorch-cifar's MobileNetV2) at "
            f"any width read from its shapes; closest: width={best[0].width}, "
            f"num_classes={best[0].num_classes}; first problems:{listed(best[1])}"
        )
    c_in, _ = mv2.channels(module.width)
    for i, (t, c, s) in enumerate(mv2.block_plan(module.cfg, module.width)):
        if t == 1 and s == 1 and c_in == c:
            raise ValueError(
                f"from_torch: at width {module.width} block {i} has expansion 1 and "
                f"{c} → {c} channels: pytorch-cifar adds the block's input there, sepconv_jax's "
                "CifarBlock its expanded activations (widths below 0.28), so the nets differ"
            )
        c_in = c
    variables = traverse_util.unflatten_dict(
        {k: jnp.asarray(v, jnp.float32) for k, v in flat.items()}
    )
    return module, variables


def from_torch(
    name: str, state_dict: StateDict, *, source: str = "timm", **fields: Any
) -> tuple[Any, dict]:
    """A PyTorch `state_dict` loaded into the registered net `name`.

    Kernels are converted to the library's layouts: a conv's OIHW to HWIO, a depthwise
    `(C·m, 1, kh, kw)` to `(kh, kw, 1, C·m)`, a 1×1 conv to `(C_in, C_out)`, a Linear's
    `(out, in)` to `(in, out)`; BatchNorm's `weight`/`bias` become `scale`/`bias` and its running
    statistics `batch_stats` (`num_batches_tracked` is dropped). The net is built with the
    source's BatchNorm epsilon and PyTorch's symmetric padding (`padding="torch"`); width and
    class count are read from the shapes. Nothing is downloaded.

    Supported: `source="pytorch-cifar"` (kuangliu/pytorch-cifar's `MobileNetV2`, any width from
    0.28 and class count) into `"mobilenet_v2"` (its 17 blocks) or `"mobilenet_v2_tiny"` (one
    block per stage). `module.apply(variables, x, train=False)` on `x: (N, H, W, 3)` then equals
    the PyTorch net's eval output on `x` as `(N, 3, H, W)` up to float32 rounding (the tests
    check it with every weight and BatchNorm statistic randomised). timm and torchvision are
    not converted yet: their key maps have not been checked against those libraries' models.

    Args:
      name: a registry name (see above).
      state_dict: `{key: tensor or array}`, or the path of a `.pth` file (read with torch,
        `weights_only=True`; a checkpoint holding it under `"net"` or `"state_dict"` and a
        `DataParallel` `"module."` prefix are accepted) or of a `.safetensors` file (read with
        safetensors).
      source: where the `state_dict` comes from, one of `SOURCES`. Defaults to `"timm"`.
      **fields: model fields overriding the ones read from the shapes, as `models.create`.

    Returns:
      `(module, variables)`: an unbound linen module and `{"params", "batch_stats"}` (float32).

    Raises:
      ValueError: an unknown `source` or a `name` it does not hold; missing, unexpected or
        mis-shaped keys (one error listing the first ones); a width the block layouts differ at.
      NotImplementedError: `source="timm"` or `"torchvision"`.
      TypeError: `state_dict` neither a mapping nor a path.
      ImportError: the file's reader (torch, safetensors) is not installed.

    Examples:
      >>> from_torch("mobilenet_v2", {}, source="caffe")
      Traceback (most recent call last):
        ...
      ValueError: from_torch: source must be one of ('timm', 'torchvision', 'pytorch-cifar'), got 'caffe'
    """
    if source not in SOURCES:
        raise ValueError(f"from_torch: source must be one of {SOURCES}, got {source!r}")
    if source != "pytorch-cifar":
        raise NotImplementedError(
            f"from_torch: source={source!r} is not supported yet: its key map has not been "
            f"checked against {source}'s own models; supported: source='pytorch-cifar'"
        )
    return _from_cifar(name, read_state_dict(state_dict), **fields)
