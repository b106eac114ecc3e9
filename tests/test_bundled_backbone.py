"""The bundled moirai-tiny: offline loading and forecasting, and a reproducible pre-training."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import numpy as np
import pytest

from msft_forecast.backbones.checkpoint import bundled_checkpoint_dir, resolve_checkpoint
from msft_forecast.engine import MSFTEngine


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to open a socket fails the test."""

    def refuse(*args, **kwargs):
        raise AssertionError("the network was used")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def test_moirai_tiny_loads_and_forecasts_without_network(no_network, seasonal_series) -> None:
    source = resolve_checkpoint("moirai-tiny")
    assert source.location == "bundled:moirai-tiny"
    folder = bundled_checkpoint_dir("moirai-tiny")
    assert (folder / "model.safetensors").stat().st_size <= 10 * 2**20
    engine = MSFTEngine(
        backbone="moirai-tiny",
        fit_strategy="zero-shot",
        context_length=128,
        prediction_length=24,
        random_state=0,
        num_samples=50,
    ).fit([seasonal_series])
    fc = engine.forecast([seasonal_series], 24)
    assert np.isfinite(fc.samples).all()
    # it learned something: on a clean daily cycle it beats repeating the last value
    truth_t = np.arange(400, 424)
    truth = 10 + np.sin(2 * np.pi * truth_t / 24) + 0.002 * truth_t
    assert np.mean((fc.mean[0] - truth) ** 2) < np.mean((seasonal_series[-1] - truth) ** 2)


def test_pretraining_reproduces_the_shipped_loss_curve(tmp_path: Path) -> None:
    """Re-running the pre-training from its seed retraces the shipped record's first 25 steps.

    Reruns are bit-identical to each other (``tests/test_pretrain.py``). The shipped checkpoint's
    first steps ran on an earlier revision of the backbone code (its bf16 numerics changed
    while the run was under way), so the shipped curve is matched to 0.5%, not bit for bit,
    until the checkpoint is regenerated with the current code.
    """
    from msft_forecast.pretraining.pretrain import PretrainConfig, pretrain

    record = json.loads(
        (bundled_checkpoint_dir("moirai-tiny") / "training_record.json").read_text()
    )
    settings = dict(record["settings"])
    settings["patch_sizes"] = tuple(settings["patch_sizes"])
    cfg = PretrainConfig(**settings)
    every = record["loss_curve_every"]
    state = pretrain(cfg, tmp_path, fresh=True, stop_at_step=every, log=lambda _: None)
    first = record["loss_curve"][0]
    assert first["step"] == every
    assert float(np.mean(state.loss[:every])) == pytest.approx(first["loss"], rel=5e-3)
    assert float(np.mean(state.nll_scaled[:every])) == pytest.approx(first["nll_scaled"], rel=5e-3)
