"""Weights from other frameworks: Keras 3 `keras.applications` models, and BatchNorm folding.

`from_keras(keras_model)` and `from_keras_weights(name, path)` (a `.weights.h5` file) give
`(module, variables)` of the matching `sepconv_jax.models` net;
`fold_batchnorm(module, variables)` folds every BatchNorm that follows a conv into the conv. No
peer library is imported at module load: Keras only inside `from_keras`, h5py only inside
`from_keras_weights`.
"""

from sepconv_jax.interop.fold import fold_batchnorm
from sepconv_jax.interop.keras import from_keras, from_keras_weights

__all__ = ["fold_batchnorm", "from_keras", "from_keras_weights"]
