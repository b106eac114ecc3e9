"""Progress people can see (issue 19, item 3): a bar where a person watches stderr, plain lines
in logs, silence with ``verbose=False``, and a one-line summary after every fit."""

from __future__ import annotations

import logging
import sys
import types

import numpy as np
import pandas as pd
import pytest

from msft_forecast.engine import MSFTEngine
from msft_forecast.training import progress

FAST = dict(context_length=48, prediction_length=12, max_steps=2, batch_size=4, patch_size=16,
            val_check_interval=1, random_state=0)  # fmt: skip


@pytest.fixture
def series(seasonal_series) -> list[np.ndarray]:
    return [seasonal_series[:200]]


def test_plain_lines_where_nobody_watches(tiny_moirai_dir, series, capsys):
    """Under pytest stderr is not a terminal: plain lines, never a carriage-return bar."""
    assert not progress.interactive_display()
    MSFTEngine(backbone=str(tiny_moirai_dir), **FAST).fit(series)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith(progress.PREFIX)]
    assert "\r" not in err
    assert lines[0] == "msft_forecast: fine-tuning: 2 steps at most, validation every 1"
    assert "step 0/2: validation loss" in err  # the starting point
    assert "step 2/2, training loss" in err and "step 2/2: validation loss" in err
    assert len(lines) <= 2 + 2 * 2  # start, validations, a tenth of the budget each


def test_verbose_false_is_silent(tiny_moirai_dir, series, capsys):
    MSFTEngine(backbone=str(tiny_moirai_dir), verbose=False, **FAST).fit(series)
    assert progress.PREFIX not in capsys.readouterr().err


def test_a_bar_where_a_person_watches(tiny_moirai_dir, series, capsys, monkeypatch):
    monkeypatch.setattr(progress, "interactive_display", lambda: True)
    MSFTEngine(backbone=str(tiny_moirai_dir), **FAST).fit(series)
    out, err = capsys.readouterr()
    assert "\r" in err and "Epoch" in err  # Lightning's TQDMProgressBar, on stderr
    assert progress.PREFIX not in err and out == ""


def test_jupyter_and_terminals_are_watched(monkeypatch):
    class ZMQInteractiveShell:  # the Jupyter kernel's shell, by its class name
        pass

    fake = types.SimpleNamespace(get_ipython=lambda: ZMQInteractiveShell())
    monkeypatch.setitem(sys.modules, "IPython", fake)
    assert progress.interactive_display()
    fake.get_ipython = lambda: None  # IPython imported, no kernel running
    assert not progress.interactive_display()
    monkeypatch.setattr(sys, "stderr", types.SimpleNamespace(isatty=lambda: True))
    assert progress.interactive_display()
    assert progress.progress_display(False, 10, None) == (False, [])
    bar, shown = progress.progress_display(True, 10, None)
    assert bar and isinstance(shown[0], progress.StderrProgressBar)


def test_every_fit_logs_a_one_line_summary(tiny_moirai_dir, series, caplog):
    with caplog.at_level(logging.INFO, logger="msft_forecast"):
        engine = MSFTEngine(backbone=str(tiny_moirai_dir), verbose=False, **FAST).fit(series)
    summary = engine.report_.summary()
    assert [r.getMessage() for r in caplog.records].count(summary) == 1
    assert "\n" not in summary
    r = engine.report_
    assert summary.startswith(f"fit: {r.steps} steps, best validation loss ")
    for part in (f"at step {r.best_step}", "patch size 16", "horizon 12", "context 48", " s"):
        assert part in summary


def test_front_ends_hold_the_summary(tiny_moirai_dir, series):
    from darts import TimeSeries

    from msft_forecast.darts import MSFTModel
    from msft_forecast.sktime import MSFTForecaster

    y = pd.Series(series[0], index=pd.period_range("2020-01-01", periods=200, freq="h"))
    settings = {k: v for k, v in FAST.items() if k not in ("context_length", "prediction_length")}
    f = MSFTForecaster(backbone=str(tiny_moirai_dir), context_length=48, verbose=False,
                       **settings).fit(y, fh=list(range(1, 13)))  # fmt: skip
    assert f.fit_summary_ == f.engine_.report_.summary() and "horizon 12" in f.fit_summary_
    assert "fit_summary" in f.get_fitted_params()
    m = MSFTModel(input_chunk_length=48, output_chunk_length=12, backbone=str(tiny_moirai_dir),
                  **settings).fit(TimeSeries.from_values(series[0]), verbose=False)  # fmt: skip
    assert m.fit_summary == m.engine.report_.summary() and "context 48" in m.fit_summary


def test_cli_progress_on_stderr_unless_quiet(tiny_moirai_dir, tmp_path, capsys):
    from msft_forecast.cli import main

    t = pd.date_range("2024-01-01", periods=150, freq="h")
    pd.DataFrame({"time": t, "load": 5 + np.sin(np.arange(150) / 4)}).to_csv(
        tmp_path / "in.csv", index=False
    )
    args = ["forecast", str(tmp_path / "in.csv"), "--horizon", "4", "--backbone",
            str(tiny_moirai_dir), "--context", "32", "--max-steps", "2", "--batch-size", "4",
            "--num-samples", "10", "--seed", "0", "--output",
            str(tmp_path / "out.csv")]  # fmt: skip
    assert main(args) == 0
    err = capsys.readouterr().err
    assert "msft_forecast: fine-tuning: 2 steps at most" in err
    assert "msft-forecast: fit: 2 steps, " in err and "horizon 4, context 32" in err
    assert main([*args, "--quiet"]) == 0
    err = capsys.readouterr().err
    assert "msft_forecast:" not in err and "fit:" not in err
