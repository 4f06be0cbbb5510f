"""A short CIFAR-10 run that finishes in minutes on a CPU: the tiny MobileNetV2, one epoch.

The README's main command runs it (`scripts/quickstart.sh`). Width 0.25, one block per stage
(175,050 parameters, 5.3 M multiply-adds per image), float32, batch 128, 200 steps of the
recipe's schedule (a quarter-epoch warm-up, cosine over the epoch), then the whole test split.

Command:
  python -m train --config=train/configs/cifar10_quick.py --workdir=workdirs/quick \
      --config.data_dir=workdirs/tfds

Result (2026-11-25, `bash scripts/quickstart.sh ../shared/data/cifar10-jpeg.tar.gz` on a 2-core
CPU that was also running the test suite): 40.06 % test accuracy on CIFAR-10 (JPEG q75 copy) after
200 steps; ~1 s/step unloaded (~2 s loaded), 8.5 min for the whole command including setup and
data preparation. Again on an idle CPU (packages installed): 0.82 s/step, 4.1 min, 40.06 %.
A smoke run that shows the loop learns, not a benchmark; on a GPU use `cifar10_mobilenet_v2.py`.
"""

import ml_collections

from train.configs import default


def get_config() -> ml_collections.ConfigDict:
    """Returns the quick config."""
    config = default.get_config()
    config.model = "mobilenet_v2_tiny"
    config.batch_size = 128
    config.num_epochs = 1
    config.max_steps = 200
    config.warmup_epochs = 0.25
    config.dtype = "float32"  # XLA on CPU runs bfloat16 grouped convs slowly
    config.checkpoint_every_steps = 100
    config.log_every_steps = 20
    return config
