"""NumPy reference of the on-device augmentation (`train/augment.py`): crop, flip, normalise."""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from train.augment import CROP_PADDING, normalize_constants


def normalize(images: np.ndarray) -> np.ndarray:
    """uint8 `(..., C)` → float32 `(x / 255 - MEAN) / STD`, per channel (`augment.normalize`)."""
    scale, shift = normalize_constants()
    out = images.astype(np.float32)
    out *= scale
    out += shift
    return out


def crop_flip(images: np.ndarray, offsets: np.ndarray, flips: np.ndarray) -> np.ndarray:
    """Crops each `CROP_PADDING` zero-padded image at its offset, mirrored where flipped.

    Args:
      images: uint8 `(B, H, W, C)`.
      offsets: int `(B, 2)` `(dy, dx)` in `[0, 2 * CROP_PADDING]`.
      flips: bool `(B,)`.

    Returns:
      uint8 `(B, H, W, C)`: `out[b, y, x] = padded[b, dy + y, dx + x']` with `x' = x` or, when
      flipped, `W - 1 - x`.
    """
    b, h, w, _ = images.shape
    p = CROP_PADDING
    padded = np.pad(images, ((0, 0), (p, p), (p, p), (0, 0)))
    windows = sliding_window_view(padded, (h, w), axis=(1, 2))  # a view (B, 2p+1, 2p+1, C, H, W)
    out = windows[np.arange(b), offsets[:, 0], offsets[:, 1]]  # one block copy per image
    out = np.ascontiguousarray(out.transpose(0, 2, 3, 1))
    flips = np.asarray(flips, bool)
    out[flips] = out[flips, :, ::-1]
    return out
