"""pytorch-cifar's MobileNetV2 (2,296,922 parameters) in PyTorch: the peer of the train-step bench.

Imported only where torch is installed. The layout is kuangliu/pytorch-cifar `models/mobilenetv2.py`:
stem 3×3 conv 32 (stride 1); blocks `(expansion, out, n, stride)` from `CFG`, each 1×1 expand →
3×3 depthwise → 1×1 project with BN after each and ReLU after the first two, and a 1×1 conv + BN
shortcut at stride 1 when in != out (identity when in == out); 1×1 conv 320 → 1280; global
average pool; linear. `width` and `cfg` (not in pytorch-cifar; defaults give its net) build the
narrower and shorter nets the weight-conversion tests use, channels rounded as sepconv_jax's.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from sepconv_jax.models.common import make_divisible

CFG = ((1, 16, 1, 1), (6, 24, 2, 1), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2))
CFG += ((6, 320, 1, 1),)
NUM_PARAMS = 2_296_922


class Block(nn.Module):
    """Expand 1×1 → depthwise 3×3 → project 1×1 (linear bottleneck), with the shortcut."""

    def __init__(self, cin: int, cout: int, expansion: int, stride: int):
        super().__init__()
        planes = expansion * cin
        self.stride = stride
        self.conv1 = nn.Conv2d(cin, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, groups=planes, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, cout, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential()
        if stride == 1 and cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: Any) -> Any:
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return out + self.shortcut(x) if self.stride == 1 else out


class MobileNetV2(nn.Module):
    """MobileNetV2 for 32×32 images, `(N, 3, 32, 32)` → `(N, num_classes)` logits."""

    def __init__(self, num_classes: int = 10, width: float = 1.0, cfg: tuple = CFG):
        super().__init__()
        stem, last = make_divisible(32 * width), make_divisible(1280 * max(1.0, width))
        self.conv1 = nn.Conv2d(3, stem, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(stem)
        blocks, cin = [], stem
        for t, c, n, s in cfg:
            for i in range(n):
                blocks.append(Block(cin, make_divisible(c * width), t, s if i == 0 else 1))
                cin = make_divisible(c * width)
        self.layers = nn.Sequential(*blocks)
        self.conv2 = nn.Conv2d(cin, last, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(last)
        self.linear = nn.Linear(last, num_classes)

    def forward(self, x: Any) -> Any:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layers(out)
        out = F.relu(self.bn2(self.conv2(out)))
        out = F.adaptive_avg_pool2d(out, 1).flatten(1)
        return self.linear(out)


def num_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def train_step(
    batch: int, dtype: str, *, compiled: bool = False, num_batches: int = 4
) -> tuple[nn.Module, Callable[[int], Any]]:
    """The PyTorch training step the benchmarks time: SGD-Nesterov (lr 0.1, momentum 0.9, weight
    decay 5e-4) on label-smoothed (0.1) cross-entropy, channels_last, bfloat16 by autocast.

    Args:
      batch: images per step (random `(batch, 3, 32, 32)` inputs, `num_batches` of them rotated).
      dtype: `"float32"` or `"bfloat16"`.
      compiled: run the model under `torch.compile`.
      num_batches: distinct synthetic batches.

    Returns:
      `(model, step)`: `step(i)` runs one step on batch `i % num_batches` and returns the loss
      (asynchronously on a GPU). On the GPU when one is available.
    """
    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.backends.cudnn.benchmark = True
    torch.backends.cudnn.allow_tf32 = True  # XLA's DEFAULT precision uses TF32 as well
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.manual_seed(0)
    cl = torch.channels_last
    model = MobileNetV2().to(device).to(memory_format=cl)
    forward = model
    if compiled:
        torch._dynamo.reset()  # a fresh compile per configuration (no dynamic-shape reuse)
        forward = torch.compile(model)
    opt = torch.optim.SGD(
        model.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4
    )
    loss_fn = nn.CrossEntropyLoss(label_smoothing=0.1)
    batches = [
        (
            torch.randn(batch, 3, 32, 32, device=device).to(memory_format=cl),
            torch.randint(0, 10, (batch,), device=device),
        )
        for _ in range(num_batches)
    ]
    bf16 = dtype == "bfloat16"

    def step(i: int) -> Any:
        x, y = batches[i % num_batches]
        opt.zero_grad(set_to_none=True)
        with torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=bf16):
            loss = loss_fn(forward(x), y)
        loss.backward()
        opt.step()
        return loss

    return model, step
