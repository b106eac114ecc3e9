"""pandas series, panels and hierarchies to the engine's channel arrays, on a regular grid.

Format conversion for the sktime front end (:mod:`msft_forecast.sktime`): a frame indexed by
time, or by ``(instance..., time)``, becomes one 1-D float array per column of every series;
time points are checked (sorted, unique, regular, one frequency per panel) and gaps become
missing values on the series' grid.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from msft_forecast.frequencies import frequency_key
from msft_forecast.validation import check_time_index, regular_grid


def instances(y: pd.DataFrame) -> list[tuple[tuple, pd.DataFrame]]:
    """``(instance key, frame indexed by time)`` of every series, in order of appearance."""
    if not isinstance(y.index, pd.MultiIndex):
        return [((), y)]
    levels = list(range(y.index.nlevels - 1))
    out = []
    for key, frame in y.groupby(level=levels, sort=False):
        key = key if isinstance(key, tuple) else (key,)
        out.append((key, frame.droplevel(levels)))
    return out


def check_time_indexes(y: pd.DataFrame) -> None:
    """Duplicated, unsorted or irregular time points of any series, or series of a panel at
    different frequencies: a clear ``ValueError``."""
    steps: dict[str, str] = {}
    for key, frame in instances(y):
        name = "y" if not key else f"y[{key if len(key) > 1 else key[0]!r}]"
        check_time_index(frame.index, name=name)
        step = grid_step(frame) if len(frame) > 2 else None
        if step is not None:
            steps.setdefault(str(getattr(step, "freqstr", step)), name)
    if len(steps) > 1:
        (a, first), (b, second) = list(steps.items())[:2]
        raise ValueError(
            f"the series of y come at different frequencies: {first} every {a}, {second} every "
            f"{b}. One model forecasts one frequency: fit one forecaster per frequency (split "
            "the panel, or resample its series to a common frequency)."
        )


def grid_step(y: pd.DataFrame) -> Any:
    """The time step of ``y``'s series: a pandas offset (datetime, period) or an integer."""
    _, frame = instances(y)[0]
    index = frame.index
    if isinstance(index, pd.PeriodIndex):
        return index.freq
    if isinstance(index, pd.DatetimeIndex):
        return index.freq or (
            pd.tseries.frequencies.to_offset(pd.infer_freq(index)) if len(index) > 2 else None
        )
    if len(index) > 1 and pd.api.types.is_integer_dtype(index):
        return int(np.min(np.diff(index.to_numpy())))
    return None


def on_grid(y: pd.DataFrame, step: Any) -> pd.DataFrame:
    """Every series of ``y`` on a regular grid of ``step``: missing time points become rows of
    missing values.  A time point off the grid is refused."""
    if step is None:
        return y

    def regular(frame: pd.DataFrame, name: str) -> pd.DataFrame:
        index = frame.index
        grid, off = regular_grid(index, step)
        if len(off):
            raise ValueError(
                f"the time points of {name} are not on the series' grid (step {step} from "
                f"{index[0]}), e.g. {off[0]}; update with data at the same frequency"
            )
        return frame if len(grid) == len(index) else frame.reindex(grid)

    if not isinstance(y.index, pd.MultiIndex):
        return regular(y, "y")
    parts = []
    for key, frame in instances(y):
        out = regular(frame, f"y[{key if len(key) > 1 else key[0]!r}]")
        out.index = pd.MultiIndex.from_arrays(
            [*(pd.Index([k] * len(out)) for k in key), out.index], names=y.index.names
        )
        parts.append(out)
    return pd.concat(parts)


def check_on_grid(times: pd.Index, steps: np.ndarray, instances: list) -> None:
    """Refuse forecast time points that fall between the series' time steps."""
    if not isinstance(times, pd.DatetimeIndex):
        return  # integer steps and periods are on the grid by construction
    for _, frame in instances:
        freq = grid_step(frame)
        if freq is None:
            continue
        end = frame.index[-1]
        grid = pd.date_range(end, periods=int(max(steps.max(), 0)) + 2, freq=freq)
        off = times.difference(grid)
        if len(off):
            raise ValueError(
                f"fh asks for {off[0]}, which is not on the series' grid (frequency "
                f"{freq.freqstr}, last observation {end}); ask for time points on that grid, "
                f"e.g. {grid[1]}"
            )


def channels(y: pd.DataFrame) -> list[np.ndarray]:
    """One 1-D float array (NaN for missing) per column of every series, instance-major."""
    out = []
    for _, frame in instances(y):
        values = frame.to_numpy(dtype=np.float64, na_value=np.nan)
        out.extend(values[:, j].copy() for j in range(values.shape[1]))
    return out


def tail(y: pd.DataFrame, length: int) -> pd.DataFrame:
    """The last ``length`` rows of every series."""
    if not isinstance(y.index, pd.MultiIndex):
        return y.iloc[-length:]
    levels = list(range(y.index.nlevels - 1))
    return y.groupby(level=levels, sort=False, group_keys=False).tail(length)


def output_index(history: pd.DataFrame, keys: list[tuple], times: pd.Index) -> pd.Index:
    """Row index of a forecast: ``times`` for one series, ``(instance..., time)`` for panels."""
    names = list(history.index.names)
    if not isinstance(history.index, pd.MultiIndex):
        return times.rename(names[0])
    n_times = len(times)
    arrays = [
        pd.Index([key[level] for key in keys]).repeat(n_times) for level in range(len(names) - 1)
    ]
    arrays.append(times[np.tile(np.arange(n_times), len(keys))])
    return pd.MultiIndex.from_arrays(arrays, names=names)


def select_steps(values: np.ndarray, steps: np.ndarray, n_instances: int) -> np.ndarray:
    """``(series, ..., H)`` engine array -> ``(instances, fh, variables, ...)``: the forecast
    steps ``steps`` (``(instances, len(fh))``, zero-based) of every channel."""
    n_vars = values.shape[0] // n_instances
    per = values.reshape(n_instances, n_vars, *values.shape[1:])
    idx = steps.reshape(n_instances, 1, *([1] * (values.ndim - 2)), steps.shape[1])
    picked = np.take_along_axis(per, idx, axis=-1)  # (instances, vars, ..., fh)
    return np.moveaxis(picked, -1, 1)


def frequency_key_of(cutoff) -> str | None:
    """One unambiguous frequency letter for the engine, or None when the index has none.

    The letter comes from the index's offset object (for a PeriodIndex too), read by
    :func:`msft_forecast.frequencies.frequency_key`: never from the first letter of a
    frequency string, which is ambiguous for pandas' current aliases ("min" and "ms" start like
    monthly "M", "SME" like seconds), nor from the string itself, whose period aliases ("M",
    "Q", "Y") pandas 3 no longer reads as offsets.  ``frequency_key`` maps every letter it
    returns to itself, so the engine reads it back unchanged.
    """
    offset = getattr(cutoff, "freq", None)
    return None if offset is None else frequency_key(offset)
