"""Covariates handed to the engine: checked, aligned with their series, and matched at forecast
time against the ones the model was fitted with.

The engine takes, next to its 1-D series, one array per series of each kind, aligned with the
series from its first step (row ``t`` belongs to step ``t`` of the series):

* **past covariates** ``(T, P)`` (or 1-D for one covariate), known up to the end of the series
  only (``T`` equals the series' length): the model reads them over the context;
* **known-future covariates** ``(T', F)``, known beyond the series' end: at fit ``T'`` is at
  least the series' length, at forecast at least its length plus the horizon; the model reads
  them over the context and the horizon.

NaN marks a missing covariate value (the model sees it as unobserved).  A channel-independent
multivariate series shares its covariates across its channels (the front ends repeat them).
Which covariates a model was fitted with (their names and number) is recorded in its
:class:`~msft_forecast.results.FitReport`; forecasts must pass the same ones.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from msft_forecast.results import FitReport
from msft_forecast.training.windows import CovariatePair

__all__ = ["SeriesCovariates", "as_covariates", "forecast_covariates"]


@dataclass(frozen=True)
class SeriesCovariates:
    """Checked covariates of a collection of series.

    Attributes
    ----------
    pairs : list of CovariatePair or None
        Per series, its past ``(T, P)`` and known-future ``(T', F)`` float64 arrays (None for
        a kind not given); None when no covariate is given.
    past_names, future_names : list of str
        Names of the covariates of each kind (``past_0``, ... unless given).
    """

    pairs: list[CovariatePair] | None = None
    past_names: list[str] = field(default_factory=list)
    future_names: list[str] = field(default_factory=list)


def forecast_covariates(
    contexts: Sequence[np.ndarray], past: Sequence | None, future: Sequence | None,
    horizon: int, fitted: FitReport, horizon_limit: int | None,
    extend: Callable[[SeriesCovariates], SeriesCovariates] | None = None,
) -> SeriesCovariates:  # fmt: skip
    """Check a forecast's covariates (:func:`as_covariates`, then ``extend``: the engine's
    additions, such as a joint model's other channels) against those the model was fitted
    with (recorded in ``fitted``): as many of each kind.

    Raises
    ------
    ValueError
        Covariates that :func:`as_covariates` refuses, other numbers of covariates than at fit
        (none passed included), or covariates with a horizon beyond the model's horizon limit
        (a forecast rolled forward would need covariates past the horizon).
    """
    given = as_covariates(contexts, past, future, horizon=horizon)
    if extend is not None:
        given = extend(given)
    for side, fitted_names, passed in (
        ("past", list(fitted.past_covariates), given.past_names),
        ("known-future", list(fitted.future_covariates), given.future_names),
    ):
        if len(fitted_names) != len(passed):
            arg = "past_covariates" if side == "past" else "future_covariates"
            raise ValueError(
                f"The model was fitted with {len(fitted_names)} {side} covariates "
                f"{fitted_names} and this "
                f"forecast passes {len(passed)}. Pass the covariates the model was fitted "
                f"with ({arg}), covering what it reads."
            )
    if given.pairs is not None and horizon_limit is not None and horizon > horizon_limit:
        raise ValueError(
            f"Covariates need a forecast in one pass; this model forecasts at most "
            f"{horizon_limit} steps at a time and {horizon} were asked for."
        )
    return given


def _as_2d(value, what: str, i: int) -> np.ndarray:
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{what} of series {i} must be numeric: {err}") from err
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2:
        raise ValueError(f"{what} of series {i} must be 1-D or 2-D (steps, covariates), "
                         f"got shape {arr.shape}.")  # fmt: skip
    if np.isinf(arr).any():
        raise ValueError(f"{what} of series {i} hold infinite values; use NaN for missing ones.")
    return arr


def _names(given: Sequence[str] | None, count: int, prefix: str) -> list[str]:
    if given is None:
        return [f"{prefix}_{j}" for j in range(count)]
    names = [str(n) for n in given]
    if len(names) != count:
        raise ValueError(f"{len(names)} names for {count} {prefix} covariates: {names}.")
    return names


def as_covariates(
    series: Sequence[np.ndarray],
    past: Sequence | None = None,
    future: Sequence | None = None,
    *,
    horizon: int = 0,
    names: tuple[Sequence[str] | None, Sequence[str] | None] | None = None,
) -> SeriesCovariates:
    """Check covariates against their series (see the module's alignment rule).

    Parameters
    ----------
    series : sequence of ndarray
        The 1-D series (at forecast: the contexts).
    past, future : sequence of array-like, optional
        One array per series (``(T, V)``, or 1-D for one covariate) of each side.
    horizon : int, default 0
        Steps forecast after each series: known-future covariates must reach that far.
    names : (sequence of str, sequence of str), optional
        Names of the past and known-future covariates (recorded by the engine, used in
        messages).

    Returns
    -------
    SeriesCovariates
        Empty (``pairs`` None) when neither kind is given.

    Raises
    ------
    ValueError
        Not one array per series, non-numeric or infinite values, different numbers of
        covariates across series, past covariates not as long as their series, or
        known-future covariates that do not reach ``horizon`` steps past their series' end.

    Examples
    --------
    >>> import numpy as np
    >>> cov = as_covariates([np.zeros(10)], future=[np.ones(12)], horizon=2)
    >>> cov.future_names, cov.pairs[0][1].shape
    (['future_0'], (12, 1))
    >>> as_covariates([np.zeros(10)], future=[np.ones(11)], horizon=2)
    Traceback (most recent call last):
    ...
    ValueError: Known-future covariates of series 0 have 11 steps; they must cover the series \
(10 steps) and the 2 forecast steps after it: at least 12 steps, aligned with the series' start.
    """
    if past is None and future is None:
        return SeriesCovariates()
    n = len(series)
    arrays: dict[str, list[np.ndarray] | None] = {}
    for side, given in (("past", past), ("future", future)):
        if given is None:
            arrays[side] = None
            continue
        what = "Past covariates" if side == "past" else "Known-future covariates"
        if isinstance(given, np.ndarray) or len(given) != n:
            got = "one array" if isinstance(given, np.ndarray) else len(given)
            raise ValueError(f"{what}: pass one array per series ({n}), got {got}.")
        arrs = [_as_2d(a, what, i) for i, a in enumerate(given)]
        widths = {a.shape[1] for a in arrs}
        if len(widths) > 1:
            raise ValueError(f"{what}: every series needs the same covariates; got "
                             f"{sorted(widths)} columns.")  # fmt: skip
        for i, (a, s) in enumerate(zip(arrs, series, strict=True)):
            steps = len(s) + (0 if side == "past" else horizon)
            if side == "past" and a.shape[0] != len(s):
                raise ValueError(
                    f"{what} of series {i} have {a.shape[0]} steps and the series {len(s)}; "
                    f"past covariates are aligned with their series step by step."
                )
            if side == "future" and a.shape[0] < steps:
                raise ValueError(
                    f"{what} of series {i} have {a.shape[0]} steps; they must cover the series "
                    f"({len(s)} steps) and the {horizon} forecast steps after it: at least "
                    f"{steps} steps, aligned with the series' start."
                )
        arrays[side] = arrs
    widths = {k: 0 if v is None else v[0].shape[1] for k, v in arrays.items()}
    pairs = [
        (None if arrays["past"] is None else arrays["past"][i],
         None if arrays["future"] is None else arrays["future"][i])
        for i in range(n)
    ]  # fmt: skip
    names = names or (None, None)
    past_names = _names(names[0], widths["past"], "past")
    return SeriesCovariates(pairs, past_names, _names(names[1], widths["future"], "future"))
