"""Plots of what is particular to MSFT: the forecast with its interval and every scale's forecast
with its mixing weight.

:func:`plot_scales` draws a fitted model's forecast of a series (any front end: the engine, the
sktime forecaster or the Darts model); :func:`scale_forecast` returns the same numbers as pandas
objects; :func:`plot_forecast` draws arrays you already have.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["ScaleForecast", "plot_forecast", "plot_scales", "scale_forecast"]


def plot_forecast(
    history_index: Sequence,
    history: np.ndarray,
    forecast_index: Sequence,
    mean: np.ndarray,
    lower: np.ndarray | None = None,
    upper: np.ndarray | None = None,
    *,
    scale_means: np.ndarray | None = None,
    weights: np.ndarray | None = None,
    coverage: float = 0.8,
    title: str | None = None,
    ax=None,
):
    """Plot history, the combined forecast, its interval and (optionally) each scale's forecast.

    Parameters
    ----------
    history_index, history : sequence, ndarray
        Time stamps and values of the observed series (the tail you want to show).
    forecast_index, mean : sequence, ndarray
        Time stamps and point forecast.
    lower, upper : ndarray, optional
        Interval bounds.
    scale_means : ndarray, optional
        ``(K+1, H)`` per-scale forecasts at the original resolution (``Forecast.scale_means``
        of one series), drawn dotted.
    weights : ndarray, optional
        ``(K+1,)`` mixing weights (``Forecast.weights``), shown in the legend; a scale's line
        is thicker the larger its weight.
    coverage : float
        Interval coverage, for the legend.
    title : str, optional
    ax : matplotlib Axes, optional

    Returns
    -------
    matplotlib.axes.Axes

    Examples
    --------
    >>> import numpy as np
    >>> from msft_forecast.plotting import plot_forecast
    >>> ax = plot_forecast(range(10), np.arange(10.0), range(10, 13), np.array([10.0, 11, 12]),
    ...                    np.array([9.0, 10, 11]), np.array([11.0, 12, 13]))
    """
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(10, 5))
    ax.plot(list(history_index), history, color="black", lw=1, label="history")
    fi = list(forecast_index)
    if lower is not None and upper is not None:
        ax.fill_between(fi, lower, upper, alpha=0.25, label=f"{coverage:.0%} interval")
    if scale_means is not None:
        for k, values in enumerate(scale_means):
            w = "" if weights is None else f", w={weights[k]:.2f}"
            lw = 1.0 if weights is None else 0.6 + 2.4 * float(weights[k])
            ax.plot(fi, values, lw=lw, ls=":", label=f"scale {k} (1/{2**k} resolution{w})")
    ax.plot(fi, mean, lw=1.5, label="forecast (mean)")
    _legend_below(ax)
    if title:
        ax.set_title(title)
    return ax


@dataclass
class ScaleForecast:
    """One series' forecast laid out for plotting: combined mean, interval and every scale.

    Attributes
    ----------
    history : pandas.Series
        The observed series the forecast continues.
    frame : pandas.DataFrame
        Indexed by the forecast's time stamps, with columns ``mean``, ``lower``, ``upper``
        (the central interval of ``coverage``) and ``scale_0`` ... ``scale_K``: each scale's
        mean forecast, repeated back to the original resolution.
    weights : pandas.Series
        The mixing weights, indexed ``scale_0`` ... ``scale_K`` (finest first, sum 1).
    coverage : float
        Coverage of the interval in ``frame``.
    """

    history: pd.Series
    frame: pd.DataFrame
    weights: pd.Series
    coverage: float


def _engine_of(model: Any):
    """The fitted :class:`~msft_forecast.engine.MSFTEngine` behind an engine or a front end."""
    from msft_forecast.engine import MSFTEngine

    if isinstance(model, MSFTEngine):
        engine = model
    elif getattr(model, "engine_", None) is not None:  # sktime MSFTForecaster, fitted
        engine = model.engine_
    elif hasattr(type(model), "engine"):  # Darts MSFTModel (raises when not fitted)
        engine = model.engine
    else:
        raise TypeError(
            "model must be a fitted MSFTEngine, MSFTForecaster or MSFTModel, got "
            f"{type(model).__name__}."
        )
    if not engine.is_fitted:
        from msft_forecast.errors import NotFittedError

        raise NotFittedError("The model")
    return engine


def _as_pandas_series(y: Any, column: str | int | None) -> pd.Series:
    """A pandas Series from a Series, a DataFrame column, a Darts TimeSeries or an array."""
    if hasattr(y, "to_dataframe") and hasattr(y, "components"):  # Darts TimeSeries
        y = y.to_dataframe()
    if isinstance(y, pd.DataFrame):
        if isinstance(y.index, pd.MultiIndex):
            raise ValueError("pass one series of a panel, e.g. y.loc[key], not the whole panel.")
        if y.shape[1] == 1 and column is None:
            column = y.columns[0]
        if column is None:
            raise ValueError(
                f"y has {y.shape[1]} columns {list(y.columns)}; choose one with column=."
            )
        y = y.iloc[:, column] if isinstance(column, int) and column not in y else y[column]
    if not isinstance(y, pd.Series):
        values = np.asarray(y, dtype=np.float64)
        if values.ndim != 1:
            raise ValueError(f"y must be one series (1-D), got shape {values.shape}.")
        y = pd.Series(values)
    return y.astype(np.float64)


def _future_index(index: pd.Index, horizon: int) -> pd.Index:
    """The ``horizon`` time stamps after ``index`` (same frequency; integers when unknown)."""
    if isinstance(index, pd.PeriodIndex):
        return pd.period_range(index[-1] + 1, periods=horizon, freq=index.freq)
    if isinstance(index, pd.DatetimeIndex):
        freq = index.freq or (pd.infer_freq(index) if len(index) > 2 else None)
        if freq is not None:
            return pd.date_range(index[-1], periods=horizon + 1, freq=freq)[1:]
        raise ValueError("cannot tell the frequency of y's time index; give it a regular index.")
    if pd.api.types.is_integer_dtype(index) and len(index) > 0:
        step = int(index[-1] - index[-2]) if len(index) > 1 else 1
        return pd.RangeIndex(index[-1] + step, index[-1] + step * (horizon + 1), step)
    return pd.RangeIndex(len(index), len(index) + horizon)


def scale_forecast(
    model: Any,
    y: Any,
    horizon: int | None = None,
    *,
    column: str | int | None = None,
    coverage: float = 0.8,
    num_samples: int | None = None,
    seed: int | None = None,
) -> ScaleForecast:
    """Forecast one series and keep what MSFT adds: every scale's forecast and its weight.

    Parameters
    ----------
    model : MSFTEngine, MSFTForecaster or MSFTModel
        A fitted engine, sktime forecaster or Darts model.
    y : pandas.Series, pandas.DataFrame, darts.TimeSeries or 1-D array
        The series to forecast from (its last ``context_length`` steps are the context);
        for several columns, pick one with ``column``.
    horizon : int, optional
        Steps to forecast (default the training ``prediction_length``).
    column : str or int, optional
        Column of a multivariate ``y``.
    coverage : float, default 0.8
        Coverage of the central interval.
    num_samples : int, optional
        Sample paths for the interval (default the model's ``num_samples``).
    seed : int, optional
        Seed of the sampling (default derived from ``random_state``, as in ``predict``).

    Returns
    -------
    ScaleForecast

    Examples
    --------
    >>> import numpy as np
    >>> from msft_forecast.engine import MSFTEngine
    >>> from msft_forecast.plotting import scale_forecast
    >>> y = np.sin(np.arange(300) * 2 * np.pi / 24)
    >>> engine = MSFTEngine(backbone="moirai-tiny", context_length=96, prediction_length=24,
    ...                     max_steps=2, batch_size=8, random_state=0).fit([y])
    >>> fc = scale_forecast(engine, y)
    >>> list(fc.frame.columns)
    ['mean', 'lower', 'upper', 'scale_0', 'scale_1', 'scale_2', 'scale_3']
    >>> round(float(fc.weights.sum()), 6)
    1.0
    """
    if not 0.0 < coverage < 1.0:
        raise ValueError(f"coverage must lie strictly between 0 and 1, got {coverage!r}.")
    engine = _engine_of(model)
    series = _as_pandas_series(y, column)
    horizon = int(engine.settings.prediction_length if horizon is None else horizon)
    fc = engine.forecast([series.to_numpy()], horizon, num_samples, seed=seed)
    index = _future_index(series.index, horizon)
    frame = pd.DataFrame({"mean": fc.mean[0]}, index=index)
    if fc.samples.shape[1] > 0:
        low, high = fc.quantiles([(1 - coverage) / 2, (1 + coverage) / 2])[0]
        frame["lower"], frame["upper"] = low, high
    names = [f"scale_{k}" for k in range(fc.scale_means.shape[1])]
    for k, name in enumerate(names):
        frame[name] = fc.scale_means[0, k]
    return ScaleForecast(series, frame, pd.Series(fc.weights, index=names), coverage)


def plot_scales(
    model: Any,
    y: Any,
    horizon: int | None = None,
    *,
    column: str | int | None = None,
    coverage: float = 0.8,
    history_length: int | None = None,
    actual: Any = None,
    num_samples: int | None = None,
    seed: int | None = None,
    title: str | None = None,
    ax=None,
):
    """Plot a fitted model's forecast of ``y``: history, forecast, interval, every scale.

    Each scale's forecast (dotted, thicker for a larger weight) is labelled with its
    resolution and weight; the weighted mean is the forecast ``predict`` returns.

    Parameters
    ----------
    model, y, horizon, column, coverage, num_samples, seed
        As in :func:`scale_forecast`.
    history_length : int, optional
        Steps of history shown (default four horizons).
    actual : pandas.Series or darts.TimeSeries, optional
        Held-out truth to draw over the forecast period.
    title : str, optional
    ax : matplotlib Axes, optional

    Returns
    -------
    matplotlib.axes.Axes

    Examples
    --------
    >>> import numpy as np
    >>> from msft_forecast.engine import MSFTEngine
    >>> from msft_forecast.plotting import plot_scales
    >>> y = np.sin(np.arange(300) * 2 * np.pi / 24)
    >>> engine = MSFTEngine(backbone="moirai-tiny", context_length=96, prediction_length=24,
    ...                     max_steps=2, batch_size=8, random_state=0).fit([y])
    >>> ax = plot_scales(engine, y)
    """
    fc = scale_forecast(
        model, y, horizon, column=column, coverage=coverage, num_samples=num_samples, seed=seed
    )
    horizon = len(fc.frame)
    shown = fc.history.iloc[-int(history_length or 4 * horizon) :]
    scales = fc.frame[list(fc.weights.index)].to_numpy().T
    has_interval = "lower" in fc.frame
    ax = plot_forecast(
        _plottable(shown.index),
        shown.to_numpy(),
        _plottable(fc.frame.index),
        fc.frame["mean"].to_numpy(),
        fc.frame["lower"].to_numpy() if has_interval else None,
        fc.frame["upper"].to_numpy() if has_interval else None,
        scale_means=scales,
        weights=fc.weights.to_numpy(),
        coverage=coverage,
        title=title,
        ax=ax,
    )
    if actual is not None:
        truth = _as_pandas_series(actual, column)
        ax.plot(
            _plottable(truth.index), truth.to_numpy(), color="black", lw=1, ls="--", label="actual"
        )
        _legend_below(ax)
    return ax


def _legend_below(ax) -> None:
    """The legend under the axes, where it hides neither the history nor the forecast."""
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=3, fontsize="small")


def _plottable(index: pd.Index):
    """Matplotlib cannot draw periods: turn a PeriodIndex into time stamps."""
    return index.to_timestamp() if isinstance(index, pd.PeriodIndex) else index
