"""The benchmark runner on a user's own file: reading, split, season, windows, baselines."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from msft_forecast.benchmarks import classical, lsf, peers
from msft_forecast.data.tables import load_table, parse_split, resolve_split
from msft_forecast.frequencies import season_length


def _periodic(n: int, period: int, phase: float = 0.0, level: float = 10.0) -> np.ndarray:
    """A series that repeats exactly every ``period`` steps (seasonal naive is perfect on it)."""
    return level + np.round(np.sin(2 * np.pi * (np.arange(n) % period) / period + phase), 6)


def _run(argv: list[str], tmp_path: Path) -> tuple[list[lsf.RunResult], str]:
    out = tmp_path / "out.json"
    md = tmp_path / "out.md"
    results = lsf.main([*argv, "--json", str(out), "--markdown", str(md)])
    return results, md.read_text(encoding="utf-8")


def test_daily_wide_csv_split_season_and_windows(tmp_path: Path) -> None:
    rows = 400
    frame = pd.DataFrame(
        {
            "date": pd.date_range("2021-01-01", periods=rows, freq="D"),
            "shop_a": _periodic(rows, 7),
            "shop_b": _periodic(rows, 7, phase=1.0, level=50.0),
        }
    )
    path = tmp_path / "daily.csv"
    frame.to_csv(path, index=False)
    before = path.read_bytes()

    ds, split = load_table(path, horizon=14)
    assert (ds.freq, ds.season) == ("D", 7)
    assert (split.train, split.validation, split.test, split.protocol) == (280, 40, 80, "fractions")
    assert (ds.train_end, ds.val_end, ds.test_end) == (280, 320, 400)

    results, md = _run(
        ["--data", str(path), "--horizon", "14", "--strategies", "seasonal-naive", "last-value"],
        tmp_path,
    )
    assert path.read_bytes() == before  # the user's file is only read
    naive = next(r for r in results if r.strategy == "seasonal-naive")
    # auto stride: at most 64 origins per series over the 80 test rows (67 origins at stride 1)
    origins = len(range(320, 400 - 14 + 1, 2))
    assert naive.windows == 2 * origins
    assert naive.settings["season"] == 7
    assert naive.mse < 1e-10  # the last week repeated is exact: windows and season line up
    assert next(r for r in results if r.strategy == "last-value").mse > 0.1
    assert "daily: 2 series x 400 steps at frequency D, season 7" in md
    assert "split 280 / 40 / 80 rows (fractions)" in md


def test_weekly_long_table_with_series_of_different_lengths(tmp_path: Path) -> None:
    stamps = pd.date_range("2015-01-04", periods=300, freq="W-SUN")
    long = pd.concat(
        [
            pd.DataFrame({"unique_id": "north", "ds": stamps, "y": _periodic(300, 52)}),
            pd.DataFrame({"unique_id": "south", "ds": stamps[40:], "y": _periodic(260, 52, 2.0)}),
        ]
    ).sample(frac=1.0, random_state=0)  # rows in any order
    path = tmp_path / "weekly.csv"
    long.to_csv(path, index=False)
    long.to_parquet(tmp_path / "weekly.parquet")  # the same table as Parquet reads the same
    same, _ = load_table(tmp_path / "weekly.parquet", horizon=13, split="200,40,60")

    ds, split = load_table(path, horizon=13, split="200,40,60")
    assert ds.freq == "W-SUN" and ds.season == 52
    assert list(ds.frame.columns) == ["north", "south"]
    assert ds.frame["south"].iloc[:40].isna().all() and ds.frame["south"].iloc[40:].notna().all()
    assert (split.train, split.validation, split.test, split.protocol) == (200, 40, 60, "rows")
    pd.testing.assert_frame_equal(same.frame, ds.frame)

    results, _ = _run(
        ["--data", str(path), "--split", "200,40,60", "--horizon", "13", "--stride", "1",
         "--strategies", "seasonal-naive"],
        tmp_path,
    )  # fmt: skip
    assert results[0].windows == 2 * (60 - 13 + 1)
    assert results[0].mse < 1e-10


def test_short_monthly_series_uses_the_last_h_holdout(tmp_path: Path) -> None:
    """144 points, horizon 24: 70/10/20 leaves 14 validation rows, so last-h with a rolling
    origin: the last 35 rows are the test part, one origin per step, the last origin at T-h."""
    rows, horizon = 144, 24
    path = tmp_path / "short.csv"
    pd.DataFrame(
        {"month": pd.date_range("1949-01", periods=rows, freq="MS"), "y": _periodic(rows, 12)}
    ).to_csv(path, index=False)
    ds, split = load_table(path, horizon=horizon)
    assert ds.freq == "MS" and ds.season == 12
    assert split.protocol == "last-h" and split.origins_per_part == 13
    assert (split.train, split.validation, split.test) == (72, 36, 36)
    assert lsf.auto_stride(ds, horizon, split) == 1
    origins = lsf.test_origins(ds, horizon, 1)
    assert len(origins) == 13 and origins[-1] == rows - horizon

    results, md = _run(
        ["--data", str(path), "--horizon", str(horizon), "--strategies", "seasonal-naive",
         "autotheta"],
        tmp_path,
    )  # fmt: skip
    assert all(r.windows == 13 for r in results)
    assert "last-h, 13 rolling origins one step apart" in md
    assert "context 48 (cut from 512: the training split is short)" in md
    theta = next(r for r in results if r.strategy == "autotheta")
    assert theta.crps is not None and 0 <= theta.coverage80 <= 1


def test_split_too_short_names_the_part_and_the_fix() -> None:
    with pytest.raises(ValueError, match=r"validation part has 10 rows, fewer than the horizon"):
        resolve_split(100, 24, "0.7/0.1/0.2")
    with pytest.raises(ValueError, match=r"too short for the last-h holdout.*--split last-h:1"):
        resolve_split(60, 24)
    with pytest.raises(ValueError, match="fractions must add up to 1"):
        parse_split("0.5/0.2/0.2")
    with pytest.raises(ValueError, match="is not a split"):
        parse_split("train")


def test_bad_files_get_clear_errors(tmp_path: Path) -> None:
    irregular = tmp_path / "gaps.csv"
    pd.DataFrame(
        {"date": pd.to_datetime(["2020-01-01", "2020-01-02", "2020-01-05", "2020-01-09"]),
         "y": [1.0, 2.0, 3.0, 4.0]}
    ).to_csv(irregular, index=False)  # fmt: skip
    with pytest.raises(ValueError, match="could not infer the frequency.*--freq"):
        load_table(irregular, horizon=1)
    with pytest.raises(ValueError, match="off the 'W-SUN' grid"):
        load_table(irregular, horizon=1, freq="W-SUN")
    words = tmp_path / "words.csv"
    pd.DataFrame(
        {"date": pd.date_range("2020-01-01", periods=5, freq="D"), "y": ["1", "2", "x", "4", "5"]}
    ).to_csv(words, index=False)
    with pytest.raises(ValueError, match="column 'y' holds values that are not numbers, e.g. 'x'"):
        load_table(words, horizon=1)


def test_missing_steps_become_missing_values(tmp_path: Path) -> None:
    stamps = pd.date_range("2020-01-01", periods=200, freq="h").delete([50, 51])
    path = tmp_path / "hourly.csv"
    pd.DataFrame({"date": stamps, "y": np.arange(198.0)}).to_csv(path, index=False)
    ds, _ = load_table(path, horizon=24, freq="h")
    assert len(ds.frame) == 200 and ds.frame["y"].isna().sum() == 2 and ds.season == 24


@pytest.mark.parametrize(
    ("freq", "season"),
    [("h", 24), ("15min", 96), ("10min", 144), ("D", 7), ("B", 5), ("W-SAT", 52), ("MS", 12),
     ("ME", 12), ("QE-DEC", 4), ("YE", 1), ("2h", 12), ("30min", 48), ("SME", 24), ("s", 60),
     ("bh", 8), ("5D", 1), ("H", 24), ("15T", 96), ("M", 12), ("A-DEC", 1)],
)  # fmt: skip
def test_season_from_the_frequency(freq: str, season: int) -> None:
    assert season_length(freq) == season


@given(st.integers(1, 2000), st.integers(1, 200))
@settings(max_examples=200, deadline=None)
def test_resolved_split_always_fits_one_horizon(rows: int, horizon: int) -> None:
    """Whatever the length, a split either holds a horizon in each held-out part (and more
    than one in training) and covers at most the series, or says why not."""
    try:
        split = resolve_split(rows, horizon)
    except ValueError as err:
        assert "too short" in str(err)
        return
    assert split.train > horizon
    assert min(split.validation, split.test) >= horizon
    assert split.train + split.validation + split.test <= rows


def _scored(strategy: str, se: list[float], origin: list[int], seed: int = 0) -> lsf.RunResult:
    return lsf.RunResult(
        dataset="d", strategy=strategy, horizon=1, seed=seed, settings={},
        mse=float(np.mean(se)), mae=0.0, crps=None, coverage80=None, val_loss=None,
        initial_val_loss=None, steps=0, trainable_parameters=0, patch_size=0, scale_weights=[],
        fit_seconds=0.0, windows=len(se), extra={"window_se": se, "window_origin": origin},
    )  # fmt: skip


def test_bootstrap_tells_a_real_difference_from_noise() -> None:
    rng = np.random.default_rng(0)
    origin = list(np.repeat(np.arange(60), 3))
    base = rng.gamma(2.0, 0.5, size=180)
    clearly = [
        _scored("msft", list(base * 0.7), origin),
        _scored("msft", list(base * 0.72), origin, seed=1),
        _scored("dlinear", list(base), origin),
        _scored("msft-k0", list(base * 0.1), origin),  # a variant of msft: never "the other"
    ]
    row = lsf.bootstrap_table(clearly).splitlines()[2]
    assert "| d | dlinear |" in row and row.endswith("| better |")
    noisy = [
        _scored("msft", list(base * rng.uniform(0.5, 1.5, size=180)), origin),
        _scored("dlinear", list(base), origin),
    ]
    assert lsf.bootstrap_table(noisy).splitlines()[2].endswith("| within noise |")


def test_best_weights_callback_restores_the_best_check() -> None:
    module = torch.nn.Linear(1, 1)
    callback = peers.best_weights_callback("val_loss")
    trainer = SimpleNamespace(sanity_checking=False, global_step=0, callback_metrics={})
    for step, (weight, loss) in enumerate([(1.0, 0.5), (2.0, 0.2), (3.0, 0.4)]):
        with torch.no_grad():
            module.weight.fill_(weight)
        trainer.global_step = step
        trainer.callback_metrics = {"val_loss": torch.tensor(loss)}
        callback.on_validation_end(trainer, module)
    callback.on_fit_end(trainer, module)
    assert module.weight.item() == 2.0 and callback.best_step == 1


def test_failed_classical_fit_falls_back_and_is_counted(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args, **kwargs):
        raise np.linalg.LinAlgError("singular")

    monkeypatch.setattr(classical, "_sktime_auto", broken)
    ctx = [_periodic(60, 12)]
    fc = classical.forecast("autoets", ctx, 6, 12)
    assert fc.fallbacks == 1
    np.testing.assert_allclose(fc.point[0], ctx[0][-12:-6])
    assert fc.quantiles.shape == (1, len(classical.LEVELS), 6)


def test_autoets_quantiles_are_ordered_and_bracket_the_median() -> None:
    rng = np.random.default_rng(1)
    ctx = [_periodic(96, 12) + 0.1 * rng.normal(size=96)]
    fc = classical.forecast("autoets", ctx, 12, 12)
    assert fc.fallbacks == 0
    q = fc.quantiles[0]
    assert (np.diff(q, axis=0) >= 0).all()
    np.testing.assert_allclose(q[classical.LEVELS.index(0.5)], fc.point[0], atol=1e-6)


def test_runner_time_budget_trains_engine_and_peer_models(tmp_path: Path) -> None:
    """--budget time on a user file: a fine-tuned strategy and a peer both train (early stopping
    or the cap), and the JSON says which budget each ran under."""
    rows = 360
    path = tmp_path / "hourly.csv"
    rng = np.random.default_rng(0)
    pd.DataFrame(
        {"date": pd.date_range("2024-01-01", periods=rows, freq="h"),
         "load": _periodic(rows, 24) + 0.1 * rng.normal(size=rows)}
    ).to_csv(path, index=False)  # fmt: skip
    results, md = _run(
        ["--data", str(path), "--horizon", "24", "--context", "96", "--strategies", "lora",
         "dlinear", "--time-budget", "4", "--val-check-interval", "2", "--num-samples", "10"],
        tmp_path,
    )  # fmt: skip
    lora, dlinear = results
    assert lora.settings["max_time"] == 4 and lora.steps > 0
    assert dlinear.settings["max_time"] == 4 and dlinear.steps > 0
    assert "time budget 4 s per trained model" in md
    saved = json.loads((tmp_path / "out.json").read_text())
    assert saved["environment"]["complete"] is True


def test_cli_benchmark_takes_a_file_and_reports_a_bad_one(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    from msft_forecast import cli

    path = tmp_path / "daily.csv"
    pd.DataFrame(
        {"date": pd.date_range("2021-01-01", periods=120, freq="D"), "y": _periodic(120, 7)}
    ).to_csv(path, index=False)
    argv = ["benchmark", "--data", str(path), "--horizon", "7", "--strategies", "seasonal-naive"]
    assert cli.main(argv) == 0
    assert "daily: 1 series x 120 steps at frequency D, season 7" in capsys.readouterr().out
    code = cli.main([*argv[:-2], "--split", "0.7/0.25/0.05", "--strategies", "seasonal-naive"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert "the test part has 6 rows, fewer than the horizon (7)" in err
