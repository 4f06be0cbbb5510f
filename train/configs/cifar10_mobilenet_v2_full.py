"""MobileNetV2's full-conv twin (9,924,026 params) on CIFAR-10, same recipe as the separable net.

Every depthwise K×K → pointwise 1×1 pair becomes one full K×K conv; everything else is kept.

Command:
  python -m train --config=train/configs/cifar10_mobilenet_v2_full.py --workdir=workdirs/mnv2_full \
      --config.data_dir=/tmp/tfds_cifar

Result: not measured at the default 15 epochs. With `--config.num_epochs=30` on one H100
(2026-11-25, CIFAR-10 JPEG q75 copy): 87.64 % test accuracy, 12.9 ms/step at batch 512
(benchmarks/results/cifar10.md, which has the exact commands).
"""

import ml_collections

from train.configs import cifar10_mobilenet_v2


def get_config() -> ml_collections.ConfigDict:
    """Returns the MobileNetV2 full-conv twin CIFAR-10 config."""
    config = cifar10_mobilenet_v2.get_config()
    config.model = "mobilenet_v2_full"
    return config
