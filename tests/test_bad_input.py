"""What happens when the input is bad: one test per row of docs/what_happens_when.md.

Every row goes through the public front ends it applies to (sktime ``MSFTForecaster``, Darts
``MSFTModel``, the ``msft-forecast`` command line) and checks either a clear error (the message
names the problem and the fix) or the documented handling, and that the caller's object (or
file) is unchanged afterwards.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from darts import TimeSeries
from sktime.forecasting.base import ForecastingHorizon

from msft_forecast import MSFTForecaster
from msft_forecast.cli import main as cli_main
from msft_forecast.darts import MSFTModel

N = 100
#: Tiny settings shared by the sktime and Darts rows: a fit takes about a second.
SK = dict(
    backbone="moirai-tiny",
    context_length=32,
    prediction_length=6,
    num_scales=2,
    max_steps=1,
    batch_size=8,
    num_samples=20,
    random_state=0,
    validation=None,
)
DA = dict(
    input_chunk_length=32,
    output_chunk_length=6,
    backbone="moirai-tiny",
    num_scales=2,
    max_steps=1,
    batch_size=8,
    num_samples=20,
    random_state=0,
    validation=None,
)


def _values(n: int = N) -> np.ndarray:
    return 10 + np.sin(np.arange(n) / 4) + 0.01 * np.arange(n)


def _hourly(values: np.ndarray) -> pd.Series:
    return pd.Series(values, index=pd.date_range("2024-01-01", periods=len(values), freq="h"))


# ------------------------------------------------------------------------------ harnesses
def sktime_fit_predict(y: pd.Series | pd.DataFrame, fh=(1, 2, 3), **params) -> pd.DataFrame:
    """Fit and predict through sktime; ``y`` must be unchanged afterwards (checked here)."""
    before = copy.deepcopy(y)
    try:
        forecaster = MSFTForecaster(**{**SK, **params}).fit(y, fh=list(fh))
        return forecaster.predict()
    finally:
        if isinstance(y, pd.Series):
            pd.testing.assert_series_equal(y, before)
        else:
            pd.testing.assert_frame_equal(y, before)


def _same_series(a: TimeSeries, b: TimeSeries) -> None:
    assert a.time_index.equals(b.time_index) and list(a.components) == list(b.components)
    np.testing.assert_array_equal(a.all_values(copy=False), b.all_values(copy=False))


def darts_fit_predict(series: TimeSeries, n: int = 3, **params) -> TimeSeries:
    """Fit and predict through Darts; ``series`` must be unchanged afterwards."""
    before = copy.deepcopy(series)
    try:
        return MSFTModel(**{**DA, **params}).fit(series).predict(n)
    finally:
        _same_series(series, before)


@pytest.fixture
def cli(capsys) -> Callable[..., tuple[int, str, str]]:
    """Run ``msft-forecast forecast`` on a file with tiny settings; returns the exit code,
    stdout and stderr, and checks that the file is unchanged afterwards."""

    def run(path: Path, *extra: str, horizon: str = "3") -> tuple[int, str, str]:
        before = path.read_bytes() if path.is_file() else None
        args = ["forecast", str(path), "--horizon", horizon, "--context", "32"]
        args += ["--backbone", "moirai-tiny"]  # not the default "moirai": no fallback warning
        args += ["--max-steps", "1", "--batch-size", "8", "--num-samples", "20"]
        capsys.readouterr()
        code = cli_main([*args, "--num-scales", "2", *extra])
        out = capsys.readouterr()
        if before is not None:
            assert path.read_bytes() == before
        return code, out.out, out.err

    return run


def write_csv(path: Path, values, index=None, **columns) -> Path:
    index = pd.date_range("2024-01-01", periods=len(values), freq="h") if index is None else index
    pd.DataFrame({"time": index, "y": values, **columns}).to_csv(path, index=False)
    return path


def assert_cli_error(result: tuple[int, str, str], match: str) -> None:
    code, _, err = result
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("msft-forecast: error:"), err
    assert "Traceback" not in err
    assert match.lower() in lines[0].lower(), lines[0]


def assert_cli_ok(result: tuple[int, str, str]) -> str:
    code, out, err = result
    assert code == 0, err
    return out


# --------------------------------------------------------------------------- empty series
def test_empty_series(tmp_path, cli):
    empty = pd.Series([], dtype=float, index=pd.DatetimeIndex([], freq="h"))
    with pytest.raises(ValueError, match="empty"):
        sktime_fit_predict(empty)
    with pytest.raises(ValueError, match=r"empty \(0 observations\)"):
        darts_fit_predict(TimeSeries.from_series(empty))
    path = tmp_path / "empty.csv"
    pd.DataFrame({"time": [], "y": []}).to_csv(path, index=False)
    assert_cli_error(cli(path), "no rows")


# ------------------------------------------------------------------------ too few observations
def test_fewer_observations_than_one_training_window(tmp_path, cli):
    # fh up to 3 with the tiny context: a training window needs min(C, H) + H = 6 observations
    with pytest.raises(ValueError, match="needs at least 6 observations"):
        sktime_fit_predict(_hourly(_values(5)))
    with pytest.raises(ValueError, match="needs at least 12 observations"):
        darts_fit_predict(TimeSeries.from_series(_hourly(_values(10))))
    assert_cli_error(cli(write_csv(tmp_path / "s.csv", _values(5))), "needs at least 6")


def test_fewer_observations_than_one_patch_warns_and_forecasts(tmp_path, cli):
    """Handled: Moirai reads one partial patch, padded with masked steps (sktime's own
    conformance tests fit on 12 points), with a warning that names the minimum."""
    y = _hourly(_values(10))
    with pytest.warns(UserWarning, match="fewer than one patch of 16 steps.*at least 16"):
        pred = sktime_fit_predict(y, patch_size=16)
    assert np.isfinite(pred.to_numpy()).all()
    series = TimeSeries.from_series(y)
    with pytest.warns(UserWarning, match="at least 16 observations"):
        fc = darts_fit_predict(
            series, output_chunk_length=2, patch_size=16, input_chunk_length=(8, 32)
        )
    assert np.isfinite(fc.values()).all()
    # with a fixed input_chunk_length of 32, fit caps the context at the 10 training steps, so
    # the training series is forecast; a series shorter than that context is refused, saying so
    with pytest.warns(UserWarning, match="fewer than one patch"):
        model = MSFTModel(**{**DA, "output_chunk_length": 2, "patch_size": 16}).fit(series)
    assert model.min_input_chunk_length == 10
    assert np.isfinite(model.predict(3).values()).all()
    with pytest.raises(ValueError, match="needs at least 10 .*input_chunk_length=\\(min_length"):
        model.predict(3, series=series[:6])
    code, out, err = cli(write_csv(tmp_path / "p.csv", _values(10)))
    assert code == 0, err


# ----------------------------------------------------------------------------- missing values
def test_all_missing(tmp_path, cli):
    y = _hourly(np.full(N, np.nan))
    with pytest.raises(ValueError, match="no observed value.*missing"):
        sktime_fit_predict(y)
    with pytest.raises(ValueError, match="no observed value"):
        darts_fit_predict(TimeSeries.from_series(y))
    assert_cli_error(cli(write_csv(tmp_path / "m.csv", [np.nan] * N)), "no observed value")


def test_partly_missing_is_handled(tmp_path, cli):
    values = _values()
    values[[3, 40, 41, 42, 97]] = np.nan
    y = _hourly(values)
    assert np.isfinite(sktime_fit_predict(y).to_numpy()).all()
    assert np.isfinite(darts_fit_predict(TimeSeries.from_series(y)).values()).all()
    assert_cli_ok(cli(write_csv(tmp_path / "pm.csv", values)))


def test_missing_context_cannot_be_forecast():
    """A series whose last ``context_length`` steps are all missing has nothing to forecast
    from: Darts' predict(series=...) says so instead of returning the model's prior."""
    model = MSFTModel(**DA).fit(TimeSeries.from_series(_hourly(_values())))
    values = _values()
    values[-40:] = np.nan
    with pytest.raises(ValueError, match="no observed value in its last 32 steps"):
        model.predict(3, series=TimeSeries.from_series(_hourly(values)))


# ------------------------------------------------------------------------------- infinities
@pytest.mark.parametrize("inf", [np.inf, -np.inf], ids=["+inf", "-inf"])
def test_infinite_values(tmp_path, cli, inf):
    values = _values()
    values[50] = inf
    with pytest.raises(ValueError, match="infinite values.*positions 50.*NaN"):
        sktime_fit_predict(_hourly(values))
    with pytest.raises(ValueError, match="infinite values.*NaN"):
        darts_fit_predict(TimeSeries.from_series(_hourly(values)))
    assert_cli_error(cli(write_csv(tmp_path / "inf.csv", values)), "infinite")


# ------------------------------------------------------------------------------ non-numeric
def test_non_numeric_columns(tmp_path, cli):
    y = pd.DataFrame({"y": ["a"] * N}, index=_hourly(_values()).index)
    # sktime's own input check refuses object columns before the forecaster sees them
    with pytest.raises(TypeError, match="categorical"):
        sktime_fit_predict(y)
    # a Darts TimeSeries cannot hold text at all
    with pytest.raises(ValueError, match="could not convert string to float"):
        TimeSeries.from_dataframe(y)
    # the engine underneath, for any other caller
    from msft_forecast.engine import MSFTEngine

    with pytest.raises(ValueError, match="not numeric.*convert or drop text"):
        MSFTEngine(**{k: v for k, v in SK.items()}).fit([np.array(["a"] * N, dtype=object)])
    # the command line skips text columns unless they are asked for by name
    path = write_csv(tmp_path / "t.csv", _values(), note=["x"] * N)
    assert_cli_error(cli(path, "--columns", "note"), "not numeric")
    out = assert_cli_ok(cli(path))
    assert "note" not in out


# ------------------------------------------------------------------------------- time index
def test_duplicated_time_index(tmp_path, cli):
    index = pd.date_range("2024-01-01", periods=N, freq="h")
    y = pd.Series(_values(), index=index[[0, *range(N - 1)]])
    with pytest.raises(ValueError, match="duplicated time points.*groupby"):
        sktime_fit_predict(y)
    with pytest.raises(ValueError, match="freq"):  # Darts refuses to build such a series
        TimeSeries.from_series(y)
    path = write_csv(tmp_path / "d.csv", _values(), index=y.index)
    assert_cli_error(cli(path), "duplicated")


def test_unsorted_time_index(tmp_path, cli):
    y = _hourly(_values()).iloc[::-1]
    # sktime's input check refuses it, naming the problem
    with pytest.raises(TypeError, match="sorted monotonically increasing"):
        sktime_fit_predict(y)
    # Darts sorts a series when it is built: the forecast is the sorted series' forecast
    sorted_fc = darts_fit_predict(TimeSeries.from_series(y.sort_index()))
    unsorted_fc = darts_fit_predict(TimeSeries.from_series(y))
    _same_series(sorted_fc, unsorted_fc)
    # the command line sorts the rows by time
    path = write_csv(tmp_path / "u.csv", y.to_numpy(), index=y.index)
    assert_cli_ok(cli(path))


def test_irregular_index_without_frequency(tmp_path, cli):
    # hourly, but one time stamp half an hour off: no frequency fits every step
    stamps = pd.date_range("2024-01-01", periods=N, freq="h").to_series()
    stamps.iloc[50] += pd.Timedelta("30min")
    index = pd.DatetimeIndex(stamps.to_numpy())
    y = pd.Series(_values(), index=index)
    with pytest.raises(ValueError, match="irregular.*asfreq"):
        sktime_fit_predict(y)
    with pytest.raises(ValueError, match="fill_missing_dates"):  # Darts says how to fix it
        TimeSeries.from_series(y)
    assert_cli_error(cli(write_csv(tmp_path / "i.csv", _values(), index=index)), "irregular")
    # with --freq the gaps become missing values
    assert_cli_ok(cli(tmp_path / "i.csv", "--freq", "h"))


@pytest.mark.parametrize(
    "index",
    [pd.RangeIndex(N), pd.Index(np.arange(1000, 1000 + N))],
    ids=["range", "integer"],
)
def test_integer_and_range_indexes_are_handled(index):
    y = pd.Series(_values(), index=index)
    pred = sktime_fit_predict(y, fh=(1, 2, 5))
    assert list(pred.index) == [index[-1] + 1, index[-1] + 2, index[-1] + 5]
    assert np.isfinite(pred.to_numpy()).all()
    fc = darts_fit_predict(TimeSeries.from_series(y))
    assert list(fc.time_index) == [index[-1] + 1, index[-1] + 2, index[-1] + 3]
    assert np.isfinite(fc.values()).all()


# ------------------------------------------------------------------------- special values
@pytest.mark.parametrize("level", [0.0, 5.0, -3e6])
def test_constant_series_gives_finite_forecasts(tmp_path, cli, level):
    y = _hourly(np.full(N, level))
    pred = sktime_fit_predict(y)
    assert np.isfinite(pred.to_numpy()).all()
    np.testing.assert_allclose(pred.to_numpy(), level, atol=1e-2 * max(1.0, abs(level)))
    fc = darts_fit_predict(TimeSeries.from_series(y))
    assert np.isfinite(fc.values()).all()
    if level == 5.0:
        assert_cli_ok(cli(write_csv(tmp_path / "c.csv", np.full(N, level))))


#: Tolerance of forecast(c * y) / c against forecast(y). Measured (sktime mean and quantiles,
#: Darts mean; c in 1e12, 1e-12, 1e6, 3.7): at most 6e-16, one float64 rounding of the final
#: ``* unit_scale``, because y / unit_scale(y) rounds to the same float32 model input. A one-ulp
#: float32 difference in an input would move a forecast by about 1e-7, hence 1e-6; before
#: inputs were put in units of their spread, the forecast at 1e-12 was off by a factor of 1e8.
SCALE_RTOL = 1e-6


@pytest.mark.parametrize(
    "c", [1e12, 1e-12, 1e300, 1e-300], ids=["1e12", "1e-12", "1e300", "1e-300"]
)
def test_magnitudes_are_finite_and_scale_equivariant(tmp_path, cli, c):
    y = _hourly(_values())
    alpha = [0.1, 0.5, 0.9]
    base = MSFTForecaster(**{**SK, "max_steps": 2}).fit(y, fh=[1, 2, 3])
    scaled_y = y * c
    before = scaled_y.copy()
    scaled = MSFTForecaster(**{**SK, "max_steps": 2}).fit(scaled_y, fh=[1, 2, 3])
    pd.testing.assert_series_equal(scaled_y, before)
    assert np.isfinite(scaled.predict().to_numpy()).all()
    np.testing.assert_allclose(scaled.predict() / c, base.predict(), rtol=SCALE_RTOL)
    np.testing.assert_allclose(
        scaled.predict_quantiles(alpha=alpha) / c,
        base.predict_quantiles(alpha=alpha),
        rtol=SCALE_RTOL,
    )
    series = TimeSeries.from_series(y)
    fc = darts_fit_predict(series, num_samples=1)
    fc_scaled = darts_fit_predict(series * c, num_samples=1)
    np.testing.assert_allclose(fc_scaled.values() / c, fc.values(), rtol=SCALE_RTOL)
    out = assert_cli_ok(cli(write_csv(tmp_path / "big.csv", _values() * c)))
    assert "nan" not in out.lower() and "inf" not in out.lower()


# ---------------------------------------------------------------------- forecasting horizon
@pytest.fixture(scope="module")
def fitted_sktime() -> MSFTForecaster:
    return MSFTForecaster(**SK).fit(_hourly(_values()), fh=[1, 2, 3])


@pytest.fixture(scope="module")
def fitted_darts() -> MSFTModel:
    return MSFTModel(**DA).fit(TimeSeries.from_series(_hourly(_values())))


@pytest.mark.parametrize("fh", [[-2, -1], [0], [-1, 0, 1]], ids=["past", "cutoff", "mixed"])
def test_fh_in_the_past_or_in_sample(fitted_sktime, fh):
    forecaster = copy.deepcopy(fitted_sktime)  # sktime stores a rejected fh on the instance
    with pytest.raises(NotImplementedError, match="in-sample"):
        forecaster.predict(fh=fh)


@pytest.mark.parametrize("n", [0, -3])
def test_darts_horizon_below_one(fitted_darts, tmp_path, cli, n):
    with pytest.raises(ValueError, match="horizon must be a positive integer"):
        fitted_darts.predict(n)
    path = write_csv(tmp_path / "h.csv", _values())
    assert_cli_error(cli(path, horizon=str(n)), "--horizon must be a positive integer")


def test_non_contiguous_fh_is_handled(fitted_sktime):
    forecaster = copy.deepcopy(fitted_sktime)
    full = forecaster.predict(fh=[1, 2, 3, 4, 5])
    gaps = forecaster.predict(fh=[2, 5])
    expected = ForecastingHorizon([2, 5]).to_absolute_index(forecaster.cutoff)
    assert gaps.index.equals(expected)
    np.testing.assert_allclose(gaps.to_numpy(), full.loc[expected].to_numpy(), rtol=1e-6)


# ---------------------------------------------------------------------- backbone and device
def test_unknown_backbone(tmp_path, cli):
    y = _hourly(_values())
    with pytest.raises(ValueError, match="Unknown backbone 'moirai-giant'.*short name"):
        sktime_fit_predict(y, backbone="moirai-giant")
    with pytest.raises(ValueError, match="Unknown backbone 'moirai-giant'"):
        darts_fit_predict(TimeSeries.from_series(y), backbone="moirai-giant")
    path = write_csv(tmp_path / "b.csv", _values())
    assert_cli_error(cli(path, "--backbone", "moirai-giant"), "Unknown backbone")


@pytest.fixture
def corrupt_checkpoint(tiny_moirai_dir, tmp_path) -> Path:
    import shutil

    folder = tmp_path / "corrupt"
    shutil.copytree(tiny_moirai_dir, folder)
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    return folder


@pytest.mark.parametrize("which", ["missing", "corrupt"])
def test_missing_or_corrupt_checkpoint(tmp_path, cli, corrupt_checkpoint, which):
    folder = str(tmp_path / "nowhere") if which == "missing" else str(corrupt_checkpoint)
    match = "does not exist" if which == "missing" else "corrupt or truncated"
    y = _hourly(_values())
    with pytest.raises(ValueError, match=match):
        sktime_fit_predict(y, backbone=folder)
    with pytest.raises(ValueError, match=match):
        darts_fit_predict(TimeSeries.from_series(y), backbone=folder)
    assert_cli_error(cli(write_csv(tmp_path / "k.csv", _values()), "--backbone", folder), match)


@pytest.mark.parametrize("accelerator", ["tpu", "no-such-device"])
def test_device_that_does_not_exist(accelerator):
    y = _hourly(_values())
    with pytest.raises(ValueError, match=f"accelerator='{accelerator}'.*accelerator='cpu'"):
        sktime_fit_predict(y, accelerator=accelerator)
    with pytest.raises(ValueError, match=f"accelerator='{accelerator}'.*accelerator='cpu'"):
        darts_fit_predict(TimeSeries.from_series(y), pl_trainer_kwargs={"accelerator": accelerator})


# ----------------------------------------------------------------------------- num_samples
@pytest.mark.parametrize("num_samples", [0, -1])
def test_num_samples_below_one(fitted_darts, tmp_path, cli, num_samples):
    y = _hourly(_values())
    with pytest.raises(ValueError, match="num_samples must be a positive integer"):
        sktime_fit_predict(y, num_samples=num_samples)
    with pytest.raises(ValueError, match="num_samples must be a positive integer"):
        MSFTModel(**{**DA, "num_samples": num_samples})
    with pytest.raises(ValueError, match="num_samples must be a positive integer"):
        fitted_darts.predict(3, num_samples=num_samples)
    with pytest.raises(ValueError, match="num_samples must be a positive integer"):
        fitted_darts.historical_forecasts(
            TimeSeries.from_series(y), start=0.8, forecast_horizon=3, num_samples=num_samples
        )
    path = write_csv(tmp_path / "n.csv", _values())
    assert_cli_error(
        cli(path, "--num-samples", str(num_samples)), "--num-samples must be a positive integer"
    )


# -------------------------------------------------------------------------- predict before fit
def test_predict_before_fit():
    from sktime.exceptions import NotFittedError

    with pytest.raises(NotFittedError, match="has not been fitted yet"):
        MSFTForecaster(**SK).predict(fh=[1, 2])
    with pytest.raises(ValueError, match="must be fit before calling predict"):
        MSFTModel(**DA).predict(3, series=TimeSeries.from_series(_hourly(_values())))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(ValueError, match="not fitted yet; call fit"):
            _ = MSFTModel(**DA).engine


# ------------------------------------------------------------------ time-index semantics
_GRID_KW = dict(backbone="moirai-tiny", fit_strategy="zero-shot", context_length=64,
                random_state=0, num_samples=20)  # fmt: skip


def _hourly_wave(n: int = 200) -> pd.Series:
    return pd.Series(
        10 + np.sin(np.arange(n) / 4), index=pd.date_range("2024-01-01", periods=n, freq="h")
    )


def test_update_after_a_gap_puts_missing_values_in_the_gap():
    """New data 20 steps after the old: the 20 missing steps are missing values, as if the
    series had been given with the gap from the start, not glued on as if contiguous."""
    y = _hourly_wave()
    forecaster = MSFTForecaster(**_GRID_KW).fit(y.iloc[:150], fh=[1, 2, 3])
    new = y.iloc[170:180]
    before = new.copy()
    forecaster.update(new, update_params=False)
    pd.testing.assert_series_equal(new, before)
    with_gap = y.iloc[:180].copy()
    with_gap.iloc[150:170] = np.nan
    expected = MSFTForecaster(**_GRID_KW).fit(with_gap, fh=[1, 2, 3]).predict()
    pd.testing.assert_series_equal(forecaster.predict(), expected)


def test_update_off_the_grid_is_refused():
    y = _hourly_wave()
    forecaster = MSFTForecaster(**_GRID_KW).fit(y.iloc[:150], fh=[1, 2, 3])
    shifted = y.iloc[150:160].copy()
    shifted.index = shifted.index + pd.Timedelta(minutes=30)
    with pytest.raises(ValueError, match="not on the series' grid"):
        forecaster.update(shifted, update_params=False)


def test_fh_between_time_steps_is_refused_naming_the_grid():
    forecaster = MSFTForecaster(**_GRID_KW).fit(_hourly_wave(), fh=[1, 2, 3])
    off = pd.DatetimeIndex(["2024-01-09 08:30", "2024-01-09 09:30"])
    with pytest.raises(ValueError, match=r"not on the series' grid \(frequency h.*e\.g\. "):
        forecaster.predict(fh=off)
    on = forecaster.predict(fh=pd.DatetimeIndex(["2024-01-09 09:00"]))
    assert list(on.index) == [pd.Timestamp("2024-01-09 09:00")]


def test_sktime_hierarchy_from_the_aggregator_is_forecast_at_every_level():
    """sktime's Aggregator adds a __total level and its cutoff has no frequency; the series'
    common step is used (before: TypeError at predict)."""
    from sktime.transformations.hierarchical.aggregate import Aggregator

    idx = pd.MultiIndex.from_product(
        [["a", "b"], pd.date_range("2024-01-01", periods=80, freq="D")], names=["store", "time"]
    )
    y = Aggregator().fit_transform(pd.DataFrame({"y": np.arange(160.0) % 7 + 10}, index=idx))
    pred = MSFTForecaster(**_GRID_KW).fit(y, fh=[1, 2]).predict()
    assert pred.index.get_level_values(0).unique().tolist() == ["__total", "a", "b"]
    assert pred.index.get_level_values(-1).unique().tolist() == list(
        pd.date_range("2024-03-21", periods=2, freq="D")
    )
    assert np.isfinite(pred.to_numpy()).all()


def test_panel_mixing_frequencies_is_refused_at_fit():
    hourly = pd.DataFrame(
        {"y": np.arange(60.0)},
        index=pd.MultiIndex.from_product(
            [["h"], pd.date_range("2024-01-01", periods=60, freq="h")]
        ),
    )
    daily = pd.DataFrame(
        {"y": np.arange(60.0)},
        index=pd.MultiIndex.from_product(
            [["d"], pd.date_range("2024-01-01", periods=60, freq="D")]
        ),
    )
    with pytest.raises(ValueError, match="different frequencies: y\\['h'\\] every h"):
        MSFTForecaster(**_GRID_KW).fit(pd.concat([hourly, daily]), fh=[1])
