"""Reproducibility: the same ``random_state`` gives bit-identical forecasts, also in another
process; different seeds give different sample paths; a series' sample paths do not depend on
the other series forecast with it."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest
from darts import TimeSeries

from msft_forecast import MSFTForecaster
from msft_forecast.darts import MSFTModel

SK = dict(
    backbone="moirai-tiny",
    context_length=32,
    prediction_length=6,
    num_scales=2,
    max_steps=3,
    batch_size=8,
    num_samples=30,
    validation=12,
    val_check_interval=2,
)

#: Fits with sktime and Darts and prints every forecast number as an exact hex float. The
#: same code runs in this process and in a fresh one.
SCRIPT = textwrap.dedent(
    """
    import json, warnings
    import numpy as np, pandas as pd, torch
    from darts import TimeSeries
    from msft_forecast import MSFTForecaster
    from msft_forecast.darts import MSFTModel

    def run(params, seed):
        torch.set_num_threads(1)  # as the test session: float sums depend on the split
        t = np.arange(240)
        y = pd.Series(
            10 + np.sin(2 * np.pi * t / 24) + 0.3 * np.cos(t / 7),
            index=pd.date_range("2024-01-01", periods=t.size, freq="h"),
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            f = MSFTForecaster(**params, random_state=seed).fit(y, fh=[1, 2, 3, 4])
            q = f.predict_quantiles(alpha=[0.05, 0.5, 0.95]).to_numpy()
            spl = f.predict_proba(marginal=False).spl.to_numpy()
            darts_params = {k: v for k, v in params.items()
                            if k not in ("context_length", "prediction_length")}
            m = MSFTModel(input_chunk_length=32, output_chunk_length=6, random_state=seed,
                          **darts_params).fit(TimeSeries.from_series(y))
            d = m.predict(6, num_samples=30).all_values()
        return {k: [float(x).hex() for x in v.ravel()] for k, v in
                {"quantiles": q, "samples": spl, "darts": d}.items()}
    """
)


def _run_here(seed: int) -> dict[str, list[str]]:
    namespace: dict = {}
    exec(SCRIPT, namespace)  # noqa: S102 - the test's own code, shared with the subprocess
    return namespace["run"](SK, seed)


def test_same_seed_is_bit_identical_across_processes():
    here = _run_here(7)
    code = SCRIPT + f"\nprint(json.dumps(run({SK!r}, 7)))\n"
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={**__import__("os").environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"},
    )
    there = json.loads(out.stdout.strip().splitlines()[-1])
    for key in here:
        assert here[key] == there[key], f"{key} differs between processes"
    assert here == _run_here(7)  # and twice in one process


def test_different_seeds_give_different_sample_paths():
    a, b = _run_here(1), _run_here(2)
    for key in ("samples", "darts"):
        assert a[key] != b[key]
        x = np.array([float.fromhex(v) for v in a[key]])
        y = np.array([float.fromhex(v) for v in b[key]])
        assert np.mean(x != y) > 0.9  # not a few numbers: the paths themselves


# ------------------------------------------------------------------------ batch composition
@pytest.fixture(scope="module")
def panel() -> list[np.ndarray]:
    rng = np.random.default_rng(3)
    t = np.arange(120)
    return [
        level + np.sin(2 * np.pi * t / period) + rng.normal(0, 0.2, t.size)
        for level, period in [(10, 24), (-4, 12), (100, 7), (0, 30)]
    ]


@pytest.fixture(scope="module")
def darts_model(panel) -> MSFTModel:
    series = TimeSeries.from_values(panel[0])
    return MSFTModel(
        input_chunk_length=32,
        output_chunk_length=6,
        backbone="moirai-tiny",
        num_scales=3,
        max_steps=2,
        batch_size=8,
        validation=None,
        random_state=0,
    ).fit(series)


def test_samples_do_not_depend_on_the_neighbours(darts_model, panel):
    """Row i samples from its own stream seeded by (seed, i): replacing the other series or
    changing the batch size leaves its paths unchanged (up to float32 rounding in the batched
    encoder: rtol 1e-6; before per-row streams they were different draws altogether)."""
    engine = darts_model.engine
    a, b, c, d = panel
    with_b = engine.forecast([a, b, c], 6, num_samples=40, seed=5)
    with_d = engine.forecast([a, d, c], 6, num_samples=40, seed=5)
    one_by_one = engine.forecast([a, b, c], 6, num_samples=40, seed=5, batch_size=1)
    np.testing.assert_allclose(with_b.samples[0], with_d.samples[0], rtol=1e-6)
    np.testing.assert_allclose(with_b.samples[2], with_d.samples[2], rtol=1e-6)
    np.testing.assert_allclose(with_b.samples, one_by_one.samples, rtol=1e-6)
    assert not np.allclose(with_b.samples[1], with_d.samples[1])
    # through Darts: the first series' sample paths with different companions
    series = [TimeSeries.from_values(x) for x in panel]
    first = darts_model.predict(6, series=series[:2], num_samples=40, random_state=9)[0]
    again = darts_model.predict(6, series=[series[0], series[3]], num_samples=40, random_state=9)[0]
    np.testing.assert_allclose(first.all_values(), again.all_values(), rtol=1e-6)


@pytest.mark.parametrize("mixing", ["blend", "mixture"])
def test_per_row_streams_in_both_mixing_modes(panel, mixing):
    model = MSFTModel(
        input_chunk_length=32,
        output_chunk_length=6,
        backbone="moirai-tiny",
        num_scales=2,
        max_steps=0,
        mixing=mixing,
        random_state=0,
    ).fit(TimeSeries.from_values(panel[0]))
    engine = model.engine
    full = engine.forecast(panel, 6, num_samples=25, seed=1)
    alone = engine.forecast(panel[:1], 6, num_samples=25, seed=1)
    np.testing.assert_allclose(full.samples[0], alone.samples[0], rtol=1e-6)
    assert np.isfinite(full.samples).all()


def test_sktime_panel_forecast_matches_single_series(panel):
    """sktime panels go through the same per-row streams: the first instance's quantiles are
    those of forecasting it alone."""
    index = pd.RangeIndex(120)
    frames = [
        pd.DataFrame({"y": x}, index=pd.MultiIndex.from_product([[i], index]))
        for i, x in enumerate(panel)
    ]
    y_panel = pd.concat(frames)
    params = dict(SK, random_state=4, fit_strategy="zero-shot", patch_size=16)
    alpha = [0.1, 0.9]
    together = MSFTForecaster(**params).fit(y_panel, fh=[1, 2, 3]).predict_quantiles(alpha=alpha)
    alone = (
        MSFTForecaster(**params)
        .fit(pd.Series(panel[0], index=index), fh=[1, 2, 3])
        .predict_quantiles(alpha=alpha)
    )
    np.testing.assert_allclose(together.to_numpy()[:3], alone.to_numpy(), rtol=1e-6)


def test_fits_overlapping_in_threads_warn_and_one_after_another_do_not(monkeypatch) -> None:
    """Threads share torch's random state: overlapping fits say so (both of them); the same
    fits one after the other stay silent and reproducible."""
    import threading
    import warnings

    import numpy as np

    from msft_forecast import engine as engine_module
    from msft_forecast.engine import ConcurrentFitWarning, MSFTEngine

    series = [10 + np.sin(np.arange(160) / 4)]
    settings = dict(backbone="moirai-tiny", fit_strategy="lora", context_length=32,
                    prediction_length=4, max_steps=3, batch_size=8, random_state=0,
                    num_samples=10)  # fmt: skip

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        first = MSFTEngine(**settings).fit(series).forecast(series, 4, seed=0).mean
        second = MSFTEngine(**settings).fit(series).forecast(series, 4, seed=0).mean
    assert not [w for w in caught if issubclass(w.category, ConcurrentFitWarning)]
    np.testing.assert_array_equal(first, second)

    barrier = threading.Barrier(2, timeout=60)
    original = engine_module.MSFTEngine._fit

    def meet_then_fit(self, *args, **kwargs):
        barrier.wait()  # both fits are running at this point
        return original(self, *args, **kwargs)

    monkeypatch.setattr(engine_module.MSFTEngine, "_fit", meet_then_fit)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            MSFTEngine(**settings).fit(series)
        except BaseException as err:  # noqa: BLE001 - reported by the assertion below
            errors.append(err)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        threads = [threading.Thread(target=run) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert not errors, errors
    concurrent = [w for w in caught if issubclass(w.category, ConcurrentFitWarning)]
    assert len(concurrent) == 2 and "separate processes" in str(concurrent[0].message)
