"""The command line beyond CSV: Parquet input, the benchmark subcommand, progress output."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from msft_forecast.cli import build_parser, load_series, main


def _frame(n: int = 120) -> pd.DataFrame:
    t = pd.date_range("2024-03-01", periods=n, freq="h")
    y = np.sin(np.arange(n) * 2 * np.pi / 24)
    return pd.DataFrame({"when": t, "load": 5 + y, "temp": 2 * y, "note": ["x"] * n})


def test_parquet_reads_like_csv(tmp_path: Path) -> None:
    pytest.importorskip("pyarrow")
    frame = _frame()
    frame.iloc[[5, 6], 1] = np.nan  # empty cells are missing values
    frame = frame.drop(index=[50, 51])  # so is a gap in the time stamps
    frame.to_parquet(tmp_path / "in.parquet", index=False)
    frame.to_csv(tmp_path / "in.csv", index=False)
    from_parquet, freq_p = load_series(tmp_path / "in.parquet", None, None, None)
    from_csv, freq_c = load_series(tmp_path / "in.csv", None, None, None)
    assert freq_p == freq_c == "h"
    assert list(from_parquet.columns) == ["load", "temp"]  # the text column is skipped
    assert len(from_parquet) == 120 and from_parquet["load"].isna().sum() == 4
    pd.testing.assert_frame_equal(from_parquet, from_csv, check_freq=False)
    # a named column and a given frequency
    only, freq = load_series(tmp_path / "in.parquet", "when", ["temp"], "h")
    assert list(only.columns) == ["temp"] and freq == "h"


def test_parquet_forecast_end_to_end(tiny_moirai_dir, tmp_path: Path) -> None:
    pytest.importorskip("pyarrow")
    _frame(200).to_parquet(tmp_path / "in.parquet", index=False)
    out = tmp_path / "fc.csv"
    code = main(
        ["forecast", str(tmp_path / "in.parquet"), "--horizon", "6", "--columns", "load"]
        + ["--backbone", str(tiny_moirai_dir), "--context", "64", "--max-steps", "1"]
        + ["--batch-size", "4", "--num-samples", "20", "--quantiles", "0.05", "0.95"]
        + ["--quiet", "--output", str(out)]
    )
    assert code == 0
    result = pd.read_csv(out)
    assert list(result.columns) == ["time", "series", "mean", "q0.05", "q0.95"]
    assert len(result) == 6 and (result["q0.05"] <= result["q0.95"]).all()


def test_unreadable_parquet_is_one_line(tmp_path: Path, capsys) -> None:
    (tmp_path / "bad.parquet").write_bytes(b"not parquet at all")
    assert main(["forecast", str(tmp_path / "bad.parquet"), "--horizon", "2"]) == 2
    err = capsys.readouterr().err.strip()
    assert "cannot be read" in err and len(err.splitlines()) == 1


def test_progress_is_on_unless_quiet() -> None:
    parse = build_parser().parse_args
    assert parse(["forecast", "x.csv", "--horizon", "1"]).quiet is False
    assert parse(["forecast", "x.csv", "--horizon", "1", "--quiet"]).quiet is True
    # the former switches still work
    assert parse(["forecast", "x.csv", "--horizon", "1", "--no-verbose"]).quiet is True
    assert parse(["forecast", "x.csv", "--horizon", "1", "--verbose"]).quiet is False


def test_benchmark_help_and_bad_data_folder(tmp_path: Path, capsys) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "msft_forecast.cli", "benchmark", "--help"],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0 and "--datasets" in out.stdout and "--strategies" in out.stdout
    code = main(["benchmark", "--root", str(tmp_path), "--datasets", "ETTh1"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "ETTh1" in err and len(err.splitlines()) == 1
