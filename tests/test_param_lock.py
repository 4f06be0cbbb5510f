"""Today's models against the committed parameter lock (tests/data/, see make_param_lock.py).

Every registered model's variable tree (paths, shapes, dtypes; nnx variable types), the tiny
variants' init values at a fixed seed, and a train-state checkpoint written by `train.checkpoint`
when the lock was made, restored into today's model by the same module. The lock was written by
earlier code, so a refactor is checked against what checkpoints hold, not against itself.
A deliberate change is re-locked with `python -m tests.make_param_lock`.

Init values are compared by checksum with float32 tolerances (another XLA build may round an
initialiser's last bit differently; another seed or initialiser changes every value): sampled
values rel. 1e-6, the sum of squares rel. 1e-5, the sum within 1e-6 of its scale.
"""

from __future__ import annotations

import json
import shutil

import jax
import make_param_lock as lock_lib  # noqa: I001 - the tests' own helper module
import numpy as np
import pytest
from jax.sharding import SingleDeviceSharding

from sepconv_jax import models
from train import checkpoint

LOCK = json.loads(lock_lib.LOCK.read_text())
#: The models whose init values are locked (the tiny test variants: see MAX_VALUE_LOCKED).
TINY = sorted(n for n, tree in LOCK["models"].items() if "init" in next(iter(tree.values())))


def test_registry_matches_lock():
    assert models.list_models() == sorted(LOCK["models"])
    assert "mobilenet_v2_tiny" in TINY and "mobilenet_v2_tiny_nnx" in TINY


def _check_init(path, value, want):
    got = lock_lib.checksum(value)
    np.testing.assert_allclose(got["sample"], want["sample"], rtol=1e-6, atol=1e-7, err_msg=path)
    np.testing.assert_allclose(got["sumsq"], want["sumsq"], rtol=1e-5, err_msg=path)
    assert abs(got["sum"] - want["sum"]) <= 1e-6 * np.sqrt(value.size * want["sumsq"]), path


@pytest.mark.parametrize("name", sorted(LOCK["models"]))
def test_model_matches_lock(name):
    """Paths, shapes, dtypes (and nnx variable types); for the tiny variants the init values."""
    locked = LOCK["models"][name]
    tree = lock_lib.variables(name, concrete=name in TINY)
    assert sorted(set(locked) - set(tree)) == [], "leaves missing from today's model"
    assert sorted(set(tree) - set(locked)) == [], "leaves the lock does not have"
    for path, (kind, leaf) in tree.items():
        expected = {k: v for k, v in locked[path].items() if k != "init"}
        assert lock_lib.describe(kind, leaf) == expected, path
        if name in TINY:
            _check_init(path, leaf, locked[path]["init"])


def test_checkpoint_restores_into_todays_model(tmp_path):
    locked = LOCK["checkpoint"]
    shutil.copytree(lock_lib.CHECKPOINT, tmp_path / "checkpoints")  # orbax may tidy its directory
    ckpts = checkpoint.Checkpoints(tmp_path / "checkpoints", keep=1, async_save=False)
    try:
        assert ckpts.latest_step() == locked["step"]
        # The structure the trainer restores into (train.setup.build's state), on one device.
        device = jax.local_devices()[0]
        target = jax.tree.map(
            lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=SingleDeviceSharding(device)),
            jax.eval_shape(lock_lib.train_state_template),
        )
        state, meta = ckpts.restore(locked["step"], target)
    finally:
        ckpts.close()
    assert meta == locked["meta"]
    assert lock_lib.checkpoint_leaves(state) == locked["leaves"]
