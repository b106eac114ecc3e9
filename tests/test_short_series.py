"""Zero-shot with default settings on short real series shipped with sktime and statsmodels.

Issue 16's acceptance: on series nobody tuned on (none of them appears elsewhere in the docs or
tests), the bundled backbone's zero-shot forecast beats the better of the last value and the
seasonal naive forecast in geometric mean of relative MAE.  The table printed here (run with
``-s``) gives every series' numbers and the patch size each fit chose.
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from msft_forecast import MSFTForecaster
from msft_forecast.benchmarks.short_series import (
    SHORT_SERIES,
    evaluate,
    geometric_mean_relative,
    load_short_series,
    origins,
    table,
)


@given(
    length=st.integers(60, 2000),
    horizon=st.integers(1, 24),
    windows=st.integers(1, 6),
)
def test_validation_targets_end_before_the_first_test_origin(length, horizon, windows):
    test = origins(length, horizon, windows, "test")
    validation = origins(length, horizon, windows, "validation")
    assert len(test) == len(validation) == windows
    assert test[-1] + horizon == length  # the last test window ends with the series
    assert max(validation) + horizon <= min(test)
    assert all(b - a == max(1, horizon // 2) for a, b in zip(test, test[1:], strict=False))


def test_the_series_load_offline_with_their_calendars():
    series = load_short_series()
    assert [s.name for s in series] == list(SHORT_SERIES)
    for s in series:
        assert 100 <= len(s.y) <= 1000, s.name
        assert s.y.notna().all(), s.name
        assert ("(int)" in s.name) == (not hasattr(s.y.index, "freq")), s.name


def test_zero_shot_beats_the_naive_forecasts_on_short_packaged_series():
    scores = evaluate(
        load_short_series(),
        lambda: MSFTForecaster(backbone="moirai-tiny", fit_strategy="zero-shot"),
        windows=5,
        split="test",
    )
    print("\n" + table(scores))
    for s in scores:
        print(s.name, "|", " | ".join(s.choices))
        assert any(c.startswith("patch size") for c in s.choices)
    assert geometric_mean_relative(scores) < 1.0
