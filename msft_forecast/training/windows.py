"""Training and validation windows, cut lazily from one or many series.

Series are 1-D float arrays with NaN for missing values (a multivariate series is split into
its channels by the front ends: channel-independent modelling).  A window is identified by its
forecast origin ``t``: context ``y[t - C : t]`` (left-padded when the series is shorter) and
horizon ``y[t : t + H]``.  Nothing is materialised ahead of time, so memory depends on the batch
size, not on the length of the series.

Validation windows have their horizon inside the last ``validation`` steps of each series;
training windows have theirs before it, so no training target is ever seen in validation.

Training windows are full: a series long enough for at least ``H`` training windows with a
whole context of ``C`` observations trains on those only (origins from ``C``), as the MSFT
authors do.  Only a shorter series also trains on left-padded windows, whose context starts
at the series' start (origins from ``min(C, H)``), so that short data can still be used.

Covariates, when a series has them, are 2-D arrays ``(T, V)`` aligned with the series from its
first step: past-only covariates (``T`` = the series' length) enter a window over its context,
known-future covariates (``T`` at least the series' length) over its context and horizon
(:func:`covariate_window`); the windows then carry them under ``"covariates"``
(:class:`~msft_forecast.msft.base.Covariates`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset


@dataclass(frozen=True)
class OriginRange:
    """Forecast origins ``start, start + step, ..., < stop`` of one series."""

    series: int
    start: int
    stop: int
    step: int = 1

    def __len__(self) -> int:
        return max(0, -(-(self.stop - self.start) // self.step))


#: A series' covariates: past-only ``(T, P)`` and known-future ``(T', F)`` arrays (or None).
CovariatePair = tuple[np.ndarray | None, np.ndarray | None]


def covariate_window(
    covariates: CovariatePair, origin: int, context_length: int, horizon_length: int
) -> dict[str, torch.Tensor]:
    """The covariates of the window at ``origin``, variates first: ``past`` ``(P, C)`` over
    the context and ``future`` ``(F, C + H)`` over the context and horizon, float32 with 0
    where unobserved (NaN, or before the series' start, or past the array's end), and their
    bool ``*_observed`` masks.

    Examples
    --------
    >>> import numpy as np
    >>> w = covariate_window((np.arange(5.0)[:, None], np.arange(7.0)[:, None]), 5, 4, 2)
    >>> w["past"].tolist(), w["future"].tolist()
    ([[1.0, 2.0, 3.0, 4.0]], [[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]])
    """
    first = origin - context_length  # series index of the window's first step
    out: dict[str, torch.Tensor] = {}
    sides = (("past", covariates[0], context_length),
             ("future", covariates[1], context_length + horizon_length))  # fmt: skip
    for name, cov, length in sides:
        values = np.full((length, 0 if cov is None else cov.shape[1]), np.nan)
        lo, hi = max(0, first), min(0 if cov is None else cov.shape[0], first + length)
        if hi > lo:
            values[lo - first : hi - first] = cov[lo:hi]
        observed = np.isfinite(values.T)
        out[name] = torch.from_numpy(np.where(observed, values.T, 0.0).astype(np.float32))
        out[f"{name}_observed"] = torch.from_numpy(observed)
    return out


def cut_window(
    series: np.ndarray,
    origin: int,
    context_length: int,
    horizon_length: int,
    scale: float = 1.0,
    covariates: CovariatePair | None = None,
) -> dict[str, torch.Tensor]:
    """The window of ``series`` whose forecast starts at index ``origin``.

    Returns float32 ``context``/``horizon`` (divided by ``scale``, in float64 first) with 0
    where unobserved, bool ``*_observed`` masks, and ``available``: how many context steps lie
    on or after the series' start; with ``covariates``, also ``"covariates"``
    (:func:`covariate_window`, in the covariates' own units).
    """
    lo = max(0, origin - context_length)
    ctx = np.full(context_length, np.nan, dtype=np.float64)
    ctx[context_length - (origin - lo) :] = series[lo:origin]
    hor = np.full(horizon_length, np.nan, dtype=np.float64)
    fut = series[origin : origin + horizon_length]
    hor[: fut.shape[0]] = fut
    if scale != 1.0:
        ctx, hor = ctx / scale, hor / scale
    c_obs, h_obs = np.isfinite(ctx), np.isfinite(hor)
    return {
        "context": torch.from_numpy(np.where(c_obs, ctx, 0.0).astype(np.float32)),
        "context_observed": torch.from_numpy(c_obs),
        "horizon": torch.from_numpy(np.where(h_obs, hor, 0.0).astype(np.float32)),
        "horizon_observed": torch.from_numpy(h_obs),
        "available": torch.tensor(origin - lo, dtype=torch.long),
    } | ({} if covariates is None else {
        "covariates": covariate_window(covariates, origin, context_length, horizon_length)
    })  # fmt: skip


class WindowDataset(Dataset):
    """Windows at the origins given by a list of :class:`OriginRange` (computed on access).

    Parameters
    ----------
    series : sequence of ndarray
        1-D float series, NaN for missing values.
    ranges : sequence of OriginRange
        Which origins of which series form the dataset.
    context_length, horizon_length : int
        Window lengths.
    scales : sequence of float, optional
        One positive factor per series that its windows are divided by (default 1: the
        series' own units).
    covariates : sequence of CovariatePair, optional
        Per series, its past-only and known-future covariates (see :func:`covariate_window`).
    """

    def __init__(
        self,
        series: Sequence[np.ndarray],
        ranges: Sequence[OriginRange],
        context_length: int,
        horizon_length: int,
        scales: Sequence[float] | None = None,
        covariates: Sequence[CovariatePair] | None = None,
    ) -> None:
        self.series = series
        self.covariates = covariates
        self.scales = [1.0] * len(series) if scales is None else [float(f) for f in scales]
        self.ranges = [r for r in ranges if len(r) > 0]
        self.context_length = context_length
        self.horizon_length = horizon_length
        self._cumulative = np.cumsum([len(r) for r in self.ranges], dtype=np.int64)

    def __len__(self) -> int:
        return int(self._cumulative[-1]) if len(self._cumulative) else 0

    def origin(self, index: int) -> tuple[int, int]:
        """(series index, origin) of window ``index``."""
        if not 0 <= index < len(self):
            raise IndexError(index)
        which = int(np.searchsorted(self._cumulative, index, side="right"))
        before = int(self._cumulative[which - 1]) if which else 0
        r = self.ranges[which]
        return r.series, r.start + (index - before) * r.step

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        series, origin = self.origin(int(index))
        return cut_window(
            self.series[series],
            origin,
            self.context_length,
            self.horizon_length,
            self.scales[series],
            None if self.covariates is None else self.covariates[series],
        )


@dataclass(frozen=True)
class WindowSplit:
    """Training and validation windows of a collection of series."""

    train: WindowDataset
    validation: WindowDataset | None


def validation_length(length: int, validation: float | int | None, horizon_length: int) -> int:
    """Steps at the end of a series reserved for validation (0 when it cannot hold a horizon)."""
    if validation is None or validation == 0:
        return 0
    steps = int(round(validation * length)) if isinstance(validation, float) else int(validation)
    return steps if steps >= horizon_length else 0


def split_windows(
    series: Sequence[np.ndarray],
    context_length: int,
    horizon_length: int,
    *,
    validation: float | int | None = 0.1,
    min_context: int | None = None,
    max_validation_windows: int = 256,
    scales: Sequence[float] | None = None,
    covariates: Sequence[CovariatePair] | None = None,
) -> WindowSplit:
    """Training windows from the start of every series, validation windows from its end.

    Training windows have a full context of ``C`` observations when the series is long enough
    for at least ``H`` of them; only shorter series also get left-padded windows (see
    ``min_context``).

    Parameters
    ----------
    series : sequence of ndarray
        1-D float series with NaN for missing values.
    context_length, horizon_length : int
        Window lengths.
    validation : float, int or None, default 0.1
        Fraction of each series' length (float) or number of steps (int) held out at its end;
        a series whose held-out tail is shorter than one horizon contributes no validation
        window.  ``None`` or 0: no validation.
    min_context : int, optional
        Fewest context steps a training window must have, for every series.  Default, per
        series: ``C`` (full windows, no left padding) when the series has at least ``H`` such
        windows before its validation tail, i.e. ``train_end - H - C + 1 >= H`` with
        ``train_end`` its length less the validation tail; else ``min(C, H)`` (a short series
        also trains on windows left-padded up to ``C``).
    max_validation_windows : int
        Cap on validation windows in total (spread evenly), to keep validation cheap.
    scales : sequence of float, optional
        Per-series factors the windows are divided by (see :class:`WindowDataset`).
    covariates : sequence of CovariatePair, optional
        Per-series covariates the windows carry (see :class:`WindowDataset`).

    Raises
    ------
    ValueError
        When no series is long enough for a single training window (the message gives the
        minimum length).
    """
    short_context = min(context_length, horizon_length) if min_context is None else min_context
    short_context = max(1, short_context)
    train_ranges, val_ranges = [], []
    for i, s in enumerate(series):
        n = int(s.shape[0])
        n_val = validation_length(n, validation, horizon_length)
        train_end = n - n_val
        # training horizons end by train_end; origins need the whole context C before them when
        # that leaves at least H windows, else short_context (min(C, H): left-padded windows)
        stop = train_end - horizon_length + 1
        full = min_context is None and stop - context_length >= horizon_length
        train_ranges.append(OriginRange(i, context_length if full else short_context, stop))
        if n_val:
            val_ranges.append(OriginRange(i, train_end, n - horizon_length + 1))
    train = WindowDataset(series, train_ranges, context_length, horizon_length, scales, covariates)
    if len(train) == 0:
        # no series had a window at all, so none qualified for full windows either: the
        # shortest usable series needs short_context + H observations
        longest = max((int(s.shape[0]) for s in series), default=0)
        raise ValueError(
            f"No series is long enough to fine-tune on: a training window needs at least "
            f"{short_context + horizon_length} observations (context of {short_context} + "
            f"horizon of {horizon_length}) before the validation tail, and the longest series "
            f"has {longest}. "
            f"Pass a longer series, a shorter prediction_length, or validation=None."
        )
    val = None
    total_val = sum(len(r) for r in val_ranges)
    if total_val:
        step = max(1, -(-total_val // max_validation_windows))
        val_ranges = [OriginRange(r.series, r.start, r.stop, step) for r in val_ranges]
        val = WindowDataset(series, val_ranges, context_length, horizon_length, scales, covariates)
    return WindowSplit(train, val)
