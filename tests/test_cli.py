"""The msft-forecast command line, end to end and on bad input."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from msft_forecast.cli import main


def _csv(path, n: int = 200, **extra) -> str:
    t = pd.date_range("2024-01-01", periods=n, freq="h")
    y = np.sin(np.arange(n) * 2 * np.pi / 24)
    frame = pd.DataFrame({"timestamp": t, "load": 5 + y, "temp": 2 * y, **extra})
    frame.to_csv(path, index=False)
    return str(path)


def test_help_of_every_subcommand() -> None:
    for args in (["--help"], ["forecast", "--help"]):
        out = subprocess.run(
            [sys.executable, "-m", "msft_forecast.cli", *args], capture_output=True, text=True
        )
        assert out.returncode == 0 and "usage: msft-forecast" in out.stdout
    assert "--horizon" in out.stdout and "--strategy" in out.stdout


def test_forecast_a_csv_end_to_end(tiny_moirai_dir, tmp_path, capsys) -> None:
    path = _csv(tmp_path / "in.csv")
    out, png = tmp_path / "out.csv", tmp_path / "out.png"
    code = main(
        [
            "forecast",
            path,
            "--horizon",
            "12",
            "--backbone",
            str(tiny_moirai_dir),
            "--context",
            "64",
            "--max-steps",
            "2",
            "--batch-size",
            "4",
            "--num-samples",
            "20",
            "--output",
            str(out),
            "--plot",
            str(png),
        ]
    )
    assert code == 0
    result = pd.read_csv(out, parse_dates=["time"])
    assert list(result.columns) == ["time", "series", "mean", "q0.1", "q0.5", "q0.9"]
    assert sorted(result["series"].unique()) == ["load", "temp"]
    assert result["time"].min() == pd.Timestamp("2024-01-09 08:00")  # the step after the data
    assert (result["q0.1"] <= result["q0.9"]).all()
    assert png.stat().st_size > 10_000
    assert "scale weights" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: str(p / "missing.csv"), "no such file"),
        (lambda p: _csv(p / "a.csv", note=["x"] * 200) and None, None),
        (
            lambda p: (
                pd.DataFrame(
                    {"t": ["2024-01-01", "2024-01-01", "2024-01-02"], "v": [1, 2, 3]}
                ).to_csv(p / "d.csv", index=False),
                str(p / "d.csv"),
            )[1],
            "duplicated",
        ),
        (
            lambda p: (
                pd.DataFrame(
                    {"t": ["2024-01-01", "2024-01-02", "2024-01-05"], "v": [1, 2, 3]}
                ).to_csv(p / "i.csv", index=False),
                str(p / "i.csv"),
            )[1],
            "irregular",
        ),
        (
            lambda p: (
                pd.DataFrame(
                    {"t": pd.date_range("2024", periods=3, freq="D"), "v": [1, np.inf, 3]}
                ).to_csv(p / "f.csv", index=False),
                str(p / "f.csv"),
            )[1],
            "infinite",
        ),
        (
            lambda p: (
                pd.DataFrame({"v": [1, 2, 3]}).to_csv(p / "n.csv", index=False),
                str(p / "n.csv"),
            )[1],
            "no time column",
        ),
    ],
)
def test_bad_input_exits_2_with_one_line(tmp_path, capsys, make, message) -> None:
    path = make(tmp_path)
    if path is None:  # a non-numeric column is skipped when columns are not named ...
        path = str(tmp_path / "a.csv")
        code = main(["forecast", path, "--horizon", "2", "--columns", "note"])
        message = "not numeric"  # ... and refused when named
    else:
        code = main(["forecast", path, "--horizon", "2"])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert message in err and len(err.splitlines()) == 1


def _refuse_fit(monkeypatch) -> None:
    """Make any fine-tune fail loudly: the checks under test must come before it."""
    from msft_forecast import engine

    def no_fit(*args, **kwargs):
        raise AssertionError("fine-tuning started before the output paths were checked")

    monkeypatch.setattr(engine.MSFTEngine, "fit", no_fit)


@pytest.mark.parametrize(
    ("flag", "target", "message"),
    [
        ("--output", "missing/out.csv", "does not exist; create it first"),
        ("--plot", "missing/plot.png", "does not exist; create it first"),
        ("--output", "in.csv", "is the input file"),
        ("--output", ".", "is a folder"),
    ],
)
def test_output_locations_are_checked_before_fine_tuning(
    tmp_path, capsys, monkeypatch, flag, target, message
) -> None:
    _refuse_fit(monkeypatch)
    path = _csv(tmp_path / "in.csv")
    before = (tmp_path / "in.csv").read_bytes()
    monkeypatch.chdir(tmp_path)
    code = main(["forecast", path, "--horizon", "4", flag, target])
    err = capsys.readouterr().err.strip()
    assert code == 2 and message in err and len(err.splitlines()) == 1
    assert (tmp_path / "in.csv").read_bytes() == before


@pytest.mark.parametrize("sep", [";", "\t", "|"])
def test_separator_is_recognised_or_given(tiny_moirai_dir, tmp_path, capsys, sep) -> None:
    path = tmp_path / "in.csv"
    t = pd.date_range("2024-01-01", periods=120, freq="h")
    pd.DataFrame({"when": t, "load": 5 + np.sin(np.arange(120) / 4)}).to_csv(
        path, index=False, sep=sep
    )
    common = ["--horizon", "3", "--backbone", str(tiny_moirai_dir), "--context", "32",
              "--strategy", "zero-shot", "--num-samples", "10"]  # fmt: skip
    assert main(["forecast", str(path), *common]) == 0
    assert main(["forecast", str(path), "--sep", sep, *common]) == 0
    out = capsys.readouterr().out
    assert "load" in out


def test_warnings_are_one_line_each(tmp_path, capsys, monkeypatch) -> None:
    import warnings

    from msft_forecast import cli

    def noisy(args):
        warnings.warn("first\nwarning text", UserWarning, stacklevel=1)
        warnings.warn("first\nwarning text", UserWarning, stacklevel=1)
        warnings.warn("second", FutureWarning, stacklevel=1)
        return 0

    monkeypatch.setattr(cli, "cmd_forecast", noisy)
    path = _csv(tmp_path / "in.csv")
    assert main(["forecast", path, "--horizon", "4"]) == 0
    err = capsys.readouterr().err.splitlines()
    assert err == ["msft-forecast: warning: first warning text", "msft-forecast: warning: second"]


def test_defaults_run_offline_and_name_the_backbone_and_seed(tmp_path, capsys) -> None:
    """The default backbone is the settings' ``"moirai"``: offline (tests never use the
    network) it falls back to the bundled one with one warning, and the output names the
    checkpoint used and the seed drawn, which repeats the run."""
    from msft_forecast.backbones.cache import clear_backbone_cache

    clear_backbone_cache()  # the fallback warns once per process: make this the first time
    path = _csv(tmp_path / "in.csv", n=120)
    common = ["forecast", path, "--horizon", "3", "--context", "32", "--strategy", "zero-shot",
              "--num-samples", "10"]  # fmt: skip
    assert main(common) == 0
    captured = capsys.readouterr()
    assert "backbone bundled:moirai-tiny (offline fallback for 'moirai'" in captured.out
    warnings = [line for line in captured.err.splitlines() if "warning:" in line]
    assert len(warnings) == 1 and "moirai-tiny" in warnings[0]
    seed_line = next(line for line in captured.out.splitlines() if line.startswith("seed "))
    seed = seed_line.split()[1]
    assert f"--seed {seed} repeats" in seed_line
    first = captured.out.split("backbone")[0]
    assert main([*common, "--seed", seed]) == 0
    again = capsys.readouterr().out
    assert again.split("backbone")[0] == first and f"seed {seed}\n" in again


def _covariate_csv(path, n: int = 200, horizon: int = 12) -> str:
    """``load`` with ``temp`` known up to the last load and ``price`` known ``horizon``
    steps ahead (the last rows leave ``load`` and ``temp`` empty)."""
    t = pd.date_range("2024-01-01", periods=n + horizon, freq="h")
    price = np.cos(np.arange(n + horizon) * 2 * np.pi / 24)
    load = 5 + price + 0.1 * np.arange(n + horizon) / n
    frame = pd.DataFrame({"timestamp": t, "load": load, "temp": 2 * price, "price": price})
    frame.loc[n:, ["load", "temp"]] = np.nan
    frame.to_csv(path, index=False)
    return str(path)


def test_forecast_with_covariate_columns(tiny_moirai_dir, tmp_path, capsys) -> None:
    path = _covariate_csv(tmp_path / "cov.csv")
    out = tmp_path / "out.csv"
    code = main(["forecast", path, "--horizon", "12", "--backbone", str(tiny_moirai_dir),
                 "--context", "64", "--max-steps", "1", "--batch-size", "4",
                 "--past-covariates", "temp", "--future-covariates", "price",
                 "--output", str(out)])  # fmt: skip
    assert code == 0
    result = pd.read_csv(out, parse_dates=["time"])
    assert list(result["series"].unique()) == ["load"]  # covariates are never forecast
    assert result["time"].min() == pd.Timestamp("2024-01-09 08:00")  # after the last load
    assert len(result) == 12 and result["mean"].notna().all()


def test_future_covariates_need_the_forecast_period_in_the_file(tmp_path, capsys) -> None:
    path = _csv(tmp_path / "in.csv")  # no empty forecast period at the end
    code = main(["forecast", path, "--horizon", "12", "--backbone", "moirai-tiny",
                 "--future-covariates", "temp"])  # fmt: skip
    assert code == 2
    assert "last 12 rows (--horizon) are the forecast period" in capsys.readouterr().err
    code = main(["forecast", path, "--horizon", "12", "--past-covariates", "nope"])
    assert code == 2 and "covariate columns ['nope']" in capsys.readouterr().err
