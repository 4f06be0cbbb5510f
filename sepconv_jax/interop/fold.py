"""`fold_batchnorm`: an inference net with each conv → BatchNorm pair folded into the conv."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from sepconv_jax import linen as sl

#: The conv modules a following BatchNorm folds into, and the name of the kernel that is scaled.
_CONVS: dict[type, str] = {
    sl.DepthwiseConv: "depthwise_kernel",
    sl.PointwiseConv: "pointwise_kernel",
    sl.SeparableConv: "pointwise_kernel",
    nn.Conv: "kernel",
}
Path = tuple[str, ...]


def _pairs(module: nn.Module, variables: Mapping[str, Any], x: jax.ShapeDtypeStruct, kwargs):
    """`[(conv path, its kernel name, BatchNorm path, its epsilon)]` for each BatchNorm applied directly to a
    conv's output, found by tracing one eval forward pass."""
    outputs: dict[int, tuple[Path, str]] = {}
    pairs: list[tuple[Path, str, Path, float]] = []

    def record(next_fun, args, kw, context):
        y = next_fun(*args, **kw)
        if context.method_name != "__call__":
            return y
        path = tuple(context.module.scope.path)
        kind = next((k for k in _CONVS if isinstance(context.module, k)), None)
        if kind is not None:
            outputs[id(y)] = (path, _CONVS[kind], y)
        elif isinstance(context.module, nn.BatchNorm) and args and id(args[0]) in outputs:
            conv_path, kernel, _ = outputs[id(args[0])]
            pairs.append((conv_path, kernel, path, float(context.module.epsilon)))
        return y

    def forward(variables, x):
        with nn.intercept_methods(record):
            return module.apply(variables, x, **kwargs)

    jax.eval_shape(forward, variables, x)
    return pairs


class BatchNormFolded(nn.Module):
    """`module` with the BatchNorms at `norms` skipped and a `bias` added after the convs at
    `convs` (an inference module: `fold_batchnorm` builds it; its variables are `module`'s,
    with the folded kernels and biases and without those BatchNorms).

    Attributes:
      module: the linen net.
      convs: paths of the convs that carry a folded bias.
      norms: paths of the folded BatchNorms.
    """

    module: nn.Module
    convs: tuple[Path, ...]
    norms: tuple[Path, ...]

    def setup(self) -> None:
        nn.share_scope(self, self.module)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Calls `module` as it is called (e.g. `x, train=False`)."""
        convs, norms = set(self.convs), set(self.norms)

        def folded(next_fun, a, kw, context):
            if context.method_name != "__call__":
                return next_fun(*a, **kw)
            path = tuple(context.module.scope.path)
            if path in norms:
                if not context.module.use_running_average:
                    raise ValueError(
                        "a BatchNorm-folded model is for inference only: apply it with "
                        "train=False (use the unfolded model to train)"
                    )
                return a[0]
            y = next_fun(*a, **kw)
            if path in convs and not context.module.use_bias:
                bias = context.module.get_variable("params", "bias").astype(y.dtype)
                y = y + jnp.reshape(bias, (1,) * (y.ndim - 1) + bias.shape)
            return y

        with nn.intercept_methods(folded):
            return self.module(*args, **kwargs)


def fold_batchnorm(
    module: nn.Module,
    variables: Mapping[str, Any],
    *,
    input_shape: tuple[int, ...] = (1, 64, 64, 3),
    **apply_kwargs: Any,
) -> tuple[BatchNormFolded, dict[str, Any]]:
    """Folds every BatchNorm that follows a depthwise, pointwise or full conv into that conv.

    With `s = γ / sqrt(σ² + ε)` per channel, the conv's kernel becomes `w · s` (over its output
    channels) and its bias `(b − μ) · s + β` (`b = 0` for a conv without one), and the
    BatchNorm is dropped: eval outputs equal the unfolded model's up to float rounding, with one
    elementwise pass less per pair. The pairs are found by tracing one forward pass (a
    BatchNorm applied directly to a conv module's output: `DepthwiseConv`, `PointwiseConv`,
    `SeparableConv`, `nn.Conv`), assuming the conv's output feeds nothing else (true of every
    registered net); other BatchNorms stay as they are. Linen only: nnx modules are
    not folded (for inference, fold the linen twin of the nnx MobileNetV2).

    Args:
      module: a linen net (e.g. `models.create("mobilenet_v3_large")`).
      variables: its `{"params", "batch_stats"}`.
      input_shape: the input traced to find the pairs (any size the net accepts). Defaults to
        `(1, 64, 64, 3)`.
      **apply_kwargs: passed to `module.apply` while tracing. Defaults to `train=False`.

    Returns:
      `(folded_module, folded_variables)`: apply as the original (`train=False` only).

    Raises:
      ValueError: `variables` without `"params"`.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from sepconv_jax import models
      >>> model = models.create("mobilenet_v2_tiny")
      >>> x = jax.random.normal(jax.random.key(0), (2, 32, 32, 3))
      >>> variables = jax.jit(model.init, static_argnames="train")(jax.random.key(1), x, train=False)
      >>> folded, folded_vars = fold_batchnorm(model, variables)
      >>> "batch_stats" in folded_vars
      False
      >>> y, y_folded = model.apply(variables, x, train=False), folded.apply(folded_vars, x, train=False)
      >>> bool(jnp.allclose(y, y_folded, atol=1e-4))
      True
    """
    if "params" not in variables:
        raise ValueError(f"variables must hold 'params', got collections {sorted(variables)}")
    apply_kwargs.setdefault("train", False)
    x = jax.ShapeDtypeStruct(tuple(input_shape), jnp.float32)
    pairs = _pairs(module, variables, x, apply_kwargs)
    flat = {
        k: np.asarray(v)
        for k, v in traverse_util.flatten_dict(jax.device_get(dict(variables))).items()
    }
    for conv, kernel_name, norm, epsilon in pairs:
        gamma = flat.pop(("params", *norm, "scale"))
        beta = flat.pop(("params", *norm, "bias"))
        mean = flat.pop(("batch_stats", *norm, "mean"))
        var = flat.pop(("batch_stats", *norm, "var"))
        s = gamma.astype(np.float64) / np.sqrt(var.astype(np.float64) + epsilon)
        kernel = flat[("params", *conv, kernel_name)]
        flat[("params", *conv, kernel_name)] = (kernel * s).astype(kernel.dtype)
        bias = flat.get(("params", *conv, "bias"), np.zeros_like(mean))
        flat[("params", *conv, "bias")] = ((bias - mean) * s + beta).astype(kernel.dtype)
    folded_variables = traverse_util.unflatten_dict({k: jnp.asarray(v) for k, v in flat.items()})
    convs = tuple(p[0] for p in pairs)
    norms = tuple(p[2] for p in pairs)
    return BatchNormFolded(module, convs, norms), folded_variables
