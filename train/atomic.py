"""Whole-or-nothing file writes: a temporary file beside the target, then a rename."""

from __future__ import annotations

import os
import pathlib


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Writes `path` whole or not at all: a temporary file beside it, then a rename."""
    path = pathlib.Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
