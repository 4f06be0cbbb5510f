"""What the importers share: a net's expected variable shapes and the one listing of problems."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import traverse_util

#: How many problems a `ValueError` lists.
MAX_LISTED = 12


def expected_shapes(module: Any) -> dict[tuple[str, ...], tuple[int, ...]]:
    """The flat `{(collection, *path): shape}` of `module`'s variables (shapes only, no compute)."""
    x = jax.ShapeDtypeStruct((1, 64, 64, 3), jnp.float32)
    variables = jax.eval_shape(lambda x: module.init(jax.random.key(0), x, train=False), x)
    return {k: v.shape for k, v in traverse_util.flatten_dict(dict(variables)).items()}


def listed(problems: list[str]) -> str:
    """The first `MAX_LISTED` problems, one per indented line, and how many more there are."""
    more = f"\n  ... and {len(problems) - MAX_LISTED} more" if len(problems) > MAX_LISTED else ""
    return "\n  " + "\n  ".join(problems[:MAX_LISTED]) + more
