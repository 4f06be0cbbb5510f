"""Default training config: every key `train_and_evaluate` reads, with the CIFAR recipe's values.

Not a run on its own (no data_dir); the `cifar10_*` files import it and override a few fields.

Recipe: batch 512, SGD Nesterov 0.9, lr 0.4 at batch 512 with a 1-epoch linear warm-up
then cosine to 0, label smoothing 0.1, pad-4 random crop + flip, bfloat16 compute with float32
parameters and optimizer state, BatchNorm momentum 0.9 (Flax's default 0.99 lags at this lr).

Weight decay is *decoupled* (SGDW / AdamW: `p -= lr_t * weight_decay * p`, outside the momentum),
off BatchNorm scales/biases and all biases (only kernels of rank > 1 decay). PyTorch's SGD
`weight_decay=5e-4` is coupled (added to the gradient, then through momentum 0.9), which at steady
state shrinks weights 1 / (1 - 0.9) = 10× more per step: the equivalent decoupled value is 5e-3.

Learning rate scaling (linear rule, Goyal et al. 2017): the peak lr is
`learning_rate * batch_size / lr_reference_batch_size`, so `learning_rate` is the lr at batch 512.
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
    """Returns the default config (MobileNetV2, separable, the recipe above)."""
    config = ml_collections.ConfigDict()
    # Model (resolved by `sepconv_jax.models.create`).
    config.model = "mobilenet_v2"  # the `*_full` names are the full-conv twins
    # Unset: the model name's own. When set ("separable" | "full"), it must agree with the name
    # (`mobilenet_v2_full` is the full twin; a contradiction is an error, not an override).
    config.conv = ml_collections.config_dict.placeholder(str)
    # Width multiplier; None keeps the registry variant's own (1.0, or 0.25 for the *_tiny ones).
    config.width = ml_collections.config_dict.placeholder(float)
    config.dropout = 0.0
    config.bn_momentum = 0.9
    # Data (`train/data.py`): a tensorflow-datasets dataset under `data_dir`.
    config.dataset = "cifar10"
    config.data_dir = ""  # required: e.g. /tmp/tfds_cifar (see train/prepare_data.py)
    config.num_classes = 10
    config.augment = True  # pad-4 random crop + horizontal flip
    # Optimisation.
    config.batch_size = 512  # global, over all devices
    config.eval_batch_size = 1000  # fixed eval shape (last batch padded and masked)
    config.num_epochs = 15.0  # may be fractional: round(num_epochs * steps_per_epoch) steps
    config.max_steps = 0  # > 0: stop after this many steps (the schedule still spans num_epochs)
    config.optimizer = "sgd"  # "sgd" (Nesterov) | "adamw"
    config.learning_rate = 0.4  # at batch lr_reference_batch_size
    config.lr_reference_batch_size = 512
    config.momentum = 0.9  # SGD momentum; AdamW's b1
    config.weight_decay = 5e-3  # decoupled (= PyTorch SGD coupled 5e-4 at momentum 0.9)
    config.warmup_epochs = 1.0
    config.label_smoothing = 0.1
    config.dtype = "bfloat16"  # compute dtype: "float32" | "bfloat16" (params stay float32)
    # Execution.
    config.parallel = "shard_map"  # "shard_map" | "pmap" | "jit" (one device, no collectives)
    config.num_devices = 0  # data-parallel over the first N local devices; 0: all
    config.seed = 0
    # JAX's persistent compilation cache. Unset: WORKDIR/jax_cache (a resumed or repeated run
    # skips compiling); a path: that folder (runs may share it); "": off.
    config.compilation_cache_dir = ml_collections.config_dict.placeholder(str)
    # Checkpoints, evaluation and logging.
    config.resume = True  # continue from the latest checkpoint in the workdir if there is one
    config.checkpoint_every_steps = 1000  # also at every epoch end
    config.keep_checkpoints = 3  # the last K, plus the best by test accuracy
    config.async_checkpointing = True
    config.eval_every_epochs = 1.0  # may be fractional (every round(x * steps_per_epoch) steps)
    config.log_every_steps = 50
    config.plot_every_s = 60.0  # redraw curves.png at most this often (and at the end)
    config.progress_bar = True  # tqdm; silent when stderr is not a terminal
    return config
