"""Darts covariate series to the engine's covariate arrays, with Darts' rules for time spans.

Format conversion for the Darts front end (:mod:`msft_forecast.darts`).  ``past_covariates``
become the engine's past-only covariates, ``future_covariates`` its known-future ones (read
over the context and the horizon).  Every component of a covariate series is one covariate of
every component of its target series (channel-independent modelling).  Covariates are read at
the target's time points (by time, not by position; NaN where a covariate series lacks a time
point), and Darts' rules for what they must cover (``GlobalForecastingModel``) are checked:

* ``fit``: both kinds cover every time point of their training series (a ``val_*`` covariate
  series may supply the validation tail's);
* ``predict`` / ``historical_forecasts``: past covariates cover the input chunk before each
  forecast, future covariates the forecast horizon (their values over the input chunk are read
  where present).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from darts import TimeSeries
from darts.utils.ts_utils import series2seq
from darts.utils.utils import generate_index

__all__ = ["fit_covariates", "window_covariates"]

_ARG = {"past": "past_covariates", "future": "future_covariates"}


def _as_list(covariates: Any, n: int, what: str) -> list[TimeSeries] | None:
    if covariates is None:
        return None
    seq = series2seq(covariates)
    if not seq or not all(isinstance(c, TimeSeries) for c in seq) or len(seq) != n:
        raise ValueError(f"`{what}` must hold one TimeSeries per target series ({n}).")
    widths = {c.n_components for c in seq}
    if len(widths) > 1:
        raise ValueError(f"Every series of `{what}` needs the same components; got {widths}.")
    return list(seq)


def _at(covariates: Sequence[TimeSeries | None], times: pd.Index) -> np.ndarray:
    """``(len(times), components)`` values at ``times`` from the first series that has each
    time point (NaN where none has it)."""
    out = None
    for cov in covariates:
        if cov is None:
            continue
        pos = cov.time_index.get_indexer(times)
        values = np.asarray(cov.values(copy=False), dtype=np.float64)[np.maximum(pos, 0)]
        values = np.where((pos >= 0)[:, None], values, np.nan)
        out = values if out is None else np.where(np.isnan(out), values, out)
    return out


def _check_covers(covariates: Sequence[TimeSeries | None], times: pd.Index, what: str,
                  rule: str) -> None:  # fmt: skip
    missing = times
    for cov in covariates:
        if cov is not None:
            missing = missing.difference(cov.time_index)
    if len(missing):
        raise ValueError(
            f"{what} must cover {rule} ({times[0]} to {times[-1]}); it lacks {len(missing)} "
            f"of those time points, the first {missing[0]}."
        )


def fit_covariates(
    train: Sequence[TimeSeries], arrays: Sequence[np.ndarray], past: Any, future: Any,
    val_past: Any = None, val_future: Any = None,
) -> dict[str, Any]:  # fmt: skip
    """Keyword arguments of :meth:`~msft_forecast.engine.MSFTEngine.fit` for covariates of
    the training series ``train``, whose channels the engine gets as ``arrays`` (each series
    and any validation tail appended after it); empty without covariates.

    Raises
    ------
    ValueError
        Not one covariate series per training series, different components across them, or
        a covariate series that does not cover its training series.
    """
    out: dict[str, Any] = {}
    names: list[list[str]] = [[], []]
    firsts = np.cumsum([0] + [s.n_components for s in train])[:-1]  # first channel of each
    lengths = [len(arrays[int(f)]) for f in firsts]
    for j, (kind, given, val) in enumerate((("past", past, val_past),
                                            ("future", future, val_future))):  # fmt: skip
        covs = _as_list(given, len(train), _ARG[kind])
        if covs is None:
            continue
        vals = _as_list(val, len(train), f"val_{_ARG[kind]}") or [None] * len(train)
        per_channel = []
        for i, (s, length) in enumerate(zip(train, lengths, strict=True)):
            _check_covers([covs[i]], s.time_index, f"{_ARG[kind]}[{i}]", f"series[{i}]")
            times = generate_index(start=s.start_time(), length=int(length), freq=s.freq)
            per_channel.extend([_at([covs[i], vals[i]], times)] * s.n_components)
        out[f"{kind}_covariates"] = per_channel
        names[j] = [str(c) for c in covs[0].components]
    if out:
        out["covariate_names"] = tuple(names)
    return out


def window_covariates(
    series: Sequence[TimeSeries], windows: Sequence[tuple[int, int, int]], n: int,
    past: Any, future: Any,
) -> dict[str, list[np.ndarray]] | None:  # fmt: skip
    """Per forecast window ``(series index, first context position, origin position)``, the
    past covariates over its context ``(origin - first, P)`` and the future covariates over
    its context and ``n`` horizon steps ``(origin - first + n, F)``; None without covariates.

    Raises
    ------
    ValueError
        Not one covariate series per target series, or past covariates that miss a time point
        of an input chunk, or future covariates that miss one of a horizon.
    """
    covs = {"past": _as_list(past, len(series), _ARG["past"]),
            "future": _as_list(future, len(series), _ARG["future"])}  # fmt: skip
    if covs["past"] is None and covs["future"] is None:
        return None
    out: dict[str, list[np.ndarray]] = {"past": [], "future": []}
    for i, lo, t in windows:
        s = series[i]
        context = s.time_index[lo:t]
        times = generate_index(start=context[0], length=t - lo + n, freq=s.freq)
        if covs["past"] is not None:
            what = f"past_covariates[{i}]"
            _check_covers([covs["past"][i]], context, what, "the input chunk before the forecast")
            out["past"].append(_at([covs["past"][i]], context))
        if covs["future"] is not None:
            what = f"future_covariates[{i}]"
            _check_covers([covs["future"][i]], times[t - lo :], what, "the forecast horizon")
            out["future"].append(_at([covs["future"][i]], times))
    return {k: v for k, v in out.items() if covs[k] is not None}
