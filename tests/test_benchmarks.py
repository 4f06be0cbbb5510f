"""The benchmark scripts: their `--quick` modes run and write their tables; helpers compute right.

No timing is asserted: CI machines differ. Each script runs in a subprocess, as a user runs it.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import jax.numpy as jnp
import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks import common, op_problems  # noqa: E402
from benchmarks import ops as ops_bench  # noqa: E402

# Header cells each script's printed table must contain.
TABLE_HEADERS = {
    "ops": ("dtype", "pass", "dw:xla", "sep:xla", "full:xla"),
    "cost": ("model", "params", "XLA"),
    "train_step": ("impl", "img/s", "peak MiB"),
}


def _run(script: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONUNBUFFERED="1")
    return subprocess.run(
        [sys.executable, "-m", f"benchmarks.{script}", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


@pytest.mark.parametrize("script", sorted(TABLE_HEADERS))
def test_quick_mode_prints_and_writes_table(script, tmp_path):
    out = tmp_path / "results" / f"{script}.md"
    proc = _run(script, "--quick", "--out", str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    for header in TABLE_HEADERS[script]:
        assert header in proc.stdout, (header, proc.stdout[-2000:])
    text = out.read_text()
    assert text.startswith("# ")
    assert f"python -m benchmarks.{script} --quick --out" in text
    assert "| device |" in text
    assert "error" not in proc.stdout.lower() and "failed" not in proc.stdout.lower(), proc.stdout


def test_problem_floor_bytes_closed_form():
    p = ops_bench.Problem("sep", (2, 4, 4, 8, 16), "bfloat16", "fwd")
    x, y, w = 2 * 4 * 4 * 8 * 2, 2 * 4 * 4 * 16 * 2, (9 * 8 + 8 * 16) * 2
    assert p.floor_bytes() == x + w + y
    pb = ops_bench.Problem("sep", (2, 4, 4, 8, 16), "bfloat16", "fwdbwd")
    assert pb.floor_bytes() == (x + w + y) + (y + x + w) + (x + w)
    dw = ops_bench.Problem("dw", (2, 4, 4, 8, 16), "float32", "fwd")
    assert dw.floor_bytes() == 2 * 4 * 4 * 8 * 4 * 2 + 9 * 8 * 4


def test_formula_flops():
    assert op_problems.formula_flops("dw", (1, 2, 2, 3, 5)) == 2 * 4 * 3 * 9
    assert op_problems.formula_flops("sep", (1, 2, 2, 3, 5)) == 2 * 4 * 3 * 9 + 2 * 4 * 3 * 5
    assert op_problems.formula_flops("full", (1, 2, 2, 3, 5)) == 2 * 4 * 9 * 3 * 5


def test_parse_shapes():
    assert ops_bench._parse_shapes("2x8x8x4x16,1x4x4x8->8") == ((2, 8, 8, 4, 16), (1, 4, 4, 8, 8))
    assert ops_bench._parse_shapes("quick") == ops_bench.SHAPE_SETS["quick"]
    with pytest.raises(Exception, match="BxHxWxCxCo|B,H,W,C,Co"):
        ops_bench._parse_shapes("2x8x8")


def test_time_jax_returns_per_call_times():
    x = jnp.arange(16.0, dtype=jnp.float32)
    t = common.time_jax(lambda a: a * a, [(x,), (x + 1.0,)], budget_s=0.0, min_samples=3)
    assert t.n == 3 and t.sets == 2
    assert t.median_ms > 0 and math.isfinite(t.spread_pct)


def test_num_sets_and_budget():
    assert common.num_sets(10 * common.L2_BYTES, max_sets=16) == 2
    assert common.num_sets(1, max_sets=16) == 16
    assert common.num_sets(common.L2_BYTES, max_sets=16) == 3
    budget = common.Budget(10.0, rows=4, share=0.5, cap_s=100.0)
    assert 0.0 < budget.next_row() <= 1.25


def test_fmt_and_tables():
    assert common.fmt(None) == "—"
    assert common.fmt(float("nan")) == "—"
    assert common.fmt(0.012345) == "0.0123"
    assert common.fmt(12345.6) == "12,346"
    md = common.markdown_table(["a", "b"], [[1, 2]])
    assert md.splitlines() == ["| a | b |", "|---|---|", "| 1 | 2 |"]
    assert common.text_table(["a", "bb"], [["xyz", 1]]).splitlines()[1] == "xyz   1"


def test_torch_mobilenet_v2_matches_pytorch_cifar_count():
    pytest.importorskip("torch")
    from benchmarks import torch_mobilenet_v2 as tm

    assert tm.num_params(tm.MobileNetV2()) == tm.NUM_PARAMS == 2_296_922


@pytest.mark.parametrize("op", ["dw", "sep", "full"])
def test_library_flops_match_the_closed_form(op):
    shape = (2, 6, 5, 3, 7)
    assert op_problems.library_fwd_flops(op, shape) == op_problems.formula_flops(op, shape)


def test_causal_quick_mode_prints_and_writes_table(tmp_path):
    # benchmarks/causal.py: the sequence (causal 1-D depthwise conv) benchmark.
    out = tmp_path / "results" / "causal.md"
    proc = _run("causal", "--quick", "--out", str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    for header in ("prefill Mtok/s", "decode µs/token", "sepconv/copy", "decode max abs err"):
        assert header in proc.stdout, (header, proc.stdout[-2000:])
    text = out.read_text()
    assert text.startswith("# ") and "python -m benchmarks.causal --quick --out" in text
    assert "| device |" in text and "state copy" in text
    errors = [float(line.split("|")[-2]) for line in text.splitlines() if line.startswith("| 2×")]
    assert errors and max(errors) < 1e-5, errors  # every decode step agrees with the full call
