"""The causal character-model example runs end to end: train, generate with the cache, compare."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import jax

SCRIPT = Path(__file__).resolve().parents[1] / "examples" / "char_model.py"


def test_char_model_example_decodes_as_the_full_forward(capsys, monkeypatch):
    spec = importlib.util.spec_from_file_location("char_model", SCRIPT)
    example = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "char_model", example)  # flax dataclasses look it up
    spec.loader.exec_module(example)
    args = ["--steps", "2", "--batch", "2", "--seq", "16", "--width", "8", "--depth", "2"]
    with jax.numpy_dtype_promotion("standard"):  # optax's Adam mixes its int32 count in
        diff = example.main([*args, "--generate", "5"])
    out = capsys.readouterr().out
    assert "cached decoding vs full forward" in out and "2 steps in" in out
    assert diff < 1e-4
