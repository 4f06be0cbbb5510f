"""Tests for train/setup.py: the config reaches the model, loss and schedule; names are checked."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from sepconv_jax import models
from train import optim, setup
from train.configs import cifar10_quick, tiny

IMAGE = (8, 8, 3)  # the tiny nets on 8×8 inputs: compile time, not FLOPs, dominates on CPU
BATCH = 16


def _config(**overrides):
    config = tiny.get_config()
    config.update(
        dict(model="mobilenet_v1_tiny", parallel="jit", augment=False, data_dir="unused"),
    )
    config.update(overrides)
    return config


def _batch(seed=0):
    rng = np.random.default_rng(seed)
    return {
        "image": rng.integers(0, 256, (BATCH, *IMAGE), np.uint8),
        "label": rng.integers(0, 10, BATCH).astype(np.int32),
    }


def _forward(model, state, images):
    """Train-mode logits and BatchNorm statistics of the step's input (normalised uint8)."""
    from train import augment

    variables = {"params": state.params, "batch_stats": state.batch_stats}
    return model.apply(
        variables, augment.normalize(jnp.asarray(images)), train=True, mutable=["batch_stats"]
    )


def test_label_smoothing_and_bn_momentum_of_the_config_reach_the_step():
    """One step built from a config with `label_smoothing=0.3` and `bn_momentum=0.5`:

    - the logged loss is optax's cross-entropy against labels smoothed by 0.3, on the same
      logits (float32, rtol 1e-5: summation order); the unsmoothed loss differs by > 0.05, so
      a step ignoring the smoothing fails;
    - the new BatchNorm statistics are `0.5 * old + 0.5 * batch` (a model built with 0.5, same
      input, rtol 1e-5), not what the model's default momentum 0.9 gives.
    """
    config = _config(label_smoothing=0.3, bn_momentum=0.5)
    built = setup.build(config, jax.devices()[:1], steps_per_epoch=4, image_shape=IMAGE)
    batch = _batch()
    logits, _ = _forward(built.model, built.state, batch["image"])
    stats = {}
    for momentum in (0.5, 0.9):
        model = models.create("mobilenet_v1_tiny", num_classes=10, bn_momentum=momentum)
        _, updates = _forward(model, built.state, batch["image"])
        stats[momentum] = jax.tree.leaves(jax.device_get(updates["batch_stats"]))
    onehot = jax.nn.one_hot(batch["label"], 10, dtype=jnp.float32)
    smoothed = optax.softmax_cross_entropy(logits, optax.smooth_labels(onehot, 0.3)).mean()
    plain = optax.softmax_cross_entropy(logits, onehot).mean()

    driver = built.driver
    new_state, metrics = driver.train_step(driver.put_state(built.state), driver.put_batch(batch))
    np.testing.assert_allclose(float(metrics["loss"]), float(smoothed), rtol=1e-5)
    assert abs(float(plain) - float(smoothed)) > 0.05
    got = jax.tree.leaves(jax.device_get(new_state.batch_stats))
    for momentum, close in ((0.5, True), (0.9, False)):
        agree = all(np.allclose(g, w, rtol=1e-5, atol=1e-6) for g, w in zip(got, stats[momentum]))
        assert agree == close, momentum


def test_model_name_fixes_conv_and_a_contradiction_is_an_error():
    """`mobilenet_v2_tiny_full` is the full twin with `config.conv` unset; a contradicting conv
    raises rather than silently building the other net."""
    assert setup.create_model(_config(model="mobilenet_v2_tiny_full"), None).conv == "full"
    assert setup.create_model(_config(model="mobilenet_v2_tiny"), None).conv == "separable"
    assert setup.create_model(_config(model="mobilenet_v2_full", conv="full"), None).conv == "full"
    with pytest.raises(setup.ConfigError, match="has conv='full'; got conv='separable'"):
        setup.create_model(_config(model="mobilenet_v2_tiny_full", conv="separable"), None)
    with pytest.raises(ValueError, match="use 'mobilenet_v2'"):
        models.create("mobilenet_v2_full", conv="separable")
    with pytest.raises(ValueError, match="use 'mobilenet_v2_full'"):
        models.create("mobilenet_v2", conv="full")
    with pytest.raises(TypeError, match="its fields are: .*bn_momentum.*width"):
        models.create("mobilenet_v2", widht=0.5)


def test_quick_config_warms_up_gently_and_anneals_to_zero_at_its_last_step():
    """The README's smoke run: its schedule ends with its steps (lr ~0 at the last one), the
    peak is reached after a warm-up, and the docstring's step count is the real one."""
    config = cifar10_quick.get_config()
    steps_per_epoch = 50_000 // config.batch_size
    total = round(config.num_epochs * steps_per_epoch)
    assert config.max_steps == 0 or config.max_steps >= total
    assert f"{total} steps" in cifar10_quick.__doc__
    schedule = optim.learning_rate_schedule(
        optim.peak_learning_rate(
            config.learning_rate, config.batch_size, config.lr_reference_batch_size
        ),
        total_steps=total,
        warmup_steps=round(config.warmup_epochs * steps_per_epoch),
    )
    lrs = np.asarray([float(schedule(s)) for s in range(total)])
    assert lrs[-1] < 0.01 * lrs.max()
    assert np.argmax(lrs) >= 0.1 * total
