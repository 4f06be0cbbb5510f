"""The benchmark scripts: their `--quick` modes run and write their tables; helpers compute right.

No timing is asserted: CI machines differ. Each script runs in a subprocess, as a user runs it.
"""

from __future__ import annotations

import importlib.metadata
import json
import math
import os
import signal
import subprocess
import sys
from pathlib import Path

import jax.numpy as jnp
import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from _train_utils import write_image_folder  # noqa: E402

from benchmarks import common, gpu_round, op_contenders  # noqa: E402
from benchmarks import ops as ops_bench  # noqa: E402

# Header cells each script's printed table must contain.
TABLE_HEADERS = {
    "ops": ("dtype", "pass", "dw:xla", "sep:xla", "full:xla"),
    "cost": ("model", "params", "XLA"),
    "train_step": ("impl", "img/s", "peak MiB"),
    "cifar10": ("test acc.", "steady step ms", "to first step s"),
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


def _check_table(path: Path, command: str) -> None:
    text = path.read_text()
    assert text.startswith("# ")
    assert f"Command: `{command}" in text, text[:500]
    assert "| device |" in text


def test_cost_quick_mode_prints_and_writes_table(tmp_path):
    out = tmp_path / "results" / "cost.md"
    proc = _run("cost", "--quick", "--out", str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    for header in TABLE_HEADERS["cost"]:
        assert header in proc.stdout, (header, proc.stdout[-2000:])
    _check_table(out, f"python -m benchmarks.cost --quick --out {out}")
    assert "error" not in proc.stdout.lower() and "failed" not in proc.stdout.lower(), proc.stdout


def test_gpu_round_quick_runs_every_part_and_writes_its_tables(tmp_path):
    """`gpu_round --quick` runs ops, train_step (their own `--quick` command lines) and a tiny
    training run on an image folder, which it first prepares with `train.prepare_data`."""
    images, out, cache = tmp_path / "images", tmp_path / "out", tmp_path / "cache"
    write_image_folder(images, {"train": 32, "test": 16})
    proc = _run(
        "gpu_round", "--quick", "--data", str(images), "--out", str(out), "--cache-dir", str(cache)
    )
    assert proc.returncode == 0, (proc.stdout[-2000:], proc.stderr[-3000:])
    for script in ("ops", "train_step", "cifar10"):
        for header in TABLE_HEADERS[script]:
            assert header in proc.stdout, (header, proc.stdout[-3000:])
    assert "error" not in proc.stdout.lower() and "failed" not in proc.stdout.lower(), proc.stdout
    _check_table(out / "ops.md", f"python -m benchmarks.ops --out {out / 'ops.md'} --quick")
    _check_table(
        out / "train_step.md",
        f"python -m benchmarks.train_step --out {out / 'train_step.md'} --quick",
    )
    _check_table(out / "cifar10.md", f"python -m train.prepare_data --source={images}")
    cifar = (out / "cifar10.md").read_text()
    assert "mobilenet_v1_tiny (separable)" in cifar and "| 1.00 | 2 |" in cifar, cifar
    assert json.loads((out / "cifar10" / "results.json").read_text())["steps"] == 2
    summary = (out / "summary.md").read_text()
    _check_table(out / "summary.md", "python -m benchmarks.gpu_round --quick")
    for part in ("ops", "train_step", "prepare_data", "cifar10"):
        assert f"| {part} | `python -m " in summary and "| ok |" in summary, summary


def test_gpu_round_bundle_without_wheels_copies_the_data_and_prints_the_command(tmp_path):
    archive = tmp_path / "images.tar.gz"
    archive.write_bytes(b"not really a tar: the bundle step only copies it")
    proc = _run(
        "gpu_round", "--bundle", str(tmp_path / "bundle"), "--no-wheels", "--data", str(archive)
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    copied = tmp_path / "bundle" / "data" / "images.tar.gz"
    assert copied.read_bytes() == archive.read_bytes()
    assert f"python -m benchmarks.gpu_round --data {copied}" in proc.stdout, proc.stdout
    assert "pip install" not in proc.stdout


class _FakeDist:
    def __init__(self, version, requires):
        self.version, self.requires = version, requires


def test_requirement_closure_follows_markers_and_extras():
    dists = {
        "app": _FakeDist(
            "1.0", ["lib[fast]>=2", "old; python_version < '3.9'", "tool; extra == 'dev'"]
        ),
        "lib": _FakeDist("2.1", ["shared", "speedup; extra == 'fast'"]),
        "speedup": _FakeDist("0.3", ["Shared_Dep"]),
        "shared": _FakeDist("5.0", None),
        "shared-dep": _FakeDist("1.1", []),
        "base": _FakeDist("9.0", ["shared"]),
        "old": _FakeDist("0.1", []),
        "tool": _FakeDist("0.2", []),
    }

    def distribution(name):
        key = name.lower().replace("_", "-")
        if key not in dists:
            raise importlib.metadata.PackageNotFoundError(name)
        return dists[key]

    found = gpu_round.requirement_closure(["app", "absent"], "3.11", distribution=distribution)
    assert found == {
        "app": "1.0",
        "lib": "2.1",
        "shared": "5.0",
        "speedup": "0.3",
        "shared-dep": "1.1",
    }
    old = gpu_round.requirement_closure(["app"], "3.8", distribution=distribution)
    assert old["old"] == "0.1"


def test_missing_packages_of_this_environment():
    missing = gpu_round.missing_packages("3.11")
    assert {"tensorflow-datasets", "ml-collections", "grain", "array-record"} <= set(missing)
    assert not {"jax", "jaxlib", "flax", "numpy", "orbax-checkpoint", "pyarrow"} & set(missing)
    assert missing["tensorflow-datasets"] == importlib.metadata.version("tensorflow-datasets")


def test_problem_floor_bytes_closed_form():
    p = ops_bench.Problem("sep", (2, 4, 4, 8, 16), "bfloat16", "fwd")
    x, y, w = 2 * 4 * 4 * 8 * 2, 2 * 4 * 4 * 16 * 2, (9 * 8 + 8 * 16) * 2
    assert p.floor_bytes() == x + w + y
    pb = ops_bench.Problem("sep", (2, 4, 4, 8, 16), "bfloat16", "fwdbwd")
    assert pb.floor_bytes() == (x + w + y) + (y + x + w) + (x + w)
    dw = ops_bench.Problem("dw", (2, 4, 4, 8, 16), "float32", "fwd")
    assert dw.floor_bytes() == 2 * 4 * 4 * 8 * 4 * 2 + 9 * 8 * 4


def test_formula_flops():
    assert op_contenders.formula_flops("dw", (1, 2, 2, 3, 5)) == 2 * 4 * 3 * 9
    assert op_contenders.formula_flops("sep", (1, 2, 2, 3, 5)) == 2 * 4 * 3 * 9 + 2 * 4 * 3 * 5
    assert op_contenders.formula_flops("full", (1, 2, 2, 3, 5)) == 2 * 4 * 9 * 3 * 5


def test_parse_shapes():
    assert ops_bench._parse_shapes("2x8x8x4x16,1x4x4x8->8") == ((2, 8, 8, 4, 16), (1, 4, 4, 8, 8))
    assert ops_bench._parse_shapes("quick") == ops_bench.SHAPE_SETS["quick"]
    with pytest.raises(Exception, match="BxHxWxCxCo|B,H,W,C,Co"):
        ops_bench._parse_shapes("2x8x8")


def test_time_jax_returns_per_call_times():
    x = jnp.arange(16.0, dtype=jnp.float32)
    for per_call in (False, True):
        t = common.time_jax(
            lambda a: a * a, [(x,), (x + 1.0,)], budget_s=0.0, min_samples=3, per_call=per_call
        )
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
    assert op_contenders.library_fwd_flops(op, shape) == op_contenders.formula_flops(op, shape)


def test_gpu_round_uses_a_prepared_data_dir_as_it_is(tmp_path):
    prepared = tmp_path / "tfds"
    (prepared / "cifar10" / "3.0.2").mkdir(parents=True)
    (prepared / "cifar10" / "3.0.2" / "dataset_info.json").write_text("{}")
    parts = gpu_round.cifar_parts(prepared, tmp_path / "out", tmp_path / "cache", False, 5, 80.0)
    assert [p.name for p in parts] == ["cifar10"] and parts[0].limit_s == 80.0
    assert f"--config.data_dir={prepared}" in parts[0].argv
    images = tmp_path / "images"
    images.mkdir()
    prepare, run = gpu_round.cifar_parts(
        images, tmp_path / "out", tmp_path / "cache", False, 5, 80.0
    )
    assert prepare.name == "prepare_data" and f"--source={images}" in prepare.argv
    assert (
        run.needs == "prepare_data"
        and f"--config.data_dir={tmp_path / 'cache' / 'tfds'}" in run.argv
    )


def test_gpu_round_runs_parts_in_order_passing_on_time_and_stopping_overruns(tmp_path, monkeypatch):
    monkeypatch.setattr(gpu_round, "GRACE_S", 0.5)
    part = gpu_round.Part
    parts = [
        part("fails", ["-c", "import sys; print('out'); sys.exit(3)"], 5.0, ""),
        part("needs_it", ["-c", "pass"], 5.0, "", needs="fails"),
        part("quick", ["-c", "pass"], 5.0, ""),
        part("overruns", ["-c", "import time; time.sleep(60)"], -10.0, ""),
    ]
    gpu_round.run_parts(parts, dict(os.environ), tmp_path / "logs")
    failed, skipped, quick, overran = parts
    assert failed.rc == 3 and (tmp_path / "logs" / "fails.out").read_text() == "out\n"
    assert skipped.rc is None and skipped.note == "not run: fails failed"
    assert quick.rc == 0 and quick.limit_s > 5.0  # what "fails" left of its 5 s
    assert overran.rc == -signal.SIGTERM and overran.note.startswith("stopped after")
    assert overran.wall_s < 30


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


def test_step_profile_quick_attributes_the_step_to_layers_and_passes(tmp_path):
    # benchmarks/step_profile.py: the trace's XLA ops named by layer, pass and block.
    from benchmarks import step_profile

    assert step_profile.classify(
        "jit(<lambda>)/transpose(jvp(MobileNetV2))/block2/core/expand_norm/add_any"
    ) == ("block2", "expand_norm", "backward")
    assert step_profile.classify("jit(<lambda>)/jvp(MobileNetV2)/block1/core/jit(relu)/max") == (
        "block1",
        "relu",
        "forward",
    )
    assert step_profile.classify("")[1] == "(no op_name)"
    out = tmp_path / "profile.md"
    proc = _run("step_profile", "--quick", "--out", str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "forward ms" in proc.stdout and "backward ms" in proc.stdout, proc.stdout[-2000:]
    _check_table(out, "python -m benchmarks.step_profile --quick")
    rows = {
        line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:5]]
        for line in out.read_text().split("## JAX by layer and pass")[1].split("##")[0].splitlines()
        if line.startswith("| ") and not line.startswith("| layer")
    }
    for layer in ("depthwise", "expand", "project", "depthwise_norm"):
        forward, backward, _ = (float(v) for v in rows[layer])
        assert forward > 0 and backward > 0, (layer, rows[layer])
