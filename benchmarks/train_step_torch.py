"""PyTorch side of the training-step benchmark: pytorch-cifar's MobileNetV2, eager or compiled."""

from __future__ import annotations

import time
from typing import Any

from benchmarks.train_step_records import NUM_BATCHES, Config, Result, time_windows


def bench_torch(cfg: Config, *, warmup: int, windows: int, steps: int) -> Result:
    """Times an SGD-Nesterov step of pytorch-cifar's MobileNetV2 (eager or `torch.compile`)."""
    import torch

    from benchmarks import torch_mobilenet_v2 as tm

    result = Result(cfg, step_source="benchmarks/torch_mobilenet_v2.py")
    cuda = torch.cuda.is_available()
    device = "cuda" if cuda else "cpu"
    torch.backends.cudnn.benchmark = True
    torch.backends.cudnn.allow_tf32 = True  # XLA's DEFAULT precision uses TF32 as well
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.manual_seed(0)
    cl = torch.channels_last
    model = tm.MobileNetV2().to(device).to(memory_format=cl)
    result.params = tm.num_params(model)
    if result.params != tm.NUM_PARAMS:
        raise RuntimeError(
            f"torch MobileNetV2 has {result.params} parameters, want {tm.NUM_PARAMS}"
        )
    forward = model
    if cfg.impl == "torch-compile":
        torch._dynamo.reset()  # a fresh compile per configuration (no dynamic-shape reuse)
        forward = torch.compile(model)
    opt = torch.optim.SGD(
        model.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4
    )
    loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=0.1)
    batches = [
        (
            torch.randn(cfg.batch, 3, 32, 32, device=device).to(memory_format=cl),
            torch.randint(0, 10, (cfg.batch,), device=device),
        )
        for _ in range(NUM_BATCHES)
    ]
    bf16 = cfg.dtype == "bfloat16"

    def step(i: int) -> Any:
        x, y = batches[i % NUM_BATCHES]
        opt.zero_grad(set_to_none=True)
        with torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=bf16):
            loss = loss_fn(forward(x), y)
        loss.backward()
        opt.step()
        return loss

    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    for i in range(warmup):
        step(i)
    if cuda:
        torch.cuda.synchronize()
    result.warmup_s = time.perf_counter() - t0

    def window() -> float:
        if cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            for i in range(steps):
                step(i)
            end.record()
            end.synchronize()
            return start.elapsed_time(end) / steps
        start_t = time.perf_counter()
        for i in range(steps):
            step(i)
        return 1e3 * (time.perf_counter() - start_t) / steps

    result.step_ms, result.spread_pct = time_windows(window, windows)
    if cuda:
        result.peak_bytes = torch.cuda.max_memory_allocated()
    return result
