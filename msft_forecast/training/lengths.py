"""Context and training-horizon lengths that fit the data, chosen before any window is cut.

A forecaster built with defaults (a 512-step context, a 96-step training horizon: the long
horizon benchmarks' lengths) must also fine-tune on a 144-point monthly series.  Two rules:

* **Context** ``C``: never longer than the longest series.  Steps before a series' start are
  padding the model masks out, so a longer context only costs time and memory.
* **Training horizon** ``H`` when the caller leaves it to the data (``"auto"``, the front ends'
  default when no forecasting horizon is given at fit): :data:`DEFAULT_HORIZON` steps when the
  longest series holds :data:`SERIES_PER_HORIZON` horizons, else a fifth of its length, rounded
  down to whole seasons when that keeps at least one.  A fifth leaves room for a context of at
  least two horizons, a validation tail and many training origins.  A horizon given by the
  caller is kept, and a series too short for it is an error that says so.

Forecasts are not limited to ``H``: Moirai forecasts any number of steps.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from msft_forecast.frequencies import season_length

__all__ = ["DEFAULT_HORIZON", "SERIES_PER_HORIZON", "FitLengths", "choose_lengths"]

#: Training horizon ``"auto"`` uses on series long enough for it.
DEFAULT_HORIZON = 96
#: ``"auto"`` keeps the longest series at least this many training horizons long.
SERIES_PER_HORIZON = 5


@dataclass(frozen=True)
class FitLengths:
    """The context and training horizon a fit uses, and why (one sentence per change)."""

    context_length: int
    prediction_length: int
    reasons: tuple[str, ...] = ()


def choose_lengths(
    series_lengths: Sequence[int],
    context_length: int,
    prediction_length: int | str,
    freq: str | None = None,
) -> FitLengths:
    """The context and training horizon for series of these lengths.

    Parameters
    ----------
    series_lengths : sequence of int
        Length of every series (channel) fine-tuned on.
    context_length : int
        The context asked for; capped at the longest series.
    prediction_length : int or "auto"
        The training horizon; ``"auto"`` chooses it from the longest series and ``freq``.
    freq : str, optional
        pandas frequency of the data (its season rounds an automatic horizon).

    Returns
    -------
    FitLengths

    Examples
    --------
    >>> lengths = choose_lengths([144], 512, "auto", freq="MS")
    >>> lengths.context_length, lengths.prediction_length
    (144, 24)
    >>> choose_lengths([2000], 512, "auto").prediction_length
    96
    >>> choose_lengths([100], 512, 30).prediction_length  # given by the caller: kept
    30
    """
    longest = max((int(n) for n in series_lengths), default=0)
    reasons = []
    context = int(context_length)
    if 0 < longest < context:
        reasons.append(
            f"context_length {context} capped at {longest}: the longest series has {longest} "
            f"steps, and steps before a series' start would be padding"
        )
        context = longest
    if prediction_length != "auto":
        return FitLengths(context, int(prediction_length), tuple(reasons))
    horizon = DEFAULT_HORIZON
    if longest < SERIES_PER_HORIZON * DEFAULT_HORIZON:
        horizon = max(1, longest // SERIES_PER_HORIZON)
        season = season_length(freq) if freq else 1
        why = f"a fifth of the longest series ({longest} steps)"
        if 1 < season <= horizon:
            horizon = horizon // season * season
            why += f", rounded down to whole seasons of {season}"
        reasons.append(
            f"training horizon {horizon} steps: {why}; {DEFAULT_HORIZON} needs series of "
            f"{SERIES_PER_HORIZON * DEFAULT_HORIZON} steps (forecasts may be longer)"
        )
    return FitLengths(context, horizon, tuple(reasons))
