"""Input checks shared by the engine and the front ends.

Every check raises ``ValueError`` with a message that names the problem and how to fix it, and
never modifies the caller's data. The engine calls :func:`as_float_series` on everything it is
given, so the sktime, Darts and command-line front ends get the same checks; the front ends only
add the checks of their own containers (:func:`check_time_index` for sktime's pandas indexes).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

__all__ = [
    "as_float_series",
    "check_accelerator",
    "check_observed_contexts",
    "check_one_patch",
    "check_time_index",
    "regular_grid",
    "unit_scale",
]


def _positions(mask: np.ndarray, limit: int = 5) -> str:
    where = np.flatnonzero(mask)
    shown = ", ".join(str(int(i)) for i in where[:limit])
    return shown + (", ..." if where.size > limit else "")


def as_float_series(
    series: Sequence[Any], *, what: str = "series", require_observed: bool = True
) -> list[np.ndarray]:
    """Check a collection of 1-D series and return them as float64 arrays (never copied in place).

    Parameters
    ----------
    series : sequence of array-like
        One 1-D array per channel; NaN marks a missing value.
    what : str, default "series"
        How the messages call one element (``"series"``, ``"context"``).
    require_observed : bool, default True
        Refuse a series without any observed (finite) value.

    Returns
    -------
    list of ndarray
        float64 views or copies of the inputs; the caller's arrays are not written to.

    Raises
    ------
    ValueError
        No series; a series that is not 1-D, not numeric, empty, holds ``±inf`` or (with
        ``require_observed``) has no observed value.

    Examples
    --------
    >>> import numpy as np
    >>> [a.dtype for a in as_float_series([np.arange(3)])]
    [dtype('float64')]
    >>> try:
    ...     as_float_series([np.array([1.0, np.inf])])
    ... except ValueError as err:
    ...     print(str(err)[:47])
    series 0 holds infinite values (at positions 1)
    """
    if series is None or len(series) == 0:
        raise ValueError(f"no {what} given: pass at least one non-empty series.")
    out = []
    for i, s in enumerate(series):
        try:
            arr = np.asarray(s, dtype=np.float64)
        except (TypeError, ValueError) as err:
            dtype = getattr(s, "dtype", type(s).__name__)
            raise ValueError(
                f"{what} {i} is not numeric (dtype {dtype}: {err}). Pass numbers (int or float, "
                f"NaN for missing); convert or drop text and categorical columns first."
            ) from err
        if arr.ndim != 1:
            raise ValueError(f"each {what} must be 1-D (one channel), got shape {arr.shape}.")
        if arr.shape[0] == 0:
            raise ValueError(
                f"{what} {i} is empty (0 observations). Pass a series with observations."
            )
        infinite = np.isinf(arr)
        if infinite.any():
            raise ValueError(
                f"{what} {i} holds infinite values (at positions {_positions(infinite)}). "
                f"Replace them with NaN to mark them missing, or remove them."
            )
        if require_observed and not np.isfinite(arr).any():
            raise ValueError(
                f"{what} {i} has no observed value: all its {arr.shape[0]} values are missing "
                f"(NaN). Drop it, or pass data with at least one observed value."
            )
        out.append(arr)
    return out


def check_observed_contexts(contexts: Sequence[np.ndarray], context_length: int) -> None:
    """Refuse a context whose last ``context_length`` steps hold no observed value.

    Such a context has nothing to forecast from; the model would return its prior (about 0)
    in whatever units the caller uses, silently.
    """
    for i, c in enumerate(contexts):
        if not np.isfinite(c[-context_length:]).any():
            raise ValueError(
                f"context {i} has no observed value in its last {context_length} steps (the "
                f"context the model reads), so it cannot be forecast. Drop it, fill the gap, or "
                f"use a longer context_length."
            )


def check_time_index(index: pd.Index, *, name: str = "y") -> None:
    """Refuse a duplicated, unsorted or irregular (no frequency) time index.

    Parameters
    ----------
    index : pandas.Index
        The time index of one series (integer, range, datetime or period).
    name : str
        The argument's name in messages.

    Raises
    ------
    ValueError
        Duplicated or decreasing time points; a datetime index whose frequency cannot be
        inferred (irregular time stamps).
    """
    if index.has_duplicates:
        first = index[index.duplicated()][0]
        raise ValueError(
            f"the time index of {name} has duplicated time points (e.g. {first}). Aggregate "
            f"them first, e.g. {name}.groupby(level=-1).mean()."
        )
    if not index.is_monotonic_increasing:
        raise ValueError(
            f"the time index of {name} is not sorted in increasing order. Sort it first "
            f"({name}.sort_index())."
        )
    if isinstance(index, pd.DatetimeIndex) and index.freq is None and len(index) > 2:
        if pd.infer_freq(index) is None:
            raise ValueError(
                f"the time stamps of {name} are irregular: no frequency can be inferred. "
                f"Resample to a regular frequency first, e.g. {name}.asfreq('h') (gaps become "
                f"missing values, which are handled), or use an integer index."
            )


def regular_grid(index: pd.Index, step: Any) -> tuple[pd.Index, pd.Index]:
    """The regular grid of ``step`` from the first to the last time point of ``index``, and the
    time points of ``index`` that are off it.

    ``index`` is a ``DatetimeIndex`` (``step`` a pandas frequency), a ``PeriodIndex`` or an
    integer index (``step`` an integer).  Missing time points are the grid's points absent from
    ``index``; the callers reindex onto the grid, so they become missing values.

    Examples
    --------
    >>> grid, off = regular_grid(pd.DatetimeIndex(["2024-01-01", "2024-01-03"]), "D")
    >>> len(grid), len(off)
    (3, 0)
    >>> regular_grid(pd.Index([0, 2, 5]), 2)[1].tolist()
    [5]
    """
    if isinstance(index, pd.PeriodIndex):
        grid = pd.period_range(index[0], index[-1], freq=step)
    elif isinstance(index, pd.DatetimeIndex):
        grid = pd.date_range(index[0], index[-1], freq=step)
    else:
        grid = pd.Index(np.arange(index[0], index[-1] + 1, step), dtype=index.dtype)
    return grid, index.difference(grid)


def check_accelerator(
    accelerator: str, devices: int | str | list[int], strategy: str, precision: str
) -> None:
    """Ask Lightning whether this accelerator, devices and strategy exist on this machine.

    Called before any work, so a wrong device fails at once with a message saying what to use
    instead, not after a patch-size search and with a Lightning-internal error.

    Raises
    ------
    ValueError
        The accelerator or devices are unknown or not available here.
    """
    import lightning as L

    try:
        L.Trainer(
            accelerator=accelerator,
            devices=devices,
            strategy=strategy,
            precision=precision,
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
        )
    except Exception as err:  # Lightning raises several types (misconfiguration, import, ...)
        raise ValueError(
            f"accelerator={accelerator!r} with devices={devices!r} (strategy={strategy!r}) "
            f"cannot be used on this machine: {err} Use accelerator='cpu', or 'auto' to take "
            f"whatever is available."
        ) from err


def unit_scale(values: np.ndarray) -> float:
    """A positive factor proportional to the magnitude of ``values`` (NaN ignored).

    The standard deviation of the observed values; their mean absolute value when the
    deviation is below a millionth of it (a constant series); 1 for all zeros.
    ``unit_scale(c * y) == c * unit_scale(y)`` for ``c > 0`` (up to rounding), so dividing by it
    makes the model's input independent of the data's units: forecasts are then
    scale-equivariant from 1e-12 to 1e12, where the backbones' fixed epsilons (added to
    variances) would otherwise dominate.

    Examples
    --------
    >>> import numpy as np
    >>> unit_scale(np.array([1.0, 3.0, np.nan])), unit_scale(np.array([5.0, 5.0]))
    (1.0, 5.0)
    """
    observed = values[np.isfinite(values)]
    if observed.size == 0:
        return 1.0
    # divided by the largest magnitude first: squares of 1e300 overflow, of 1e-300 underflow
    peak = float(np.max(np.abs(observed)))
    if peak == 0:
        return 1.0
    unit = observed / peak
    center = unit - unit.mean()
    spread = float(np.sqrt(np.mean(center * center)))
    level = float(np.mean(np.abs(unit)))
    scale = (spread if spread > 1e-6 * level else level) * peak
    return scale if scale > 0 and np.isfinite(scale) else 1.0


def check_one_patch(series: list[np.ndarray], patch_size: int) -> None:
    """Warn when no series has one patch of observed values: the model then reads a partial
    patch padded with masked steps (as Moirai does for any series), which works but carries
    little information."""
    most = max(int(np.isfinite(x).sum()) for x in series)
    if most < patch_size:
        warnings.warn(
            f"The longest series has {most} observed values, fewer than one patch of "
            f"{patch_size} steps: the model reads one partial, padded patch. Pass at least "
            f"{patch_size} observations for a full patch (or a smaller patch_size, e.g. 8).",
            UserWarning,
            stacklevel=4,
        )
