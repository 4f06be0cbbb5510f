"""Test setup: simulated CPU devices, fast XLA compiles, strict dtype/rank promotion.

Set before JAX starts; subprocesses the tests spawn (the CLI, the SIGKILL resume run) inherit
the environment. Flags already in `XLA_FLAGS` are kept.
"""

import os

_FLAGS = {
    # 8 simulated CPU devices for the pmap / shard_map tests.
    "--xla_force_host_platform_device_count": "8",
    # LLVM at -O0: the tests' programs are tiny, so compiling dominates (init of the tiny
    # MobileNetV1: 8.4 s -> 1.6 s on a 2-core CPU); results agree within every test tolerance.
    "--xla_backend_optimization_level": "0",
}
_flags = os.environ.get("XLA_FLAGS", "")
os.environ["XLA_FLAGS"] = " ".join(
    [_flags] + [f"{k}={v}" for k, v in _FLAGS.items() if k not in _flags]
).strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402

jax.config.update("jax_numpy_dtype_promotion", "strict")
jax.config.update("jax_numpy_rank_promotion", "raise")
