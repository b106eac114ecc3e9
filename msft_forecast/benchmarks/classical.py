"""Classical baselines of the benchmark runner, refitted on every test window's context.

The bar every deep model has to clear.  Point baselines: ``last-value``, ``seasonal-naive``
(the last season repeated) and ``theta`` (sktime's ``ThetaForecaster``).  Automatic,
probabilistic baselines, the ones a forecaster reaches for first:

* ``autoets``: sktime's ``AutoETS`` (statsmodels' ETS with the model chosen by AICc),
  additive-only when the context has values <= 0;
* ``autoarima``: sktime's ``AutoARIMA`` (pmdarima's stepwise search; the ``bench`` extra);
* ``autotheta``: statsmodels' ``ThetaModel`` with the seasonality test deciding whether to
  deseasonalise and the decomposition (multiplicative for positive data, else additive)
  chosen automatically.

statsforecast would be the fast home of all three, but its releases pin pandas < 3 (installing
it downgrades the stack), so the statsmodels / pmdarima versions are used, with two concessions
to their speed, measured on one core with a 512-step context (266 for the daily case):

* AutoETS fits the season directly up to :data:`DIRECT_SEASON_MAX` steps (about 1 s at a
  season of 7); at longer seasons it is fitted on the context deseasonalised by classical
  decomposition (sktime's ``Deseasonalizer``) and the season is added back to forecasts and
  quantiles alike (0.1 s, against 4 s at a season of 24 and 25-50 s at 96-144).
* AutoARIMA is always fitted on the deseasonalised context (1-2 s): pmdarima's seasonal search
  takes 10 s at a season of 7 and 50 s at 24, and refitting it on every window would take
  hours.

Theta deseasonalises by design.

Every model sees the context on the data's own scale (not the z-normalised one), so that
multiplicative models stay available; forecasts are normalised afterwards like every other
model's.  A window whose fit fails gets the seasonal-naive forecast, and the number of such
windows is reported with the result.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

#: Baselines that only give a point forecast.
POINT_BASELINES = ("last-value", "seasonal-naive", "theta")

#: Automatic baselines with prediction intervals.
AUTO_BASELINES = ("autoets", "autoarima", "autotheta")

BASELINES = (*POINT_BASELINES, *AUTO_BASELINES)

#: Longest season AutoETS fits directly (monthly data); longer seasons are removed first, and
#: AutoARIMA always removes the season first (see the module docstring).
DIRECT_SEASON_MAX = 12

#: Quantile levels every probabilistic baseline predicts: the deciles (for the CRPS) and the
#: bounds of the central 50% and 95% intervals (for their coverage).
LEVELS = (0.025, 0.1, 0.2, 0.25, 0.3, 0.4, 0.5, 0.6, 0.7, 0.75, 0.8, 0.9, 0.975)


@dataclass
class BaselineForecast:
    """Forecasts of one baseline on ``n`` contexts."""

    point: np.ndarray  # (n, H)
    quantiles: np.ndarray | None  # (n, len(LEVELS), H), or None for a point baseline
    fallbacks: int  # windows whose fit failed and got the seasonal-naive forecast


#: Libraries each baseline needs (all of them come with the ``bench`` extra; the naive ones need
#: none). Checked up front: a missing one would otherwise count every window as a failed fit.
LIBRARIES = {
    "theta": ("sktime", "statsmodels"),
    "autoets": ("sktime", "statsmodels"),
    "autoarima": ("sktime", "pmdarima", "statsmodels"),  # statsmodels: the deseasonaliser
    "autotheta": ("statsmodels",),
}


def require(name: str) -> None:
    """Raise a clear error for an unknown baseline or a missing library."""
    if name not in BASELINES:
        raise ValueError(f"unknown baseline {name!r}; choose from {list(BASELINES)}")
    import importlib.util

    missing = [lib for lib in LIBRARIES.get(name, ()) if importlib.util.find_spec(lib) is None]
    if missing:
        libraries = " and ".join([", ".join(missing[:-1]), missing[-1]] if missing[1:] else missing)
        raise ModuleNotFoundError(
            f"{name} needs {libraries}, which {'is' if len(missing) == 1 else 'are'} "
            'not installed. Install the benchmark extra: pip install "msft-forecast[bench]" '
            "(keep your torch pin).",
            name=missing[0],
        )


def forecast(
    name: str, contexts: Sequence[np.ndarray], horizon: int, season: int, *, jobs: int = 1
) -> BaselineForecast:
    """Forecast ``horizon`` steps from each context with baseline ``name``.

    Parameters
    ----------
    name : str
        One of :data:`BASELINES`.
    contexts : sequence of 1-D arrays
        Complete histories (no missing values), one per window, on the data's scale.
    horizon : int
    season : int
        Season length; 1 for none.  A context shorter than two seasons is modelled without one.
    jobs : int, default 1
        Processes for the refits (joblib).

    Examples
    --------
    >>> import numpy as np
    >>> ctx = [10 + np.sin(np.arange(96) * 2 * np.pi / 12)]
    >>> fc = forecast("autotheta", ctx, 12, 12)
    >>> fc.point.shape, fc.quantiles.shape, fc.fallbacks
    ((1, 12), (1, 13, 12), 0)
    """
    require(name)
    contexts = [np.asarray(c, dtype=np.float64) for c in contexts]
    if name == "last-value":
        return BaselineForecast(np.stack([np.repeat(c[-1], horizon) for c in contexts]), None, 0)
    if name == "seasonal-naive":
        return BaselineForecast(
            np.stack([_seasonal_naive(c, horizon, season) for c in contexts]), None, 0
        )
    if jobs > 1 and len(contexts) > 1:
        from joblib import Parallel, delayed

        outs = Parallel(n_jobs=jobs)(
            delayed(_one_window)(name, c, horizon, season) for c in contexts
        )
    else:
        outs = [_one_window(name, c, horizon, season) for c in contexts]
    point = np.stack([o[0] for o in outs])
    fallbacks = sum(int(o[2]) for o in outs)
    if name in POINT_BASELINES:
        return BaselineForecast(point, None, fallbacks)
    return BaselineForecast(point, np.stack([o[1] for o in outs]), fallbacks)


def _seasonal_naive(context: np.ndarray, horizon: int, season: int) -> np.ndarray:
    season = season if 1 < season <= len(context) else 1
    reps = -(-horizon // season)
    return np.tile(context[-season:], reps)[:horizon]


def _one_window(
    name: str, context: np.ndarray, horizon: int, season: int
) -> tuple[np.ndarray, np.ndarray | None, bool]:
    """``(point, quantiles, failed)`` of one refit; a failed fit gives the seasonal-naive."""
    seasonal = season > 1 and len(context) >= 2 * season
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if name == "theta":
                return _theta(context, horizon, season if seasonal else 1), None, False
            if name == "autotheta":
                point, q = _autotheta(context, horizon, season if seasonal else 1)
            else:
                point, q = _sktime_auto(name, context, horizon, season if seasonal else 1)
        if np.isfinite(point).all() and np.isfinite(q).all():
            return point, np.sort(q, axis=0), False
    except Exception:  # noqa: BLE001 - any failure of a library fit falls back (and is counted)
        pass
    naive = _seasonal_naive(context, horizon, season)
    return naive, (None if name == "theta" else np.repeat(naive[None], len(LEVELS), 0)), True


def _theta(context: np.ndarray, horizon: int, season: int) -> np.ndarray:
    import pandas as pd
    from sktime.forecasting.theta import ThetaForecaster

    # the default deseasonalisation is multiplicative: shift the data above zero and back
    shift = 1.0 - min(0.0, float(context.min())) + float(np.ptp(context))
    f = ThetaForecaster(sp=season, deseasonalize=season > 1)
    f.fit(pd.Series(context + shift))
    return f.predict(np.arange(1, horizon + 1)).to_numpy() - shift


def _autotheta(context: np.ndarray, horizon: int, season: int) -> tuple[np.ndarray, np.ndarray]:
    from statsmodels.tsa.forecasting.theta import ThetaModel

    result = ThetaModel(
        context, period=season, deseasonalize=season > 1, use_test=True, method="auto"
    ).fit()
    point = np.asarray(result.forecast(horizon))
    q = np.empty((len(LEVELS), horizon))
    for i, level in enumerate(LEVELS):
        if level == 0.5:
            q[i] = point
            continue
        bounds = np.asarray(result.prediction_intervals(horizon, alpha=2 * min(level, 1 - level)))
        q[i] = bounds[:, 0] if level < 0.5 else bounds[:, 1]
    return point, q


def _sktime_auto(
    name: str, context: np.ndarray, horizon: int, season: int
) -> tuple[np.ndarray, np.ndarray]:
    import pandas as pd

    positive = bool((context > 0).all())
    if name == "autoets":
        from sktime.forecasting.ets import AutoETS

        direct = season if season <= DIRECT_SEASON_MAX else 1
        model = AutoETS(auto=True, sp=direct, n_jobs=1, additive_only=not positive)
    else:
        from sktime.forecasting.arima import AutoARIMA

        direct = 1
        model = AutoARIMA(seasonal=False, suppress_warnings=True, error_action="ignore")
    if season > direct:
        from sktime.forecasting.compose import TransformedTargetForecaster
        from sktime.transformations.series.detrend import Deseasonalizer

        model = TransformedTargetForecaster(
            [("deseasonalise", Deseasonalizer(sp=season)), ("model", model)]
        )
    fh = np.arange(1, horizon + 1)
    model.fit(pd.Series(context))
    point = model.predict(fh).to_numpy()
    q = model.predict_quantiles(fh, alpha=list(LEVELS)).to_numpy().T  # (levels, H)
    return point, q
