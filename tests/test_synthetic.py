"""Tests of the synthetic pre-training corpus."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from tools.pretrain.synthetic import (
    FREQUENCIES,
    SHAPE_KINDS,
    _ar1_filter,
    generate_sample,
    generate_series,
    iter_training_windows,
    kernel_synth,
    seasonal_component,
    seasonal_shape,
)


@pytest.mark.parametrize("kind", SHAPE_KINDS)
@pytest.mark.parametrize("period", [7, 12, 24, 96, 144, 168])
def test_seasonal_shape_is_standardised_and_not_a_sinusoid(kind: str, period: int) -> None:
    shape = seasonal_shape(np.random.default_rng(period), period, kind)
    assert shape.shape == (period,)
    assert np.isfinite(shape).all()
    assert abs(shape.mean()) < 1e-9
    assert shape.std() == pytest.approx(1.0)


def test_seasonal_shapes_carry_harmonics() -> None:
    """Non-sinusoidal: across shapes, a good share of the energy lies beyond the fundamental."""
    rng = np.random.default_rng(0)
    beyond = []
    for kind in ("bumps", "square", "spiky", "sawtooth", "blocks"):
        for _ in range(10):
            power = np.abs(np.fft.rfft(seasonal_shape(rng, 96, kind))) ** 2
            beyond.append(power[2:].sum() / power[1:].sum())
    assert np.median(beyond) > 0.1


@pytest.mark.parametrize("freq", sorted(FREQUENCIES))
def test_seasonal_component_periods_are_exact(freq: str) -> None:
    periods = FREQUENCIES[freq]
    lcm = math.lcm(*periods)
    rng = np.random.default_rng(1)
    for _ in range(5):
        x = seasonal_component(rng, 3 * lcm, periods, amplitude_drift=0.0)
        np.testing.assert_allclose(x[lcm:], x[:-lcm], rtol=0, atol=1e-12)
        for p in periods:  # each period is present: the series is not periodic at p - 1 or p + 1
            assert not np.allclose(x[p + 1 :], x[: -(p + 1)])


def test_seasonal_component_single_period_exact_with_shape_repeated() -> None:
    x = seasonal_component(np.random.default_rng(2), 24 * 30, (24,), amplitude_drift=0.0)
    cycles = x.reshape(30, 24)
    np.testing.assert_allclose(cycles, np.broadcast_to(cycles[0], cycles.shape), atol=1e-12)


def test_amplitude_drift_is_small_and_keeps_phase() -> None:
    x = seasonal_component(np.random.default_rng(3), 24 * 40, (24,), amplitude_drift=0.1)
    cycles = x.reshape(40, 24)
    # Same shape every cycle up to a positive factor in [0.9, 1.1] (the drift).
    ratio = cycles / cycles[0]
    finite = np.abs(cycles[0]) > 1e-3
    assert np.all(ratio[:, finite] > 0.8) and np.all(ratio[:, finite] < 1.25)


@pytest.mark.parametrize("length", [16, 200, 608, 2048, 4096])
def test_generate_series_shape_and_finite(length: int) -> None:
    rng = np.random.default_rng(length)
    for _ in range(30):
        y = generate_series(rng, length)
        assert y.shape == (length,)
        assert y.dtype == np.float64
        assert np.isfinite(y).all()


def test_generate_series_is_deterministic_from_seed() -> None:
    a = [generate_series(np.random.default_rng(42), 700) for _ in range(3)]
    b = [generate_series(np.random.default_rng(42), 700) for _ in range(3)]
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)
    stream_a = [
        s.values for s in itertools.islice(iter_training_windows(np.random.default_rng(7)), 20)
    ]
    stream_b = [
        s.values for s in itertools.islice(iter_training_windows(np.random.default_rng(7)), 20)
    ]
    for x, y in zip(stream_a, stream_b, strict=True):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(generate_series(np.random.default_rng(1), 700), a[0])


def test_corpus_has_variety() -> None:
    samples = list(itertools.islice(iter_training_windows(np.random.default_rng(0)), 400))
    kinds = {s.kind for s in samples}
    freqs = {s.freq for s in samples}
    modes = {s.description["value_mode"] for s in samples}
    assert kinds == {"kernel_synth", "parametric", "mixed"}
    assert freqs == set(FREQUENCIES)
    assert modes == {"real", "positive", "lognormal", "count"}
    lengths = np.array([len(s.values) for s in samples])
    assert lengths.min() < 400 and lengths.max() > 2048 and np.mean(lengths == 608) > 0.3
    scales = np.array([np.abs(s.values).max() for s in samples])
    assert np.log10(scales.max() / max(scales.min(), 1e-12)) > 4  # orders of magnitude apart
    assert sum(len(s.periods) >= 2 for s in samples) > 20  # several seasonalities at once
    counts = [s.values for s in samples if s.description["value_mode"] == "count"]
    assert all(np.array_equal(c, np.round(c)) and c.min() >= 0 for c in counts)


def test_periods_only_when_several_cycles_fit() -> None:
    rng = np.random.default_rng(5)
    for _ in range(50):
        s = generate_sample(rng, 600, "15min")
        assert set(s.periods) <= {96}  # 672 does not fit twice into 600 steps


def test_kernel_synth_periodic_atom_has_exact_period() -> None:
    rng = np.random.default_rng(11)
    found = 0
    for _ in range(200):
        x, formula = kernel_synth(rng, 24 * 20, (24,), max_kernels=1)
        if formula.startswith("Periodic"):
            found += 1
            np.testing.assert_allclose(x[24:], x[:-24], atol=1e-9)
    assert found > 10


def test_invalid_arguments_raise() -> None:
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="length"):
        generate_series(rng, 8)
    with pytest.raises(ValueError, match="freq"):
        generate_series(rng, 100, freq="5s")
    with pytest.raises(ValueError, match="shape kind"):
        seasonal_shape(rng, 24, "triangle")


@pytest.mark.parametrize("phi", [0.3, 0.95])
@pytest.mark.parametrize("length", [1, 63, 64, 200])
def test_ar1_filter_matches_the_recursion(phi: float, length: int) -> None:
    e = np.random.default_rng(0).standard_normal(length)
    expected = np.empty(length)
    prev = 0.0
    for t in range(length):
        prev = phi * prev + e[t]
        expected[t] = prev
    np.testing.assert_allclose(_ar1_filter(e, phi), expected, rtol=1e-12, atol=1e-12)


# ------------------------------------------------------------------------------- corpus v2
def test_corpus_v2_covers_short_low_frequency_and_new_families() -> None:
    from tools.pretrain.synthetic import FAMILIES_V2, FREQUENCIES_V2

    stream = iter_training_windows(
        np.random.default_rng(0), min_length=48, typical_prob=0.3, corpus="v2"
    )
    samples = list(itertools.islice(stream, 600))
    assert {s.kind for s in samples} == set(FAMILIES_V2)
    assert {s.freq for s in samples} == set(FREQUENCIES_V2)
    lengths = np.array([len(s.values) for s in samples])
    assert lengths.min() >= 48 and np.mean(lengths < 200) > 0.2  # short windows are common
    assert all(np.isfinite(s.values).all() for s in samples)
    intermittent = [s.values for s in samples if s.kind == "intermittent"]
    assert intermittent and all(np.mean(x == 0) > 0.0 and x.min() >= 0 for x in intermittent)
    assert all(np.array_equal(x, np.round(x)) for x in intermittent)
    walks = [s for s in samples if s.kind == "random_walk"]
    assert any(s.description["log"] for s in walks) and any(not s.description["log"] for s in walks)
    for s in samples:  # seasonal periods are the rate's and fit at least twice
        assert set(s.periods) <= set(FREQUENCIES_V2[s.freq])
        assert all(len(s.values) >= 2 * p for p in s.periods)


def test_corpus_v2_is_deterministic_and_leaves_v1_unchanged() -> None:
    from tools.pretrain.synthetic import generate_sample_v2

    a = generate_sample_v2(np.random.default_rng(3), 150, "Q").values
    b = generate_sample_v2(np.random.default_rng(3), 150, "Q").values
    np.testing.assert_array_equal(a, b)
    v1 = [s.values for s in itertools.islice(iter_training_windows(np.random.default_rng(7)), 5)]
    explicit = iter_training_windows(np.random.default_rng(7), corpus="v1")
    for x, s in zip(v1, itertools.islice(explicit, 5), strict=True):
        np.testing.assert_array_equal(x, s.values)
    with pytest.raises(ValueError, match="corpus must be one of"):
        next(iter_training_windows(np.random.default_rng(0), corpus="v3"))
    with pytest.raises(ValueError, match="unknown freq"):
        generate_sample_v2(np.random.default_rng(0), 100, "fortnightly")
