"""Tests for `train.compare`: the results table and the comparison plot of finished runs."""

import json

import pytest

from train import compare
from train.metrics import MetricsLog


def _fake_run(workdir, conv, accuracy):
    workdir.mkdir()
    log = MetricsLog(workdir / "metrics.jsonl")
    for epoch in (1, 2):
        log.write("train", 10 * epoch, epoch=epoch, loss=2.0 / epoch, accuracy=0.5)
        log.write("eval", 10 * epoch, epoch=epoch, test_accuracy=accuracy * epoch / 2)
    results = {
        "model": "mobilenet_v2",
        "conv": conv,
        "final_test_accuracy": accuracy,
        "best_test_accuracy": accuracy,
        "epochs": 2.0,
        "params": 1234567,
        "flops_per_image": 2.5e8,
        "wall_time_s": 12.3,
        "time_to_first_step_s": 4.0,
        "train_images_per_sec": None,  # a run without timed steps: shown as a dash
        "step_time_ms": 20.0,
    }
    (workdir / "results.json").write_text(json.dumps(results))
    return workdir


def test_table_and_plot(tmp_path):
    runs = [
        _fake_run(tmp_path / "a", "separable", 0.8691),
        _fake_run(tmp_path / "b", "full", 0.8616),
    ]
    loaded = [compare.load_run(w) for w in runs]
    md = compare.table([r for r, _ in loaded])
    lines = md.splitlines()
    assert len(lines) == 4
    assert "| mobilenet_v2 (separable) | 86.91% |" in lines[2]
    assert "1,234,567" in lines[3] and "| — |" in lines[3]
    compare.plots.plot_comparison({"a": loaded[0][1], "b": loaded[1][1]}, tmp_path / "c.png")
    assert (tmp_path / "c.png").stat().st_size > 1000


def test_unfinished_run_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="results.json"):
        compare.load_run(tmp_path)


def test_curves_show_the_test_series_as_a_line_and_the_learning_rate():
    from train import plots

    events = [
        {
            "event": "train",
            "step": s,
            "loss": 2.0 - s / 100,
            "accuracy": s / 100,
            "learning_rate": 0.1 * s / 40,
        }
        for s in range(10, 50, 10)
    ] + [{"event": "eval", "step": s, "test_loss": 1.5, "test_accuracy": s / 80} for s in (20, 40)]
    fig = plots.curves_figure(events, title="t")
    loss, accuracy, lr = fig.axes
    test_line = [line for line in accuracy.get_lines() if "test" in line.get_label()][0]
    assert list(test_line.get_xdata()) == [20, 40] and test_line.get_linestyle() == "-"
    (lr_line,) = lr.get_lines()
    assert list(lr_line.get_ydata()) == [0.025, 0.05, 0.075, 0.1]
