"""MobileNetV1 (separable) on CIFAR-10, 15 epochs of the recipe in `default.py`.

Command:
  python -m train --config=train/configs/cifar10_mobilenet_v1.py --workdir=workdirs/mnv1 \
      --config.data_dir=/tmp/tfds_cifar

Result: not yet measured (to be filled in from a measured run: test accuracy, wall time, machine).
"""

import ml_collections

from train.configs import default


def get_config() -> ml_collections.ConfigDict:
    """Returns the MobileNetV1 CIFAR-10 config."""
    config = default.get_config()
    config.model = "mobilenet_v1"
    return config
