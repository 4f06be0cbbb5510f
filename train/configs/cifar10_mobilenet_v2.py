"""MobileNetV2 (separable, 2,296,922 params) on CIFAR-10, 15 epochs of the recipe in `default.py`.

Command:
  python -m train --config=train/configs/cifar10_mobilenet_v2.py --workdir=workdirs/mnv2 \
      --config.data_dir=/tmp/tfds_cifar

Result: not measured at the default 15 epochs. With `--config.num_epochs=30` on one H100
(2026-11-25, CIFAR-10 JPEG q75 copy): 88.82 % test accuracy, 16.8 ms/step at batch 512
(benchmarks/results/cifar10.md, which has the exact commands).
"""

import ml_collections

from train.configs import default


def get_config() -> ml_collections.ConfigDict:
    """Returns the MobileNetV2 CIFAR-10 config."""
    config = default.get_config()
    config.model = "mobilenet_v2"
    return config
