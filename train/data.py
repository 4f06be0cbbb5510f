"""CIFAR input pipeline: a tfds split decoded into memory once, then numpy train/eval batches."""

from __future__ import annotations

import concurrent.futures
import io
import os
import pathlib
from collections.abc import Iterator

import numpy as np
import PIL.Image
import tensorflow_datasets as tfds
from tensorflow_datasets.proto import tf_example_pb2

from train.augment import MEAN, STD

__all__ = [
    "MEAN",
    "STD",
    "CorruptDatasetError",
    "DatasetNotFoundError",
    "check_dataset",
    "decode_pngs",
    "epoch_order",
    "eval_batches",
    "load_split",
    "open_split",
    "read_rows",
    "train_batches",
]

Batch = dict[str, np.ndarray]


class DatasetNotFoundError(FileNotFoundError):
    """No prepared tfds dataset under the data dir (the message says how to make one)."""


class CorruptDatasetError(ValueError):
    """The dataset's files exist but cannot be read (the message names them)."""


def _how_to_provide(dataset: str, data_dir: str) -> str:
    how = f"write it with `python -m train.prepare_data --data_dir={data_dir}"
    download = f"{how}` (CIFAR-10, downloaded through tensorflow-datasets) or " * (
        dataset == "cifar10"
    )
    return (
        f"{download}{how} --source=IMAGES --name={dataset}` (IMAGES: a folder or .tar[.gz] of "
        "<split>/<class>/<image>)"
    )


def check_dataset(dataset: str, data_dir: str | os.PathLike) -> None:
    """Raises `DatasetNotFoundError` unless `data_dir/dataset/<version>/` holds a dataset (a
    cheap look for its `dataset_info.json`: nothing is read)."""
    root = pathlib.Path(data_dir).expanduser() / dataset
    if not any(root.glob("**/dataset_info.json")):
        raise DatasetNotFoundError(
            f"dataset {dataset!r} not found: no {root}/<version>/dataset_info.json; "
            + _how_to_provide(dataset, os.fspath(data_dir))
        )


def _open(dataset: str, split: str, data_dir: str):
    """`tfds.data_source` with PNG decoding skipped, or one clear error."""
    root = pathlib.Path(data_dir).expanduser() / dataset
    check_dataset(dataset, data_dir)
    try:
        source = tfds.data_source(
            dataset,
            split=split,
            data_dir=data_dir,
            download=False,
            decoders={"image": tfds.decode.SkipDecoding()},
        )
    except Exception as e:  # noqa: BLE001 - tfds raises many kinds; one message instead
        detail = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
        if "split" in str(e).lower() and "unknown" in str(e).lower():
            raise ValueError(
                f"dataset {dataset!r} in {root} has no split {split!r} ({detail})"
            ) from None
        raise CorruptDatasetError(
            f"dataset {dataset!r} in {root} cannot be opened ({detail}); it must be an "
            f"array_record tfds dataset: re-create it with --overwrite, or "
            + _how_to_provide(dataset, data_dir)
        ) from None
    features = source.dataset_info.features
    if "image" not in features or "label" not in features:
        raise CorruptDatasetError(
            f"dataset {dataset!r} in {root} has features {sorted(features)}; expected 'image' "
            "and 'label'"
        )
    return source


def _decode_one(blob: bytes) -> np.ndarray:
    with PIL.Image.open(io.BytesIO(blob)) as image:
        return np.asarray(image)


def decode_pngs(blobs: list[bytes], shape: tuple[int | None, ...]) -> np.ndarray:
    """Decodes encoded images (PNG or any format Pillow reads) to uint8 `(N, *shape)`.

    Pillow releases the GIL while it decodes, so a thread pool over the local cores scales
    (no processes: forking is unsafe once JAX runs).

    Args:
      blobs: the encoded images.
      shape: `(H, W, C)` of every image; `None` entries (tfds' variable-size features) are
        taken from the images, which must then all agree.

    Raises:
      ValueError: an image does not have `shape`, or the images' sizes differ.
    """
    workers = min(32, os.cpu_count() or 1)
    chunk = max(1, len(blobs) // (4 * workers))
    out = None
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        for i, image in enumerate(pool.map(_decode_one, blobs, chunksize=chunk)):
            if image.ndim == len(shape) - 1:  # grayscale: Pillow drops the channel axis
                image = image[..., None]
            if out is None:
                want = tuple(s if s is not None else n for s, n in zip(shape, image.shape))
                out = np.empty((len(blobs), *want), np.uint8)
            if image.shape != out.shape[1:]:
                raise ValueError(
                    f"image {i} decodes to shape {image.shape}; expected {out.shape[1:]} "
                    f"(feature shape {tuple(shape)}): every image of a split must have one size"
                )
            out[i] = image
    return out if out is not None else np.empty((0, *(s or 0 for s in shape)), np.uint8)


def _records(source, indices: list[int]) -> tuple[list[bytes], np.ndarray]:
    """Encoded images and int32 labels of the records `indices` of a `tfds.data_source`.

    Reads the array_record file and parses the `tf.train.Example` protos directly (5× faster
    than tfds' per-record Python decoding); falls back to tfds' path for other sources.
    """
    raw = getattr(source, "data_source", None)
    if raw is None:
        records = source.__getitems__(indices)
        return [r["image"] for r in records], np.asarray([r["label"] for r in records], np.int32)
    blobs, labels = [], []
    for record in raw.__getitems__(indices):
        feature = tf_example_pb2.Example.FromString(record).features.feature
        blobs.append(feature["image"].bytes_list.value[0])
        labels.append(feature["label"].int64_list.value[0])
    return blobs, np.asarray(labels, np.int32)


def read_rows(source, indices: np.ndarray | range | list[int]) -> tuple[np.ndarray, np.ndarray]:
    """Random access: images uint8 `(len(indices), H, W, C)` and labels int32 of some records.

    Args:
      source: a data source from `open_split`.
      indices: record indices in `[0, len(source))`, in the order wanted.
    """
    indices = [int(i) for i in indices]
    if not indices:  # e.g. a process's rows of the last eval batch, all padding
        shape = tuple(s or 0 for s in source.dataset_info.features["image"].shape)
        return np.empty((0, *shape), np.uint8), np.empty(0, np.int32)
    blobs, labels = _records(source, indices)
    return decode_pngs(blobs, tuple(source.dataset_info.features["image"].shape)), labels


def _decode(source) -> tuple[np.ndarray, np.ndarray]:
    """All images uint8 `(N, H, W, C)` and labels int32 `(N,)` of a data source."""
    return read_rows(source, range(len(source)))


#: A split opened for random access (`read_rows`) without reading it; errors as `load_split`.
open_split = _open


def load_split(dataset: str, split: str, data_dir: str) -> tuple[np.ndarray, np.ndarray]:
    """Reads a whole tfds split into memory (array_record through `tfds.data_source`, no TF).

    The records are read with image decoding skipped, then the PNGs are decoded by Pillow on a
    thread pool (`decode_pngs`).

    Args:
      dataset: the tfds name, e.g. `"cifar10"`.
      split: e.g. `"train"`, `"test"`.
      data_dir: the tfds data dir holding `dataset/<version>/`.

    Returns:
      `(images, labels)`: uint8 `(N, H, W, C)` and int32 `(N,)`, in the stored order.

    Raises:
      DatasetNotFoundError: no dataset there (a `FileNotFoundError`; the message says how to
        write one with `train/prepare_data.py`).
      CorruptDatasetError: the files exist but cannot be read (a `ValueError`).
      ValueError: no such split.

    Examples:
      >>> images, labels = load_split("cifar10", "test", "/tmp/tfds_cifar")  # doctest: +SKIP
      >>> images.shape, images.dtype, labels.shape  # doctest: +SKIP
      ((10000, 32, 32, 3), dtype('uint8'), (10000,))
    """
    data_dir = os.fspath(data_dir)
    source = _open(dataset, split, data_dir)
    try:
        images, labels = _decode(source)
    except Exception as e:  # noqa: BLE001 - a truncated file or a bad image: one message
        raise CorruptDatasetError(
            f"dataset {dataset!r} split {split!r} in {pathlib.Path(data_dir) / dataset} is "
            f"corrupt ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}); "
            "re-create it (prepare_data --overwrite)"
        ) from None
    if images.ndim != 4 or not len(images):
        raise CorruptDatasetError(
            f"dataset {dataset!r} split {split!r} in {data_dir}: images {images.shape}, "
            "expected (N > 0, H, W, C)"
        )
    return images, labels


def _check(images: np.ndarray, labels: np.ndarray, batch_size: int, num_devices: int) -> None:
    if images.ndim != 4 or images.dtype != np.uint8:
        raise ValueError(f"images must be uint8 (N, H, W, C), got {images.dtype} {images.shape}")
    if labels.shape != images.shape[:1]:
        raise ValueError(f"labels must be ({len(images)},) like images, got {labels.shape}")
    if num_devices < 1:
        raise ValueError(f"num_devices must be >= 1, got {num_devices}")
    if batch_size < 1 or batch_size % num_devices:
        raise ValueError(
            f"batch_size must be a positive multiple of num_devices ({num_devices}), "
            f"got {batch_size}"
        )


def _rng(seed: int, epoch: int, *index: int) -> np.random.Generator:
    """A generator seeded by `(seed, epoch, *index)` alone (any Python ints)."""
    return np.random.default_rng([int(v) % 2**64 for v in (seed, epoch, *index)])


def epoch_order(num_examples: int, seed: int, epoch: int) -> np.ndarray:
    """The permutation of `range(num_examples)` that epoch `epoch` visits, batch by batch."""
    return _rng(seed, epoch).permutation(num_examples)


def train_batches(
    images: np.ndarray,
    labels: np.ndarray,
    *,
    batch_size: int,
    seed: int,
    epoch: int,
    num_devices: int,
    start_step: int = 0,
) -> Iterator[Batch]:
    """One epoch of shuffled training batches of raw uint8 images (remainder dropped).

    The host only gathers; the step augments and normalises on the device
    (`step.train_step(..., augment=...)`). Deterministic: the permutation depends only on
    `(seed, epoch)`, so `start_step=k` yields exactly batches `k, k+1, ...` of the same epoch
    (exact resume).

    Args:
      images: uint8 `(N, H, W, C)`.
      labels: int `(N,)`.
      batch_size: global batch size, a multiple of `num_devices`.
      seed: the run's seed.
      epoch: the epoch number (0-based).
      num_devices: the device count the batch is split over.
      start_step: the first batch to yield, in `[0, N // batch_size]`. Defaults to 0.

    Yields:
      `{"image": uint8 (B, H, W, C), "label": int32 (B,)}`, `N // batch_size - start_step` times.

    Raises:
      ValueError: bad shapes, `batch_size` not a positive multiple of `num_devices`, or
        `start_step` out of range.

    Examples:
      >>> images = np.zeros((64, 32, 32, 3), np.uint8)
      >>> labels = np.arange(64, dtype=np.int32)
      >>> batch = next(train_batches(images, labels, batch_size=16, seed=0, epoch=0,
      ...                            num_devices=1))
      >>> batch["image"].dtype, batch["label"].shape
      (dtype('uint8'), (16,))
    """
    _check(images, labels, batch_size, num_devices)
    steps = len(images) // batch_size
    if not 0 <= start_step <= steps:
        raise ValueError(f"start_step must be in [0, {steps}] (steps per epoch), got {start_step}")
    order = epoch_order(len(images), seed, epoch)
    labels = labels.astype(np.int32, copy=False)
    for i in range(start_step, steps):
        index = order[i * batch_size : (i + 1) * batch_size]
        yield {"image": images[index], "label": labels[index]}


def eval_batches(
    images: np.ndarray,
    labels: np.ndarray,
    *,
    batch_size: int,
    num_devices: int,
) -> Iterator[Batch]:
    """Every example exactly once, in order, in fixed-shape batches (the last padded, masked).

    Args:
      images: uint8 `(N, H, W, C)`.
      labels: int `(N,)`.
      batch_size: a multiple of `num_devices`.
      num_devices: the device count the batch is split over.

    Yields:
      `{"image": uint8 (B, H, W, C), "label": int32 (B,), "mask": float32 (B,)}` with mask 1 on
      real examples and 0 on padding (zero images, label 0), `ceil(N / B)` times; the step
      normalises the images on the device.

    Raises:
      ValueError: bad shapes or `batch_size` not a positive multiple of `num_devices`.
    """
    _check(images, labels, batch_size, num_devices)
    for start in range(0, len(images), batch_size):
        image = images[start : start + batch_size]
        label = labels[start : start + batch_size].astype(np.int32)
        n = len(label)
        mask = np.zeros(batch_size, np.float32)
        mask[:n] = 1.0
        if n < batch_size:
            image = np.concatenate(
                [image, np.zeros((batch_size - n, *image.shape[1:]), image.dtype)]
            )
            label = np.concatenate([label, np.zeros(batch_size - n, np.int32)])
        yield {"image": image, "label": label, "mask": mask}
