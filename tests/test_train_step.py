"""Tests for the train step, its drivers and the optimizer: driver agreement, no retracing, overfit."""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.sharding import PartitionSpec as P

from sepconv_jax import models
from train import optim, parallel, step

NUM_CLASSES = 10
IMAGE = (8, 8, 3)  # the tiny nets run on 8×8 inputs: compile time, not FLOPs, dominates on CPU
BATCH = 16


def _batches(n: int, seed: int = 0) -> list[dict[str, np.ndarray]]:
    """Raw uint8 batches, as `data.train_batches` yields them."""
    rs = np.random.RandomState(seed)
    return [
        {
            "image": rs.randint(0, 256, (BATCH, *IMAGE)).astype(np.uint8),
            "label": rs.randint(0, NUM_CLASSES, BATCH).astype(np.int32),
        }
        for _ in range(n)
    ]


def _setup(
    kind: str,
    devices,
    model_name="mobilenet_v1_tiny",
    conv="separable",
    lr=0.1,
    wrap=None,
    augment=True,
):
    schedule = optim.learning_rate_schedule(lr, total_steps=10, warmup_steps=1)
    tx = optim.create_optimizer("sgd", schedule, momentum=0.9, weight_decay=5e-3)
    name = model_name if conv == "separable" else f"{model_name}_full"  # the name fixes conv
    model = models.create(name, num_classes=NUM_CLASSES, axis_name=parallel.axis_name_for(kind))
    train_step = functools.partial(
        step.train_step,
        model=model,
        tx=tx,
        learning_rate_fn=schedule,
        num_classes=NUM_CLASSES,
        label_smoothing=0.1,
        augment=augment,
    )
    if wrap is not None:
        train_step = wrap(train_step)
    eval_step = functools.partial(step.eval_step, model=model, num_classes=NUM_CLASSES)
    driver = parallel.make_driver(kind, train_step, eval_step, devices)
    state = step.create_train_state(model, tx, seed=0, image_shape=IMAGE)
    return driver, driver.put_state(state)


def _run(driver, state, batches):
    for batch in batches:
        state, metrics = driver.train_step(state, driver.put_batch(batch))
    return jax.device_get(driver.get_state(state)), jax.device_get(driver.get_metrics(metrics))


def test_drivers_agree_with_one_device_on_the_global_batch():
    """shard_map (8 and 1 devices) and pmap (8) give the plain single-device jit's state.

    With on-device augmentation: each example's crop and flip depend on its index in the global
    batch, not on the device holding it. BatchNorm is synchronised over the data axis, so every
    driver computes the same function of the global batch; only float32 summation order
    differs. Tolerance after 3 SGD steps: rtol 1e-4, atol 1e-5 on params, batch_stats and
    optimizer state (measured: < 5e-6).
    """
    batches = _batches(3)
    devices = jax.devices()
    assert len(devices) == 8, "tests/conftest.py simulates 8 CPU devices"
    driver, state = _setup("jit", devices[:1])
    initial = jax.device_get(state)  # before the steps donate it
    reference, ref_metrics = _run(driver, state, batches)
    for kind, n in (("shard_map", 8), ("shard_map", 1), ("pmap", 8)):
        state, metrics = _run(*_setup(kind, devices[:n]), batches)
        chex.assert_trees_all_close(state.params, reference.params, rtol=1e-4, atol=1e-5)
        chex.assert_trees_all_close(state.batch_stats, reference.batch_stats, rtol=1e-4, atol=1e-5)
        chex.assert_trees_all_close(state.opt_state, reference.opt_state, rtol=1e-4, atol=1e-5)
        chex.assert_trees_all_close(metrics, ref_metrics, rtol=1e-4, atol=1e-5)
        assert int(state.step) == 3
    # The state moved: the comparison is not between two copies of the initial state.
    delta = jax.tree.map(lambda a, b: np.max(np.abs(a - b)), reference.params, initial.params)
    assert max(jax.tree.leaves(delta)) > 1e-3


def test_step_input_is_the_global_batch_augmented_per_example():
    """Each device's shard gets the crops of its examples' global indices; eval normalises.

    The step's model input under shard_map over 4 devices equals `augment.augment` of the whole
    batch with the step's key (up to a fused multiply-add's rounding).
    """
    from train import augment

    images = _batches(1, seed=3)[0]["image"]
    mesh = jax.sharding.Mesh(np.asarray(jax.devices()[:4]), ("data",))
    key = step.augment_key(jax.random.PRNGKey(0), jnp.int32(3))

    def shard(x):
        return step.prepare_images(x, augment=True, key=key, axis_name="data")

    got = jax.jit(parallel.shard_map(shard, mesh, in_specs=P("data"), out_specs=P("data")))(images)
    want = augment.augment(jnp.asarray(images), key)
    # atol: jit may fuse normalisation's multiply-add (1 ulp); a wrong crop is off by >= 0.015.
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=0, atol=1e-6)
    assert not np.array_equal(np.asarray(want), np.asarray(augment.normalize(images)))
    plain = step.prepare_images(jnp.asarray(images), augment=False)
    np.testing.assert_allclose(np.asarray(plain), augment.normalize(images), rtol=0, atol=1e-6)
    with pytest.raises(TypeError, match="images must be uint8"):
        step.prepare_images(jnp.zeros((2, *IMAGE), jnp.float32), augment=False)


def test_shard_map_step_traces_once():
    """No retracing per step: the donated state comes back with the same layout it went in."""

    def counted(train_step):
        @chex.assert_max_traces(n=1)
        def traced(state, batch, *, axis_name):
            return train_step(state, batch, axis_name=axis_name)

        return traced

    driver, state = _setup("shard_map", jax.devices()[:2], wrap=counted)
    for batch in _batches(3):
        state, _ = driver.train_step(state, driver.put_batch(batch))
    jax.block_until_ready(state)


@pytest.mark.parametrize("conv", ["separable", "full"])
def test_loss_decreases_on_a_fixed_batch(conv):
    """Both the separable net and its full-conv twin overfit one batch (no augmentation)."""
    driver, state = _setup("jit", jax.devices()[:1], conv=conv, lr=0.05, augment=False)
    batch = driver.put_batch(_batches(1, seed=1)[0])
    losses = []
    for _ in range(12):
        state, metrics = driver.train_step(state, batch)
        losses.append(float(metrics["loss"]))
    assert np.all(np.isfinite(losses))
    assert losses[-1] < 0.6 * losses[0], losses


def test_eval_step_masks_padding():
    """Masked rows do not count even when the model predicts them right.

    The masked rows' labels are set to the model's own predictions (all "correct"), the real
    rows' to the first class the model does *not* predict (all wrong): any masked row counted
    makes `correct` non-zero. Loss sums equal the real rows' alone (float32, rtol 1e-5).
    """
    driver, state = _setup("shard_map", jax.devices()[:4])
    batch = _batches(1, seed=2)[0]
    ref_driver, ref_state = _setup("jit", jax.devices()[:1])
    variables = {"params": ref_state.params, "batch_stats": ref_state.batch_stats}
    model = models.create("mobilenet_v1_tiny", num_classes=NUM_CLASSES)
    logits = model.apply(variables, step.prepare_images(batch["image"], augment=False), train=False)
    predicted = np.asarray(jnp.argmax(logits, axis=-1), np.int32)
    real = 11
    mask = np.arange(BATCH) < real
    labels = np.where(mask, (predicted + 1) % NUM_CLASSES, predicted).astype(np.int32)
    batch = {**batch, "label": labels, "mask": mask}
    full = jax.device_get(driver.eval_step(state, driver.put_batch(batch)))
    assert float(full["count"]) == real
    assert float(full["correct"]) == 0.0  # 5 masked rows predicted right, none counted
    unmasked = jax.device_get(ref_driver.eval_step(ref_state, {**batch, "mask": np.ones(BATCH)}))
    assert float(unmasked["correct"]) == BATCH - real  # the planted rows are right indeed
    alone = {k: v[:real] for k, v in batch.items()}
    alone = jax.device_get(ref_driver.eval_step(ref_state, {**alone, "mask": np.ones(real)}))
    np.testing.assert_allclose(float(full["loss"]), float(alone["loss"]), rtol=1e-5)


def test_learning_rate_schedule():
    lr = optim.learning_rate_schedule(0.4, total_steps=100, warmup_steps=10)
    np.testing.assert_allclose(
        [float(lr(s)) for s in (0, 5, 10, 55, 100, 200)], [0.0, 0.2, 0.4, 0.2, 0.0, 0.0], atol=1e-6
    )
    no_warmup = optim.learning_rate_schedule(0.4, total_steps=100, warmup_steps=0)
    np.testing.assert_allclose(float(no_warmup(0)), 0.4, rtol=1e-6)
    assert optim.peak_learning_rate(0.4, 1024, 512) == pytest.approx(0.8)


def test_weight_decay_skips_batchnorm_and_biases():
    """With a zero gradient, only kernels (rank > 1) shrink, by lr * weight_decay.

    Standard promotion: optax's AdamW bias correction mixes its int32 count with a float, which
    the tests' strict promotion rejects (the trainer runs with JAX's default, standard).
    """
    params = {
        "conv": {"kernel": jnp.full((3, 3, 1, 4), 2.0)},
        "norm": {"scale": jnp.full((4,), 2.0), "bias": jnp.full((4,), 2.0)},
        "dense": {"kernel": jnp.full((4, 2), 2.0), "bias": jnp.full((2,), 2.0)},
    }
    for name in optim.OPTIMIZERS:
        tx = optim.create_optimizer(name, optax.constant_schedule(0.5), weight_decay=0.1)
        grads = jax.tree.map(jnp.zeros_like, params)
        with jax.numpy_dtype_promotion("standard"):
            updates, _ = tx.update(grads, tx.init(params), params)
        new = optax.apply_updates(params, updates)
        np.testing.assert_allclose(new["conv"]["kernel"], 2.0 * (1 - 0.5 * 0.1), rtol=1e-6)
        np.testing.assert_allclose(new["dense"]["kernel"], 2.0 * (1 - 0.5 * 0.1), rtol=1e-6)
        for leaf in (new["norm"]["scale"], new["norm"]["bias"], new["dense"]["bias"]):
            np.testing.assert_array_equal(leaf, 2.0)


def test_bad_names_raise():
    with pytest.raises(ValueError, match="config.optimizer must be one of"):
        optim.create_optimizer("lamb", optax.constant_schedule(0.1))
    with pytest.raises(ValueError, match="config.parallel must be one of"):
        parallel.make_driver("dp", lambda *a, **k: None, lambda *a, **k: None)
