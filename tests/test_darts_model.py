"""The Darts front end ``msft_forecast.darts.MSFTModel`` on real bundled data.

Data: the airline passengers (sktime's bundled copy; monthly, DatetimeIndex) and three columns
of statsmodels' bundled ``macrodata`` (quarterly US macro data as a RangeIndex series).
Nothing is downloaded (``darts.datasets`` would be). Models are tiny random Moirai/MOMENT
checkpoints fitted for a few steps: the tests check the Darts contract, not accuracy.
"""

from __future__ import annotations

import pickle
import zipfile
from dataclasses import fields

import numpy as np
import pandas as pd
import pytest
from darts import TimeSeries, concatenate
from darts.metrics import mae, mape, rmse, smape
from darts.models.forecasting.forecasting_model import GlobalForecastingModel

from msft_forecast.darts import MSFTModel
from msft_forecast.engine import MSFTEngine, MSFTSettings

C, H = 48, 12


@pytest.fixture(scope="module")
def macro() -> TimeSeries:
    from statsmodels.datasets import macrodata

    data = macrodata.load_pandas().data[["realgdp", "realcons", "realinv"]]
    return TimeSeries.from_values(data.to_numpy(np.float64), columns=["gdp", "cons", "inv"])


def _model(backbone, **kwargs) -> MSFTModel:
    params = dict(
        input_chunk_length=C,
        output_chunk_length=H,
        backbone=str(backbone),
        max_steps=3,
        batch_size=8,
        patch_size=16,  # skip the patch-size search: these tests are about the adapter
        random_state=0,
    )
    params.update(kwargs)
    return MSFTModel(**params)


@pytest.fixture(scope="module")
def fitted(tiny_moirai_dir, airline) -> MSFTModel:
    return _model(tiny_moirai_dir).fit(airline[:-24])


@pytest.fixture(scope="module")
def fitted_multi(tiny_moirai_dir, airline, macro) -> MSFTModel:
    """Fitted on a list: a 3-component RangeIndex series and a DatetimeIndex series."""
    return _model(tiny_moirai_dir, max_steps=2).fit([macro[:-12], airline[:-12]])


def _same(a: TimeSeries, b: TimeSeries, rtol: float = 1e-5) -> None:
    """Same index, frequency, components and attributes; values equal up to float32 batching."""
    assert a.time_index.equals(b.time_index) and a.time_index.dtype == b.time_index.dtype
    assert a.freq == b.freq
    assert getattr(a.time_index, "freq", None) == getattr(b.time_index, "freq", None)
    assert a.time_index.name == b.time_index.name
    assert list(a.components) == list(b.components)
    assert a.n_samples == b.n_samples
    assert a.dtype == b.dtype
    assert (a.static_covariates is None) == (b.static_covariates is None)
    np.testing.assert_allclose(a.all_values(), b.all_values(), rtol=rtol, atol=1e-6)


# ------------------------------------------------------------------------------- the contract
def test_is_a_darts_global_model(fitted):
    assert isinstance(fitted, GlobalForecastingModel)
    assert fitted.supports_probabilistic_prediction
    assert fitted.supports_multivariate and fitted.supports_likelihood_parameter_prediction
    assert fitted.supports_past_covariates and fitted.supports_future_covariates  # Moirai
    assert fitted.extreme_lags == (-C, H - 1, None, None, None, None, 0)
    assert fitted.min_train_series_length == C + H


def test_every_engine_setting_is_a_parameter():
    params = set(MSFTModel._get_default_model_params())
    renamed = {
        "context_length": "input_chunk_length",
        "prediction_length": "output_chunk_length",
        "max_epochs": "n_epochs",
    }
    through_trainer = {"accelerator", "devices", "strategy", "precision", "verbose"}
    for f in fields(MSFTSettings):
        if f.name in through_trainer:
            continue
        assert renamed.get(f.name, f.name) in params, f.name
    defaults = MSFTModel._get_default_model_params()
    for f in fields(MSFTSettings):
        if f.name in params:
            assert defaults[f.name] == getattr(MSFTSettings(), f.name), f.name


def test_settings_and_trainer_kwargs_reach_the_engine():
    model = MSFTModel(
        input_chunk_length=64,
        output_chunk_length=8,
        n_epochs=2,
        lora_rank=4,
        pl_trainer_kwargs={"accelerator": "cpu", "devices": 1, "precision": "32-true"},
    )
    s = model._settings
    assert (s.context_length, s.prediction_length, s.max_epochs, s.lora_rank) == (64, 8, 2, 4)
    assert (s.accelerator, s.devices, s.precision) == ("cpu", 1, "32-true")
    with pytest.raises(ValueError, match="pl_trainer_kwargs"):
        MSFTModel(pl_trainer_kwargs={"enable_model_summary": True})
    with pytest.raises(ValueError, match="fit_strategy"):
        MSFTModel(fit_strategy="nope")
    with pytest.raises(ValueError, match="quantiles"):
        MSFTModel(quantiles=(0.0, 0.5))
    clone = model.untrained_model()
    assert clone.model_params == model.model_params and clone._engine is None


def test_covariates_are_refused_where_they_cannot_be_read(fitted, airline, tiny_moment_dir):
    """A model fitted without covariates refuses them in predict; MOMENT has no covariate
    input (``supports_*_covariates`` False) and refuses them in fit."""
    with pytest.raises(ValueError, match="fitted with 0 past covariates"):
        fitted.predict(H, series=airline, past_covariates=airline)
    moment = _model(tiny_moment_dir, input_chunk_length=64, max_steps=1)
    assert not moment.supports_past_covariates and not moment.supports_future_covariates
    with pytest.raises(ValueError, match="no covariate input.*backbone='moirai'"):
        moment.fit(airline, past_covariates=airline)


# -------------------------------------------------------------------------------- predict
def test_predict_deterministic(fitted, airline):
    fc = fitted.predict(H)
    train = airline[:-24]
    assert len(fc) == H and fc.is_deterministic
    assert fc.start_time() == train.end_time() + train.freq and fc.freq == train.freq
    assert list(fc.components) == list(airline.components)
    assert np.isfinite(fc.values()).all()
    # the mean of the engine's forecast, unchanged by the adapter
    direct = fitted.engine.forecast([train.values()[:, 0]], H, 1).mean[0]
    np.testing.assert_array_equal(fc.values()[:, 0], direct)
    _same(fitted.predict(H), fc, rtol=0)
    # another series: forecasts start after its own end; longer horizons are direct (Moirai)
    other = fitted.predict(2 * H, series=airline)
    assert other.start_time() == airline.end_time() + airline.freq and len(other) == 2 * H


def test_predict_probabilistic(fitted):
    fc = fitted.predict(H, num_samples=50)
    assert fc.is_stochastic and fc.all_values().shape == (H, 1, 50)
    assert (fc.all_values().std(axis=2) > 0).all()
    _same(fitted.predict(H, num_samples=50), fc, rtol=0)  # random_state=0: reproducible
    other = fitted.predict(H, num_samples=50, random_state=1)
    assert not np.allclose(other.all_values(), fc.all_values())


def test_predict_likelihood_parameters(fitted, airline):
    fc = fitted.predict(H, predict_likelihood_parameters=True)
    name = airline.components[0]
    assert list(fc.components) == [f"{name}_q{q:.3f}" for q in fitted.quantiles]
    assert fc.is_deterministic and fc.static_covariates is None
    assert (np.diff(fc.values(), axis=1) >= 0).all()  # quantiles increase with the level
    with pytest.raises(ValueError, match="num_samples"):
        fitted.predict(H, num_samples=5, predict_likelihood_parameters=True)
    with pytest.raises(ValueError, match="output_chunk_length"):
        fitted.predict(H + 1, predict_likelihood_parameters=True)


def test_list_and_multivariate(fitted_multi, airline, macro):
    out = fitted_multi.predict(H, series=[macro, airline], num_samples=4)
    assert isinstance(out, list) and len(out) == 2
    assert isinstance(out[0].time_index, pd.RangeIndex) and out[0].start_time() == len(macro)
    assert list(out[0].components) == ["gdp", "cons", "inv"]
    assert out[0].all_values().shape == (H, 3, 4)
    assert out[1].start_time() == airline.end_time() + airline.freq
    single = fitted_multi.predict(H, series=macro)
    assert isinstance(single, TimeSeries)
    # channel-independent: a component forecast alone is the same as within its series
    alone = fitted_multi.predict(H, series=macro["cons"])
    np.testing.assert_allclose(alone.values()[:, 0], single.values()[:, 1], rtol=1e-5)
    with pytest.raises(ValueError, match="several series"):
        fitted_multi.predict(H)


def test_short_series_need_a_variable_input_chunk_length(tiny_moirai_dir, airline):
    model = _model(tiny_moirai_dir, input_chunk_length=(12, C), max_steps=0)
    model.fit(airline[:60])
    assert model.extreme_lags[0] == -12
    assert len(model.predict(H, series=airline[:20])) == H
    with pytest.raises(ValueError, match="at least 12"):
        model.predict(H, series=airline[:8])
    fixed = _model(tiny_moirai_dir, max_steps=0).fit(airline[:60])
    with pytest.raises(ValueError, match="input_chunk_length"):
        fixed.predict(H, series=airline[:20])


# ------------------------------------------------------------------- historical forecasts
HFC_CASES = [
    dict(forecast_horizon=6, stride=2, start=-30, start_format="position"),
    dict(forecast_horizon=H, stride=3, start=0.8),
    dict(forecast_horizon=4, stride=1, start=-6, start_format="position", overlap_end=True),
    dict(forecast_horizon=3, start="end"),
]


@pytest.mark.parametrize("last_points_only", [True, False])
@pytest.mark.parametrize("kwargs", HFC_CASES, ids=lambda k: ",".join(map(str, k.values())))
def test_fast_historical_forecasts_match_a_loop_of_predicts(
    fitted_multi, airline, macro, kwargs, last_points_only
):
    series = [macro, airline]
    fast = fitted_multi.historical_forecasts(
        series, retrain=False, last_points_only=last_points_only, **kwargs
    )
    loop = fitted_multi.historical_forecasts(
        series,
        retrain=False,
        last_points_only=last_points_only,
        enable_optimization=False,
        **kwargs,
    )
    assert len(fast) == len(loop) == 2
    for f, g in zip(fast, loop, strict=True):
        if last_points_only:
            _same(f, g)
        else:
            assert len(f) == len(g) > 0
            for a, b in zip(f, g, strict=True):
                _same(a, b)


def test_fast_path_batches_windows(fitted, airline, monkeypatch):
    calls = []
    original = MSFTEngine.forecast

    def counting(self, contexts, *args, **kwargs):
        calls.append(len(contexts))
        return original(self, contexts, *args, **kwargs)

    monkeypatch.setattr(MSFTEngine, "forecast", counting)
    hist = fitted.historical_forecasts(airline, retrain=False, forecast_horizon=1)
    assert len(hist) == len(airline) - C  # every window from the first full context on
    # one engine call for every window (the engine batches them itself)
    assert calls == [len(hist)]


def test_historical_forecasts_probabilistic(fitted_multi, macro):
    kwargs = dict(retrain=False, forecast_horizon=4, start=-12, start_format="position")
    hist = fitted_multi.historical_forecasts(
        macro, num_samples=6, last_points_only=False, overlap_end=True, **kwargs
    )
    assert len(hist) == 13 and all(h.all_values().shape == (4, 3, 6) for h in hist)
    q = fitted_multi.historical_forecasts(macro, predict_likelihood_parameters=True, **kwargs)
    assert q.n_components == 3 * len(fitted_multi.quantiles)
    assert q.components[0] == "gdp_q0.100"


def test_backtest_residuals_and_metrics(fitted, airline):
    kwargs = dict(start=0.7, forecast_horizon=H, stride=2, retrain=False)
    hist = fitted.historical_forecasts(airline, last_points_only=False, **kwargs)
    scores = fitted.backtest(
        airline, historical_forecasts=hist, metric=[mae, mape, rmse], reduction=np.mean
    )
    assert np.isfinite(scores).all() and scores.shape == (3,)
    assert scores[0] == pytest.approx(np.mean([mae(airline, h) for h in hist]))
    assert fitted.backtest(airline, metric=mae, last_points_only=False, **kwargs) == pytest.approx(
        scores[0]
    )
    res = fitted.residuals(airline, last_points_only=False, **kwargs)
    assert len(res) == len(hist)
    np.testing.assert_allclose(
        res[0].values(), airline.slice_intersect(hist[0]).values() - hist[0].values()
    )
    last = fitted.historical_forecasts(airline, **kwargs)
    assert np.isfinite(smape(airline, last))
    # probabilistic forecasts feed Darts' probabilistic metrics too
    sampled = fitted.historical_forecasts(airline, num_samples=10, **kwargs)
    assert sampled.is_stochastic and np.isfinite(mae(airline, sampled))


def test_retrain_true_uses_val_length(tiny_moirai_dir, airline):
    model = _model(tiny_moirai_dir, max_steps=2)
    hist = model.historical_forecasts(
        airline,
        start=len(airline) - H - 1,
        start_format="position",
        forecast_horizon=H,
        retrain=True,
        val_length=H,
        last_points_only=False,
    )
    assert len(hist) == 2 and all(len(h) == H for h in hist)


# ---------------------------------------------------------------------------- validation
def test_val_series_is_held_out(tiny_moirai_dir, airline):
    model = _model(tiny_moirai_dir, max_steps=2, val_check_interval=1)
    model.fit(airline[:-24], val_series=airline[-(24 + C) :])
    assert model.engine.settings.validation == 24
    assert model.engine.report_.initial_val_loss is not None
    with pytest.raises(ValueError, match="gap"):
        model.fit(airline[:-24], val_series=airline[-10:])
    with pytest.warns(UserWarning, match="without validation"):
        model.fit(airline[:-5], val_series=airline[-(5 + C) :])
    assert model.engine.settings.validation is None


# ---------------------------------------------------------------------------- persistence
def test_save_load_round_trip(fitted, airline, tmp_path):
    path = tmp_path / "model.pt"
    fitted.save(path)
    with zipfile.ZipFile(path) as archive:  # one file of JSON and safetensors: nothing pickled
        assert all(f.endswith((".json", ".safetensors")) for f in archive.namelist())
    loaded = MSFTModel.load(path)
    assert loaded.model_params == fitted.model_params
    assert loaded.training_series == fitted.training_series
    _same(loaded.predict(H), fitted.predict(H), rtol=0)
    _same(loaded.predict(H, num_samples=30), fitted.predict(H, num_samples=30), rtol=0)
    a = loaded.historical_forecasts(airline, start=0.8, forecast_horizon=3, retrain=False)
    _same(a, fitted.historical_forecasts(airline, start=0.8, forecast_horizon=3, retrain=False))

    fitted.save(tmp_path / "clean", clean=True)
    clean = MSFTModel.load(tmp_path / "clean")
    assert clean.training_series is None
    _same(clean.predict(H, series=airline), fitted.predict(H, series=airline), rtol=0)
    with pytest.raises(ValueError, match="series"):
        clean.predict(H)
    with pytest.raises(ValueError, match="darts_model.json"):
        MSFTModel.load(tmp_path)

    MSFTModel(input_chunk_length=C, lora_rank=4).save(tmp_path / "unfitted")
    unfitted = MSFTModel.load(tmp_path / "unfitted")
    assert unfitted.model_params["lora_rank"] == 4 and not unfitted._fit_called
    with pytest.raises(ValueError, match="fit"):
        unfitted.predict(H, series=airline)


def test_save_load_keeps_series_attributes(fitted_multi, tmp_path):
    idx = pd.date_range("2020-01-01", periods=80, freq="h", tz="Europe/Paris", name="when")
    values = np.random.default_rng(0).normal(size=(80, 2))
    series = TimeSeries.from_times_and_values(
        idx,
        values,
        columns=["a", "b"],
        static_covariates=pd.DataFrame({"site": [3.5, 1.25]}, index=["a", "b"]),
    )
    model = _model(fitted_multi.model_params["backbone"], max_steps=0).fit(series)
    model.save(tmp_path / "m")
    loaded = MSFTModel.load(tmp_path / "m")
    assert loaded.training_series == series
    assert loaded.training_series.time_index.equals(series.time_index)
    pd.testing.assert_frame_equal(
        loaded.training_series.static_covariates, series.static_covariates
    )
    _same(loaded.predict(H), model.predict(H), rtol=0)


def test_pickle_keeps_only_the_trainable_tensors(fitted):
    blob = pickle.dumps(fitted)
    tensors = fitted.engine.trainable_state()
    trainable = sum(t.numel() * t.element_size() for t in tensors.values())
    backbone = sum(
        p.numel() * p.element_size()
        for n, p in fitted.engine.model_.named_parameters()
        if not p.requires_grad
    )
    assert backbone > 0 and len(blob) < trainable + 64_000  # no frozen weights inside
    _same(pickle.loads(blob).predict(H), fitted.predict(H), rtol=0)


# ------------------------------------------------------------------------------ MOMENT
def test_moment_rolls_forward_beyond_its_heads(tiny_moment_dir, airline):
    model = _model(tiny_moment_dir, input_chunk_length=64, max_steps=1, validation=None)
    model.fit(airline[:-24])
    short, long = model.predict(H), model.predict(2 * H + 3)
    assert len(long) == 2 * H + 3
    np.testing.assert_allclose(long.values()[:H], short.values())
    # the second chunk is the forecast from the first one appended to the context
    extended = concatenate([airline[:-24], short])
    np.testing.assert_allclose(
        long.values()[H : 2 * H], model.predict(H, series=extended).values(), rtol=1e-5
    )
    assert model.predict(2 * H, num_samples=3).all_values().shape == (2 * H, 1, 3)


def test_the_private_darts_names_still_have_the_expected_shape():
    """The front end uses three private Darts functions (``msft_forecast/darts_compat.py``);
    a Darts release that renames them or their parameters fails here, by name."""
    import inspect

    from msft_forecast.darts_compat import EXPECTED_PARAMETERS, OVERRIDDEN_HOOKS

    for func, names in EXPECTED_PARAMETERS.items():
        params = inspect.signature(func).parameters
        missing = [n for n in names if n not in params]
        assert not missing, f"darts' {func.__qualname__} no longer takes {missing}"
    gone = [name for name in OVERRIDDEN_HOOKS if not hasattr(GlobalForecastingModel, name)]
    assert not gone, f"GlobalForecastingModel no longer has the hooks {gone}"
