"""A short CIFAR-10 run that finishes in minutes on a CPU: the tiny MobileNetV2, half an epoch.

The README's main command runs it (`scripts/quickstart.sh`). Width 0.25, one block per stage
(175,050 parameters, 5.3 M multiply-adds per image), float32, batch 128: 195 steps (half an
epoch of 390), the whole schedule in them (a 58-step linear warm-up to lr 0.05, cosine to 0 at
the last step), evaluated on the whole test split every 39 steps.

Command:
  python -m train --config=train/configs/cifar10_quick.py --workdir=workdirs/quick \
      --config.data_dir=workdirs/tfds

Result: about 40 % test accuracy on CIFAR-10 (the README gives the measured figure, the command
and the machine). A smoke run that shows the loop learns, not a benchmark; on a GPU use
`cifar10_mobilenet_v2.py`.
"""

import ml_collections

from train.configs import default


def get_config() -> ml_collections.ConfigDict:
    """Returns the quick config."""
    config = default.get_config()
    config.model = "mobilenet_v2_tiny"
    config.batch_size = 128
    config.num_epochs = 0.5
    config.learning_rate = 0.2  # peak 0.05 at batch 128 (linear scaling from batch 512)
    config.warmup_epochs = 0.15
    config.eval_every_epochs = 0.1
    config.dtype = "float32"  # XLA on CPU runs bfloat16 grouped convs slowly
    config.checkpoint_every_steps = 100
    config.log_every_steps = 13
    return config
