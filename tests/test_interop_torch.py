"""`sepconv_jax.interop.from_torch` against PyTorch's own outputs (pytorch-cifar's MobileNetV2).

The peer is the project's PyTorch MobileNetV2-CIFAR (`benchmarks/torch_mobilenet_v2.py`,
pytorch-cifar's layout) in eval mode, with every weight, bias and BatchNorm γ, β, running mean
and variance drawn at random first, so that no branch hides behind identity statistics.
"""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import jax  # noqa: E402

from benchmarks import torch_mobilenet_v2 as tm  # noqa: E402
from sepconv_jax import models  # noqa: E402
from sepconv_jax.interop import fold_batchnorm, from_torch  # noqa: E402

#: float32 logits agree to this fraction of their largest magnitude.
RTOL = 1e-5
#: pytorch-cifar's stages, one block each (as `mobilenet_v2_tiny`).
TINY_CFG = tuple((t, c, 1, s) for t, c, _, s in tm.CFG)


def torch_net(seed: int, **kwargs) -> "torch.nn.Module":
    """A pytorch-cifar MobileNetV2 in eval mode with every parameter and BN statistic random."""
    torch.manual_seed(seed)
    net = tm.MobileNetV2(**kwargs)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0.0, 0.2)
                m.running_mean.normal_(0.0, 0.2)
                m.running_var.uniform_(0.5, 2.0)
            elif isinstance(m, torch.nn.Linear):
                m.bias.normal_(0.0, 0.5)
    return net.eval()


def apply(module, variables, x: np.ndarray) -> np.ndarray:
    return np.asarray(jax.jit(lambda v, x: module.apply(v, x, train=False))(variables, x))


def compare(net, module, variables) -> tuple[np.ndarray, np.ndarray]:
    """Checks `module` against `net` on a fresh `(2, 32, 32, 3)` batch; returns it and the logits."""
    x = np.random.default_rng(0).normal(size=(2, 32, 32, 3)).astype(np.float32)
    with torch.no_grad():
        want = net(torch.from_numpy(x.transpose(0, 3, 1, 2))).numpy()
    got = apply(module, variables, x)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=0, atol=RTOL * np.abs(want).max())
    return x, got


@pytest.fixture(scope="module")
def tiny():
    """A 7-class, width-0.5, one-block-per-stage net and its state_dict."""
    net = torch_net(1, num_classes=7, width=0.5, cfg=TINY_CFG)
    return net, net.state_dict()


def test_pytorch_cifar_mobilenet_v2_logits_equal_pytorch():
    net = torch_net(0)
    module, variables = from_torch("mobilenet_v2", net.state_dict(), source="pytorch-cifar")
    assert (module.width, module.num_classes, module.padding) == (1.0, 10, "torch")
    assert module.bn_epsilon == net.bn1.eps
    compare(net, module, variables)


def test_tiny_from_safetensors_reads_width_and_classes(tiny, tmp_path):
    safetensors_torch = pytest.importorskip("safetensors.torch")
    net, sd = tiny
    path = tmp_path / "net.safetensors"
    safetensors_torch.save_file(sd, str(path))
    module, variables = from_torch("mobilenet_v2_tiny", path, source="pytorch-cifar")
    assert (module.width, module.num_classes) == (0.5, 7)
    x, logits = compare(net, module, variables)
    # PyTorch's symmetric padding matters at stride 2: TF "SAME" gives other logits.
    same = module.clone(padding="tf")
    assert not np.allclose(apply(same, variables, x), logits, atol=1e-3)
    folded, folded_variables = fold_batchnorm(module, variables, input_shape=(1, 32, 32, 3))
    np.testing.assert_allclose(
        apply(folded, folded_variables, x), logits, rtol=0, atol=1e-5 * np.abs(logits).max()
    )


def test_pth_checkpoint_of_a_data_parallel_net(tiny, tmp_path):
    """pytorch-cifar's `main.py` saves `{"net": state_dict, ...}` of a `DataParallel` net."""
    net, sd = tiny
    path = tmp_path / "ckpt.pth"
    torch.save({"net": {f"module.{k}": v for k, v in sd.items()}, "acc": 0.0}, path)
    module, variables = from_torch("mobilenet_v2_tiny", str(path), source="pytorch-cifar")
    want = from_torch("mobilenet_v2_tiny", sd, source="pytorch-cifar")[1]
    jax.tree.map(np.testing.assert_array_equal, variables, want)
    assert module.num_classes == 7


def test_numpy_state_dict_and_bad_keys_raise_one_error(tiny):
    sd = {k: v.numpy() for k, v in tiny[1].items()}
    from_torch("mobilenet_v2_tiny", sd, source="pytorch-cifar")  # numpy arrays load
    bad = dict(sd)
    del bad["layers.2.bn2.running_var"]
    bad["layers.3.conv9.weight"] = np.ones((4, 4, 1, 1), np.float32)
    bad["layers.4.conv2.weight"] = sd["layers.4.conv2.weight"][:, :, :2]
    with pytest.raises(ValueError) as err:
        from_torch("mobilenet_v2_tiny", bad, source="pytorch-cifar")
    msg = str(err.value)
    assert "missing: no torch key gives batch_stats/block2/core/depthwise_norm/var" in msg
    assert "unexpected: layers.3.conv9.weight (4, 4, 1, 1)" in msg
    assert f"mis-shaped: layers.4.conv2.weight {bad['layers.4.conv2.weight'].shape}" in msg
    with pytest.raises(ValueError, match=r"first problems:[\s\S]*and \d+ more"):
        from_torch("mobilenet_v2", sd, source="pytorch-cifar")  # 7 blocks for 17: many


def test_unsupported_sources_names_and_widths_raise():
    with pytest.raises(NotImplementedError, match="source='timm' is not supported yet"):
        from_torch("mobilenet_v2", {}, source="timm")
    with pytest.raises(NotImplementedError, match="source='torchvision' is not supported yet"):
        from_torch("mobilenet_v2", {}, source="torchvision")
    with pytest.raises(ValueError, match="source must be one of"):
        from_torch("mobilenet_v2", {}, source="keras")
    with pytest.raises(ValueError, match="name must be one of"):
        from_torch("mobilenet_v2_full", {}, source="pytorch-cifar")
    with pytest.raises(TypeError, match="state_dict must be a mapping"):
        from_torch("mobilenet_v2", 3, source="pytorch-cifar")
    # Width 0.25: block 0 is 8 → 8 at expansion 1, where the two nets' residuals differ.
    sd = tm.MobileNetV2(width=0.25, cfg=TINY_CFG).state_dict()
    with pytest.raises(ValueError, match="block 0 has expansion 1"):
        from_torch("mobilenet_v2_tiny", sd, source="pytorch-cifar")


def test_padding_field_default_and_check():
    assert models.create("mobilenet_v2").padding == "tf"
    with pytest.raises(ValueError, match=r"padding must be one of \('tf', 'torch'\)"):
        models.create("mobilenet_v2", padding="same")
