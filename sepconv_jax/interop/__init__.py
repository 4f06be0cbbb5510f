"""Weights from other frameworks (Keras 3 models, PyTorch state_dicts) and BatchNorm folding.

`from_keras(keras_model)` and `from_keras_weights(name, path)` (a `.weights.h5` file) give
`(module, variables)` of the matching `sepconv_jax.models` net; `from_torch(name, state_dict,
source=...)` does so for a PyTorch `state_dict` (pytorch-cifar's MobileNetV2 so far);
`fold_batchnorm(module, variables)` folds every BatchNorm that follows a conv into the conv. No
peer library is imported at module load: Keras only inside `from_keras`, h5py only inside
`from_keras_weights`, torch or safetensors only inside `from_torch` when it reads a file.
"""

from sepconv_jax.interop.fold import fold_batchnorm
from sepconv_jax.interop.keras import from_keras, from_keras_weights
from sepconv_jax.interop.torch_weights import from_torch

__all__ = ["fold_batchnorm", "from_keras", "from_keras_weights", "from_torch"]
