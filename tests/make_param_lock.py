"""Writes the parameter-tree lock that `test_param_lock.py` checks today's models against.

Run from the repository root after a *deliberate* change of a model's variables:

    python -m tests.make_param_lock                    # the models' entries and the checkpoint
    python -m tests.make_param_lock --keep-checkpoint  # the models' entries only (a new model)

It rewrites `tests/data/param_lock.json` (every registered model's variable paths, shapes and
dtypes; for the tiny variants also a checksum of each leaf's init values) and
`tests/data/param_lock_checkpoint/` (an orbax checkpoint of the tiny MobileNetV1's train state
under the tiny training config, written by `train.checkpoint`). The test rebuilds the trees
from the code it runs and compares them with these files, so a refactor that must keep
checkpoints loading is checked against what the code produced when the lock was written, not
against itself.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import math
import pathlib
import shutil
import tempfile
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

import sepconv_jax as sj
from sepconv_jax import models
from train import checkpoint, setup, step
from train.configs import tiny

DATA = pathlib.Path(__file__).resolve().parent / "data"
LOCK = DATA / "param_lock.json"
CHECKPOINT = DATA / "param_lock_checkpoint"
#: One image's shape; the init input is one image of zeros (the trees do not depend on it).
IMAGE_SHAPE = (32, 32, 3)
SEED = 0
#: The model whose train state is checkpointed, the step it is saved at and its steps per epoch.
CHECKPOINT_MODEL = "mobilenet_v1_tiny"  # the smallest: 15k parameters, 0.2 MB on disk
CHECKPOINT_STEP = 5
STEPS_PER_EPOCH = 4
#: Models with at most this many variable elements (the tiny test variants) have their init
#: values locked too; a jitted init of each takes 1-3 s of compilation on a CPU.
MAX_VALUE_LOCKED = 500_000
#: Flat init values sampled per leaf (at evenly spaced indices) besides its sum and sum of squares.
SAMPLES = 8

Leaf = dict[str, Any]


def _is_nnx(name: str) -> bool:
    return name.endswith("_nnx")


def _linen_init(name: str, rng: jax.Array) -> dict[str, Any]:
    x = jnp.zeros((1, *IMAGE_SHAPE), jnp.float32)
    return models.create(name).init({"params": rng}, x, train=False)


def _nnx_state(name: str) -> nnx.State:
    return nnx.state(models.create(name, rngs=nnx.Rngs(SEED)))


def _flat_linen(variables: dict[str, Any]) -> dict[str, tuple[None, Any]]:
    flat = jax.tree_util.tree_flatten_with_path(variables)[0]
    return {"/".join(k.key for k in path): (None, leaf) for path, leaf in flat}


def _flat_nnx(state: nnx.State) -> dict[str, tuple[str, Any]]:
    return {
        "/".join(str(k) for k in path): (type(v).__name__, v.get_value())
        for path, v in nnx.to_flat_state(state)
    }


def variables(name: str, concrete: bool) -> dict[str, tuple[str | None, Any]]:
    """`{path: (kind, leaf)}` of a registered model's variables initialised with `SEED`.

    Linen paths start with the collection (`params/...`, `batch_stats/...`), `kind` is `None`;
    nnx paths are `nnx.state`'s, `kind` the variable type (`Param`, `BatchStat`). `concrete`:
    arrays (a jitted init), else `jax.ShapeDtypeStruct`s (no values computed).
    """
    if _is_nnx(name):
        build = (lambda f: jax.jit(f)()) if concrete else nnx.eval_shape
        return _flat_nnx(build(lambda: _nnx_state(name)))
    init = functools.partial(_linen_init, name, jax.random.key(SEED))
    if concrete:
        return _flat_linen(jax.jit(init)())
    with sj.ops.grouped_conv_only():  # one op per depthwise conv: faster to trace
        return _flat_linen(jax.eval_shape(init))


def describe(kind: str | None, leaf: Any) -> Leaf:
    """What the lock records of every leaf: `shape`, `dtype` and the nnx `kind`."""
    out: Leaf = {"shape": list(leaf.shape), "dtype": str(leaf.dtype)}
    return out if kind is None else {**out, "kind": kind}


def checksum(value: np.ndarray) -> Leaf:
    """Sum, sum of squares (float64) and `SAMPLES` values of a float leaf at fixed indices."""
    flat = np.asarray(value, np.float64).reshape(-1)
    idx = np.unique(np.linspace(0, flat.size - 1, SAMPLES).astype(np.int64))
    return {
        "sum": float(flat.sum()),
        "sumsq": float(np.square(flat).sum()),
        "sample": [float(v) for v in flat[idx]],
    }


def digest(value: Any) -> str:
    """SHA-256 of a leaf's dtype, shape and bytes (the checkpoint must restore bit for bit)."""
    a = np.ascontiguousarray(np.asarray(value))
    return hashlib.sha256(f"{a.dtype}{a.shape}".encode() + a.tobytes()).hexdigest()


def train_state_template() -> step.TrainState:
    """The train state at step 0 that `train.setup.build` makes for the tiny config with
    `CHECKPOINT_MODEL` on one device: what the trainer restores a checkpoint into."""
    config = tiny.get_config()
    config.model = CHECKPOINT_MODEL
    devices = jax.local_devices()[:1]
    return setup.build(
        config, devices, steps_per_epoch=STEPS_PER_EPOCH, image_shape=IMAGE_SHAPE
    ).state


def _state_to_save() -> step.TrainState:
    """`train_state_template()` with every float leaf redrawn and the counters at
    `CHECKPOINT_STEP`, so that a restore cannot pass by returning the fresh init."""
    rng = np.random.default_rng(SEED)

    def redraw(leaf: jax.Array) -> jax.Array:
        if jnp.issubdtype(leaf.dtype, jnp.floating):
            return jnp.asarray(rng.standard_normal(leaf.shape), leaf.dtype)
        if jnp.issubdtype(leaf.dtype, jnp.signedinteger):  # step, optax counts
            return jnp.full(leaf.shape, CHECKPOINT_STEP, leaf.dtype)
        return leaf  # the uint32 dropout key

    return jax.tree.map(redraw, train_state_template())


def checkpoint_leaves(state: Any) -> dict[str, str]:
    """`{keystr(path): digest}` of every leaf of a train state."""
    flat = jax.tree_util.tree_flatten_with_path(state)[0]
    return {jax.tree_util.keystr(path): digest(leaf) for path, leaf in flat}


def write_checkpoint() -> dict[str, Any]:
    """Writes `CHECKPOINT` with `train.checkpoint.Checkpoints`; returns what the lock records.

    Orbax's `commit_success.txt` markers (they hold the absolute path written to; a local
    checkpoint is complete by its atomic rename without them) are left out of the copy.
    """
    state = _state_to_save()
    meta = {"step": CHECKPOINT_STEP, "epoch": CHECKPOINT_STEP / STEPS_PER_EPOCH, "best": {}}
    with tempfile.TemporaryDirectory() as tmp:
        ckpts = checkpoint.Checkpoints(tmp, keep=1, async_save=False)
        ckpts.save(CHECKPOINT_STEP, state, meta)
        ckpts.close()
        shutil.rmtree(CHECKPOINT, ignore_errors=True)
        shutil.copytree(tmp, CHECKPOINT, ignore=shutil.ignore_patterns("commit_success.txt"))
    return {
        "model": CHECKPOINT_MODEL,
        "step": CHECKPOINT_STEP,
        "meta": meta,
        "leaves": checkpoint_leaves(state),
    }


def make_lock(keep_checkpoint: bool = False) -> dict[str, Any]:
    """The lock: every registered model's tree, init checksums of the small ones, the checkpoint."""
    lock: dict[str, Any] = {
        "about": "python -m tests.make_param_lock (see its docstring); checked by "
        "tests/test_param_lock.py",
        "image_shape": list(IMAGE_SHAPE),
        "seed": SEED,
        "models": {},
    }
    for name in models.list_models():
        leaves = variables(name, concrete=False)
        if sum(math.prod(leaf.shape) for _, leaf in leaves.values()) <= MAX_VALUE_LOCKED:
            leaves = variables(name, concrete=True)
            tree = {p: {**describe(k, v), "init": checksum(v)} for p, (k, v) in leaves.items()}
        else:
            tree = {p: describe(k, v) for p, (k, v) in leaves.items()}
        lock["models"][name] = tree
    if keep_checkpoint:
        lock["checkpoint"] = json.loads(LOCK.read_text())["checkpoint"]
    else:
        lock["checkpoint"] = write_checkpoint()
    return lock


def _dumps(value: Any, depth: int = 0) -> str:
    """JSON with one line per leaf record (dicts nested deeper than a leaf path are inline)."""
    if not isinstance(value, dict) or depth == 3:
        return json.dumps(value, sort_keys=True)
    pad = " " * (depth + 1)
    items = [f"{pad}{json.dumps(k)}: {_dumps(v, depth + 1)}" for k, v in sorted(value.items())]
    end = "\n" if depth == 0 else ""
    return "{\n" + ",\n".join(items) + "\n" + " " * depth + "}" + end


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--keep-checkpoint",
        action="store_true",
        help="rewrite the models' entries only; keep the committed checkpoint and its record",
    )
    args = parser.parse_args(argv)
    DATA.mkdir(exist_ok=True)
    lock = make_lock(keep_checkpoint=args.keep_checkpoint)
    LOCK.write_text(_dumps(lock))
    leaves = sum(len(t) for t in lock["models"].values())
    print(f"wrote {LOCK.name}: {len(lock['models'])} models, {leaves} leaves")
    if not args.keep_checkpoint:
        size = sum(f.stat().st_size for f in CHECKPOINT.rglob("*") if f.is_file())
        print(f"wrote {CHECKPOINT.name}/: {size / 1e3:.0f} kB")


if __name__ == "__main__":
    main()
