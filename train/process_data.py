"""A split as the trainer reads it: whole in memory (one process) or by rows (one of several)."""

from __future__ import annotations

from collections.abc import Iterator

import jax
import numpy as np

from train import data

__all__ = ["Split"]


class Split:
    """One dataset split, yielding this process's rows of each global batch.

    With one process the split is decoded into memory once (`data.load_split`) and batches come
    from `data.train_batches` / `data.eval_batches`. With several, nothing is read up front: each
    batch's rows of this process are read by random access (`data.read_rows`). Either way the
    epoch's permutation is `data.epoch_order(N, seed, epoch)`, the same in every process, so the
    global batches do not depend on the number of processes.

    Args:
      dataset: the tfds name, e.g. `"cifar10"`.
      split: e.g. `"train"`.
      data_dir: the tfds data dir.
      in_memory: decode the whole split now. Defaults to True in a single process only.

    Raises:
      As `data.load_split`.
    """

    def __init__(self, dataset: str, split: str, data_dir: str, in_memory: bool | None = None):
        self.images: np.ndarray | None = None
        self.labels: np.ndarray | None = None
        if in_memory is None:
            in_memory = jax.process_count() == 1
        if in_memory:
            self.images, self.labels = data.load_split(dataset, split, data_dir)
            self.num_examples = len(self.labels)
            self.image_shape = tuple(self.images.shape[1:])
        else:
            self.source = data.open_split(dataset, split, str(data_dir))
            self.num_examples = len(self.source)
            self.image_shape = tuple(data.read_rows(self.source, [0])[0].shape[1:])

    def _read(self, index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self.images is not None:
            return self.images[index], self.labels[index]
        return data.read_rows(self.source, index)

    def train_batches(
        self,
        *,
        batch_size: int,
        seed: int,
        epoch: int,
        start_step: int,
        rows: slice,
        num_devices: int,
    ) -> Iterator[data.Batch]:
        """Raw uint8 batches `k = start_step, ...` of an epoch: this process's `rows` of each.

        Args:
          batch_size: the global batch size.
          seed: the run's seed.
          epoch: the epoch (0-based).
          start_step: the first batch of the epoch to yield.
          rows: this process's rows of a global batch (`distributed.process_rows`).
          num_devices: the global device count (checked to divide `batch_size`).

        Yields:
          `{"image": uint8 (R, H, W, C), "label": int32 (R,)}` with `R` the length of `rows`.
        """
        if self.images is not None and rows == slice(0, batch_size):
            yield from data.train_batches(
                self.images,
                self.labels,
                batch_size=batch_size,
                seed=seed,
                epoch=epoch,
                num_devices=num_devices,
                start_step=start_step,
            )
            return
        order = data.epoch_order(self.num_examples, seed, epoch)
        for i in range(start_step, self.num_examples // batch_size):
            image, label = self._read(order[i * batch_size : (i + 1) * batch_size][rows])
            yield {"image": image, "label": label}

    def eval_batches(
        self, *, batch_size: int, rows: slice, num_devices: int
    ) -> Iterator[data.Batch]:
        """Every example once, in order, in fixed-shape batches (the last padded and masked).

        Yields:
          This process's `rows` of each `data.eval_batches` batch: `image` uint8, `label`
          int32, `mask` float32 (0 on padding).
        """
        if self.images is not None and rows == slice(0, batch_size):
            yield from data.eval_batches(
                self.images,
                self.labels,
                batch_size=batch_size,
                num_devices=num_devices,
            )
            return
        for start in range(0, self.num_examples, batch_size):
            index = np.arange(start, start + batch_size)[rows]
            real = index[index < self.num_examples]
            image, label = self._read(real)
            pad = len(index) - len(real)
            yield {
                "image": np.concatenate([image, np.zeros((pad, *self.image_shape), np.uint8)]),
                "label": np.concatenate([label.astype(np.int32), np.zeros(pad, np.int32)]),
                "mask": (np.arange(len(index)) < len(real)).astype(np.float32),
            }
