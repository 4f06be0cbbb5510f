"""Tests for the CIFAR MobileNets: parameter lock, forward contract, twins, registry, nnx build."""

import functools
import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from flax.nnx import bridge

from sepconv_jax import models
from sepconv_jax.models import mobilenet_v2_nnx

# Counted in the `params` collection (BatchNorm scale and bias, not running statistics), as
# PyTorch counts `parameters()`: the separable counts equal pytorch-cifar's nets.
PARAM_COUNTS = {
    "mobilenet_v1": 3_217_226,
    "mobilenet_v1_full": 28_279_338,
    "mobilenet_v2": 2_296_922,
    "mobilenet_v2_full": 9_924_026,
    "mobilenet_v2_paper": 2_236_682,
}

PARAM_SHAPES = {
    "mobilenet_v1": {
        "stem/conv/kernel": (3, 3, 3, 32),
        "stem/norm/scale": (32,),
        "block0/depthwise/depthwise_kernel": (3, 3, 1, 32),
        "block0/pointwise/pointwise_kernel": (32, 64),
        "block11/depthwise/depthwise_kernel": (3, 3, 1, 512),
        "block12/pointwise_norm/bias": (1024,),
        "classifier/kernel": (1024, 10),
        "classifier/bias": (10,),
    },
    "mobilenet_v1_full": {
        "block0/conv/kernel": (3, 3, 32, 64),
        "block12/conv/kernel": (3, 3, 1024, 1024),
    },
    "mobilenet_v2": {
        "stem/conv/kernel": (3, 3, 3, 32),
        "block0/expand/pointwise_kernel": (32, 32),
        "block0/core/depthwise/depthwise_kernel": (3, 3, 1, 32),
        "block0/core/project/pointwise_kernel": (32, 16),
        "block0/shortcut/pointwise_kernel": (32, 16),
        "block1/core/expand/pointwise_kernel": (16, 96),
        "block2/core/project_norm/scale": (24,),
        "block16/core/depthwise/depthwise_kernel": (3, 3, 1, 960),
        "block16/shortcut/pointwise_kernel": (160, 320),
        "last/conv/kernel": (1, 1, 320, 1280),
        "classifier/kernel": (1280, 10),
    },
    "mobilenet_v2_full": {
        "block0/core/conv/kernel": (3, 3, 32, 16),
        "block16/core/expand/pointwise_kernel": (160, 960),
        "block16/core/conv/kernel": (3, 3, 960, 320),
    },
}

X_SHAPE = (2, 32, 32, 3)


def _images(seed=0, shape=X_SHAPE):
    return jax.random.normal(jax.random.key(seed), shape, jnp.float32)


def _abstract_variables(model, x_shape=X_SHAPE):
    x = jax.ShapeDtypeStruct(x_shape, jnp.float32)
    return jax.eval_shape(lambda x: model.init(jax.random.key(0), x, train=False), x)


def _count(tree):
    return sum(math.prod(leaf.shape) for leaf in jax.tree.leaves(tree))


def _flat_shapes(tree):
    flat = jax.tree_util.tree_flatten_with_path(tree)[0]
    return {"/".join(k.key for k in path): tuple(leaf.shape) for path, leaf in flat}


def _fill(abstract, seed=0):
    """Concrete variables for an abstract variable tree, drawn with NumPy.

    `model.init` compiles slowly on CPU (seconds per tiny net), so most tests use these:
    kernels ~ N(0, 1/fan_in), BatchNorm scale/var in [0.5, 1.5], biases/means ~ N(0, 0.1).
    `test_init_forward` runs the real init.
    """
    rng = np.random.default_rng(seed)

    def leaf(path, spec):
        name = path[-1].key
        if name in ("scale", "var"):
            value = rng.uniform(0.5, 1.5, spec.shape)
        elif name in ("bias", "mean"):
            value = rng.normal(0.0, 0.1, spec.shape)
        else:
            value = rng.normal(0.0, 1.0, spec.shape) / math.sqrt(math.prod(spec.shape[:-1]))
        return jnp.asarray(value, spec.dtype)

    return jax.tree_util.tree_map_with_path(leaf, abstract)


@functools.cache
def _tiny_variables(name):
    """Variables of a registry model (independent of `dtype` and `dropout`), once per process."""
    return _fill(_abstract_variables(models.create(name)))


def _apply(model, variables, x, train):
    """Jitted `model.apply`; with `train`, returns `(logits, batch_stats)`."""
    if train:
        fn = functools.partial(model.apply, train=True, mutable=["batch_stats"])
        logits, updates = jax.jit(fn)(variables, x)
        return logits, updates["batch_stats"]
    return jax.jit(functools.partial(model.apply, train=False))(variables, x)


@pytest.fixture()
def tiny_v2():
    return models.create("mobilenet_v2_tiny"), _tiny_variables("mobilenet_v2_tiny")


# Parameter lock ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(PARAM_COUNTS))
def test_param_count_lock(name):
    variables = _abstract_variables(models.create(name))
    assert _count(variables["params"]) == PARAM_COUNTS[name]


@pytest.mark.parametrize("name", sorted(PARAM_SHAPES))
def test_param_shape_lock(name):
    shapes = _flat_shapes(_abstract_variables(models.create(name))["params"])
    for path, shape in PARAM_SHAPES[name].items():
        assert shapes.get(path) == shape, path


def test_v2_block_layout():
    shapes = _flat_shapes(_abstract_variables(models.create("mobilenet_v2"))["params"])
    blocks = {p.split("/")[0] for p in shapes if p.startswith("block")}
    assert len(blocks) == 17
    # pytorch-cifar's projection shortcut: stride 1 with C_in != C_out (blocks 0, 1, 10, 16).
    with_shortcut = sorted(int(b[5:]) for b in blocks if f"{b}/shortcut/pointwise_kernel" in shapes)
    assert with_shortcut == [0, 1, 10, 16]
    paper = _flat_shapes(_abstract_variables(models.create("mobilenet_v2_paper"))["params"])
    assert not any("shortcut" in p for p in paper)
    assert "block0/expand/pointwise_kernel" not in paper  # the paper has no 1×1 at expansion 1
    no_projection = _abstract_variables(models.create("mobilenet_v2", shortcut="paper"))
    assert _count(no_projection["params"]) == 2_237_770


def test_twin_param_ratio():
    """A full K×K conv over the separable pair costs about K²·C_out/(K² + C_out) times more."""
    v1 = PARAM_COUNTS["mobilenet_v1_full"] / PARAM_COUNTS["mobilenet_v1"]
    v2 = PARAM_COUNTS["mobilenet_v2_full"] / PARAM_COUNTS["mobilenet_v2"]
    assert 8.0 < v1 < 9.0  # V1 is almost all separable convs with C_out >> 9.
    assert 4.0 < v2 < 4.5  # V2 keeps its 1×1 expansions, head and shortcuts.


def test_width_multiplier_rounds_channels():
    assert models.make_divisible(32 * 0.75) == 24
    assert models.make_divisible(16 * 0.25) == 8
    assert models.make_divisible(95) == 96
    shapes = _flat_shapes(_abstract_variables(models.create("mobilenet_v1", width=0.5))["params"])
    assert shapes["stem/conv/kernel"] == (3, 3, 3, 16)
    assert shapes["classifier/kernel"] == (512, 10)


# Forward contract -------------------------------------------------------------------------------


def test_init_forward():
    """The real initialisers (slow on CPU: the other tests fill variables with NumPy)."""
    name = "mobilenet_v2_tiny"
    model = models.create(name)
    x = _images()
    variables = jax.jit(functools.partial(model.init, train=False))(jax.random.key(0), x)
    chex.assert_trees_all_equal_shapes(variables, _tiny_variables(name))
    logits = _apply(model, variables, x, train=False)
    chex.assert_shape(logits, (2, 10))
    chex.assert_type(logits, jnp.float32)
    chex.assert_tree_all_finite(logits)


def test_num_classes():
    model = models.create("mobilenet_v2", num_classes=100)
    shapes = _flat_shapes(_abstract_variables(model)["params"])
    assert shapes["classifier/kernel"] == (1280, 100)
    out = jax.eval_shape(
        functools.partial(model.apply, train=False),
        _abstract_variables(model),
        jax.ShapeDtypeStruct(X_SHAPE, jnp.float32),
    )
    assert (out.shape, out.dtype) == ((2, 100), jnp.float32)


@pytest.mark.parametrize("name", ["mobilenet_v1_tiny", "mobilenet_v2_tiny"])
def test_forward_bf16_compute_gives_f32_logits(name):
    model = models.create(name, dtype=jnp.bfloat16)
    variables = _tiny_variables(name)  # float32 parameters (param_dtype), bfloat16 compute.
    x = _images(shape=(1, 32, 32, 3))
    logits, stats = _apply(model, variables, x, train=True)
    chex.assert_shape(logits, (1, 10))
    chex.assert_type(logits, jnp.float32)
    chex.assert_tree_all_finite(logits)
    chex.assert_trees_all_equal_dtypes(stats, variables["batch_stats"])
    reference, _ = _apply(models.create(name), variables, x, train=True)
    # bfloat16 keeps 8 bits of mantissa; errors compound over the tiny net's ~10 layers.
    scale = float(jnp.std(reference))
    chex.assert_trees_all_close(logits, reference, atol=0.1 * scale + 0.05)


def test_train_updates_batch_stats_eval_does_not(tiny_v2):
    model, variables = tiny_v2
    x = _images(seed=1)
    _, stats = _apply(model, variables, x, train=True)
    changed = jax.tree.map(lambda a, b: bool(jnp.any(a != b)), variables["batch_stats"], stats)
    assert all(jax.tree.leaves(changed))
    # Eval reads running statistics only: no mutable collection needed, output deterministic.
    a = _apply(model, variables, x, train=False)
    b = _apply(model, variables, x, train=False)
    np.testing.assert_array_equal(a, b)
    train_logits, _ = _apply(model, variables, x, train=True)
    assert not np.allclose(a, train_logits)


def test_axis_name_synchronises_batch_norm():
    """Two shards with `axis_name` normalise with the statistics of the whole batch."""
    name = "mobilenet_v2_tiny"
    variables, x = _tiny_variables(name), _images(seed=3, shape=(4, 32, 32, 3))
    expected, expected_stats = _apply(models.create(name), variables, x, train=True)
    model = models.create(name, axis_name="batch")
    fn = functools.partial(model.apply, train=True, mutable=["batch_stats"])
    sharded = jax.jit(jax.vmap(fn, in_axes=(None, 0), axis_name="batch"))
    logits, updates = sharded(variables, x.reshape(2, 2, 32, 32, 3))
    chex.assert_trees_all_close(logits.reshape(4, 10), expected, atol=1e-4, rtol=1e-4)
    shard0 = jax.tree.map(lambda a: a[0], updates["batch_stats"])
    chex.assert_trees_all_close(shard0, expected_stats, atol=1e-5, rtol=1e-5)


def test_dropout_needs_rng_only_in_train():
    model = models.create("mobilenet_v1_tiny", dropout=0.5)
    variables, x = _tiny_variables("mobilenet_v1_tiny"), _images()
    _apply(model, variables, x, train=False)
    with pytest.raises(Exception, match="dropout"):
        _apply(model, variables, x, train=True)

    @jax.jit
    def apply(key):
        return model.apply(
            variables, x, train=True, mutable=["batch_stats"], rngs={"dropout": key}
        )[0]

    assert not np.allclose(apply(jax.random.key(0)), apply(jax.random.key(1)))


def test_input_validation(tiny_v2):
    model, variables = tiny_v2
    with pytest.raises(ValueError, match=r"\(N, H, W, C\)"):
        model.apply(variables, jnp.ones((32, 32, 3)), train=False)
    with pytest.raises(TypeError, match="floating"):
        model.apply(variables, jnp.ones(X_SHAPE, jnp.uint8), train=False)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(conv="grouped"), "conv must be one of"),
        (dict(width=0.0), "width"),
        (dict(num_classes=0), "num_classes"),
        (dict(dropout=1.0), "dropout"),
        (dict(shortcut="none"), "shortcut must be one of"),
    ],
)
def test_field_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        models.MobileNetV2(**kwargs)
    if "shortcut" not in kwargs:
        with pytest.raises(ValueError, match=match):
            models.MobileNetV1(**kwargs)


# Registry ---------------------------------------------------------------------------------------


def test_registry_names_and_variants():
    names = models.list_models()
    for name in [
        "mobilenet_v1",
        "mobilenet_v2",
        "mobilenet_v1_full",
        "mobilenet_v2_full",
        "mobilenet_v2_nnx",
        "mobilenet_v1_tiny",
        "mobilenet_v2_tiny",
    ]:
        assert name in names
    assert names == sorted(names)
    assert models.create("mobilenet_v2_full").conv == "full"
    assert models.create("mobilenet_v1_full").conv == "full"
    tiny = models.create("mobilenet_v2_tiny", num_classes=3)
    assert (tiny.width, tiny.num_classes) == (0.25, 3)
    assert isinstance(models.create("mobilenet_v1"), models.MobileNetV1)


def test_registry_errors():
    with pytest.raises(ValueError, match="known models: .*mobilenet_v2"):
        models.create("resnet18")
    with pytest.raises(TypeError):
        models.create("mobilenet_v2", depth=3)
    with pytest.raises(TypeError, match="rngs"):
        models.create("mobilenet_v2_nnx")


# nnx build --------------------------------------------------------------------------------------


def test_nnx_param_count_matches_linen():
    for conv in ("separable", "full"):
        model = nnx.eval_shape(
            lambda c=conv: models.create("mobilenet_v2_nnx", conv=c, rngs=nnx.Rngs(0))
        )
        count = _count(nnx.state(model, nnx.Param))
        assert count == PARAM_COUNTS["mobilenet_v2" if conv == "separable" else "mobilenet_v2_full"]


def _abstract_nnx(conv):
    """A tiny nnx MobileNetV2 built without running its initialisers (see `load_linen`)."""
    return nnx.eval_shape(
        lambda: models.create("mobilenet_v2_tiny_nnx", conv=conv, rngs=nnx.Rngs(0))
    )


@pytest.mark.parametrize("conv", ["separable", "full"])
def test_nnx_matches_linen_on_same_variables(conv):
    name = "mobilenet_v2_tiny" if conv == "separable" else "mobilenet_v2_tiny_full"
    linen_model, variables = models.create(name), _tiny_variables(name)
    x = _images(seed=2)
    model = mobilenet_v2_nnx.load_linen(_abstract_nnx(conv), variables)

    model.eval()
    expected = _apply(linen_model, variables, x, train=False)
    chex.assert_trees_all_close(
        nnx.jit(lambda m, x: m(x))(model, x), expected, atol=1e-5, rtol=1e-5
    )
    model.train()
    expected, stats = _apply(linen_model, variables, x, train=True)
    chex.assert_trees_all_close(
        nnx.jit(lambda m, x: m(x))(model, x), expected, atol=1e-4, rtol=1e-4
    )
    # Both updated their running statistics the same way.
    nnx_stats = nnx.state(model, nnx.BatchStat)
    chex.assert_trees_all_close(
        nnx_stats["stem"]["norm"]["mean"][...], stats["stem"]["norm"]["mean"], atol=1e-5
    )


def test_nnx_load_rejects_other_config():
    with pytest.raises(ValueError, match="linen variables"):
        mobilenet_v2_nnx.load_linen(_abstract_nnx("full"), _tiny_variables("mobilenet_v2_tiny"))


def test_mobilenet_v1_runs_under_nnx_through_the_bridge():
    # MobileNetV1 has no nnx twin: Flax's bridge wraps the linen model (linen's paths and `train`).
    linen_model, variables = (
        models.create("mobilenet_v1_tiny"),
        _tiny_variables("mobilenet_v1_tiny"),
    )
    x = _images(seed=3)
    wrap = lambda: bridge.ToNNX(linen_model, rngs=nnx.Rngs(0))  # noqa: E731
    rngs = nnx.state(wrap())  # concrete rng state (the wrapper holds no variables before init)
    # The variables' structure without running the initialisers, then the linen values in.
    model = nnx.eval_shape(lambda: bridge.lazy_init(wrap(), x, train=False))
    graphdef, params, stats, _ = nnx.split(model, nnx.Param, nnx.BatchStat, ...)
    nnx.replace_by_pure_dict(params, variables["params"])
    nnx.replace_by_pure_dict(stats, variables["batch_stats"])
    model = nnx.merge(graphdef, params, stats, rngs)
    expected = _apply(linen_model, variables, x, train=False)
    y = nnx.jit(lambda m, x: m(x, train=False))(model, x)
    chex.assert_trees_all_close(y, expected, atol=1e-5, rtol=1e-5)
    expected, expected_stats = _apply(linen_model, variables, x, train=True)
    y = nnx.jit(lambda m, x: m(x, train=True, mutable=["batch_stats"]))(model, x)
    chex.assert_trees_all_close(y, expected, atol=1e-4, rtol=1e-4)
    stats = nnx.to_pure_dict(nnx.state(model, nnx.BatchStat))
    chex.assert_trees_all_close(stats, expected_stats, atol=1e-5, rtol=1e-5)
