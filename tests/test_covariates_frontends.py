"""Covariates through the front ends: sktime's exogenous ``X`` and Darts' past and future
covariates reach the engine aligned by time, with each ecosystem's rules for their spans."""

from __future__ import annotations

import pickle
import warnings

import numpy as np
import pandas as pd
import pytest

from msft_forecast import MSFTForecaster

darts = pytest.importorskip("darts")
from darts import TimeSeries  # noqa: E402

from msft_forecast.darts import MSFTModel  # noqa: E402

N, H = 240, 12


# ---------------------------------------------------------------------------------- sktime
@pytest.fixture(scope="module")
def sktime_data():
    index = pd.period_range("2000-01", periods=N + H, freq="M")
    rng = np.random.default_rng(0)
    X = pd.DataFrame({"month": np.arange(N + H) % 12, "promo": rng.normal(size=N + H)},
                     index=index)  # fmt: skip
    y = pd.Series(10 + np.sin(np.arange(N + H) * np.pi / 6) + X["promo"] * 0.5, index=index)
    return y.iloc[:N], X.iloc[:N], X.iloc[N:]


@pytest.fixture(scope="module")
def sktime_fitted(sktime_data):
    y, X_train, _ = sktime_data
    f = MSFTForecaster(backbone="moirai-tiny", context_length=48, max_steps=2, batch_size=4,
                       random_state=0, num_samples=8, patch_size=8)  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return f.fit(y, X=X_train, fh=range(1, H + 1))


def test_sktime_reads_X_as_known_future_covariates(sktime_fitted, sktime_data):
    _, _, X_future = sktime_data
    assert MSFTForecaster.get_class_tag("capability:exogenous") is True
    assert sktime_fitted.engine_.report_.future_covariates == ["month", "promo"]
    pred = sktime_fitted.predict(X=X_future)
    assert pred.index.equals(X_future.index) and np.isfinite(pred.to_numpy()).all()
    other = X_future.assign(promo=X_future["promo"] + 5)
    assert not np.allclose(sktime_fitted.predict(X=other), pred)
    assert sktime_fitted.predict_interval(X=X_future).shape == (H, 2)


def test_sktime_predict_needs_X_covering_the_horizon(sktime_fitted, sktime_data):
    _, _, X_future = sktime_data
    with pytest.raises(ValueError, match="pass X covering the forecasting horizon"):
        sktime_fitted.predict()
    with pytest.raises(ValueError, match="must cover the series"):
        sktime_fitted.predict(X=X_future.iloc[:6])


def test_sktime_update_and_pickle_keep_the_covariates(sktime_fitted, sktime_data):
    y, X_train, X_future = sktime_data
    f = pickle.loads(pickle.dumps(sktime_fitted))
    np.testing.assert_allclose(f.predict(X=X_future), sktime_fitted.predict(X=X_future))
    f = MSFTForecaster(backbone="moirai-tiny", context_length=48, max_steps=1, batch_size=4,
                       random_state=0, update_steps=1, patch_size=8)  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        f.fit(y.iloc[:-6], X=X_train.iloc[:-6], fh=range(1, H + 1))
        f.update(y.iloc[-6:], X=X_train.iloc[-6:], update_params=True)
    assert f.X_history_.index[-1] == X_train.index[-1]
    assert f.predict(X=X_future).index[0] == X_future.index[0]


def test_sktime_fitted_without_X_ignores_X(sktime_data):
    y, _, X_future = sktime_data
    f = MSFTForecaster(backbone="moirai-tiny", context_length=48, fit_strategy="zero-shot",
                       patch_size=8)  # fmt: skip
    f.fit(y, fh=range(1, H + 1))
    np.testing.assert_allclose(f.predict(X=X_future), f.predict())


# ----------------------------------------------------------------------------------- Darts
@pytest.fixture(scope="module")
def darts_data():
    times = pd.date_range("2021-01-01", periods=N + 2 * H, freq="h")
    rng = np.random.default_rng(1)
    past = TimeSeries.from_times_and_values(times, rng.normal(size=(len(times), 2)),
                                            columns=["load", "temp"])  # fmt: skip
    hour = np.arange(len(times)) % 24
    future = TimeSeries.from_times_and_values(
        times, np.stack([np.sin(hour / 24 * 2 * np.pi), np.cos(hour / 24 * 2 * np.pi)], 1),
        columns=["sin", "cos"],
    )
    y = TimeSeries.from_times_and_values(
        times[:N], np.sin(np.arange(N) * 2 * np.pi / 24) + 0.3 * past.values()[:N, 0],
        columns=["y"],
    )
    return y, past, future


@pytest.fixture(scope="module")
def darts_fitted(darts_data):
    y, past, future = darts_data
    model = MSFTModel(backbone="moirai-tiny", input_chunk_length=96, output_chunk_length=H,
                      max_steps=2, batch_size=4, random_state=0, patch_size=16)  # fmt: skip
    return model.fit(y, past_covariates=past, future_covariates=future)


def test_darts_fits_and_predicts_with_past_and_future_covariates(darts_fitted, darts_data):
    y, past, future = darts_data
    assert darts_fitted.uses_past_covariates and darts_fitted.uses_future_covariates
    assert darts_fitted.engine.report_.past_covariates == ["load", "temp"]
    assert darts_fitted.engine.report_.future_covariates == ["sin", "cos"]
    fc = darts_fitted.predict(H)  # the training series and its covariates
    again = darts_fitted.predict(H, series=y, past_covariates=past, future_covariates=future)
    np.testing.assert_allclose(fc.values(), again.values())
    assert fc.start_time() == y.end_time() + y.freq
    shifted = darts_fitted.predict(H, series=y, past_covariates=past, future_covariates=-future)
    assert not np.allclose(shifted.values(), fc.values())


def test_darts_historical_forecasts_read_the_covariates_of_each_window(darts_fitted, darts_data):
    y, past, future = darts_data
    kwargs = dict(past_covariates=past, future_covariates=future)
    hf = darts_fitted.historical_forecasts(
        y, start=N - 3 * H, forecast_horizon=H, stride=H, retrain=False, last_points_only=False,
        **kwargs,
    )
    for window in hf:  # each equals a predict from the series up to its start
        cut = y.drop_after(window.start_time())
        np.testing.assert_allclose(window.values(), darts_fitted.predict(H, series=cut, **kwargs)
                                   .values(), rtol=1e-5, atol=1e-6)  # fmt: skip


def test_darts_covariates_must_cover_input_chunk_and_horizon(darts_fitted, darts_data):
    y, past, future = darts_data
    with pytest.raises(ValueError, match="past_covariates\\[0\\] must cover the input chunk"):
        darts_fitted.predict(H, series=y, past_covariates=past[: N - 10], future_covariates=future)
    with pytest.raises(ValueError, match="future_covariates\\[0\\] must cover the forecast"):
        darts_fitted.predict(H, series=y, past_covariates=past, future_covariates=future[: N + 3])
    with pytest.raises(ValueError, match="must be passed"):  # Darts' own check
        darts_fitted.predict(H, series=y, future_covariates=future)
    with pytest.raises(ValueError, match="must cover series\\[0\\]"):
        MSFTModel(backbone="moirai-tiny", input_chunk_length=96, output_chunk_length=H,
                  max_steps=1).fit(y, past_covariates=past[10:])  # fmt: skip


def test_darts_save_load_keeps_the_covariates(darts_fitted, darts_data, tmp_path):
    y, past, future = darts_data
    darts_fitted.save(str(tmp_path / "m.pt"))
    loaded = MSFTModel.load(str(tmp_path / "m.pt"))
    assert loaded.uses_past_covariates and loaded.uses_future_covariates
    kwargs = dict(series=y, past_covariates=past, future_covariates=future)
    np.testing.assert_allclose(loaded.predict(H, **kwargs).values(),
                               darts_fitted.predict(H, **kwargs).values())  # fmt: skip
    with pytest.raises(ValueError, match="must be passed"):
        loaded.predict(H, series=y)


def test_darts_extreme_lags_name_the_covariates_read(darts_fitted, darts_data):
    """Darts' bounds read ``extreme_lags``: with covariates that start late, the first
    forecast that ``historical_forecasts`` chooses has its input chunk covered."""
    y, past, future = darts_data
    assert darts_fitted.extreme_lags == (-96, H - 1, -96, -1, -96, H - 1, 0)
    late = past[50:]
    hf = darts_fitted.historical_forecasts(y, past_covariates=late, future_covariates=future,
                                           forecast_horizon=H, stride=H, retrain=False,
                                           last_points_only=False)  # fmt: skip
    assert hf[0].start_time() == late.start_time() + 96 * y.freq


def test_darts_several_series_each_with_its_covariates(darts_fitted, darts_data):
    """One covariate series per target series, matched by position and read by time."""
    y, past, future = darts_data
    short = y[:-30]
    out = darts_fitted.predict(H, series=[y, short], past_covariates=[past, past],
                               future_covariates=[future, future])  # fmt: skip
    alone = darts_fitted.predict(H, series=short, past_covariates=past, future_covariates=future)
    np.testing.assert_allclose(out[1].values(), alone.values(), rtol=1e-5, atol=1e-6)
    assert out[1].start_time() == short.end_time() + short.freq
    with pytest.raises(ValueError, match="one TimeSeries per target series"):
        darts_fitted.predict(H, series=[y, short], past_covariates=[past],
                             future_covariates=[future, future])  # fmt: skip
