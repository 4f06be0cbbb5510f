"""A seconds-long CPU config for tests and smoke runs: the tiny MobileNetV2, float32, small batches.

Command (on a tiny dataset, e.g. the one tests/test_train_cli.py writes):
  python -m train --config=train/configs/tiny.py --workdir=/tmp/tiny --config.data_dir=DIR

Result: a smoke test, not a benchmark (accuracy is meaningless on a few dozen images).
"""

import ml_collections

from train.configs import default


def get_config() -> ml_collections.ConfigDict:
    """Returns the tiny config."""
    config = default.get_config()
    config.model = "mobilenet_v2_tiny"
    config.batch_size = 16
    config.eval_batch_size = 16
    config.num_epochs = 2
    config.learning_rate = 0.1
    config.lr_reference_batch_size = 16
    config.warmup_epochs = 0.5
    config.dtype = "float32"
    config.checkpoint_every_steps = 2
    config.log_every_steps = 1
    config.async_checkpointing = False
    return config
