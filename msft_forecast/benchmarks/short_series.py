"""Zero-shot on short real series that ship with sktime and statsmodels, against naive forecasts.

    python -m msft_forecast.benchmarks.short_series                 # test windows
    python -m msft_forecast.benchmarks.short_series --split validation

Ten series of 100-732 points (yearly, quarterly, monthly, and two with an integer index, as
a user's data often has), none used elsewhere in the docs or tests.  Each is forecast from
``--windows`` origins, ``horizon // 2`` steps apart, with ``MSFTForecaster(backbone=...,
fit_strategy="zero-shot")`` fitted at every origin on the data before it (default settings:
the patch size and context are chosen from that data), and with the last value and the
seasonal naive forecast.  The score of a series is its MAE relative to the better of the two
naive forecasts; the summary is the geometric mean over series (below 1: better than the
better naive forecast).  Where a naive forecast is exact on every window (an intermittent
series whose scored windows are all zeros) the ratio is undefined and the series is left out
of the mean, which the table says.

``--split validation`` scores the same way on origins that end before the first test origin:
the split on which defaults are chosen.  The test windows are never used to choose anything.
"""

from __future__ import annotations

import argparse
import math
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["SHORT_SERIES", "ShortSeries", "evaluate", "load_short_series", "origins", "main"]


@dataclass(frozen=True)
class ShortSeries:
    """One series, its forecast horizon and seasonal period (1: none)."""

    name: str
    y: pd.Series
    horizon: int
    season: int


def _sktime(loader: str, column: str | None = None) -> pd.Series:
    import sktime.datasets as datasets

    data = getattr(datasets, loader)()
    if isinstance(data, tuple):  # load_uschange: (y, X)
        data = pd.concat([data[0], data[1]], axis=1)
    y = data if column is None else data[column]
    return y.astype(float)


def _statsmodels(name: str) -> pd.DataFrame:
    import statsmodels.datasets as datasets

    return getattr(datasets, name).load_pandas().data


def _yearly(name: str, year: str, value: str) -> pd.Series:
    d = _statsmodels(name)
    index = pd.PeriodIndex(d[year].astype(int).astype(str), freq="Y")
    return pd.Series(d[value].to_numpy(float), index=index, name=value)


def _elnino() -> pd.Series:
    d = _statsmodels("elnino").set_index("YEAR")
    values = d.to_numpy(float).ravel()  # rows are years, columns months
    index = pd.period_range(f"{int(d.index[0])}-01", periods=values.size, freq="M")
    return pd.Series(values, index=index, name="elnino")


def _macro(column: str) -> pd.Series:
    d = _statsmodels("macrodata")
    index = pd.period_range("1959Q1", periods=len(d), freq="Q")
    return pd.Series(d[column].to_numpy(float), index=index, name=column)


def _sunspots_unlabelled() -> pd.Series:
    d = _statsmodels("sunspots")
    return pd.Series(d["SUNACTIVITY"].to_numpy(float), name="sunspots")  # integer index


#: name -> (loader, horizon, season).  Seasons: the calendar's (12 monthly, 4 quarterly),
#: none for yearly data and for the integer-indexed series (their users did not say).
SHORT_SERIES: dict[str, tuple[Callable[[], pd.Series], int, int]] = {
    "lynx (Y)": (lambda: _sktime("load_lynx"), 6, 1),
    "nile (Y)": (lambda: _yearly("nile", "year", "volume"), 6, 1),
    "sunspots (int)": (_sunspots_unlabelled, 12, 1),
    "pbs scripts (M)": (lambda: _sktime("load_PBS_dataset"), 12, 12),
    "elnino (M)": (_elnino, 12, 12),
    "realgdp (Q)": (lambda: _macro("realgdp"), 8, 4),
    "unemp (Q)": (lambda: _macro("unemp"), 8, 4),
    "infl (Q)": (lambda: _macro("infl"), 8, 4),
    "uschange consumption (int)": (lambda: _sktime("load_uschange", "Consumption"), 8, 1),
    "uschange production (int)": (lambda: _sktime("load_uschange", "Production"), 8, 1),
}


def load_short_series(names: list[str] | None = None) -> list[ShortSeries]:
    """The series of :data:`SHORT_SERIES` (all, or those named), loaded from their packages."""
    out = []
    for name in names or list(SHORT_SERIES):
        loader, horizon, season = SHORT_SERIES[name]
        out.append(ShortSeries(name, loader(), horizon, season))
    return out


def origins(length: int, horizon: int, windows: int, split: str = "test") -> list[int]:
    """Forecast origins (the number of observations before each), ``horizon // 2`` apart.

    ``"test"``: the last ``windows`` origins whose horizon fits in the series.
    ``"validation"``: the same scheme on the series cut at the first test origin, so no
    validation target is a test target.

    Examples
    --------
    >>> origins(100, 6, 3)
    [88, 91, 94]
    >>> origins(100, 6, 3, "validation")
    [76, 79, 82]
    """
    step = max(1, horizon // 2)
    end = length
    if split == "validation":
        end = length - horizon - (windows - 1) * step
    elif split != "test":
        raise ValueError(f"split must be 'test' or 'validation', got {split!r}.")
    last = end - horizon
    return [last - k * step for k in reversed(range(windows))]


def _naive(train: np.ndarray, horizon: int, season: int) -> np.ndarray:
    if season <= 1 or train.size < season:
        return np.full(horizon, train[-1])
    cycle = train[-season:]
    return np.resize(cycle, horizon)


@dataclass
class SeriesScore:
    """MAE of every model on one series, over its windows, and what the forecaster chose."""

    name: str
    length: int
    horizon: int
    windows: int
    mae: dict[str, float]
    choices: list[str] = field(default_factory=list)
    level: float = 1.0  # mean absolute value of the series

    @property
    def relative(self) -> float:
        """Zero-shot MAE over the better naive MAE; NaN (undefined) when a naive forecast is
        exact on every scored window (an intermittent series whose windows are all zeros),
        since no forecast can then be compared by a ratio."""
        best = min(self.mae["last value"], self.mae["seasonal naive"])
        if best <= 1e-12 * max(self.level, 1e-300):
            return float("nan")
        return self.mae["zero-shot"] / best


def evaluate(
    series: list[ShortSeries],
    make_forecaster: Callable[[], Any],
    *,
    windows: int = 5,
    split: str = "test",
) -> list[SeriesScore]:
    """Score ``make_forecaster()`` (an unfitted sktime forecaster) and the naive forecasts."""
    scores = []
    for s in series:
        values = s.y.to_numpy(float)
        errors: dict[str, list[float]] = {"zero-shot": [], "last value": [], "seasonal naive": []}
        choices: list[str] = []
        for t in origins(len(values), s.horizon, windows, split):
            train, truth = s.y.iloc[:t], values[t : t + s.horizon]
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                f = make_forecaster().fit(train, fh=list(range(1, s.horizon + 1)))
                pred = f.predict().to_numpy(float).ravel()
            choices = list(f.engine_.report_.choices)
            errors["zero-shot"].append(float(np.mean(np.abs(pred - truth))))
            last = np.full(s.horizon, values[t - 1])
            errors["last value"].append(float(np.mean(np.abs(last - truth))))
            seasonal = _naive(values[:t], s.horizon, s.season)
            errors["seasonal naive"].append(float(np.mean(np.abs(seasonal - truth))))
        mae = {k: float(np.mean(v)) for k, v in errors.items()}
        level = float(np.mean(np.abs(values)))
        scores.append(SeriesScore(s.name, len(values), s.horizon, windows, mae, choices, level))
    return scores


def geometric_mean_relative(scores: list[SeriesScore]) -> float:
    """Geometric mean of the zero-shot MAE relative to the better naive MAE, over the series
    where that ratio is defined (see :attr:`SeriesScore.relative`)."""
    logs = [math.log(s.relative) for s in scores if math.isfinite(s.relative)]
    return math.exp(float(np.mean(logs))) if logs else float("nan")


def table(scores: list[SeriesScore]) -> str:
    """Markdown table: one row per series, then the geometric mean."""
    lines = [
        "| series | length | horizon | zero-shot MAE | last value | seasonal naive | relative "
        "| patch size chosen |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for s in scores:
        patch = next((c.split(":")[0] for c in s.choices if c.startswith("patch size")), "-")
        relative = f"{s.relative:.3f}" if math.isfinite(s.relative) else "undefined"
        lines.append(
            f"| {s.name} | {s.length} | {s.horizon} | {s.mae['zero-shot']:.4g} | "
            f"{s.mae['last value']:.4g} | {s.mae['seasonal naive']:.4g} | {relative} | "
            f"{patch.removeprefix('patch size ')} |"
        )
    defined = sum(math.isfinite(s.relative) for s in scores)
    lines.append(
        f"| **geometric mean** ({defined} of {len(scores)} series) | | | | | | "
        f"**{geometric_mean_relative(scores):.3f}** | |"
    )
    if defined < len(scores):
        lines.append(
            "\nundefined: a naive forecast was exact on every scored window (MAE 0), so the "
            "ratio has no value; such series are left out of the geometric mean."
        )
    return "\n".join(lines)


def _patch_evidence() -> float:
    import msft_forecast.training.patch_size as patch_module

    return float(patch_module.PATCH_EVIDENCE_SE)


def main(argv: list[str] | None = None) -> list[SeriesScore]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="moirai-tiny")
    parser.add_argument("--windows", type=int, default=5)
    parser.add_argument("--split", choices=["test", "validation"], default="test")
    parser.add_argument("--series", nargs="+", default=None, choices=list(SHORT_SERIES))
    parser.add_argument("--markdown", default=None, help="also write the table to this file")
    parser.add_argument(
        "--patch-evidence-se",
        type=float,
        default=None,
        help="how many standard errors a larger patch size must win by (default: the engine's "
        "PATCH_EVIDENCE_SE; 0 takes the lowest validation score, as before issue 16)",
    )
    args = parser.parse_args(argv)
    if args.patch_evidence_se is not None:
        import msft_forecast.training.patch_size as patch_module

        patch_module.PATCH_EVIDENCE_SE = args.patch_evidence_se

    from msft_forecast import MSFTForecaster
    from msft_forecast.benchmarks.lsf import environment

    env = environment()
    start = time.perf_counter()
    scores = evaluate(
        load_short_series(args.series),
        lambda: MSFTForecaster(backbone=args.backbone, fit_strategy="zero-shot"),
        windows=args.windows,
        split=args.split,
    )
    text = (
        f"- {env['cpu']}, torch {env['torch']}, load {env['load']}, commit {env['commit']}; "
        f"backbone {args.backbone}, zero-shot with default settings (patch evidence "
        f"{_patch_evidence():g} standard errors), {args.windows} "
        f"{args.split} windows per series; {time.perf_counter() - start:.0f} s; command: "
        f"python -m msft_forecast.benchmarks.short_series "
        + " ".join(argv if argv is not None else [])
        + "\n\n"
        + table(scores)
    )
    print(text)
    if args.markdown:
        with open(args.markdown, "w", encoding="utf-8") as fh:
            fh.write(text + "\n")
    return scores


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
