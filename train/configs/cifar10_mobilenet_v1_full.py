"""MobileNetV1's full-conv twin on CIFAR-10, same recipe as the separable net.

Every depthwise 3×3 → pointwise 1×1 block becomes one full 3×3 conv → BN → ReLU.

Command:
  python -m train --config=train/configs/cifar10_mobilenet_v1_full.py --workdir=workdirs/mnv1_full \
      --config.data_dir=/tmp/tfds_cifar

Result: not yet measured (to be filled in from a measured run: test accuracy, wall time, machine).
"""

import ml_collections

from train.configs import cifar10_mobilenet_v1


def get_config() -> ml_collections.ConfigDict:
    """Returns the MobileNetV1 full-conv twin CIFAR-10 config."""
    config = cifar10_mobilenet_v1.get_config()
    config.model = "mobilenet_v1_full"
    return config
