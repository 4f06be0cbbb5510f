"""`sepconv_jax.interop.from_keras` against Keras 3's own `keras.applications` outputs.

Every Keras variable (kernels, biases, BN γ/β/mean/variance) is randomised first, so that no
branch hides behind identity statistics. Keras runs on its JAX backend with the suite's strict
rank promotion relaxed for the Keras call only.
"""

import os

os.environ.setdefault("KERAS_BACKEND", "jax")

import jax  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from flax import traverse_util  # noqa: E402

keras = pytest.importorskip("keras")
if keras.backend.backend() != "jax":
    pytest.skip("Keras must run on its JAX backend here", allow_module_level=True)

from sepconv_jax import models  # noqa: E402
from sepconv_jax.interop import fold_batchnorm, from_keras, from_keras_weights  # noqa: E402

#: float32 logits agree to this fraction of their largest magnitude.
RTOL = 1e-4


def randomise(model: "keras.Model", seed: int) -> None:
    """Sets every Keras variable to fresh random values (variances positive)."""
    rng = np.random.default_rng(seed)
    for w in model.weights:
        name, shape = w.path.split("/")[-1], tuple(w.shape)
        if name == "count":
            continue
        if name in ("moving_variance", "variance"):
            value = rng.uniform(0.5, 2.0, shape)
        elif name == "gamma":
            value = rng.uniform(0.5, 1.5, shape)
        elif len(shape) > 1:
            value = rng.normal(0.0, 1.0 / np.sqrt(np.prod(shape[:-1])), shape)
        else:
            value = rng.normal(0.0, 0.5, shape)
        w.assign(value.astype("float32"))


def keras_output(model: "keras.Model", x: np.ndarray) -> np.ndarray:
    with jax.numpy_rank_promotion("allow"), jax.numpy_dtype_promotion("standard"):
        return np.asarray(model(x, training=False))


def ours(module, variables, x: np.ndarray) -> np.ndarray:
    return np.asarray(jax.jit(lambda v, x: module.apply(v, x, train=False))(variables, x))


#: name → (Keras constructor, kwargs, input size, input range)
CASES = {
    "mobilenet_v2_1.0": ("MobileNetV2", dict(alpha=1.0, classifier_activation=None), 64, 1.0),
    "mobilenet_v2_0.35_notop": (
        "MobileNetV2",
        dict(alpha=0.35, include_top=False, pooling="avg"),
        32,
        1.0,
    ),
    "mobilenet_v3_small": ("MobileNetV3Small", dict(), 64, 255.0),
    "mobilenet_v3_large": ("MobileNetV3Large", dict(classifier_activation=None), 64, 255.0),
    "efficientnet_b0": ("EfficientNetB0", dict(classifier_activation=None), 64, 255.0),
    "convnext_tiny": ("ConvNeXtTiny", dict(classifier_activation=None), 64, 255.0),
}


@pytest.fixture(scope="module")
def keras_models():
    """Built Keras models by case, created on first use and shared by the module's tests."""
    cache = {}

    def get(case):
        if case not in cache:
            ctor, kwargs, size, _ = CASES[case]
            with jax.numpy_rank_promotion("allow"), jax.numpy_dtype_promotion("standard"):
                model = getattr(keras.applications, ctor)(
                    weights=None, input_shape=(size, size, 3), **kwargs
                )
            randomise(model, seed=len(cache))
            cache[case] = model
        return cache[case]

    return get


@pytest.mark.parametrize("case", sorted(CASES))
def test_logits_equal_keras(case, keras_models):
    model = keras_models(case)
    _, _, size, scale = CASES[case]
    x = np.random.default_rng(1).uniform(0, scale, (2, size, size, 3)).astype("float32")
    ref = keras_output(model, x)
    module, variables = from_keras(model)
    out = ours(module, variables, x)
    assert out.shape == ref.shape
    err = np.abs(out - ref).max() / np.abs(ref).max()
    assert err <= RTOL, f"{case}: max |Δ| = {err:.2e} of the output scale"


def test_from_keras_fields(keras_models):
    module, variables = from_keras(keras_models("mobilenet_v3_small"))
    assert (module.variant, module.width, module.classifier_activation) == ("small", 1.0, "softmax")
    assert module.preprocessing == (("rescale", pytest.approx(1 / 127.5), -1.0),)
    module, _ = from_keras(keras_models("mobilenet_v2_0.35_notop"))
    assert (module.width, module.include_top, module.pooling) == (0.35, False, "avg")


def test_fold_batchnorm_of_imported_net(keras_models):
    model = keras_models("mobilenet_v3_small")
    module, variables = from_keras(model)
    folded, folded_vars = fold_batchnorm(module, variables)
    assert "batch_stats" not in folded_vars
    x = np.random.default_rng(2).uniform(0, 255, (2, 64, 64, 3)).astype("float32")
    ref = keras_output(model, x)
    out = ours(folded, folded_vars, x)
    assert np.abs(out - ref).max() / np.abs(ref).max() <= RTOL


def _lookalike(filters: int) -> "keras.Model":
    """A Keras model named like a MobileNetV2 but far too small: every block is missing."""
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.Conv2D(filters, 3, strides=2, padding="same", use_bias=False, name="Conv1")(
        inputs
    )
    x = keras.layers.BatchNormalization(name="bn_Conv1")(x)
    x = keras.layers.DepthwiseConv2D(3, padding="same", name="expanded_conv_depthwise")(x)
    return keras.Model(inputs, x, name="lookalike")


def test_other_architecture_raises():
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.Conv2D(4, 3, name="conv1_conv")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(3, name="fc")(x), name="resnetish")
    with pytest.raises(ValueError, match=r"'resnetish'.*\['input_layer.*conv1_conv"):
        from_keras(model)


def test_mismatching_weights_list_the_layers():
    with pytest.raises(ValueError, match=r"does not match.*first mismatches:[\s\S]*block_1_expand"):
        from_keras(_lookalike(8))


def test_unknown_model_raises():
    with pytest.raises(ValueError, match="unknown model 'mobilenet_v9'"):
        models.create("mobilenet_v9")


@pytest.mark.parametrize(
    "case, fields",
    [
        ("mobilenet_v3_small", dict(classifier_activation="softmax")),
        # Nested `Sequential` stem and downsampling blocks, layer scale, a `Dense` head.
        ("convnext_tiny", dict(classifier_activation=None)),
    ],
)
def test_from_keras_weights_file_equals_from_keras(case, fields, keras_models, tmp_path):
    model = keras_models(case)
    path = str(tmp_path / f"{case}.weights.h5")
    with jax.numpy_rank_promotion("allow"), jax.numpy_dtype_promotion("standard"):
        model.save_weights(path)
    expected_module, expected = from_keras(model)
    module, variables = from_keras_weights(case, path, **fields)
    # The file holds no preprocessing constants here: every other field is the model's.
    assert module.clone(preprocessing=()) == expected_module.clone(preprocessing=())
    flat, want = (traverse_util.flatten_dict(v) for v in (variables, expected))
    assert flat.keys() == want.keys()
    for key in want:
        np.testing.assert_array_equal(flat[key], want[key], err_msg="/".join(key))


def test_from_keras_weights_mismatch_raises(keras_models, tmp_path):
    path = str(tmp_path / "v3.weights.h5")
    with jax.numpy_rank_promotion("allow"), jax.numpy_dtype_promotion("standard"):
        keras_models("mobilenet_v3_small").save_weights(path)
    with pytest.raises(ValueError, match=r"does not fit mobilenet_v3_large.*first mismatches"):
        from_keras_weights("mobilenet_v3_large", path)
    with pytest.raises(
        ValueError, match=r"does not fit convnext_tiny[\s\S]*convnext_tiny_stem_conv"
    ):
        from_keras_weights("convnext_tiny", path)
    with pytest.raises(ValueError, match="no Keras weights-file layout for 'mobilenet_v2'"):
        from_keras_weights("mobilenet_v2", path)
