"""split_windows: full training windows for long series, left padding only for short ones."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from msft_forecast.training.windows import split_windows, validation_length


def _series(n: int, offset: float = 0.0) -> np.ndarray:
    return np.arange(n, dtype=np.float64) + offset


def _origins(dataset) -> list[tuple[int, int]]:
    return [dataset.origin(i) for i in range(len(dataset))]


def _available(dataset) -> list[int]:
    return [int(dataset[i]["available"]) for i in range(len(dataset))]


def test_long_series_trains_on_full_windows_only():
    c, h = 64, 8
    split = split_windows([_series(1000)], c, h, validation=100)
    train_end = 900
    assert split.train[0]["available"] == c
    assert set(_available(split.train)) == {c}
    origins = [t for _, t in _origins(split.train)]
    assert origins == list(range(c, train_end - h + 1))
    assert all(bool(split.train[i]["context_observed"].all()) for i in range(len(split.train)))


def test_short_series_keeps_left_padded_windows():
    c, h = 64, 8
    # 70 steps before validation: 70 - 8 - 64 + 1 = -1 full windows < H -> padded windows
    split = split_windows([_series(80)], c, h, validation=10)
    origins = [t for _, t in _origins(split.train)]
    assert origins == list(range(min(c, h), 70 - h + 1))
    available = _available(split.train)
    assert min(available) == min(c, h) and max(available) < c
    first = split.train[0]
    assert not bool(first["context_observed"][: c - h].any())  # left padding


def test_threshold_is_h_full_windows():
    c, h = 32, 4
    # train_end - H - C + 1 = H exactly: full windows only
    n = c + 2 * h - 1
    split = split_windows([_series(n)], c, h, validation=None)
    assert len(split.train) == h
    assert set(_available(split.train)) == {c}
    # one step shorter: H - 1 full windows, so the padded ones are kept as well
    split = split_windows([_series(n - 1)], c, h, validation=None)
    assert min(_available(split.train)) == min(c, h)
    assert len(split.train) == n - 1 - h - min(c, h) + 1


def test_panel_with_a_long_and_a_short_series():
    c, h = 48, 6
    long, short = _series(500), _series(55, 1000.0)  # 2 full windows < H
    split = split_windows([long, short], c, h, validation=None)
    by_series: dict[int, list[int]] = {0: [], 1: []}
    for i in range(len(split.train)):
        series, _ = split.train.origin(i)
        by_series[series].append(int(split.train[i]["available"]))
    assert set(by_series[0]) == {c}
    assert len(by_series[0]) == 500 - h - c + 1
    assert min(by_series[1]) == min(c, h)
    assert len(by_series[1]) == 55 - h - min(c, h) + 1


def test_explicit_min_context_overrides_for_every_series():
    c, h = 64, 8
    split = split_windows([_series(1000)], c, h, validation=None, min_context=10)
    assert min(_available(split.train)) == 10
    assert _origins(split.train)[0] == (0, 10)


def test_too_short_for_one_window_message():
    c, h = 64, 8
    with pytest.raises(ValueError, match=r"at least 16 observations \(context of 8 \+ horizon"):
        split_windows([_series(15)], c, h, validation=None)
    split_windows([_series(16)], c, h, validation=None)  # exactly one padded window


def test_validation_windows_unchanged():
    c, h = 64, 8
    split = split_windows([_series(1000)], c, h, validation=100)
    origins = [t for _, t in _origins(split.validation)]
    assert origins[0] == 900 and origins[-1] <= 1000 - h


@settings(max_examples=200, deadline=None)
@given(
    lengths=st.lists(st.integers(min_value=1, max_value=400), min_size=1, max_size=4),
    c=st.integers(min_value=1, max_value=128),
    h=st.integers(min_value=1, max_value=48),
    validation=st.one_of(
        st.none(),
        st.integers(min_value=0, max_value=120),
        st.floats(min_value=0.01, max_value=0.5),
    ),
)
def test_training_never_sees_validation_and_full_series_have_no_padding(lengths, c, h, validation):
    series = [_series(n, 1000.0 * i) for i, n in enumerate(lengths)]
    try:
        split = split_windows(series, c, h, validation=validation)
    except ValueError as err:
        # only when no series has a single (padded) window before its validation tail
        assert "No series is long enough" in str(err)
        for n in lengths:
            assert n - validation_length(n, validation, h) < min(c, h) + h
        return
    train_ends = [n - validation_length(n, validation, h) for n in lengths]
    full = [end - h - c + 1 >= h for end in train_ends]
    for i in range(len(split.train)):
        s, t = split.train.origin(i)
        assert t + h <= train_ends[s]  # the horizon ends before the validation tail
        if full[s]:
            assert t >= c and int(split.train[i]["available"]) == c  # no left padding
        else:
            assert t >= min(c, h)
    # every series gets all the windows its rule allows
    counts = [0] * len(lengths)
    for s, _ in _origins(split.train):
        counts[s] += 1
    for s, end in enumerate(train_ends):
        first = c if full[s] else min(c, h)
        assert counts[s] == max(0, end - h - first + 1)
    if split.validation is not None:
        for i in range(len(split.validation)):
            s, t = split.validation.origin(i)
            assert t >= train_ends[s] and t + h <= lengths[s]
