"""The module tests' harness: one adapter over linen and nnx, fresh inputs, tolerances, references."""

from __future__ import annotations

import copy
import functools
import itertools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax import lax

from sepconv_jax import linen as sl
from sepconv_jax import nnx as sn
from sepconv_jax import ops

HIGHEST = lax.Precision.HIGHEST
# The module and the op run the same XLA computation: equal up to float32 rounding.
SAME_OP_TOL = dict(atol=1e-6, rtol=1e-6)
# Different but exact-in-maths computations (full conv vs separable, BN by hand), float32.
F32_TOL = dict(atol=1e-5, rtol=1e-5)
EPS = 1e-5  # the blocks' default BatchNorm epsilon

_seed = itertools.count(2000)


def key() -> jax.Array:
    """A fresh key per call. RBG keys: threefry's XLA:CPU compile is ~0.5 s per new shape."""
    return jax.random.key(next(_seed), impl="rbg")


def normal(shape, dtype=jnp.float32) -> jax.Array:
    """Fresh standard-normal values (drawn by NumPy: nothing to compile)."""
    return jnp.asarray(np.random.default_rng(next(_seed)).standard_normal(shape), dtype)


def fill(path, a) -> jax.Array:
    """A fresh random value for the variable at `path` (running variances positive)."""
    v = normal(a.shape, a.dtype)
    return jnp.abs(v) + jnp.asarray(0.5, a.dtype) if path[-1].key == "var" else v


def shapes(tree) -> dict:
    return jax.tree.map(lambda a: a.shape, tree)


def channels(v: jax.Array, ndim: int) -> jax.Array:
    """A per-channel vector `(C,)` reshaped to broadcast against a rank-`ndim` array."""
    return v.reshape((1,) * (ndim - 1) + v.shape)


def bn_by_hand(h, mean, var, scale, bias) -> jax.Array:
    """BatchNorm with running statistics `mean`, `var` and affine `scale`, `bias`, by hand."""
    mean, var = channels(mean, h.ndim), channels(var, h.ndim)
    return (h - mean) / jnp.sqrt(var + EPS) * channels(scale, h.ndim) + channels(bias, h.ndim)


def spatial_out(size: int, stride: int) -> int:
    return -(-size // stride)  # SAME padding


def conv_grid() -> list[dict]:
    """Rank × stride × multiplier × bias, the conv layers' grid in both APIs."""
    return [
        dict(nd=nd, strides=s, m=m, use_bias=b)
        for nd, s, m, b in itertools.product((1, 2, 3), (1, 2), (1, 2), (False, True))
    ]


#: InvertedResidual structures: input and output channels, stride, expansion, residual or not.
INVERTED_RESIDUAL_CASES = (
    dict(c=4, f=4, strides=1, expansion=6, residual=True),
    dict(c=4, f=8, strides=1, expansion=6, residual=False),
    dict(c=4, f=4, strides=2, expansion=6, residual=False),
    dict(c=4, f=4, strides=1, expansion=1, residual=True),
    dict(c=4, f=6, strides=2, expansion=1, residual=False),
    dict(c=3, f=3, strides=1, expansion=2, residual=True, nd=1),
)

#: SeparableBlock structures: rank, stride, channel multiplier.
SEPARABLE_BLOCK_CASES = (
    dict(nd=2, strides=1, m=1),
    dict(nd=2, strides=2, m=2),
    dict(nd=1, strides=2, m=1),
    dict(nd=3, strides=1, m=2),
)

#: PointwiseConv inputs of every rank, with and without bias.
POINTWISE_CASES = (
    dict(shape=(2, 7, 3), use_bias=True),
    dict(shape=(2, 4, 5, 3), use_bias=False),
    dict(shape=(2, 2, 3, 4, 3), use_bias=True),
)


def separable_op(x, dw, pw, bias, **geometry) -> jax.Array:
    """`ops.separable_conv` at HIGHEST precision, plus `bias` when not `None`."""
    y = ops.separable_conv(x, dw, pw, precision=HIGHEST, **geometry)
    return y if bias is None else y + channels(bias, y.ndim)


def separable_geometry(nd: int, strides: int) -> dict:
    """Strides, padding and dilation of the separable-layer grid: VALID in 1-D, SAME else,
    dilated in 2-D."""
    padding, dilation = ("VALID", 1) if nd == 1 else ("SAME", 2 if nd == 2 else 1)
    return dict(strides=strides, padding=padding, dilation=dilation)


def separable_out(size: int, geometry: dict) -> int:
    """The output size along a dim of `size` of a 3-wide window with `separable_geometry`."""
    if geometry["padding"] == "SAME":
        return spatial_out(size, geometry["strides"])
    return (size - 3) // geometry["strides"] + 1


def flax_conv_args(geometry: dict, use_bias: bool) -> dict:
    """The keyword arguments of the stock Flax `Conv` (linen and nnx) with this geometry."""
    return dict(
        strides=geometry["strides"],
        padding=geometry["padding"],
        kernel_dilation=geometry["dilation"],
        use_bias=use_bias,
        precision=HIGHEST,
    )


# -- One harness over both APIs ------------------------------------------------------------------

APIS = ("linen", "nnx")
BLOCKS = ("SeparableBlock", "InvertedResidual")
#: A user norm factory in each API's own form (linen: called with a name; nnx: a class).
LAYER_NORM = {"linen": lambda name: nn.LayerNorm(name=name), "nnx": nnx.LayerNorm}


def _pick(tree: dict, template: dict) -> dict:
    """The entries of `tree` at the paths of `template`."""
    return {k: _pick(tree[k], v) if isinstance(v, dict) else tree[k] for k, v in template.items()}


def _merge(a: dict, b: dict) -> dict:
    out = dict(a)
    for k, v in b.items():
        out[k] = _merge(out[k], v) if k in out and isinstance(v, dict) else v
    return out


class Layer:
    """A layer of `sepconv_jax.linen` or `sepconv_jax.nnx` built from shared arguments.

    Its variables are one nested dict, `pure`, as nnx holds them (linen's params and batch_stats
    merged); `apply(pure, x, train)` is a pure function of them in both APIs.

    Args:
        api: "linen" or "nnx".
        name: the layer's class name, e.g. "SeparableConv".
        x: an input `(N, *spatial, C)`: linen initialises from it, nnx takes `C` as
            `in_features` and its rank as `num_spatial_dims` (not for `PointwiseConv`).
        features: the output features (linen `features`, nnx `out_features`), if any.
        random: fresh random values (positive variances) from NumPy; else a real init.
        **kwargs: the other arguments, the same in both APIs.
    """

    def __init__(self, api: str, name: str, x, features=None, random: bool = True, **kwargs):
        self.api, self.block = api, name in BLOCKS
        train = {"train": False} if self.block else {}
        if api == "linen":
            self.module = getattr(sl, name)(
                **kwargs, **({} if features is None else {"features": features})
            )
            init = functools.partial(self.module.init, **train)
            v = jax.eval_shape(init, key(), x) if random else jax.jit(init)(key(), x)
            self.template = shapes(v)
        else:
            args = dict(in_features=x.shape[-1], **kwargs)
            if features is not None:
                args["out_features"] = features
            if name != "PointwiseConv":
                args.setdefault("num_spatial_dims", x.ndim - 2)
            make = lambda: getattr(sn, name)(**args, rngs=nnx.Rngs(key()))  # noqa: E731
            module = nnx.eval_shape(make) if random else make()
            self.graphdef, self._state = nnx.split(module)
            v = {
                "params": nnx.to_pure_dict(nnx.state(module, nnx.Param)),
                "batch_stats": nnx.to_pure_dict(nnx.state(module, nnx.BatchStat)),
            }
            self.template = {k: shapes(t) for k, t in v.items() if t}
        merged = _merge(v.get("params", {}), v.get("batch_stats", {}))
        self.pure = jax.tree_util.tree_map_with_path(fill, merged) if random else merged

    def params(self, pure: dict | None = None) -> dict:
        """The trainable entries of `pure` (default: the layer's own)."""
        return _pick(self.pure if pure is None else pure, self.template["params"])

    def apply(self, pure: dict, x, train: bool = False):
        """`(y, pure')`: the output and the variables after the call (running stats updated
        when `train`)."""
        if self.api == "linen":
            v = {col: _pick(pure, t) for col, t in self.template.items()}
            kw = {"train": train} if self.block else {}
            if "batch_stats" not in v:
                return self.module.apply(v, x, **kw), pure
            y, upd = self.module.apply(v, x, **kw, mutable=["batch_stats"])
            return y, _merge(v["params"], upd["batch_stats"])
        state = jax.tree.map(lambda a: a, self._state)  # a copy, filled in place
        nnx.replace_by_pure_dict(state, pure)
        module = nnx.merge(self.graphdef, state)
        module.train() if train else module.eval()
        return module(x), nnx.to_pure_dict(nnx.state(module))

    def __call__(self, x, train: bool = False):
        """Applies the layer and keeps the updated variables."""
        y, self.pure = self.apply(self.pure, x, train)
        return y

    def with_pure(self, pure: dict) -> Layer:
        """This layer with the variables `pure` (a shallow copy)."""
        other = copy.copy(self)
        other.pure = pure
        return other


def stock_apply(api: str, name: str, params: dict, x, **kwargs):
    """The stock Flax layer `name` ("Dense" or "Conv"; nnx: "Linear" or "Conv") of `api` with
    `params` (`kernel`, optional `bias`) applied to `x`; `kwargs` as linen takes them."""
    if api == "linen":
        return getattr(nn, name)(**kwargs).apply({"params": params}, x)
    features = kwargs.pop("features")
    cls = nnx.Linear if name == "Dense" else nnx.Conv
    layer = nnx.eval_shape(lambda: cls(x.shape[-1], features, **kwargs, rngs=nnx.Rngs(0)))
    for k, v in params.items():
        setattr(layer, k, nnx.Param(v))
    return layer(x)
