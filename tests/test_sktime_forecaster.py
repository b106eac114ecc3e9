"""MSFTForecaster in sktime workflows: formats, probabilistic output, backtests, persistence.

Everything runs offline on the bundled ``moirai-tiny`` backbone (or a random tiny MOMENT) with a
few training steps; fitted forecasters are shared per module to keep the file fast.
"""

from __future__ import annotations

import copy
import pickle
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sktime.datasets import load_airline
from sktime.forecasting.base import ForecastingHorizon
from sktime.utils._testing.hierarchical import _make_hierarchical

from msft_forecast import MSFTForecaster
from msft_forecast.backbones.cache import clear_backbone_cache, disk_loads
from msft_forecast.engine import MSFTSettings

#: Tiny settings: a fit takes about a second on two CPU cores.
TINY = dict(
    backbone="moirai-tiny",
    context_length=32,
    prediction_length=6,
    num_scales=2,
    max_steps=2,
    batch_size=8,
    num_samples=20,
    random_state=0,
    validation=None,
    update_steps=1,
)
FH = list(range(1, 7))


@pytest.fixture(scope="module")
def y_air() -> pd.Series:
    return load_airline()


@pytest.fixture(scope="module")
def fitted(y_air) -> MSFTForecaster:
    return MSFTForecaster(**TINY).fit(y_air, fh=FH)


def _panel(levels=(3,), n=60, n_columns=1, index_type=None) -> pd.DataFrame:
    return _make_hierarchical(
        hierarchy_levels=levels,
        min_timepoints=n,
        max_timepoints=n,
        n_columns=n_columns,
        index_type=index_type,
        random_state=0,
    )


# ------------------------------------------------------------------------------- interface
def test_import_is_lazy_and_exported():
    code = (
        "import sys, msft_forecast; "
        "assert 'MSFTForecaster' in msft_forecast.__all__; "
        "assert 'torch' not in sys.modules and 'sktime' not in sys.modules, sorted(sys.modules)"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_hyper_parameters_mirror_engine_settings():
    params = MSFTForecaster().get_params(deep=False)
    defaults = MSFTSettings()
    for f in fields(MSFTSettings):
        assert params.pop(f.name) == getattr(defaults, f.name), f.name
    assert params == {"update_steps": 20}


def test_training_horizon_from_fh_or_prediction_length(y_air, fitted):
    assert fitted.engine_.settings.prediction_length == max(FH)
    assert fitted.get_params()["prediction_length"] == TINY["prediction_length"]
    no_fh = MSFTForecaster(**{**TINY, "fit_strategy": "zero-shot", "prediction_length": 4})
    assert no_fh.fit(y_air).engine_.settings.prediction_length == 4


# ------------------------------------------------------------------------ probabilistic output
def test_point_forecast_is_engine_mean(y_air, fitted):
    y_pred = fitted.predict(fh=FH)
    context = y_air.to_numpy(dtype=float)
    expected = fitted.engine_.forecast([context], horizon=max(FH)).mean[0]
    np.testing.assert_allclose(y_pred.to_numpy(), expected)
    assert y_pred.name == y_air.name
    assert y_pred.index.equals(ForecastingHorizon(FH).to_absolute_index(fitted.cutoff))


def test_quantiles_monotone_and_intervals_nest(fitted):
    alpha = [0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95]
    q = fitted.predict_quantiles(fh=FH, alpha=alpha).to_numpy()
    assert np.all(np.diff(q, axis=1) >= 0)
    intervals = fitted.predict_interval(fh=FH, coverage=[0.8, 0.9])
    name = intervals.columns.get_level_values(0)[0]
    i80, i90 = intervals[(name, 0.8)], intervals[(name, 0.9)]
    assert np.all(i90["lower"] <= i80["lower"]) and np.all(i80["upper"] <= i90["upper"])
    assert np.all(i80["lower"] < i80["upper"])


def test_predict_proba_agrees_with_quantiles_and_var(y_air):
    forecaster = MSFTForecaster(**{**TINY, "fit_strategy": "zero-shot", "num_samples": 50})
    forecaster.fit(y_air, fh=FH)
    dist = forecaster.predict_proba()
    assert type(dist).__name__ == "Empirical"
    assert dist.index.equals(forecaster.predict().index)
    alpha = [0.1, 0.5, 0.9]
    q = forecaster.predict_quantiles(alpha=alpha).to_numpy()
    q_dist = dist.quantile(alpha).to_numpy()
    # both come from the same sample paths; they differ only in how a quantile between two
    # order statistics is interpolated (linear vs inverse CDF), so each lies within one
    # order statistic of the other
    spl = dist.spl.to_numpy().reshape(50, len(FH))
    for j, a in enumerate(alpha):
        ordered = np.sort(spl, axis=0)
        pos = a * (50 - 1)
        lo, hi = ordered[int(np.floor(pos)) - 1], ordered[int(np.ceil(pos)) + 1]
        assert np.all((lo <= q[:, j]) & (q[:, j] <= hi))
        assert np.all((lo <= q_dist[:, j]) & (q_dist[:, j] <= hi))
    np.testing.assert_allclose(forecaster.predict_var().to_numpy(), dist.var().to_numpy())
    joint = forecaster.predict_proba(marginal=False)
    assert joint.time_indep is False


def test_fh_longer_than_training_horizon_moirai(fitted):
    fh = list(range(1, 25))  # four times the training horizon
    y_pred = fitted.predict(fh=fh)
    assert len(y_pred) == 24 and np.isfinite(y_pred).all()
    q = fitted.predict_quantiles(fh=[3, 24], alpha=[0.1, 0.9])
    assert len(q) == 2 and np.all(q.iloc[:, 0] <= q.iloc[:, 1])


def test_in_sample_fh_raises(fitted):
    forecaster = copy.deepcopy(fitted)  # sktime stores the rejected fh on the instance
    with pytest.raises(NotImplementedError, match="in-sample"):
        forecaster.predict(fh=[-1, 0, 1])


def test_same_random_state_same_forecasts(y_air, fitted):
    # also after the backbone is read from disk again, as in a fresh process
    clear_backbone_cache()
    again = MSFTForecaster(**TINY).fit(y_air, fh=FH)
    pd.testing.assert_series_equal(again.predict(), fitted.predict(fh=FH))
    alpha = [0.1, 0.9]
    pd.testing.assert_frame_equal(
        again.predict_quantiles(alpha=alpha), fitted.predict_quantiles(fh=FH, alpha=alpha)
    )


# ----------------------------------------------------------------------------- persistence
def test_pickle_is_small_and_predicts_identically(y_air, fitted, tmp_path):
    from sktime.base import load

    from msft_forecast.backbones.checkpoint import resolve_checkpoint

    weights = Path(resolve_checkpoint("moirai-tiny").folder) / "model.safetensors"
    weights_bytes = weights.stat().st_size
    sizes = {}
    for name, forecaster in [
        ("msft", fitted),
        ("msft, frozen head", MSFTForecaster(**TINY, train_head=False).fit(y_air, fh=FH)),
    ]:
        blob = pickle.dumps(forecaster)
        tensors = forecaster.engine_.trainable_state().values()
        trainable_bytes = sum(t.numel() * t.element_size() for t in tensors)
        sizes[name] = len(blob)
        print(
            f"\npickled fitted MSFTForecaster ({name}): {len(blob)} bytes, of which trainable "
            f"tensors {trainable_bytes}; backbone weights file: {weights_bytes} bytes"
        )
        # only the trainable tensors and a short context travel, never the frozen backbone
        assert len(blob) < trainable_bytes + 100_000
        assert len(blob) < weights_bytes
    # without the (all-patch-size) head copy, what travels is a small fraction of the backbone
    assert sizes["msft, frozen head"] < 0.25 * weights_bytes

    blob = pickle.dumps(fitted)
    restored = pickle.loads(blob)
    expected = fitted.predict(fh=FH)
    pd.testing.assert_series_equal(restored.predict(fh=FH), expected)
    pd.testing.assert_frame_equal(
        restored.predict_interval(fh=FH, coverage=0.9),
        fitted.predict_interval(fh=FH, coverage=0.9),
    )
    fitted.save(tmp_path / "forecaster")
    loaded = load(tmp_path / "forecaster.zip")
    pd.testing.assert_series_equal(loaded.predict(fh=FH), expected)


# ---------------------------------------------------------------------------------- update
def test_update_moves_context_and_optionally_trains(y_air):
    train, rest = y_air.iloc[:120], y_air.iloc[120:132]
    forecaster = MSFTForecaster(**{**TINY, "fit_strategy": "lora"}).fit(train, fh=FH)
    before = {k: v.clone() for k, v in forecaster.engine_.trainable_state().items()}
    first = forecaster.predict()

    forecaster.update(rest.iloc[:6], update_params=False)
    after = forecaster.engine_.trainable_state()
    assert all(np.array_equal(before[k], after[k]) for k in before)
    moved = forecaster.predict()
    assert moved.index[0] == first.index[0] + 6
    assert len(forecaster.history_) == TINY["context_length"] + max(FH)

    forecaster.update(rest.iloc[6:], update_params=True)
    after = forecaster.engine_.trainable_state()
    assert any(not np.array_equal(before[k], after[k]) for k in before)
    assert forecaster.cutoff[0] == rest.index[-1]


def test_remember_data_false_forecasts_the_same(y_air):
    """The forecaster keeps its own context; the base class's copy of y is optional."""
    params = {**TINY, "fit_strategy": "zero-shot"}
    default = MSFTForecaster(**params).fit(y_air.iloc[:120], fh=FH)
    lean = MSFTForecaster(**params).set_config(remember_data=False)
    lean.fit(y_air.iloc[:120], fh=FH)
    for f in (default, lean):
        f.update(y_air.iloc[120:132], update_params=False)
    pd.testing.assert_series_equal(lean.predict(), default.predict())
    assert len(pickle.dumps(lean)) < len(pickle.dumps(default))


# ------------------------------------------------------------------------------- backtests
@pytest.mark.parametrize("strategy", ["refit", "update", "no-update_params"])
def test_evaluate_strategies(y_air, strategy):
    from sktime.forecasting.model_evaluation import evaluate
    from sktime.split import ExpandingWindowSplitter

    cv = ExpandingWindowSplitter(initial_window=108, step_length=12, fh=FH)
    results = evaluate(MSFTForecaster(**TINY), cv, y_air, strategy=strategy)
    assert len(results) == 3
    assert np.isfinite(results.iloc[:, 0]).all()


def test_backbone_read_from_disk_once_across_folds(y_air):
    from sktime.forecasting.model_evaluation import evaluate
    from sktime.split import ExpandingWindowSplitter

    clear_backbone_cache()
    before = disk_loads()
    cv = ExpandingWindowSplitter(initial_window=108, step_length=12, fh=FH)
    for strategy in ("refit", "update"):
        evaluate(MSFTForecaster(**TINY), cv, y_air, strategy=strategy)
    assert disk_loads() - before == 1


def test_evaluate_refit_in_parallel_processes(y_air):
    from sktime.forecasting.model_evaluation import evaluate
    from sktime.split import ExpandingWindowSplitter

    cv = ExpandingWindowSplitter(initial_window=120, step_length=12, fh=[1, 2, 3])
    forecaster = MSFTForecaster(**{**TINY, "fit_strategy": "lora"})
    results = evaluate(
        forecaster, cv, y_air, strategy="refit", backend="loky", backend_params={"n_jobs": 2}
    )
    assert len(results) == 2 and np.isfinite(results.iloc[:, 0]).all()


def test_grid_search_over_fit_strategy_and_learning_rate(y_air):
    from sktime.forecasting.model_selection import ForecastingGridSearchCV
    from sktime.split import SingleWindowSplitter

    grid = ForecastingGridSearchCV(
        MSFTForecaster(**TINY),
        cv=SingleWindowSplitter(fh=FH, window_length=120),
        param_grid={"fit_strategy": ["zero-shot", "lora"], "learning_rate": [1e-3, 1e-2]},
    )
    grid.fit(y_air.iloc[:-6], fh=FH)
    assert grid.best_params_["fit_strategy"] in ("zero-shot", "lora")
    assert len(grid.cv_results_) == 4
    assert len(grid.predict()) == len(FH)


def test_benchmark_next_to_naive(tmp_path):
    from sktime.benchmarking.forecasting import ForecastingBenchmark
    from sktime.forecasting.naive import NaiveForecaster
    from sktime.performance_metrics.forecasting import MeanAbsolutePercentageError
    from sktime.split import ExpandingWindowSplitter

    benchmark = ForecastingBenchmark()
    benchmark.add_estimator(MSFTForecaster(**TINY), estimator_id="MSFT-tiny")
    benchmark.add_estimator(NaiveForecaster(strategy="last", sp=12), estimator_id="Naive")
    benchmark.add_task(
        load_airline,
        ExpandingWindowSplitter(initial_window=120, step_length=12, fh=FH),
        [MeanAbsolutePercentageError()],
    )
    results = benchmark.run(output_file=str(tmp_path / "results.csv"))
    assert len(results) == 2
    assert np.isfinite(results.filter(like="MeanAbsolutePercentageError_mean")).all().all()


# ----------------------------------------------------------------------------- data formats
@pytest.mark.parametrize("levels", [(3,), (2, 2)], ids=["panel", "hierarchical"])
def test_panel_and_hierarchical_one_global_fine_tune(levels):
    from sktime.datatypes import check_is_mtype

    y = _panel(levels=levels)
    forecaster = MSFTForecaster(**TINY).fit(y, fh=[1, 2, 3])
    y_pred = forecaster.predict()
    mtype = "pd-multiindex" if len(levels) == 1 else "pd_multiindex_hier"
    assert check_is_mtype(y_pred, mtype)
    n_series = int(np.prod(levels))
    assert len(y_pred) == 3 * n_series
    assert y_pred.index.droplevel(-1).unique().equals(y.index.droplevel(-1).unique())
    # every series' forecast is the one engine's forecast from that series' own context
    instance_levels = list(range(len(levels)))
    contexts = [g.to_numpy(dtype=float).ravel() for _, g in y.groupby(level=instance_levels)]
    expected = forecaster.engine_.forecast(contexts, horizon=3).mean.ravel()
    np.testing.assert_allclose(y_pred.to_numpy().ravel(), expected)
    q = forecaster.predict_quantiles(alpha=[0.1, 0.9])
    assert q.index.equals(y_pred.index)


def test_unequal_length_panel_counts_steps_from_each_series_end():
    y = _make_hierarchical(
        hierarchy_levels=(3,),
        min_timepoints=40,
        max_timepoints=60,
        same_cutoff=False,
        random_state=1,
        index_type="range",
    )
    forecaster = MSFTForecaster(**{**TINY, "fit_strategy": "zero-shot"}).fit(y, fh=[1, 2])
    y_pred = forecaster.predict()
    assert len(y_pred) == 6 and np.isfinite(y_pred.to_numpy()).all()
    times = y_pred.index.get_level_values(-1).unique()
    assert list(times) == [forecaster.cutoff[0] + 1, forecaster.cutoff[0] + 2]


def test_multivariate_channels_forecast_separately(y_air):
    y = pd.DataFrame({"a": y_air.to_numpy(float), "b": np.log(y_air.to_numpy(float))})
    y.index = y_air.index
    forecaster = MSFTForecaster(**TINY).fit(y, fh=[1, 2, 3])
    y_pred = forecaster.predict()
    assert list(y_pred.columns) == ["a", "b"] and len(y_pred) == 3
    assert y_pred["b"].max() < 10 < y_pred["a"].min()  # each channel keeps its own scale
    q = forecaster.predict_quantiles(alpha=[0.5])
    assert list(q.columns) == [("a", 0.5), ("b", 0.5)]


def test_missing_values_pass_through(y_air):
    y = y_air.copy()
    y.iloc[[5, 50, 51, 52, 100, -2]] = np.nan
    forecaster = MSFTForecaster(**TINY).fit(y, fh=FH)
    assert np.isnan(forecaster.history_.to_numpy()).sum() == 1  # the context keeps its gap
    assert np.isfinite(forecaster.predict()).all()
    assert np.isfinite(forecaster.predict_interval().to_numpy()).all()


@pytest.mark.parametrize(
    "index",
    [
        pd.date_range("2020-01-01", periods=150, freq="h"),
        pd.period_range("2000-01", periods=150, freq="M"),
        pd.RangeIndex(150),
        pd.Index(np.arange(1000, 1150)),
    ],
    ids=["datetime", "period", "range", "integer"],
)
def test_index_types(index):
    rng = np.random.default_rng(0)
    y = pd.Series(10 + np.sin(np.arange(150) / 4) + rng.normal(0, 0.1, 150), index=index)
    forecaster = MSFTForecaster(**{**TINY, "fit_strategy": "zero-shot"}).fit(y, fh=[1, 2, 5])
    y_pred = forecaster.predict()
    expected = ForecastingHorizon([1, 2, 5]).to_absolute_index(forecaster.cutoff)
    assert y_pred.index.equals(expected)
    assert forecaster.predict_interval().index.equals(expected)
    assert forecaster.predict_proba().index.equals(expected)


@pytest.mark.parametrize(
    "index, letter",
    [
        (pd.date_range("2020", periods=3, freq="15min"), "T"),
        (pd.date_range("2020", periods=3, freq="ms"), "S"),
        (pd.date_range("2020", periods=3, freq="h"), "H"),
        (pd.date_range("2020", periods=3, freq="B"), "B"),
        (pd.date_range("2020", periods=3, freq="W-SUN"), "W"),
        (pd.date_range("2020", periods=3, freq="SME"), "M"),
        (pd.date_range("2020", periods=3, freq="BME"), "M"),
        (pd.date_range("2020", periods=3, freq="QE"), "Q"),
        (pd.period_range("2020", periods=3, freq="Y"), "Y"),
        (pd.RangeIndex(3), None),
    ],
)
def test_frequency_passed_to_the_engine_is_unambiguous(index, letter):
    from msft_forecast.data.panel import frequency_key_of

    assert frequency_key_of(index[-1:]) == letter


# ---------------------------------------------------------------------------------- pretrain
def test_pretrain_then_fit_keeps_pretrained_weights(y_air):
    panel = _panel(levels=(4,), n=80)
    forecaster = MSFTForecaster(**{**TINY, "fit_strategy": "lora"})
    forecaster.pretrain(panel, fh=[1, 2, 3])
    assert forecaster.state == "pretrained"
    pretrained = forecaster.pretrained_engine_.trainable_state()

    # no fine-tuning steps on the single series: the fitted weights are the pretrained ones
    # (sktime's state-aware set_params; plain set_params resets the pretrained state too)
    forecaster._set_params_at("pretrained", {"max_steps": 0})
    assert forecaster.state == "pretrained"
    forecaster.fit(y_air.iloc[:100], fh=[1, 2, 3])
    fitted = forecaster.engine_.trainable_state()
    assert all(np.array_equal(pretrained[k], fitted[k]) for k in pretrained)
    assert len(forecaster.predict()) == 3

    # a clone (as in a backtest) keeps the pretrained weights too; a fresh forecaster does not
    clone = forecaster.clone()
    assert clone.state == "pretrained"
    cloned = clone.fit(y_air.iloc[:100], fh=[1, 2, 3]).engine_.trainable_state()
    assert all(np.array_equal(pretrained[k], cloned[k]) for k in pretrained)
    fresh = MSFTForecaster(**{**TINY, "fit_strategy": "lora", "max_steps": 0})
    untrained = fresh.fit(y_air.iloc[:100], fh=[1, 2, 3]).engine_.trainable_state()
    assert any(not np.array_equal(pretrained[k], untrained[k]) for k in pretrained)


# ------------------------------------------------------------------------------------ MOMENT
def test_moment_linear_probe_residual_intervals(tiny_moment_dir, y_air):
    forecaster = MSFTForecaster(
        **{**TINY, "backbone": str(tiny_moment_dir), "fit_strategy": "linear-probe"}
    )
    forecaster.fit(y_air, fh=FH)
    y_pred = forecaster.predict()
    assert len(y_pred) == len(FH) and np.isfinite(y_pred).all()
    intervals = forecaster.predict_interval(coverage=[0.5, 0.9])
    name = y_air.name
    assert np.all(intervals[(name, 0.9, "lower")] <= intervals[(name, 0.5, "lower")])
    assert np.all(intervals[(name, 0.5, "upper")] <= intervals[(name, 0.9, "upper")])
    # residual-based spread: intervals have width, unlike a bare point forecast
    assert np.all(intervals[(name, 0.9, "upper")] - intervals[(name, 0.9, "lower")] > 0)
    # beyond its heads' length MOMENT rolls forward (the engine's rule, as under Darts): the
    # first steps are the forecast itself
    longer = forecaster.predict(fh=list(range(1, 2 * len(FH))))
    assert len(longer) == 2 * len(FH) - 1 and np.isfinite(longer).all()
    np.testing.assert_allclose(longer.iloc[: len(FH)].to_numpy(), y_pred.to_numpy(), rtol=1e-6)


def test_moment_zero_shot_is_refused(tiny_moment_dir, y_air):
    forecaster = MSFTForecaster(
        **{**TINY, "backbone": str(tiny_moment_dir), "fit_strategy": "zero-shot"}
    )
    with pytest.raises(ValueError, match="zero-shot"):
        forecaster.fit(y_air, fh=FH)
