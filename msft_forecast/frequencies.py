"""Pandas frequencies to the letters of Moirai's per-frequency patch-size table.

Moirai was pre-trained with a different set of patch sizes for each data frequency
(:data:`MOIRAI_PATCH_SIZES_BY_FREQ`, uni2ts' table).  :func:`frequency_key` reads any way a
pandas frequency can be written (offset alias, period alias, the older aliases pandas 3
removed, a ``DateOffset``, a time delta) and returns the one letter that table is keyed on.

The letter is decided by the *offset class* pandas parses the frequency into, never by the
first letter of the string: pandas' current aliases start ambiguously ("min" and "ms" are not
monthly, "SME" is semi-monthly, not seconds, "bh" is business hours, "WOM-1MON" is monthly).
"""

from __future__ import annotations

import datetime
import re
import warnings
from typing import Any

__all__ = [
    "MOIRAI_PATCH_SIZES_BY_FREQ",
    "SEASON_BY_KEY",
    "UNMAPPED_OFFSET_CLASSES",
    "frequency_key",
    "season_length",
]

#: Patch sizes Moirai was pre-trained with for each frequency (uni2ts' table), keyed by the
#: letter :func:`frequency_key` returns ("A" is the old spelling of "Y"; "B" business days).
MOIRAI_PATCH_SIZES_BY_FREQ: dict[str, tuple[int, ...]] = {
    "Y": (8,),
    "A": (8,),
    "Q": (8,),
    "M": (8, 16, 32),
    "W": (16, 32),
    "D": (16, 32),
    "B": (16, 32),
    "H": (32, 64),
    "T": (32, 64, 128),
    "S": (64, 128),
}

#: pandas offset class name -> letter.  Every class pandas 2.1-3.x defines is listed, so that a
#: new class shows up in the tests instead of being guessed.  Calendar variants (business,
#: custom business, begin/end) share their period's letter, except business days, which have
#: their own ("B").  Several pandas frequencies have no row of their own in Moirai's table and
#: take the nearest one: week-of-month and last-week-of-month (one observation a month) and
#: semi-monthly are "M"; half-yearly is "Q" ("Y" and "Q" share patch size 8); Easter and the
#: 52-53-week fiscal year are "Y", its quarters "Q"; sub-second ticks are "S".
_OFFSET_CLASS_KEYS: dict[str, str] = {
    "YearBegin": "Y",
    "YearEnd": "Y",
    "BYearBegin": "Y",
    "BYearEnd": "Y",
    "FY5253": "Y",
    "Easter": "Y",
    "HalfYearBegin": "Q",
    "HalfYearEnd": "Q",
    "BHalfYearBegin": "Q",
    "BHalfYearEnd": "Q",
    "QuarterBegin": "Q",
    "QuarterEnd": "Q",
    "BQuarterBegin": "Q",
    "BQuarterEnd": "Q",
    "FY5253Quarter": "Q",
    "MonthBegin": "M",
    "MonthEnd": "M",
    "BusinessMonthBegin": "M",
    "BusinessMonthEnd": "M",
    "CustomBusinessMonthBegin": "M",
    "CustomBusinessMonthEnd": "M",
    "SemiMonthBegin": "M",
    "SemiMonthEnd": "M",
    "WeekOfMonth": "M",
    "LastWeekOfMonth": "M",
    "Week": "W",
    "Day": "D",
    "BusinessDay": "B",
    "CustomBusinessDay": "B",
    "Hour": "H",
    "BusinessHour": "H",
    "CustomBusinessHour": "H",
    "Minute": "T",
    "Second": "S",
    "Milli": "S",
    "Micro": "S",
    "Nano": "S",
}

#: Offset classes that are no frequency by themselves and map to None: the abstract bases
#: (``BaseOffset``; ``Tick``, whose ``Tick()`` pandas accepts but which has no unit).  A plain
#: ``DateOffset`` maps by its relative fields (``DateOffset(months=3)`` is "M", ``DateOffset()``
#: one day, "D"), to None when it has none (``DateOffset(weekday=0)`` only rolls dates).
UNMAPPED_OFFSET_CLASSES: frozenset[str] = frozenset({"BaseOffset", "Tick"})

#: Name fragments (matched in order) for offset classes newer than :data:`_OFFSET_CLASS_KEYS`.
#: The order resolves compound names: "WeekOfMonth" is monthly, "BusinessHour" hourly.
_OFFSET_NAME_FRAGMENTS = (
    ("Year", "Y"),
    ("Quarter", "Q"),
    ("Month", "M"),
    ("Week", "W"),
    ("Hour", "H"),
    ("Minute", "T"),
    ("Second", "S"),
    ("Milli", "S"),
    ("Micro", "S"),
    ("Nano", "S"),
    ("BusinessDay", "B"),
    ("Day", "D"),
)

#: ``DateOffset`` relative fields, finest first (pandas names an offset by its finest unit:
#: "1h30min" is minutes).
_DATEOFFSET_FIELDS = (
    ("nanoseconds", "S"),
    ("microseconds", "S"),
    ("milliseconds", "S"),
    ("seconds", "S"),
    ("minutes", "T"),
    ("hours", "H"),
    ("days", "D"),
    ("weeks", "W"),
    ("months", "M"),
    ("years", "Y"),
)

#: Aliases pandas deprecated in 2.2 and removed in 3.0 (where ``to_offset`` raises for them)
#: -> their current spelling.  Users, saved settings and older libraries still pass them ("H",
#: "15T", "M", "A-DEC", ...) and pandas 3's period aliases ("M", "Q", "Y") are not offset
#: aliases; without this table such data would silently lose its per-frequency patch sizes.
#: Only the alias is translated: a multiple and an anchor suffix are kept, and pandas parses the
#: result, so invalid anchors ("Q-FOO") still give None.
_LEGACY_ALIASES: dict[str, str] = {
    "A": "YE",
    "Y": "YE",
    "AS": "YS",
    "BA": "BYE",
    "BY": "BYE",
    "BAS": "BYS",
    "Q": "QE",
    "BQ": "BQE",
    "M": "ME",
    "BM": "BME",
    "SM": "SME",
    "CBM": "CBME",
    "H": "h",
    "BH": "bh",
    "CBH": "cbh",
    "T": "min",
    "S": "s",
    "L": "ms",
    "U": "us",
    "N": "ns",
}

#: Steps in one natural cycle of data at each frequency letter with a multiple of one: a year
#: of years, quarters, months or weeks, a week of days or business days, a day of hours or
#: minutes, a minute of seconds.  Offset classes with a cycle of their own are in
#: :data:`_SEASON_BY_CLASS`.
SEASON_BY_KEY: dict[str, int] = {
    "Y": 1,
    "A": 1,
    "Q": 4,
    "M": 12,
    "W": 52,
    "D": 7,
    "B": 5,
    "H": 24,
    "T": 1440,
    "S": 60,
}

#: Offset classes whose cycle differs from their letter's: two semi-months a month, two
#: half-years a year, eight business hours a business day, no cycle below a second.
_SEASON_BY_CLASS: dict[str, int] = {
    "SemiMonthBegin": 24,
    "SemiMonthEnd": 24,
    "HalfYearBegin": 2,
    "HalfYearEnd": 2,
    "BHalfYearBegin": 2,
    "BHalfYearEnd": 2,
    "BusinessHour": 8,
    "CustomBusinessHour": 8,
    "Milli": 1,
    "Micro": 1,
    "Nano": 1,
}

_ALIAS_PATTERN = re.compile(r"^\s*([+-]?\d*)\s*([A-Za-z]+)((?:-[A-Za-z0-9]+)*)\s*$")


def frequency_key(freq: str | Any) -> str | None:
    """The letter of :data:`MOIRAI_PATCH_SIZES_BY_FREQ` for a pandas frequency.

    Parameters
    ----------
    freq : str, pandas.DateOffset, pandas.Timedelta or datetime.timedelta
        Any pandas offset alias with or without a multiple ("h", "15min", "ME", "W-SUN",
        "QE-DEC", "bh", "WOM-1MON", ...), a period alias ("M", "Q", "Y-DEC"), an alias removed
        in pandas 3 ("H", "15T", "S", "L", "M", "A", "BM", ...), an offset object, or a
        positive time delta (also as a string such as "15 minutes").

    Returns
    -------
    str or None
        One of "Y", "Q", "M", "W", "D", "B" (business days), "H", "T" (minutes) or "S"
        (seconds and finer); None when ``freq`` is no frequency pandas knows (never raises).

    Examples
    --------
    >>> [frequency_key(f) for f in ["h", "H", "15T", "min", "ms", "SME", "BME", "bh"]]
    ['H', 'H', 'T', 'T', 'S', 'M', 'M', 'H']
    >>> [frequency_key(f) for f in ["A-DEC", "YE", "Q", "WOM-1MON", "B", "not a frequency"]]
    ['Y', 'Y', 'Q', 'M', 'B', None]
    """
    try:
        offset = _to_offset(freq)
    except Exception:  # to_offset raises ValueError, TypeError, AttributeError, ...
        return None
    return None if offset is None else _offset_key(offset)


def season_length(freq: str | Any) -> int:
    """Steps in one seasonal cycle of data at frequency ``freq`` (1: no season).

    The cycle is a day for hourly and finer data down to minutes, a minute for seconds, a week
    for daily (7) and business-day (5) data, a year for weekly (52), monthly (12), quarterly
    (4) and half-yearly (2) data; yearly data has none.  A multiple divides the cycle ("15min"
    is 96 a day, "2h" 12); a multiple that does not divide it gives 1, since no whole number
    of steps makes one cycle ("5D").  Any way of writing a frequency that
    :func:`frequency_key` reads is accepted.

    Parameters
    ----------
    freq : str, pandas.DateOffset, pandas.Timedelta or datetime.timedelta

    Returns
    -------
    int
        The season length; 1 for no season or an unknown frequency.

    Examples
    --------
    >>> [season_length(f) for f in ["h", "15min", "10min", "D", "B", "W-SAT", "MS", "QE", "YE"]]
    [24, 96, 144, 7, 5, 52, 12, 4, 1]
    >>> [season_length(f) for f in ["2h", "5D", "SME", "s", "not a frequency"]]
    [12, 1, 24, 60, 1]
    """
    try:
        offset = _to_offset(freq)
    except Exception:  # to_offset raises ValueError, TypeError, AttributeError, ...
        return 1
    if offset is None:
        return 1
    key = _offset_key(offset)
    if key is None:
        return 1
    base = _SEASON_BY_CLASS.get(type(offset).__name__, SEASON_BY_KEY[key])
    n = abs(int(getattr(offset, "n", 1) or 1))
    if type(offset).__name__ == "DateOffset":  # its size is in its finest relative field
        kwds = getattr(offset, "kwds", {})
        n *= next((abs(int(kwds[f])) for f, _ in _DATEOFFSET_FIELDS if kwds.get(f)), 1)
    return base // n if base % n == 0 else 1


def _to_offset(freq: Any) -> Any:
    """The pandas offset for ``freq``, or None."""
    import numpy as np
    import pandas as pd
    from pandas.tseries.frequencies import to_offset

    if isinstance(freq, np.timedelta64):  # before the number test: it subclasses np.integer
        freq = pd.Timedelta(freq) if not np.isnat(freq) else None
    if freq is None or isinstance(freq, (bool, int, float, np.number)):
        return None  # to_offset(None) is None; a bare number is a step count, not a frequency
    if isinstance(freq, datetime.timedelta):  # includes pd.Timedelta
        return _timedelta_offset(pd.Timedelta(freq))
    if not isinstance(freq, str):
        return to_offset(freq)  # a DateOffset; anything else raises and gives None
    with warnings.catch_warnings():
        # pandas 2.2+ warns for the aliases it deprecated ("H", "T", "M", "d", ...)
        warnings.simplefilter("ignore")
        for attempt in (_offset_alias, _period_alias, _legacy_alias, _timedelta_string):
            try:
                offset = attempt(freq)
            except Exception:  # ValueError, TypeError (no is_period before pandas 2.2), ...
                continue
            if offset is not None:
                return offset
    return None


def _offset_alias(freq: str) -> Any:
    from pandas.tseries.frequencies import to_offset

    return to_offset(freq)


def _period_alias(freq: str) -> Any:
    """A period alias ("M", "Q", "Y-DEC"); pandas 3 no longer reads these as offsets."""
    from pandas.tseries.frequencies import to_offset

    return to_offset(freq, is_period=True)  # TypeError before pandas 2.2: next attempt


def _legacy_alias(freq: str) -> Any:
    """An alias pandas 3 removed ("15T", "2H", "A-DEC"), translated to its current spelling."""
    from pandas.tseries.frequencies import to_offset

    match = _ALIAS_PATTERN.match(freq)
    if match is None or match.group(2) not in _LEGACY_ALIASES:
        return None
    multiple, alias, anchor = match.groups()
    return to_offset(f"{multiple}{_LEGACY_ALIASES[alias]}{anchor}")


def _timedelta_string(freq: str) -> Any:
    """A time delta written out ("15 minutes", "1 day", ISO "PT1H"); needs a unit."""
    import pandas as pd

    if not re.search("[A-Za-z]", freq):
        return None  # pd.Timedelta("5") is five nanoseconds: a bare number is no frequency
    return _timedelta_offset(pd.Timedelta(freq))


def _timedelta_offset(delta: Any) -> Any:
    """The offset of a positive time delta; whole days are days (pandas 3 makes "24h" of them)."""
    import pandas as pd
    from pandas.tseries.frequencies import to_offset

    if pd.isna(delta) or delta <= pd.Timedelta(0):
        return None
    if delta % pd.Timedelta(days=1) == pd.Timedelta(0):
        return pd.offsets.Day(delta.days)
    return to_offset(delta)


def _offset_key(offset: Any) -> str | None:
    """The letter for a pandas offset object (see :data:`_OFFSET_CLASS_KEYS`)."""
    if getattr(offset, "n", 1) == 0:
        return None  # a zero step is no frequency
    name = type(offset).__name__
    if name in _OFFSET_CLASS_KEYS:
        return _OFFSET_CLASS_KEYS[name]
    if name == "DateOffset":
        kwds = getattr(offset, "kwds", {}) or {}
        for field, key in _DATEOFFSET_FIELDS:
            if kwds.get(field):
                return key
        return "D" if not kwds else None  # DateOffset() is one calendar day
    if name in UNMAPPED_OFFSET_CLASSES:
        return None
    for part, key in _OFFSET_NAME_FRAGMENTS:
        if part in name:
            return key
    return None
