"""Tests for train/prepare_data.py and train/data.py: conversion round trip, batches, errors."""

import io
import pathlib
import tarfile

import _numpy_augment  # noqa: I001 - the tests' own helper modules (tests/ is on sys.path)
import _train_utils
import numpy as np
import PIL.Image
import pytest
import tensorflow_datasets as tfds

from train import data, prepare_data

_REAL_TAR = _train_utils.REPO.parent / "shared" / "data" / "cifar10-jpeg.tar.gz"
_COUNTS = {"train": 30, "test": 12}


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("images")
    _train_utils.write_image_folder(root, _COUNTS, seed=1)
    return root


@pytest.fixture(scope="module")
def prepared(folder, tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("tfds")
    prepare_data.prepare(folder, data_dir, name="cifar10", log=lambda _: None)
    return data_dir


def _expected(folder, split):
    """id → (image, label) read straight from the PNG files."""
    out = {}
    for path in sorted((folder / split).glob("*/*.png")):
        label = _train_utils.CLASS_NAMES.index(path.parent.name)
        out[f"{split}/{path.parent.name}/{path.name}"] = (np.asarray(PIL.Image.open(path)), label)
    return out


def test_prepare_round_trips_ids_images_and_labels_exactly(folder, prepared):
    builder = tfds.builder("cifar10", data_dir=prepared)
    assert builder.info.features["label"].names == list(_train_utils.CLASS_NAMES)
    assert builder.info.features["image"].shape == (32, 32, 3)
    assert {k: v.num_examples for k, v in builder.info.splits.items()} == _COUNTS
    for split in _COUNTS:
        source = tfds.data_source("cifar10", split=split, data_dir=prepared, download=False)
        expected = _expected(folder, split)
        got = {source[i]["id"].decode(): source[i] for i in range(len(source))}
        assert sorted(got) == sorted(expected)
        for key, (image, label) in expected.items():
            np.testing.assert_array_equal(got[key]["image"], image)
            assert got[key]["label"] == label
        images, labels = data.load_split("cifar10", split, str(prepared))
        assert images.dtype == np.uint8 and images.shape == (_COUNTS[split], 32, 32, 3)
        assert labels.dtype == np.int32 and labels.shape == (_COUNTS[split],)
        by_id = [expected[source[i]["id"].decode()] for i in range(len(source))]
        np.testing.assert_array_equal(images, np.stack([im for im, _ in by_id]))
        np.testing.assert_array_equal(labels, [lab for _, lab in by_id])


def test_prepare_from_tar_under_a_top_folder_and_custom_name(folder, tmp_path):
    tar_path = tmp_path / "images.tar.gz"
    with tarfile.open(tar_path, "w:gz") as tar:
        tar.add(folder, arcname="mydata")
    prepare_data.prepare(tar_path, tmp_path / "tfds", name="my_images", log=lambda _: None)
    builder = tfds.builder("my_images", data_dir=tmp_path / "tfds")
    assert builder.info.splits["train"].num_examples == _COUNTS["train"]
    images, labels = data.load_split("my_images", "test", str(tmp_path / "tfds"))
    expected = _expected(folder, "test")
    assert sorted(map(bytes, images.reshape(len(images), -1))) == sorted(
        bytes(im.reshape(-1)) for im, _ in expected.values()
    )


def test_prepare_skips_a_complete_dataset_and_overwrites_on_request(folder, prepared, tmp_path):
    messages = []
    prepare_data.prepare(folder, prepared, log=messages.append)
    assert "already holds a complete dataset" in messages[-1]
    data_dir = tmp_path / "tfds"
    prepare_data.prepare(folder, data_dir, log=lambda _: None)
    prepare_data.prepare(folder, data_dir, overwrite=True, log=lambda _: None)
    assert [p.name for p in data_dir.iterdir()] == ["cifar10"]  # no staging folder left
    assert len(data.load_split("cifar10", "train", str(data_dir))[0]) == _COUNTS["train"]


def test_prepare_rejects_bad_sources(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        prepare_data.read_source(tmp_path / "nope")
    flat = tmp_path / "flat"
    flat.mkdir()
    PIL.Image.new("RGB", (32, 32)).save(flat / "a.png")
    with pytest.raises(ValueError, match=r"'a.png' is not at <split>/<class>/<image>"):
        prepare_data.read_source(flat)
    big = tmp_path / "big" / "train" / "cat"
    big.mkdir(parents=True)
    PIL.Image.new("RGB", (40, 30)).save(big / "x.png")
    with pytest.raises(ValueError, match=r"train/cat/x.png: image is 40×30"):
        prepare_data.prepare(tmp_path / "big", tmp_path / "out", name="big", log=lambda _: None)
    prepare_data.prepare(tmp_path / "big", tmp_path / "out", name="big", resize=True, log=print)
    assert data.load_split("big", "train", str(tmp_path / "out"))[0].shape == (1, 32, 32, 3)
    with pytest.raises(ValueError, match="registered tfds dataset with 10 classes"):
        prepare_data.prepare(tmp_path / "big", tmp_path / "out", name="cifar10", resize=True)


def test_load_split_explains_a_missing_or_corrupt_dataset(prepared, tmp_path):
    with pytest.raises(data.DatasetNotFoundError) as info:
        data.load_split("cifar10", "train", str(tmp_path / "nothing"))
    message = str(info.value)
    assert str(tmp_path / "nothing" / "cifar10") in message and "train.prepare_data" in message
    with pytest.raises(ValueError, match="no split 'validation'"):
        data.load_split("cifar10", "validation", str(prepared))
    broken = tmp_path / "broken"
    (broken / "cifar10" / "3.0.2").mkdir(parents=True)
    (broken / "cifar10" / "3.0.2" / "dataset_info.json").write_text("{not json")
    with pytest.raises(data.CorruptDatasetError, match="cifar10"):
        data.load_split("cifar10", "train", str(broken))
    truncated = tmp_path / "truncated"
    version_dir = pathlib.Path(prepared) / "cifar10" / "3.0.2"
    copy = truncated / "cifar10" / "3.0.2"
    copy.mkdir(parents=True)
    for f in version_dir.iterdir():
        content = f.read_bytes()
        (copy / f.name).write_bytes(
            content[: len(content) // 2] if "array_record" in f.name else content
        )
    with pytest.raises(data.CorruptDatasetError, match="corrupt|cannot be opened"):
        data.load_split("cifar10", "train", str(truncated))


def _random_split(n=40, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8), rng.integers(0, 10, n).astype(
        np.int32
    )


def _batches(images, labels, **kwargs):
    kwargs = dict(dict(batch_size=8, seed=3, epoch=1, num_devices=2), **kwargs)
    return list(data.train_batches(images, labels, **kwargs))


def test_train_batches_are_deterministic_resumable_and_differ_by_epoch():
    images, labels = _random_split()
    first = _batches(images, labels)
    assert len(first) == 40 // 8
    for b in first:
        assert b["image"].dtype == np.uint8 and b["image"].shape == (8, 32, 32, 3)
        assert b["label"].dtype == np.int32 and b["label"].shape == (8,)
    again = _batches(images, labels)
    resumed = _batches(images, labels, start_step=3)
    for a, b in zip(first[3:], resumed, strict=True):
        np.testing.assert_array_equal(a["image"], b["image"])
        np.testing.assert_array_equal(a["label"], b["label"])
    for a, b in zip(first, again, strict=True):
        np.testing.assert_array_equal(a["image"], b["image"])
    other = _batches(images, labels, epoch=2)
    assert not np.array_equal(first[0]["label"], other[0]["label"]) or not np.array_equal(
        first[0]["image"], other[0]["image"]
    )
    # Every example once per epoch, as stored (the device step augments).
    ids = np.arange(40, dtype=np.int32)  # labels naming the source image
    whole = _batches(images, ids, batch_size=40)[0]
    np.testing.assert_array_equal(whole["image"], images[whole["label"]])
    assert sorted(whole["label"].tolist()) == ids.tolist()
    with pytest.raises(ValueError, match="batch_size must be a positive multiple of num_devices"):
        _batches(images, labels, batch_size=9)
    with pytest.raises(ValueError, match="start_step"):
        _batches(images, labels, start_step=6)


def test_device_augmentation_is_a_padded_crop_or_its_mirror():
    """Independent of the reference: each output image is found among the 81 × 2 candidates."""
    import jax

    from train import augment

    images, _ = _random_split(n=64, seed=1)
    out = np.asarray(augment.augment(images, jax.random.PRNGKey(5)))
    mean, std = np.asarray(data.MEAN), np.asarray(data.STD)
    pixels = np.rint((out * std + mean) * 255.0).astype(np.int64)
    flips = 0
    for index, got in enumerate(pixels):
        padded = np.pad(images[index].astype(np.int64), ((4, 4), (4, 4), (0, 0)))
        matches = [
            (dy, dx, f)
            for dy in range(9)
            for dx in range(9)
            for f in (False, True)
            if np.array_equal(
                got,
                padded[dy : dy + 32, dx : dx + 32][:, ::-1]
                if f
                else padded[dy : dy + 32, dx : dx + 32],
            )
        ]
        assert matches, f"example {index} is not a crop of its padded image"
        flips += matches[0][2]
    assert 10 < flips < 54  # about half flipped


def test_eval_batches_cover_each_example_once_with_a_mask():
    images, labels = _random_split(n=37)
    batches = list(data.eval_batches(images, labels, batch_size=16, num_devices=2))
    assert len(batches) == 3
    for b in batches:
        assert b["image"].shape == (16, 32, 32, 3) and b["mask"].shape == (16,)
        assert b["image"].dtype == np.uint8
        assert b["mask"].dtype == np.float32 and b["label"].dtype == np.int32
    mask = np.concatenate([b["mask"] for b in batches])
    np.testing.assert_array_equal(mask, np.r_[np.ones(37), np.zeros(11)])
    np.testing.assert_array_equal(np.concatenate([b["image"] for b in batches])[:37], images)
    assert not batches[-1]["image"][5:].any()
    np.testing.assert_array_equal(np.concatenate([b["label"] for b in batches])[:37], labels)
    with pytest.raises(ValueError, match="batch_size"):
        list(data.eval_batches(images, labels, batch_size=15, num_devices=2))


def test_device_crop_flip_and_normalize_equal_the_numpy_reference():
    """Given the same offsets and flips, `augment.crop_flip` is the NumPy reference's pixel for
    pixel (every offset and both flips occur); `augment.normalize` matches it to 1 ulp-ish
    (float32: XLA may fuse the multiply-add; atol 1e-6 on values within ±3).
    """
    import jax.numpy as jnp

    from train import augment

    rng = np.random.default_rng(7)
    n = 2 * 81
    images = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
    grid = np.stack(np.meshgrid(np.arange(9), np.arange(9), indexing="ij"), -1).reshape(81, 2)
    offsets = np.concatenate([grid, grid]).astype(np.int32)
    flips = np.arange(n) >= 81
    want = _numpy_augment.crop_flip(images, offsets, flips)
    got = augment.crop_flip(jnp.asarray(images), jnp.asarray(offsets), jnp.asarray(flips))
    assert got.dtype == jnp.uint8
    np.testing.assert_array_equal(np.asarray(got), want)
    np.testing.assert_allclose(
        np.asarray(augment.normalize(jnp.asarray(want))),
        _numpy_augment.normalize(want),
        rtol=0,
        atol=1e-6,
    )


def test_device_augment_depends_on_key_and_global_index_only():
    """A shard augmented with its `index_offset` equals that slice of the whole batch; the draws
    cover every offset and flip about half; other keys draw otherwise."""
    import jax
    import jax.numpy as jnp

    from train import augment

    images = jnp.asarray(_random_split(n=64, seed=4)[0])
    key = jax.random.PRNGKey(11)
    whole = np.asarray(augment.augment(images, key))
    part = np.asarray(augment.augment(images[16:32], key, index_offset=16))
    np.testing.assert_array_equal(part, whole[16:32])
    assert not np.array_equal(np.asarray(augment.augment(images, jax.random.PRNGKey(12))), whole)
    offsets, flips = augment.random_crop_flip_params(key, 2048)
    assert set(np.unique(np.asarray(offsets)).tolist()) == set(range(9))
    assert 0.45 < float(np.mean(np.asarray(flips))) < 0.55
    _, none = augment.random_crop_flip_params(key, 64, flip=False)
    assert not np.asarray(none).any()
    # Each output is its image's padded crop, mirrored or not (the numpy reference's semantics).
    offsets, flips = augment.random_crop_flip_params(key, 64)
    want = _numpy_augment.normalize(
        _numpy_augment.crop_flip(np.asarray(images), np.asarray(offsets), flips)
    )
    np.testing.assert_allclose(whole, want, rtol=0, atol=1e-6)
    with pytest.raises(TypeError, match="uint8"):
        augment.augment(images.astype(jnp.float32), key)


def test_decode_pngs_round_trips_every_png_filter_and_jpeg():
    rng = np.random.default_rng(0)
    smooth = np.cumsum(rng.integers(0, 3, (20, 32, 32, 3)), axis=2).astype(np.uint8)
    images = np.concatenate([smooth, rng.integers(0, 256, (20, 32, 32, 3), dtype=np.uint8)])
    blobs = []
    for i, image in enumerate(images):
        buffer = io.BytesIO()
        PIL.Image.fromarray(image).save(buffer, format="png", compress_level=i % 10)
        blobs.append(buffer.getvalue())
    gray = io.BytesIO()
    PIL.Image.fromarray(images[0]).save(gray, format="jpeg")  # not a PNG: Pillow's path
    blobs.append(gray.getvalue())
    out = data.decode_pngs(blobs, (32, 32, 3))
    np.testing.assert_array_equal(out[:-1], images)
    np.testing.assert_array_equal(out[-1], np.asarray(PIL.Image.open(io.BytesIO(blobs[-1]))))


def _png(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    PIL.Image.fromarray(image).save(buffer, format="png")
    return buffer.getvalue()


def test_decode_pngs_variable_size_feature_grayscale_and_mismatch():
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (5, 12, 20), dtype=np.uint8)  # grayscale: Pillow gives (H, W)
    out = data.decode_pngs([_png(i) for i in images], (None, None, 1))
    np.testing.assert_array_equal(out, images[..., None])
    other = rng.integers(0, 256, (12, 21), dtype=np.uint8)
    with pytest.raises(ValueError, match=r"image 2 decodes to shape \(12, 21, 1\); expected"):
        data.decode_pngs([_png(images[0]), _png(images[1]), _png(other)], (None, None, 1))
    with pytest.raises(ValueError, match=r"expected \(32, 32, 1\)"):
        data.decode_pngs([_png(images[0])], (32, 32, 1))


@pytest.mark.skipif(not _REAL_TAR.exists(), reason=f"{_REAL_TAR} is absent")
def test_reading_the_real_cifar10_jpeg_tar():
    source = prepare_data.read_source(_REAL_TAR, max_per_class=15)
    assert source.class_names == (
        "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
    )  # fmt: skip
    for split in ("train", "test"):
        items = source.splits[split]
        assert len(items) == 150
        assert [i.label for i in items] == sorted(i.label for i in items)
        assert all(i.path.split("/")[1] == source.class_names[i.label] for i in items)
        images = np.stack([prepare_data.decode_image(i.path, i.data) for i in items])
        assert images.shape == (150, 32, 32, 3) and images.dtype == np.uint8
        assert 0.35 < images.mean() / 255 < 0.6
