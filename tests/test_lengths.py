"""Lengths and patch sizes chosen from the data: the headline call on short series.

``MSFTForecaster(backbone=...).fit(y)`` without ``fh`` on the 144-point airline series must
fine-tune (a training horizon and context that fit the data), forecast any horizon afterwards,
and say what it chose; the automatic patch size must not follow a handful of overlapping
windows.  Properties of the rules are checked with hypothesis.
"""

from __future__ import annotations

import logging
import warnings

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sktime.datasets import load_airline

from msft_forecast import MSFTForecaster
from msft_forecast.engine import FitReport, MSFTEngine, MSFTSettings
from msft_forecast.frequencies import season_length
from msft_forecast.training.lengths import (
    DEFAULT_HORIZON,
    SERIES_PER_HORIZON,
    choose_lengths,
)
from msft_forecast.training.patch_size import independent_windows, prefer_smaller_patch

FAST = dict(max_steps=2, batch_size=8, num_samples=10, random_state=0)


# ------------------------------------------------------------------------------ the rules
@settings(max_examples=200, deadline=None)
@given(
    lengths=st.lists(st.integers(1, 5000), min_size=1, max_size=5),
    context=st.integers(1, 4096),
    freq=st.sampled_from([None, "h", "D", "W", "MS", "QS", "YS", "15min"]),
)
def test_automatic_lengths_fit_the_longest_series(lengths, context, freq):
    out = choose_lengths(lengths, context, "auto", freq)
    longest = max(lengths)
    assert out.context_length == min(context, longest)
    assert 1 <= out.prediction_length <= DEFAULT_HORIZON
    if longest >= SERIES_PER_HORIZON * DEFAULT_HORIZON:
        assert out.prediction_length == DEFAULT_HORIZON
    else:
        assert out.prediction_length <= max(1, longest // SERIES_PER_HORIZON)
        season = season_length(freq) if freq else 1
        if 1 < season <= longest // SERIES_PER_HORIZON:
            assert out.prediction_length % season == 0
        assert any("training horizon" in r for r in out.reasons)
    assert (out.context_length < context) == any("capped" in r for r in out.reasons)


@given(
    lengths=st.lists(st.integers(1, 2000), min_size=1, max_size=4),
    horizon=st.integers(1, 500),
)
def test_a_horizon_given_by_the_caller_is_kept(lengths, horizon):
    assert choose_lengths(lengths, 512, horizon).prediction_length == horizon


def test_airline_lengths_are_two_years_and_the_whole_series():
    out = choose_lengths([144], 512, "auto", "MS")
    assert (out.context_length, out.prediction_length) == (144, 24)


@given(
    origins=st.lists(st.integers(0, 300), min_size=1, max_size=40),
    horizon=st.integers(1, 60),
)
def test_independent_windows_count_side_by_side_horizons(origins, horizon):
    count = independent_windows([(0, o) for o in origins], horizon)
    span = max(origins) - min(origins) + horizon
    assert count == min(span // horizon, len(set(origins)))
    assert 1 <= count
    # a second series adds its own horizons
    assert independent_windows([(0, o) for o in origins] + [(1, 0)], horizon) == count + 1


def test_thin_evidence_keeps_the_smallest_patch():
    rng = np.random.default_rng(0)
    small = 1.0 + 0.5 * rng.random(7)
    errors = {8: small, 16: small - 0.3, 32: small - 0.4}  # larger sizes look better...
    chosen, why = prefer_smaller_patch(errors, independent=1)  # ...on one horizon's worth
    assert chosen == 8
    assert "patch size 8" in why and "1 independent" in why


def test_clear_evidence_picks_the_best_patch():
    rng = np.random.default_rng(0)
    small = 1.0 + 0.1 * rng.random(64)
    errors = {8: small, 16: small - 0.5, 32: small - 0.05}
    chosen, why = prefer_smaller_patch(errors, independent=20)
    assert chosen == 16
    assert "lowest zero-shot validation error" in why


def test_a_middle_size_within_noise_of_the_best_is_kept():
    rng = np.random.default_rng(1)
    base = 1.0 + 0.1 * rng.random(64)
    noise = 0.3 * rng.standard_normal((2, 64))
    errors = {8: base + 1.0, 16: base + 0.5 + noise[0], 32: base + 0.49 + noise[1]}
    assert errors[32].mean() < errors[16].mean()  # 32 scores best, by a hair
    chosen, _ = prefer_smaller_patch(errors, independent=20)
    assert chosen == 16  # 8 is clearly worse; 32's edge over 16 is noise


# ------------------------------------------------------------------------ through the engine
def test_engine_records_and_logs_what_it_chose(caplog):
    y = 10 + np.sin(np.arange(150) * 2 * np.pi / 12)
    engine = MSFTEngine(backbone="moirai-tiny", fit_strategy="zero-shot")
    with caplog.at_level(logging.INFO, logger="msft_forecast.engine"):
        engine.fit([y], freq="MS")
    assert engine.context_length_ == 150
    assert engine.prediction_length_ == 24
    report = engine.report_
    assert report.context_length == 150 and report.prediction_length == 24
    assert any(c.startswith("patch size") for c in report.choices)
    for choice in report.choices:
        assert choice in caplog.text
    # the record survives a round trip
    again = MSFTEngine.from_state(engine.state())
    assert again.prediction_length_ == 24 and again.context_length_ == 150
    assert again.report_.choices == report.choices


def test_a_state_saved_before_lengths_were_recorded_still_loads():
    y = 10 + np.sin(np.arange(300) * 2 * np.pi / 24)
    engine = MSFTEngine(
        backbone="moirai-tiny", fit_strategy="zero-shot", context_length=96, prediction_length=12
    ).fit([y])
    state = engine.state()
    old = {k: v for k, v in state["meta"]["report"].items() if k in ("patch_size", "steps")}
    state["meta"]["report"] = old
    again = MSFTEngine.from_state(state)
    assert (again.context_length_, again.prediction_length_) == (96, 12)
    np.testing.assert_allclose(
        again.forecast([y], 12, 0).mean, engine.forecast([y], 12, 0).mean, rtol=1e-6
    )


def test_auto_horizon_is_unknown_before_fit():
    engine = MSFTEngine(backbone="moirai-tiny")
    with pytest.raises(RuntimeError, match="chosen from the data at fit"):
        _ = engine.prediction_length_


def test_prediction_length_setting_is_validated():
    with pytest.raises(ValueError, match="prediction_length must be a positive integer or 'auto'"):
        MSFTSettings(prediction_length="long").validate()
    MSFTSettings(prediction_length="auto").validate()
    assert FitReport(patch_size=8).prediction_length == 0


# ------------------------------------------------------------------- the headline call itself
def test_headline_call_fits_airline_without_fh_and_serves_any_fh():
    y = load_airline()
    before = y.copy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # offline: "moirai" falls back to the bundled backbone
        f = MSFTForecaster(backbone="moirai", **FAST).fit(y)
    pd.testing.assert_series_equal(y, before)
    assert f.engine_.prediction_length_ == 24  # a fifth of 144, in whole years
    assert f.engine_.context_length_ == 144
    long = f.predict(fh=list(range(1, 37)))  # longer than the training horizon
    assert len(long) == 36 and np.isfinite(long.to_numpy()).all()
    intervals = f.predict_interval(fh=[1, 12], coverage=0.8)
    assert intervals.shape == (2, 2)


def test_darts_model_fits_airline_with_defaults():
    from darts import TimeSeries

    from msft_forecast.darts import MSFTModel

    y = load_airline()
    series = TimeSeries.from_series(y.to_timestamp() if hasattr(y.index, "to_timestamp") else y)
    model = MSFTModel(backbone="moirai-tiny", **FAST)
    assert model.output_chunk_length == 1  # chosen at fit
    model.fit(series)
    assert model.output_chunk_length == 24
    assert model.min_input_chunk_length == 144
    forecast = model.predict(36)
    assert len(forecast) == 36 and np.isfinite(forecast.values()).all()


# ------------------------------------------------------------- the offline fallback, named
def test_the_offline_fallback_is_named_wherever_results_show(tmp_path, capsys):
    from darts import TimeSeries

    from msft_forecast.backbones.errors import HubUnavailableError
    from msft_forecast.cli import main
    from msft_forecast.darts import MSFTModel

    y = load_airline()
    named = "bundled:moirai-tiny (offline fallback for 'moirai'"
    f = MSFTForecaster(backbone="moirai", fit_strategy="zero-shot")
    assert "fitted on" not in repr(f)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        f.fit(y, fh=[1, 2, 3])
    assert f.backbone_used_.startswith(named) and "allow_fallback=False" in f.backbone_used_
    assert f"# fitted on {named}" in repr(f)
    # an explicit backbone is named as itself
    tiny = MSFTForecaster(backbone="moirai-tiny", fit_strategy="zero-shot").fit(y, fh=[1])
    assert tiny.backbone_used_ == "bundled:moirai-tiny"
    with pytest.raises(HubUnavailableError):
        MSFTForecaster(backbone="moirai", allow_fallback=False, **FAST).fit(y, fh=[1])

    model = MSFTModel(backbone="moirai", fit_strategy="zero-shot", output_chunk_length=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(TimeSeries.from_series(y.to_timestamp()))
    assert model.backbone_used.startswith(named) and named in repr(model)

    csv = tmp_path / "airline.csv"
    y.to_timestamp().rename("passengers").rename_axis("date").to_csv(csv)
    args = ["forecast", str(csv), "--horizon", "3", "--strategy", "zero-shot"]
    assert main([*args, "--backbone", "moirai"]) == 0
    out = capsys.readouterr().out
    assert f"backbone {named}" in out
    assert "chose context_length 512 capped at 144" in out and "chose patch size" in out
    assert main([*args, "--backbone", "moirai", "--no-fallback"]) == 2
    assert "msft-forecast: error:" in capsys.readouterr().err


@pytest.mark.parametrize("length", [100, 300, 1000])
@pytest.mark.parametrize("index", ["int", "D", "W", "MS", "YS"])
def test_defaults_on_short_series_of_every_index_type(index, length):
    """Zero-shot with default settings on 100-1,000 points: lengths that fit, a recorded
    patch choice, and finite forecasts whose first step stays near the series' level."""
    rng = np.random.default_rng(length)
    season = {"int": 1, "D": 7, "W": 52, "MS": 12, "YS": 1}[index]
    t = np.arange(length)
    values = 50 + 0.02 * t + 3 * np.sin(2 * np.pi * t / max(season, 2)) + rng.normal(0, 1, length)
    if index == "int":
        y = pd.Series(values)
    else:
        y = pd.Series(values, index=pd.date_range("1900-01-01", periods=length, freq=index))
    f = MSFTForecaster(backbone="moirai-tiny", fit_strategy="zero-shot").fit(y)
    report = f.engine_.report_
    assert report.context_length == min(512, length)
    horizon = DEFAULT_HORIZON if length >= 480 else length // 5
    if length < 480 and 1 < season <= horizon:
        horizon = horizon // season * season
    assert report.prediction_length == horizon
    assert any(c.startswith("patch size") for c in report.choices)
    pred = f.predict(fh=list(range(1, 13)))
    assert np.isfinite(pred.to_numpy()).all()
    spread = float(np.std(values[-min(length, 512) :]))
    assert abs(float(pred.iloc[0]) - values[-1]) < 3 * spread
