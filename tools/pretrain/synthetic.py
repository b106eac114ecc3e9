"""Synthetic pre-training corpus: seeded, vectorised generators of univariate time series.

Two families are mixed:

* **KernelSynth-style Gaussian processes.**  A random composition (sums and products) of one to
  five kernels drawn from a bank (linear, RBF, periodic, rational quadratic, constant, white
  noise), as in Chronos' KernelSynth.  Each atom is sampled on its own small grid by Cholesky and
  interpolated: smooth stationary atoms on a fixed grid over normalised time ``[0, 1]`` (the
  factorisation is cached, so a sample costs one triangular mat-vec), periodic atoms on one cycle
  of an exact integer period, then tiled.  A sum of independent atom samples is an exact sample
  of the sum kernel; a product of independent zero-mean samples has exactly the product kernel
  as covariance (but is not Gaussian, which adds variety).
* **Parametric series.**  Trend (linear, exponential, piecewise linear, smooth random walk) plus
  one or several seasonal components with **exact integer periods** of common sampling rates
  (24 and 168 hourly, 96 and 672 at 15 min, 144 and 1008 at 10 min, 7 daily, 52 weekly,
  12 monthly) and **non-sinusoidal** cycle shapes (load profiles built from smooth bumps,
  square-ish, spiky, sawtooth, few harmonics, day blocks), repeated exactly cycle to cycle with a
  small slow amplitude drift; noise (Gaussian, Student-t, AR(1)); level shifts; spikes.

Every series is finally mapped to a random scale and offset spanning orders of magnitude, and
sometimes made positive or integer valued (counts), so that the scale-free model and all mixture
components (Student-t, near-deterministic Normal, negative binomial, log-normal) see their kind
of data.

Corpus ``"v2"`` (:func:`generate_sample_v2`, the bundled backbone's second pre-training) keeps
all of the above and widens it toward what short real series look like: quarterly, yearly and
unlabelled (integer-indexed) sampling rates, windows from 48 steps; **random walks** with
drift and momentum, in levels or in logs (multiplicative seasonality, growth); **intermittent**
counts (many zeros); **regime changes** (the generating process switches at a random time);
heavy-tailed innovations; and **TSMixup** (convex mixtures of two or three series, as in
Chronos).  Corpus ``"v1"`` is unchanged, so the first bundled backbone stays reproducible.

All randomness flows from one :class:`numpy.random.Generator`: the same generator state gives the
same series, bit for bit.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

__all__ = [
    "CORPORA",
    "FREQUENCIES",
    "FREQUENCIES_V2",
    "SyntheticSeries",
    "corpus_description",
    "generate_sample",
    "generate_sample_v2",
    "generate_series",
    "iter_training_windows",
    "kernel_synth",
    "sample_frequency",
    "seasonal_component",
    "seasonal_shape",
]

#: Exact integer seasonal periods (in steps) of each simulated sampling rate.
FREQUENCIES: dict[str, tuple[int, ...]] = {
    "h": (24, 168),  # hourly: day, week
    "15min": (96, 672),  # quarter-hourly: day, week
    "10min": (144, 1008),  # 10-minutely: day, week
    "D": (7,),  # daily: week
    "W": (52,),  # weekly: year
    "M": (12,),  # monthly: year
}

#: Relative frequency with which each sampling rate is simulated (sub-daily data dominates the
#: long-horizon benchmarks, so it is drawn most often).
FREQUENCY_WEIGHTS: dict[str, float] = {
    "h": 0.30,
    "15min": 0.22,
    "10min": 0.22,
    "D": 0.12,
    "W": 0.07,
    "M": 0.07,
}

#: Corpus v2's sampling rates: v1's, plus quarterly, yearly and unlabelled ("int": an integer
#: index whose series may still have a cycle of a few steps).
FREQUENCIES_V2: dict[str, tuple[int, ...]] = {
    **FREQUENCIES,
    "Q": (4,),
    "Y": (),
    "int": (4, 5, 7, 10, 12, 24),
}

#: Corpus v2's weights: short, low-frequency data as often as the sub-daily rates.
FREQUENCY_WEIGHTS_V2: dict[str, float] = {
    "h": 0.16,
    "15min": 0.10,
    "10min": 0.08,
    "D": 0.14,
    "W": 0.10,
    "M": 0.14,
    "Q": 0.10,
    "Y": 0.08,
    "int": 0.10,
}

#: Corpus v2's families and their probabilities.
FAMILIES_V2: dict[str, float] = {
    "kernel_synth": 0.18,
    "parametric": 0.30,
    "mixed": 0.10,
    "random_walk": 0.20,
    "intermittent": 0.07,
    "regime": 0.07,
    "tsmixup": 0.08,
}

CORPORA: tuple[str, ...] = ("v1", "v2")

SHAPE_KINDS: tuple[str, ...] = ("bumps", "square", "spiky", "sawtooth", "harmonics", "blocks")

_MIN_CYCLES = 2  # a seasonal component is used only if the series holds this many cycles


@dataclass(frozen=True)
class SyntheticSeries:
    """One generated series with the facts used to build it.

    Attributes
    ----------
    values : numpy.ndarray
        The series, shape ``(length,)``, ``float64``, all finite.
    freq : str
        Simulated sampling rate, a key of :data:`FREQUENCIES`.
    periods : tuple of int
        Seasonal periods (steps) present in the series (may be empty).
    kind : str
        ``"kernel_synth"``, ``"parametric"`` or ``"mixed"``.
    description : dict
        Human-readable summary of the random choices (for debugging and records).
    """

    values: np.ndarray
    freq: str
    periods: tuple[int, ...]
    kind: str
    description: dict[str, object] = field(default_factory=dict)


def sample_frequency(rng: np.random.Generator) -> str:
    """Draw a simulated sampling rate according to :data:`FREQUENCY_WEIGHTS`.

    Parameters
    ----------
    rng : numpy.random.Generator
        Source of randomness.

    Returns
    -------
    str
        A key of :data:`FREQUENCIES`.
    """
    return _draw(rng, FREQUENCY_WEIGHTS)


def _draw(rng: np.random.Generator, weights: dict[str, float]) -> str:
    """One key of ``weights``, drawn with probability proportional to its weight."""
    names = list(weights)
    p = np.array([weights[n] for n in names])
    return names[int(rng.choice(len(names), p=p / p.sum()))]


def _usable_periods(
    freq: str, length: int, table: dict[str, tuple[int, ...]] = FREQUENCIES
) -> tuple[int, ...]:
    return tuple(p for p in table[freq] if length >= _MIN_CYCLES * p)


# --------------------------------------------------------------------------------------------
# Seasonal shapes (exactly periodic)
# --------------------------------------------------------------------------------------------


def _wrapped_distance(phase: np.ndarray, centres: np.ndarray) -> np.ndarray:
    d = np.abs(phase[None, :] - centres[:, None])
    return np.minimum(d, 1.0 - d)


def seasonal_shape(rng: np.random.Generator, period: int, kind: str | None = None) -> np.ndarray:
    """Draw one cycle of a non-sinusoidal seasonal pattern.

    Parameters
    ----------
    rng : numpy.random.Generator
        Source of randomness.
    period : int
        Cycle length in steps (an exact integer).
    kind : str, optional
        One of :data:`SHAPE_KINDS`; drawn at random when omitted.

        * ``"bumps"`` -- sum of 1 to 5 smooth wrapped Gaussian bumps (load-profile-like).
        * ``"square"`` -- square-ish wave with random duty cycle and soft edges.
        * ``"spiky"`` -- one to three narrow peaks over a flat base.
        * ``"sawtooth"`` -- slow ramp and a sharp drop (or the reverse).
        * ``"harmonics"`` -- a few harmonics with decaying random amplitudes.
        * ``"blocks"`` -- piecewise-constant levels (e.g. one per weekday, weekend dip).

    Returns
    -------
    numpy.ndarray
        Shape ``(period,)``, zero mean and unit standard deviation.
    """
    if kind is None:
        kind = SHAPE_KINDS[int(rng.integers(len(SHAPE_KINDS)))]
    phase = np.arange(period) / period
    if kind == "bumps":
        n = int(rng.integers(1, 6))
        centres = rng.uniform(0.0, 1.0, n)
        widths = rng.uniform(0.02, 0.15, n)
        heights = rng.uniform(0.3, 1.0, n) * rng.choice([-1.0, 1.0], n, p=[0.2, 0.8])
        d = _wrapped_distance(phase, centres)
        shape = (heights[:, None] * np.exp(-0.5 * (d / widths[:, None]) ** 2)).sum(axis=0)
    elif kind == "square":
        duty = rng.uniform(0.2, 0.7)
        start = rng.uniform(0.0, 1.0)
        sharp = rng.uniform(20.0, 200.0)  # edge steepness, in units of 1 / cycle
        rel = (phase - start) % 1.0
        shape = 1.0 / ((1.0 + np.exp(-sharp * rel)) * (1.0 + np.exp(-sharp * (duty - rel))))
    elif kind == "spiky":
        n = int(rng.integers(1, 4))
        centres = rng.uniform(0.0, 1.0, n)
        widths = np.maximum(rng.uniform(0.005, 0.03, n), 0.6 / period)
        heights = rng.uniform(0.5, 1.0, n)
        d = _wrapped_distance(phase, centres)
        shape = (heights[:, None] * np.exp(-0.5 * (d / widths[:, None]) ** 2)).sum(axis=0)
    elif kind == "sawtooth":
        start = rng.uniform(0.0, 1.0)
        power = rng.uniform(0.5, 2.5)
        shape = ((phase - start) % 1.0) ** power
        if rng.random() < 0.5:
            shape = shape[::-1].copy()
    elif kind == "harmonics":
        n = int(rng.integers(2, 6))
        k = np.arange(1, n + 1)
        amps = rng.normal(size=n) / k ** rng.uniform(0.5, 1.5)
        phases = rng.uniform(0.0, 2 * np.pi, n)
        shape = (
            amps[:, None] * np.sin(2 * np.pi * k[:, None] * phase[None, :] + phases[:, None])
        ).sum(0)
    elif kind == "blocks":
        n_blocks = 7 if period % 7 == 0 and rng.random() < 0.7 else int(rng.integers(2, 9))
        levels = rng.normal(size=n_blocks)
        if n_blocks == 7 and rng.random() < 0.6:  # two "weekend" days lower
            weekend = int(rng.integers(7))
            levels[[weekend, (weekend + 1) % 7]] -= rng.uniform(1.0, 3.0)
        idx = np.minimum((phase * n_blocks).astype(np.int64), n_blocks - 1)
        shape = levels[idx]
        width = max(1, int(round(period * rng.uniform(0.0, 0.03))))
        if width > 1:  # soften block edges with a circular moving average
            kernel = np.ones(width) / width
            padded = np.concatenate([shape[-width:], shape, shape[:width]])
            shape = np.convolve(padded, kernel, mode="same")[width:-width]
    else:
        raise ValueError(f"unknown seasonal shape kind {kind!r}; expected one of {SHAPE_KINDS}")
    shape = shape - shape.mean()
    std = shape.std()
    if std < 1e-12:  # degenerate draw (e.g. full-duty square): fall back to harmonics
        return seasonal_shape(rng, period, "harmonics")
    return shape / std


def seasonal_component(
    rng: np.random.Generator,
    length: int,
    periods: tuple[int, ...],
    *,
    amplitude_drift: float | None = None,
) -> np.ndarray:
    """Sum or product of exactly periodic cycles, one per period.

    Each cycle shape is drawn by :func:`seasonal_shape` once and repeated exactly; a random phase
    offset is applied.  Components combine additively, or (for a longer period, half of the time)
    as a multiplicative envelope of the shorter cycle (e.g. weekday level x daily profile).  The
    result is multiplied by a slow amplitude drift ``1 + a * s(t)`` with ``|s| <= 1``.

    Parameters
    ----------
    rng : numpy.random.Generator
        Source of randomness.
    length : int
        Number of steps.
    periods : tuple of int
        Exact integer periods; an empty tuple gives zeros.
    amplitude_drift : float, optional
        Drift magnitude ``a``; drawn from ``U(0, 0.2)`` when omitted.  With ``0.0`` the output is
        exactly periodic with period ``lcm(periods)``.

    Returns
    -------
    numpy.ndarray
        Shape ``(length,)``.
    """
    out = np.zeros(length)
    if not periods:
        return out
    t = np.arange(length)
    for i, period in enumerate(sorted(periods)):
        cycle = seasonal_shape(rng, period)
        offset = int(rng.integers(period))
        wave = cycle[(t + offset) % period]
        amp = rng.uniform(0.4, 1.0) if i else 1.0
        if i and rng.random() < 0.5:
            envelope = 1.0 + amp * 0.5 * wave / max(np.abs(wave).max(), 1e-12)
            out = out * envelope + 0.3 * amp * wave
        else:
            out = out + amp * wave
    if amplitude_drift is None:
        amplitude_drift = rng.uniform(0.0, 0.2)
    if amplitude_drift > 0.0:
        u = t / max(length - 1, 1)
        if rng.random() < 0.5:
            slow = 2.0 * u - 1.0
        else:
            slow = np.sin(2 * np.pi * (rng.uniform(0.3, 1.5) * u + rng.uniform()))
        out = out * (1.0 + amplitude_drift * slow)
    return out


# --------------------------------------------------------------------------------------------
# KernelSynth-style Gaussian processes
# --------------------------------------------------------------------------------------------

_RBF_LENGTHSCALES = (0.02, 0.05, 0.1, 0.3, 1.0)  # in normalised time [0, 1]
_RQ_PARAMS = ((0.05, 0.1), (0.1, 1.0), (0.3, 10.0), (0.02, 1.0))  # (lengthscale, alpha)
_PERIODIC_LENGTHSCALES = (0.5, 1.0, 2.0)
_PERIODIC_GRID = 96  # points per cycle for the periodic Cholesky grid
_JITTER = 1e-6


def _grid_size(lengthscale: float) -> int:
    return int(min(256, max(16, np.ceil(4.0 / lengthscale))))


@functools.lru_cache(maxsize=64)
def _stationary_factor(kind: str, lengthscale: float, alpha: float) -> np.ndarray:
    m = _grid_size(lengthscale)
    x = np.linspace(0.0, 1.0, m)
    d2 = (x[:, None] - x[None, :]) ** 2
    if kind == "rbf":
        k = np.exp(-0.5 * d2 / lengthscale**2)
    else:  # rational quadratic
        k = (1.0 + d2 / (2.0 * alpha * lengthscale**2)) ** (-alpha)
    factor = np.linalg.cholesky(k + _JITTER * np.eye(m))
    factor.setflags(write=False)
    return factor


@functools.lru_cache(maxsize=64)
def _periodic_factor(grid: int, lengthscale: float) -> np.ndarray:
    x = np.arange(grid) / grid
    s = np.sin(np.pi * (x[:, None] - x[None, :]))
    k = np.exp(-2.0 * s**2 / lengthscale**2)
    factor = np.linalg.cholesky(k + _JITTER * np.eye(grid))
    factor.setflags(write=False)
    return factor


def _sample_stationary(rng: np.random.Generator, length: int, kind: str) -> tuple[np.ndarray, str]:
    if kind == "rbf":
        ell = _RBF_LENGTHSCALES[int(rng.integers(len(_RBF_LENGTHSCALES)))]
        alpha = 0.0
        name = f"RBF(l={ell})"
    else:
        ell, alpha = _RQ_PARAMS[int(rng.integers(len(_RQ_PARAMS)))]
        name = f"RQ(l={ell},a={alpha})"
    factor = _stationary_factor(kind, ell, alpha)
    grid_values = factor @ rng.standard_normal(factor.shape[0])
    x_grid = np.linspace(0.0, 1.0, factor.shape[0])
    return np.interp(np.linspace(0.0, 1.0, length), x_grid, grid_values), name


def _sample_periodic(rng: np.random.Generator, length: int, period: int) -> tuple[np.ndarray, str]:
    ell = _PERIODIC_LENGTHSCALES[int(rng.integers(len(_PERIODIC_LENGTHSCALES)))]
    grid = min(period, _PERIODIC_GRID)
    factor = _periodic_factor(grid, ell)
    g = factor @ rng.standard_normal(grid)
    # Periodic linear interpolation of the circular grid onto the ``period`` integer phases.
    pos = np.arange(period) * (grid / period)
    lo = np.floor(pos).astype(np.int64)
    w = pos - lo
    cycle = (1.0 - w) * g[lo % grid] + w * g[(lo + 1) % grid]
    offset = int(rng.integers(period))
    return cycle[(np.arange(length) + offset) % period], f"Periodic(p={period},l={ell})"


def _sample_atom(
    rng: np.random.Generator, length: int, periods: tuple[int, ...]
) -> tuple[np.ndarray, str]:
    kinds = ["linear", "rbf", "rq", "constant", "white"]
    weights = [0.15, 0.2, 0.15, 0.1, 0.1]
    if periods:
        kinds.append("periodic")
        weights.append(0.3)
    w = np.array(weights)
    kind = kinds[int(rng.choice(len(kinds), p=w / w.sum()))]
    if kind == "linear":
        t = np.linspace(0.0, 1.0, length)
        c = rng.uniform(0.0, 1.0)
        sigma = rng.choice([0.0, 0.1, 1.0])
        return sigma * rng.standard_normal() + rng.standard_normal() * (t - c), f"Linear(c={c:.2f})"
    if kind in ("rbf", "rq"):
        return _sample_stationary(rng, length, kind)
    if kind == "constant":
        return np.full(length, rng.standard_normal()), "Constant"
    if kind == "white":
        sigma = float(rng.choice([0.1, 0.3, 1.0]))
        return sigma * rng.standard_normal(length), f"White({sigma})"
    return _sample_periodic(rng, length, periods[int(rng.integers(len(periods)))])


def kernel_synth(
    rng: np.random.Generator, length: int, periods: tuple[int, ...] = (), max_kernels: int = 5
) -> tuple[np.ndarray, str]:
    """Draw a series from a random composition of GP kernels (KernelSynth-style).

    Parameters
    ----------
    rng : numpy.random.Generator
        Source of randomness.
    length : int
        Number of steps.
    periods : tuple of int, optional
        Exact integer periods available to the periodic kernel atoms.
    max_kernels : int, optional
        Largest number of kernel atoms combined (at least one is drawn).

    Returns
    -------
    values : numpy.ndarray
        Shape ``(length,)``, standardised to zero mean and unit variance (unless constant).
    formula : str
        The composition, e.g. ``"((Periodic(p=24,l=1.0) * RBF(l=0.3)) + White(0.1))"``.
    """
    n_atoms = int(rng.integers(1, max_kernels + 1))
    values, formula = _sample_atom(rng, length, periods)
    for _ in range(n_atoms - 1):
        atom, name = _sample_atom(rng, length, periods)
        if rng.random() < 0.5:
            values, formula = values + atom, f"({formula} + {name})"
        else:
            values, formula = values * atom, f"({formula} * {name})"
    return _standardise(values), formula


# --------------------------------------------------------------------------------------------
# Parametric pieces
# --------------------------------------------------------------------------------------------


def _standardise(x: np.ndarray) -> np.ndarray:
    std = x.std()
    return (x - x.mean()) / std if std > 1e-12 else x - x.mean()


def _trend(rng: np.random.Generator, length: int) -> tuple[np.ndarray, str]:
    u = np.linspace(0.0, 1.0, length)
    kind = ["none", "linear", "exponential", "piecewise", "random_walk"][
        int(rng.choice(5, p=[0.2, 0.3, 0.15, 0.2, 0.15]))
    ]
    if kind == "none":
        return np.zeros(length), kind
    if kind == "linear":
        return rng.normal(0.0, 1.0) * u, kind
    if kind == "exponential":
        rate = rng.uniform(-3.0, 3.0)
        curve = np.expm1(rate * u) / np.expm1(rate) if abs(rate) > 1e-3 else u
        return rng.normal(0.0, 1.0) * curve, kind
    if kind == "piecewise":
        n_knots = int(rng.integers(1, 5))
        knots = np.sort(rng.uniform(0.05, 0.95, n_knots))
        slopes = rng.normal(0.0, 1.5, n_knots + 1)
        xs = np.concatenate([[0.0], knots, [1.0]])
        ys = np.concatenate([[0.0], np.cumsum(slopes * np.diff(xs))])
        return np.interp(u, xs, ys), kind
    steps = rng.standard_normal(length)
    width = max(1, length // int(rng.integers(10, 60)))
    smooth = np.convolve(np.cumsum(steps), np.ones(width) / width, mode="same")
    return smooth / max(np.abs(smooth).max(), 1e-12) * rng.uniform(0.5, 2.0), kind


def _noise(rng: np.random.Generator, length: int) -> tuple[np.ndarray, str]:
    kind = ["gaussian", "student_t", "ar1"][int(rng.choice(3, p=[0.4, 0.3, 0.3]))]
    if kind == "gaussian":
        return rng.standard_normal(length), kind
    if kind == "student_t":
        df = rng.uniform(2.5, 8.0)
        return rng.standard_t(df, length) / np.sqrt(df / (df - 2.0)), f"student_t(df={df:.1f})"
    phi = rng.uniform(0.3, 0.95)
    innovations = rng.standard_normal(length) * np.sqrt(1.0 - phi**2)
    innovations[0] /= np.sqrt(1.0 - phi**2)  # start in the stationary distribution
    return _ar1_filter(innovations, phi), f"ar1(phi={phi:.2f})"


def _ar1_filter(innovations: np.ndarray, phi: float, block: int = 64) -> np.ndarray:
    """Return ``x`` with ``x[t] = phi * x[t - 1] + innovations[t]`` and ``x[-1] = 0``.

    Vectorised by blocks: inside a block the recursion is a triangular mat-mul, and only the
    carry between blocks is sequential (``len / block`` steps).
    """
    n = innovations.shape[0]
    n_blocks = -(-n // block)
    padded = np.zeros(n_blocks * block)
    padded[:n] = innovations
    j = np.arange(block)
    lag = j[:, None] - j[None, :]
    tri = np.where(lag >= 0, phi ** np.maximum(lag, 0), 0.0)  # tri[j, i] = phi^(j - i), i <= j
    local = padded.reshape(n_blocks, block) @ tri.T
    decay = phi ** (j + 1)
    out = np.empty_like(local)
    carry = 0.0
    for b in range(n_blocks):
        out[b] = local[b] + decay * carry
        carry = out[b, -1]
    return out.reshape(-1)[:n]


def _level_shifts(rng: np.random.Generator, length: int) -> np.ndarray:
    n = int(rng.poisson(0.7)) if rng.random() < 0.3 else 0
    out = np.zeros(length)
    for pos, size in zip(rng.integers(1, length, n), rng.normal(0.0, 1.0, n), strict=True):
        out[pos:] += size
    return out


def _spikes(rng: np.random.Generator, length: int) -> np.ndarray:
    out = np.zeros(length)
    if rng.random() < 0.25:
        n = int(rng.poisson(max(1.0, length * 0.002)))
        pos = rng.integers(0, length, n)
        out[pos] = rng.choice([-1.0, 1.0], n, p=[0.3, 0.7]) * rng.uniform(3.0, 8.0, n)
    return out


def _parametric(
    rng: np.random.Generator, length: int, periods: tuple[int, ...]
) -> tuple[np.ndarray, dict[str, object]]:
    trend, trend_kind = _trend(rng, length)
    if periods and rng.random() < 0.9:
        n_use = int(rng.integers(1, len(periods) + 1))
        chosen = tuple(sorted(rng.choice(periods, n_use, replace=False).tolist()))
    else:
        chosen = ()
    seasonal = seasonal_component(rng, length, chosen)
    noise, noise_kind = _noise(rng, length)
    noise_level = float(np.exp(rng.uniform(np.log(0.02), np.log(0.6))))
    season_weight = rng.uniform(0.5, 2.0) if chosen else 0.0
    values = (
        trend * rng.uniform(0.2, 2.0)
        + season_weight * seasonal
        + noise_level * noise
        + _level_shifts(rng, length)
        + _spikes(rng, length)
    )
    if not chosen and trend_kind == "none":  # make sure there is some structure besides noise
        values = values + kernel_synth(rng, length, ())[0]
    info: dict[str, object] = {
        "trend": trend_kind,
        "periods": chosen,
        "noise": noise_kind,
        "noise_level": round(noise_level, 4),
    }
    return values, info


def _rescale(rng: np.random.Generator, x: np.ndarray) -> tuple[np.ndarray, str]:
    """Map a standardised series to a random scale/offset, possibly positive or integer."""
    x = _standardise(x)
    mode = ["real", "positive", "lognormal", "count"][int(rng.choice(4, p=[0.6, 0.2, 0.1, 0.1]))]
    scale = 10.0 ** rng.uniform(-2.0, 4.0)
    if mode == "real":
        return scale * (x + rng.normal(0.0, 3.0)), mode
    if mode == "positive":
        return scale * (x - x.min() + rng.exponential(0.5)), mode
    if mode == "lognormal":
        return scale * np.exp(rng.uniform(0.1, 0.8) * x), mode
    rate = np.exp(np.log(rng.uniform(1.0, 50.0)) + rng.uniform(0.2, 1.0) * x)
    return rng.poisson(rate).astype(np.float64), mode


# --------------------------------------------------------------------------------------------
# Corpus v2 families
# --------------------------------------------------------------------------------------------


def _innovations(rng: np.random.Generator, length: int) -> tuple[np.ndarray, str]:
    """Unit-scale innovations: Gaussian, or heavy-tailed Student-t (df 1.5-4, clipped)."""
    if rng.random() < 0.6:
        return rng.standard_normal(length), "gaussian"
    df = rng.uniform(1.5, 4.0)
    return np.clip(rng.standard_t(df, length), -20.0, 20.0), f"student_t(df={df:.1f})"


def _random_walk(
    rng: np.random.Generator, length: int, periods: tuple[int, ...]
) -> tuple[np.ndarray, dict[str, object]]:
    """A random walk with drift and momentum (ARIMA(1,1,0)-like), in levels or in logs.

    In logs, ``exp`` of the walk plus a seasonal cycle: growth with multiplicative
    seasonality, as in economic and sales series.
    """
    innovations, noise = _innovations(rng, length)
    phi = rng.uniform(0.0, 0.8) if rng.random() < 0.5 else 0.0
    steps = _ar1_filter(innovations, phi) if phi else innovations
    drift = rng.normal(0.0, 0.5) if rng.random() < 0.7 else 0.0
    walk = np.cumsum(steps + drift)
    walk = walk / max(float(walk.std()), 1e-12)
    seasonal = np.zeros(length)
    chosen: tuple[int, ...] = ()
    if periods and rng.random() < 0.6:
        chosen = (int(rng.choice(periods)),)
        seasonal = seasonal_component(rng, length, chosen)
        seasonal = seasonal / max(float(seasonal.std()), 1e-12) * rng.uniform(0.05, 0.6)
    noise_level = float(np.exp(rng.uniform(np.log(0.01), np.log(0.3))))
    values = walk + seasonal + noise_level * rng.standard_normal(length)
    log_scale = rng.random() < 0.4
    if log_scale:  # growth: exp of a walk with a spread of 0.1-1 in logs
        values = np.exp(rng.uniform(0.1, 1.0) * _standardise(values))
    info: dict[str, object] = {
        "drift": round(float(drift), 3),
        "momentum": round(float(phi), 3),
        "innovations": noise,
        "periods": chosen,
        "log": bool(log_scale),
    }
    return values, info


def _intermittent(rng: np.random.Generator, length: int, periods: tuple[int, ...]) -> np.ndarray:
    """Intermittent counts: demand occurs with a slowly varying probability, in random sizes."""
    base = rng.uniform(0.03, 0.6)
    signal = kernel_synth(rng, length, periods, max_kernels=2)[0]
    prob = np.clip(base * np.exp(rng.uniform(0.0, 1.0) * _standardise(signal)), 0.0, 0.95)
    occurs = rng.random(length) < prob
    sizes = 1.0 + rng.poisson(rng.uniform(0.0, 8.0), length)
    return np.where(occurs, sizes, 0.0)


def _regime(
    rng: np.random.Generator, length: int, periods: tuple[int, ...]
) -> tuple[np.ndarray, dict[str, object]]:
    """Two processes joined at a random time; the second starts where the first ended or jumps."""
    first, _ = _parametric(rng, length, periods)
    second, _ = (
        _random_walk(rng, length, periods)
        if rng.random() < 0.5
        else _parametric(rng, length, periods)
    )
    first, second = _standardise(first), _standardise(second) * rng.uniform(0.3, 2.0)
    switch = int(rng.uniform(0.3, 0.85) * length)
    jump = 0.0 if rng.random() < 0.5 else rng.normal(0.0, 1.5)
    second = second - second[switch] + first[switch - 1] + jump
    return np.concatenate([first[:switch], second[switch:]]), {"switch": switch}


def _v1_family(
    rng: np.random.Generator, kind: str, length: int, periods: tuple[int, ...]
) -> tuple[np.ndarray, dict[str, object], tuple[int, ...]]:
    """Values, description and present periods of corpus v1's families (before rescaling):
    ``"kernel_synth"``, ``"parametric"`` or their sum, ``"mixed"``."""
    if kind == "kernel_synth":
        values, formula = kernel_synth(rng, length, periods)
        return values, {"kernel": formula}, tuple(p for p in periods if f"p={p}," in formula)
    values, info = _parametric(rng, length, periods)
    present = tuple(info["periods"])  # type: ignore[arg-type]
    if kind == "mixed":
        gp, formula = kernel_synth(rng, length, periods, max_kernels=3)
        values = _standardise(values) + rng.uniform(0.2, 0.7) * gp
        info["kernel"] = formula
        present = tuple(sorted(set(present) | {p for p in periods if f"p={p}," in formula}))
    return values, info, present


def sample_frequency_v2(rng: np.random.Generator) -> str:
    """Draw a corpus-v2 sampling rate according to :data:`FREQUENCY_WEIGHTS_V2`."""
    return _draw(rng, FREQUENCY_WEIGHTS_V2)


def generate_sample_v2(
    rng: np.random.Generator, length: int, freq: str | None = None
) -> SyntheticSeries:
    """Generate one corpus-v2 series (see the module docstring) with its description.

    Parameters
    ----------
    rng : numpy.random.Generator
        Source of randomness; the result depends only on its state.
    length : int
        Number of steps (at least 16).
    freq : str, optional
        Simulated sampling rate (a key of :data:`FREQUENCIES_V2`); drawn when omitted.

    Returns
    -------
    SyntheticSeries

    Examples
    --------
    >>> import numpy as np
    >>> s = generate_sample_v2(np.random.default_rng(0), 120, "Q")
    >>> s.values.shape, s.freq
    ((120,), 'Q')
    """
    if length < 16:
        raise ValueError(f"length must be at least 16, got {length}")
    if freq is None:
        freq = sample_frequency_v2(rng)
    elif freq not in FREQUENCIES_V2:
        raise ValueError(f"unknown freq {freq!r}; expected one of {sorted(FREQUENCIES_V2)}")
    periods = _usable_periods(freq, length, FREQUENCIES_V2)
    kind = _draw(rng, FAMILIES_V2)
    info: dict[str, object] = {}
    present: tuple[int, ...] = ()
    if kind in ("kernel_synth", "parametric", "mixed"):  # v1's families on v2's rates
        values, info, present = _v1_family(rng, kind, length, periods)
    elif kind == "random_walk":
        values, info = _random_walk(rng, length, periods)
        present = tuple(info["periods"])  # type: ignore[arg-type]
    elif kind == "intermittent":
        values = _intermittent(rng, length, periods)
        info["value_mode"] = "intermittent"
        return SyntheticSeries(values=values, freq=freq, periods=(), kind=kind, description=info)
    elif kind == "regime":
        values, info = _regime(rng, length, periods)
    else:  # tsmixup: a convex mixture of series of the same rate and length
        k = int(rng.integers(2, 4))
        parts = [_standardise(generate_sample_v2(rng, length, freq).values) for _ in range(k)]
        mix = rng.dirichlet(np.ones(k))
        values = np.sum([w * x for w, x in zip(mix, parts, strict=True)], axis=0)
        info["mixture"] = [round(float(w), 3) for w in mix]
    values, mode = _rescale(rng, values)
    info["value_mode"] = mode
    return SyntheticSeries(values=values, freq=freq, periods=present, kind=kind, description=info)


# --------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------


def generate_sample(
    rng: np.random.Generator, length: int, freq: str | None = None
) -> SyntheticSeries:
    """Generate one synthetic series together with its description.

    Parameters
    ----------
    rng : numpy.random.Generator
        Source of randomness; the result depends only on its state.
    length : int
        Number of steps (at least 16).
    freq : str, optional
        Simulated sampling rate (a key of :data:`FREQUENCIES`); drawn when omitted.  Seasonal
        periods are taken from this rate's periods that fit at least twice into ``length``.

    Returns
    -------
    SyntheticSeries
        Values (finite ``float64``) and metadata.
    """
    if length < 16:
        raise ValueError(f"length must be at least 16, got {length}")
    if freq is None:
        freq = sample_frequency(rng)
    elif freq not in FREQUENCIES:
        raise ValueError(f"unknown freq {freq!r}; expected one of {sorted(FREQUENCIES)}")
    periods = _usable_periods(freq, length)
    kind = ["kernel_synth", "parametric", "mixed"][int(rng.choice(3, p=[0.3, 0.5, 0.2]))]
    values, info, present = _v1_family(rng, kind, length, periods)
    values, mode = _rescale(rng, values)
    info["value_mode"] = mode
    return SyntheticSeries(values=values, freq=freq, periods=present, kind=kind, description=info)


def generate_series(rng: np.random.Generator, length: int, freq: str | None = None) -> np.ndarray:
    """Generate one synthetic univariate series.

    A mixture of KernelSynth-style GP draws (30 %), parametric trend + exact multi-period
    non-sinusoidal seasonality + noise + shifts + spikes (50 %), and the sum of both (20 %),
    mapped to a random scale spanning six orders of magnitude (sometimes positive or counts).
    See the module docstring and :func:`generate_sample` for the details.

    Parameters
    ----------
    rng : numpy.random.Generator
        Source of randomness; the same state gives the same series.
    length : int
        Number of steps (at least 16).
    freq : str, optional
        Simulated sampling rate (a key of :data:`FREQUENCIES`); drawn when omitted.

    Returns
    -------
    numpy.ndarray
        Shape ``(length,)``, ``float64``, all values finite.

    Examples
    --------
    >>> import numpy as np
    >>> y = generate_series(np.random.default_rng(0), 1024)
    >>> y.shape
    (1024,)
    """
    return generate_sample(rng, length, freq).values


def iter_training_windows(
    rng: np.random.Generator,
    *,
    min_length: int = 200,
    max_length: int = 2304,
    typical_length: int = 608,
    typical_prob: float = 0.5,
    corpus: str = "v1",
) -> Iterator[SyntheticSeries]:
    """Yield an endless stream of synthetic training windows.

    Window lengths are ``typical_length`` (by default 512 context + 96 horizon) with probability
    ``typical_prob``, otherwise uniform on ``[min_length, max_length]`` (corpus ``"v1"``) or
    log-uniform on it (``"v2"``: short windows as often as long ones).

    Parameters
    ----------
    rng : numpy.random.Generator
        Source of randomness; the stream is a deterministic function of its state.
    min_length, max_length : int, optional
        Range of the non-typical window lengths.
    typical_length : int, optional
        The most frequent window length.
    typical_prob : float, optional
        Probability of drawing ``typical_length``.
    corpus : {"v1", "v2"}, default "v1"
        Generator: :func:`generate_sample` or :func:`generate_sample_v2`.

    Yields
    ------
    SyntheticSeries
        One window per iteration.
    """
    if not 16 <= min_length <= max_length:
        raise ValueError(f"need 16 <= min_length <= max_length, got {min_length}, {max_length}")
    if corpus not in CORPORA:
        raise ValueError(f"corpus must be one of {CORPORA}, got {corpus!r}")
    while True:
        if rng.random() < typical_prob:
            length = typical_length
        elif corpus == "v1":
            length = int(rng.integers(min_length, max_length + 1))
        else:
            length = int(np.exp(rng.uniform(np.log(min_length), np.log(max_length + 1))))
        yield generate_sample(rng, length) if corpus == "v1" else generate_sample_v2(rng, length)


def corpus_description(corpus: str = "v1") -> dict[str, object]:
    """Describe the corpus generator, for training records.

    Parameters
    ----------
    corpus : {"v1", "v2"}, default "v1"

    Returns
    -------
    dict
        JSON-serialisable summary of the families, frequencies, periods and mixing weights.
    """
    v1 = _corpus_v1_description()
    if corpus == "v1":
        return v1
    return {
        **v1,
        "corpus": "v2",
        "families": dict(FAMILIES_V2),
        "frequencies": {k: list(v) for k, v in FREQUENCIES_V2.items()},
        "frequency_weights": dict(FREQUENCY_WEIGHTS_V2),
        "window_lengths": "typical length, else log-uniform on [min_length, max_length]",
        "random_walk": "ARIMA(1,1,0)-like with drift, Gaussian or Student-t(1.5-4) steps, "
        "optional season, in levels or exp (multiplicative)",
        "intermittent": "Bernoulli occurrences with slowly varying probability x 1 + Poisson",
        "regime": "parametric, then parametric or random walk from a random time",
        "tsmixup": "Dirichlet-weighted mixture of 2-3 standardised v2 series",
    }


def _corpus_v1_description() -> dict[str, object]:
    return {
        "generator": "tools.pretrain.synthetic",
        "families": {"kernel_synth": 0.3, "parametric": 0.5, "mixed": 0.2},
        "kernel_bank": {
            "linear": "a + b (t - c)",
            "rbf_lengthscales": list(_RBF_LENGTHSCALES),
            "rational_quadratic": [list(p) for p in _RQ_PARAMS],
            "periodic_lengthscales": list(_PERIODIC_LENGTHSCALES),
            "constant": True,
            "white_noise_sigmas": [0.1, 0.3, 1.0],
            "max_kernels": 5,
            "composition": "random + / * of independent atom samples",
        },
        "frequencies": {k: list(v) for k, v in FREQUENCIES.items()},
        "frequency_weights": dict(FREQUENCY_WEIGHTS),
        "seasonal_shapes": list(SHAPE_KINDS),
        "min_cycles_per_period": _MIN_CYCLES,
        "trends": ["none", "linear", "exponential", "piecewise", "random_walk"],
        "noise": ["gaussian", "student_t", "ar1"],
        "extras": ["level_shifts", "spikes", "amplitude_drift"],
        "value_modes": {"real": 0.6, "positive": 0.2, "lognormal": 0.1, "count": 0.1},
        "scale_range_log10": [-2.0, 4.0],
        "data": "synthetic only; no real data is used",
    }
