"""Plot helpers: per-scale forecasts and weights from every front end, and what gets drawn."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from msft_forecast.engine import MSFTEngine  # noqa: E402
from msft_forecast.plotting import plot_scales, scale_forecast  # noqa: E402

TINY = dict(context_length=64, prediction_length=12, max_steps=3, batch_size=4, random_state=0)


@pytest.fixture(scope="module")
def hourly() -> pd.Series:
    t = np.arange(300)
    rng = np.random.default_rng(1)
    values = 5 + np.sin(2 * np.pi * t / 24) + rng.normal(0, 0.1, t.size)
    return pd.Series(values, index=pd.date_range("2024-01-01", periods=t.size, freq="h"))


@pytest.fixture(scope="module")
def engine(tiny_moirai_dir, hourly) -> MSFTEngine:
    return MSFTEngine(backbone=str(tiny_moirai_dir), num_samples=50, **TINY).fit(
        [hourly.to_numpy()], freq="h"
    )


def test_scales_blend_to_the_mean_with_the_weights(engine, hourly) -> None:
    fc = scale_forecast(engine, hourly, coverage=0.9)
    assert list(fc.weights.index) == ["scale_0", "scale_1", "scale_2", "scale_3"]
    assert fc.weights.sum() == pytest.approx(1.0)
    np.testing.assert_allclose(fc.weights.to_numpy(), engine.scale_weights, rtol=1e-6)
    # the blend ("mixing='blend'") is the weighted sum of the scales' forecasts
    blended = fc.frame[list(fc.weights.index)].to_numpy() @ fc.weights.to_numpy()
    np.testing.assert_allclose(blended, fc.frame["mean"].to_numpy(), rtol=1e-4, atol=1e-5)
    # the forecast starts one step after the data, at the data's frequency
    assert fc.frame.index[0] == hourly.index[-1] + pd.Timedelta("1h")
    assert len(fc.frame) == 12 and fc.frame.index.freq == "h"
    assert (fc.frame["lower"] <= fc.frame["upper"]).all()
    # a coarse scale is piecewise constant: scale 2 repeats each step four times
    s2 = fc.frame["scale_2"].to_numpy()
    np.testing.assert_array_equal(s2[0:4], np.repeat(s2[0], 4))


def test_sktime_forecaster_gives_what_predict_gives(tiny_moirai_dir, hourly) -> None:
    from msft_forecast import MSFTForecaster

    f = MSFTForecaster(backbone=str(tiny_moirai_dir), num_samples=50, **TINY)
    f.fit(hourly, fh=range(1, 13))
    fc = scale_forecast(f, hourly, coverage=0.8)
    np.testing.assert_allclose(fc.frame["mean"].to_numpy(), f.predict().to_numpy(), rtol=1e-6)
    interval = f.predict_interval(coverage=0.8)
    np.testing.assert_allclose(fc.frame["lower"].to_numpy(), interval.iloc[:, 0], rtol=1e-6)
    np.testing.assert_allclose(fc.frame["upper"].to_numpy(), interval.iloc[:, 1], rtol=1e-6)
    assert fc.frame.index.equals(f.predict().index)


def test_darts_model_and_a_multivariate_series(tiny_moirai_dir, hourly) -> None:
    from darts import TimeSeries

    from msft_forecast.darts import MSFTModel

    frame = pd.DataFrame({"a": hourly, "b": 2 * hourly})
    series = TimeSeries.from_dataframe(frame)
    model = MSFTModel(
        backbone=str(tiny_moirai_dir),
        input_chunk_length=64,
        output_chunk_length=12,
        max_steps=3,
        batch_size=4,
        random_state=0,
    ).fit(series)
    with pytest.raises(ValueError, match="column="):
        scale_forecast(model, series)
    fc = scale_forecast(model, series, column="b", horizon=6)
    expected = model.predict(6, series=series).to_dataframe()["b"].to_numpy()
    np.testing.assert_allclose(fc.frame["mean"].to_numpy(), expected, rtol=1e-5)


def test_plot_draws_each_scale_with_its_weight(engine, hourly) -> None:
    ax = plot_scales(engine, hourly.iloc[:-12], actual=hourly.iloc[-12:], title="t")
    labels = [line.get_label() for line in ax.get_lines()]
    weights = engine.scale_weights
    for k in range(4):
        assert f"scale {k} (1/{2**k} resolution, w={weights[k]:.2f})" in labels
    assert {"history", "forecast (mean)", "actual"} <= set(labels)
    assert any("80% interval" in t.get_text() for t in ax.get_legend().get_texts())
    plt.close(ax.figure)


def test_unfitted_and_wrong_models_are_refused(tiny_moirai_dir, hourly) -> None:
    from msft_forecast import MSFTForecaster

    with pytest.raises(RuntimeError, match="not fitted"):
        scale_forecast(MSFTEngine(backbone=str(tiny_moirai_dir), **TINY), hourly)
    with pytest.raises(TypeError, match="MSFTEngine, MSFTForecaster or MSFTModel"):
        scale_forecast(MSFTForecaster(backbone=str(tiny_moirai_dir)), hourly)
    with pytest.raises(ValueError, match="coverage"):
        scale_forecast(MSFTEngine(backbone=str(tiny_moirai_dir), **TINY), hourly, coverage=1.5)
