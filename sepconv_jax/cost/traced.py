"""Costs of a whole linen or nnx model from its traced jaxpr, and XLA's own cost analysis."""

from __future__ import annotations

import inspect
import math
import warnings
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn
from flax import nnx
from jax.extend import core as jex_core

from sepconv_jax import ops
from sepconv_jax.cost.closed_form import Cost, Shape, check_input_shape, taps_in_bounds


def model_cost(
    model: Any,
    input_shape: Shape,
    *,
    dtype: Any = jnp.float32,
    count_padding: bool = True,
    **apply_kwargs: Any,
) -> Cost:
    """Cost of one forward pass of a flax linen or nnx model, from shapes alone (no compute).

    Params: the size of the `"params"` collection (nnx: every `nnx.Param`); batch statistics
    are not parameters. MACs and bytes: every `conv_general_dilated` and `dot_general` in the
    jaxpr of the forward pass, through nested jaxprs (`jit`, `custom_jvp`/`custom_vjp`, remat,
    `scan` times its length, the costliest branch of a `cond`, a `while` body once). `bytes`
    sums what each of those ops reads and writes at its traced dtypes; elementwise ops (batch
    norm, activations, bias adds) and pooling are counted in neither.

    A linen model is initialised and applied under `jax.eval_shape` / `jax.make_jaxpr`, with
    `train=False` when its `__call__` takes `train` and `apply_kwargs` do not set it. An nnx
    model runs on a copy put in `eval()` mode. Pallas kernels (`implementation="pallas"`, or
    `"auto"` on a GPU) are opaque and not counted: build the model with `implementation="xla"`.

    Args:
      model: an unbound `flax.linen.Module` or a `flax.nnx.Module`.
      input_shape: the full input shape, e.g. `(1, 32, 32, 3)`, or a `jax.ShapeDtypeStruct`
        (whose dtype then replaces `dtype`).
      dtype: the input dtype. Defaults to float32.
      count_padding: as `depthwise_cost`: False counts as XLA does.
      **apply_kwargs: passed to `model.apply` (linen; also to `init`, except `rngs` and
        `mutable`) or to the nnx model's call.

    Returns:
      The `Cost`.

    Raises:
      ValueError: a bad `input_shape` or `dtype`. TypeError: `model` is not a flax module.

    Examples:
      >>> from sepconv_jax import models
      >>> c = model_cost(models.create("mobilenet_v2"), (1, 32, 32, 3))
      >>> c.params, c.macs
      (2296922, 91154944)
    """
    if isinstance(input_shape, jax.ShapeDtypeStruct):
        x = input_shape
    else:
        shape, _ = check_input_shape(input_shape, dtype, conv=False)
        x = jax.ShapeDtypeStruct(shape, jnp.dtype(dtype))
    if isinstance(model, nn.Module):
        kwargs = dict(apply_kwargs)
        if "train" not in kwargs and "train" in inspect.signature(type(model).__call__).parameters:
            kwargs["train"] = False
        init_kwargs = {k: v for k, v in kwargs.items() if k not in ("rngs", "mutable")}
        variables = jax.eval_shape(lambda x: model.init(jax.random.key(0), x, **init_kwargs), x)
        params = variables.get("params", {})
        with ops.grouped_conv_only():  # the depthwise convs as convs on every backend
            jaxpr = jax.make_jaxpr(lambda v, x: model.apply(v, x, **kwargs))(variables, x)
    elif isinstance(model, nnx.Module):
        graphdef, state = nnx.split(model)
        params = nnx.state(model, nnx.Param)

        def forward(state: Any, x: jax.Array) -> Any:
            copy = nnx.merge(graphdef, state)
            copy.eval()
            return copy(x, **apply_kwargs)

        with ops.grouped_conv_only():
            jaxpr = jax.make_jaxpr(forward)(state, x)
    else:
        raise TypeError(
            f"model must be a flax.linen.Module or a flax.nnx.Module, got {type(model).__name__}"
        )
    n_params = sum(math.prod(np.shape(p)) for p in jax.tree.leaves(params))
    macs, nbytes = _jaxpr_cost(jaxpr.jaxpr, count_padding)
    return Cost(int(n_params), macs, 2 * macs, nbytes)


def _jaxpr_cost(jaxpr: jex_core.Jaxpr, count_padding: bool) -> tuple[int, int]:
    """`(MACs, bytes)` of the convs and dot products of `jaxpr`, recursively."""
    macs = nbytes = 0
    for eqn in jaxpr.eqns:
        name = eqn.primitive.name
        if name in ("conv_general_dilated", "dot_general"):
            count = _conv_eqn_macs if name == "conv_general_dilated" else _dot_eqn_macs
            macs += count(eqn, count_padding)
            nbytes += sum(_aval_bytes(v.aval) for v in (*eqn.invars, *eqn.outvars))
        elif name == "pallas_call":
            warnings.warn(
                "model_cost: a pallas_call is not counted; build the model with "
                "implementation='xla' to count its convolutions",
                stacklevel=3,
            )
        elif name == "cond":
            branches = [_jaxpr_cost(b.jaxpr, count_padding) for b in eqn.params["branches"]]
            m, b = max(branches)
            macs, nbytes = macs + m, nbytes + b
        else:
            times = int(eqn.params["length"]) if name == "scan" else 1
            for sub in sub_jaxprs(eqn.params):
                m, b = _jaxpr_cost(sub, count_padding)
                macs, nbytes = macs + times * m, nbytes + times * b
    return macs, nbytes


def sub_jaxprs(params: dict[str, Any]) -> list[jex_core.Jaxpr]:
    """The jaxprs nested in an equation's `params` (`jit`, `custom_vjp`, `scan`, ...)."""
    subs = []
    for value in params.values():
        for v in value if isinstance(value, (tuple, list)) else (value,):
            if isinstance(v, jex_core.ClosedJaxpr):
                subs.append(v.jaxpr)
            elif isinstance(v, jex_core.Jaxpr):
                subs.append(v)
    return subs


def _aval_bytes(aval: Any) -> int:
    return math.prod(aval.shape) * aval.dtype.itemsize


def _conv_eqn_macs(eqn: Any, count_padding: bool) -> int:
    """Output elements × window taps × input channels per group (in-bounds taps only if not
    `count_padding`)."""
    p = eqn.params
    lhs, rhs = (v.aval.shape for v in eqn.invars)
    out = eqn.outvars[0].aval.shape
    dn = p["dimension_numbers"]
    in_features = rhs[dn.rhs_spec[1]]
    window = [rhs[i] for i in dn.rhs_spec[2:]]
    out_spatial = [out[i] for i in dn.out_spec[2:]]
    if count_padding:
        return math.prod(out) * math.prod(window) * in_features
    taps = 1
    for i, (k, o) in enumerate(zip(window, out_spatial)):
        size = lhs[dn.lhs_spec[2 + i]]
        lo = p["padding"][i][0]
        s, d, ld = p["window_strides"][i], p["rhs_dilation"][i], p["lhs_dilation"][i]
        taps *= taps_in_bounds(size, k, s, d, lo, o, ld)
    return math.prod(out) // math.prod(out_spatial) * taps * in_features


def _dot_eqn_macs(eqn: Any, count_padding: bool) -> int:
    """Output elements × contracted elements."""
    del count_padding
    lhs = eqn.invars[0].aval.shape
    (contract, _), _ = eqn.params["dimension_numbers"]
    return math.prod(eqn.outvars[0].aval.shape) * math.prod(lhs[i] for i in contract)


def xla_cost(fn: Callable[..., Any], *args: Any) -> dict[str, float]:
    """XLA's own estimate for `jax.jit(fn)(*args)` on the default backend, after optimisation.

    Traced under `ops.grouped_conv_only()`: depthwise convs count as convs on every backend.

    Args:
      fn: the function.
      *args: its arguments: arrays or `jax.ShapeDtypeStruct`s (nothing is computed).

    Returns:
      `{"flops", "bytes accessed", "transcendentals"}` as floats, from
      `compiled.cost_analysis()` (its first entry where a list; `0.0` where the backend
      reports nothing). XLA counts a multiply-add as 2 FLOPs, skips taps that read a conv's
      zero padding, counts 1 FLOP per element of elementwise ops and reductions, and on CPU
      computes bfloat16 convs in float32 (counting the casts).

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> x = jax.ShapeDtypeStruct((4, 8), jnp.float32)
      >>> w = jax.ShapeDtypeStruct((8, 16), jnp.float32)
      >>> xla_cost(jnp.dot, x, w)
      {'flops': 1024.0, 'bytes accessed': 896.0, 'transcendentals': 0.0}
    """
    with ops.grouped_conv_only():  # the same program `model_cost` reads, on every backend
        analysis = jax.jit(fn).lower(*args).compile().cost_analysis()
    if isinstance(analysis, (list, tuple)):
        analysis = analysis[0] if analysis else {}
    analysis = analysis or {}
    keys = ("flops", "bytes accessed", "transcendentals")
    return {key: float(analysis.get(key, 0.0)) for key in keys}
