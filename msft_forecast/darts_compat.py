"""The private Darts names the Darts front end relies on, in one place.

Darts has no public API for two things :class:`~msft_forecast.darts.MSFTModel` does:

* the batched ``historical_forecasts(retrain=False)`` path: the hook
  ``_optimized_historical_forecasts`` (documented for model authors), its eligibility check
  and the helper that turns ``start``, ``start_format``, ``stride``, ``overlap_end`` into
  forecast origins exactly as the generic loop does;
* building a forecast ``TimeSeries`` that keeps the input's static covariates, hierarchy and
  metadata, as Darts' own models do.

``tests/test_darts_model.py::test_the_private_darts_names_still_have_the_expected_shape``
checks their signatures (and that the hooks in :data:`OVERRIDDEN_HOOKS` still exist), so a Darts
release that changes them fails that test by name instead of failing somewhere inside a
backtest.
"""

from __future__ import annotations

from darts.utils.historical_forecasts.optimized_historical_forecasts_torch import (
    _create_dataset_bounds as create_dataset_bounds,
)
from darts.utils.historical_forecasts.utils import (
    _check_optimizable_historical_forecasts_global_models as optimizable_historical_forecasts,
)
from darts.utils.timeseries_generation import _build_forecast_series as build_forecast_series

#: Parameters each private function must accept (by name), as used by the front end.
EXPECTED_PARAMETERS = {
    create_dataset_bounds: (
        "model", "series", "past_covariates", "future_covariates", "start", "start_format",
        "forecast_horizon", "stride", "overlap_end", "show_warnings",
    ),
    optimizable_historical_forecasts: ("retrain",),
    build_forecast_series: (
        "points_preds", "input_series", "custom_columns", "with_static_covs",
        "with_hierarchy", "time_index",
    ),
}  # fmt: skip

#: Hooks of ``GlobalForecastingModel`` that ``MSFTModel`` overrides (documented for model
#: authors, but named privately): a Darts release that drops one would silently bypass the
#: override.
OVERRIDDEN_HOOKS = (
    "_check_optimizable_historical_forecasts",
    "_optimized_historical_forecasts",
    "_supports_val_series",
    "_target_window_lengths",
    "_model_encoder_settings",
)

__all__ = [
    "EXPECTED_PARAMETERS",
    "OVERRIDDEN_HOOKS",
    "build_forecast_series",
    "create_dataset_bounds",
    "optimizable_historical_forecasts",
]
