"""sktime's exogenous ``X`` to the engine's known-future covariate arrays.

Format conversion for the sktime front end (:mod:`msft_forecast.sktime`).  The rule (sktime's
convention that ``X`` passed to ``predict`` covers the forecasting horizon): every column of
``X`` is a **known-future covariate**.  ``X`` in ``fit`` (and ``update``) gives its values at
``y``'s time points, where the training windows read them over their context and horizon;
``X`` in ``predict`` gives its values at the forecast time points, which follow the kept
history.  Each column becomes a covariate of every channel of its series (channel-independent
modelling), aligned with the series from its first step (the engine's rule,
:mod:`msft_forecast.training.covariates`).  Time points that ``X`` lacks inside the history
or the horizon are missing values; a predict ``X`` that stops before the horizon's end is
refused by the engine.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from msft_forecast.data.panel import grid_step, instances

__all__ = ["covariate_arguments", "fit_covariates", "forecast_covariates"]


def _by_instance(X: pd.DataFrame | None) -> dict[tuple, pd.DataFrame]:
    return {} if X is None else dict(instances(X))


def _values(frame: pd.DataFrame | None, index: pd.Index, columns: pd.Index) -> np.ndarray:
    """``frame``'s columns at ``index`` (NaN where it has no row), float64 ``(len, F)``."""
    if frame is None:
        return np.full((len(index), len(columns)), np.nan)
    out = frame.reindex(index=index, columns=columns)
    return out.to_numpy(dtype=np.float64, na_value=np.nan)


def fit_covariates(y: pd.DataFrame, X: pd.DataFrame | None) -> list[np.ndarray] | None:
    """``X`` at the time points of every series of ``y``, one ``(T, F)`` array per channel
    (instance-major, as :func:`~msft_forecast.data.panel.channels`); None without ``X``."""
    if X is None:
        return None
    by_key = _by_instance(X)
    out = []
    for key, frame in instances(y):
        values = _values(by_key.get(key), frame.index, X.columns)
        out.extend([values] * frame.shape[1])
    return out


def _future_index(frame: pd.DataFrame, horizon: int, step: Any, rows: pd.Index) -> pd.Index:
    """The ``horizon`` time points after ``frame``'s end (on its grid; without a known step,
    the first ``horizon`` time points of ``rows`` after the end)."""
    end = frame.index[-1]
    if isinstance(frame.index, pd.PeriodIndex):
        return pd.period_range(end, periods=horizon + 1, freq=step or frame.index.freq)[1:]
    if step is not None and isinstance(frame.index, pd.DatetimeIndex):
        return pd.date_range(end, periods=horizon + 1, freq=step)[1:]
    if step is not None:
        return pd.Index(end + step * np.arange(1, horizon + 1))
    return rows[rows > end][:horizon]


def forecast_covariates(
    history: pd.DataFrame, X_history: pd.DataFrame | None, X: pd.DataFrame | None,
    horizon: int, columns: pd.Index,
) -> list[np.ndarray]:  # fmt: skip
    """Per channel of ``history``: the covariates over its time points (from ``X_history``)
    followed by those ``X`` gives for the ``horizon`` steps after its end, cut after the last
    step ``X`` gives (so that the engine refuses an ``X`` that stops short).

    Raises
    ------
    ValueError
        ``X`` is None: a forecaster fitted with ``X`` forecasts with it only.
    """
    if X is None:
        raise ValueError(
            f"This forecaster was fitted with exogenous X (columns {list(map(str, columns))}), "
            f"which it reads as known-future covariates: pass X covering the forecasting "
            f"horizon to predict (the {horizon} steps after the last observation)."
        )
    past, future = _by_instance(X_history), _by_instance(X)
    step = grid_step(history)
    out = []
    for key, frame in instances(history):
        ahead = future.get(key)
        index = _future_index(frame, horizon, step, pd.Index([]) if ahead is None else ahead.index)
        present = np.flatnonzero(index.isin(ahead.index)) if ahead is not None else []
        given = int(present[-1]) + 1 if len(present) else 0
        values = np.concatenate([_values(past.get(key), frame.index, columns),
                                 _values(ahead, index[:given], columns)])  # fmt: skip
        out.extend([values] * frame.shape[1])
    return out


def covariate_arguments(y: pd.DataFrame, X: pd.DataFrame | None) -> dict[str, Any]:
    """Keyword arguments of :meth:`~msft_forecast.engine.MSFTEngine.fit` for ``y`` (its
    number of channels, read by joint models) and ``X``: its columns as known-future
    covariates (none without ``X``)."""
    arguments: dict[str, Any] = {"channels": y.shape[1]}
    if X is not None:
        arguments["future_covariates"] = fit_covariates(y, X)
        arguments["covariate_names"] = ([], [str(c) for c in X.columns])
    return arguments
