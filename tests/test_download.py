"""The download path (`train/download.py`) run for real on a fake CIFAR-10 archive: tfds' own
download manager, extraction and array_record writer, with TensorFlow never imported."""

import json
import textwrap

import _train_utils  # noqa: I001 - the tests' own helper module (tests/ is on sys.path)
import pytest

# A tiny archive in CIFAR-10's binary format (cifar-10-batches-bin/{data_batch_1..5,test_batch}.bin:
# records of a label byte and 3072 CHW pixel bytes; batches.meta.txt: the class names) is put in
# a manual download folder; its size and checksum are registered for the cifar10 URL in place of
# the real archive's (the only change to tfds' path). Then the dataset is read back.
_SCRIPT = textwrap.dedent(
    """
    import hashlib, io, json, pathlib, sys, tarfile
    import numpy as np
    from tensorflow_datasets.core.download import checksums
    from train import data, download

    root = pathlib.Path(sys.argv[1])
    rng = np.random.default_rng(0)
    names = [f"class{c}" for c in range(10)]
    counts = {f"data_batch_{i}.bin": 3 for i in range(1, 6)} | {"test_batch.bin": 4}
    arrays = {}
    manual = root / "manual"
    manual.mkdir()
    archive = manual / "cifar-10-binary.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        def add(name, payload):
            info = tarfile.TarInfo(f"cifar-10-batches-bin/{name}")
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
        add("batches.meta.txt", ("\\n".join(names) + "\\n").encode())
        for name, n in counts.items():
            labels = rng.integers(0, 10, n).astype(np.uint8)
            images = rng.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8)
            add(name, np.concatenate([labels[:, None], images.reshape(n, -1)], 1).tobytes())
            arrays[name] = (images.transpose(0, 2, 3, 1), labels)
    payload = archive.read_bytes()
    url = "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz"
    download._Cifar10.url_infos = {
        url: checksums.UrlInfo(
            size=len(payload),
            checksum=hashlib.sha256(payload).hexdigest(),
            filename=archive.name,
        )
    }
    path = download.download_cifar10(root / "tfds", manual_dir=manual)
    tf_modules = sorted(m for m in sys.modules if m == "tensorflow" or m.startswith("tensorflow."))
    train_x, train_y = data.load_split("cifar10", "train", str(root / "tfds"))
    test_x, test_y = data.load_split("cifar10", "test", str(root / "tfds"))
    want_x = np.concatenate([arrays[f"data_batch_{i}.bin"][0] for i in range(1, 6)])
    want_y = np.concatenate([arrays[f"data_batch_{i}.bin"][1] for i in range(1, 6)])
    same = lambda x, y, wx, wy: sorted(zip(y.tolist(), x.reshape(len(x), -1).tolist())) == sorted(
        zip(wy.tolist(), wx.reshape(len(wx), -1).tolist()))
    print(json.dumps({
        "path": str(path.relative_to(root)),
        "tf_modules": tf_modules,
        "train_equal": same(train_x, train_y, want_x, want_y),
        "test_equal": same(test_x, test_y, *arrays["test_batch.bin"]),
        "shapes": [list(train_x.shape), list(test_x.shape)],
    }))
    """
)


@pytest.mark.slow
def test_tfds_cifar10_download_path_writes_array_record_without_tensorflow(tmp_path):
    run = _train_utils.run_python("-c", _SCRIPT, str(tmp_path))
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert result["tf_modules"] == []
    assert result["path"] == "tfds/cifar10/3.0.2"
    assert result["shapes"] == [[15, 32, 32, 3], [4, 32, 32, 3]]
    assert result["train_equal"] and result["test_equal"]
