"""Loss and accuracy curves of a run, drawn from its `metrics.jsonl` into a PNG."""

from __future__ import annotations

import pathlib
from collections.abc import Sequence
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only: no display on training machines or in CI

import matplotlib.pyplot as plt  # noqa: E402


def _series(
    events: Sequence[dict[str, Any]], kind: str, key: str, x: str = "step"
) -> tuple[list, list]:
    points = [(e[x], e[key]) for e in events if e["event"] == kind and key in e and x in e]
    points = [(s, v) for s, v in points if isinstance(v, (int, float))]
    return [s for s, _ in points], [v for _, v in points]


def _label(ax: Any, xlabel: str, ylabel: str) -> None:
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend()


def _save(fig: Any, path: str | pathlib.Path, title: str) -> None:
    if title:
        fig.suptitle(title)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def curves_figure(events: Sequence[dict[str, Any]], title: str = "") -> Any:
    """A three-panel figure against step: loss and accuracy (train, test), learning rate.

    Args:
      events: the records of `metrics.jsonl` (`"train"` events with `loss`/`accuracy`/
        `learning_rate`, `"eval"` events with `test_loss`/`test_accuracy`).
      title: a figure title, e.g. the model and run.

    Returns:
      The matplotlib figure (the caller saves or closes it).
    """
    fig, (ax_loss, ax_acc, ax_lr) = plt.subplots(1, 3, figsize=(14, 4), constrained_layout=True)
    for ax, train_key, test_key, label in (
        (ax_loss, "loss", "test_loss", "loss"),
        (ax_acc, "accuracy", "test_accuracy", "accuracy"),
    ):
        steps, values = _series(events, "train", train_key)
        ax.plot(steps, values, label=f"train {label}", linewidth=1)
        steps, values = _series(events, "eval", test_key)
        ax.plot(steps, values, "o-", markersize=3, label=f"test {label}")
        _label(ax, "step", label)
    steps, values = _series(events, "train", "learning_rate")
    ax_lr.plot(steps, values, label="learning rate (logged steps)", linewidth=1)
    _label(ax_lr, "step", "learning rate")
    if title:
        fig.suptitle(title)
    return fig


def plot_curves(
    events: Sequence[dict[str, Any]], path: str | pathlib.Path, title: str = ""
) -> None:
    """Writes `curves_figure(events, title)` to the PNG `path`."""
    _save(curves_figure(events, title), path, "")


def plot_comparison(
    runs: dict[str, Sequence[dict[str, Any]]], path: str | pathlib.Path, title: str = ""
) -> None:
    """Writes a two-panel PNG comparing runs: test accuracy and training loss against epoch.

    Args:
      runs: label → the run's `metrics.jsonl` records (`"eval"` and `"train"` events, each with
        `epoch`).
      path: the PNG to write.
      title: a figure title.
    """
    fig, (ax_acc, ax_loss) = plt.subplots(1, 2, figsize=(10, 4), constrained_layout=True)
    for label, events in runs.items():
        epochs, values = _series(events, "eval", "test_accuracy", x="epoch")
        ax_acc.plot(epochs, values, "o-", markersize=3, label=label)
        epochs, values = _series(events, "train", "loss", x="epoch")
        ax_loss.plot(epochs, values, linewidth=1, label=label)
    _label(ax_acc, "epoch", "test accuracy")
    _label(ax_loss, "epoch", "training loss")
    _save(fig, path, title)
