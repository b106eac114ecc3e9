"""Joint modelling of a multivariate series' channels (``multivariate="joint"``): each channel
reads the others as past covariates, in the engine and through sktime, Darts and the CLI."""

from __future__ import annotations

import pickle
import warnings

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from msft_forecast.engine import MSFTEngine
from msft_forecast.training.covariates import as_covariates
from msft_forecast.training.joint import channel_count, other_channel_names, with_other_channels

T, C, H = 200, 48, 8


@pytest.fixture(scope="module")
def channels():
    rng = np.random.default_rng(0)
    lead = np.sin(np.arange(T) * 2 * np.pi / 24) + 0.1 * rng.normal(size=T)
    # the second channel follows the first three steps later: only a joint model can see it
    return [lead, np.roll(lead, 3) + 0.1 * rng.normal(size=T), rng.normal(size=T)]


def _engine(backbone, **kw) -> MSFTEngine:
    kw = dict(backbone=str(backbone), context_length=C, prediction_length=H, patch_size=8,
              batch_size=4, random_state=0, verbose=False) | kw  # fmt: skip
    return MSFTEngine(**kw)


# ------------------------------------------------------------------------- the expansion
@settings(max_examples=60, deadline=None)
@given(
    n_series=st.integers(1, 3), width=st.integers(1, 4), length=st.integers(1, 12),
    user_past=st.integers(0, 2), with_future=st.booleans(),
)  # fmt: skip
def test_each_channel_reads_the_other_channels_of_its_own_series_then_its_own_covariates(
    n_series, width, length, user_past, with_future
):
    rng = np.random.default_rng(n_series * 100 + width * 10 + length)
    series = [rng.normal(size=length) for _ in range(n_series * width)]
    past = [rng.normal(size=(length, user_past)) for _ in series] if user_past else None
    future = [rng.normal(size=(length + 2, 1)) for _ in series] if with_future else None
    given_ = as_covariates(series, past, future, horizon=2)
    out = with_other_channels(given_, series, width, "moirai")
    if width == 1:
        assert out is given_
        return
    assert out.past_names == other_channel_names(width) + given_.past_names
    assert out.future_names == given_.future_names
    for i, (p, f) in enumerate(out.pairs):
        first, c = i - i % width, i % width
        others = [series[first + j] for j in range(width) if j != c]
        assert p.shape == (length, width - 1 + user_past)
        np.testing.assert_array_equal(p[:, : width - 1], np.stack(others, 1))
        if user_past:
            np.testing.assert_array_equal(p[:, width - 1 :], past[i])
        if with_future:
            np.testing.assert_array_equal(f, future[i])
        else:
            assert f is None
    # the caller's arrays are untouched
    assert all(s.shape == (length,) for s in series)


def test_channel_counts_and_groupings_that_do_not_fit_are_refused():
    assert channel_count([2, 2]) == 2
    with pytest.raises(ValueError, match="one number of channels"):
        channel_count([2, 3])
    with pytest.raises(ValueError, match="fitted on series of 3 channels.*series of 2"):
        channel_count(2, fitted=3)
    three = [np.zeros(5)] * 3
    with pytest.raises(ValueError, match="3 channels are not a whole number of series of 2"):
        with_other_channels(as_covariates(three), three, 2, "moirai")
    uneven = [np.zeros(5), np.zeros(6)]
    with pytest.raises(ValueError, match="different lengths"):
        with_other_channels(as_covariates(uneven), uneven, 2, "moirai")


# ---------------------------------------------------------------------------- the engine
def test_a_joint_forecast_is_the_forecast_with_the_other_channels_as_past_covariates(
    tiny_moirai_dir, channels
):
    """The whole rule of joint modelling, end to end (zero-shot: no training noise)."""
    joint = _engine(tiny_moirai_dir, fit_strategy="zero-shot", multivariate="joint")
    joint.fit(channels, channels=3)
    assert joint.report_.channels == 3
    assert joint.report_.past_covariates == ["other_channel_1", "other_channel_2"]
    got = joint.forecast(channels, H, 16, seed=1)
    for c in range(3):
        others = np.stack([channels[j] for j in range(3) if j != c], 1)
        alone = _engine(tiny_moirai_dir, fit_strategy="zero-shot")
        alone.fit([channels[c]], past_covariates=[others])
        want = alone.forecast([channels[c]], H, 16, seed=1, past_covariates=[others])
        np.testing.assert_allclose(got.mean[c], want.mean[0], rtol=1e-5, atol=1e-6)
    independent = _engine(tiny_moirai_dir, fit_strategy="zero-shot").fit(channels, channels=3)
    assert independent.report_.channels == 1 and not independent.report_.past_covariates
    assert not np.allclose(independent.forecast(channels, H, 0).mean, got.mean)


@pytest.fixture(scope="module")
def joint_fitted(tiny_moirai_dir, channels):
    engine = _engine(tiny_moirai_dir, multivariate="joint", max_steps=2)
    return engine.fit(channels[:2] * 2, channels=2)  # two series of two channels


def test_a_fitted_joint_model_forecasts_series_of_its_channels_only(joint_fitted, channels):
    pair = channels[:2]
    fc = joint_fitted.forecast(pair, H, 4, channels=2)
    assert fc.samples.shape == (2, 4, H)
    with pytest.raises(ValueError, match="fitted on series of 2 channels.*series of 3"):
        joint_fitted.forecast(channels, H, 4, channels=3)
    with pytest.raises(ValueError, match="3 channels are not a whole number of series of 2"):
        joint_fitted.forecast(channels, H, 4)


def test_save_load_and_pickle_keep_a_joint_model(joint_fitted, channels, tmp_path):
    expected = joint_fitted.forecast(channels[:2], H, 8, seed=2)
    for engine in (MSFTEngine.load(joint_fitted.save(tmp_path / "m")),
                   pickle.loads(pickle.dumps(joint_fitted))):  # fmt: skip
        assert engine.report_.channels == 2 and engine.settings.multivariate == "joint"
        np.testing.assert_array_equal(engine.forecast(channels[:2], H, 8, seed=2).samples,
                                      expected.samples)  # fmt: skip


@pytest.mark.filterwarnings("ignore:Only .* validation windows")
def test_a_backbone_without_variate_input_refuses_joint_modelling(tiny_moment_dir, channels):
    engine = _engine(tiny_moment_dir, multivariate="joint", max_steps=1, patch_size="auto")
    with pytest.raises(ValueError, match="any-variate attention; the moment backbone"):
        engine.fit(channels[:2], channels=2)
    assert not engine.is_fitted
    # one channel per series has no other channel to read: nothing to refuse
    assert engine.fit(channels[:1], channels=1).report_.channels == 1


def test_the_setting_is_checked():
    from msft_forecast.settings import MSFTSettings

    with pytest.raises(ValueError, match="multivariate must be 'independent' or 'joint'"):
        MSFTSettings(multivariate="together").validate()


# ------------------------------------------------------------------------- front ends
def test_sktime_joint_model_of_a_dataframes_columns(tiny_moirai_dir, channels):
    from msft_forecast import MSFTForecaster

    index = pd.period_range("2000-01-01", periods=T, freq="h")
    y = pd.DataFrame({"a": channels[0], "b": channels[1]}, index=index)
    f = MSFTForecaster(backbone=str(tiny_moirai_dir), multivariate="joint", context_length=C,
                       max_steps=2, batch_size=4, patch_size=8, random_state=0,
                       num_samples=8)  # fmt: skip
    f.fit(y, fh=list(range(1, H + 1)))
    assert f.engine_.report_.channels == 2
    pred = f.predict()
    assert list(pred.columns) == ["a", "b"] and len(pred) == H
    assert f.predict_interval(coverage=0.8).shape == (H, 4)
    f.update(y.iloc[-10:].set_axis(index[-10:] + 10), update_params=True)
    assert f.engine_.report_.channels == 2


def test_darts_joint_model_of_a_multivariate_series(tiny_moirai_dir, channels):
    pytest.importorskip("darts")
    from darts import TimeSeries

    from msft_forecast.darts import MSFTModel

    series = TimeSeries.from_values(np.stack(channels[:2], 1).astype(np.float32))
    model = MSFTModel(input_chunk_length=C, output_chunk_length=H, backbone=str(tiny_moirai_dir),
                      multivariate="joint", max_steps=2, batch_size=4, patch_size=8,
                      random_state=0)  # fmt: skip
    model.fit(series)
    assert model.engine.report_.channels == 2
    fc = model.predict(H, num_samples=4)
    assert fc.n_components == 2 and len(fc) == H and fc.n_samples == 4
    three = TimeSeries.from_values(np.stack(channels, 1).astype(np.float32))
    with pytest.raises(ValueError, match="fitted on series of 2 channels"):
        model.predict(H, series=three)


def test_cli_joint_forecast_of_the_files_columns(tmp_path, channels):
    from msft_forecast.cli import main

    path = tmp_path / "data.csv"
    frame = pd.DataFrame({"time": pd.date_range("2020-01-01", periods=T, freq="h"),
                          "a": channels[0], "b": channels[1]})  # fmt: skip
    frame.to_csv(path, index=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the bundled backbone warns that it reads no variates
        code = main(["forecast", str(path), "--horizon", str(H), "--backbone", "moirai-tiny",
                     "--multivariate", "joint", "--max-steps", "1", "--context", str(C),
                     "--seed", "0", "--num-samples", "4", "--quiet",
                     "--output", str(tmp_path / "out.csv")])  # fmt: skip
    assert code == 0
    out = pd.read_csv(tmp_path / "out.csv")
    assert out.groupby("series").size().to_dict() == {"a": H, "b": H}
    assert out["mean"].notna().all()
