"""ImageNet nets (MobileNetV2/V3, EfficientNet, ConvNeXt), their blocks, costs and BN folding."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util

from sepconv_jax import activations, cost, models
from sepconv_jax import linen as sl
from sepconv_jax.interop import fold_batchnorm
from sepconv_jax.models import imagenet_common as ic
from sepconv_jax.models.mbconv import MBConv, MBConvSpec

# Blocks --------------------------------------------------------------------------------------


def test_hard_sigmoid_and_swish_closed_form():
    x = jax.random.normal(jax.random.key(0), (64,)) * 5
    x64 = np.asarray(x, np.float64)
    ref = np.minimum(np.maximum(x64 + 3, 0), 6) / 6
    np.testing.assert_allclose(activations.hard_sigmoid(x), ref, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(activations.hard_swish(x), x64 * ref, rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match="unknown activation 'mish'"):
        activations.get("mish")


def test_squeeze_excite_matches_its_formula():
    x = jax.random.normal(jax.random.key(1), (2, 5, 5, 12))
    se = sl.SqueezeExcite(3, act="swish", gate="hard_sigmoid")
    v = se.init(jax.random.key(2), x)
    v = jax.tree.map(lambda a: jax.random.normal(jax.random.key(3), a.shape), v)
    p = v["params"]
    s = np.asarray(x, np.float64).mean(axis=(1, 2))
    s = s @ np.asarray(p["reduce"]["pointwise_kernel"], np.float64) + np.asarray(
        p["reduce"]["bias"]
    )
    s = s / (1 + np.exp(-s))
    s = s @ np.asarray(p["expand"]["pointwise_kernel"], np.float64) + np.asarray(
        p["expand"]["bias"]
    )
    ref = np.asarray(x, np.float64) * (np.clip(s + 3, 0, 6) / 6)[:, None, None, :]
    np.testing.assert_allclose(se.apply(v, x), ref, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="features must be a positive int, got 0"):
        sl.SqueezeExcite(0).init(jax.random.key(0), x)


def test_drop_path_drops_whole_samples_and_rescales():
    x = jax.random.normal(jax.random.key(4), (64, 3, 3, 2)) + 5.0
    layer = sl.DropPath(0.25)
    assert (layer.apply({}, x, deterministic=True) == x).all()
    y = layer.apply({}, x, deterministic=False, rngs={"dropout": jax.random.key(5)})
    kept = np.asarray((y != 0).all(axis=(1, 2, 3)))
    dropped = np.asarray((y == 0).all(axis=(1, 2, 3)))
    assert (kept | dropped).all() and 0 < dropped.sum() < 64
    np.testing.assert_allclose(y[kept], x[kept] / 0.75, rtol=1e-6)
    with pytest.raises(ValueError, match=r"rate must be in \[0, 1\), got 1.5"):
        sl.DropPath(1.5).apply({}, x, deterministic=False)


def test_layer_norm_against_float64():
    x = jax.random.normal(jax.random.key(6), (2, 3, 3, 16)) * 3 + 1
    ln = sl.LayerNorm(epsilon=1e-6)
    v = jax.tree.map(
        lambda a: jax.random.normal(jax.random.key(7), a.shape), ln.init(jax.random.key(0), x)
    )
    x64 = np.asarray(x, np.float64)
    mean, var = x64.mean(-1, keepdims=True), x64.var(-1, keepdims=True)
    ref = (x64 - mean) / np.sqrt(var + 1e-6) * np.asarray(v["params"]["scale"]) + np.asarray(
        v["params"]["bias"]
    )
    np.testing.assert_allclose(ln.apply(v, x), ref, rtol=1e-5, atol=1e-5)
    y = ln.apply(v, x.astype(jnp.bfloat16))
    assert y.dtype == jnp.bfloat16


# Models: shapes, costs, fields ---------------------------------------------------------------

#: Registry name → (exact parameters, published parameters, published MACs) at 224×224, 1000
#: classes. Published: MobileNetV2 1.0 and V3-large (their papers), EfficientNet-B0 (its paper),
#: ConvNeXt-T (its paper). BN running statistics are not parameters here (Keras counts them).
PUBLISHED = {
    "mobilenet_v2_imagenet": (3_504_872, 3.5e6, 300e6),
    "mobilenet_v3_large": (5_483_032, 5.4e6, 219e6),
    "efficientnet_b0": (5_288_548, 5.3e6, 390e6),
    "convnext_tiny": (28_589_128, 28.6e6, 4.5e9),
}


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_params_and_macs_at_224(name):
    exact, params, macs = PUBLISHED[name]
    c = cost.model_cost(models.create(name), (1, 224, 224, 3))
    assert c.params == exact
    # V3-large: 5.48 M is also torchvision's count; the paper rounds it to 5.4 M.
    assert abs(c.params / params - 1) <= (0.02 if name == "mobilenet_v3_large" else 0.01)
    assert abs(c.macs / macs - 1) <= 0.03


def test_widths_and_feature_outputs():
    x = jax.ShapeDtypeStruct((2, 96, 96, 3), jnp.float32)
    for width, channels in [(0.35, 1280), (1.4, 1792)]:
        model = models.create("mobilenet_v2_imagenet", width=width, include_top=False)
        v = jax.eval_shape(lambda x, m=model: m.init(jax.random.key(0), x, train=False), x)
        out = jax.eval_shape(lambda v, x, m=model: m.apply(v, x, train=False), v, x)
        assert out.shape == (2, 3, 3, channels)
    pooled = models.create("convnext_tiny", include_top=False, pooling="max")
    v = jax.eval_shape(lambda x: pooled.init(jax.random.key(0), x, train=False), x)
    assert jax.eval_shape(lambda v, x: pooled.apply(v, x, train=False), v, x).shape == (2, 768)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(padding="reflect"), r"padding must be one of \('tf', 'torch'\), got 'reflect'"),
        (dict(pooling="sum"), "pooling must be one of .* got 'sum'"),
        (dict(classifier_activation="relu"), "classifier_activation must be one of .*'relu'"),
        (dict(preprocessing=(("scale", 2.0),)), "preprocessing step must be"),
        (dict(variant="medium"), "variant must be one of .*'medium'"),
    ],
)
def test_bad_fields_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        models.create("mobilenet_v3_small", **kwargs)


def _random_variables(model, size: int, seed: int = 0, channels: int = 3):
    """Random variables of `model` from its shapes (numpy, no init compile), BN statistics too."""
    x = jax.ShapeDtypeStruct((1, size, size, channels), jnp.float32)
    shapes = jax.eval_shape(lambda x: model.init(jax.random.key(0), x, train=False), x)
    rng = np.random.default_rng(seed)
    out = {}
    for path, s in traverse_util.flatten_dict(shapes).items():
        if path[-1] == "var":
            value = rng.uniform(0.5, 2.0, s.shape)
        elif path[-1] == "scale":
            value = rng.uniform(0.5, 1.5, s.shape)
        else:
            fan = int(np.prod(s.shape[:-1])) if len(s.shape) > 1 else 4
            value = rng.normal(0.0, 1.0 / np.sqrt(fan), s.shape)
        out[path] = jnp.asarray(value, jnp.float32)
    return traverse_util.unflatten_dict(out)


def _apply(model, variables, x):
    return jax.jit(lambda v, x: model.apply(v, x, train=False))(variables, x)


def test_padding_conventions_agree_on_odd_sizes_only():
    spec = MBConvSpec(8, 24, kernel_size=5, strides=2, act="relu6")
    tf = MBConv(spec, padding="tf")
    torch = MBConv(spec, padding="torch")
    x = jax.random.normal(jax.random.key(8), (1, 9, 9, 4))
    v = _random_variables(tf, 9, channels=4)
    # At odd sizes TensorFlow "SAME" pads (2, 2) at stride 2 like PyTorch; at even (1, 2).
    np.testing.assert_allclose(_apply(tf, v, x), _apply(torch, v, x), rtol=1e-5, atol=1e-5)
    even = x[:, :8, :8]
    assert not np.allclose(_apply(tf, v, even), _apply(torch, v, even), atol=1e-3)


# BatchNorm folding ---------------------------------------------------------------------------

LINEN_MODELS = [n for n in models.list_models() if not n.endswith("_nnx")]
#: Where a registered net only repeats the blocks of a cheaper one, its outputs are compared on
#: that one (the same class with fewer blocks): the CIFAR nets on their tiny stacks, EfficientNet
#: B1-B3 on B0, MobileNetV3-large on small. ConvNeXt has no BatchNorm: nothing to fold.
_EQUALITY_ON = {
    "mobilenet_v1": dict(cfg=models.mobilenet_v1.TINY_CFG),
    "mobilenet_v1_full": dict(cfg=models.mobilenet_v1.TINY_CFG),
    "mobilenet_v2": dict(cfg=models.mobilenet_v2.TINY_CFG),
    "mobilenet_v2_full": dict(cfg=models.mobilenet_v2.TINY_CFG),
    "mobilenet_v2_paper": dict(cfg=models.mobilenet_v2.TINY_CFG),
}
_SHAPES_ONLY = ("efficientnet_b1", "efficientnet_b2", "efficientnet_b3", "mobilenet_v3_large")


def _n_batch_norms(variables) -> int:
    return len(traverse_util.flatten_dict(variables.get("batch_stats", {}))) // 2


@pytest.mark.parametrize("name", LINEN_MODELS)
def test_fold_batchnorm_equals_unfolded(name):
    model, size = models.create(name), 32
    if name in _SHAPES_ONLY or name.startswith("convnext"):
        variables = _random_variables(model, size)
        folded, folded_vars = fold_batchnorm(model, variables, input_shape=(1, size, size, 3))
        assert len(folded.norms) == _n_batch_norms(variables)
        assert "batch_stats" not in folded_vars
        return
    model = model.clone(**_EQUALITY_ON.get(name, {}))
    variables = _random_variables(model, size, seed=len(name))
    folded, folded_vars = fold_batchnorm(model, variables, input_shape=(1, size, size, 3))
    assert len(folded.norms) == _n_batch_norms(variables) > 0
    assert "batch_stats" not in folded_vars
    x = jax.random.normal(jax.random.key(9), (2, size, size, 3))
    y, y_folded = _apply(model, variables, x), _apply(folded, folded_vars, x)
    scale = float(jnp.abs(y).max())
    np.testing.assert_allclose(y_folded, y, rtol=0, atol=1e-5 * scale)


def test_folded_model_refuses_training():
    model = models.create("mobilenet_v2_tiny")
    variables = _random_variables(model, 32)
    folded, folded_vars = fold_batchnorm(model, variables, input_shape=(1, 32, 32, 3))
    x = jnp.ones((1, 32, 32, 3))
    with pytest.raises(ValueError, match="inference only"):
        folded.apply(folded_vars, x, train=True, mutable=["batch_stats"])
    with pytest.raises(ValueError, match="variables must hold 'params'"):
        fold_batchnorm(model, {"batch_stats": {}})


def test_conv_padding():
    assert ic.conv_padding(5, "torch") == ((2, 2), (2, 2))
    assert ic.conv_padding(5, "tf") == "SAME"


def test_parts_linen_equals_nnx():
    from flax import nnx

    from sepconv_jax import nnx as snx

    x = jax.random.normal(jax.random.key(10), (2, 4, 4, 8))
    ln = snx.LayerNorm(8, rngs=nnx.Rngs(0))
    v = {"params": {"scale": jax.random.normal(jax.random.key(11), (8,)), "bias": x[0, 0, 0]}}
    nnx.update(ln, nnx.State(v["params"]))
    np.testing.assert_allclose(ln(x), sl.LayerNorm().apply(v, x), rtol=1e-6, atol=1e-6)

    se = snx.SqueezeExcite(8, 3, act="swish", gate="hard_sigmoid", rngs=nnx.Rngs(1))
    params = nnx.to_pure_dict(nnx.state(se, nnx.Param))
    linen_se = sl.SqueezeExcite(3, act="swish", gate="hard_sigmoid")
    np.testing.assert_allclose(se(x), linen_se.apply({"params": params}, x), rtol=1e-6)

    drop = snx.DropPath(0.5, rngs=nnx.Rngs(dropout=2))
    y = drop(x + 3.0)
    assert set(np.unique(np.asarray((y != 0).all(axis=(1, 2, 3))))) <= {True, False}
    drop.eval()
    assert (drop(x) == x).all()
    with pytest.raises(ValueError, match=r"rate must be in \[0, 1\), got -0.1"):
        snx.DropPath(-0.1)


def test_interop_imports_no_peer_at_load():
    import subprocess
    import sys

    code = (
        "import sys, sepconv_jax.interop; "
        "print(sorted(m for m in ('keras', 'h5py', 'torch', 'safetensors') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
