"""Weights from other frameworks: Keras 3 `keras.applications` models, and BatchNorm folding.

`from_keras(keras_model)` gives `(module, variables)` of the matching `sepconv_jax.models` net;
`fold_batchnorm(module, variables)` folds every BatchNorm that follows a conv into the conv. No
peer library is imported at module load: Keras only inside `from_keras`.
"""

from sepconv_jax.interop.fold import fold_batchnorm
from sepconv_jax.interop.keras import from_keras

__all__ = ["fold_batchnorm", "from_keras"]
