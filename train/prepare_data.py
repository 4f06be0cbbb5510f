"""`python -m train.prepare_data`: an image folder or tar (split/class/image) → a tfds dataset.

Writes a tensorflow-datasets dataset with the features of tfds' `cifar10` (`id` Text, `image`
Image(shape=(32, 32, 3)) stored as PNG, `label` ClassLabel with the sorted class folder names) in
array_record format, so that `tfds.data_source(name, data_dir=DIR)` and `tfds.builder(name,
data_dir=DIR)` read it with no network and no TensorFlow. This is the offline path to CIFAR-10
(e.g. from a JPEG copy) and the way to train on your own image-folder data.

Command:
  python -m train.prepare_data --source=cifar10-jpeg.tar.gz --data_dir=/tmp/tfds_cifar

Source layout (a folder, or a `.tar`/`.tar.gz`/`.tgz` of one): `<split>/<class>/<image>`, e.g.
`train/airplane/0000.jpg`, optionally under one common top folder. Hidden files (`.DS_Store`) are
ignored. Labels are the indices of the class folder names sorted over all splits; `id` is the
image's path relative to the layout root (`train/airplane/0000.jpg`). Images are decoded with
Pillow and converted to RGB (grayscale is replicated, alpha dropped); an image that is not 32×32
is an error naming the file, unless `--resize` (bilinear resize to 32×32).

The dataset is built in a hidden temporary folder inside `--data_dir` and renamed into place at
the end, so an interrupted run leaves no partial dataset. An existing complete dataset is kept
(the command says so and exits) unless `--overwrite`.

For a registered tfds name (`cifar10`) the dataset gets the registered version (`3.0.2`) so that
`tfds.builder("cifar10", data_dir=DIR)` finds it; the source must then have as many classes.
"""

from __future__ import annotations

import dataclasses
import io
import multiprocessing
import os
import pathlib
import re
import shutil
import signal
import sys
import tarfile
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import NamedTuple

import numpy as np
import PIL.Image
import tensorflow_datasets as tfds
from absl import app, flags
from tensorflow_datasets.core.dataset_builders import adhoc_builder

from train import download
from train.quiet import quiet_libraries

__all__ = ["IMAGE_SHAPE", "Item", "Source", "decode_image", "prepare", "read_source"]

#: Shape of every stored image (tfds cifar10's `Image(shape=(32, 32, 3))`).
IMAGE_SHAPE = (32, 32, 3)
#: Version given to a name tfds does not register.
DEFAULT_VERSION = "1.0.0"
_TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz")
_SPLIT_NAME = re.compile(r"^[A-Za-z0-9_]+$")
_DATASET_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
# Below this many images the decode runs in-process (a worker pool costs ~1 s to start).
_MIN_IMAGES_FOR_POOL = 4096


class Item(NamedTuple):
    """One source image, not yet decoded.

    Attributes:
      path: the path relative to the layout root, `split/class/file` (also the stored `id`).
      label: index of the class folder in `Source.class_names`.
      data: the file's bytes (any format Pillow reads).
    """

    path: str
    label: int
    data: bytes


@dataclasses.dataclass(frozen=True)
class Source:
    """The images of a source, by split, with the class names (label order).

    Attributes:
      class_names: sorted class folder names; label `i` is `class_names[i]`.
      splits: split name → items sorted by path.
    """

    class_names: tuple[str, ...]
    splits: Mapping[str, Sequence[Item]]


def _is_tar(path: pathlib.Path) -> bool:
    return path.is_file() and (path.name.endswith(_TAR_SUFFIXES) or tarfile.is_tarfile(path))


def _iter_files(source: pathlib.Path) -> Iterator[tuple[str, Callable[[], bytes]]]:
    """Yields `(relative posix path, read)` for every non-hidden regular file of `source`.

    A folder's files are read when `read()` is called; a tar's as the archive streams by.
    """
    if source.is_dir():
        for root, dirs, files in os.walk(source):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            for name in sorted(files):
                if not name.startswith("."):
                    path = pathlib.Path(root, name)
                    yield path.relative_to(source).as_posix(), path.read_bytes
        return
    try:
        with tarfile.open(source, "r:*") as tar:
            for member in tar:
                parts = pathlib.PurePosixPath(member.name).parts
                if member.isfile() and not any(p.startswith(".") for p in parts):
                    data = tar.extractfile(member).read()  # sequential: a .gz cannot seek back
                    yield "/".join(p for p in parts if p != "."), lambda data=data: data
    except (tarfile.TarError, EOFError, OSError) as e:
        raise ValueError(f"--source={source} is not a readable tar archive: {e}") from None


def read_source(source: str | os.PathLike, *, max_per_class: int | None = None) -> Source:
    """Reads the (encoded) images of a `split/class/image` folder or tar.

    Args:
      source: a folder, or a `.tar`/`.tar.gz` archive, holding `<split>/<class>/<image>` files,
        optionally under a single top folder.
      max_per_class: keep only the first this many images (by path) of each split and class,
        e.g. for a quick look. Defaults to all.

    Returns:
      The `Source`: class names (sorted; the label order) and each split's items sorted by path.

    Raises:
      FileNotFoundError: `source` does not exist.
      ValueError: not a folder or tar, no images, or a file outside the layout (named).

    Examples:
      >>> src = read_source("cifar10-jpeg.tar.gz", max_per_class=2)  # doctest: +SKIP
      >>> src.class_names[:2], [i.path for i in src.splits["test"][:2]]  # doctest: +SKIP
      (('airplane', 'automobile'), ['test/airplane/0000.jpg', 'test/airplane/0001.jpg'])
    """
    path = pathlib.Path(source).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"--source={source} does not exist")
    if not (path.is_dir() or _is_tar(path)):
        raise ValueError(f"--source={source} must be a folder or a .tar/.tar.gz archive")
    if max_per_class is not None and max_per_class < 1:
        raise ValueError(f"max_per_class must be >= 1 or None, got {max_per_class}")

    files = [(rel.split("/"), read) for rel, read in _iter_files(path)]
    if not files:
        raise ValueError(f"--source={source} holds no files; expected <split>/<class>/<image>")
    # A single top folder above the layout (e.g. `cifar10/train/...`) is stripped.
    tops = {parts[0] for parts, _ in files}
    if len(tops) == 1 and all(len(parts) == 4 for parts, _ in files):
        files = [(parts[1:], read) for parts, read in files]

    kept: dict[tuple[str, str], list[tuple[str, Callable[[], bytes]]]] = {}
    for parts, read in files:
        rel = "/".join(parts)
        if len(parts) != 3:
            raise ValueError(
                f"{source}: {rel!r} is not at <split>/<class>/<image> "
                "(e.g. train/airplane/0000.jpg)"
            )
        if not _SPLIT_NAME.match(parts[0]):
            raise ValueError(
                f"{source}: split folder {parts[0]!r} (in {rel!r}) must match [A-Za-z0-9_]+"
            )
        kept.setdefault((parts[0], parts[1]), []).append((rel, read))

    class_names = tuple(sorted({cls for _, cls in kept}))
    label = {name: i for i, name in enumerate(class_names)}
    splits: dict[str, list[Item]] = {}
    for (split, cls), entries in sorted(kept.items()):
        entries = sorted(entries, key=lambda e: e[0])[:max_per_class]
        splits.setdefault(split, []).extend(Item(rel, label[cls], read()) for rel, read in entries)
    return Source(class_names=class_names, splits=splits)


def decode_image(path: str, data: bytes, *, resize: bool = False) -> np.ndarray:
    """Decodes one image file's bytes to RGB uint8 `(32, 32, 3)`.

    Args:
      path: the file's name, for error messages.
      data: the encoded image (any format Pillow reads).
      resize: bilinearly resize an image of another size to 32×32. Defaults to `False` (error).

    Returns:
      uint8 `(32, 32, 3)`.

    Raises:
      ValueError: the bytes are not an image, or it is not 32×32 and `resize` is off.
    """
    try:
        with PIL.Image.open(io.BytesIO(data)) as image:
            image = image.convert("RGB")
    except (OSError, SyntaxError, ValueError) as e:
        raise ValueError(f"{path}: not a readable image ({e})") from None
    height, width = IMAGE_SHAPE[:2]
    if image.size != (width, height):
        if not resize:
            raise ValueError(
                f"{path}: image is {image.size[0]}×{image.size[1]} (width×height), expected "
                f"{width}×{height}; pass --resize to resize it"
            )
        image = image.resize((width, height), PIL.Image.Resampling.BILINEAR)
    return np.asarray(image, dtype=np.uint8)


def _to_png(args: tuple[str, bytes, bool]) -> bytes:
    """Decodes one source image and re-encodes it losslessly as PNG (what tfds' Image stores)."""
    path, data, resize = args
    buffer = io.BytesIO()
    PIL.Image.fromarray(decode_image(path, data, resize=resize)).save(buffer, format="png")
    return buffer.getvalue()


def _encode_all(items: Sequence[Item], resize: bool, workers: int) -> list[bytes]:
    """PNG bytes of every item, in order; decoded by `workers` processes for large inputs.

    Ctrl-C stops it promptly: the workers ignore SIGINT (so only this process handles it) and
    leaving the pool terminates them.
    """
    args = [(item.path, item.data, resize) for item in items]
    if workers <= 1 or len(args) < _MIN_IMAGES_FOR_POOL:
        return [_to_png(a) for a in args]
    # "spawn": this may run in a process that already started threads (JAX), where fork is unsafe.
    context = multiprocessing.get_context("spawn")
    # An ignored signal stays ignored across exec: the workers are started with SIGINT ignored.
    main_thread = threading.current_thread() is threading.main_thread()  # signals: there only
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN) if main_thread else None
    try:
        pool = context.Pool(workers)
    finally:
        if main_thread:
            signal.signal(signal.SIGINT, previous)
    with pool:  # on leaving, even by KeyboardInterrupt: terminate()
        return pool.map(_to_png, args, chunksize=max(64, len(args) // (8 * workers)))


class _Builder(adhoc_builder.AdhocBuilder, skip_registration=True):
    """`AdhocBuilder` taking plain `(key, example)` iterables (its own check needs TensorFlow)."""

    def _split_generators(self, dl_manager):
        del dl_manager
        return dict(self._split_datasets)

    def _log_download_bytes(self) -> None:
        """Silent: tfds would print "Downloading ... Unknown size" for a local conversion."""

    def _log_download_done(self) -> None:
        """Silent: `prepare` says where the dataset is."""


def _version_for(name: str, num_classes: int) -> str:
    """The registered version of `name` (checking its class count), else `DEFAULT_VERSION`."""
    try:
        builder_cls = tfds.builder_cls(name)
    except tfds.core.registered.DatasetNotFoundError:
        return DEFAULT_VERSION
    with tempfile.TemporaryDirectory() as empty:
        features = tfds.builder(name, data_dir=empty).info.features
    label = features["label"] if "label" in features else None
    expected = getattr(label, "num_classes", None)
    if expected is not None and expected != num_classes:
        raise ValueError(
            f"--name={name} is a registered tfds dataset with {expected} classes but the source "
            f"has {num_classes} class folders; pass another --name for your own data"
        )
    return str(builder_cls.VERSION)


def _dataset_dir(data_dir: pathlib.Path, name: str, version: str) -> pathlib.Path:
    return data_dir / name / version


def is_prepared(data_dir: str | os.PathLike, name: str, version: str) -> bool:
    """Whether `data_dir/name/version` holds a complete dataset (its `dataset_info.json`)."""
    return (_dataset_dir(pathlib.Path(data_dir), name, version) / "dataset_info.json").is_file()


def prepare(
    source: str | os.PathLike,
    data_dir: str | os.PathLike,
    *,
    name: str = "cifar10",
    resize: bool = False,
    overwrite: bool = False,
    workers: int | None = None,
    log=print,
) -> pathlib.Path:
    """Converts an image folder or tar into a tfds dataset `data_dir/name/version` (array_record).

    Args:
      source: see `read_source`.
      data_dir: the tfds data dir to write into (created if missing).
      name: the dataset name. Defaults to `"cifar10"`.
      resize: resize non-32×32 images instead of failing. Defaults to `False`.
      overwrite: replace an existing dataset. Defaults to `False` (keep it and return).
      workers: decoding processes. Defaults to `os.cpu_count()`.
      log: called with progress messages. Defaults to `print`.

    Returns:
      The dataset's version folder.

    Raises:
      FileNotFoundError, ValueError: see `read_source` and `decode_image`; a bad `name`.
    """
    if not _DATASET_NAME.match(name):
        raise ValueError(f"--name must be snake_case ([a-z][a-z0-9_]*), got {name!r}")
    t0 = time.perf_counter()
    src = read_source(source)
    version = _version_for(name, len(src.class_names))
    data_dir = pathlib.Path(data_dir).expanduser().absolute()
    final = _dataset_dir(data_dir, name, version)
    if is_prepared(data_dir, name, version) and not overwrite:
        log(f"{final} already holds a complete dataset: kept (pass --overwrite to rebuild it)")
        return final
    counts = ", ".join(f"{split} {len(items)}" for split, items in src.splits.items())
    log(f"read {source}: {len(src.class_names)} classes; {counts} images")

    workers = (os.cpu_count() or 1) if workers is None else workers
    t1 = time.perf_counter()
    pngs = {split: _encode_all(items, resize, workers) for split, items in src.splits.items()}
    log(f"decoded and PNG-encoded in {time.perf_counter() - t1:.1f} s ({workers} workers)")

    features = tfds.features.FeaturesDict(
        {
            "id": tfds.features.Text(),
            "image": tfds.features.Image(shape=IMAGE_SHAPE),
            "label": tfds.features.ClassLabel(names=list(src.class_names)),
        }
    )

    def examples(split: str) -> Iterator[tuple[str, dict]]:
        for item, png in zip(src.splits[split], pngs[split], strict=True):
            yield item.path, {"id": item.path, "image": png, "label": item.label}

    data_dir.mkdir(parents=True, exist_ok=True)
    staging = pathlib.Path(tempfile.mkdtemp(prefix=f".{name}-prepare-", dir=data_dir))
    try:
        t2 = time.perf_counter()
        builder = _Builder(
            name=name,
            version=version,
            features=features,
            split_datasets={split: examples(split) for split in src.splits},
            data_dir=staging,
            description=f"Images from {pathlib.Path(source).name} (train/prepare_data.py).",
            file_format="array_record",
        )
        builder.download_and_prepare(file_format="array_record", download_dir=staging / "downloads")
        log(f"wrote array_record in {time.perf_counter() - t2:.1f} s")
        final.parent.mkdir(parents=True, exist_ok=True)
        if final.exists():  # --overwrite: move the old one aside first, delete it after
            final.rename(staging / "old")
        _dataset_dir(staging, name, version).rename(final)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    log(f"{final}: done in {time.perf_counter() - t0:.1f} s")
    return final


_SOURCE = flags.DEFINE_string(
    "source",
    None,
    "Image folder or .tar[.gz]: <split>/<class>/<image>. Without it: download CIFAR-10 "
    "through tensorflow-datasets (--name=cifar10 only).",
)
_DATA_DIR = flags.DEFINE_string("data_dir", None, "tfds data dir to write the dataset into.")
_NAME = flags.DEFINE_string("name", "cifar10", "Dataset name.")
_RESIZE = flags.DEFINE_bool("resize", False, "Resize non-32x32 images (else: error).")
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Replace an existing dataset.")
_WORKERS = flags.DEFINE_integer("workers", None, "Decoding processes (default: all cores).")
_MANUAL_DIR = flags.DEFINE_string(
    "manual_dir",
    None,
    "Without --source: a folder holding cifar-10-binary.tar.gz already (no network needed).",
)


def _download(data_dir: str, name: str, manual_dir: str | None) -> None:
    """The tfds download path (`train/download.py`), CIFAR-10 only."""
    if name != "cifar10":
        raise ValueError(f"without --source only --name=cifar10 can be downloaded, got {name!r}")
    version = str(download.cifar.Cifar10.VERSION)
    if is_prepared(data_dir, name, version):
        print(f"{_dataset_dir(pathlib.Path(data_dir), name, version)} already holds CIFAR-10: kept")
        return
    print(f"downloading CIFAR-10 through tensorflow-datasets into {data_dir}")
    try:
        path = download.download_cifar10(data_dir, manual_dir=manual_dir)
    except Exception as e:  # noqa: BLE001 - network and checksum errors of many kinds: one line
        detail = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise ValueError(
            f"the download failed ({type(e).__name__}: {detail}); offline, convert a local copy "
            "with --source=ARCHIVE, or put cifar-10-binary.tar.gz in --manual_dir"
        ) from None
    print(f"{path}: done")


def main(argv: list[str]) -> None:
    """Runs `prepare` (or the download) from the flags; errors and Ctrl-C exit with one line."""
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    quiet_libraries()
    tfds.disable_progress_bar()
    try:
        if _SOURCE.value is None:
            _download(_DATA_DIR.value, _NAME.value, _MANUAL_DIR.value)
            return
        prepare(
            _SOURCE.value,
            _DATA_DIR.value,
            name=_NAME.value,
            resize=_RESIZE.value,
            overwrite=_OVERWRITE.value,
            workers=_WORKERS.value,
        )
    except (FileNotFoundError, ValueError) as e:
        sys.exit(f"prepare_data: error: {e}")
    except KeyboardInterrupt:
        print("prepare_data: interrupted; no dataset was written", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    flags.mark_flags_as_required(["data_dir"])
    app.run(main)
