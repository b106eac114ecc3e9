"""frequency_key: every way pandas 2.x/3.x writes a frequency -> Moirai's patch-size letter."""

from __future__ import annotations

import datetime
import warnings

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from msft_forecast.frequencies import (
    MOIRAI_PATCH_SIZES_BY_FREQ,
    UNMAPPED_OFFSET_CLASSES,
    frequency_key,
)

LETTERS = set(MOIRAI_PATCH_SIZES_BY_FREQ)

#: Current offset aliases (pandas >= 2.2) -> letter.
CURRENT = {
    "YE": "Y",
    "YS": "Y",
    "YE-DEC": "Y",
    "YS-JAN": "Y",
    "YE-JUN": "Y",
    "BYE": "Y",
    "BYS": "Y",
    "QE": "Q",
    "QS": "Q",
    "QE-DEC": "Q",
    "QE-NOV": "Q",
    "QS-JAN": "Q",
    "BQE": "Q",
    "BQS": "Q",
    "ME": "M",
    "MS": "M",
    "SME": "M",
    "SMS": "M",
    "SME-20": "M",
    "BME": "M",
    "BMS": "M",
    "CBME": "M",
    "CBMS": "M",
    "WOM-1MON": "M",
    "WOM-4FRI": "M",
    "LWOM-MON": "M",
    "W": "W",
    "W-SUN": "W",
    "W-MON": "W",
    "D": "D",
    "B": "B",
    "C": "B",
    "h": "H",
    "bh": "H",
    "cbh": "H",
    "min": "T",
    "s": "S",
    "ms": "S",
    "us": "S",
    "ns": "S",
    "RE-N-JAN-MON": "Y",
    "REQ-N-JAN-MON-1": "Q",
}

#: Aliases pandas 3 removed (deprecated in 2.2) that pandas 2 users and old settings still pass.
LEGACY = {
    "Y": "Y",
    "A": "Y",
    "AS": "Y",
    "A-DEC": "Y",
    "Y-DEC": "Y",
    "A-JUN": "Y",
    "BA": "Y",
    "BY": "Y",
    "BAS": "Y",
    "Q": "Q",
    "Q-DEC": "Q",
    "Q-NOV": "Q",
    "BQ": "Q",
    "M": "M",
    "BM": "M",
    "SM": "M",
    "CBM": "M",
    "H": "H",
    "BH": "H",
    "CBH": "H",
    "T": "T",
    "S": "S",
    "L": "S",
    "U": "S",
    "N": "S",
}

#: Period aliases (``PeriodIndex.freqstr``) that pandas 3 does not read as offset aliases.
PERIOD = {"Y": "Y", "Y-DEC": "Y", "Q": "Q", "Q-DEC": "Q", "M": "M", "W": "W", "D": "D", "h": "H"}

GARBAGE = [
    "",
    " ",
    "garbage",
    "XYZ",
    "m",  # ambiguous (minutes or months): pandas rejects it
    "5",  # a bare number: pd.Timedelta("5") would be 5 ns
    "15",
    "Q-FOO",  # a legacy alias with an invalid anchor
    "M-DEC",  # monthly takes no anchor
    "LWOM-1MON",  # last-week-of-month takes a weekday, no week number
    "0D",  # a zero step
    "15TT",
    "h-",
    "--",
    "1.5.3",
    "\x00",
]


def _multiples(table: dict[str, str], multiples=("", "2", "15", "10")) -> list[tuple[str, str]]:
    return [(f"{k}{alias}", letter) for alias, letter in table.items() for k in multiples]


@pytest.mark.parametrize("alias, letter", _multiples(CURRENT))
def test_current_offset_aliases(alias, letter):
    assert frequency_key(alias) == letter


@pytest.mark.parametrize("alias, letter", _multiples(LEGACY))
def test_aliases_removed_in_pandas_3(alias, letter):
    assert frequency_key(alias) == letter


@pytest.mark.parametrize("alias, letter", _multiples(PERIOD, ("", "3")))
def test_period_aliases(alias, letter):
    assert frequency_key(alias) == letter


@pytest.mark.parametrize(
    "alias, letter",
    [("15T", "T"), ("2H", "H"), ("10S", "S"), ("5L", "S"), ("3A-DEC", "Y"), ("-1D", "D")],
)
def test_issue_examples(alias, letter):
    assert frequency_key(alias) == letter


@pytest.mark.parametrize("alias", GARBAGE)
def test_garbage_is_none(alias):
    assert frequency_key(alias) is None


@pytest.mark.parametrize(
    "value", [None, 5, 2.5, True, np.int64(3), object(), ["h"], {"freq": "h"}, pd.NaT, b"h"]
)
def test_non_frequencies_are_none(value):
    assert frequency_key(value) is None


def test_every_letter_maps_to_itself():
    # the sktime front end hands the engine a letter, which the engine reads back
    for letter in MOIRAI_PATCH_SIZES_BY_FREQ:
        expected = "Y" if letter == "A" else letter
        assert frequency_key(letter) == expected
        assert MOIRAI_PATCH_SIZES_BY_FREQ[letter] == MOIRAI_PATCH_SIZES_BY_FREQ[expected]


@pytest.mark.parametrize(
    "value, letter",
    [
        (pd.Timedelta("15min"), "T"),
        (pd.Timedelta("2h"), "H"),
        (pd.Timedelta("1D"), "D"),
        (datetime.timedelta(seconds=10), "S"),
        (np.timedelta64(15, "m"), "T"),
        ("15 minutes", "T"),
        ("1 day", "D"),
        ("PT1H", "H"),
        ("1h30min", "T"),  # pandas names a compound step by its finest unit
        (pd.Timedelta(0), None),
        (pd.Timedelta("-1h"), None),
        (np.timedelta64("NaT"), None),
    ],
)
def test_time_deltas(value, letter):
    assert frequency_key(value) == letter


@pytest.mark.parametrize(
    "offset, letter",
    [
        (pd.offsets.MonthEnd(3), "M"),
        (pd.offsets.Hour(2), "H"),
        (pd.offsets.BusinessHour(), "H"),
        (pd.offsets.BDay(), "B"),
        (pd.offsets.WeekOfMonth(week=1, weekday=0), "M"),
        (pd.offsets.Easter(), "Y"),
        (pd.DateOffset(months=3), "M"),
        (pd.DateOffset(years=1), "Y"),
        (pd.DateOffset(weeks=2), "W"),
        (pd.DateOffset(days=1, hours=12), "H"),
        (pd.DateOffset(), "D"),
        (pd.DateOffset(weekday=0), None),
        (pd.offsets.Day(0), None),
        (pd.offsets.Tick(), None),
    ],
)
def test_offset_objects(offset, letter):
    assert frequency_key(offset) == letter


def _offset_classes() -> list[type]:
    base = pd.offsets.BaseOffset
    return sorted(
        {c for c in vars(pd.offsets).values() if isinstance(c, type) and issubclass(c, base)},
        key=lambda c: c.__name__,
    )


@pytest.mark.parametrize("cls", _offset_classes(), ids=lambda c: c.__name__)
def test_every_pandas_offset_class_has_a_letter_or_is_documented_as_none(cls):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        offset = cls()
    key = frequency_key(offset)
    if cls.__name__ in UNMAPPED_OFFSET_CLASSES:
        assert key is None
    else:
        assert key in LETTERS, f"{cls.__name__} (new in this pandas?) maps to {key!r}"
    # the same class, reached through its alias, maps the same way
    name = getattr(offset, "freqstr", None)
    if key is not None and isinstance(name, str) and name and not name.startswith("<"):
        assert frequency_key(name) == key


def test_every_alias_pandas_registers_has_a_letter():
    from pandas._libs.tslibs import offsets

    prefixes = getattr(offsets, "prefix_mapping", None)
    if not prefixes:
        pytest.skip("this pandas has no prefix_mapping")
    for alias, cls in prefixes.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            expected = frequency_key(cls())
        assert expected in LETTERS, alias
        # anchored aliases ("RE", "REQ", "WOM", "LWOM") need their anchor: the class's freqstr
        # has it, and the bare alias is either the same frequency or nothing
        assert frequency_key(alias) in (expected, None), alias


@pytest.mark.parametrize(
    "index, letter",
    [
        (pd.period_range("2020", periods=3, freq="Y"), "Y"),
        (pd.period_range("2020", periods=3, freq="Q"), "Q"),
        (pd.period_range("2020", periods=3, freq="M"), "M"),
        (pd.period_range("2020", periods=3, freq="W"), "W"),
        (pd.period_range("2020", periods=3, freq="h"), "H"),
        (pd.period_range("2020", periods=3, freq="min"), "T"),
        (pd.date_range("2020", periods=3, freq="YE"), "Y"),
        (pd.date_range("2020", periods=3, freq="WOM-1MON"), "M"),
        (pd.date_range("2020", periods=3, freq="15min"), "T"),
    ],
)
def test_index_freq_and_freqstr_agree(index, letter):
    assert frequency_key(index.freq) == letter
    assert frequency_key(index.freqstr) == letter


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=12))
def test_arbitrary_text_never_raises(text):
    assert frequency_key(text) in LETTERS | {None}


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from(sorted({**CURRENT, **LEGACY}.items())),
    st.integers(min_value=1, max_value=10_000),
)
def test_any_multiple_keeps_the_letter(item, multiple):
    alias, letter = item
    assert frequency_key(f"{multiple}{alias}") == letter
