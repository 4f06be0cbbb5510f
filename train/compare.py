"""Compares finished runs: a markdown table of their `results.json` and one PNG of their curves.

Command:
  python -m train.compare WORKDIR [WORKDIR ...] --out=DIR

Writes `DIR/comparison.md` (test accuracy, parameters, FLOPs, time, images/s per run) and
`DIR/comparison.png` (test accuracy and training loss against epoch, all runs on one plot).
"""

from __future__ import annotations

import json
import pathlib
from collections.abc import Sequence
from typing import Any

from absl import app, flags

from train import plots
from train.metrics import read_events

_OUT = flags.DEFINE_string("out", None, "Directory for comparison.md and comparison.png.")

_COLUMNS = (
    ("run", "{label}"),
    ("final test acc.", "{final_test_accuracy:.2%}"),
    ("best test acc.", "{best_test_accuracy:.2%}"),
    ("epochs", "{epochs:g}"),
    ("params", "{params:,}"),
    ("FLOPs / image (fwd)", "{flops_per_image:,.0f}"),
    ("wall time (s)", "{wall_time_s:.0f}"),
    ("to first step (s)", "{time_to_first_step_s:.0f}"),
    ("train images/s", "{train_images_per_sec:,.0f}"),
    ("step (ms)", "{step_time_ms:.1f}"),
)


def load_run(workdir: str | pathlib.Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """`(results, events)` of a finished run.

    Raises:
      FileNotFoundError: `workdir` has no `results.json` (the run did not finish).
    """
    workdir = pathlib.Path(workdir)
    path = workdir / "results.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: is {workdir} a finished run's workdir?")
    return json.loads(path.read_text()), read_events(workdir / "metrics.jsonl")


def run_label(results: dict[str, Any]) -> str:
    """`model (conv)`: how a run is named in the table and the plot's legend."""
    return f"{results['model']} ({results['conv']})"


def table(results: Sequence[dict[str, Any]]) -> str:
    """A markdown table, one row per run's results (`label` = `model (conv)`)."""
    lines = [
        "| " + " | ".join(name for name, _ in _COLUMNS) + " |",
        "|" + "---|" * len(_COLUMNS),
    ]
    for r in results:
        fields = {"label": run_label(r), **r}
        cells = []
        for _, fmt in _COLUMNS:
            try:
                cells.append(fmt.format(**fields))
            except (KeyError, TypeError, ValueError):
                cells.append("—")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> None:
    """Loads the runs named on the command line and writes the table and the plot."""
    if len(argv) < 2 or not _OUT.value:
        raise app.UsageError("usage: python -m train.compare WORKDIR [WORKDIR ...] --out=DIR")
    out = pathlib.Path(_OUT.value)
    out.mkdir(parents=True, exist_ok=True)
    runs = [load_run(w) for w in argv[1:]]
    markdown = table([r for r, _ in runs])
    (out / "comparison.md").write_text(markdown)
    plots.plot_comparison({run_label(r): events for r, events in runs}, out / "comparison.png")
    print(markdown)


if __name__ == "__main__":
    app.run(main)
