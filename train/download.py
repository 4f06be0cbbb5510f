"""CIFAR-10 through tensorflow-datasets' `cifar10` builder (download, array_record), without TF."""

from __future__ import annotations

import io
import os
import pathlib
import socket
import tarfile
import urllib.parse
import urllib.request
from collections.abc import Iterator
from typing import Any

import numpy as np
import PIL.Image
import tensorflow_datasets as tfds
from tensorflow_datasets.image_classification import cifar

__all__ = ["download_cifar10"]

#: Bytes of one record of CIFAR-10's binary format: a label byte, then 32×32×3 pixels (CHW).
RECORD_BYTES = 1 + 3 * 32 * 32


class _Cifar10(cifar.Cifar10, skip_registration=True):
    """tfds' `cifar10` builder (same name, version, features, URL and checksum) read without
    TensorFlow: tfds' extractor and its numpy-image encoder need it, so the archive is read with
    `tarfile` and the images are PNG-encoded with Pillow (what tfds stores).
    """

    name = "cifar10"

    def _log_download_bytes(self) -> None:
        """Silent: tfds would print "Unknown size" (the sizes are known once prepared)."""

    def _log_download_done(self) -> None:
        """Silent: the caller says where the dataset is."""

    def _split_generators(self, dl_manager: tfds.download.DownloadManager) -> dict[str, Any]:
        info = self._cifar_info
        files = {}
        with tarfile.open(dl_manager.download(info.url), "r:*") as tar:
            for member in tar:
                if member.isfile() and member.name.startswith(info.prefix):
                    files[member.name.removeprefix(info.prefix)] = tar.extractfile(member).read()
        names = files[info.label_files[0]].decode().split("\n")
        self.info.features["label"].names = [name for name in names if name]
        return {
            "train": self._examples("train_", [files[f] for f in info.train_files]),
            "test": self._examples("test_", [files[f] for f in info.test_files]),
        }

    @staticmethod
    def _examples(prefix: str, blobs: list[bytes]) -> Iterator[tuple[int, dict[str, Any]]]:
        """`(index, {"id", "image" (PNG bytes), "label"})` of every record, in order."""
        records = np.frombuffer(b"".join(blobs), np.uint8)
        if records.size % RECORD_BYTES:
            raise ValueError(f"{records.size} bytes of {prefix}records is not a whole number")
        for index, record in enumerate(records.reshape(-1, RECORD_BYTES)):
            buffer = io.BytesIO()
            PIL.Image.fromarray(record[1:].reshape(3, 32, 32).transpose(1, 2, 0)).save(
                buffer, format="png"
            )
            example = {"id": f"{prefix}{index:05d}", "image": buffer.getvalue()}
            yield index, {**example, "label": int(record[0])}


def _check_reachable(url: str, timeout_s: float = 10.0) -> None:
    """Raises `ConnectionError` at once when `url`'s host cannot be reached (instead of the
    download's minutes of retries). Behind a proxy (`HTTPS_PROXY`) the download is left to try."""
    if urllib.request.getproxies().get("https"):
        return
    host = urllib.parse.urlparse(url).hostname
    try:
        socket.create_connection((host, 443), timeout=timeout_s).close()
    except OSError as e:
        raise ConnectionError(f"cannot reach {host} ({e})") from None


def download_cifar10(
    data_dir: str | os.PathLike, *, manual_dir: str | os.PathLike | None = None
) -> pathlib.Path:
    """Downloads CIFAR-10 and writes it as the tfds dataset `data_dir/cifar10/3.0.2` (array_record).

    The tfds `cifar10` builder's download (its URL, its registered size and checksum, its
    extraction), examples PNG-encoded with Pillow: nothing imports TensorFlow.
    `tfds.data_source("cifar10", data_dir=data_dir)` then reads it. An existing dataset is kept.

    Args:
      data_dir: the tfds data dir (downloads go to `data_dir/downloads`).
      manual_dir: a folder already holding `cifar-10-binary.tar.gz` (no network needed; its
        checksum is still checked). Defaults to none: download.

    Returns:
      The dataset's version folder.

    Raises:
      ConnectionError: no `manual_dir` and the download host cannot be reached.
    """
    data_dir = pathlib.Path(data_dir).expanduser().absolute()
    builder = _Cifar10(data_dir=os.fspath(data_dir), file_format="array_record")
    if manual_dir is None:
        _check_reachable(builder._cifar_info.url)
    config = tfds.download.DownloadConfig(
        manual_dir=None if manual_dir is None else os.fspath(manual_dir)
    )
    builder.download_and_prepare(file_format="array_record", download_config=config)
    return pathlib.Path(builder.data_dir)
