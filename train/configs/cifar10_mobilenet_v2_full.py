"""MobileNetV2's full-conv twin (9,924,026 params) on CIFAR-10, same recipe as the separable net.

Every depthwise K×K → pointwise 1×1 pair becomes one full K×K conv; everything else is kept.

Command:
  python -m train --config=train/configs/cifar10_mobilenet_v2_full.py --workdir=workdirs/mnv2_full \
      --config.data_dir=/tmp/tfds_cifar

Result: not yet measured (to be filled in from a measured run: test accuracy, wall time, machine).
"""

import ml_collections

from train.configs import cifar10_mobilenet_v2


def get_config() -> ml_collections.ConfigDict:
    """Returns the MobileNetV2 full-conv twin CIFAR-10 config."""
    config = cifar10_mobilenet_v2.get_config()
    config.conv = "full"
    return config
