"""On-device CIFAR augmentation: pad-4 random crop + horizontal flip, then normalisation (pure)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

__all__ = [
    "CROP_PADDING",
    "MEAN",
    "STD",
    "augment",
    "crop_flip",
    "normalize",
    "normalize_constants",
    "random_crop_flip_params",
]

#: CIFAR-10 per-channel (RGB) mean and standard deviation of pixel values in [0, 1].
MEAN = (0.4914, 0.4822, 0.4465)
STD = (0.2470, 0.2435, 0.2616)
#: Zero padding on each side before the random crop.
CROP_PADDING = 4


def normalize_constants() -> tuple[np.ndarray, np.ndarray]:
    """float32 `(scale, shift)` of shape `(3,)`: `normalized = uint8 * scale + shift`.

    Computed in float64 and rounded once, so the numpy (`data.normalize`) and the device
    (`normalize`) paths use the very same constants.
    """
    std = np.asarray(STD, np.float64)
    scale = (1.0 / (255.0 * std)).astype(np.float32)
    shift = (-np.asarray(MEAN, np.float64) / std).astype(np.float32)
    return scale, shift


def normalize(images: jax.Array) -> jax.Array:
    """uint8 `(B, H, W, 3)` → float32 `(x / 255 - MEAN) / STD`, per channel, on device."""
    if images.ndim != 4 or images.shape[-1] != len(MEAN):
        raise ValueError(f"images must be (B, H, W, {len(MEAN)}), got shape {tuple(images.shape)}")
    scale, shift = normalize_constants()
    scale = jnp.asarray(scale.reshape(1, 1, 1, -1))
    shift = jnp.asarray(shift.reshape(1, 1, 1, -1))
    return images.astype(jnp.float32) * scale + shift


def crop_flip(
    images: jax.Array, offsets: jax.Array, flips: jax.Array, *, padding: int = CROP_PADDING
) -> jax.Array:
    """Crops each zero-padded image at its offset and mirrors it where flipped (any dtype).

    The same semantics as the numpy reference `data.crop_flip`:
    `out[b, y, x] = padded[b, dy + y, dx + x']` with `x' = x`, or `W - 1 - x` when flipped.

    Args:
      images: `(B, H, W, C)`, e.g. uint8 (padding zeros are then black pixels).
      offsets: int `(B, 2)` `(dy, dx)` in `[0, 2 * padding]`.
      flips: bool `(B,)`.
      padding: zero padding on each side. Defaults to `CROP_PADDING` (4).

    Returns:
      `(B, H, W, C)` of the dtype of `images`.
    """
    b, h, w, c = images.shape
    if offsets.shape != (b, 2) or flips.shape != (b,):
        raise ValueError(
            f"offsets must be ({b}, 2) and flips ({b},) for {b} images, got "
            f"{tuple(offsets.shape)} and {tuple(flips.shape)}"
        )
    p = padding
    padded = jnp.pad(images, ((0, 0), (p, p), (p, p), (0, 0)))
    offsets = offsets.astype(jnp.int32)
    zero = jnp.zeros((), jnp.int32)

    def crop(image: jax.Array, offset: jax.Array) -> jax.Array:
        return lax.dynamic_slice(image, (offset[0], offset[1], zero), (h, w, c))

    crops = jax.vmap(crop)(padded, offsets)
    return jnp.where(flips.astype(bool).reshape(b, 1, 1, 1), crops[:, :, ::-1], crops)


def random_crop_flip_params(
    key: jax.Array,
    batch_size: int,
    *,
    padding: int = CROP_PADDING,
    flip: bool = True,
    index_offset: int | jax.Array = 0,
) -> tuple[jax.Array, jax.Array]:
    """Per-example crop offsets and flips, example `i` drawn from `fold_in(key, index_offset + i)`.

    Depending only on `key` and the *global* example index, a batch split over devices (each
    passing `index_offset = device_index * local_batch`) draws what one device would draw for
    the whole batch.

    Args:
      key: a raw `uint32 (2,)` or typed PRNG key.
      batch_size: `B`, the number of examples here.
      padding: offsets are drawn uniformly from `[0, 2 * padding]`. Defaults to 4.
      flip: draw flips with probability 1/2; otherwise none. Defaults to True.
      index_offset: global index of this batch's first example. Defaults to 0.

    Returns:
      `(offsets, flips)`: int32 `(B, 2)` and bool `(B,)`.
    """
    index = jnp.asarray(index_offset, jnp.int32) + jnp.arange(batch_size, dtype=jnp.int32)

    def draw(i: jax.Array) -> tuple[jax.Array, jax.Array]:
        crop_key, flip_key = jax.random.split(jax.random.fold_in(key, i))
        offset = jax.random.randint(crop_key, (2,), 0, 2 * padding + 1, dtype=jnp.int32)
        return offset, jax.random.bernoulli(flip_key)

    offsets, flips = jax.vmap(draw)(index)
    return offsets, flips if flip else jnp.zeros_like(flips)


def augment(
    images: jax.Array,
    key: jax.Array,
    *,
    padding: int = CROP_PADDING,
    flip: bool = True,
    index_offset: int | jax.Array = 0,
) -> jax.Array:
    """Random zero-padded crop and horizontal flip of uint8 images, then normalisation.

    Args:
      images: uint8 `(B, H, W, 3)`.
      key: the step's augmentation key; example `i` uses `fold_in(key, index_offset + i)`.
      padding: zero (black) padding on each side before the crop. Defaults to 4.
      flip: random horizontal flips. Defaults to True.
      index_offset: global index of the first example (non-zero on a device's shard).

    Returns:
      float32 `(B, H, W, 3)`, normalised with `MEAN`/`STD`.

    Raises:
      TypeError: `images` is not uint8.

    Examples:
      >>> x = jnp.full((2, 32, 32, 3), 128, jnp.uint8)
      >>> augment(x, jax.random.PRNGKey(0)).shape
      (2, 32, 32, 3)
    """
    if images.dtype != jnp.uint8:
        raise TypeError(f"images must be uint8, got {images.dtype}")
    offsets, flips = random_crop_flip_params(
        key, images.shape[0], padding=padding, flip=flip, index_offset=index_offset
    )
    return normalize(crop_flip(images, offsets, flips, padding=padding))
