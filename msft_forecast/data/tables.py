"""Anyone's series as a benchmark dataset: a CSV or Parquet file, wide or long, and a split.

Two layouts are read (the same ones the command line's ``forecast`` reads):

* **wide** (the long-horizon benchmarks' layout): a date column (named ``date``, ``ds``,
  ``timestamp``, ``time`` or ``datetime``, else the first column) and one numeric column per
  channel;
* **long**: columns ``unique_id``, ``ds`` and ``y``, one row per series and time step.

Series are aligned on their timestamps on a regular grid at the data's frequency (given, or
inferred by pandas); time steps missing from the file become missing values, which the models
skip as inputs and the scores skip as targets.  Rows are split by position into training,
validation and test parts (:func:`resolve_split`): fractions or row counts, or, for short
series, the *last-h* holdout with a rolling origin: the test part is the last ``horizon + n -
1`` rows (``n`` forecast origins, one step apart, each scored on the ``horizon`` steps that
follow it) and the validation part the same number of rows before it.

The file is only read; nothing is written back.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from msft_forecast.data.lsf import LSFDataset
from msft_forecast.validation import regular_grid

__all__ = ["DatasetSplit", "load_table", "parse_split", "resolve_split"]

#: Names a wide file's date column may have (case-insensitive); otherwise the first column.
DATE_COLUMNS = ("date", "ds", "timestamp", "time", "datetime")

#: The split used when none is given, as long as its validation and test parts each hold at
#: least one horizon (else the last-h holdout).
DEFAULT_SPLIT = (0.7, 0.1, 0.2)


@dataclass(frozen=True)
class DatasetSplit:
    """Row counts of the three parts and how they were chosen.

    ``origins_per_part`` is the number of forecast origins of the last-h holdout (each part
    ``horizon + origins_per_part - 1`` rows), None for a fraction or row-count split.
    """

    train: int
    validation: int
    test: int
    protocol: str  # "fractions", "rows" or "last-h"
    origins_per_part: int | None = None

    def describe(self) -> str:
        text = f"{self.train} / {self.validation} / {self.test} rows ({self.protocol}"
        if self.origins_per_part is not None:
            text += f", {self.origins_per_part} rolling origins one step apart"
        return text + ")"


def parse_split(text: str | None) -> tuple[str, tuple[float, ...] | int | None]:
    """Read a ``--split`` value: ``("auto", None)``, ``("fractions", (a, b, c))``,
    ``("rows", (a, b, c))`` or ``("last-h", n or None)``.

    Fractions may be written as fractions ("0.7/0.1/0.2") or percentages ("70/10/20"); three
    whole numbers that do not add up to 1 or 100 are row counts ("8640,2880,2880").

    >>> parse_split("70/10/20"), parse_split("8640,2880,2880"), parse_split("last-h:12")
    (('fractions', (0.7, 0.1, 0.2)), ('rows', (8640, 2880, 2880)), ('last-h', 12))
    """
    if text is None or text.strip().lower() == "auto":
        return "auto", None
    value = text.strip().lower()
    match = re.fullmatch(r"last-h(?::(\d+))?", value)
    if match:
        n = int(match.group(1)) if match.group(1) else None
        if n is not None and n < 1:
            raise ValueError(f"--split {text!r}: the number of origins must be at least 1")
        return "last-h", n
    parts = [p for p in re.split(r"[/,:\s]+", value) if p]
    try:
        numbers = [float(p) for p in parts]
    except ValueError:
        numbers = []
    if len(numbers) != 3 or any(not np.isfinite(x) or x < 0 for x in numbers):
        raise ValueError(
            f"--split {text!r} is not a split: give three fractions (0.7/0.1/0.2), percentages "
            "(70/10/20) or row counts (8640,2880,2880) for train/validation/test, or last-h[:N] "
            "for the last-horizon holdout with N rolling origins"
        )
    total = sum(numbers)
    for scale in (1.0, 100.0):
        if abs(total - scale) < 1e-6 * scale:
            return "fractions", tuple(round(x / scale, 10) for x in numbers)
    if all(x == int(x) for x in numbers):
        return "rows", tuple(int(x) for x in numbers)
    raise ValueError(
        f"--split {text!r}: fractions must add up to 1 (or percentages to 100); got {total:g}"
    )


def resolve_split(rows: int, horizon: int, split: str | None = None) -> DatasetSplit:
    """Row counts of the training, validation and test parts of ``rows`` rows.

    Parameters
    ----------
    rows : int
        Length of the aligned series.
    horizon : int
        Forecast horizon: the validation and test parts must each hold at least one.
    split : str, optional
        A :func:`parse_split` value.  The default (``"auto"``) is 70/10/20 when its validation
        and test parts each hold at least ``horizon`` rows, else the last-h holdout.

    Raises
    ------
    ValueError
        When a part is too short for one forecast of ``horizon`` steps, naming the part, its
        length and what to change.

    Examples
    --------
    >>> resolve_split(1000, 24).describe()
    '700 / 100 / 200 rows (fractions)'
    >>> resolve_split(144, 24).describe()
    '72 / 36 / 36 rows (last-h, 13 rolling origins one step apart)'
    """
    if horizon < 1:
        raise ValueError(f"horizon must be at least 1, got {horizon}")
    scheme, value = parse_split(split)
    if scheme == "auto":
        train, val, test = _fraction_rows(rows, DEFAULT_SPLIT)
        if min(val, test) >= horizon and train > horizon:
            return DatasetSplit(train, val, test, "fractions")
        scheme, value = "last-h", None
    if scheme == "last-h":
        n = value if value is not None else _default_origins(rows, horizon)
        part = horizon + n - 1
        train = rows - 2 * part
        if train <= horizon:
            need = 3 * horizon + 2 * (n - 1) + 1
            raise ValueError(
                f"the series has {rows} rows, too short for the last-h holdout at horizon "
                f"{horizon} with {n} origin(s): it needs at least {need} rows (training part "
                f"longer than one horizon, validation and test parts of {part} rows). Use a "
                "shorter --horizon or fewer origins (--split last-h:1)."
            )
        return DatasetSplit(train, part, part, "last-h", n)
    if scheme == "fractions":
        train, val, test = _fraction_rows(rows, value)
    else:
        train, val, test = value
        if train + val + test > rows:
            raise ValueError(
                f"--split asks for {train + val + test} rows ({train}/{val}/{test}) but the "
                f"series has {rows}"
            )
    for part_name, length in (("validation", val), ("test", test)):
        if length < horizon:
            raise ValueError(
                f"the {part_name} part has {length} rows, fewer than the horizon ({horizon}): "
                f"no window fits. Give it more rows with --split, shorten --horizon, or use "
                "--split last-h for short series."
            )
    if train <= horizon:
        raise ValueError(
            f"the training part has {train} rows; it needs more than the horizon ({horizon}). "
            "Give it more rows with --split or use --split last-h."
        )
    return DatasetSplit(train, val, test, scheme)


def _fraction_rows(rows: int, fractions) -> tuple[int, int, int]:
    """Weather's rule: train and test rounded down, validation the rest."""
    train, test = int(rows * fractions[0]), int(rows * fractions[2])
    if fractions[0] + fractions[1] + fractions[2] < 1 - 1e-9:
        return train, int(rows * fractions[1]), test
    return train, rows - train - test, test


def _default_origins(rows: int, horizon: int) -> int:
    """Origins per part of the automatic last-h holdout: up to one horizon's worth, so that
    the two held-out parts together take at most half of the series."""
    return int(np.clip(rows // 4 - horizon + 1, 1, horizon))


def load_table(
    path: str | os.PathLike,
    *,
    horizon: int,
    freq: str | None = None,
    split: str | None = None,
    season: int | None = None,
    name: str | None = None,
    date_column: str | None = None,
) -> tuple[LSFDataset, DatasetSplit]:
    """Read a CSV or Parquet file of series into a benchmark dataset with its split.

    Parameters
    ----------
    path : path
        ``.csv``, ``.csv.gz`` or ``.parquet`` file, wide or long (see the module docstring).
    horizon : int
        Forecast horizon (the split must hold one in its validation and test parts).
    freq : str, optional
        pandas frequency of the data; inferred from the timestamps when absent.
    split : str, optional
        See :func:`resolve_split`.
    season : int, optional
        Season length of the seasonal baselines; default from the frequency
        (:func:`msft_forecast.frequencies.season_length`).
    name : str, optional
        Name in the tables (default: the file name without its extension).
    date_column : str, optional
        Date column of a wide file (default: see :data:`DATE_COLUMNS`).

    Returns
    -------
    dataset : LSFDataset
        Aligned channels on a regular grid with the split's boundaries.
    split : DatasetSplit
        The row counts and how they were chosen.

    Examples
    --------
    >>> import pandas as pd, tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "sales.csv")
    >>> pd.DataFrame({"date": pd.date_range("2020-01-01", periods=400, freq="D"),
    ...               "sales": range(400)}).to_csv(path, index=False)
    >>> ds, split = load_table(path, horizon=14)
    >>> ds.freq, ds.season, split.describe()
    ('D', 7, '280 / 40 / 80 rows (fractions)')
    """
    path = Path(path)
    frame = _read(path)
    frame = _wide(frame, path, date_column)
    freq = freq or _infer_freq(frame.index, path)
    frame = _regular(frame, freq, path)
    parts = resolve_split(len(frame), horizon, split)
    train_end = parts.train
    val_end = train_end + parts.validation
    stem = name or re.sub(r"(\.csv)?(\.gz)?$|\.parquet$", "", path.name)
    dataset = LSFDataset(
        stem, frame, freq, train_end, val_end, val_end + parts.test, season=int(season or 0)
    )
    return dataset, parts


def _read(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise FileNotFoundError(f"--data {path}: no such file")
    suffixes = "".join(path.suffixes).lower()
    if suffixes.endswith(".parquet") or suffixes.endswith(".pq"):
        return pd.read_parquet(path)
    if ".csv" in suffixes or ".txt" in suffixes:
        return pd.read_csv(path)
    raise ValueError(f"--data {path}: read CSV (.csv, .csv.gz) or Parquet (.parquet) files")


def _wide(frame: pd.DataFrame, path: Path, date_column: str | None) -> pd.DataFrame:
    """Channels in columns, a sorted DatetimeIndex; long tables are pivoted."""
    if {"unique_id", "ds", "y"} <= set(frame.columns):
        stamps = _dates(frame["ds"], path, "ds")
        long = pd.DataFrame({"unique_id": frame["unique_id"].astype(str), "ds": stamps})
        long["y"] = _numeric(frame["y"], path, "y")
        dup = long.duplicated(["unique_id", "ds"])
        if dup.any():
            first = long[dup].iloc[0]
            raise ValueError(
                f"{path}: series {first['unique_id']!r} has several rows at {first['ds']}; "
                "keep one row per series and time step"
            )
        wide = long.pivot(index="ds", columns="unique_id", values="y")
        wide.columns.name = None
        return wide.sort_index()
    if date_column is None:
        lower = {str(c).lower(): c for c in frame.columns}
        date_column = next((lower[c] for c in DATE_COLUMNS if c in lower), frame.columns[0])
    elif date_column not in frame.columns:
        raise ValueError(f"{path}: no column {date_column!r}; columns: {list(frame.columns)}")
    stamps = _dates(frame[date_column], path, str(date_column))
    channels = frame.drop(columns=[date_column])
    if channels.shape[1] == 0:
        raise ValueError(f"{path}: no value columns next to the date column {date_column!r}")
    wide = pd.DataFrame(
        {c: _numeric(channels[c], path, str(c)) for c in channels.columns}, index=stamps
    )
    wide.index.name = None
    if wide.index.has_duplicates:
        raise ValueError(
            f"{path}: the timestamp {wide.index[wide.index.duplicated()][0]} appears more than "
            "once; a wide file has one row per time step (use the long layout unique_id, ds, y "
            "for several series)"
        )
    return wide.sort_index()


def _dates(column: pd.Series, path: Path, label: str) -> pd.DatetimeIndex:
    try:
        stamps = pd.DatetimeIndex(pd.to_datetime(column))
    except (ValueError, TypeError) as err:
        raise ValueError(
            f"{path}: column {label!r} does not hold dates ({err}). Put the dates in the first "
            "column (or name it 'date'), or pass the date column explicitly."
        ) from err
    if stamps.hasnans:
        raise ValueError(f"{path}: column {label!r} has empty dates")
    return stamps


def _numeric(column: pd.Series, path: Path, label: str) -> np.ndarray:
    values = pd.to_numeric(column, errors="coerce")
    bad = values.isna() & column.notna()
    if bad.any():
        raise ValueError(
            f"{path}: column {label!r} holds values that are not numbers, e.g. "
            f"{column[bad].iloc[0]!r}; drop the column or clean it first"
        )
    return values.to_numpy(dtype=np.float64)


def _infer_freq(index: pd.DatetimeIndex, path: Path) -> str:
    freq = pd.infer_freq(index) if len(index) >= 3 else None
    if freq is None:
        raise ValueError(
            f"{path}: could not infer the frequency from the timestamps (gaps or irregular "
            "steps); pass it, e.g. --freq D, --freq W-SUN, --freq h"
        )
    return freq


def _regular(frame: pd.DataFrame, freq: str, path: Path) -> pd.DataFrame:
    """The frame on a regular grid at ``freq``; missing steps become missing values."""
    try:
        grid, off_grid = regular_grid(frame.index, freq)
    except ValueError as err:
        raise ValueError(f"--freq {freq!r} is not a pandas frequency: {err}") from err
    if len(off_grid):
        raise ValueError(
            f"{path}: {len(off_grid)} timestamp(s) are off the {freq!r} grid that starts at "
            f"{frame.index[0]}, e.g. {off_grid[0]}; check --freq"
        )
    return frame.reindex(grid)
