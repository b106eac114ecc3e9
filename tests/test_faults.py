"""Faults during fine-tuning: a non-finite loss, an exception or Ctrl+C inside ``fit``, and
resuming an interrupted fine-tune from its last checkpoint.

Faults are injected with monkeypatch into the model's loss or into a Lightning callback hook,
so they strike in the middle of the training loop, as real ones do.
"""

from __future__ import annotations

import signal

import numpy as np
import pandas as pd
import pytest
import torch
from darts import TimeSeries
from sktime.exceptions import NotFittedError

from msft_forecast import MSFTForecaster
from msft_forecast.cli import main as cli_main
from msft_forecast.darts import MSFTModel
from msft_forecast.msft.moirai_model import MultiScaleMoirai
from msft_forecast.training.lightning import NonFiniteLossError, TrainingHistory

SK = dict(
    backbone="moirai-tiny",
    context_length=32,
    prediction_length=6,
    num_scales=2,
    max_steps=4,
    batch_size=8,
    num_samples=20,
    random_state=0,
    validation=None,
)
DA = {
    **{k: v for k, v in SK.items() if k not in ("context_length", "prediction_length")},
    "input_chunk_length": 32,
    "output_chunk_length": 6,
}


@pytest.fixture(scope="module")
def y() -> pd.Series:
    rng = np.random.default_rng(0)
    t = np.arange(200)
    values = 10 + np.sin(2 * np.pi * t / 24) + rng.normal(0, 0.1, t.size)
    return pd.Series(values, index=pd.date_range("2024-01-01", periods=t.size, freq="h"))


def _nan_loss(monkeypatch) -> None:
    original = MultiScaleMoirai.loss

    def loss(self, *args, **kwargs):
        value, per_scale = original(self, *args, **kwargs)
        return value * float("nan"), per_scale

    monkeypatch.setattr(MultiScaleMoirai, "loss", loss)


def _fail_at_step(monkeypatch, step: int, error: type[BaseException]) -> None:
    """Raise ``error`` from a Lightning callback hook once ``step`` optimiser steps are done."""
    original = TrainingHistory.on_train_batch_end

    def hook(self, trainer, *args, **kwargs):
        original(self, trainer, *args, **kwargs)
        if trainer.global_step >= step:
            raise error(f"injected at step {trainer.global_step}")

    monkeypatch.setattr(TrainingHistory, "on_train_batch_end", hook)


def _assert_sktime_unfitted(forecaster: MSFTForecaster) -> None:
    assert not forecaster.is_fitted
    with pytest.raises(NotFittedError):
        forecaster.predict(fh=[1, 2])


def _assert_darts_unfitted(model: MSFTModel, series: TimeSeries) -> None:
    assert model._engine is None and model.training_series is None
    with pytest.raises(ValueError, match="must be fit"):
        model.predict(3, series=series)


# --------------------------------------------------------------------------- non-finite loss
@pytest.mark.parametrize("refit", [False, True], ids=["fresh", "refit"])
def test_non_finite_loss_stops_with_a_clear_error_and_leaves_unfitted(monkeypatch, y, refit):
    forecaster, model = MSFTForecaster(**SK), MSFTModel(**DA)
    series = TimeSeries.from_series(y)
    if refit:
        forecaster.fit(y, fh=[1, 2, 3])
        model.fit(series)
    _nan_loss(monkeypatch)
    with pytest.raises(NonFiniteLossError, match="training loss is nan.*learning_rate"):
        forecaster.fit(y, fh=[1, 2, 3])
    _assert_sktime_unfitted(forecaster)
    with pytest.raises(NonFiniteLossError, match="training loss is nan"):
        model.fit(series)
    _assert_darts_unfitted(model, series)


def test_non_finite_loss_on_the_command_line(monkeypatch, tmp_path, capsys):
    path = tmp_path / "y.csv"
    frame = pd.DataFrame({"y": np.sin(np.arange(200) / 4)})
    frame.insert(0, "time", pd.date_range("2024-01-01", periods=200, freq="h"))
    frame.to_csv(path, index=False)
    _nan_loss(monkeypatch)
    out = tmp_path / "out.csv"
    code = cli_main(
        ["forecast", str(path), "--horizon", "3", "--context", "32", "--max-steps", "2"]
        + ["--quiet", "--backbone", "moirai-tiny"]
        + ["--output", str(out)]
    )
    err = capsys.readouterr().err.strip()
    assert code == 1 and not out.exists()
    assert len(err.splitlines()) == 1 and "fine-tuning failed" in err and "nan" in err


# ------------------------------------------------------------------ exceptions and Ctrl+C
@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
@pytest.mark.parametrize("refit", [False, True], ids=["fresh", "refit"])
def test_failure_inside_fit_leaves_unfitted(monkeypatch, y, error, refit):
    forecaster, model = MSFTForecaster(**SK), MSFTModel(**DA)
    series = TimeSeries.from_series(y)
    if refit:
        forecaster.fit(y, fh=[1, 2, 3])
        model.fit(series)
    handler = signal.getsignal(signal.SIGINT)
    _fail_at_step(monkeypatch, 2, error)
    # Lightning turns Ctrl+C into sys.exit(1) and ignores SIGINT from then on; the caller
    # gets the KeyboardInterrupt back instead, with Ctrl+C working again
    with pytest.raises(error):
        forecaster.fit(y, fh=[1, 2, 3])
    assert signal.getsignal(signal.SIGINT) is handler
    _assert_sktime_unfitted(forecaster)
    with pytest.raises(error):
        model.fit(series)
    assert signal.getsignal(signal.SIGINT) is handler
    _assert_darts_unfitted(model, series)


def test_ctrl_c_on_the_command_line(monkeypatch, tmp_path, capsys):
    path = tmp_path / "y.csv"
    frame = pd.DataFrame({"y": np.sin(np.arange(200) / 4)})
    frame.insert(0, "time", pd.date_range("2024-01-01", periods=200, freq="h"))
    frame.to_csv(path, index=False)
    _fail_at_step(monkeypatch, 1, KeyboardInterrupt)
    code = cli_main(
        ["forecast", str(path), "--horizon", "3", "--context", "32"]
        + ["--quiet", "--backbone", "moirai-tiny"]
    )
    err = capsys.readouterr().err.strip()
    assert code == 130 and err == "msft-forecast: interrupted; nothing was written"


# --------------------------------------------------------------------------------- resume
RESUMABLE = dict(
    SK,
    max_steps=12,
    val_check_interval=3,
    validation=24,
    early_stopping_patience=None,
)


@pytest.mark.parametrize("strategy", ["msft", "adalora"])
def test_interrupted_fit_resumes_to_the_uninterrupted_result(monkeypatch, y, tmp_path, strategy):
    """Ctrl+C at step 7 of 12; ``last.ckpt`` was written at step 6 (every 3 steps, after the
    validation); ``resume=True`` continues from it and ends bit-identical to a fit that was
    never interrupted: same trainable tensors, best step, histories and forecasts (AdaLoRA:
    its rank masks and importance statistics travel in the checkpoint)."""
    settings = dict(RESUMABLE, fit_strategy=strategy)
    uninterrupted = MSFTForecaster(**settings).fit(y, fh=[1, 2, 3])

    folder = tmp_path / "ckpt"
    with monkeypatch.context() as m:
        _fail_at_step(m, 7, KeyboardInterrupt)
        interrupted = MSFTForecaster(**settings, checkpoint_dir=str(folder))
        with pytest.raises(KeyboardInterrupt, match="resume=True"):
            interrupted.fit(y, fh=[1, 2, 3])
    assert not interrupted.is_fitted
    last = folder / "last.ckpt"
    assert last.is_file()
    # plain tensors and containers only (loads without unpickling objects), and only the
    # trainable tensors: the frozen backbone is not copied into every checkpoint
    saved = torch.load(last, weights_only=True, map_location="cpu")
    assert saved["global_step"] == 6
    trainable = uninterrupted.engine_.trainable_state()
    assert {k.removeprefix("model.") for k in saved["state_dict"]} == set(trainable)

    resumed = MSFTForecaster(**settings, checkpoint_dir=str(folder), resume=True)
    resumed.fit(y, fh=[1, 2, 3])
    a, b = uninterrupted.engine_, resumed.engine_
    for name, value in a.trainable_state().items():
        assert torch.equal(value, b.trainable_state()[name]), name
    assert a.report_.steps == b.report_.steps == 12
    assert a.report_.best_step == b.report_.best_step
    assert a.report_.initial_val_loss == b.report_.initial_val_loss
    assert a.report_.history == b.report_.history
    alpha = [0.1, 0.9]
    pd.testing.assert_frame_equal(
        uninterrupted.predict_quantiles(alpha=alpha), resumed.predict_quantiles(alpha=alpha)
    )


def test_resume_needs_a_checkpoint_dir(y):
    with pytest.raises(ValueError, match="resume=True needs checkpoint_dir"):
        MSFTForecaster(**SK, resume=True).fit(y, fh=[1, 2, 3])
    with pytest.raises(ValueError, match="resume=True needs checkpoint_dir"):
        MSFTModel(**DA, resume=True)


def test_resume_without_a_checkpoint_starts_over(y, tmp_path):
    fresh = MSFTForecaster(**SK).fit(y, fh=[1, 2, 3])
    resumed = MSFTForecaster(**SK, checkpoint_dir=str(tmp_path / "empty"), resume=True)
    resumed.fit(y, fh=[1, 2, 3])
    pd.testing.assert_series_equal(fresh.predict(), resumed.predict())
    assert (tmp_path / "empty" / "last.ckpt").is_file()


def test_failed_update_moves_the_context_and_keeps_the_weights(monkeypatch, y):
    """sktime moves the cutoff before ``_update`` runs; when continued fine-tuning fails, the
    forecaster is left as ``update(update_params=False)`` leaves it: new context, old weights
    (never the old context under the new cutoff)."""
    train, new = y.iloc[:-12], y.iloc[-12:]
    params = dict(SK, update_steps=2)
    failing = MSFTForecaster(**params).fit(train, fh=[1, 2, 3])
    weights = {k: v.clone() for k, v in failing.engine_.trainable_state().items()}
    moved = MSFTForecaster(**params).fit(train, fh=[1, 2, 3]).update(new, update_params=False)
    _fail_at_step(monkeypatch, 1, RuntimeError)
    with pytest.raises(RuntimeError, match="injected"):
        failing.update(new, update_params=True)
    for name, value in failing.engine_.trainable_state().items():
        assert torch.equal(value, weights[name]), name
    pd.testing.assert_series_equal(failing.predict(), moved.predict())


def test_darts_model_resumes_too(monkeypatch, y, tmp_path):
    series = TimeSeries.from_series(y)
    params = {
        **DA,
        "max_steps": 6,
        "val_check_interval": 2,
        "validation": 24,
        "early_stopping_patience": None,
    }
    uninterrupted = MSFTModel(**params).fit(series)
    folder = str(tmp_path / "darts-ckpt")
    with monkeypatch.context() as m:
        _fail_at_step(m, 5, KeyboardInterrupt)
        with pytest.raises(KeyboardInterrupt):
            MSFTModel(**params, checkpoint_dir=folder).fit(series)
    resumed = MSFTModel(**params, checkpoint_dir=folder, resume=True).fit(series)
    assert resumed.engine.report_.steps == 6
    np.testing.assert_array_equal(
        uninterrupted.predict(3, num_samples=20).all_values(),
        resumed.predict(3, num_samples=20).all_values(),
    )


# ----------------------------------------------------------------- memory, checked up front
def _tiny_engine():
    import numpy as np

    from msft_forecast.engine import MSFTEngine

    series = [10 + np.sin(np.arange(160) / 4)]
    engine = MSFTEngine(
        backbone="moirai-tiny", fit_strategy="zero-shot", context_length=32,
        prediction_length=4, num_samples=10, random_state=0,
    ).fit(series)  # fmt: skip
    return engine, series


@pytest.mark.parametrize(
    ("horizon", "samples", "message"),
    [(10**6, 100, "lower num_samples or the horizon"), (24, 5 * 10**8, "sample paths")],
)
def test_forecasts_that_cannot_fit_are_refused_before_allocating(horizon, samples, message):
    import resource

    from msft_forecast.memory import InsufficientMemoryError

    engine, series = _tiny_engine()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(InsufficientMemoryError, match=message):
        engine.forecast(series, horizon, samples)
    assert (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024 < 200  # MB


def test_sktime_and_darts_refuse_a_horizon_of_a_million_steps():
    import numpy as np
    import pandas as pd
    from darts import TimeSeries

    from msft_forecast import MSFTForecaster
    from msft_forecast.darts import MSFTModel
    from msft_forecast.memory import InsufficientMemoryError

    y = pd.Series(10 + np.sin(np.arange(160) / 4),
                  index=pd.date_range("2024-01-01", periods=160, freq="h"))  # fmt: skip
    kw = dict(backbone="moirai-tiny", fit_strategy="zero-shot", context_length=32,
              random_state=0, num_samples=100)  # fmt: skip
    forecaster = MSFTForecaster(**kw).fit(y, fh=[1, 2, 3])
    with pytest.raises(InsufficientMemoryError, match="1000000 steps"):
        forecaster.predict(fh=[10**6])  # one step, a million steps ahead
    kw.pop("context_length")
    model = MSFTModel(input_chunk_length=32, output_chunk_length=4, **kw)
    model.fit(TimeSeries.from_series(y))
    with pytest.raises(InsufficientMemoryError, match="1000000 steps"):
        model.predict(10**6, num_samples=100)


def test_a_tight_memory_budget_chunks_the_forecast_without_changing_it(monkeypatch):
    """Rows sample from their own streams, so a smaller batch gives the same forecast (up to
    float32 rounding)."""
    import numpy as np

    from msft_forecast import memory

    engine, series = _tiny_engine()
    many = [s + k for s in series for k in range(6)]
    full = engine.forecast(many, 8, 50, seed=1)
    scales = engine.model_.spec.num_scales
    per_row = memory.SAMPLING_BYTES_PER_STEP * (8 * 50 * scales + 32)
    monkeypatch.setattr(
        "msft_forecast.memory.available_memory_bytes", lambda: int(4.5 * per_row) + 10**5
    )
    assert memory.forecast_batch_size(engine.model_, 6, 32, 8, 50, 256) == 1
    chunked = engine.forecast(many, 8, 50, seed=1)
    # the same draws; batched float32 kernels round the last bit differently
    np.testing.assert_allclose(chunked.samples, full.samples, rtol=1e-6)
    np.testing.assert_allclose(chunked.mean, full.mean, rtol=1e-6)


def test_a_context_of_ten_million_steps_is_capped_at_the_series():
    """A context longer than the series would be padding: fit caps it at the longest series
    (issue 15 measured a 6.6 GB peak before), so memory stays small and the fit succeeds."""
    import resource

    import numpy as np
    import pandas as pd

    y = pd.Series(10 + np.sin(np.arange(120) / 4),
                  index=pd.date_range("2024-01-01", periods=120, freq="h"))  # fmt: skip
    forecaster = MSFTForecaster(backbone="moirai-tiny", fit_strategy="lora",
                                context_length=10**7, max_steps=2, random_state=0)  # fmt: skip
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    forecaster.fit(y, fh=[1, 2, 3])
    assert (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024 < 200  # MB
    assert forecaster.engine_.context_length_ == 120
    assert any("capped at 120" in c for c in forecaster.engine_.report_.choices)


def test_a_training_step_that_cannot_fit_is_refused_before_training():
    """Refused from the settings (a batch of 10^7 windows cannot fit), before any window is
    cut; the forecaster stays unfitted."""
    import resource

    import numpy as np
    import pandas as pd

    from msft_forecast.memory import InsufficientMemoryError

    y = pd.Series(10 + np.sin(np.arange(2000) / 4),
                  index=pd.date_range("2024-01-01", periods=2000, freq="h"))  # fmt: skip
    forecaster = MSFTForecaster(backbone="moirai-tiny", fit_strategy="lora",
                                batch_size=10**7, max_steps=2, random_state=0)  # fmt: skip
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(InsufficientMemoryError, match=r"the longest series has 2000 steps"):
        forecaster.fit(y, fh=[1, 2, 3])
    assert (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024 < 200  # MB
    assert not forecaster.is_fitted
